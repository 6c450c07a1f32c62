"""Work on untrusted input in child processes, each item bounded in time and memory.

A post can make Python-Markdown run for hours (it is quadratic on some inputs) and its Liquid can ask for
gigabytes (`{{ (1..150000000) | join: "," }}`). Inside the process that builds, neither can be stopped from a
thread other than the main one (the daemon's builds run in threads), nor memory be capped at all. So the work
runs in forked children: a child's address space is capped (RLIMIT_AS) at what its parent used plus `memory`,
and a child that does not answer for an item within `seconds` is killed and replaced; that item comes back as
`Stopped` and the other items carry on in the new child.

Forked, not spawned: a child inherits what the parent built (the site the posts' Liquid sees, the converter), so
only the items' results are pickled. A child never writes to stdout or stderr and leaves with `os._exit`, so a
stream lock held by another thread of the parent at fork time cannot hold it up.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Generic, TypeVar

from feedpub.errors import Message, message

T = TypeVar("T")
R = TypeVar("R")
_FORK = multiprocessing.get_context("fork")


@dataclass(frozen=True)
class Stopped:
    """An item whose child was killed (past its time), died, or met an exception `work` did not handle."""

    reason: Message     # problems.toml's words: the process ended, the time ran out, or the exception's text


def map_bounded(work: Callable[[T], R], items: Sequence[T], *, workers: int, seconds: float,
                memory: int) -> list[R | Stopped]:
    """`work(item)` for every item, in `workers` child processes, in the order of `items`."""
    results: list[R | Stopped | None] = [None] * len(items)
    # Items go out a few at a time (results come back one by one): a child does not wait for the parent between
    # two small posts, and a cold build of 10,000 posts does not cost 10,000 round trips.
    chunk = max(1, min(32, len(items) // (workers * 4)))
    queue = deque(range(len(items)))
    children: list[_Child[T, R]] = []
    try:
        while queue or any(child.pending for child in children):
            while queue and len(children) < workers:
                children.append(_Child(work, items, memory))
            for child in children:
                if not child.pending and queue:
                    child.send([queue.popleft() for _ in range(min(chunk, len(queue)))], seconds)
            busy = [child for child in children if child.pending]
            ready = wait([child.connection for child in busy],
                         timeout=max(0.0, min(child.deadline for child in busy) - time.monotonic()))
            for child in busy:
                if child.connection in ready:
                    finished = child.receive(seconds)
                    if finished is not None:
                        results[finished[0]] = finished[1]
                        continue
                    reason = message("render_process_ended", code=child.end())
                elif time.monotonic() >= child.deadline:
                    child.end()
                    reason = message("render_took_too_long", seconds=f"{seconds:g}")
                else:
                    continue
                # The item it was on is given up; the rest of its chunk goes to the next child.
                results[child.pending.popleft()] = Stopped(reason)
                queue.extendleft(reversed(child.pending))
                children.remove(child)
    finally:
        for child in children:
            child.end()
    return results  # type: ignore[return-value]  # every slot is filled


class _Child(Generic[T, R]):
    """One forked child and the items it was sent and has not answered yet."""

    def __init__(self, work: Callable[[T], R], items: Sequence[T], memory: int) -> None:
        self.connection, theirs = _FORK.Pipe()
        self.process = _FORK.Process(target=_serve, args=(theirs, work, items, memory), daemon=True)
        self.process.start()
        theirs.close()   # so that the child's death reads as the end of the pipe here
        self.pending: deque[int] = deque()
        self.deadline = float("inf")

    def send(self, indexes: list[int], seconds: float) -> None:
        self.pending.extend(indexes)
        self.connection.send(indexes)
        self.deadline = time.monotonic() + seconds

    def receive(self, seconds: float) -> tuple[int, R] | None:
        """The next answer (the next item then has `seconds`), None if the child has gone."""
        try:
            index, result = self.connection.recv()
        except (EOFError, OSError):
            return None
        self.pending.popleft()
        self.deadline = time.monotonic() + seconds if self.pending else float("inf")
        return index, result

    def end(self) -> int | None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.connection.close()
        return self.process.exitcode


def _serve(connection: Connection, work: Callable[[T], R], items: Sequence[T], memory: int) -> None:
    """The child: answer each index sent with (index, work(item)) until the parent closes the pipe."""
    try:
        # Ctrl-C and a service manager's stop reach the whole process group: the parent, which lets the build in
        # hand finish, decides when its children end (and they end when its end of the pipe closes).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _cap_memory(memory)
        while True:
            try:
                indexes = connection.recv()
            except EOFError:
                break
            for index in indexes:
                try:
                    result: R | Stopped = work(items[index])
                except Exception as exc:  # noqa: BLE001 - one item's failure is that item's, never the run's
                    result = Stopped(message("text", text=f"{type(exc).__name__}: {str(exc)[:200]}"))
                connection.send((index, result))
    finally:
        os._exit(0)


def _cap_memory(extra: int) -> None:
    """Cap this process's address space at its present size plus `extra` bytes (Linux: /proc/self/statm)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            size = int(statm.read().split()[0]) * resource.getpagesize()
    except OSError:
        return   # no /proc: the time bound still holds
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = size + extra if hard == resource.RLIM_INFINITY else min(size + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
