"""The daemon's digest decision at fixed instants: a slot missed while the daemon was down goes out
once when it starts inside `digest.misfire_grace`, and not at all when it starts later."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from feedpub.records import SubscriberInput
from feedpub.send.dispatch import send_due_issue, send_due_retries
from feedpub.send.issue import due_slot
from feedpub.store import open_store
from tests.smtp_server import SMTPTestServer

TOKYO = ZoneInfo("Asia/Tokyo")
SLOT = datetime(2025, 12, 15, 9, 0, tzinfo=TOKYO)   # a Monday
GRACE = timedelta(hours=6)


def configure(site, smtp_server: SMTPTestServer, smtp: str = ""):
    site.configure(f"""
[digest]
schedule = "mon 09:00"
misfire_grace = "6h"
[smtp]
host = "127.0.0.1"
port = {smtp_server.port}
security = "none"
{smtp}
""", language="ja")
    return site.config


@pytest.fixture
def setup(site, smtp_server: SMTPTestServer, monkeypatch):
    monkeypatch.setenv("FEEDPUB_SECRET", "s")
    config = configure(site, smtp_server)
    site.post("2025-12-14-ai.md", "---\ntitle: 週末のAIニュース\ndate: 2025-12-14 10:00:00 +09:00\n---\n本文。\n")
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
    assert "beyond digest.misfire_grace" in str(late.note)
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
    store.unsubscribe("reader@example.com", "test", cause="unsubscribe")
    empty = send_due_issue(config, store, SLOT + timedelta(minutes=1), missed_after=GRACE)
    assert empty.issue is None and "no active subscribers" in str(empty.note)
    store.lift_suppression("reader@example.com")
    store.save_subscribers([SubscriberInput("reader@example.com")], status="active")
    later = send_due_issue(config, store, SLOT + timedelta(minutes=30), missed_after=GRACE)
    assert later.summary.sent == 1


def html_of(received) -> str:
    return received.message().get_body(("html",)).get_content()


def test_an_issue_covers_the_week_up_to_its_slot_not_up_to_when_it_is_sent(setup, site) -> None:
    config, store, smtp = setup
    site.post("2026-11-22-too-old.md", "---\ntitle: 先々週の記事\ndate: 2026-11-22 20:00:00 +09:00\n---\n本文。\n")
    site.post("2026-11-25-in-week.md", "---\ntitle: 水曜の記事\ndate: 2026-11-25 10:30:00 +09:00\n---\n本文。\n")
    site.post("2026-12-01-after-slot.md", "---\ntitle: 火曜の記事\ndate: 2026-12-01 10:00:00 +09:00\n---\n本文。\n")
    # The first issue, of Monday 2026-11-30 09:00, sent by hand two and a half days late: it covers the
    # seven days (digest.first_issue_days) before its slot.
    first = send_due_issue(config, store, datetime(2026, 12, 2, 23, 52, tzinfo=TOKYO))
    assert first.period == "2026-11-30-0900" and first.summary.sent == 1
    assert (first.issue.starts, first.issue.ends) == (datetime(2026, 11, 23, 9, 0, tzinfo=TOKYO),
                                                      datetime(2026, 11, 30, 9, 0, tzinfo=TOKYO))
    html = html_of(smtp.received[0])
    assert "水曜の記事" in html
    assert "先々週の記事" not in html and "火曜の記事" not in html   # the Tuesday post is the next issue's
    # The next one covers (the previous slot, its own slot].
    second = send_due_issue(config, store, datetime(2026, 12, 7, 9, 1, tzinfo=TOKYO))
    assert (second.issue.starts, second.issue.ends) == (datetime(2026, 11, 30, 9, 0, tzinfo=TOKYO),
                                                        datetime(2026, 12, 7, 9, 0, tzinfo=TOKYO))
    html = html_of(smtp.received[1])
    assert "火曜の記事" in html and "水曜の記事" not in html


def test_deferred_rows_are_sent_again_once_their_retry_time_comes(setup, site) -> None:
    # The retry is an hour away and the clock is moved to it: a slow machine can neither make it due early
    # (inside the first run, or before the "not due yet" check) nor late.
    config, store, smtp = setup
    config = configure(site, smtp, 'retry_base = "1h"')
    _, slot = due_slot(config, datetime.now(UTC))
    date = slot - timedelta(days=1)   # in the issue that is due now
    site.post("this-week.md", f"---\ntitle: 今週の記事\ndate: {date:%Y-%m-%d %H:%M:%S %z}\n---\n本文。\n")
    store.save_subscribers([SubscriberInput("later@example.com")], status="active")
    smtp.faults.defer_rcpt["later@example.com"] = 1
    first = send_due_issue(config, store, datetime.now(UTC))
    assert (first.summary.sent, first.summary.deferred) == (1, 1)
    stop = threading.Event()
    assert send_due_retries(config, store, datetime.now(UTC), stop=stop) is None   # not due yet: nothing sent
    assert smtp.recipients() == ["reader@example.com"]

    retry_at = store.next_retry()
    assert retry_at - datetime.now(UTC) > timedelta(minutes=59)
    with time_machine.travel(retry_at + timedelta(seconds=1)):
        retried = send_due_retries(config, store, datetime.now(UTC), stop=stop)
        assert (retried.sent, retried.deferred) == (1, 0)
        assert send_due_retries(config, store, datetime.now(UTC), stop=stop) is None
    assert smtp.recipients() == ["reader@example.com", "later@example.com"]
