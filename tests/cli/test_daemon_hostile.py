"""Hostile posts saved into a running `feedpub run` (a real daemon process, watching): each costs at most its render
bound, is named in the log with its line and published as plain text, and a normal post saved meanwhile still
reaches the feed. Without the bound, the 80 KB post of unclosed links held the daemon's build for minutes and the
join took it to 12 GB."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

from tests.cli.test_daemon_e2e import free_port
from tests.cli.test_watch import eventually, feed_has, start
from tests.site.test_watch import POST

LINKS = "---\ntitle: Unclosed links\ndate: 2025-12-10 09:00:00 +0900\n---\n" + "[a](" * 20_000 + "\n"
JOIN = ('---\ntitle: A join of 150 million\ndate: 2025-12-11 09:00:00 +0900\n---\n'
        'Before {{ (1..150000000) | join: "," | size }} after\n')
MEMORY_BOUND = 1024 ** 3   # the daemon and its children, resident


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and every process below it (Linux /proc)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            # children are listed under the thread that forked them (the daemon's build thread)
            children = [pid for task in Path(f"/proc/{current}/task").iterdir()
                        for pid in (task / "children").read_text().split()]
        except OSError:
            continue
        total += next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        pending.extend(int(child) for child in children)
    return total


def test_a_normal_post_reaches_the_feed_while_hostile_ones_are_rendered(site) -> None:
    port = free_port()
    site.configure('[feeds]\nrebuild_every = "1h"\nformats = ["atom", "json"]\n'
                   f'[web]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n')
    site.post("2025-12-01-first.md", POST.format(title="最初の記事", day=1))
    daemon, log = start(site, "run")
    peak = [0]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.05):
            peak[0] = max(peak[0], tree_rss(daemon.pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        eventually(lambda: feed_has(site, "最初の記事"), "the start-up build", log)
        eventually(lambda: "watching" in log.read_text(), "the watcher starts", log)
        time.sleep(0.5)

        site.post("2025-12-10-links.md", LINKS)
        site.post("2025-12-11-join.md", JOIN)
        time.sleep(3)
        site.post("2025-12-12-normal.md", POST.format(title="普通の記事", day=12))
        # Unbounded, the links alone took minutes; bounded, each hostile post costs a few seconds.
        eventually(lambda: feed_has(site, "普通の記事"), "the normal post in public/feed.xml", log, timeout=60)

        named = ("posts/2025-12-10-links.md:5: warning: Markdown could not be rendered (took over 5 s); published as "
                 "plain text (expected ", "posts/2025-12-11-join.md:5: warning: Liquid ",
                 "; published without its Liquid")
        eventually(lambda: all(part in log.read_text() for part in named), "each hostile post named", log, timeout=60)
        items = {item["title"]: item["content_html"]
                 for item in json.loads((site.root / "public" / "feed.json").read_text(encoding="utf-8"))["items"]}
        assert items["Unclosed links"].startswith("<p>[a]([a](") and "<a" not in items["Unclosed links"]
        assert items["A join of 150 million"] == "<p>Before  after</p>"
        assert daemon.poll() is None

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        sampling.set()
        sampler.join()
        if daemon.poll() is None:
            daemon.kill()
    assert 0 < peak[0] < MEMORY_BOUND, peak[0]
    assert "Traceback" not in log.read_text()


def test_a_hostile_post_is_bounded_in_build_watch_too(site) -> None:
    site.post("2025-12-01-first.md", POST.format(title="最初の記事", day=1))
    watcher, log = start(site, "build", "--watch")
    try:
        eventually(lambda: "watching" in log.read_text(), "the first build", log)
        time.sleep(0.5)
        site.post("2025-12-10-links.md", LINKS)
        site.post("2025-12-12-normal.md", POST.format(title="普通の記事", day=12))
        eventually(lambda: feed_has(site, "普通の記事"), "the normal post in public/feed.xml", log, timeout=60)
        # The watcher may see the hostile file half written first (a batch of its own): its bounded rendering
        # can then come in a later batch than the normal post's.
        eventually(lambda: "posts/2025-12-10-links.md:5: warning: Markdown could not be rendered" in log.read_text(),
                   "the hostile post named with its problem", log, timeout=60)
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=30) == 0, log.read_text()
    finally:
        if watcher.poll() is None:
            watcher.kill()
