"""The wing's tables in the store: account keys, followers, blocked instances, reactions to the posts
(SQLAlchemy Core over `feedpub.store.Store`'s engine; blocking calls, run off the event loop by the routes)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from feedpub.fediverse.keys import KeyPair, new_key_pair
from feedpub.schema import (
    fediverse_blocks,
    fediverse_followers,
    fediverse_keys,
    fediverse_published,
    fediverse_reactions,
)
from feedpub.store import Store


@dataclass(frozen=True)
class Follower:
    account: str
    actor: str
    inbox: str
    shared_inbox: str
    host: str
    created_at: datetime

    @property
    def delivery_inbox(self) -> str:
        """Where an activity for this follower goes: its instance's shared inbox, once per instance."""
        return self.shared_inbox or self.inbox


@dataclass(frozen=True)
class Publication:
    """What the accounts published of one post (its `fediverse_published` rows), as its object endpoint serves it."""

    changed_at: datetime               # when an account last published, edited or deleted it
    edited_at: datetime | None         # when the site account published its last edit (the Update's `updated`)
    deleted_at: datetime | None        # when it was deleted (its Delete queued), if it was


class Ledger:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- keys ----------------------------------------------------------------------------------------

    def key_pair(self, account: str) -> KeyPair:
        """The account's key pair, made and stored the first time it is asked for (by whichever process asks
        first: a second one's insert fails and it reads the first's)."""
        found = self._stored_key(account)
        if found:
            return found
        made = new_key_pair(account)
        try:
            with self.store.writing() as conn:
                conn.execute(fediverse_keys.insert().values(account=account, private_key=made.private_pem,
                                                            public_key=made.public_pem, created_at=_now()))
        except sa.exc.IntegrityError:
            pass
        stored = self._stored_key(account)
        assert stored is not None
        return stored

    def _stored_key(self, account: str) -> KeyPair | None:
        query = sa.select(fediverse_keys).where(fediverse_keys.c.account == account)
        with self.store.engine.connect() as conn:
            row = conn.execute(query).first()
        return KeyPair(row.account, row.private_key, row.public_key) if row else None

    # -- followers -----------------------------------------------------------------------------------

    def add_follower(self, account: str, actor: str, inbox: str, shared_inbox: str, host: str) -> bool:
        """Store a follow (its inboxes refreshed when it is known already); True when it is new."""
        with self.store.writing() as conn:
            return add_follower_in(conn, account, actor, inbox, shared_inbox, host)

    def remove_follower(self, account: str, actor: str) -> bool:
        with self.store.writing() as conn:
            return bool(conn.execute(fediverse_followers.delete().where(
                fediverse_followers.c.account == account, fediverse_followers.c.actor == actor)).rowcount)

    def remove_actor(self, actor: str) -> int:
        """An actor deleted on its instance follows nothing any more: its follows, of every account."""
        with self.store.writing() as conn:
            return conn.execute(fediverse_followers.delete().where(fediverse_followers.c.actor == actor)).rowcount

    def followers(self, account: str) -> list[Follower]:
        query = (sa.select(fediverse_followers).where(fediverse_followers.c.account == account)
                 .order_by(fediverse_followers.c.id))
        with self.store.engine.connect() as conn:
            return [Follower(r.account, r.actor, r.inbox, r.shared_inbox, r.host, r.created_at)
                    for r in conn.execute(query)]

    def follower_count(self, account: str) -> int:
        query = (sa.select(sa.func.count()).select_from(fediverse_followers)
                 .where(fediverse_followers.c.account == account))
        with self.store.engine.connect() as conn:
            return conn.scalar(query) or 0

    # -- blocked instances ---------------------------------------------------------------------------

    def block(self, host: str) -> bool:
        """True when the host was not blocked before."""
        try:
            with self.store.writing() as conn:
                conn.execute(fediverse_blocks.insert().values(host=host.lower(), created_at=_now()))
        except sa.exc.IntegrityError:
            return False
        return True

    def blocked(self, host: str) -> bool:
        query = sa.select(fediverse_blocks.c.host).where(fediverse_blocks.c.host == host.lower())
        with self.store.engine.connect() as conn:
            return conn.scalar(query) is not None

    # -- posts -----------------------------------------------------------------------------------------

    def publication(self, object_key: str, site_account: str) -> Publication | None:
        """What the accounts published of the post whose object key this is; None if none ever did."""
        rows = fediverse_published.c
        query = (sa.select(rows.account, rows.state, rows.created_at, rows.updated_at)
                 .where(rows.object_key == object_key))
        with self.store.engine.connect() as conn:
            found = conn.execute(query).all()
        if not found:
            return None
        edits = [r.updated_at for r in found if r.account == site_account and r.state != "deleted"
                 and r.updated_at > r.created_at]
        deletions = [r.updated_at for r in found if r.state == "deleted"]
        return Publication(max(r.updated_at for r in found), max(edits, default=None), max(deletions, default=None))

    # -- reactions -----------------------------------------------------------------------------------

    def add_reaction(self, *, account: str, object_id: str, kind: str, actor: str, activity_id: str,
                     content: str = "") -> bool:
        """Record a like, boost or reply; False when this activity was recorded already (a replay)."""
        try:
            with self.store.writing() as conn:
                conn.execute(fediverse_reactions.insert().values(
                    account=account, object_id=object_id, kind=kind, actor=actor, activity_id=activity_id,
                    content=content, created_at=_now()))
        except sa.exc.IntegrityError:
            return False
        return True

    def remove_reaction(self, activity_id: str, actor: str) -> bool:
        """An undone like or boost: only its own actor undoes it."""
        with self.store.writing() as conn:
            return bool(conn.execute(fediverse_reactions.delete().where(
                fediverse_reactions.c.activity_id == activity_id, fediverse_reactions.c.actor == actor)).rowcount)

    def reaction_counts(self, object_id: str) -> Mapping[str, int]:
        """like / announce / reply → how many the post has."""
        query = (sa.select(fediverse_reactions.c.kind, sa.func.count())
                 .where(fediverse_reactions.c.object_id == object_id).group_by(fediverse_reactions.c.kind))
        with self.store.engine.connect() as conn:
            return {kind: count for kind, count in conn.execute(query)}

    def replies(self, object_id: str) -> list[tuple[str, str, datetime]]:
        """(actor, content, when) of each reply kept for the operator, oldest first."""
        query = (sa.select(fediverse_reactions.c.actor, fediverse_reactions.c.content, fediverse_reactions.c.created_at)
                 .where(fediverse_reactions.c.object_id == object_id, fediverse_reactions.c.kind == "reply")
                 .order_by(fediverse_reactions.c.id))
        with self.store.engine.connect() as conn:
            return [(r.actor, r.content, r.created_at) for r in conn.execute(query)]


def add_follower_in(conn: sa.Connection, account: str, actor: str, inbox: str, shared_inbox: str, host: str) -> bool:
    """`Ledger.add_follower` in the caller's transaction."""
    match = (fediverse_followers.c.account == account) & (fediverse_followers.c.actor == actor)
    updated = conn.execute(fediverse_followers.update().where(match)
                           .values(inbox=inbox, shared_inbox=shared_inbox, host=host)).rowcount
    if updated:
        return False
    conn.execute(fediverse_followers.insert().values(account=account, actor=actor, inbox=inbox,
                                                     shared_inbox=shared_inbox, host=host, created_at=_now()))
    return True


def lock_follower(conn: sa.Connection, account: str, actor: str) -> None:
    """Hold the follow's row until the caller's transaction ends (PostgreSQL; SQLite has one writer anyway), so
    that the same Follow arriving twice at once is taken by one."""
    conn.execute(sa.select(fediverse_followers.c.id).where(fediverse_followers.c.account == account,
                                                           fediverse_followers.c.actor == actor).with_for_update())


def _now() -> datetime:
    return datetime.now(UTC)
