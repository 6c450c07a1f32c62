"""The sender loop: one thread drives all smtp.connections connections of a run with `select`.

One thread waits on every connection at once (no lock handoffs between threads per message), and the
outcomes and `sending` marks of all connections whose replies came in together go out in one commit.
With PIPELINING a message costs one round trip: the envelope (MAIL, RCPT, DATA) of a row goes out behind
the body of the one before it, and the row is marked `sending` once its 354 is in, before its body. A
server keeps no message whose body never ended, so only a row marked `sending` can have been delivered
without a record: at most one per connection.
"""

from __future__ import annotations

import queue
import select
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from feedpub.config import SmtpConfig
from feedpub.records import Delivery
from feedpub.send import smtp
from feedpub.send.bounces.classify import refusal
from feedpub.send.claims import Mark, Marks
from feedpub.send.tally import Tally
from feedpub.store import utcnow


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


@dataclass(frozen=True)
class Ready:
    """A row taken from the queue with its message built."""

    row: Delivery
    message: bytes


class _Link:
    """One SMTP connection of the sender loop and what it waits for: the final reply to a body, then the
    replies to an envelope sent behind it (pipelining)."""

    def __init__(self, conn: smtplib.SMTP) -> None:
        self.conn: smtplib.SMTP | None = conn      # None once closed
        self.body: Ready | None = None
        self.envelope: Ready | None = None

    def busy(self) -> bool:
        return self.body is not None or self.envelope is not None


class Sender:
    """One sender thread (`run`): sends the rows of `work` over up to smtp.connections connections until
    the run is `finished` (and the queue empty) or stopped, or no connection can be opened."""

    def __init__(self, config: SmtpConfig, mail_from: Callable[[int], str], retry_base: timedelta, *, marks: Marks,
                 work: queue.SimpleQueue[Ready], limiter: RateLimiter, tally: Tally, stop: threading.Event,
                 finished: threading.Event) -> None:
        self.smtp = config
        self.mail_from = mail_from                 # delivery id → envelope sender (VERP)
        self.retry_base = retry_base
        self.marks = marks
        self.work = work
        self.limiter = limiter
        self.tally = tally
        self.stop = stop
        self.finished = finished                   # nothing more will be claimed: drain and exit
        self.unavailable = False                   # a connection could not be opened: no more this run
        self.held: Ready | None = None             # the next row, waiting for the rate limit

    def run(self) -> None:
        links: list[_Link] = []
        done: list[Mark] = []               # outcomes not yet written: they go with the next starts
        try:
            while True:
                if not self.stop.is_set():
                    self._fill(links, done)
                busy = [link for link in links if link.busy()]
                if not busy:
                    self.tally.write(self.marks, done)
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
                started = self.tally.write(self.marks, done,
                                           [link.envelope.row.id for link in starting if link.envelope])
                for link in starting:
                    self._send_body(link, started, done)
                links[:] = [link for link in links if link.conn is not None]
        finally:
            self.tally.write(self.marks, done)
            if self.held is not None:
                self.work.put(self.held)
                self.held = None
            for link in links:       # only after an error: rows in flight stay as they are until the lease ends
                for ready in (link.body, link.envelope):
                    if ready is not None:
                        self.tally.closed()
                self._drop(link, quit_=not link.busy())

    def _fill(self, links: list[_Link], done: list[Mark]) -> None:
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
                    done.append(self.tally.record(ready.row, self._temporary(ready.row, smtp.describe(exc),
                                                                             relay_down=True)))
                    return
                links.append(link)
            if link.conn is not None and link.conn.has_extn("pipelining"):
                self._announce(link, ready, done)
            else:
                self._lockstep(link, ready, done)

    def _announce(self, link: _Link, ready: Ready, done: list[Mark]) -> None:
        assert link.conn is not None
        try:
            link.conn.send(smtp.envelope(link.conn, self.mail_from(ready.row.id), ready.row.email, ready.message))
        except (smtplib.SMTPException, OSError) as exc:
            self._drop(link, quit_=False)
            done.append(self.tally.record(ready.row, self._temporary(ready.row, smtp.describe(exc))))
            return
        link.envelope = ready

    def _lockstep(self, link: _Link, ready: Ready, done: list[Mark]) -> None:
        """A whole transaction, one command at a time, for a server without PIPELINING."""
        assert link.conn is not None
        row = ready.row
        if row.id not in self.tally.write(self.marks, done, [row.id]):
            self.tally.closed()        # the lease ran out and another worker took the row
            return
        try:
            reply = smtp.transaction(link.conn, self.mail_from(row.id), row.email, ready.message)
        except smtp.Refused as exc:
            mark = self._refused(link, row, exc)
        except (smtplib.SMTPException, OSError) as exc:
            # Dropped connection or timeout: nobody knows whether the server kept the message; retry it.
            self._drop(link, quit_=False)
            mark = self._temporary(row, smtp.describe(exc))
        else:
            mark = Mark(row.id, "sent", reply)
        done.append(self.tally.record(row, mark))

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
            done.append(self.tally.record(row, mark))
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
            done.append(self.tally.record(row, self._refused(link, row, exc)))
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
        then = (smtp.envelope(link.conn, self.mail_from(following.row.id), following.row.email, following.message)
                if following else b"")
        try:
            smtp.send_body(link.conn, ready.message, then)
        except (smtplib.SMTPException, OSError) as exc:
            link.body, link.envelope = ready, following
            self._fail_link(link, smtp.describe(exc), done)
            return
        link.body, link.envelope = ready, following

    def _abandon(self, link: _Link) -> None:
        """End the connection between an envelope's 354 and its body (a QUIT now would be read as message
        text); the server drops the transaction, and the row's delivery record stays as it is."""
        link.envelope = None
        self.tally.closed()
        self._drop(link, quit_=False)

    def _fail_link(self, link: _Link, reply: str, done: list[Mark]) -> None:
        """The connection broke or timed out: the row it was waiting on is retried later (after the
        backoff), a row whose envelope went out behind that one goes back to the queue."""
        waited_on = link.body or link.envelope
        if waited_on is not None:
            done.append(self.tally.record(waited_on.row, self._temporary(waited_on.row, reply)))
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

    def _take(self) -> Ready | None:
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
            try:   # a claim wakes it at once; the timeout is how late it sees the run finished (each run pays it)
                self.held = self.work.get(timeout=0.01)
            except queue.Empty:
                return
        self.stop.wait(self.limiter.delay())

    def _refused(self, link: _Link, row: Delivery, exc: smtp.Refused) -> Mark:
        """A refusal of the recipient that says the address is dead (the rule returned mail is judged by):
        failed and suppressed. Anything else (4xx; a 5xx about the sender, the relay, authentication, policy,
        rate, size, content or a full mailbox): try again later (421: the server closes the connection)."""
        if exc.code >= 500 and exc.recipient and refusal(str(exc)) == "hard":
            return Mark(row.id, "failed", str(exc), suppress=str(exc))
        if exc.code == 421:
            self._drop(link, quit_=True)
        return self._temporary(row, str(exc))

    def _temporary(self, row: Delivery, reply: str, *, relay_down: bool = False) -> Mark:
        """Deferred with exponential backoff; failed after smtp.max_retries, unless the relay itself could
        not be reached (refused, down, TLS or AUTH failure): an outage is nobody's message failing, so the
        reader waits, at the longest backoff, however long it lasts."""
        attempts = row.attempts + 1
        if attempts > self.smtp.max_retries and not relay_down:
            return Mark(row.id, "failed", f"gave up after {attempts} attempts: {reply}")
        backoff = self.retry_base * 2 ** (min(attempts, self.smtp.max_retries) - 1)
        return Mark(row.id, "deferred", reply, retry_at=utcnow() + backoff)


def _readable(links: list[_Link], timeout: float) -> set[_Link]:
    """The links with a reply to read (or a closed connection), waiting up to `timeout` for the first."""
    sockets = {link.conn.sock: link for link in links if link.conn is not None and link.conn.sock is not None}
    pending = {link for sock, link in sockets.items() if isinstance(sock, ssl.SSLSocket) and sock.pending()}
    if pending:
        return pending
    ready, _, _ = select.select(list(sockets), [], [], timeout)
    return {sockets[sock] for sock in ready}
