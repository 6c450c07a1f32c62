"""The sending engine: claimed batches streamed over persistent SMTP connections, a rate limit shared by
every worker on the store, and the crash-safe ledger.

One thread claims rows (a few seconds' worth at a time, under a lease renewed while the process lives, so
100,000 recipients go out in bounded memory) and builds their messages; one sender thread drives all
smtp.connections connections. Every row is marked `sending` (committed) before its message goes out and
`sent` only after the server's 250, and that 250 is committed before the next message on the same
connection goes out: a process killed at any point resends at most one message per connection.
4xx replies and broken connections defer a row with exponential backoff from smtp.retry_base; a 5xx for
a recipient fails it and suppresses the address.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, Protocol

from feedpub.config import Config, parse_duration
from feedpub.send import smtp
from feedpub.send.claims import Ledger, Mark, Marks, new_worker_id
from feedpub.store import Delivery, Store, StoredIssue, utcnow

log = logging.getLogger(__name__)

# How long claimed rows stay this process's without a renewal; renewed every third of it (at most 1 s).
DEFAULT_LEASE = timedelta(minutes=5)
# Claim about this many seconds of sending at a time (between a few rows per connection and MAX_BATCH).
_BATCH_SECONDS = 2.0
MAX_BATCH = 500
# A worker silent this long is forgotten (its row in the workers table is removed).
_FORGET_WORKERS = timedelta(days=1)


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

    def try_reserve(self) -> bool:
        """Take the next start only if it is due now."""
        with self._lock:
            now = time.monotonic()
            if self._next > now + 0.002:
                return False
            self._next = max(self._next, now) + self.interval
        return True

    def delay(self) -> float:
        """How long until the next start is due."""
        with self._lock:
            return max(0.0, self._next - time.monotonic())

    def reserve(self) -> float:
        """Take the next start; returns how long to sleep before it."""
        with self._lock:
            now = time.monotonic()
            start = max(self._next, now)
            self._next = start + self.interval
        return start - now


@dataclass(frozen=True)
class _Ready:
    """A row taken from the queue with its message built."""

    row: Delivery
    message: bytes


class _Link:
    """One SMTP connection of the sender loop and what it waits for: the final reply to a body, then the
    replies to an envelope sent behind it (pipelining)."""

    def __init__(self, conn: smtplib.SMTP) -> None:
        self.conn: smtplib.SMTP | None = conn      # None once closed
        self.body: _Ready | None = None
        self.envelope: _Ready | None = None

    def busy(self) -> bool:
        return self.body is not None or self.envelope is not None


def personalised(config: Config, period: str,
                 templates: Mapping[str, MessageTemplate]) -> Callable[[Delivery], bytes]:
    """The message for one ledger row: its variant's template, filled in for that recipient."""
    from feedpub.send import messages

    def message(row: Delivery) -> bytes:
        return templates[row.variant_key].render(
            to_email=row.email, to_name=row.name, unsubscribe_url=messages.unsubscribe_url(config, row.email),
            preferences_url=messages.preferences_url(config, row.email),
            message_id=messages.new_message_id(config, period, row.email))

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


class _Run:
    """One `deliver` call: the claiming loop (calling thread), the sender thread and its connections, the
    limiter and the counts."""

    def __init__(self, config: Config, store: Store, message_for: Callable[[Delivery], bytes],
                 stop: threading.Event, on_outcome: Callable[[Outcome], None] | None, retry_base: timedelta,
                 lease: timedelta) -> None:
        self.smtp = config.smtp
        self.sender = smtp.envelope_sender(config)
        self.store = store
        self.message_for = message_for
        self.stop = stop
        self.on_outcome = on_outcome
        self.retry_base = retry_base
        self.lease = lease
        self.ledger = Ledger(store, new_worker_id())
        self.limiter = RateLimiter(config.smtp.rate_per_second)
        self.work: queue.SimpleQueue[_Ready] = queue.SimpleQueue()   # rows with their messages built
        self.finished = threading.Event()          # nothing more will be claimed: the sender drains and exits
        self.unavailable = False                   # a connection could not be opened: no more this run
        self.held: _Ready | None = None            # the sender's next row, waiting for the rate limit
        self.lock = threading.Lock()
        self.open_rows = 0                         # claimed by this run and not yet recorded
        self.sent = 0
        self.problems: dict[int, Outcome] = {}     # latest non-sent outcome per row
        self.skipped = 0

    def go(self, issue_id: int | None, wait_for_retries: timedelta) -> Summary:
        self.ledger.register(utcnow(), _FORGET_WORKERS)
        self.ledger.reclaim_dead_neighbours(_alive)
        marks = self.ledger.marks()
        sender = self._start_sender(marks)
        deadline = time.monotonic() + wait_for_retries.total_seconds()
        renew_every = min(1.0, self.lease.total_seconds() / 3)
        next_renew = 0.0
        batch = self._batch_size(self.smtp.rate_per_second)
        try:
            while not self.stop.is_set():
                if time.monotonic() >= next_renew:
                    share = self.ledger.renew(utcnow(), self.lease, busy=self.open_rows > 0)
                    self.limiter.set_rate(self.smtp.rate_per_second / share)
                    batch = self._batch_size(self.smtp.rate_per_second / share)
                    next_renew = time.monotonic() + renew_every
                if not sender.is_alive():
                    # Every connection failed: the server is unavailable. Give the unsent rows back and
                    # come back only for a retry that is due within wait_for_retries.
                    self._give_back()
                    if not self._wait_for_retry(issue_id, deadline):
                        break
                    sender = self._start_sender(marks)
                elif self.work.qsize() > batch // 2:
                    self.stop.wait(0.01)
                elif self._claim(marks, issue_id, batch) or self.open_rows:
                    self.stop.wait(0.002)
                elif not self.ledger.reclaim_dead_neighbours(_alive) and \
                        not self._wait_for_retry(issue_id, deadline):
                    break
        finally:
            self.finished.set()
            sender.join()
            self._give_back()
            self.ledger.release(retire=True)
            marks.close()
        return self._summary()

    def _start_sender(self, marks: Marks) -> threading.Thread:
        self.unavailable = False
        thread = threading.Thread(target=self._sender, args=(marks,), name="smtp")
        thread.start()
        return thread

    def _give_back(self) -> None:
        """Empty the queue of rows no sender took; they stay claimed in the store until `release`."""
        while True:
            try:
                self.work.get_nowait()
            except queue.Empty:
                break
            self._close_row()
        self.ledger.release(retire=False)

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

    def _claim(self, marks: Marks, issue_id: int | None, batch: int) -> bool:
        claim = self.ledger.claim(utcnow(), self.lease, batch, issue_id)
        for row in claim.skipped:
            self._count(Outcome(row.id, row.email, "skipped", row.last_reply))
        with self.lock:
            self.open_rows += len(claim.rows)
        for row in claim.rows:   # built here, off the sender's path from one server reply to the next
            message = self._message(marks, row)
            if message is not None:
                self.work.put(_Ready(row, message))
        return bool(claim.rows or claim.skipped)

    def _summary(self) -> Summary:
        problems = tuple(self.problems.values())
        return Summary(self.sent, sum(o.status == "deferred" for o in problems),
                       sum(o.status == "failed" for o in problems), problems, self.stop.is_set(), self.skipped)

    def _sender(self, marks: Marks) -> None:
        """Send the queued rows over up to smtp.connections connections, from one thread, until the run
        is finished or stopped.

        One thread waits on every connection at once (no lock handoffs between threads per message), and
        the outcomes and `sending` marks of all connections whose replies came in together go out in one
        commit. With PIPELINING a message costs one round trip: the envelope (MAIL, RCPT, DATA) of a row
        goes out behind the body of the one before it, and the row is marked `sending` once its 354 is
        in, before its body. A server keeps no message whose body never ended, so only a row marked
        `sending` can have been delivered without a record: at most one per connection."""
        links: list[_Link] = []
        done: list[Mark] = []               # outcomes not yet written: they go with the next starts
        try:
            while True:
                if not self.stop.is_set():
                    self._fill(links, marks, done)
                busy = [link for link in links if link.busy()]
                if not busy:
                    self._write(marks, done)
                    if self.stop.is_set() or not links and self.unavailable:
                        return
                    if self.finished.is_set() and self.work.empty():
                        return
                    self._wait_for_work()
                    continue
                readable = _readable(busy, self.smtp.timeout)
                if not readable:     # no reply within smtp.timeout
                    for link in busy:
                        self._fail_link(link, "timed out waiting for the SMTP server", done)
                starting = [link for link in readable if self._replies(link, done)]
                if self.stop.is_set():   # leave their rows queued, bodies unsent
                    for link in starting:
                        self._abandon(link)
                    starting = []
                started = self._write(marks, done, [link.envelope.row.id for link in starting if link.envelope])
                for link in starting:
                    self._send_body(link, started, done)
                links[:] = [link for link in links if link.conn is not None]
        finally:
            self._write(marks, done)
            if self.held is not None:
                self.work.put(self.held)
                self.held = None
            for link in links:       # only after an error: rows in flight stay as they are until the lease ends
                for ready in (link.body, link.envelope):
                    if ready is not None:
                        self._close_row()
                self._drop(link, quit_=not link.busy())

    def _fill(self, links: list[_Link], marks: Marks, done: list[Mark]) -> None:
        """Give every idle connection a row (opening connections while there is work): its envelope when
        the server pipelines, else the whole transaction in lockstep."""
        while not self.stop.is_set():
            links[:] = [link for link in links if link.conn is not None]
            idle = [link for link in links if not link.busy()]
            if not idle and (len(links) >= self.smtp.connections or self.unavailable):
                return
            ready = self._take()
            if ready is None:
                return
            if idle:
                link = idle[0]
            else:
                try:
                    link = _Link(smtp.connect(self.smtp))
                except (smtplib.SMTPException, OSError) as exc:
                    # The server is unavailable: no more connections this run; the rows not taken stay
                    # queued for another worker or run.
                    self.unavailable = True
                    done.append(self._outcome(ready.row, self._temporary(ready.row, smtp.describe(exc),
                                                                         relay_down=True)))
                    return
                links.append(link)
            if link.conn is not None and link.conn.has_extn("pipelining"):
                self._announce(link, ready, done)
            else:
                self._lockstep(link, ready, marks, done)

    def _announce(self, link: _Link, ready: _Ready, done: list[Mark]) -> None:
        assert link.conn is not None
        try:
            link.conn.send(smtp.envelope(link.conn, self.sender, ready.row.email, ready.message))
        except (smtplib.SMTPException, OSError) as exc:
            self._drop(link, quit_=False)
            done.append(self._outcome(ready.row, self._temporary(ready.row, smtp.describe(exc))))
            return
        link.envelope = ready

    def _lockstep(self, link: _Link, ready: _Ready, marks: Marks, done: list[Mark]) -> None:
        """A whole transaction, one command at a time, for a server without PIPELINING."""
        assert link.conn is not None
        row = ready.row
        if row.id not in self._write(marks, done, [row.id]):
            self._close_row()        # the lease ran out and another worker took the row
            return
        try:
            reply = smtp.transaction(link.conn, self.sender, row.email, ready.message)
        except smtp.Refused as exc:
            mark = self._refused(link, row, exc)
        except (smtplib.SMTPException, OSError) as exc:
            # Dropped connection or timeout: nobody knows whether the server kept the message; retry it.
            self._drop(link, quit_=False)
            mark = self._temporary(row, smtp.describe(exc))
        else:
            mark = Mark(row.id, "sent", reply)
        done.append(self._outcome(row, mark))

    def _replies(self, link: _Link, done: list[Mark]) -> bool:
        """Read what `link` is waiting for: the final reply to its body, then the replies to its envelope.
        True if the envelope's row may now be marked `sending` and its body sent."""
        assert link.conn is not None
        if link.body is not None:
            row = link.body.row
            try:
                mark = Mark(row.id, "sent", smtp.final_reply(link.conn))
            except smtp.Refused as exc:
                mark = self._refused(link, row, exc)
            except (smtplib.SMTPException, OSError) as exc:
                # Dropped connection or timeout: nobody knows whether the server kept the message; retry it.
                self._fail_link(link, smtp.describe(exc), done)
                return False
            link.body = None
            done.append(self._outcome(row, mark))
        if link.envelope is None:
            return False
        if link.conn is None:        # closed after a 421: the row goes to another connection
            self.work.put(link.envelope)
            link.envelope = None
            return False
        try:
            smtp.read_envelope_replies(link.conn)
        except smtp.Refused as exc:
            row, link.envelope = link.envelope.row, None
            done.append(self._outcome(row, self._refused(link, row, exc)))
            return False
        except (smtplib.SMTPException, OSError) as exc:
            self._fail_link(link, smtp.describe(exc), done)
            return False
        return True

    def _send_body(self, link: _Link, started: set[int], done: list[Mark]) -> None:
        """Send the body of `link`'s envelope row (now marked `sending`) with the next row's envelope."""
        assert link.conn is not None and link.envelope is not None
        if link.envelope.row.id not in started:   # the lease ran out and another worker took the row
            self._abandon(link)
            return
        ready, link.envelope = link.envelope, None
        following = self._take()
        then = smtp.envelope(link.conn, self.sender, following.row.email, following.message) if following else b""
        try:
            smtp.send_body(link.conn, ready.message, then)
        except (smtplib.SMTPException, OSError) as exc:
            link.body, link.envelope = ready, following
            self._fail_link(link, smtp.describe(exc), done)
            return
        link.body, link.envelope = ready, following

    def _abandon(self, link: _Link) -> None:
        """End the connection between an envelope's 354 and its body (a QUIT now would be read as message
        text); the server drops the transaction, and the row stays as it is in the ledger."""
        link.envelope = None
        self._close_row()
        self._drop(link, quit_=False)

    def _fail_link(self, link: _Link, reply: str, done: list[Mark]) -> None:
        """The connection broke or timed out: the row it was waiting on is retried later (after the
        backoff), a row whose envelope went out behind that one goes back to the queue."""
        waited_on = link.body or link.envelope
        if waited_on is not None:
            done.append(self._outcome(waited_on.row, self._temporary(waited_on.row, reply)))
        if link.body is not None and link.envelope is not None:
            self.work.put(link.envelope)
        link.body = link.envelope = None
        self._drop(link, quit_=False)

    def _drop(self, link: _Link, *, quit_: bool) -> None:
        if link.conn is not None:
            if quit_:
                smtp.close(link.conn)
            else:
                link.conn.close()
            link.conn = None

    def _take(self) -> _Ready | None:
        """The next queued row, if the rate limit lets it start now."""
        if self.held is None:
            try:
                self.held = self.work.get_nowait()
            except queue.Empty:
                return None
        if not self.limiter.try_reserve():
            return None
        ready, self.held = self.held, None
        return ready

    def _wait_for_work(self) -> None:
        """Nothing in flight: wait for a claim, or for the rate limit's next start."""
        if self.held is None:
            try:
                self.held = self.work.get(timeout=0.05)
            except queue.Empty:
                return
        self.stop.wait(self.limiter.delay())

    def _message(self, marks: Marks, row: Delivery) -> bytes | None:
        """The row's message; None (and the row failed) if it cannot be built."""
        try:
            return self.message_for(row)
        except ValueError as exc:   # e.g. an address the message cannot carry
            self._write(marks, [self._outcome(row, Mark(row.id, "failed", f"cannot build the message: {exc}"))])
            return None

    def _outcome(self, row: Delivery, mark: Mark) -> Mark:
        """Count and report an outcome as soon as the server has answered (it is written a moment later)."""
        self._count(Outcome(row.id, row.email, mark.status, mark.reply))
        return mark

    def _write(self, marks: Marks, done: list[Mark], starts: Sequence[int] = ()) -> set[int]:
        """Write (and forget) the outcomes in `done` with the `sending` marks of `starts`, in one commit."""
        if not done and not starts:
            return set()
        started = marks.write(done, starts)
        with self.lock:
            self.open_rows -= len(done)
        done.clear()
        return started

    def _close_row(self) -> None:
        with self.lock:
            self.open_rows -= 1

    def _refused(self, link: _Link, row: Delivery, exc: smtp.Refused) -> Mark:
        """4xx: try again later (421: the server closes the connection); 5xx: failed, and for a recipient,
        suppressed."""
        if 400 <= exc.code < 500:
            if exc.code == 421:
                self._drop(link, quit_=True)
            return self._temporary(row, str(exc))
        return Mark(row.id, "failed", str(exc), suppress=str(exc) if exc.recipient else None)

    def _temporary(self, row: Delivery, reply: str, *, relay_down: bool = False) -> Mark:
        """Deferred with exponential backoff; failed after smtp.max_retries, unless the relay itself could
        not be reached (refused, down, TLS or AUTH failure): an outage is nobody's message failing, so the
        reader waits, at the longest backoff, however long it lasts."""
        attempts = row.attempts + 1
        if attempts > self.smtp.max_retries and not relay_down:
            return Mark(row.id, "failed", f"gave up after {attempts} attempts: {reply}")
        backoff = self.retry_base * 2 ** (min(attempts, self.smtp.max_retries) - 1)
        return Mark(row.id, "deferred", reply, retry_at=utcnow() + backoff)

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


def _readable(links: list[_Link], timeout: float) -> set[_Link]:
    """The links with a reply to read (or a closed connection), waiting up to `timeout` for the first."""
    sockets = {link.conn.sock: link for link in links if link.conn is not None and link.conn.sock is not None}
    pending = {link for sock, link in sockets.items() if isinstance(sock, ssl.SSLSocket) and sock.pending()}
    if pending:
        return pending
    ready, _, _ = select.select(list(sockets), [], [], timeout)
    return {sockets[sock] for sock in ready}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process: alive
        return True
    return True


