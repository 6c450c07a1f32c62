"""Watching posts and the config (`feedpub.site.watch`) with real files and the real watcher: a burst of
saves is one batch, what changes while a build runs is the next batch, editors' scratch files are
ignored, a config saved by rename is still seen, a config that does not load leaves the feeds as
they were until a later save fixes it, and saving a file a post includes (`_includes/`, beside the post,
`_data/`) rebuilds its feed."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from feedpub.site.build import build_site
from feedpub.site.watch import LiveConfig, changes, follow

POST = """\
---
title: "{title}"
date: 2025-12-{day:02d} 09:00:00 +0900
categories: [AI導入戦略]
---

{title}の本文です。
"""


class Batches:
    """`changes` (or `follow`) running in a thread, its batches in a queue."""

    def __init__(self, source: Iterator[frozenset[Path]], stop: threading.Event, on_batch=None) -> None:  # noqa: ANN001
        self.found: queue.Queue[frozenset[Path]] = queue.Queue()
        self.stop = stop

        def run() -> None:
            for batch in source:
                if on_batch:
                    on_batch(batch)
                self.found.put(batch)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        time.sleep(0.5)    # the watchers are set up

    def next(self, timeout: float = 10) -> frozenset[Path]:
        return self.found.get(timeout=timeout)

    def none_within(self, seconds: float) -> bool:
        try:
            extra = self.found.get(timeout=seconds)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected batch {sorted(extra)}")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()


@pytest.fixture
def watching(site) -> Iterator[Batches]:
    site.post("2025-12-01-first.md", POST.format(title="最初の記事", day=1))
    stop = threading.Event()
    batches = Batches(changes(LiveConfig(site.config, site.toml).watched(), stop), stop)
    yield batches
    batches.close()


def test_a_burst_of_200_saves_is_one_batch(site, watching: Batches) -> None:
    written = {site.post(f"2025-11-{n % 28 + 1:02d}-pulled-{n}.md", POST.format(title=f"Pulled {n}", day=1))
               for n in range(200)}
    batch = watching.next()
    assert written <= batch
    assert watching.none_within(1.0)


def test_what_changes_while_the_caller_is_busy_is_the_next_batch(site, watching: Batches) -> None:
    first = site.post("2025-12-02-a.md", POST.format(title="A", day=2))
    assert first in watching.next()
    time.sleep(0.5)    # the caller building
    second = site.post("2025-12-03-b.md", POST.format(title="B", day=3))
    assert watching.next() == {second}


def test_editor_scratch_files_are_ignored_and_a_config_saved_by_rename_is_seen(site, watching: Batches) -> None:
    (site.posts / ".2025-12-01-first.md.swp").write_bytes(b"vim")
    (site.posts / "2025-12-01-first.md~").write_text("backup", encoding="utf-8")
    (site.root / "notes.txt").write_text("not watched", encoding="utf-8")
    (site.root / "public").mkdir()
    (site.root / "public" / "feed.xml").write_text("<feed/>", encoding="utf-8")
    assert watching.none_within(0.8)
    for title in ("Renamed once", "Renamed twice"):   # as editors save: a new file renamed over the old one
        fresh = site.root / "feedpub.toml.tmp"
        fresh.write_text(site.toml.read_text(encoding="utf-8").replace("Test blog", title), encoding="utf-8")
        os.replace(fresh, site.toml)
        assert watching.next() == {site.toml.resolve()}


def test_a_config_that_does_not_load_leaves_the_feeds_until_a_later_save_fixes_it(site, caplog) -> None:
    site.post("2025-12-01-first.md", POST.format(title="最初の記事", day=1))
    live = LiveConfig(site.config, site.toml)
    build_site(live.current)
    feed = site.root / "public" / "feed.xml"
    published = feed.read_bytes()
    stop = threading.Event()
    built = threading.Event()
    batches = Batches(follow(live, stop), stop, on_batch=lambda _batch: (build_site(live.current), built.set()))
    try:
        site.toml.write_text(site.toml.read_text(encoding="utf-8") + "[feeds\nlimit = 5\n", encoding="utf-8")
        batches.next()
        assert live.broken and f"{site.toml.resolve()}:" in caplog.text and "invalid TOML" in caplog.text
        assert feed.read_bytes() == published

        site.post("2025-12-05-second.md", POST.format(title="二本目", day=5))   # still broken: old config, new post
        batches.next()
        assert live.broken and "二本目".encode() in feed.read_bytes()

        site.configure(title="Fixed blog")
        batches.next()
        assert not live.broken
        assert b"<title>Fixed blog</title>" in feed.read_bytes()
    finally:
        batches.close()


@pytest.mark.parametrize(("included", "liquid"), [
    ("_includes/note.html", "{% include note.html %}"),
    ("posts/snippets/note.html", "{% include_relative snippets/note.html %}"),
    ("jekyll/_includes/note.html", "{% include note.html %}"),
    ("jekyll/_data/note.yml", "<aside>{{ site.data.note.text }}</aside>"),
])
def test_editing_an_included_file_rebuilds_the_posts_that_include_it(site, included: str, liquid: str) -> None:
    if included.startswith("jekyll/"):
        (site.root / "jekyll").mkdir()
        (site.root / "jekyll" / "_config.yml").write_text("title: Jekyll\n", encoding="utf-8")
        site.configure(jekyll_dir="jekyll", posts_dir="posts")
    note = site.root / included
    note.parent.mkdir(parents=True)
    text = "text: {}\n" if note.suffix == ".yml" else "<aside>{}</aside>\n"
    note.write_text(text.format("最初の注記"), encoding="utf-8")
    site.post("2025-12-01-first.md", POST.format(title="最初の記事", day=1) + f"\n{liquid}\n")
    site.post("2025-12-02-plain.md", POST.format(title="Plain", day=2))
    live = LiveConfig(site.config, site.toml)
    build_site(live.current)
    feed = site.root / "public" / "feed.xml"
    assert "最初の注記" in feed.read_text(encoding="utf-8")
    stop = threading.Event()
    batches = Batches(follow(live, stop), stop, on_batch=lambda _batch: build_site(live.current))
    try:
        note.write_text(text.format("書き直した注記"), encoding="utf-8")
        assert note in batches.next()
        published = feed.read_text(encoding="utf-8")
        assert "書き直した注記" in published and "最初の注記" not in published
    finally:
        batches.close()
