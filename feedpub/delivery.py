"""The sending engine: claimed batches streamed to persistent SMTP connections, a rate limit shared by
every worker on the store, and the crash-safe ledger.

Every row is marked `sending` (and committed) before its SMTP transaction and `sent` only after the
server's 250; the outcome of one message is committed together with the `sending` mark of the next, so
a process killed at any point resends at most the messages in flight, one per connection.
4xx replies and broken connections defer a row with exponential backoff from smtp.retry_base; a 5xx for
a recipient fails it and suppresses the address. Rows are claimed a few seconds' worth at a time under
a lease that is renewed while the process lives, so 100,000 recipients go out in bounded memory.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parseaddr
from typing import Literal, Protocol

from feedpub.config import Config, SmtpConfig, parse_duration
from feedpub.store import UNSUBSCRIBED_MEANWHILE, Delivery, Ledger, Mark, Store, StoredIssue, new_worker_id, utcnow

log = logging.getLogger(__name__)

# How long claimed rows stay this process's without a renewal; renewed every third of it (at most 1 s).
DEFAULT_LEASE = timedelta(minutes=5)
# Claim about this many seconds of sending at a time (between a few rows per connection and MAX_BATCH).
_BATCH_SECONDS = 2.0
MAX_BATCH = 500
# A worker silent this long is forgotten (its row in the workers table is removed).
_FORGET_WORKERS = timedelta(days=1)
_LEADING_DOT = re.compile(rb"^\.", re.M)


class MessageTemplate(Protocol):
    def render(self, *, to_email: str, to_name: str, unsubscribe_url: str, preferences_url: str,
               message_id: str) -> bytes: ...


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    email: str
    status: Literal["sent", "deferred", "failed", "skipped"]   # skipped: the reader left meanwhile
    reply: str


@dataclass(frozen=True)
class Summary:
    sent: int
    deferred: int
    failed: int
    problems: tuple[Outcome, ...]   # the deferred and failed rows, with the server's reply
    stopped: bool                    # the stop flag ended the run early
    skipped: int = 0                 # readers who left after the issue was queued

    def line(self) -> str:
        counts = f"{self.sent} sent, {self.deferred} deferred, {self.failed} failed"
        counts += f", {self.skipped} skipped (unsubscribed meanwhile)" if self.skipped else ""
        return counts + (" (stopped)" if self.stopped else "")


class RateLimiter:
    """Never more than `per_second` starts per second, across all threads of this process."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def set_rate(self, per_second: float) -> None:
        with self._lock:
            self.interval = 1.0 / per_second

    def reserve(self) -> float:
        """Take the next start; returns how long to sleep before it."""
        with self._lock:
            now = time.monotonic()
            start = max(self._next, now)
            self._next = start + self.interval
        return start - now


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


def deliver(config: Config, store: Store, issue: StoredIssue | None, message_for: Callable[[Delivery], bytes], *,
            stop: threading.Event | None = None, on_outcome: Callable[[Outcome], None] | None = None,
            retry_base: timedelta | None = None, wait_for_retries: timedelta = timedelta(0),
            lease: timedelta = DEFAULT_LEASE) -> Summary:
    """Send every due row of `issue` (None: of any issue) until none is due. Retries that come due
    within `wait_for_retries` are waited for; later ones are left deferred for the next run."""
    base = retry_base if retry_base is not None else parse_duration(config.smtp.retry_base)
    run = _Run(config, store, message_for, stop or threading.Event(), on_outcome, base, lease)
    return run.go(issue.id if issue else None, wait_for_retries)


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
    """One `deliver` call: the claiming loop (main thread), one sender thread per SMTP connection, the
    shared limiter and the counts."""

    def __init__(self, config: Config, store: Store, message_for: Callable[[Delivery], bytes],
                 stop: threading.Event, on_outcome: Callable[[Outcome], None] | None, retry_base: timedelta,
                 lease: timedelta) -> None:
        self.smtp = config.smtp
        self.sender = envelope_sender(config)
        self.store = store
        self.message_for = message_for
        self.stop = stop
        self.on_outcome = on_outcome
        self.retry_base = retry_base
        self.lease = lease
        self.worker = new_worker_id()
        self.limiter = RateLimiter(config.smtp.rate_per_second)
        self.work: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
        self.finished = threading.Event()          # nothing more will be claimed: senders drain and exit
        self.lock = threading.Lock()
        self.open_rows = 0                         # claimed by this run and not yet recorded
        self.sent = 0
        self.problems: dict[int, Outcome] = {}     # latest non-sent outcome per row
        self.skipped = 0

    def go(self, issue_id: int | None, wait_for_retries: timedelta) -> Summary:
        host = self.worker.split(":")[0]
        self.store.register_worker(self.worker, utcnow(), _FORGET_WORKERS)
        self.store.reclaim_dead_neighbours(host, _alive)
        senders = self._start_senders()
        deadline = time.monotonic() + wait_for_retries.total_seconds()
        renew_every = min(1.0, self.lease.total_seconds() / 3)
        next_renew = 0.0
        batch = self._batch_size(self.smtp.rate_per_second)
        try:
            while not self.stop.is_set():
                if time.monotonic() >= next_renew:
                    share = self.store.renew(self.worker, utcnow(), self.lease, busy=self.open_rows > 0)
                    self.limiter.set_rate(self.smtp.rate_per_second / share)
                    batch = self._batch_size(self.smtp.rate_per_second / share)
                    next_renew = time.monotonic() + renew_every
                if not any(thread.is_alive() for thread in senders):
                    # Every connection failed: the server is unavailable. Give the unsent rows back and
                    # come back only for a retry that is due within wait_for_retries.
                    self._give_back()
                    if not self._wait_for_retry(issue_id, deadline):
                        break
                    senders = self._start_senders()
                elif self.work.qsize() > batch // 2:
                    self.stop.wait(0.01)
                elif self._claim(issue_id, batch) or self.open_rows:
                    self.stop.wait(0.002)
                elif not self.store.reclaim_dead_neighbours(host, _alive) and \
                        not self._wait_for_retry(issue_id, deadline):
                    break
        finally:
            self.finished.set()
            for thread in senders:
                thread.join()
            self._give_back()
            self.store.release(self.worker, retire=True)
        return self._summary()

    def _start_senders(self) -> list[threading.Thread]:
        senders = [threading.Thread(target=self._sender, name=f"smtp-{i}") for i in range(self.smtp.connections)]
        for thread in senders:
            thread.start()
        return senders

    def _give_back(self) -> None:
        """Empty the queue of rows no sender took; they stay claimed in the store until `release`."""
        while True:
            try:
                self.work.get_nowait()
            except queue.Empty:
                break
            self._close_row()
        self.store.release(self.worker, retire=False)

    def _wait_for_retry(self, issue_id: int | None, deadline: float) -> bool:
        """Wait for the next deferred row if it comes due before `deadline`; False: the run is over."""
        retry_at = self.store.next_retry(issue_id)
        if retry_at is None:
            return False
        delay = max(0.0, (retry_at - utcnow()).total_seconds())
        if time.monotonic() + delay > deadline:
            return False
        self.stop.wait(delay)
        return True

    def _batch_size(self, per_second: float) -> int:
        return max(4 * self.smtp.connections, min(MAX_BATCH, int(per_second * _BATCH_SECONDS)))

    def _claim(self, issue_id: int | None, batch: int) -> bool:
        claim = self.store.claim(self.worker, utcnow(), self.lease, batch, issue_id)
        for row in claim.skipped:
            self._count(Outcome(row.id, row.email, "skipped", UNSUBSCRIBED_MEANWHILE))
        with self.lock:
            self.open_rows += len(claim.rows)
        for row in claim.rows:
            self.work.put(row)
        return bool(claim.rows or claim.skipped)

    def _summary(self) -> Summary:
        problems = tuple(self.problems.values())
        return Summary(self.sent, sum(o.status == "deferred" for o in problems),
                       sum(o.status == "failed" for o in problems), problems, self.stop.is_set(), self.skipped)

    def _sender(self) -> None:
        """Send rows from the queue on one connection until the run is finished or stopped."""
        ledger = self.store.ledger(self.worker)
        conn: smtplib.SMTP | None = None
        done: Mark | None = None    # the last outcome, not yet written: it goes with the next start
        try:
            while not self.stop.is_set():
                try:
                    row = self.work.get(timeout=0.05)
                except queue.Empty:
                    done = self._write(ledger, done)
                    if self.finished.is_set():
                        return
                    continue
                delay = self.limiter.reserve()
                if delay > 0.002:    # rate-limited: write the last outcome now rather than after the wait
                    done = self._write(ledger, done)
                    time.sleep(delay)
                ours = ledger.advance(done, row.id)
                if done is not None:
                    self._close_row()
                done = None
                if not ours:         # the lease ran out and another worker took the row
                    self._close_row()
                    continue
                if conn is None:
                    try:
                        conn = connect(self.smtp)
                    except (smtplib.SMTPException, OSError) as exc:
                        # The server is unavailable: this connection stops for this run; the rows it did
                        # not take stay queued for another connection, worker or run.
                        done = self._outcome(row, self._temporary(row, _reply(exc)))
                        return
                conn, mark = self._send(conn, row)
                done = self._outcome(row, mark)
        finally:
            self._write(ledger, done)
            ledger.close()
            if conn is not None:
                _close(conn)

    def _outcome(self, row: Delivery, mark: Mark) -> Mark:
        """Count and report an outcome as soon as the server has answered (it is written a moment later)."""
        self._count(Outcome(row.id, row.email, mark.status, mark.reply))
        return mark

    def _write(self, ledger: Ledger, done: Mark | None) -> None:
        """Write `done` on its own. Returns None, the caller's new `done`."""
        if done is not None:
            ledger.advance(done, None)
            self._close_row()

    def _close_row(self) -> None:
        with self.lock:
            self.open_rows -= 1

    def _send(self, conn: smtplib.SMTP, row: Delivery) -> tuple[smtplib.SMTP | None, Mark]:
        """Send one row; returns the connection if it is still usable, and the row's outcome."""
        try:
            message = self.message_for(row)
        except ValueError as exc:   # e.g. an address the message cannot carry
            return conn, Mark(row.id, "failed", f"cannot build the message: {exc}")
        try:
            reply = _transaction(conn, self.sender, row.email, message)
        except _Refused as exc:
            if 400 <= exc.code < 500:
                if exc.code == 421:   # the server is closing this connection
                    _close(conn)
                    return None, self._temporary(row, str(exc))
                return conn, self._temporary(row, str(exc))
            return conn, Mark(row.id, "failed", str(exc), suppress=str(exc) if exc.recipient else None)
        except (smtplib.SMTPException, OSError) as exc:
            # Dropped connection or timeout: nobody knows whether the server kept the message; retry it.
            _close(conn)
            return None, self._temporary(row, _reply(exc))
        return conn, Mark(row.id, "sent", reply)

    def _temporary(self, row: Delivery, reply: str) -> Mark:
        attempts = row.attempts + 1
        if attempts > self.smtp.max_retries:
            return Mark(row.id, "failed", f"gave up after {attempts} attempts: {reply}")
        return Mark(row.id, "deferred", reply, retry_at=utcnow() + self.retry_base * 2 ** (attempts - 1))

    def _count(self, outcome: Outcome) -> None:
        if outcome.status != "sent":
            log.debug("%s: %s (%s)", outcome.email, outcome.status, outcome.reply)
        with self.lock:
            if outcome.status == "sent":
                self.sent += 1
                self.problems.pop(outcome.delivery_id, None)
            elif outcome.status == "skipped":
                self.skipped += 1
            else:
                self.problems[outcome.delivery_id] = outcome
            if self.on_outcome:
                self.on_outcome(outcome)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process: alive
        return True
    return True


def _transaction(conn: smtplib.SMTP, sender: str, recipient: str, message: bytes) -> str:
    """MAIL, RCPT, DATA for one recipient, pipelined (RFC 2920) when the server offers it; the final
    reply, or _Refused with the failing one."""
    options = " BODY=8BITMIME" if conn.has_extn("8bitmime") and not message.isascii() else ""
    if not conn.has_extn("pipelining"):
        return _lockstep(conn, sender, recipient, message, options.split())
    conn.send(f"MAIL FROM:<{sender}>{options}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode("ascii"))
    (mail_code, mail_text), (rcpt_code, rcpt_text), (data_code, data_text) = (conn.getreply() for _ in range(3))
    if data_code == 354 and (mail_code != 250 or rcpt_code not in (250, 251)):
        conn.send(b".\r\n")    # DATA accepted with no valid recipient: end the empty message at once
        conn.getreply()
    if mail_code != 250:
        _reset(conn)
        raise _Refused(mail_code, mail_text)
    if rcpt_code not in (250, 251):
        _reset(conn)
        raise _Refused(rcpt_code, rcpt_text, recipient=True)
    if data_code != 354:
        _reset(conn)
        raise _Refused(data_code, data_text)
    ending = b".\r\n" if message.endswith(b"\r\n") else b"\r\n.\r\n"
    conn.send(_LEADING_DOT.sub(b"..", message) + ending)
    code, text = conn.getreply()
    if code != 250:
        raise _Refused(code, text)
    return _format(code, text)


def _lockstep(conn: smtplib.SMTP, sender: str, recipient: str, message: bytes, options: list[str]) -> str:
    """The same transaction one command at a time, for servers without PIPELINING."""
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
