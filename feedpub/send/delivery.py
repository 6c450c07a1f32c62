"""The sending engine: claimed batches streamed over persistent SMTP connections, a rate limit shared by
every worker on the store, and crash-safe marks on every delivery row.

One thread claims rows (a few seconds' worth at a time, under a lease renewed while the process lives, so
100,000 recipients go out in bounded memory) and builds their messages; one sender thread
(`feedpub.send.sender`) drives all smtp.connections connections. Every row is marked `sending`
(committed) before its message goes out and `sent` only after the server's 250, and that 250 is committed
before the next message on the same connection goes out: a process killed at any point resends at most
one message per connection. 4xx replies and broken connections defer a row with exponential backoff from
smtp.retry_base, and so does a 5xx that is not about the address (the rule returned mail is judged by,
`feedpub.send.bounces.classify.refusal`); a 5xx saying the address is dead fails the row and suppresses
it. When the refusals look like a sending problem, the circuit breaker (`feedpub.send.breaker`) pauses the
issue and the rows it refused that way go back to queued for `digest resume`.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta

from feedpub import holds
from feedpub.config import Config, parse_duration
from feedpub.errors import Message, message
from feedpub.records import Delivery, StoredIssue
from feedpub.send import messages, verp
from feedpub.send.breaker import Breaker, Trip, rates_trip
from feedpub.send.claims import Claims, Mark, Marks, new_worker_id
from feedpub.send.sender import RateLimiter, Ready, Sender
from feedpub.send.tally import Outcome, Summary, Tally
from feedpub.store import Store, utcnow

log = logging.getLogger(__name__)

# How long claimed rows stay this process's without a renewal; renewed every third of it (at most 1 s).
DEFAULT_LEASE = timedelta(minutes=5)
# Claim about this many seconds of sending at a time (between a few rows per connection and MAX_BATCH).
_BATCH_SECONDS = 2.0
MAX_BATCH = 500
# A worker silent this long is forgotten (its row in the workers table is removed).
_FORGET_WORKERS = timedelta(days=1)


def personalised(config: Config, period: str,
                 templates: Mapping[str, messages.MessageTemplate]) -> Callable[[Delivery], bytes]:
    """The message for one delivery row: its variant's template, filled in for that recipient."""
    def message(row: Delivery) -> bytes:
        return templates[row.variant_key].render(
            to_email=row.email, to_name=row.name, unsubscribe_url=messages.unsubscribe_url(config, row.subscriber_id),
            preferences_url=messages.preferences_url(config, row.subscriber_id),
            message_id=messages.delivery_message_id(config, period, row.email))

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
    """One `deliver` call: the claiming loop (calling thread), which starts the sender thread, and what
    the two share: the queue of built messages, the limiter and the tally."""

    def __init__(self, config: Config, store: Store, message_for: Callable[[Delivery], bytes],
                 stop: threading.Event, on_outcome: Callable[[Outcome], None] | None, retry_base: timedelta,
                 lease: timedelta) -> None:
        self.smtp = config.smtp
        self.mail_from = verp.sender_for(config)
        self.store = store
        self.message_for = message_for
        self.stop = stop
        self.retry_base = retry_base
        self.lease = lease
        self.claims = Claims(store, new_worker_id())
        self.limiter = RateLimiter(config.smtp.rate_per_second)
        self.work: queue.SimpleQueue[Ready] = queue.SimpleQueue()   # rows with their messages built
        self.finished = threading.Event()          # nothing more will be claimed: the sender drains and exits
        self.guard = _Guard(config, store)
        self.tally = Tally(on_outcome, self.guard)

    def go(self, issue_id: int | None, wait_for_retries: timedelta) -> Summary:
        self.claims.register(utcnow(), _FORGET_WORKERS)
        self.claims.reclaim_dead_neighbours(_alive)
        marks = self.claims.marks()
        sender = self._start_sender(marks)
        deadline = time.monotonic() + wait_for_retries.total_seconds()
        renew_every = min(1.0, self.lease.total_seconds() / 3)
        next_renew = 0.0
        batch = self._batch_size(self.smtp.rate_per_second)
        try:
            self.guard.watch([] if issue_id is None else [issue_id])
            while not self.stop.is_set():
                if time.monotonic() >= next_renew:
                    self.guard.check_rates()
                    share = self.claims.renew(utcnow(), self.lease, busy=self.tally.open_rows > 0)
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
                elif self._claim(marks, issue_id, batch) or self.tally.open_rows:
                    self.stop.wait(0.002)
                elif not self.claims.reclaim_dead_neighbours(_alive) and \
                        not self._wait_for_retry(issue_id, deadline):
                    break
        finally:
            self.finished.set()
            sender.join()
            self.tally.undo()          # the last failures the breaker puts back, now that they are written
            self._give_back()
            self.claims.release(retire=True)
            marks.close()
        return self.tally.summary(self.stop.is_set())

    def _start_sender(self, marks: Marks) -> threading.Thread:
        sender = Sender(self.smtp, self.mail_from, self.retry_base, marks=marks, work=self.work,
                        limiter=self.limiter, tally=self.tally, stop=self.stop, finished=self.finished)
        thread = threading.Thread(target=sender.run, name="smtp")
        thread.start()
        return thread

    def _give_back(self) -> None:
        """Empty the queue of rows no sender took; they stay claimed in the store until `release`."""
        while True:
            try:
                self.work.get_nowait()
            except queue.Empty:
                break
            self.tally.closed()
        self.claims.release(retire=False)

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
        claim = self.claims.claim(utcnow(), self.lease, batch, issue_id)
        for row in claim.skipped:
            self.tally.count(Outcome(row.id, row.email, "skipped", row.last_reply))
        self.guard.watch(row.issue_id for row in claim.rows)
        self.tally.opened(len(claim.rows))
        for row in claim.rows:   # built here, off the sender's path from one server reply to the next
            message = self._message(marks, row)
            if message is not None:
                self.work.put(Ready(row, message))
        return bool(claim.rows or claim.skipped)

    def _message(self, marks: Marks, row: Delivery) -> bytes | None:
        """The row's message; None (and the row failed) if it cannot be built."""
        try:
            return self.message_for(row)
        except ValueError as exc:   # e.g. an address the message cannot carry
            failed = Mark(row.id, "failed", f"cannot build the message: {exc}")
            self.tally.write(marks, [self.tally.record(row, failed)])
            return None


class _Guard:
    """The circuit breaker of one run and its I/O: the issues it pauses, the rows it puts back."""

    def __init__(self, config: Config, store: Store) -> None:
        self.bounces = config.bounces
        self.store = store
        self.breaker = Breaker(store.failure_share(), config.bounces.max_bounce_rate)
        self.lock = threading.Lock()
        self.trips: list[Trip] = []            # decided, not yet recorded
        self.paused: list[Message] = []

    def watch(self, issue_ids: Iterable[int]) -> None:
        """The run sends rows of these issues: the breaker learns their size, their rates are judged."""
        for issue_id in set(issue_ids):
            with self.lock:
                if self.breaker.knows(issue_id):
                    continue
            rows = sum(self.store.counts(issue_id).values())
            with self.lock:
                self.breaker.expect(issue_id, rows)
            self._judge_rates(issue_id)

    def check_rates(self) -> None:
        with self.lock:
            watched = self.breaker.untripped()
        for issue_id in watched:
            self._judge_rates(issue_id)

    def _judge_rates(self, issue_id: int) -> None:
        reason = rates_trip(*self.store.issue_returns(issue_id), self.bounces.max_complaint_rate,
                            self.bounces.max_bounce_rate)
        if reason is not None:
            with self.lock:
                self.breaker.tripped(issue_id)
                self.trips.append(Trip(issue_id, reason))
            self.written()

    def recorded(self, row: Delivery, mark: Mark) -> None:
        with self.lock:
            trip = self.breaker.observe(row.issue_id, row.id, mark.status, mark.reply)
            if trip is not None:
                self.trips.append(trip)

    def written(self) -> set[int]:
        with self.lock:
            trips, self.trips = self.trips, []
            waiting = self.breaker.to_put_back()
        for trip in trips:
            if holds.trip(self.store, trip.issue_id, trip.reason):
                period = self.store.issue_period(trip.issue_id)
                log.warning("%s", message("breaker_paused", period=period, reason=trip.reason))
                with self.lock:
                    self.paused.append(message("breaker_paused_reason", period=period, reason=trip.reason))
        undone: set[int] = set()
        for issue_id, rows in waiting.items():
            back = holds.put_back(self.store, issue_id, rows)
            with self.lock:
                self.breaker.put_back(back)
            undone |= back
        return undone

    def reasons(self) -> tuple[Message, ...]:
        with self.lock:
            return tuple(self.paused)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process: alive
        return True
    return True
