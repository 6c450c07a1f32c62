"""The site as the accounts serve it: its published posts (read again at most every REFRESH_SECONDS, reusing
what an earlier read found of unchanged files, and at once for a post the store says a build published or edited
since the last read: instances fetch an object as soon as its activity reaches them), the accounts they make, and
renderings of a few of them (from the renderings the last build kept).
Blocking: the routes call it off the event loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from feedpub.config import Config
from feedpub.fediverse.accounts import Account, site_accounts
from feedpub.site.build import render_cache
from feedpub.site.markup import RenderedPost, render_posts
from feedpub.site.posts import FileEntry, collect
from feedpub.site.reader import Post

REFRESH_SECONDS = 10.0


@dataclass(frozen=True)
class Snapshot:
    posts: tuple[Post, ...]            # newest first
    accounts: dict[str, Account]


class SitePosts:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._known: dict[str, FileEntry] = {}
        self._snapshot = Snapshot((), {})
        self._read_at = float("-inf")
        self._read_from = datetime.min.replace(tzinfo=UTC)    # the clock when the last read began

    def snapshot(self, published_at: datetime | None = None) -> Snapshot:
        """The posts as last read; read again when that was REFRESH_SECONDS ago, or before `published_at` (when
        the store says a post was last published, edited or deleted: once read after it, no more reads)."""
        with self._lock:
            stale = published_at is not None and self._read_from <= published_at
            if stale or time.monotonic() - self._read_at >= REFRESH_SECONDS:
                now = datetime.now(UTC)
                found = collect(self.config, now=now, known=self._known)
                self._known = found.entries
                self._snapshot = Snapshot(found.posts, site_accounts(self.config, found.posts))
                self._read_at, self._read_from = time.monotonic(), now
            return self._snapshot

    def rendered(self, posts: Sequence[Post]) -> list[RenderedPost]:
        """`posts` as the feeds show them (posts that cannot be rendered still come back, with what was made)."""
        found, _ = render_posts(self.config, posts, site_posts=self.snapshot().posts, cache=render_cache(self.config))
        return found
