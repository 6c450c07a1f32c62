"""The `feedpub` command. Each command group lives in its own module; heavy imports stay inside
commands so `feedpub --help` starts fast (measured with `python -X importtime -m feedpub --help`)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from feedpub.errors import ConfigError, Message, Problem

OK, PARTIAL, FAILED = 0, 1, 2


class LogWords(logging.Filter):
    """The lines library modules log as Messages (`log.info("%s", message(...))`: a config reloaded, a WebSub
    ping, an issue's note) put into the operator's words, from `source` (the problems' strings of the config in
    force); without one, or for another handler (tests' caplog), they read in English."""

    source: Callable[[], Any] | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if self.source is not None and isinstance(record.args, tuple) and any(
                isinstance(arg, Message) for arg in record.args):
            words = self.source()
            record.args = tuple(words.message(arg) if isinstance(arg, Message) else arg for arg in record.args)
        return True


LOG_WORDS = LogWords()


class App:
    """What every command needs: the config file named on the command line, loaded once; whether to keep
    quiet (`-q`); and the words of its summaries in site.language (`strings.toml` beside this module)."""

    def __init__(self, config_path: Path | None, *, quiet: bool = False) -> None:
        self.config_path = config_path
        self.quiet = quiet
        self._config = None
        self._strings = None
        self._problems = None
        # Log lines never stop a command: while its config cannot be loaded, they read in English.
        LOG_WORDS.source = lambda: self.strings_without_config("problems")

    @property
    def config(self):  # noqa: ANN201 - feedpub.config.Config, imported lazily
        if self._config is None:
            from feedpub.config_file import load_config  # lazy: 26 ms that `feedpub --help` does not need

            try:
                self._config = load_config(self.config_path)
            except ConfigError as exc:
                fail(str(exc))
        return self._config

    @property
    def strings(self):  # noqa: ANN201 - feedpub.strings.Strings, imported lazily
        if self._strings is None:
            self._strings = self._operator_strings("cli")
        return self._strings

    @property
    def problems(self):  # noqa: ANN201 - feedpub.strings.Strings, imported lazily
        """The words of problems and errors (`feedpub/problems.toml`) in site.language, overridable as the
        command line's are."""
        if self._problems is None:
            self._problems = self._operator_strings("problems")
        return self._problems

    def strings_without_config(self, home: str = "cli"):  # noqa: ANN201 - feedpub.strings.Strings, imported lazily
        """The command line's words (or the problems', `home`) in site.language when the config loads, else in
        English: for a command that needs no config (`dkim keygen` writes the key a config names before the config
        can load)."""
        from feedpub.config_file import load_config  # lazy: see `config`
        from feedpub.strings import english

        try:
            self._config = self._config or load_config(self.config_path)
        except ConfigError:
            return english(home)
        return self.strings if home == "cli" else self.problems

    def problem_line(self, problem: Problem) -> str:
        """`path:line: what (expected …)` in site.language."""
        from feedpub.strings import problem_line  # loaded with `problems`

        return problem_line(problem, self.problems)

    def _operator_strings(self, home: str):  # noqa: ANN202 - feedpub.strings.Strings, imported lazily
        from feedpub.strings import operator_strings  # lazy: it loads Jinja, which `feedpub --help` does not need

        try:
            return operator_strings(self.config, home)
        except ConfigError as exc:
            fail(str(exc))


def fail(message: str) -> NoReturn:
    """Print a user-facing error and exit 2 (nothing done)."""
    click.echo(f"feedpub: {message}", err=True)
    sys.exit(FAILED)


def error_text(exc: BaseException) -> str:
    """An error's words in site.language: the Message it carries (`feedpub.errors.reason`, e.g. a StoreError's)
    put into words; other errors' text as it is."""
    from feedpub.errors import reason

    ctx = click.get_current_context(silent=True)
    app = ctx.find_object(App) if ctx else None
    words = reason(exc)
    return app.problems.message(words) if app is not None and words.key != "text" else str(exc)


def stop_on_signals(stop: threading.Event, *, then: str, on_first: Callable[[], None] = lambda: None) -> None:
    """SIGTERM/SIGINT set `stop` (the work in hand finishes; `then`, a string of cli/strings.toml, says what
    happens to it); a second signal exits at once."""
    t = words()

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            logging.getLogger("feedpub").warning("%s", t.text("second_signal", then=t.text(then)))
            os._exit(1)
        logging.getLogger("feedpub").info("%s", t.text("first_signal", signal=signal.Signals(signum).name))
        stop.set()
        on_first()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def quiet() -> bool:
    """`-q` was given: print problems only (what makes the exit code 1 or 2), so that a run that went well (exit
    0) prints nothing and cron mails nobody. Data a command was asked for (lists, JSON, a DNS record) still
    goes to stdout."""
    ctx = click.get_current_context(silent=True)
    app = ctx.find_object(App) if ctx else None
    return app is not None and app.quiet


def words():  # noqa: ANN201 - feedpub.strings.Strings, imported lazily
    """The running command's summaries and messages in site.language."""
    return click.get_current_context().find_object(App).strings


def recipient_line(t, outcome) -> str:  # noqa: ANN001 - Strings and feedpub.send.tally.Outcome, imported lazily
    """One reader's delivery that did not go out: `address: deferred: the server's reply`."""
    return t.text("recipient_outcome", email=outcome.email, status=t.text(f"outcome_{outcome.status}"),
                  reply=outcome.reply)


def sending_line(t, summary) -> str:  # noqa: ANN001 - Strings and feedpub.send.tally.Summary, imported lazily
    """`3 sent, 1 deferred, 0 failed`: a sending run (the worker's, the daemon's retries)."""
    return t.text("sending_counts", sent=summary.sent, deferred=summary.deferred, failed=summary.failed,
                  skipped=t.count("send_skipped", summary.skipped) if summary.skipped else "",
                  stopped=t.text("send_stopped") if summary.stopped else "")


def say(message: str, *, err: bool = False) -> None:
    """A line about work that went well (a summary, a file written, a warning): left out with `-q`."""
    if not quiet():
        click.echo(message, err=err)


def report(problems: list[Problem]) -> None:
    """Each problem on stderr in site.language; warnings (which leave the exit code 0) not with `-q`."""
    app = click.get_current_context().find_object(App)
    for problem in problems:
        if problem.warning:
            say(app.problem_line(problem), err=True)
        else:
            click.echo(app.problem_line(problem), err=True)


class Commands(click.Group):
    """The command group; a store that stays locked while a command waits for it is exit 2 naming the lock,
    wherever in the command it happens."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            from feedpub.store_engine import busy, busy_message, shown_url  # lazy: SQLAlchemy, only on failure

            if not busy(exc) or not isinstance(ctx.obj, App):
                raise
            fail(ctx.obj.problems.message(busy_message(shown_url(ctx.obj.config.store_url))))


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Config file (default: ./feedpub.toml if it exists, else built-in defaults).")
@click.option("-v", "--verbose", count=True, help="More log output.")
@click.option("-q", "--quiet", is_flag=True,
              help="Print only problems (exit 1 or 2): nothing when all went well; data asked for goes to stdout.")
@click.version_option(package_name="feedpub")
@click.pass_context
def main(ctx: click.Context, config_file: Path | None, verbose: int, quiet: bool) -> None:
    """Publish Jekyll-style Markdown posts as RSS, Atom and JSON feeds and a weekly e-mail digest."""
    level = logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="feedpub: %(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.addFilter(LOG_WORDS)
    logging.getLogger("apscheduler").setLevel(max(level, logging.WARNING))
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))   # a line per request (fediverse deliveries)
    if config_file is None and Path("feedpub.toml").is_file():
        config_file = Path("feedpub.toml")
    elif config_file is not None and not config_file.is_file():
        fail(f"{config_file}: config file not found")
    ctx.obj = App(config_file, quiet=quiet)


def _register() -> None:
    # Here, not at the top: the command modules import App, fail and the exit codes from this module.
    from feedpub.cli import admin, bounces, build, daemon, digest, dkim, fediverse, site, store, subscribers, worker

    for command in (site.init, site.check, build.build, subscribers.subscribers, digest.digest, daemon.run,
                    worker.worker, dkim.dkim, admin.admin, bounces.bounces, store.store, fediverse.fediverse):
        main.add_command(command)
    main.add_command(bounces.bounces)


_register()
