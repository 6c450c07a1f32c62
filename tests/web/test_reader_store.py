"""The store behind the reader links, on SQLite and PostgreSQL: a sign-up never rewrites a known address, only
the newest confirmation link confirms, once, and confirming lifts only the reader's own unsubscribe; the
migration that adds the links' column to a store made before it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from feedpub.records import SubscriberInput
from feedpub.schema import MIGRATIONS, schema_version
from feedpub.store import READER_UNSUBSCRIBED, Store, open_store
from tests.conftest import store_of_version

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(any_store: Store) -> Store:
    return any_store


def test_a_sign_up_stores_a_new_address_pending_and_never_rewrites_a_known_one(store) -> None:
    new = store.sign_up(SubscriberInput("Hanako@example.jp", "花子", ("categories/news",)), T0)
    assert (new.email, new.name, new.status, new.topics) == ("Hanako@example.jp", "花子", "pending",
                                                             ("categories/news",))
    again = store.sign_up(SubscriberInput("hanako@EXAMPLE.jp", "Mallory", ("categories/AI",)),
                          T0 + timedelta(minutes=1))
    assert again == new
    store.save_subscribers([SubscriberInput("taro@example.jp", "太郎")], status="active")
    active = store.subscriber("taro@example.jp")
    assert store.sign_up(SubscriberInput("TARO@example.jp", "Mallory", ("categories/AI",)), T0) == active
    assert not store.confirmation_open(active.id, T0)      # an active reader is sent no confirmation link


def test_only_the_newest_link_confirms_once_and_only_the_readers_own_suppression_is_lifted(store) -> None:
    reader = store.sign_up(SubscriberInput("reader@example.com"), T0)
    store.sign_up(SubscriberInput("reader@example.com"), T0 + timedelta(seconds=1))
    assert not store.confirmation_open(reader.id, T0) and store.confirm(reader.id, T0) is None
    assert store.confirmation_open(reader.id, T0 + timedelta(seconds=1))
    assert store.confirm(reader.id, T0 + timedelta(seconds=1)).status == "active"
    assert store.confirm(reader.id, T0 + timedelta(seconds=1)) is None                 # used up

    store.unsubscribe("reader@example.com", READER_UNSUBSCRIBED, cause="unsubscribe")
    store.sign_up(SubscriberInput("reader@example.com"), T0 + timedelta(days=1))
    assert store.confirm(reader.id, T0 + timedelta(days=1)).status == "active"
    assert store.suppression("reader@example.com") is None

    store.sign_up(SubscriberInput("reader@example.com"), T0 + timedelta(days=2))      # active: nothing to confirm
    assert store.confirm(reader.id, T0 + timedelta(days=2)) is None
    other = store.sign_up(SubscriberInput("other@example.com"), T0)
    store.unsubscribe("other@example.com", "complaint", cause="complaint")   # ends the open link too
    assert store.confirm(other.id, T0) is None
    assert store.subscriber("other@example.com").status == "unsubscribed"
    assert store.suppression("other@example.com").reason == "complaint"


def test_a_store_made_before_confirmation_links_gets_their_column(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store_of_version(url, 6, "ALTER TABLE subscribers DROP COLUMN confirm_sent_at",   # as version 6 made it
                     "INSERT INTO subscribers (email, email_key, name, status, created_at) "
                     "VALUES ('old@example.com', 'old@example.com', '', 'pending', '2026-12-01')")
    upgraded = open_store(url)
    try:
        old = upgraded.subscriber("old@example.com")
        assert old.status == "pending" and not upgraded.confirmation_open(old.id, T0)
        upgraded.sign_up(SubscriberInput("old@example.com"), T0)
        assert upgraded.confirm(old.id, T0).status == "active"
        with upgraded.engine.connect() as conn:
            assert conn.scalar(sa.select(schema_version.c.version)) == len(MIGRATIONS)
    finally:
        upgraded.engine.dispose()
