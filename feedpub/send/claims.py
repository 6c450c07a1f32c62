"""Delivery queues while sending: batch claims under a lease, worker heartbeats, and the per-message marks
written around each SMTP transaction.

`Leases` is the queue machinery over any table with `status`, `claimed_by` and `claimed_until` (mail's
`deliveries`, the fediverse's `fediverse_deliveries`); `Claims` adds what mail needs of its rows.

Sending claims rows in batches with a lease (`claimed_by`, `claimed_until`): on PostgreSQL the batch is
picked with `FOR UPDATE SKIP LOCKED`, on SQLite the single UPDATE … RETURNING holds the write lock. A
worker that dies leaves its rows to whoever claims after the lease, or at once to a process on the same
host that sees its pid is gone.

The marks are the hot path (two per message): `Marks` writes them with plain DB-API statements, those of
all connections that are ready at the same moment in one commit. A row is durably `sending` before its
message is transmitted and `sent` only after the server's 250.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa

from feedpub.records import Delivery
from feedpub.schema import UTCDateTime, deliveries, subscribers, workers
from feedpub.store import Store, due, is_suppressed, to_delivery, utcnow

# The reply recorded on rows whose reader left after the issue was queued (status failed, never sent).
UNSUBSCRIBED_MEANWHILE = "unsubscribed before sending"
SUPPRESSED_MEANWHILE = "address suppressed before sending"

# The per-message statements, in the qmark style; `Marks` swaps in the driver's placeholder.
_START = ("UPDATE deliveries SET status = 'sending', attempts = attempts + 1, next_attempt_at = NULL, updated_at = ? "
          "WHERE claimed_by = ? AND status IN ('queued', 'sending', 'deferred') AND id IN ({ids}) RETURNING id")
# An attempt that ended before its row was marked `sending` (refused envelope, no connection) counts here.
_FINISH = ("UPDATE deliveries SET status = ?, last_reply = ?, next_attempt_at = ?, claimed_by = NULL, "
           "claimed_until = NULL, updated_at = ?, "
           "attempts = CASE WHEN status = 'sending' THEN attempts ELSE attempts + 1 END WHERE id = ?")
# The suppression's cause is the issue being sent (`feedpub subscribers restore --cause PERIOD` lifts them).
_SUPPRESS = ("INSERT INTO suppressions (email_key, reason, created_at, cause, cause_ref) "
             "SELECT s.email_key, ?, ?, 'issue', CAST(d.issue_id AS VARCHAR(20)) FROM subscribers s "
             "JOIN deliveries d ON d.subscriber_id = s.id WHERE d.id = ? "
             "AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email_key = s.email_key)")


@dataclass(frozen=True)
class Mark:
    """The outcome of one SMTP transaction, to be written to its delivery row."""

    delivery_id: int
    status: Literal["sent", "deferred", "failed"]
    reply: str
    retry_at: datetime | None = None       # for deferred
    suppress: str | None = None            # for failed: also suppress the address, for this reason


@dataclass(frozen=True)
class Claim:
    """A batch of rows this worker now holds: the ones to send, and the ones just failed without sending
    because the reader unsubscribed or was suppressed after the issue was queued."""

    rows: tuple[Delivery, ...]
    skipped: tuple[Delivery, ...]


def new_worker_id() -> str:
    """host:pid:random: unique across machines and restarts; the pid lets a neighbour see it died."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


class Leases:
    """The rows of one queue table that one worker (`host:pid:random`) claims, leases and gives back, and its
    heartbeat. `due(now)` says which rows may be claimed now."""

    def __init__(self, store: Store, worker: str, table: sa.Table,
                 due: Callable[[datetime], sa.ColumnElement[bool]]) -> None:
        self.store = store
        self.worker = worker
        self.table = table
        self.due = due

    def register(self, now: datetime, stale_after: timedelta) -> None:
        """Record this worker and forget workers silent for longer than `stale_after`."""
        host, pid, _ = self.worker.split(":")
        with self.store.writing() as conn:
            conn.execute(workers.delete().where(workers.c.heartbeat_at < now - stale_after))
            conn.execute(workers.insert().values(id=self.worker, host=host, pid=int(pid), busy=False, heartbeat_at=now))

    def take(self, now: datetime, lease: timedelta, limit: int, *where: sa.ColumnElement[bool]) -> set[int]:
        """The ids of up to `limit` due rows (matching `where`), now this worker's until now + `lease`."""
        table = self.table
        pick = sa.select(table.c.id).where(self.due(now), *where).order_by(table.c.id).limit(limit)
        take = (table.update().where(table.c.id.in_(pick.with_for_update(skip_locked=True)))
                .values(claimed_by=self.worker, claimed_until=now + lease).returning(table.c.id))
        # The write takes the ids only: on SQLite it holds the one write lock, which the senders' marks wait for.
        with self.store.writing() as conn:
            return set(conn.scalars(take))

    def renew(self, now: datetime, lease: timedelta, *, busy: bool) -> int:
        """Extend the lease of this worker's rows and beat its heartbeat; returns the number of busy
        workers seen alive (itself included), which shares out smtp.rate_per_second."""
        table = self.table
        with self.store.writing() as conn:
            # Rows a sender of this worker is writing right now are skipped, not waited for (waiting could
            # deadlock with it); they are renewed on the next beat.
            conn.execute(table.update().where(table.c.id.in_(self._unlocked(
                table.c.claimed_by == self.worker, table.c.status.in_(("queued", "sending")))))
                .values(claimed_until=now + lease))
            conn.execute(workers.update().where(workers.c.id == self.worker).values(heartbeat_at=now, busy=busy))
            others = conn.scalar(sa.select(sa.func.count()).select_from(workers).where(
                workers.c.busy, workers.c.id != self.worker, workers.c.heartbeat_at > now - lease))
        return 1 + (others or 0)

    def release(self, *, retire: bool) -> None:
        """Give back the rows this worker claimed but did not start; with `retire`, also forget the worker."""
        table = self.table
        with self.store.writing() as conn:
            # A deferred row claimed when its retry fell due, and not tried in this run, is given back too: its
            # lease would otherwise keep it from the next run until it ran out.
            conn.execute(table.update().where(table.c.claimed_by == self.worker,
                                              table.c.status.in_(("queued", "deferred")))
                         .values(claimed_by=None, claimed_until=None))
            if retire:
                conn.execute(workers.delete().where(workers.c.id == self.worker))

    def reclaim_dead_neighbours(self, alive: Callable[[int], bool]) -> int:
        """Free at once the rows of workers on this host whose process is gone (killed, crashed): their
        lease would otherwise hold the rows until it ran out. Returns how many workers were dead."""
        host = self.worker.split(":")[0]
        table = self.table
        with self.store.engine.connect() as conn:
            found = list(conn.execute(sa.select(workers.c.id, workers.c.pid).where(workers.c.host == host)))
        dead = [row.id for row in found if not alive(row.pid)]
        if dead:
            with self.store.writing() as conn:
                conn.execute(table.update().where(table.c.id.in_(self._unlocked(
                    table.c.claimed_by.in_(dead), table.c.status.in_(("queued", "sending")))))
                    .values(claimed_by=None, claimed_until=None))
                conn.execute(workers.delete().where(workers.c.id.in_(dead)))
        return len(dead)

    def _unlocked(self, *where: sa.ColumnElement[bool]) -> sa.Select[Any]:
        """The ids of matching rows no other transaction is writing (PostgreSQL); all of them on SQLite."""
        return sa.select(self.table.c.id).where(*where).with_for_update(skip_locked=True)


class Claims(Leases):
    """Mail's deliveries: the rows claimed come with their reader, and readers gone meanwhile fail unsent."""

    def __init__(self, store: Store, worker: str) -> None:
        super().__init__(store, worker, deliveries, due)

    def claim(self, now: datetime, lease: timedelta, limit: int, issue_id: int | None = None) -> Claim:
        """Take up to `limit` due rows (of one issue, or of any) until now + `lease`. Rows whose reader is
        no longer active or whose address is suppressed fail at once, unsent."""
        ids = self.take(now, lease, limit, *([deliveries.c.issue_id == issue_id] if issue_id is not None else []))
        if not ids:
            return Claim((), ())
        rows = (sa.select(deliveries.c.id, deliveries.c.issue_id, deliveries.c.subscriber_id, subscribers.c.email,
                          subscribers.c.name, deliveries.c.variant_key, deliveries.c.status, deliveries.c.attempts,
                          deliveries.c.next_attempt_at, deliveries.c.last_reply,
                          subscribers.c.status.label("reader"), is_suppressed().label("blocked"))
                .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                .where(deliveries.c.id.in_(sorted(ids))).order_by(deliveries.c.id))
        with self.store.engine.connect() as conn:
            found = list(conn.execute(rows))
        skipped = [row for row in found if row.reader != "active" or row.blocked]
        if skipped:
            with self.store.writing() as conn:
                for row in skipped:
                    conn.execute(deliveries.update()
                                 .where(deliveries.c.id == row.id, deliveries.c.claimed_by == self.worker)
                                 .values(status="failed", last_reply=_skip_reason(row), claimed_by=None,
                                         claimed_until=None, updated_at=now))
        left = {row.id for row in skipped}
        return Claim(tuple(to_delivery(r) for r in found if r.id not in left),
                     tuple(dataclasses.replace(to_delivery(r), status="failed", last_reply=_skip_reason(r))
                           for r in skipped))

    def marks(self) -> Marks:
        return Marks(self.store, self.worker)


class Marks:
    """The per-message writes (marks) of one worker, on one connection it keeps, as plain DB-API
    statements: the sender loop writes the outcomes that came in and the `sending` marks of the rows about
    to go out in one commit, however many connections they came from."""

    def __init__(self, store: Store, worker: str) -> None:
        self.store = store
        self.worker = worker
        dialect = store.engine.dialect
        self._stamp = UTCDateTime().dialect_impl(dialect).bind_processor(dialect) or (lambda value: value)
        self._placeholder = "?" if dialect.paramstyle == "qmark" else "%s"
        self._start_sql, self._finish_sql, self._suppress_sql = (
            sql.replace("?", self._placeholder) for sql in (_START, _FINISH, _SUPPRESS))
        self._raw = store.engine.raw_connection()
        self._cursor = self._raw.driver_connection.cursor()
        self._lock = threading.Lock()      # the claiming thread also writes (messages that cannot be built)

    def write(self, done: Sequence[Mark], starts: Sequence[int] = ()) -> set[int]:
        """Record the outcomes `done`, then mark the rows `starts` sending, in one commit; returns the
        rows of `starts` still this worker's (the others' lease ran out and another worker took them)."""
        now = self._stamp(utcnow())
        started: set[int] = set()
        with self._lock, self.store.write_turn():
            try:
                if done:
                    self._cursor.executemany(self._finish_sql, [
                        (m.status, m.reply, self._stamp(m.retry_at) if m.retry_at else None, now, m.delivery_id)
                        for m in done])
                for mark in done:
                    if mark.suppress:
                        self._cursor.execute(self._suppress_sql, (mark.suppress, now, mark.delivery_id))
                if starts:
                    # One statement for all: each driver call gives up and retakes the GIL.
                    self._cursor.execute(self._start_sql.format(ids=", ".join([self._placeholder] * len(starts))),
                                         (now, self.worker, *starts))
                    started = {row[0] for row in self._cursor.fetchall()}
                self._raw.commit()
            except BaseException:
                self._raw.rollback()
                raise
        return started

    def close(self) -> None:
        self._cursor.close()
        self._raw.close()


def _skip_reason(row: Any) -> str:
    return UNSUBSCRIBED_MEANWHILE if row.reader != "active" else SUPPRESSED_MEANWHILE

