"""`feedpub run`: the scheduler (feed builds, digests, retries) and the web app in one long-lived process.

The site, send and web modules are imported when the command runs, not with this module, which every
`feedpub` command loads (measured with `python -X importtime -m feedpub --help`, figures below).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from feedpub.cli import LOG_WORDS, PARTIAL, App, error_text, fail, sending_line, stop_on_signals
from feedpub.cli import words as _words
from feedpub.cli.build import archive_summary, build_summary
from feedpub.cli.fediverse import published_line as fediverse_published_line
from feedpub.cli.notify import notify, watchdog_interval
from feedpub.cli.subscribers import open_store_or_fail
from feedpub.errors import ConfigError, Problem

if TYPE_CHECKING:
    from feedpub.config import Config
    from feedpub.records import Subscriber
    from feedpub.site.build import Topic
    from feedpub.site.output import WriteResult
    from feedpub.site.websub import Publisher
    from feedpub.store import Store
    from feedpub.strings import Strings

log = logging.getLogger("feedpub.run")
SHOWN = 20     # problems (and warnings) of one job that /healthz lists; `feedpub check` lists all of a build's
# A line of /healthz and the dashboard: in English (what /healthz gives monitors) and in site.language.
Line = tuple[str, str]


class Daemon:
    """The daemon's jobs and the state /healthz reports. Jobs never raise: a failed run is logged, kept as a
    problem of that job until its next run, and the next one tries again. The log and the dashboard speak
    site.language; /healthz English."""

    def __init__(self, config: Config, store: Store, config_file: Path | None, publisher: Publisher) -> None:
        from feedpub.site.watch import LiveConfig  # lazy: watchfiles, 70 ms

        self.live = LiveConfig(config, config_file)
        self.store = store
        self.publisher = publisher
        self.stop = threading.Event()
        self.topics: tuple[Topic, ...] = ()
        self.last_build: datetime | None = None
        self._building = threading.Lock()      # the timed build and the watcher's never overlap
        self._reported: set[Problem] = set()
        self.last_build_facts: dict[str, int] = {}    # posts, problems and warnings of the last build, for /admin
        # What each job's last run left wrong (problems: /healthz answers 503) or worth a look (warnings).
        self.problems: dict[str, list[Line]] = {}
        self.warnings: dict[str, list[Line]] = {}
        self._voices: tuple[Config, Strings, Strings] | None = None
        # The digest and retry jobs never send at once: the daemon opens smtp.connections, not twice that.
        self.sending = threading.Lock()
        # Called after a build that changed the site, or a reader's change of what they get: the cadence job
        # looks now for new posts and switches to each post's mail (their mail waits digest.post_delay).
        self.on_changed: Callable[[], None] = lambda: None
        self.fediverse_queued = threading.Event()   # wakes the fediverse sender
        self.reading: Any = None      # feedpub.send.dispatch.Reading: the posts read and rendered for mail so far

    @property
    def config(self) -> Config:
        """Reloaded when the file changes (with watching on): [site], [feeds] and [digest] texts apply at the
        next build or issue; the web app, the store, SMTP and the schedules keep what they started with."""
        return self.live.current

    @property
    def words(self) -> Strings:
        """The command line's strings in the current config's site.language."""
        return self._voice()[0]

    def _voice(self) -> tuple[Strings, Strings]:
        """The command line's and the problems' strings, loaded again when the config was; a strings.toml broken
        since is logged and the words in use kept (jobs never raise)."""
        from feedpub.strings import english, operator_strings  # lazy: Jinja, see feedpub.cli.App.strings

        config = self.config
        if self._voices is None or self._voices[0] is not config:
            try:
                self._voices = (config, operator_strings(config, "cli"), operator_strings(config, "problems"))
            except ConfigError as exc:
                log.error("%s", exc)
                kept = self._voices[1:] if self._voices else (english("cli"), english("problems"))
                self._voices = (config, *kept)
        return self._voices[1], self._voices[2]

    def _line(self, key: str, **fields: Any) -> Line:
        from feedpub.strings import english  # lazy: as in _voice

        return english("cli").text(key, **fields), self.words.text(key, **fields)

    def _problem(self, problem: Problem) -> Line:
        from feedpub.strings import problem_line  # lazy: as in _voice

        return str(problem), problem_line(problem, self._voice()[1])

    def build(self) -> None:
        """The feeds, then the digest archive from the store. Both are incremental: when nothing changed they
        only list the posts and look at the store's file, so they simply run."""
        with self._building:
            config = self.config
            changed = self._build_feeds(config)
            self._write_archive(config)
            # At start, when the feeds changed, and after a failed try.
            if changed or self.problems.get("fediverse") != []:
                self._publish_fediverse(config)

    def _build_feeds(self, config: Config) -> bool:
        """True when the build wrote or removed a file (False too when it failed)."""
        from feedpub.site.build import build_site  # lazy: 40 ms

        try:
            report = build_site(config, on_written=lambda written: self._announce(config, written))
        except ConfigError as exc:
            line = self._line("daemon_build_failed", reason=str(exc))
            log.error("%s", line[1])
            self._outcome("build", [line])
            return False
        except Exception as exc:
            line = self._line("daemon_build_failed", reason=repr(exc))
            log.exception("%s", self.words.text("build_failed_logged"))
            self._outcome("build", [line])
            return False
        lines = {problem: self._problem(problem) for problem in report.problems}
        for problem, line in lines.items():    # each once, not at every timed rebuild
            if problem not in self._reported:
                log.warning("%s", line[1])
        self._reported = set(report.problems)
        if report.written.written or report.written.removed:   # an unchanged site is not worth a log line
            log.info("%s", build_summary(self.words, report))
            self.on_changed()
        self.topics, self.last_build = report.topics, datetime.now(UTC)
        errors = [line for problem, line in lines.items() if not problem.warning]
        warnings = [line for problem, line in lines.items() if problem.warning]
        self._outcome("build", errors, warnings)
        self.last_build_facts = {"last_build_posts": report.posts, "last_build_problems": len(errors),
                                 "last_build_warnings": len(warnings)}
        return bool(report.written.written or report.written.removed)

    def _outcome(self, job: str, problems: list[Line], warnings: Sequence[Line] = ()) -> None:
        """What `job`'s last run left wrong and worth a look, in place of its run before."""
        self.problems[job], self.warnings[job] = problems, list(warnings)

    def _write_archive(self, config: Config) -> None:
        from feedpub.send.archive_sync import refresh  # lazy: loads site.build, as the build above

        try:
            archived = refresh(config, self.store)
        except Exception as exc:
            log.exception("%s", self.words.text("archive_failed_logged"))
            self._outcome("archive", [self._line("archive_failed", reason=repr(exc))])
            return
        self._outcome("archive", [])
        if archived.written:
            log.info("%s", archive_summary(self.words, archived))

    def _publish_fediverse(self, config: Config) -> None:
        """Queue what the fediverse accounts publish of the site as built (each build: it reads the store, where
        what was published is kept, so a build another process made is caught up too)."""
        if not config.activitypub.enabled:
            return
        from feedpub.fediverse.publish import publish  # lazy: loads site.feeds, already loaded by a build

        try:
            published = publish(config, self.store)
        except Exception as exc:
            log.exception("%s", self.words.text("fediverse_failed_logged"))
            self._outcome("fediverse", [self._line("fediverse_failed", reason=repr(exc))])
            return
        self._outcome("fediverse", [])
        if published.queued:
            self.fediverse_queued.set()
        if published.changed:
            log.info("%s", fediverse_published_line(self.words, published))

    def deliver_fediverse(self) -> None:
        """The fediverse sender, until the daemon stops (its own thread)."""
        from feedpub.fediverse.delivery import keep_delivering  # lazy: httpx, sqlalchemy

        keep_delivering(lambda: self.config, self.store, self.stop, self.fediverse_queued, lambda: self.words)

    def _announce(self, config: Config, written: WriteResult) -> None:
        """Hand the feeds a build rewrote to the WebSub publisher (it pings in its own thread)."""
        from feedpub.site.websub import changed_feeds  # lazy: loads site.feeds, already loaded by the build

        if config.feeds.websub_hub:
            self.publisher.publish(config.feeds.websub_hub, changed_feeds(config, written.written))

    def watch(self) -> None:
        """Rebuild on every batch of changes to the posts or the config file, until `stop`."""
        from feedpub.site.watch import follow  # lazy: watchfiles, 70 ms

        for _batch in follow(self.live, self.stop):
            self.build()

    def digest(self) -> datetime | None:
        """Send whatever is due of every cadence (each stream's digest, post mails, welcomes); returns when
        the next falls due, for the cadence job to wake then."""
        from feedpub.config import parse_duration  # lazy: 26 ms
        from feedpub.send.dispatch import Reading  # lazy: 0.3 s (sqlalchemy)
        from feedpub.send.reader_mail import next_due, send_due

        if self.stop.is_set():
            return None
        self.reading = self.reading or Reading()
        config = self.config
        try:
            with self.sending:
                now = datetime.now(UTC)
                results = send_due(config, self.store, now, stop=self.stop,
                                   missed_after=parse_duration(config.digest.misfire_grace),
                                   send=config.digest.send_in_daemon, reading=self.reading)
            wake = next_due(config, self.store, datetime.now(UTC))
        except Exception as exc:
            log.exception("%s", self.words.text("digest_failed_logged"))
            self._outcome("digest", [self._line("digest_failed", reason=repr(exc))])
            return None
        problems = list(dict.fromkeys(p for result in results for p in result.problems))
        lines = {problem: self._problem(problem) for problem in problems}
        for line in lines.values():
            log.warning("%s", line[1])
        self._outcome("digest", [line for problem, line in lines.items() if not problem.warning],
                      [line for problem, line in lines.items() if problem.warning])
        for result in results:
            if result.composed is not None:
                log.info("%s", result.composed)     # in site.language: feedpub.cli.LogWords
            if result.summary is None:
                log.info("%s", result.note)
            else:
                log.info("%s", self.words.text("issue_sent", period=result.period,
                                               counts=sending_line(self.words, result.summary)))
        return wake

    def retry(self) -> datetime | None:
        """Send the rows that are due (deferred ones whose retry time has come, those of a resumed issue);
        returns the next retry time."""
        from feedpub.send.dispatch import send_due_retries  # lazy: 0.3 s (sqlalchemy)

        try:
            # While the digest job sends, it takes the due rows of its issue itself; the rest wait for it.
            if not self.stop.is_set() and self.sending.acquire(blocking=False):
                try:
                    summary = send_due_retries(self.config, self.store, datetime.now(UTC), stop=self.stop)
                finally:
                    self.sending.release()
                if summary is not None:
                    log.info("%s", self.words.text("retries_sent", counts=sending_line(self.words, summary)))
            wake = self.store.next_retry()
        except Exception as exc:
            log.exception("%s", self.words.text("retry_failed_logged"))
            self._outcome("retry", [self._line("retry_failed", reason=repr(exc))])
            return None
        self._outcome("retry", [])
        return wake

    def read_bounces(self) -> None:
        """Read the bounce mailbox and IMAP folder; each message that changed something is logged."""
        from feedpub.send.bounces.sources import poll  # lazy: flufl.bounce + imapclient, ~120 ms (-X importtime)

        def logged(read: Any) -> None:
            if read.unreadable and any(outcome.evidence_id is not None for outcome in read.outcomes):
                log.warning("%s: %s", read.where, read.unreadable)
            for outcome in read.outcomes:
                if outcome.evidence_id is not None and outcome.kind != "not-a-bounce":
                    log.info("%s: %s: %s: %s", read.where, outcome.recipient or "-", outcome.kind, outcome.effect)

        try:
            poll(self.config, self.store, logged)
        except Exception as exc:
            log.exception("%s", self.words.text("bounces_failed_logged"))
            self._outcome("bounces", [self._line("bounces_failed", reason=repr(exc))])
            return
        self._outcome("bounces", [])

    def welcome(self, reader: Subscriber) -> None:
        """Queue a newly confirmed reader's welcome mail; the retry job sends it within RETRY_LOOK_EVERY."""
        from feedpub.send.reader_mail import queue_welcome  # lazy: 0.3 s (sqlalchemy)

        queue_welcome(self.config, self.store, reader, datetime.now(UTC))

    def send_confirmation(self, email: str, subject: str, text: str) -> None:
        from feedpub.send import messages, smtp  # lazy: 90 ms

        smtp.send_one(self.config, messages.notice(self.config, email, subject, text), email)

    def health(self) -> dict[str, Any]:
        """/healthz's facts: `problems` (something does not work: 503) apart from `warnings` (it works; look
        when you can), at most SHOWN of each job, in English; `shown`: the same lines in site.language, for the
        dashboard (/healthz leaves them out)."""
        from feedpub import holds  # lazy: sqlalchemy (0.25 s), which `feedpub --help` would otherwise load

        next_retry = self.store.next_retry()
        websub = self.publisher.last()
        paused = holds.reasons(self.store)
        unaccepted = [self._line("websub_refused", hub=hub, status=ping["status"])
                      for hub, ping in websub.items() if not ping["ok"]]
        problems = self._shown({**self.problems, "paused": [self._line("issue_paused", period=period, reason=why)
                                                            for period, why in paused.items()]})
        warnings = self._shown({**self.warnings, "websub": unaccepted})
        return {"last_build": self.last_build.isoformat(timespec="seconds") if self.last_build else None,
                "next_retry": next_retry.isoformat(timespec="seconds") if next_retry else None,
                "websub": websub, "paused_issues": paused, **self.last_build_facts,
                "problems": [english for english, _ in problems], "warnings": [english for english, _ in warnings],
                "shown": {"problems": [shown for _, shown in problems], "warnings": [shown for _, shown in warnings]}}

    def _shown(self, by_job: dict[str, list[Line]]) -> list[Line]:
        """Each job's lines, at most SHOWN of one job, then how many more."""
        lines = []
        for found in by_job.values():
            lines += found[:SHOWN]
            if len(found) > SHOWN:
                lines.append(self._line("and_more", count=len(found) - SHOWN))
        return lines


@click.command()
@click.option("--no-watch", is_flag=True,
              help="Rebuild only every feeds.rebuild_every (for file systems without change notifications, e.g. NFS).")
@click.pass_obj
def run(app: App, no_watch: bool) -> None:
    """The daemon: feed builds on every change (and every feeds.rebuild_every), digests, and the web app,
    until SIGTERM/SIGINT (exit 0). Exits 2 when it cannot start (config, store, web.listen in use) and 1
    when one of its parts (web server, scheduler, watcher) stops on its own, so systemd restarts it."""
    import uvicorn  # lazy: 40 ms

    from feedpub.scheduler import CADENCE_JOB, describe_jobs, make_scheduler, wake_now  # lazy: 80 ms
    from feedpub.site.websub import Publisher  # lazy: loads site.feeds, 0.23 s
    from feedpub.web.app import create_app  # lazy: 0.3 s

    config = app.config
    store = open_store_or_fail(app)
    daemon = Daemon(config, store, app.config_path, Publisher())
    LOG_WORDS.source = lambda: daemon._voice()[1]   # the log follows a reloaded site.language
    try:
        config.smtp.password()
        if config.bounces.imap_url:   # a missing password is found at start, not at the first poll
            config.bounces.imap_password()
        web_app = create_app(config, store, send_confirmation=daemon.send_confirmation,
                             topics=lambda: daemon.topics, health=daemon.health, welcome=daemon.welcome,
                             chosen=lambda: daemon.on_changed())
    except ConfigError as exc:
        fail(error_text(exc))
    listening = _listen(config)
    server = uvicorn.Server(uvicorn.Config(web_app, log_level="warning", proxy_headers=True,
                                           forwarded_allow_ips="127.0.0.1", lifespan="off"))
    scheduler = make_scheduler(config, build=daemon.build, digest=daemon.digest, retry=daemon.retry,
                               read_bounces=daemon.read_bounces)
    daemon.on_changed = lambda: wake_now(scheduler, CADENCE_JOB)

    def stop_web() -> None:
        server.should_exit = True

    stop_on_signals(daemon.stop, then="daemon_then", on_first=stop_web)
    web = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, name="web", daemon=True)
    web.start()
    scheduler.start()
    watcher = threading.Thread(target=daemon.watch, name="watch", daemon=True)
    t = app.strings
    parts = {t.text("part_web", listen=config.web.listen): web.is_alive, t.text("part_scheduler"): scheduler.alive}
    fediverse = threading.Thread(target=daemon.deliver_fediverse, name="fediverse", daemon=True)
    if config.activitypub.enabled:
        web_app.state.fediverse.queued = daemon.fediverse_queued.set     # an inbox's Accept wakes the sender
        fediverse.start()
        parts[t.text("part_fediverse")] = fediverse.is_alive
    if not no_watch:
        watcher.start()
        parts[t.text("part_watcher")] = watcher.is_alive
    while not server.started and web.is_alive() and not daemon.stop.wait(0.02):
        pass
    log.info("%s", t.text("daemon_running", listen=config.web.listen, public=config.web.public_url))
    for line in describe_jobs(scheduler, config, t):
        log.info("%s", line)
    if not no_watch:
        log.info("%s", t.text("daemon_watching", posts=config.posts_dir,
                              config=app.config_path or t.text("no_config_file")))
    if server.started:
        notify("READY=1", f"STATUS={t.text('daemon_status', listen=config.web.listen, public=config.web.public_url)}")
    dead = _supervise(daemon.stop, parts, watchdog_interval())
    if dead:
        log.error("%s", t.text("part_died", part=dead))
        daemon.stop.set()
        stop_web()
    notify("STOPPING=1", f"STATUS={t.text('stopping_status')}")
    scheduler.shutdown(wait=True)
    if watcher.is_alive():
        watcher.join()     # after the build in hand
    if fediverse.is_alive():
        fediverse.join()   # after the requests in flight
    daemon.publisher.close(timeout=config.smtp.timeout)
    web.join(timeout=config.smtp.timeout)
    listening.close()
    store.engine.dispose()
    log.info("%s", t.text("stopped"))
    if dead:
        raise SystemExit(PARTIAL)


def _listen(config: Config) -> socket.socket:
    """The web app's socket, bound before anything starts: an address in use is exit 2 naming it, not a daemon
    that builds and sends on without the pages its mail links to."""
    host, _, port = config.web.listen.rpartition(":")
    if not port.isdigit():
        fail(_words().text("listen_malformed", config=config.source, listen=config.web.listen))
    host = host.strip("[]") or "127.0.0.1"
    listening = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        # As uvicorn binds: SO_REUSEADDR, so a restart finds the port free while the old connections time out.
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, int(port)))
        listening.listen(2048)
        return listening
    except OSError as exc:
        listening.close()
        fail(_words().text("listen_unavailable", config=config.source, listen=config.web.listen, reason=exc.strerror))


def _supervise(stop: threading.Event, parts: dict[str, Callable[[], bool]], watchdog: timedelta | None) -> str | None:
    """Wait for `stop`, telling systemd's watchdog (when asked for) that all is well; the name of the first part
    that stopped on its own, if one did before."""
    tick = min(1.0, watchdog.total_seconds()) if watchdog else 1.0
    while not stop.wait(tick):
        dead = next((name for name, alive in parts.items() if not alive()), None)
        if dead:
            return dead
        if watchdog:
            notify("WATCHDOG=1")
    return None
