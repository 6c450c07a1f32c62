"""`feedpub worker`: claim and send due deliveries of any issue from the store, until SIGTERM/SIGINT.

Run several, on as many machines as needed, against one PostgreSQL store; `feedpub run` (with
`digest.send_in_daemon = false`) or cron's `feedpub digest send` composes and queues the issues.
Deferred rows are sent again by the same loop once their retry time has come.
"""

from __future__ import annotations

import logging
import threading

import click

from feedpub.cli import OK, App, error_text, fail, recipient_line, sending_line, stop_on_signals
from feedpub.cli.fediverse import sending_line as fediverse_sending_line
from feedpub.cli.notify import notify
from feedpub.cli.subscribers import open_store_or_fail
from feedpub.errors import ConfigError

log = logging.getLogger("feedpub.worker")


@click.command()
@click.option("--lease", default="5m", show_default=True, metavar="DURATION",
              help="How long claimed rows stay this worker's without renewal; a dead worker's rows are taken "
                   "over after it (at once by a worker on the same host).")
@click.option("--idle", default="2s", show_default=True, metavar="DURATION",
              help="Pause between looks at the store when nothing is due.")
@click.pass_obj
def worker(app: App, lease: str, idle: str) -> None:
    """Send queued deliveries of every issue (and, with activitypub.enabled, the fediverse's); exits 0 on SIGTERM
    after the messages in flight."""
    # Imported here, not with the module that `feedpub --help` loads (python -X importtime -m feedpub):
    from sqlalchemy.exc import SQLAlchemyError  # 0.2 s

    from feedpub.config import parse_duration  # 26 ms
    from feedpub.fediverse.delivery import deliver as deliver_fediverse  # httpx, 0.1 s
    from feedpub.send.delivery import deliver  # 0.3 s, with sqlalchemy
    from feedpub.send.dispatch import Messages

    config, t = app.config, app.strings
    try:
        lease_time, idle_time = parse_duration(lease), parse_duration(idle)
    except ValueError as exc:
        fail(t.text("bad_option", option="--lease/--idle", reason=error_text(exc)))
    try:
        config.web.secret()       # the unsubscribe links in every message are signed with it
        config.smtp.password()
    except ConfigError as exc:
        fail(error_text(exc))
    store = open_store_or_fail(app)
    stop = threading.Event()

    stop_on_signals(stop, then="worker_then")
    messages = Messages(config, store)
    relay = f"{config.smtp.host}:{config.smtp.port}"
    log.info("%s", t.text("worker_started", store=store.shown, relay=relay))
    # No WATCHDOG=1: one pass of the loop sends a whole batch of an issue, for longer than a watchdog waits.
    notify("READY=1", f"STATUS={t.text('worker_status', store=store.shown, relay=relay)}")
    while not stop.is_set():
        try:
            summary = deliver(config, store, None, messages, stop=stop, lease=lease_time)
        except SQLAlchemyError:   # the database restarted or went away for a moment: keep the worker
            log.exception("%s", t.text("worker_store_error", idle=idle))
            stop.wait(idle_time.total_seconds())
            continue
        for outcome in summary.problems:
            log.warning("%s", recipient_line(t, outcome))
        if summary.sent or summary.problems or summary.skipped:
            log.info("%s", sending_line(t, summary))
        if config.activitypub.enabled:
            try:
                shared = deliver_fediverse(config, store, stop=stop, lease=lease_time)
            except SQLAlchemyError:
                log.exception("%s", t.text("worker_store_error", idle=idle))
            else:
                if shared.counts or shared.paused or shared.dropped:
                    log.info("%s", fediverse_sending_line(t, shared))
        stop.wait(idle_time.total_seconds())
    notify("STOPPING=1", f"STATUS={t.text('stopping_status')}")
    store.engine.dispose()
    log.info("%s", t.text("stopped"))
    raise SystemExit(OK)
