"""`feedpub run`: the scheduler (feed builds, digests, retries) and the web app in one long-lived process.

The site, send and web modules are imported when the command runs, not with this module, which every
`feedpub` command loads (measured with `python -X importtime -m feedpub --help`, figures below).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from feedpub.cli import App, fail, stop_on_signals
from feedpub.cli.subscribers import open_store_or_fail
from feedpub.errors import ConfigError, Problem

if TYPE_CHECKING:
    from feedpub.config import Config
    from feedpub.site.output import WriteResult
    from feedpub.site.websub import Publisher
    from feedpub.store import Store

log = logging.getLogger("feedpub.run")


class Daemon:
    """The daemon's jobs and the state /healthz reports. Jobs never raise: a failed run is logged and
    the next one tries again."""

    def __init__(self, config: Config, store: Store, config_file: Path | None, publisher: Publisher) -> None:
        from feedpub.site.watch import LiveConfig  # lazy: watchfiles, 70 ms

        self.live = LiveConfig(config, config_file)
        self.store = store
        self.publisher = publisher
        self.stop = threading.Event()
        self.categories: tuple[str, ...] = ()
        self.last_build: datetime | None = None
        self._building = threading.Lock()      # the timed build and the watcher's never overlap
        self._reported: set[Problem] = set()
        self.last_build_facts: dict[str, int] = {}    # posts and problems of the last build, for /admin
        # The digest and retry jobs never send at once: the daemon opens smtp.connections, not twice that.
        self.sending = threading.Lock()

    @property
    def config(self) -> Config:
        """Reloaded when the file changes (with watching on): [site], [feeds] and [digest] texts apply at the
        next build or issue; the web app, the store, SMTP and the schedules keep what they started with."""
        return self.live.current

    def build(self) -> None:
        """The feeds, then the digest archive from the store. Both are incremental: when nothing changed they
        only list the posts and look at the store's file, so they simply run."""
        with self._building:
            config = self.config
            self._build_feeds(config)
            self._write_archive(config)

    def _build_feeds(self, config: Config) -> None:
        from feedpub.site.build import build_site  # lazy: 40 ms

        try:
            report = build_site(config, on_written=lambda written: self._announce(config, written))
        except ConfigError as exc:
            log.error("build failed, published files left as they were: %s", exc)
            return
        except Exception:
            log.exception("build failed, published files left as they were")
            return
        for problem in report.problems:    # each once, not at every timed rebuild
            if problem not in self._reported:
                log.warning("%s", problem)
        self._reported = set(report.problems)
        if report.written.written or report.written.removed:   # an unchanged site is not worth a log line
            log.info("%s", report.summary())
        self.categories, self.last_build = report.categories, datetime.now(UTC)
        self.last_build_facts = {"last_build_posts": report.posts, "last_build_problems": len(report.problems)}

    def _write_archive(self, config: Config) -> None:
        from feedpub.send.archive_sync import refresh  # lazy: loads site.build, as the build above

        try:
            archived = refresh(config, self.store)
        except Exception:
            log.exception("digest archive not written, its files left as they were")
            return
        if archived.written:
            log.info("%s", archived.summary())

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

    def digest(self) -> None:
        from feedpub.config import parse_duration  # lazy: 26 ms
        from feedpub.send.dispatch import send_due_issue  # lazy: 0.3 s (sqlalchemy)

        if self.stop.is_set():
            return
        try:
            with self.sending:
                result = send_due_issue(self.config, self.store, datetime.now(UTC), stop=self.stop,
                                        missed_after=parse_duration(self.config.digest.misfire_grace),
                                        send=self.config.digest.send_in_daemon)
        except Exception:
            log.exception("digest failed")
            return
        for problem in result.problems:
            log.warning("%s", problem)
        if result.summary is None:
            log.info("%s", result.note)
        else:
            log.info("issue %s: %s", result.period, result.summary.line())

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
                    log.info("retries: %s", summary.line())
            return self.store.next_retry()
        except Exception:
            log.exception("retry failed")
            return None

    def read_bounces(self) -> None:
        """Read the bounce mailbox and IMAP folder; each message that changed something is logged."""
        from feedpub.send.bounces.sources import poll  # lazy: flufl.bounce + imapclient, ~120 ms (-X importtime)

        def logged(read: Any) -> None:
            for outcome in read.outcomes:
                if outcome.evidence_id is not None and outcome.kind != "not-a-bounce":
                    log.info("%s: %s: %s: %s", read.where, outcome.recipient or "-", outcome.kind, outcome.effect)

        try:
            poll(self.config, self.store, logged)
        except Exception:
            log.exception("reading bounces failed")

    def send_confirmation(self, email: str, subject: str, text: str) -> None:
        from feedpub.send import messages, smtp  # lazy: 90 ms

        smtp.send_one(self.config, messages.notice(self.config, email, subject, text), email)

    def health(self) -> dict[str, Any]:
        from feedpub import holds  # lazy: sqlalchemy (0.25 s), which `feedpub --help` would otherwise load

        next_retry = self.store.next_retry()
        return {"last_build": self.last_build.isoformat(timespec="seconds") if self.last_build else None,
                "next_retry": next_retry.isoformat(timespec="seconds") if next_retry else None,
                "websub": self.publisher.last(), "paused_issues": holds.reasons(self.store), **self.last_build_facts}


@click.command()
@click.option("--no-watch", is_flag=True,
              help="Rebuild only every feeds.rebuild_every (for file systems without change notifications, e.g. NFS).")
@click.pass_obj
def run(app: App, no_watch: bool) -> None:
    """The daemon: feed builds on every change (and every feeds.rebuild_every), digests, and the web app,
    until SIGTERM/SIGINT."""
    import uvicorn  # lazy: 40 ms

    from feedpub.scheduler import describe_jobs, make_scheduler  # lazy: 80 ms
    from feedpub.site.websub import Publisher  # lazy: loads site.feeds, 0.23 s
    from feedpub.web.app import create_app  # lazy: 0.3 s

    config = app.config
    store = open_store_or_fail(app)
    daemon = Daemon(config, store, app.config_path, Publisher())
    host, _, port = config.web.listen.rpartition(":")
    try:
        config.smtp.password()
        if config.bounces.imap_url:   # a missing password is found at start, not at the first poll
            config.bounces.imap_password()
        web_app = create_app(config, store, send_confirmation=daemon.send_confirmation,
                             categories=lambda: daemon.categories, health=daemon.health)
    except ConfigError as exc:
        fail(str(exc))
    if not port.isdigit():
        fail(f"{config.source}: 'web.listen': {config.web.listen!r} (expected HOST:PORT, e.g. 127.0.0.1:8080)")
    server = uvicorn.Server(uvicorn.Config(web_app, host=host.strip("[]") or "127.0.0.1", port=int(port),
                                           log_level="warning", proxy_headers=True,
                                           forwarded_allow_ips="127.0.0.1", lifespan="off"))
    scheduler = make_scheduler(config, build=daemon.build, digest=daemon.digest, retry=daemon.retry,
                               read_bounces=daemon.read_bounces)

    def stop_web() -> None:
        server.should_exit = True

    stop_on_signals(daemon.stop, then="rows left 'sending' are resumed at next start", on_first=stop_web)
    web = threading.Thread(target=server.run, name="web", daemon=True)
    web.start()
    scheduler.start()
    watcher = threading.Thread(target=daemon.watch, name="watch", daemon=True)
    if not no_watch:
        watcher.start()
    log.info("running: web on http://%s, public at %s", config.web.listen, config.web.public_url)
    for line in describe_jobs(scheduler, config):
        log.info("%s", line)
    if not no_watch:
        log.info("watching %s and %s for changes", config.posts_dir, app.config_path or "no config file")
    while not daemon.stop.wait(1):
        pass
    scheduler.shutdown(wait=True)
    if watcher.is_alive():
        watcher.join()     # after the build in hand
    daemon.publisher.close(timeout=config.smtp.timeout)
    web.join(timeout=config.smtp.timeout)
    store.engine.dispose()
    log.info("stopped")
