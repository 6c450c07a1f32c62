"""`feedpub run`: the scheduler (feed builds, digests) and the web app in one long-lived process."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

import click

from feedpub.cli import App, fail, stop_on_signals
from feedpub.errors import ConfigError

log = logging.getLogger("feedpub.run")


class Daemon:
    """The daemon's jobs and the state /healthz reports. Jobs never raise: a failed run is logged and
    the next one tries again."""

    def __init__(self, config: Any, store: Any) -> None:
        self.config = config
        self.store = store
        self.stop = threading.Event()
        self.categories: tuple[str, ...] = ()
        self.last_build: datetime | None = None

    def build(self) -> None:
        """The build is incremental: when nothing changed it only lists the posts, so it simply runs."""
        from feedpub.site.build import build_site

        try:
            report = build_site(self.config)
        except Exception:
            log.exception("build failed")
            return
        if report.written.written or report.written.removed:   # an unchanged site is not worth a log line
            for problem in report.problems:
                log.warning("%s", problem)
            log.info("%s", report.summary())
        self.categories, self.last_build = report.categories, datetime.now(UTC)

    def digest(self) -> None:
        from feedpub.config import parse_duration
        from feedpub.send.dispatch import send_due_issue

        if self.stop.is_set():
            return
        try:
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

    def send_confirmation(self, email: str, subject: str, text: str) -> None:
        from feedpub.send import messages, smtp

        smtp.send_one(self.config, messages.notice(self.config, email, subject, text), email)

    def health(self) -> dict[str, Any]:
        return {"last_build": self.last_build.isoformat(timespec="seconds") if self.last_build else None}


@click.command()
@click.pass_obj
def run(app: App) -> None:
    """The daemon: scheduled feed builds and digests plus the web app, until SIGTERM/SIGINT."""
    import uvicorn

    from feedpub.cli.subscribers import open_store_or_fail
    from feedpub.scheduler import describe_jobs, make_scheduler
    from feedpub.web.app import create_app

    config = app.config
    store = open_store_or_fail(app)
    daemon = Daemon(config, store)
    host, _, port = config.web.listen.rpartition(":")
    try:
        config.smtp.password()
        web_app = create_app(config, store, send_confirmation=daemon.send_confirmation,
                             categories=lambda: daemon.categories, health=daemon.health)
    except ConfigError as exc:
        fail(str(exc))
    if not port.isdigit():
        fail(f"{config.source}: 'web.listen': {config.web.listen!r} (expected HOST:PORT, e.g. 127.0.0.1:8080)")
    server = uvicorn.Server(uvicorn.Config(web_app, host=host.strip("[]") or "127.0.0.1", port=int(port),
                                           log_level="warning", proxy_headers=True,
                                           forwarded_allow_ips="127.0.0.1", lifespan="off"))
    scheduler = make_scheduler(config, build=daemon.build, digest=daemon.digest)

    def stop_web() -> None:
        server.should_exit = True

    stop_on_signals(daemon.stop, then="rows left 'sending' are resumed at next start", on_first=stop_web)
    web = threading.Thread(target=server.run, name="web", daemon=True)
    web.start()
    scheduler.start()
    log.info("feedpub running: web on http://%s, public at %s", config.web.listen, config.web.public_url)
    for line in describe_jobs(scheduler, config):
        log.info("%s", line)
    while not daemon.stop.wait(1):
        pass
    scheduler.shutdown(wait=True)
    web.join(timeout=config.smtp.timeout)
    store.engine.dispose()
    log.info("stopped")
