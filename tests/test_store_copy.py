"""`feedpub store copy` and `store backup`: a SQLite store with a row in every table copied to a real
PostgreSQL and back, checked row by row; a non-empty destination refused; a running store backed up.

The PostgreSQL tests need FEEDPUB_TEST_PG_URL (see tests/test_pg_store.py)."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from feedpub import accounts, holds
from feedpub.cli import main
from feedpub.fediverse.ledger import Ledger
from feedpub.fediverse.queue import enqueue
from feedpub.records import StoredVariant, SubscriberInput
from feedpub.schema import (
    bounces,
    deliveries,
    fediverse_hosts,
    fediverse_published,
    issue_posts,
    webhook_tokens,
    workers,
)
from feedpub.store import Store, StoreError, open_store
from feedpub.store_copy import check, copy_store, snapshot, tables
from tests.conftest import emptied
from tests.test_store_lock import locked

NOW = datetime(2025, 12, 15, 0, 0, 0, 123456, tzinfo=UTC)
READERS = ["taro@example.jp", "Hanako@Example.JP", "=cmd@example.com", "left@example.org", "bounced@example.net"]


def filled(path: Path) -> Store:
    """A SQLite store with rows in every table: readers (Japanese names, categories), suppressions, two
    issues (one sent, one paused) with variants, archive, deliveries and the posts carried, a worker, an
    account with a session and audit lines, a bounce with its raw bytes, a webhook token remembered."""
    store = open_store(f"sqlite:///{path}")
    saved = store.save_subscribers([SubscriberInput(email, f"読者 {i}",
                                                    ("categories/Releases", "categories/AI導入戦略")[: i % 3])
                                    for i, email in enumerate(READERS)], status="active")
    store.unsubscribe("left@example.org", "unsubscribed from the digest", cause="unsubscribe")
    store.suppress("bounced@example.net", "hard bounce: 550 5.1.1 no such user")
    store.suppress("never-subscribed@example.com", "complaint")
    for n, period in enumerate(["2025-12-08-0900", "2025-12-15-0900"]):
        store.create_issue(period=period, slot=NOW + timedelta(weeks=n), starts=NOW, ends=NOW + timedelta(weeks=n),
                           variants=[StoredVariant("", "今週のまとめ", "<p>本文</p>", "本文"),
                                     StoredVariant("Releases", "Releases", "<p>r</p>", "r")],
                           recipients={row.id: "" for row, _ in saved},
                           archived=[{"title": "推論性能35%向上", "categories": ["AI導入戦略"]}],
                           variant_posts={"": ["https://blog.example.com/2025/12/07/ai.html"]} if n else None)
    holds.pause(store, "2025-12-15-0900")
    store.sight_posts({"https://blog.example.com/2025/12/07/ai.html": ("mailed", NOW)})
    user = accounts.add_user(store, "編集者", "a long enough passphrase")
    accounts.open_session(store, user, timedelta(hours=1))
    accounts.audit(store, user="編集者", address="127.0.0.1", action="login")
    with store.engine.begin() as conn:
        conn.execute(deliveries.update().where(deliveries.c.id == 1).values(
            status="sent", attempts=1, last_reply="250 2.0.0 Ok: queued as 4dXyz"))
        conn.execute(workers.insert().values(id="host:1:abc", host="host", pid=1, busy=True, heartbeat_at=NOW))
        conn.execute(bounces.insert().values(
            received_at=NOW, source="file:/var/mail/bounces", message_key="<b1@mx>", recipient="bounced@example.net",
            delivery_id=5, kind="hard", status="5.1.1", diagnostic="550 5.1.1 no such user", why="DSN",
            effect="suppressed", raw=b"\x00\xffReturned mail\r\n", raw_size=20, unverified=False))
        conn.execute(issue_posts.insert().values(issue_id=1, url="https://blog.example.com/2025/12/07/ai.html"))
        conn.execute(webhook_tokens.insert().values(provider="mailgun", token="7f3e" * 12,
                                                    expires_at=NOW + timedelta(minutes=15)))
    ledger = Ledger(store)
    ledger.key_pair("blog")
    ledger.add_follower("blog", "https://m.example/users/ann", "https://m.example/users/ann/inbox",
                        "https://m.example/inbox", "m.example")
    ledger.block("spam.example")
    ledger.add_reaction(account="blog", object_id="https://news.example.org/ap/posts/1", kind="reply",
                        actor="https://m.example/users/ann", activity_id="https://m.example/notes/1",
                        content="<p>読みました</p>")
    enqueue(store, account="blog", activity={"id": "https://news.example.org/ap/objects/k#create", "type": "Create",
                                             "object": {"id": "https://news.example.org/ap/objects/k", "name": "推論"}},
            inboxes=["https://m.example/inbox"], now=NOW)
    with store.engine.begin() as conn:
        conn.execute(fediverse_hosts.insert().values(host="m.example", failures=2, failing_since=NOW,
                                                     paused_until=NOW + timedelta(minutes=5), last_error="503"))
        conn.execute(fediverse_published.insert().values(
            account="blog", object_key="k", url="https://blog.example.com/2025/12/07/ai.html", content_hash="0" * 64,
            state="pushed", published_at=NOW, created_at=NOW, updated_at=NOW))
    return store


def counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {t.name: conn.scalar(sa.select(sa.func.count()).select_from(t)) for t in tables()}


@pytest.fixture
def pg(pg_url: str):
    store = emptied(open_store(pg_url))
    yield store
    store.engine.dispose()


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_every_table_is_copied_to_postgresql_and_back_and_checked(tmp_path, pg, pg_url, monkeypatch):
    monkeypatch.chdir(tmp_path)     # no feedpub.toml: English
    source = filled(tmp_path / "source.db")
    assert all(counts(source).values()), counts(source)         # the fixture reaches every table

    result = cli("store", "copy", f"sqlite:///{tmp_path / 'source.db'}", pg_url)
    assert result.exit_code == 0, result.output
    assert "checked" in result.stdout and "subscribers: 5 rows" in result.stderr
    assert counts(pg) == counts(source)
    assert pg.subscriber("hanako@example.jp").name == "読者 1"
    assert pg.suppression("bounced@example.net").reason == "hard bounce: 550 5.1.1 no such user"
    assert pg.issue("2025-12-08-0900").slot == NOW                 # microseconds and UTC kept
    assert holds.states(pg) == {2: "paused"}
    assert accounts.authenticate(pg, "編集者", "a long enough passphrase") is not None

    back = open_store(f"sqlite:///{tmp_path / 'back.db'}")
    copy_store(pg, back)
    with snapshot(source) as reading:
        check(reading, back)       # the round trip left every value as it was, down to the raw bytes
    # The id sequences continue after the copied rows: new rows get new ids.
    ((added, created),) = pg.save_subscribers([SubscriberInput("new@example.jp")], status="active")
    assert created and added.id == 6


def test_a_non_empty_destination_is_refused_and_left_alone(tmp_path, pg, pg_url):
    filled(tmp_path / "source.db")
    pg.save_subscribers([SubscriberInput("already@example.jp")], status="active")
    result = cli("store", "copy", f"sqlite:///{tmp_path / 'source.db'}", pg_url)
    assert result.exit_code == 2
    assert "the destination store is not empty (subscribers: 1 rows); nothing was copied" in result.stderr
    assert counts(pg)["subscribers"] == 1 and counts(pg)["issues"] == 0


def test_a_copy_that_differs_from_its_source_is_named_by_table_and_row(tmp_path):
    source = filled(tmp_path / "source.db")
    target = open_store(f"sqlite:///{tmp_path / 'target.db'}")
    copy_store(source, target)
    with target.engine.begin() as conn:
        conn.execute(deliveries.update().where(deliveries.c.id == 3).values(last_reply="changed"))
    with snapshot(source) as reading, pytest.raises(StoreError) as refused:
        check(reading, target)
    assert "table deliveries, row {'id': 3}: different in the copy" in str(refused.value)


def test_a_running_store_is_backed_up_to_a_private_file(tmp_path, monkeypatch):
    source = filled(tmp_path / "source.db")
    (tmp_path / "feedpub.toml").write_text(f'[store]\nurl = "sqlite:///{tmp_path / "source.db"}"\n')
    monkeypatch.chdir(tmp_path)
    umask = os.umask(0o022)
    try:
        with locked(tmp_path / "source.db"):          # another process in the middle of a write
            result = cli("store", "backup", "backups/monday.db")
    finally:
        os.umask(umask)
    assert result.exit_code == 0, result.output
    copy = tmp_path / "backups" / "monday.db"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    backed_up = open_store(f"sqlite:///{copy}", migrate=False)
    assert counts(backed_up) == counts(source)
    with snapshot(source) as reading:
        check(reading, backed_up)
    again = cli("store", "backup", "backups/monday.db")
    assert again.exit_code == 2 and "already exists" in again.stderr


def test_a_postgresql_store_is_backed_up_to_sqlite(tmp_path, pg, pg_url):
    copy_store(filled(tmp_path / "source.db"), pg)
    (tmp_path / "feedpub.toml").write_text(f'[store]\nurl = "{pg_url}"\n')
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "feedpub.toml"), "store", "backup",
                                       str(tmp_path / "pg.db")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert counts(open_store(f"sqlite:///{tmp_path / 'pg.db'}", migrate=False)) == counts(pg)


def test_a_source_that_is_not_there_is_an_error_not_an_empty_copy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)     # no feedpub.toml: English
    result = cli("store", "copy", f"sqlite:///{tmp_path / 'typo.db'}", f"sqlite:///{tmp_path / 'new.db'}")
    assert result.exit_code == 2 and f"{tmp_path / 'typo.db'}: no such file" in result.stderr
    assert not (tmp_path / "typo.db").exists()
