"""What one delivery run has done so far, shared by its claiming and sending threads: each outcome counted
(and reported) as soon as the server answers, the rows the run holds that are not yet written, and the
`Summary` it ends with."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from feedpub.errors import Message
from feedpub.records import Delivery
from feedpub.send.claims import Mark, Marks

log = logging.getLogger(__name__)


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
    paused: tuple[Message, ...] = ()  # why the circuit breaker paused an issue this run (problems.toml's words)

    def line(self) -> str:
        counts = f"{self.sent} sent, {self.deferred} deferred, {self.failed} failed"
        counts += f", {self.skipped} skipped (unsubscribed meanwhile)" if self.skipped else ""
        return counts + (" (stopped)" if self.stopped else "")


class Guard(Protocol):
    """What watches a run's outcomes (the circuit breaker, `feedpub.send.delivery`)."""

    def recorded(self, row: Delivery, mark: Mark) -> None:
        """An outcome, as the server answered (not written yet)."""

    def written(self) -> set[int]:
        """Outcomes were written; returns the rows it put back (queued again for `digest resume`)."""

    def reasons(self) -> tuple[Message, ...]:
        """Why it paused issues this run."""


class Tally:
    """The counts of one run and the rows it holds, safe to update from any thread."""

    def __init__(self, on_outcome: Callable[[Outcome], None] | None, guard: Guard | None = None) -> None:
        self.on_outcome = on_outcome
        self.guard = guard
        self.lock = threading.Lock()
        self.open_rows = 0                         # claimed by this run and not yet recorded
        self.sent = 0
        self.problems: dict[int, Outcome] = {}     # latest non-sent outcome per row
        self.skipped = 0

    def opened(self, rows: int) -> None:
        with self.lock:
            self.open_rows += rows

    def closed(self, rows: int = 1) -> None:
        """Rows recorded, or let go unrecorded (given back, or taken over by another worker)."""
        with self.lock:
            self.open_rows -= rows

    def record(self, row: Delivery, mark: Mark) -> Mark:
        """Count and report an outcome as soon as the server has answered (it is written a moment later)."""
        self.count(Outcome(row.id, row.email, mark.status, mark.reply))
        if self.guard:
            self.guard.recorded(row, mark)
        return mark

    def count(self, outcome: Outcome) -> None:
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

    def write(self, marks: Marks, done: list[Mark], starts: Sequence[int] = ()) -> set[int]:
        """Write (and forget) the outcomes in `done` with the `sending` marks of `starts`, in one commit;
        returns the rows of `starts` still this worker's."""
        if not done and not starts:
            return set()
        started = marks.write(done, starts)
        self.closed(len(done))
        done.clear()
        self.undo()
        return started

    def undo(self) -> None:
        """Forget the problems of the rows the guard put back (it does so once their outcome is written)."""
        if self.guard:
            undone = self.guard.written()
            with self.lock:
                for row in undone:
                    self.problems.pop(row, None)

    def summary(self, stopped: bool) -> Summary:
        problems = tuple(self.problems.values())
        return Summary(self.sent, sum(o.status == "deferred" for o in problems),
                       sum(o.status == "failed" for o in problems), problems, stopped, self.skipped,
                       self.guard.reasons() if self.guard else ())
