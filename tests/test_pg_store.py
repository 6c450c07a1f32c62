"""The store on a real PostgreSQL: the SQLite store's essentials, plus claims and leases across workers.

Needs FEEDPUB_TEST_PG_URL (a server where the user may create databases); each test session gets a
fresh database, dropped afterwards. Without the URL these tests skip, except under CI=true, where
they fail: CI must never pass without having run them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from feedpub.records import StoredVariant, SubscriberInput
from feedpub.schema import MIGRATIONS, deliveries, subscribers
from feedpub.send.claims import Claims, Mark
from feedpub.store import Store, StoreError, open_store
from tests.conftest import emptied

LEASE = timedelta(minutes=5)




@pytest.fixture
def store(pg_url: str) -> Iterator[Store]:
    """An empty, migrated store in the session's database."""
    store = emptied(open_store(pg_url))
    yield store
    store.engine.dispose()


def add_readers(store: Store, count: int) -> None:
    """`count` active subscribers reader0000@example.com…, in one bulk insert (many thousands, quickly)."""
    now = datetime.now(UTC)
    if count == 0:
        return
    with store.engine.begin() as conn:
        conn.execute(subscribers.insert(), [
            {"email": f"reader{i:04d}@example.com", "email_key": f"reader{i:04d}@example.com", "name": f"読者{i}",
             "status": "active", "topics": [], "created_at": now, "confirmed_at": now} for i in range(count)])


def queue_issue(store: Store, count: int, period: str = "2025-12-15-0900"):
    add_readers(store, count)
    now = datetime.now(UTC)
    return store.create_issue(period=period, slot=now, starts=now - timedelta(days=7), ends=now,
                              variants=[StoredVariant("", "今週のまとめ", "<p>本文</p>", "本文")],
                              recipients=dict.fromkeys(store.active_recipients(), ""))


def test_plain_postgresql_url_uses_psycopg_and_the_shared_migrations(pg_url, store):
    plain = open_store(pg_url.replace("postgresql+psycopg://", "postgresql://"))
    assert plain.engine.dialect.driver == "psycopg"
    with plain.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT version FROM schema_version")) == len(MIGRATIONS)
    plain.engine.dispose()


def test_an_issue_keeps_its_archived_posts_as_json(store):
    now = datetime.now(UTC)
    posts = [{"title": "推論性能35%向上", "date": "2025-12-16T13:49:25+09:00", "categories": ["AI導入戦略"],
              "picture": {"src": "https://blog.example.com/a.png", "width": 536, "height": 302, "alt": "図"}}]
    store.create_issue(period="p", slot=now, starts=now, ends=now, variants=[], recipients={}, archived=posts)
    (archived,) = store.archived_issues()
    assert archived.period == "p" and archived.entries == posts


def test_an_issue_stored_without_its_archive_gets_it_once(store):
    now = datetime.now(UTC)
    store.create_issue(period="old", slot=now, starts=now, ends=now, variants=[], recipients={})
    store.create_issue(period="gone", slot=now, starts=now, ends=now, variants=[], recipients={})
    old, gone = store.unarchived_issues()
    store.archive_issue(old.id, [{"title": "生成AIと著作権"}])
    store.archive_issue(old.id, [{"title": "a second process, a moment later"}])
    store.archive_issue(gone.id, [])
    assert store.unarchived_issues() == []
    assert [(a.period, a.entries) for a in store.archived_issues()] == [("old", [{"title": "生成AIと著作権"}])]


def test_subscribers_suppressions_and_times(store):
    store.save_subscribers([SubscriberInput("Taro@Example.JP", "山田太郎", ("categories/AI導入戦略",))],
                           status="active")
    assert store.subscriber("taro@example.jp").topics == ("categories/AI導入戦略",)
    store.unsubscribe("TARO@example.jp", "removed by operator", cause="operator")
    assert store.suppressed() == {"taro@example.jp"} and store.active_recipients() == {}
    issue = queue_issue(store, 0)
    assert issue.slot.tzinfo == UTC and store.issue(issue.period) == issue
    with pytest.raises(StoreError, match="composed by another process"):
        queue_issue(store, 0)


def test_claims_marks_and_due_rows(store):
    issue = queue_issue(store, 4)
    now = datetime.now(UTC)
    claim = Claims(store, "here:1:a").claim(now, LEASE, 10, issue.id)
    assert [row.email for row in claim.rows] == [f"reader{i:04d}@example.com" for i in range(4)]
    assert Claims(store, "there:2:b").claim(now, LEASE, 10).rows == ()           # all held
    sent, sending, deferred, failed = claim.rows
    marks = Claims(store, "here:1:a").marks()
    assert marks.write([], [row.id for row in claim.rows]) == {row.id for row in claim.rows}
    marks.write([Mark(sent.id, "sent", "250 ok"), Mark(failed.id, "failed", "550 unknown", suppress="550 unknown"),
                 Mark(deferred.id, "deferred", "451 later", retry_at=now + timedelta(minutes=1))])
    assert store.counts(issue.id) == {"queued": 0, "sending": 1, "sent": 1, "deferred": 1, "failed": 1,
                                     "cancelled": 0}
    assert store.suppressed() == {"reader0003@example.com"}
    # the deferred row is due at its retry time; the row left `sending` only once the lease has run out
    there = Claims(store, "there:2:b")
    assert [row.id for row in there.claim(now + timedelta(minutes=4), LEASE, 10).rows] == [deferred.id]
    assert [row.id for row in there.claim(now + timedelta(minutes=6), LEASE, 10).rows] == [sending.id]
    assert marks.write([], [sending.id]) == set()                          # the old holder may not start it
    marks.close()


def test_concurrent_claims_never_share_a_row(store):
    issue = queue_issue(store, 2000)
    taken: dict[str, list[int]] = {}

    def claim_all(worker: str) -> None:
        mine = taken.setdefault(worker, [])
        while rows := Claims(store, worker).claim(datetime.now(UTC), LEASE, 50).rows:
            mine.extend(row.id for row in rows)

    threads = [threading.Thread(target=claim_all, args=(f"host:{n}:x",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [row_id for rows in taken.values() for row_id in rows]
    assert len(every) == len(set(every)) == 2000
    assert sum(1 for rows in taken.values() if rows) >= 2
    assert store.counts(issue.id)["queued"] == 2000


def test_readers_who_leave_after_queueing_are_not_sent(store):
    issue = queue_issue(store, 3)
    store.unsubscribe("reader0000@example.com", "one-click unsubscribe", cause="unsubscribe")
    store.suppress("reader0002@example.com", "complaint")
    claim = Claims(store, "here:1:a").claim(datetime.now(UTC), LEASE, 10)
    assert [row.email for row in claim.rows] == ["reader0001@example.com"]
    failed = (sa.select(subscribers.c.email, deliveries.c.last_reply)
              .join(deliveries, deliveries.c.subscriber_id == subscribers.c.id)
              .where(deliveries.c.issue_id == issue.id, deliveries.c.status == "failed"))
    with store.engine.connect() as conn:
        assert dict(conn.execute(failed).all()) == {"reader0000@example.com": "unsubscribed before sending",
                                                    "reader0002@example.com": "address suppressed before sending"}


def test_a_dead_worker_on_this_host_is_released_at_once_and_a_stopped_one_gives_rows_back(store):
    queue_issue(store, 6)
    now = datetime.now(UTC)
    Claims(store, "here:999999:dead").register(now, timedelta(days=1))
    Claims(store, "here:1:live").register(now, timedelta(days=1))
    assert len(Claims(store, "here:999999:dead").claim(now, LEASE, 3).rows) == 3
    assert len(Claims(store, "here:1:live").claim(now, LEASE, 3).rows) == 3
    assert Claims(store, "here:2:new").reclaim_dead_neighbours(lambda pid: pid != 999999) == 1
    assert len(Claims(store, "here:2:new").claim(now, LEASE, 10).rows) == 3
    Claims(store, "here:1:live").release(retire=True)
    assert len(Claims(store, "here:2:new").claim(now, LEASE, 10).rows) == 3


def test_rate_share_counts_busy_live_workers(store):
    now = datetime.now(UTC)
    for n in range(3):
        Claims(store, f"host:{n}:x").register(now, timedelta(days=1))
    assert Claims(store, "host:0:x").renew(now, LEASE, busy=True) == 1          # the others are idle
    Claims(store, "host:1:x").renew(now, LEASE, busy=True)
    assert Claims(store, "host:0:x").renew(now, LEASE, busy=True) == 2
    assert Claims(store, "host:0:x").renew(now + LEASE * 2, LEASE, busy=True) == 1   # host:1 went silent


def test_queueing_20000_deliveries_queues_every_one(store):
    # Queued in chunks (bounded parameter lists); how fast is `make bench-send`'s to say, not a test's.
    add_readers(store, 20000)
    recipients = dict.fromkeys(store.active_recipients(), "")
    now = datetime.now(UTC)
    issue = store.create_issue(period="p", slot=now, starts=now, ends=now, variants=[], recipients=recipients)
    assert store.counts(issue.id)["queued"] == 20000
