"""Save a post, see it published: a real `feedpub run` daemon (and `feedpub build --watch`) as a
subprocess, a recording WebSub hub on 127.0.0.1. Nothing here is timed beyond "eventually": the
timed rebuild is set to an hour, so only the watcher can have published what the tests wait for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.test_daemon_e2e import free_port
from tests.hub_server import HubServer
from tests.send.test_archive import WEEKS, send_three_weeks
from tests.site.test_watch import POST

CATEGORY_FEED = "https://blog.example.com/categories/ai%E5%B0%8E%E5%85%A5%E6%88%A6%E7%95%A5/feed.xml"


@pytest.fixture
def hub() -> Iterator[HubServer]:
    server = HubServer().start()
    yield server
    server.stop()


def eventually(check: Callable[[], bool], what: str, log: Path | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s" + (f"\n{log.read_text()}" if log else ""))
        time.sleep(0.1)


def feed_has(site, text: str) -> bool:
    try:
        return text.encode() in (site.root / "public" / "feed.xml").read_bytes()
    except FileNotFoundError:
        return False


def start(site, *args: str) -> tuple[subprocess.Popen, Path]:
    log = site.root / f"feedpub-{time.monotonic_ns()}.log"
    process = subprocess.Popen([sys.executable, "-m", "feedpub", *args], cwd=site.root, stdout=log.open("ab"),
                               stderr=subprocess.STDOUT, env={**os.environ, "FEEDPUB_SECRET": "watch-secret"})
    return process, log


def test_a_saved_post_reaches_the_feed_the_hub_and_healthz(site, hub: HubServer) -> None:
    port = free_port()
    site.configure(f'[feeds]\nwebsub_hub = "{hub.url}"\nrebuild_every = "1h"\n'
                   f'[web]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n')
    site.post("2025-12-01-first.md", POST.format(title="最初の記事", day=1))
    daemon, log = start(site, "run")
    try:
        eventually(lambda: feed_has(site, "最初の記事"), "the start-up build", log)
        eventually(lambda: "watching" in log.read_text(), "the watcher starts", log)
        time.sleep(0.5)
        hub.received.clear()    # the start-up build's pings

        site.post("2025-12-16-inference.md", POST.format(title="推論性能35%向上は何を変えるのか", day=16))
        eventually(lambda: feed_has(site, "推論性能35%向上は何を変えるのか"), "the new post in public/feed.xml", log)
        pinged = hub.wait_for(lambda received: {"https://blog.example.com/feed.xml", CATEGORY_FEED}
                              <= {r.url for r in received})
        assert {r.mode for r in pinged} == {"publish"}

        def shown() -> bool:
            state = httpx.get(f"http://127.0.0.1:{port}/healthz").json()["websub"].get(hub.url)
            return bool(state) and "https://blog.example.com/feed.xml" in state["feeds"]

        eventually(shown, "the ping in /healthz", log)
        state = httpx.get(f"http://127.0.0.1:{port}/healthz").json()["websub"][hub.url]
        assert state["ok"] and state["status"] == "204" and state["at"]

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()


def test_build_watch_reports_a_bad_post_publishes_the_rest_and_survives_a_broken_config(site) -> None:
    site.post("2025-12-01-first.md", POST.format(title="最初の記事", day=1))
    watcher, log = start(site, "build", "--watch")
    feed = site.root / "public" / "feed.xml"
    try:
        eventually(lambda: "watching" in log.read_text(), "the first build", log)
        time.sleep(0.5)

        site.post("2025-12-02-broken.md", "---\ntitle: [unclosed\n---\n\n本文\n")
        site.post("2025-12-03-good.md", POST.format(title="Good news", day=3))
        eventually(lambda: feed_has(site, "Good news"), "the good post of the same save", log)
        eventually(lambda: "2025-12-02-broken.md:" in log.read_text(), "the bad post named", log)

        published = feed.read_bytes()
        site.toml.write_text(site.toml.read_text(encoding="utf-8") + "[feeds\n", encoding="utf-8")
        eventually(lambda: "invalid TOML" in log.read_text(), "the broken config reported", log)
        assert f"{site.toml.resolve()}:" in log.read_text()
        assert feed.read_bytes() == published

        site.configure(title="Fixed blog")
        eventually(lambda: feed_has(site, "<title>Fixed blog</title>"), "the fixed config applied", log)

        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=30) == 1      # the last build skipped the bad post
    finally:
        if watcher.poll() is None:
            watcher.kill()


def test_build_watch_brings_a_changed_digest_strings_file_to_every_archived_issue(site, smtp_server,
                                                                                  monkeypatch) -> None:
    config = send_three_weeks(site, smtp_server, monkeypatch, "ja")
    (site.root / "overrides").mkdir()
    site.toml.write_text(site.toml.read_text(encoding="utf-8").replace(
        'schedule = "mon 09:00"', 'schedule = "mon 09:00"\ntemplates_dir = "overrides"'), encoding="utf-8")
    pages = [config.output_dir / "digests" / week / "index.html" for week in WEEKS]
    watcher, log = start(site, "build", "--watch")
    try:
        eventually(lambda: "を監視しています" in log.read_text(), "the first build", log)   # a Japanese site
        time.sleep(0.5)
        assert all("バックナンバー一覧" in page.read_text(encoding="utf-8") for page in pages)

        (site.root / "overrides" / "strings.toml").write_text('[ja]\nall_issues = "過去の号"\n', encoding="utf-8")
        eventually(lambda: all("過去の号" in page.read_text(encoding="utf-8") for page in pages),
                   "the new words on every archived issue", log)

        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=30) == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()
