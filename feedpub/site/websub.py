"""Telling WebSub hubs that feeds changed (https://www.w3.org/TR/websub/#publishing), so readers
subscribed through a hub get a new post in seconds instead of at their next poll.

After a build, every feed whose bytes changed is announced to every hub of `feeds.websub_hub`: one
form-encoded POST `hub.mode=publish&hub.url=<feed URL>` per feed, site-wide feed first. A 5xx, a
timeout or a refused connection is retried with exponential back-off; a 4xx is the hub's answer and
is not. The build never waits for this: the daemon and `build --watch` hand the feeds to a
`Publisher` thread; a one-off `feedpub build` pings in the foreground with fewer, shorter attempts.

This is the site wing's outward edge, like `output.py`: it knows feeds, not mail or the web app.
"""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

from feedpub import urls
from feedpub.config import Config
from feedpub.errors import Message, message
from feedpub.site.feeds import FORMATS

log = logging.getLogger(__name__)

_FEED_FILES = {name for name, _type, _label in FORMATS.values()}


@dataclass(frozen=True)
class Patience:
    """How hard to try one ping: `attempts` in all, waiting `first_wait` seconds after the first failure
    and twice as long after each further one; each attempt gives up after `timeout` seconds."""

    attempts: int
    first_wait: float
    timeout: float


DAEMON = Patience(attempts=6, first_wait=1.0, timeout=10.0)    # waits 1+2+4+8+16 s: rides out a hub restart
FOREGROUND = Patience(attempts=2, first_wait=1.0, timeout=5.0)  # `feedpub build`: the operator is waiting


@dataclass(frozen=True)
class Ping:
    """The outcome of announcing one batch of feeds to one hub."""

    hub: str
    at: datetime                 # when the hub last answered (or the last attempt failed)
    ok: bool                     # every feed was accepted (2xx)
    status: str                  # the last answer: "204", "503", "timed out", "connection refused", …
    attempts: int
    feeds: tuple[str, ...]       # the feed URLs announced
    accepted: int                # how many of them the hub accepted

    def words(self) -> Message:
        """`WebSub hub H: accepted, 2 feeds, last answer 204, 2 requests`, or FAILED with how many were accepted."""
        feeds = message("count_feeds", count=len(self.feeds))
        verdict = message("websub_accepted") if self.ok else message("websub_failed", accepted=self.accepted,
                                                                         feeds=feeds)
        return message("websub_ping", hub=self.hub, verdict=verdict, feeds=feeds, status=self.status,
                       requests=message("count_requests", count=self.attempts))

    def as_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(timespec="seconds"), "ok": self.ok, "status": self.status,
                "attempts": self.attempts, "feeds": list(self.feeds)}


def changed_feeds(config: Config, written: Iterable[str]) -> tuple[str, ...]:
    """The URLs of the feed documents among the files a build wrote (paths relative to the output
    folder), the site-wide feeds first."""
    paths = sorted((path for path in written if path.rsplit("/", 1)[-1] in _FEED_FILES),
                   key=lambda path: (path.count("/"), path))
    return tuple(urls.absolute(config.site.root_url, path) for path in paths)


def ping(hub: str, feeds: Iterable[str], patience: Patience, stop: threading.Event | None = None) -> Ping:
    """Announce `feeds` to `hub`, one request per feed. When a feed cannot be announced after every
    attempt the hub is taken to be down and the remaining feeds are not tried."""
    feeds = tuple(feeds)
    stop = stop or threading.Event()
    accepted = attempts = 0
    status = "not tried"
    for feed in feeds:
        for attempt in range(patience.attempts):
            attempts += 1
            status, retry = _post(hub, feed, patience.timeout)
            if not retry or attempt == patience.attempts - 1 or stop.wait(patience.first_wait * 2 ** attempt):
                break
        if not status.startswith("2"):
            break
        accepted += 1
    return Ping(hub, datetime.now(UTC), accepted == len(feeds), status, attempts, feeds, accepted)


def _post(hub: str, feed: str, timeout: float) -> tuple[str, bool]:
    """One publish request: (the status or the failure, whether trying again may help)."""
    body = urllib.parse.urlencode({"hub.mode": "publish", "hub.url": feed}).encode("ascii")
    request = urllib.request.Request(hub, data=body, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", "User-Agent": f"feedpub/{version('feedpub')}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return str(response.status), False
    except urllib.error.HTTPError as exc:
        return str(exc.code), exc.code >= 500 or exc.code == 429
    except urllib.error.URLError as exc:
        reason = exc.reason
        return (reason.strerror or str(reason)) if isinstance(reason, OSError) else str(reason), True
    except TimeoutError:
        return "timed out", True
    except OSError as exc:   # e.g. the connection reset while reading the answer
        return exc.strerror or type(exc).__name__, True


class Publisher:
    """Announces changed feeds from background threads, one per hub (a hub being retried delays no
    other), so the build that changed them goes on. Feeds handed over while a hub is being retried are
    announced together afterwards, each once."""

    def __init__(self, patience: Patience = DAEMON) -> None:
        self.patience = patience
        self._pending: dict[str, dict[str, None]] = {}     # hub → feed URLs, in order, each once
        self._last: dict[str, Ping] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()

    def publish(self, hubs: Iterable[str], feeds: Iterable[str]) -> None:
        feeds = tuple(feeds)
        if not feeds:
            return
        with self._changed:
            for hub in hubs:
                self._pending.setdefault(hub, {}).update(dict.fromkeys(feeds))
                if hub not in self._threads:
                    self._threads[hub] = threading.Thread(target=self._run, args=(hub,), name=f"websub {hub}",
                                                          daemon=True)
                    self._threads[hub].start()
            self._changed.notify_all()

    def last(self) -> dict[str, dict[str, Any]]:
        """The last ping of each hub, for /healthz."""
        with self._changed:
            return {hub: found.as_json() for hub, found in self._last.items()}

    def close(self, timeout: float) -> None:
        """Stop after the requests in flight; what is still pending is logged and dropped."""
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout)
        with self._changed:
            for hub, feeds in self._pending.items():
                if feeds:
                    log.warning("%s", message("websub_dropped", hub=hub, count=len(feeds)))

    def _run(self, hub: str) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending[hub] or self._stop.is_set())
                if self._stop.is_set():
                    return
                feeds, self._pending[hub] = self._pending[hub], {}
            found = ping(hub, feeds, self.patience, self._stop)
            (log.info if found.ok else log.warning)("%s", found.words())
            with self._changed:
                self._last[hub] = found
