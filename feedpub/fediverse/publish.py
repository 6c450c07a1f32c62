"""After a build: what the accounts publish of the site's posts, queued for their followers' instances.

The wing reads the site (posts, the renderings the build kept); the site never reads the wing. What each account
published of each post is in the store (`fediverse_published`), so the difference a build makes survives
restarts and is made once however many processes build:

- A post new to the site account's feed (its newest `feeds.limit` posts): `Create(Article)` to its followers'
  instances; new to a category account's feed (`activitypub.categories`): that account's `Announce` of it.
- Its Article changed (content hash: title, text, summary, tags, image, link): `Update` from the site account to
  every instance of every account that published it.
- Gone from the site (deleted, unpublished, a draft again): `Delete` with a Tombstone, to the same instances.

Not pushed, only recorded, so that a later edit or deletion is still known: a backdated post (dated more than a
day before the newest post the account already knows, or more than `digest.first_issue_days` ago: so turning
the fediverse on for a blog pushes its last week at most), and every new post of a build that brings more than
`digest.post_burst` new posts at once (an import: the one threshold, mail's and the fediverse's).

Each activity and its deliveries are queued in the transaction that records the post's new state: a crash
leaves either both or neither.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import sqlalchemy as sa

from feedpub.config import Config
from feedpub.fediverse import objects
from feedpub.fediverse.accounts import site_accounts
from feedpub.fediverse.queue import enqueue_in
from feedpub.fediverse.urls import actor_id, followers_id
from feedpub.schema import fediverse_followers, fediverse_published
from feedpub.site.build import read_posts, render_cache
from feedpub.site.markup import RenderedPost, render_posts
from feedpub.site.posts import collect
from feedpub.site.reader import Post
from feedpub.store import Store, utcnow

# A post dated more than this before the newest one an account knows is backdated.
BACKDATED = timedelta(days=1)

Kind = Literal["create", "announce", "update", "delete", "record", "rehash", "forget"]


@dataclass(frozen=True)
class Entry:
    """A post as an account carries it now."""

    key: str                 # objects.object_key
    url: str
    date: datetime
    content_hash: str        # of its Article (the site account's); "" for a category account


@dataclass(frozen=True)
class Known:
    """A `fediverse_published` row: what the account did with the post last."""

    account: str
    key: str
    url: str
    content_hash: str
    state: Literal["pushed", "recorded", "deleted"]
    published_at: datetime


@dataclass(frozen=True)
class Change:
    kind: Kind
    account: str
    key: str
    url: str = ""
    date: datetime | None = None
    content_hash: str = ""
    before: Known | None = None       # what it replaces: the write happens only if that is still so


@dataclass(frozen=True)
class PublishReport:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    announced: int = 0
    recorded: int = 0        # new posts not pushed (backdated, an import)
    queued: int = 0          # deliveries

    @property
    def changed(self) -> bool:
        return any((self.created, self.updated, self.deleted, self.announced, self.recorded))


def plan(site_account: str, carried: Mapping[str, Sequence[Entry]], known: Mapping[tuple[str, str], Known],
         present: set[str], now: datetime, first_days: int, burst: int) -> list[Change]:
    """What to do, from what each account carries now (`carried`: account → entries; the site account's have
    content hashes), what it did before (`known`, by (account, key)) and the keys of every post still on the
    site (`present`); more than `burst` new posts of the site account is an import. Pure."""
    changes: list[Change] = []
    new = {account: [e for e in entries if (account, e.key) not in known
                     or known[account, e.key].state == "deleted"] for account, entries in carried.items()}
    importing = len(new.get(site_account, ())) > burst
    oldest = now - timedelta(days=first_days)
    for account, entries in new.items():
        dates = [k.published_at for (who, _), k in known.items() if who == account and k.state != "deleted"]
        newest = max(dates, default=None)
        for entry in entries:
            backdated = entry.date < oldest or (newest is not None and entry.date < newest - BACKDATED)
            pushed = "create" if account == site_account else "announce"
            kind: Kind = "record" if importing or backdated else pushed
            changes.append(Change(kind, account, entry.key, entry.url, entry.date, entry.content_hash,
                                  known.get((account, entry.key))))
    for entry in carried.get(site_account, ()):
        before = known.get((site_account, entry.key))
        if before and before.state != "deleted" and before.content_hash != entry.content_hash:
            kind = "update" if before.state == "pushed" else "rehash"
            changes.append(Change(kind, site_account, entry.key, entry.url, entry.date, entry.content_hash, before))
    for (account, key), before in sorted(known.items()):
        if key not in present and before.state != "deleted":
            kind = "delete" if account == site_account and before.state == "pushed" else "forget"
            changes.append(Change(kind, account, key, before.url, before=before))
    return changes


def publish(config: Config, store: Store, *, now: datetime | None = None) -> PublishReport:
    """Queue what the site's posts as they are now make the accounts publish (nothing when activitypub is off)."""
    if not config.activitypub.enabled:
        return PublishReport()
    now = now or utcnow()
    collection = collect(config, now=now, known=read_posts(config))   # the build just read them
    site_account = config.activitypub.username
    # What each account's feed carries: its newest feeds.limit posts.
    shown = {name: account.posts[:config.feeds.limit]
             for name, account in site_accounts(config, collection.posts).items()}
    rendered = _rendered(config, shown[site_account], collection.posts)
    owner, followers = actor_id(config, site_account), followers_id(config, site_account)
    by_key = {objects.object_key(r.post): r for r in rendered}
    hashes = {key: objects.content_hash(objects.article(config, r, owner=owner, followers=followers))
              for key, r in by_key.items()}
    posts = {objects.object_key(post): post for post in collection.posts}
    # A post the renderer left out (its problem is the build's to report) is not published until it renders.
    carried = {account: [Entry(key, p.url, p.date, hashes[key] if account == site_account else "")
                         for p in shown_posts if (key := objects.object_key(p)) in by_key or account != site_account]
               for account, shown_posts in shown.items()}
    known = _known(store)
    changes = plan(site_account, carried, known, set(posts), now, config.digest.first_issue_days,
                   config.digest.post_burst)
    counts: dict[str, int] = {}
    queued = 0
    for change in changes:
        try:
            queued += _apply(config, store, change, site_account, by_key, posts, known, now)
        except (_Raced, sa.exc.IntegrityError):
            continue       # another process (a build beside the daemon's) published this change first
        if change.kind != "record" or change.account == site_account:   # posts, not posts × accounts
            counts[change.kind] = counts.get(change.kind, 0) + 1
    return PublishReport(counts.get("create", 0), counts.get("update", 0), counts.get("delete", 0),
                         counts.get("announce", 0), counts.get("record", 0), queued)


def _rendered(config: Config, posts: Sequence[Post], site_posts: Sequence[Post]) -> list[RenderedPost]:
    """The posts rendered as the feeds show them, from the renderings the build kept when it has them."""
    found, _problems = render_posts(config, posts, site_posts=site_posts, cache=render_cache(config))
    return found


def _known(store: Store) -> dict[tuple[str, str], Known]:
    with store.engine.connect() as conn:
        return {(r.account, r.object_key): Known(r.account, r.object_key, r.url, r.content_hash, r.state,
                                                 r.published_at)
                for r in conn.execute(sa.select(fediverse_published))}


def _apply(config: Config, store: Store, change: Change, site_account: str, rendered: Mapping[str, RenderedPost],
           posts: Mapping[str, Post], known: Mapping[tuple[str, str], Known], now: datetime) -> int:
    """Record `change` and queue its activity, in one transaction; returns the deliveries queued."""
    owner, followers = actor_id(config, site_account), followers_id(config, site_account)
    with store.writing() as conn:
        queued = 0
        if change.kind == "create":
            activity = objects.create(objects.article(config, rendered[change.key], owner=owner, followers=followers))
            queued = enqueue_in(conn, account=site_account, activity=activity,
                                inboxes=_inboxes(conn, [site_account]), now=now)
        elif change.kind == "announce":
            activity = objects.announce(config, posts[change.key], actor=actor_id(config, change.account),
                                        followers=followers_id(config, change.account), now=now)
            queued = enqueue_in(conn, account=change.account, activity=activity,
                                inboxes=_inboxes(conn, [change.account]), now=now)
        elif change.kind in ("update", "delete"):
            if change.kind == "update":
                activity = objects.update(objects.article(config, rendered[change.key], owner=owner,
                                                          followers=followers, edited=now))
            else:
                activity = objects.delete(config, change.key, owner=owner, followers=followers, now=now)
            # Every instance that has the object: the followers of each account that pushed it.
            accounts = sorted({account for (account, key), k in known.items()
                               if key == change.key and k.state == "pushed"})
            queued = enqueue_in(conn, account=site_account, activity=activity, inboxes=_inboxes(conn, accounts),
                                now=now)
        _remember(conn, change, now)
    return queued


def _inboxes(conn: sa.Connection, accounts: Iterable[str]) -> set[str]:
    """Where the accounts' followers get activities: each instance's shared inbox once, else each inbox."""
    followers = fediverse_followers.c
    query = sa.select(followers.shared_inbox, followers.inbox).where(followers.account.in_(list(accounts)))
    return {shared or inbox for shared, inbox in conn.execute(query)}


_STATES = {"create": "pushed", "announce": "pushed", "record": "recorded", "delete": "deleted", "forget": "deleted"}


class _Raced(Exception):
    """The post's row is no longer what the change was planned from: its transaction is rolled back."""


def _remember(conn: sa.Connection, change: Change, now: datetime) -> None:
    """Write the post's new state, only over the state it was planned from (else `_Raced`): of two processes
    publishing at once, one queues the activity."""
    rows = fediverse_published.c
    match = (rows.account == change.account) & (rows.object_key == change.key)
    if change.before is not None:
        match = match & (rows.state == change.before.state) & (rows.content_hash == change.before.content_hash)
    if change.kind in ("update", "rehash"):
        values: dict[str, object] = {"content_hash": change.content_hash, "updated_at": now}
    elif change.kind in ("delete", "forget"):
        values = {"state": "deleted", "updated_at": now}
    else:
        assert change.date is not None
        # A post back after its deletion is published anew: its edits are counted from now (`Ledger.publication`).
        values = {"url": change.url, "content_hash": change.content_hash, "state": _STATES[change.kind],
                  "published_at": change.date, "created_at": now, "updated_at": now}
        if change.before is None:      # a second insert of the same post fails on the primary key
            conn.execute(fediverse_published.insert().values(account=change.account, object_key=change.key,
                                                             **values))
            return
    if conn.execute(fediverse_published.update().where(match).values(**values)).rowcount != 1:
        raise _Raced(change.key)
