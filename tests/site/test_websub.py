"""WebSub publish pings (`feedpub.site.websub`) against a real hub-like HTTP server on 127.0.0.1: the
form a hub reads, retries with back-off on 5xx/timeouts/refused connections, none on 4xx, the
background publisher, and what a one-off `feedpub build` does."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from feedpub.site.websub import Patience, Publisher, changed_feeds, ping
from tests.hub_server import HubServer

QUICK = Patience(attempts=3, first_wait=0.05, timeout=1.0)
FEED = "https://blog.example.com/feed.xml"


@pytest.fixture
def hub() -> Iterator[HubServer]:
    server = HubServer().start()
    yield server
    server.stop()


def test_the_feeds_a_build_wrote_are_announced_site_wide_first(site) -> None:
    written = ["categories/ai導入戦略/feed.xml", "feed.json", "feeds.opml", "feeds/index.html", "feed.xml",
               "feed.xsl", "rss.xml", "categories/ai導入戦略/rss.xml"]
    assert changed_feeds(site.config, written) == (
        "https://blog.example.com/feed.json", "https://blog.example.com/feed.xml", "https://blog.example.com/rss.xml",
        "https://blog.example.com/categories/ai%E5%B0%8E%E5%85%A5%E6%88%A6%E7%95%A5/feed.xml",
        "https://blog.example.com/categories/ai%E5%B0%8E%E5%85%A5%E6%88%A6%E7%95%A5/rss.xml")


def test_a_ping_is_a_form_encoded_publish_request(hub: HubServer) -> None:
    found = ping(hub.url, [FEED, "https://blog.example.com/rss.xml"], QUICK)
    assert found.ok and found.status == "204" and found.attempts == 2 and found.accepted == 2
    assert [(r.mode, r.url, r.content_type) for r in hub.received] == [
        ("publish", FEED, "application/x-www-form-urlencoded"),
        ("publish", "https://blog.example.com/rss.xml", "application/x-www-form-urlencoded")]


def test_a_hub_answering_503_is_asked_again_after_a_growing_wait(hub: HubServer) -> None:
    hub.answers = [503, 502]
    found = ping(hub.url, [FEED], QUICK)
    assert found.ok and found.attempts == 3
    assert [r.status for r in hub.received] == [503, 502, 204]
    first_wait, second_wait = (b.at - a.at for a, b in zip(hub.received, hub.received[1:], strict=False))
    assert first_wait >= 0.05 and second_wait >= 0.1


def test_a_hub_down_for_every_attempt_is_reported_and_the_other_feeds_are_not_tried(hub: HubServer) -> None:
    hub.answers = [503] * 5
    found = ping(hub.url, [FEED, "https://blog.example.com/rss.xml"], QUICK)
    assert not found.ok and found.status == "503" and found.attempts == 3 and found.accepted == 0
    assert {r.url for r in hub.received} == {FEED}
    assert "FAILED (0/2 feeds accepted)" in str(found.words())


def test_a_4xx_is_the_hubs_answer_and_is_not_retried(hub: HubServer) -> None:
    hub.answers = [400]
    found = ping(hub.url, [FEED], QUICK)
    assert not found.ok and found.status == "400" and len(hub.received) == 1


def test_timeouts_and_refused_connections_are_retried(hub: HubServer) -> None:
    hub.delay = 1.5
    slow = ping(hub.url, [FEED], Patience(attempts=2, first_wait=0.05, timeout=0.3))
    assert not slow.ok and slow.status == "timed out" and slow.attempts == 2
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/hub"    # bound, not listening: refused
        refused = ping(closed, [FEED], QUICK)
    assert not refused.ok and refused.status == "Connection refused" and refused.attempts == 3


def test_the_publisher_never_blocks_and_merges_what_piles_up_while_a_hub_is_retried(hub: HubServer) -> None:
    hub.answers = [503]
    publisher = Publisher(Patience(attempts=3, first_wait=0.5, timeout=1.0))
    try:
        publisher.publish([hub.url], [FEED])
        hub.wait_for(lambda received: len(received) == 1)     # first answer 503: now waiting 0.5 s
        for _ in range(3):     # three builds meanwhile, each changing the same two feeds
            publisher.publish([hub.url], ["https://blog.example.com/rss.xml", FEED])
        received = hub.wait_for(lambda received: len(received) == 4)
        assert [r.url for r in received] == [FEED, FEED, "https://blog.example.com/rss.xml", FEED]
        deadline = time.monotonic() + 10
        while len(publisher.last()[hub.url]["feeds"]) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)    # the hub answered; the publisher records it
        state = publisher.last()[hub.url]
        assert state["ok"] and state["status"] == "204"
        assert state["feeds"] == ["https://blog.example.com/rss.xml", FEED]
    finally:
        publisher.close(timeout=5)


def test_a_hub_being_retried_delays_no_other_hub(hub: HubServer) -> None:
    slow = HubServer().start()
    slow.answers = [503]
    publisher = Publisher(Patience(attempts=2, first_wait=2.0, timeout=1.0))
    try:
        publisher.publish([slow.url, hub.url], [FEED])
        slow.wait_for(lambda received: len(received) == 1)     # answered 503: now waiting 2 s to ask again
        assert [r.url for r in hub.wait_for(lambda received: len(received) == 1)] == [FEED]
        assert [r.status for r in slow.received] == [503]      # the other hub did not wait for it
        assert [r.status for r in slow.wait_for(lambda received: len(received) == 2)] == [503, 204]
    finally:
        publisher.close(timeout=5)
        slow.stop()


def test_a_one_off_build_pings_the_hubs_and_a_dead_hub_only_warns(site, hub: HubServer) -> None:
    site.post("2025-12-16-inference.md", """\
        ---
        title: "推論性能35%向上は何を変えるのか"
        date: 2025-12-16 04:49:25 +0000
        categories: [AI導入戦略]
        ---

        本文です。
        """)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        site.configure(f'[feeds]\nwebsub_hub = ["{hub.url}", "{dead}"]\nformats = ["atom"]\n')
        built = subprocess.run([sys.executable, "-m", "feedpub", "build"], cwd=site.root, capture_output=True,
                               text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    assert [r.url for r in hub.received] == [
        FEED, "https://blog.example.com/categories/ai%E5%B0%8E%E5%85%A5%E6%88%A6%E7%95%A5/feed.xml"]
    assert f"WebSub hub {hub.url}: accepted, 2 feeds" in built.stderr
    assert f"feedpub: WebSub hub {dead}: FAILED (0/2 feeds accepted), 2 feeds, last answer Connection refused" \
        in built.stderr

    again = subprocess.run([sys.executable, "-m", "feedpub", "build"], cwd=site.root, capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 0 and "WebSub" not in again.stderr    # nothing changed: no ping
    assert len(hub.received) == 2
