"""The store on a real SQLite file: creation, case-insensitive addresses, deliveries, versioning, corruption."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import pytest

from feedpub.records import StoredVariant, SubscriberInput
from feedpub.schema import MIGRATIONS
from feedpub.send.claims import Claims, Mark
from feedpub.store import StoreError, open_store
from tests.conftest import store_of_version

JST = timezone(timedelta(hours=9))


@pytest.fixture
def store(tmp_path):
    return open_store(f"sqlite:///{tmp_path}/deep/folder/feedpub.db")


def test_created_on_first_use_with_wal_and_schema_version(tmp_path, store):
    db = tmp_path / "deep/folder/feedpub.db"
    assert db.is_file()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(len(MIGRATIONS),)]


def test_addresses_are_unique_case_insensitively(store):
    ((first, created),) = store.save_subscribers([SubscriberInput("Taro@Example.JP", "山田太郎", ("categories/AI",))],
                                                 status="active")
    ((again, created_again),) = store.save_subscribers([SubscriberInput("taro@example.jp", None, None)],
                                                       status=None)
    assert created and not created_again and again.id == first.id
    assert again.name == "山田太郎" and again.topics == ("categories/AI",) and again.cadence == "weekly"
    assert again.status == "active"
    assert len(store.subscribers()) == 1
    assert store.subscriber("TARO@EXAMPLE.JP").id == first.id


def test_unsubscribe_keeps_a_suppression_apart_from_the_subscriber(store):
    store.save_subscribers([SubscriberInput("a@example.com")], status="active")
    row = store.unsubscribe("A@example.com", "removed by operator", cause="operator")
    assert row.status == "unsubscribed" and row.unsubscribed_at is not None
    assert store.suppressed() == {"a@example.com"}
    assert store.suppression("a@example.com").reason == "removed by operator"


def test_times_come_back_as_aware_utc(store):
    slot = datetime(2025, 12, 15, 9, 0, tzinfo=JST)
    issue = store.create_issue(period="2025-12-15-0900", slot=slot, starts=slot - timedelta(days=7), ends=slot,
                               variants=[StoredVariant("", "件名", "<p>本文</p>", "本文")], recipients={})
    assert issue.slot == slot and issue.slot.tzinfo == UTC
    assert store.issue("2025-12-15-0900") == issue
    assert store.variants(issue.id) == [StoredVariant("", "件名", "<p>本文</p>", "本文")]


def test_delivery_states_and_due_rows(tmp_path, store):
    saved = store.save_subscribers([SubscriberInput(f"r{i}@example.com") for i in range(4)], status="active")
    ids = [row.id for row, _ in saved]
    now = datetime.now(UTC)
    issue = store.create_issue(period="p", slot=now, starts=now - timedelta(days=7), ends=now,
                               variants=[StoredVariant("", "s", "h", "t")], recipients=dict.fromkeys(ids, ""))
    rows = store.due_deliveries(issue.id, now)
    assert [r.email for r in rows] == [f"r{i}@example.com" for i in range(4)]
    assert store.count_due(issue.id, now) == 4
    sent, sending, deferred, failed = rows
    claims = Claims(store, "here:1:a")
    assert claims.claim(now, timedelta(seconds=0), 10, issue.id).rows == tuple(rows)
    marks = claims.marks()
    assert marks.write([], [row.id for row in rows]) == {row.id for row in rows}
    marks.write([Mark(sent.id, "sent", "250 ok"), Mark(failed.id, "failed", "550 unknown", suppress="550 unknown"),
                 Mark(deferred.id, "deferred", "451 later", retry_at=now + timedelta(minutes=1))])
    marks.close()
    # sent and failed are done; the row left `sending` (a killed process) is due again; deferred waits
    assert [r.id for r in store.due_deliveries(issue.id, now)] == [sending.id]
    assert store.count_due(issue.id, now) == 1
    assert {r.id for r in store.due_deliveries(issue.id, now + timedelta(minutes=2))} == {sending.id, deferred.id}
    assert store.next_retry(issue.id) == (now + timedelta(minutes=1))
    assert store.counts(issue.id) == {"queued": 0, "sending": 1, "sent": 1, "deferred": 1, "failed": 1,
                                     "cancelled": 0}
    assert store.suppressed() == {"r3@example.com"}
    with sqlite3.connect(tmp_path / "deep/folder/feedpub.db") as conn:
        assert conn.execute("SELECT DISTINCT attempts FROM deliveries").fetchall() == [(1,)]


def test_archived_issues_come_back_oldest_first_with_their_posts(store):
    later = datetime(2025, 12, 22, 9, 0, tzinfo=JST)
    earlier = later - timedelta(days=7)
    posts = [{"title": "生成AIと著作権", "url": "https://blog.example.com/a.html", "picture": None}]
    store.create_issue(period="2025-12-22-0900", slot=later, starts=earlier, ends=later, variants=[], recipients={},
                       archived=posts)
    store.create_issue(period="2025-12-15-0900", slot=earlier, starts=earlier, ends=earlier, variants=[],
                       recipients={}, archived=[{"title": "Deploying with Python"}])
    store.create_issue(period="not-archived", slot=later, starts=later, ends=later, variants=[], recipients={})
    archived = store.archived_issues()
    assert [(a.period, a.slot) for a in archived] == [("2025-12-15-0900", earlier), ("2025-12-22-0900", later)]
    assert archived[1].entries == posts
    (unarchived,) = store.unarchived_issues()
    assert unarchived.period == "not-archived"
    store.archive_issue(unarchived.id, [])             # its posts are gone: recorded, and still not listed
    assert store.unarchived_issues() == [] and len(store.archived_issues()) == 2


def test_an_issue_period_is_composed_once(store):
    now = datetime.now(UTC)
    store.create_issue(period="p", slot=now, starts=now, ends=now, variants=[], recipients={})
    with pytest.raises(StoreError, match="composed by another process"):
        store.create_issue(period="p", slot=now, starts=now, ends=now, variants=[], recipients={})


def test_reopening_keeps_data(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    open_store(url).save_subscribers([SubscriberInput("a@example.com")], status="active")
    assert [s.email for s in open_store(url).subscribers()] == ["a@example.com"]


def test_corrupt_file_is_a_clear_error_naming_it(tmp_path):
    db = tmp_path / "broken.db"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=f"{db}: cannot use the store"):
        open_store(f"sqlite:///{db}")


def test_store_from_a_newer_feedpub_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    open_store(url)
    with sqlite3.connect(tmp_path / "s.db") as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="newer than this feedpub"):
        open_store(url)


def test_a_store_of_category_readers_keeps_them_weekly_in_the_site_zone_with_those_topics(tmp_path):
    url = f"sqlite:///{tmp_path / 'v8.db'}"
    dropped = (f"ALTER TABLE subscribers DROP COLUMN {name}" for name in ("topics", "cadence", "timezone"))
    store_of_version(url, 8, *dropped,
                     "ALTER TABLE subscribers ADD COLUMN categories JSON NOT NULL DEFAULT '[]'",
                     "INSERT INTO subscribers (email, email_key, name, status, categories, created_at) VALUES "
                     "('taro@example.jp', 'taro@example.jp', '太郎', 'active', '[\"AI導入戦略\", \"news\"]', "
                     "'2026-12-01'),"
                     "('all@example.com', 'all@example.com', '', 'active', '[]', '2026-12-01')")
    upgraded = open_store(url)
    taro, everyone = upgraded.subscriber("taro@example.jp"), upgraded.subscriber("all@example.com")
    assert (taro.topics, taro.cadence, taro.timezone) == (("categories/AI導入戦略", "categories/news"), "weekly", "")
    assert (everyone.topics, everyone.cadence, everyone.timezone) == ((), "weekly", "")
    with sqlite3.connect(tmp_path / "v8.db") as conn:
        assert "categories" not in [row[1] for row in conn.execute("PRAGMA table_info(subscribers)")]
    upgraded.engine.dispose()


def test_choices_left_out_keep_what_is_stored(store):
    store.save_subscribers([SubscriberInput("a@example.com", "A", ("tags/rust",), "daily", "Asia/Tokyo")],
                           status="active")
    ((again, _),) = store.save_subscribers([SubscriberInput("a@example.com", None, None, "post")], status=None)
    assert (again.topics, again.cadence, again.timezone) == (("tags/rust",), "post", "Asia/Tokyo")
    assert store.active_recipients("post") == {again.id: ("tags/rust",)} and store.active_recipients("daily") == {}
