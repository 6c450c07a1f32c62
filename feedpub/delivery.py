"""The sending engine: persistent SMTP connections in parallel, a shared rate limit, and the crash-safe ledger.

Every row is marked `sending` (and committed) before its SMTP transaction and `sent` right after the
server's 250, so a process killed in between resends at most the messages that were in flight.
4xx replies and broken connections defer a row with exponential backoff; a 5xx for a recipient fails
it and suppresses the address.
"""

from __future__ import annotations

import logging
import queue
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Literal, Protocol

from feedpub.config import Config, SmtpConfig
from feedpub.store import Delivery, Store, StoredIssue, utcnow

log = logging.getLogger(__name__)

# First retry after a 4xx waits this long; each further one twice as long.
RETRY_BASE = timedelta(minutes=1)


class MessageTemplate(Protocol):
    def render(self, *, to_email: str, to_name: str, unsubscribe_url: str, preferences_url: str,
               message_id: str) -> bytes: ...


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    email: str
    status: Literal["sent", "deferred", "failed"]
    reply: str


@dataclass(frozen=True)
class Summary:
    sent: int
    deferred: int
    failed: int
    problems: tuple[Outcome, ...]   # the deferred and failed rows, with the server's reply
    stopped: bool                    # the stop flag ended the run early

    def line(self) -> str:
        counts = f"{self.sent} sent, {self.deferred} deferred, {self.failed} failed"
        return counts + (" (stopped)" if self.stopped else "")


class RateLimiter:
    """Never more than `per_second` starts per second, across all threads."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            start = max(self._next, time.monotonic())
            self._next = start + self.interval
        time.sleep(max(0.0, start - time.monotonic()))


class _Refused(Exception):
    """The server answered a command with an error reply."""

    def __init__(self, code: int, message: bytes | str, *, recipient: bool = False) -> None:
        super().__init__(_format(code, message))
        self.code = code
        self.recipient = recipient


def personalised(config: Config, period: str,
                 templates: Mapping[str, MessageTemplate]) -> Callable[[Delivery], bytes]:
    """The message for one ledger row: its variant's template, filled in for that recipient."""
    from feedpub import mail

    def message(row: Delivery) -> bytes:
        return templates[row.variant_key].render(
            to_email=row.email, to_name=row.name, unsubscribe_url=mail.unsubscribe_url(config, row.email),
            preferences_url=mail.preferences_url(config, row.email),
            message_id=mail.new_message_id(config, period, row.email))

    return message


def deliver(config: Config, store: Store, issue: StoredIssue, message_for: Callable[[Delivery], bytes], *,
            stop: threading.Event | None = None, on_outcome: Callable[[Outcome], None] | None = None,
            retry_base: timedelta = RETRY_BASE, wait_for_retries: timedelta = timedelta(0)) -> Summary:
    """Send every due row of `issue`. Retries that come due within `wait_for_retries` are waited for;
    later ones are left deferred for the next run."""
    stop = stop or threading.Event()
    run = _Run(config, store, message_for, stop, on_outcome, retry_base)
    deadline = time.monotonic() + wait_for_retries.total_seconds()
    while not stop.is_set():
        rows = store.due_deliveries(issue.id, utcnow())
        if rows:
            run.send_all(rows)
        retry_at = store.next_retry(issue.id)
        if retry_at is None or stop.is_set():
            break
        delay = max(0.0, (retry_at - utcnow()).total_seconds())
        if time.monotonic() + delay > deadline:
            break
        stop.wait(delay)
    return run.summary()


def send_one(config: Config, message: bytes, to_email: str) -> str:
    """Send a single message outside the ledger (test copies); the server's reply, or SMTPException/OSError."""
    conn = connect(config.smtp)
    try:
        return _transaction(conn, envelope_sender(config), to_email, message)
    finally:
        _close(conn)


def envelope_sender(config: Config) -> str:
    return parseaddr(config.digest.from_)[1]


def connect(smtp: SmtpConfig) -> smtplib.SMTP:
    """An authenticated connection; certificates verified for ssl and starttls."""
    password = smtp.password()
    context = ssl.create_default_context()
    if smtp.security == "ssl":
        conn: smtplib.SMTP = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout, context=context)
    else:
        conn = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
    try:
        conn.ehlo()
        if smtp.security == "starttls":
            conn.starttls(context=context)
            conn.ehlo()
        if smtp.username:
            conn.login(smtp.username, password)
    except BaseException:
        _close(conn)
        raise
    return conn


class _Run:
    """One `deliver` call: shared limiter, counters, and the per-row ledger updates."""

    def __init__(self, config: Config, store: Store, message_for: Callable[[Delivery], bytes],
                 stop: threading.Event, on_outcome: Callable[[Outcome], None] | None, retry_base: timedelta) -> None:
        self.smtp = config.smtp
        self.sender = envelope_sender(config)
        self.store = store
        self.message_for = message_for
        self.stop = stop
        self.on_outcome = on_outcome
        self.retry_base = retry_base
        self.limiter = RateLimiter(config.smtp.rate_per_second)
        self.lock = threading.Lock()
        self.final: dict[int, Outcome] = {}

    def send_all(self, rows: list[Delivery]) -> None:
        work: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
        for row in rows:
            work.put(row)
        threads = [threading.Thread(target=self._worker, args=(work,), name=f"smtp-{i}")
                   for i in range(min(self.smtp.connections, len(rows)))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def summary(self) -> Summary:
        outcomes = list(self.final.values())
        count = {status: sum(o.status == status for o in outcomes) for status in ("sent", "deferred", "failed")}
        return Summary(count["sent"], count["deferred"], count["failed"],
                       tuple(o for o in outcomes if o.status != "sent"), self.stop.is_set())

    def _worker(self, work: queue.SimpleQueue[Delivery]) -> None:
        conn: smtplib.SMTP | None = None
        try:
            while not self.stop.is_set():
                try:
                    row = work.get_nowait()
                except queue.Empty:
                    return
                self.limiter.wait()
                self.store.mark_sending(row.id)
                if conn is None:
                    try:
                        conn = connect(self.smtp)
                    except (smtplib.SMTPException, OSError) as exc:
                        # The server is unavailable: this slot stops for this pass; the rows it did not
                        # take stay queued for the next pass or run.
                        self._temporary(row, _reply(exc))
                        return
                conn = self._send(conn, row)
        finally:
            if conn is not None:
                _close(conn)

    def _send(self, conn: smtplib.SMTP, row: Delivery) -> smtplib.SMTP | None:
        """Send one row; returns the connection if it is still usable."""
        try:
            message = self.message_for(row)
        except ValueError as exc:   # e.g. an address the message cannot carry
            self._record(Outcome(row.id, row.email, "failed", f"cannot build the message: {exc}"))
            return conn
        try:
            reply = _transaction(conn, self.sender, row.email, message)
        except _Refused as exc:
            if 400 <= exc.code < 500:
                self._temporary(row, str(exc))
                if exc.code == 421:   # the server is closing this connection
                    _close(conn)
                    return None
                return conn
            suppress = str(exc) if exc.recipient else None
            self._record(Outcome(row.id, row.email, "failed", str(exc)), suppress=suppress)
            return conn
        except (smtplib.SMTPException, OSError) as exc:
            # Dropped connection or timeout: nobody knows whether the server kept the message; retry it.
            self._temporary(row, _reply(exc))
            _close(conn)
            return None
        self._record(Outcome(row.id, row.email, "sent", reply))
        return conn

    def _temporary(self, row: Delivery, reply: str) -> None:
        attempts = row.attempts + 1
        if attempts > self.smtp.max_retries:
            self._record(Outcome(row.id, row.email, "failed", f"gave up after {attempts} attempts: {reply}"))
            return
        retry_at = utcnow() + self.retry_base * 2 ** (attempts - 1)
        self._record(Outcome(row.id, row.email, "deferred", reply), retry_at=retry_at)

    def _record(self, outcome: Outcome, *, suppress: str | None = None, retry_at: datetime | None = None) -> None:
        if outcome.status == "sent":
            self.store.mark_sent(outcome.delivery_id, outcome.reply)
        elif outcome.status == "deferred":
            assert retry_at is not None
            self.store.mark_deferred(outcome.delivery_id, outcome.reply, retry_at)
        else:
            self.store.mark_failed(outcome.delivery_id, outcome.reply, suppress=suppress)
        if outcome.status != "sent":
            log.debug("%s: %s (%s)", outcome.email, outcome.status, outcome.reply)
        with self.lock:
            self.final[outcome.delivery_id] = outcome
            if self.on_outcome:
                self.on_outcome(outcome)


def _transaction(conn: smtplib.SMTP, sender: str, recipient: str, message: bytes) -> str:
    """MAIL, RCPT, DATA for one recipient; the final reply, or _Refused with the failing one."""
    options = ["BODY=8BITMIME"] if conn.has_extn("8bitmime") and not message.isascii() else []
    code, text = conn.mail(sender, options)
    if code != 250:
        _reset(conn)
        raise _Refused(code, text)
    code, text = conn.rcpt(recipient)
    if code not in (250, 251):
        _reset(conn)
        raise _Refused(code, text, recipient=True)
    try:
        code, text = conn.data(message)
    except smtplib.SMTPDataError as exc:   # DATA itself refused (no 354)
        _reset(conn)
        raise _Refused(exc.smtp_code, exc.smtp_error) from exc
    if code != 250:
        raise _Refused(code, text)
    return _format(code, text)


def _format(code: int, text: bytes | str) -> str:
    return f"{code} {text.decode('utf-8', 'replace') if isinstance(text, bytes) else text}".strip()


def _reset(conn: smtplib.SMTP) -> None:
    try:
        conn.rset()
    except (smtplib.SMTPException, OSError):
        pass  # the next command on this connection fails and reconnects


def _close(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        conn.close()


def _reply(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return _format(exc.smtp_code, exc.smtp_error)
    if isinstance(exc, TimeoutError):
        return "timed out waiting for the SMTP server"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
