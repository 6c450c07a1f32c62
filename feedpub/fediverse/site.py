"""The site as the accounts serve it: its published posts (read again at most every REFRESH_SECONDS, reusing
what an earlier read found of unchanged files), the accounts they make, and renderings of a few of them (from
the renderings the last build kept). Blocking: the routes call it off the event loop."""

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

    def snapshot(self) -> Snapshot:
        with self._lock:
            if time.monotonic() - self._read_at >= REFRESH_SECONDS:
                found = collect(self.config, now=datetime.now(UTC), known=self._known)
                self._known = found.entries
                self._snapshot = Snapshot(found.posts, site_accounts(self.config, found.posts))
                self._read_at = time.monotonic()
            return self._snapshot

    def rendered(self, posts: Sequence[Post]) -> list[RenderedPost]:
        """`posts` as the feeds show them (posts that cannot be rendered still come back, with what was made)."""
        found, _ = render_posts(self.config, posts, site_posts=self.snapshot().posts, cache=render_cache(self.config))
        return found
