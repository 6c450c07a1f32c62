"""The daemon's digest decision at fixed instants: a slot missed while the daemon was down goes out
once when it starts inside `digest.misfire_grace`, and not at all when it starts later."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from feedpub.send.dispatch import send_due_issue
from feedpub.store import SubscriberInput, open_store
from tests.smtp_server import SMTPTestServer

TOKYO = ZoneInfo("Asia/Tokyo")
SLOT = datetime(2025, 12, 15, 9, 0, tzinfo=TOKYO)   # a Monday
GRACE = timedelta(hours=6)


@pytest.fixture
def setup(site, smtp_server: SMTPTestServer, monkeypatch):
    monkeypatch.setenv("FEEDPUB_SECRET", "s")
    site.configure(f"""
[digest]
schedule = "mon 09:00"
misfire_grace = "6h"
[smtp]
host = "127.0.0.1"
port = {smtp_server.port}
security = "none"
""", language="ja")
    site.post("2025-12-14-ai.md", "---\ntitle: 週末のAIニュース\ndate: 2025-12-14 10:00:00 +09:00\n---\n本文。\n")
    config = site.config
    store = open_store(config.store_url)
    store.save_subscribers([SubscriberInput("reader@example.com")], status="active")
    return config, store, smtp_server


def test_started_an_hour_late_sends_once(setup) -> None:
    config, store, smtp = setup
    first = send_due_issue(config, store, SLOT + timedelta(hours=1), missed_after=GRACE)
    assert first.period == "2025-12-15-0900" and first.summary.sent == 1
    again = send_due_issue(config, store, SLOT + timedelta(hours=1, minutes=5), missed_after=GRACE)
    assert again.summary.sent == 0          # a restart or a second daemon: nothing new
    assert smtp.recipients() == ["reader@example.com"]


def test_started_two_days_late_sends_no_stale_issue(setup, site) -> None:
    config, store, smtp = setup
    site.post("2025-12-05-older.md", "---\ntitle: 先週の記事\ndate: 2025-12-05 10:00:00 +09:00\n---\n本文。\n")
    previous = send_due_issue(config, store, SLOT - timedelta(days=7), missed_after=GRACE)
    assert previous.summary.sent == 1
    late = send_due_issue(config, store, SLOT + timedelta(days=2), missed_after=GRACE)
    assert late.issue is None and late.summary is None
    assert "beyond digest.misfire_grace" in late.note
    assert len(smtp.received) == 1 and len(store.issues()) == 1
    # The next Monday's issue covers the posts the skipped one would have carried.
    next_week = send_due_issue(config, store, SLOT + timedelta(days=7, minutes=1), missed_after=GRACE)
    assert next_week.summary.sent == 1
    assert "週末のAIニュース" in smtp.received[1].message().get_body(("html",)).get_content()


def test_cron_send_has_no_grace(setup) -> None:
    config, store, smtp = setup
    manual = send_due_issue(config, store, SLOT + timedelta(days=2))
    assert manual.summary.sent == 1


def test_no_subscribers_leaves_the_slot_unused(setup) -> None:
    config, store, smtp = setup
    store.unsubscribe("reader@example.com", "test")
    empty = send_due_issue(config, store, SLOT + timedelta(minutes=1), missed_after=GRACE)
    assert empty.issue is None and "no active subscribers" in empty.note
    store.lift_suppression("reader@example.com")
    store.save_subscribers([SubscriberInput("reader@example.com")], status="active")
    later = send_due_issue(config, store, SLOT + timedelta(minutes=30), missed_after=GRACE)
    assert later.summary.sent == 1
