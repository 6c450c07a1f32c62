"""Every suppression records its cause, and one cause's suppressions can be lifted (`feedpub subscribers
restore`); the rows the circuit breaker puts back; the posts issues carried; a v5 store migrated. On SQLite
and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine
from click.testing import CliRunner

from feedpub import accounts, holds
from feedpub.cli import main
from feedpub.records import StoredVariant, SubscriberInput
from feedpub.schema import MIGRATIONS, deliveries, issue_archive, metadata, schema_version, subscribers
from feedpub.store import Store, open_store
from tests.conftest import emptied
from tests.web.admin.conftest import FIXTURES, SECRET, returned, seed, verp_config

READERS = ["ayumi@example.jp", "ben@example.com", "chihiro@example.jp", "dan@example.com"]
T0 = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    return f"sqlite:///{tmp_path / 'feedpub.db'}"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    store = emptied(open_store(store_url)) if store_url.startswith("postgresql") else open_store(store_url)
    yield store
    store.engine.dispose()


def issue_of(store: Store, period: str, readers: list[str]):
    store.save_subscribers([SubscriberInput(r) for r in readers], status="active")
    ids = {s.email: s.id for s in store.subscribers()}
    return store.create_issue(period=period, slot=T0, starts=T0 - timedelta(days=7), ends=T0,
                              variants=[StoredVariant("", "今週のまとめ", "<p>本文</p>", "本文")],
                              recipients={ids[r]: "" for r in readers},
                              carried=["https://blog.example.com/2026/11/30/ai.html"])


def test_restore_lifts_one_causes_suppressions_and_never_a_readers_own(store: Store) -> None:
    issue = issue_of(store, "2026-12-01-0900", READERS)
    with time_machine.travel(T0, tick=False):
        store.suppress(READERS[0], "554 5.7.1 Relay access denied", cause="issue", cause_ref=str(issue.id))
        store.suppress(READERS[1], "hard bounce 5.1.1", cause="bounce", cause_ref="7")
    with time_machine.travel(T0 + timedelta(hours=2), tick=False):
        store.suppress(READERS[2], "hard bounce 5.1.1", cause="bounce", cause_ref="8")
        store.unsubscribe(READERS[3], "unsubscribed by the reader", cause="unsubscribe")
        store.suppress("taken@example.com", "complaint", cause="complaint", cause_ref="9")
    assert store.suppression(READERS[0]).cause_ref == str(issue.id)

    dry = store.restore(causes=("issue",), cause_ref=str(issue.id), dry_run=True)
    assert [s.email_key for s in dry] == [READERS[0]] and store.suppression(READERS[0]) is not None
    assert [s.email_key for s in store.restore(causes=("bounce",), cause_ref="7")] == [READERS[1]]
    # Since a time, every cause but the readers' own (unsubscribes, complaints).
    since = store.restore(causes=("issue", "bounce", "unsubscribe", "complaint"), since=T0 + timedelta(hours=1))
    assert [s.email_key for s in since] == [READERS[2]]
    assert store.suppressed() == {READERS[0], READERS[3], "taken@example.com"}


def test_put_back_requeues_the_refused_rows_it_names_and_no_others(store: Store) -> None:
    issue = issue_of(store, "2026-12-01-0900", READERS)
    with store.writing() as conn:
        conn.execute(deliveries.update().values(status="deferred", last_reply="554 5.7.1 Relay access denied",
                                                attempts=1))
    with store.engine.connect() as conn:
        rows = dict(conn.execute(sa.select(subscribers.c.email, deliveries.c.id).join(
            deliveries, deliveries.c.subscriber_id == subscribers.c.id)).all())
    back = holds.put_back(store, issue.id, {rows[READERS[0]], rows[READERS[1]]})
    assert back == {rows[READERS[0]], rows[READERS[1]]}
    assert store.counts(issue.id)["queued"] == 2 and store.counts(issue.id)["deferred"] == 2
    assert store.suppressed() == set()
    assert holds.put_back(store, issue.id, {rows[READERS[0]]}) == set()     # queued already: nothing again


def test_carried_posts_and_the_issues_that_recorded_none(store: Store) -> None:
    issue_of(store, "2026-12-01-0900", READERS[:1])
    carried, unknown = store.carried_since(T0 - timedelta(days=30))
    assert carried == {"https://blog.example.com/2026/11/30/ai.html": "2026-12-01-0900"} and unknown is None
    store.create_issue(period="2026-12-08-0900", slot=T0 + timedelta(days=7), starts=T0, ends=T0 + timedelta(days=7),
                       variants=[], recipients={})
    assert store.carried_since(T0 - timedelta(days=30))[1] == T0 + timedelta(days=7)
    assert store.carried_since(T0 + timedelta(days=7)) == ({}, None)


def test_a_v5_store_gets_causes_holds_reasons_and_what_its_issues_carried(store_url: str) -> None:
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        if store_url.startswith("postgresql"):
            metadata.drop_all(conn)
        schema_version.create(conn)
        conn.execute(schema_version.insert().values(version=0))
        for step in MIGRATIONS[:5]:
            step(conn)
        # As feedpub 5 made them: without the columns of v6.
        for table, column in (("suppressions", "cause"), ("suppressions", "cause_ref"), ("issue_holds", "reason")):
            conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        conn.execute(schema_version.update().values(version=5))
        conn.execute(sa.text("INSERT INTO issues (id, period, slot, starts, ends, created_at) VALUES "
                             "(1, '2026-12-01-0900', '2026-12-01 00:00:00', '2026-11-24 00:00:00', "
                             "'2026-12-01 00:00:00', '2026-12-01 00:00:00')"))
        conn.execute(sa.text("INSERT INTO suppressions (email_key, reason, created_at) VALUES "
                             "('a@example.jp', 'complaint', '2026-12-01 00:00:00'), "
                             "('b@example.com', '550 5.1.1 no such user', '2026-12-01 00:00:00')"))
    engine.dispose()
    with sa.create_engine(store_url).begin() as conn:
        conn.execute(issue_archive.insert().values(issue_id=1, entries=[
            {"url": "https://blog.example.com/2026/11/30/ai.html", "title": "AIの記事"},
            {"url": "https://blog.example.com/2026/11/29/rust.html", "title": "Rust"}]))
    store = open_store(store_url)
    try:
        assert store.suppression("a@example.jp").cause == "complaint"
        assert store.suppression("b@example.com").cause == ""
        assert set(store.carried_since(T0 - timedelta(days=30))[0]) == {
            "https://blog.example.com/2026/11/30/ai.html", "https://blog.example.com/2026/11/29/rust.html"}
        with store.engine.connect() as conn:
            assert {c["name"] for c in sa.inspect(conn).get_columns("suppressions")} >= {"cause", "cause_ref"}
            assert conn.scalar(sa.select(schema_version.c.version)) == len(MIGRATIONS)
    finally:
        store.engine.dispose()


def test_restore_by_bounce_and_since_from_the_command_line(site, monkeypatch) -> None:
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    config = verp_config(site)
    store = open_store(config.store_url)
    seed(store)
    with time_machine.travel(T0, tick=False):
        (outcome,) = returned(config, store, (FIXTURES / "postfix-user-unknown.eml").read_bytes(),
                              "carol@example.com", about="taro.yamada@example.jp")
    with time_machine.travel(T0 + timedelta(days=1), tick=False):
        store.suppress("alice@example.com", "550 5.7.1 Relay access denied", cause="issue", cause_ref="1")
    assert store.suppression("carol@example.com").cause_ref == str(outcome.evidence_id)

    def restore(*args: str):
        return CliRunner().invoke(main, ["--config", str(site.toml), "subscribers", "restore", *args],
                                  catch_exceptions=False)

    refused = restore()
    assert refused.exit_code == 2 and "--cause ISSUE|bounce:ID か --since TIME を指定してください" in refused.stderr
    assert restore("--cause", "bounce:x").exit_code == 2
    assert restore("--cause", "1999-01-01-0900").exit_code == 2
    lifted = restore("--cause", f"bounce:{outcome.evidence_id}")
    assert lifted.exit_code == 0 and lifted.stdout.startswith("carol@example.com\thard bounce 5.1.1")
    assert store.suppression("carol@example.com") is None
    # 2026-12-01 12:00 in Tokyo is after the bounce's T0 (09:00 there) and before alice's suppression.
    since = restore("--since", "2026-12-01T12:00")
    assert since.exit_code == 0 and since.stdout.splitlines() == ["alice@example.com\t550 5.7.1 Relay access denied"]
    assert "配信停止 1 件を解除しました（--since 2026-12-01T12:00:00+09:00）" in since.stderr
    assert store.suppressed() == set()
    assert [e.action for e in accounts.audit_log(store, 5)][:2] == ["suppressions.restore"] * 2
    store.engine.dispose()


def test_the_usual_share_of_failures_and_an_issues_returns(store: Store) -> None:
    issue = issue_of(store, "2026-12-01-0900", READERS)
    assert store.failure_share() == 0.0 and store.issue_returns(issue.id) == (0, 0, 0)
    with store.writing() as conn:
        conn.execute(deliveries.update().values(status="sent", attempts=1))
        first = conn.scalar(sa.select(sa.func.min(deliveries.c.id)))
        conn.execute(deliveries.update().where(deliveries.c.id == first).values(status="failed"))
    store.suppress(READERS[0], "550 5.1.1 no such user", cause="issue", cause_ref=str(issue.id))
    assert store.failure_share() == 0.25
    assert store.issue_returns(issue.id) == (4, 0, 1)      # the address refused while sending: answered, and hard


def test_the_breakers_hold_says_why_until_resumed(store: Store) -> None:
    issue = issue_of(store, "2026-12-01-0900", READERS)
    reason = "10 recipients in a row refused with the same reply: 554 5.7.1 <ayumi@example.jp>: Relay access denied"
    assert holds.trip(store, issue.id, reason) is True
    assert holds.trip(store, issue.id, "again") is False             # on hold already: the first reason stays
    assert holds.reasons(store) == {"2026-12-01-0900": reason}
    assert store.count_due(issue.id, T0 + timedelta(days=1)) == 0      # no sender claims its rows
    assert holds.resume(store, "2026-12-01-0900").rows == 4
    assert holds.reasons(store) == {} and store.count_due(issue.id, T0 + timedelta(days=1)) == 4
    holds.pause(store, "2026-12-01-0900")
    assert holds.reasons(store) == {}                                 # the operator's pause has no reason to show


def test_a_stronger_cause_replaces_the_readers_own_unsubscribe_and_no_confirmation_lifts_it(store: Store) -> None:
    reader = store.sign_up(SubscriberInput(READERS[0]), T0)
    store.confirm(reader.id, T0)
    store.unsubscribe(READERS[0], "unsubscribed by the reader", cause="unsubscribe")
    store.suppress(READERS[0], "suppressed by an operator", cause="operator", cause_ref="編集者")
    assert (store.suppression(READERS[0]).cause, store.suppression(READERS[0]).reason) == \
        ("operator", "suppressed by an operator")
    store.sign_up(SubscriberInput(READERS[0]), T0 + timedelta(days=1))          # the form, posted by anyone
    store.confirm(reader.id, T0 + timedelta(days=1))
    assert store.suppression(READERS[0]).cause == "operator"
    # A weaker cause never replaces a stronger one.
    store.unsubscribe(READERS[0], "unsubscribed by the reader", cause="unsubscribe")
    assert store.suppression(READERS[0]).cause == "operator"


def test_a_complaint_after_an_issues_refusal_is_never_restored(store: Store) -> None:
    store.suppress(READERS[1], "550 5.1.1 User unknown", cause="issue", cause_ref="1")
    store.unsubscribe(READERS[1], "complaint", cause="complaint")
    assert store.restore(causes=("issue",), cause_ref="1") == []
    assert store.suppression(READERS[1]).cause == "complaint"
