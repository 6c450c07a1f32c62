"""The store: subscribers, suppressions, issues and their deliveries (SQLAlchemy 2 Core), on the tables
of `feedpub.schema`. Claims, leases and the per-message marks of sending live in `feedpub.send.claims`.

SQLite by default (one file, WAL, readable by its owner only, created on first use); the same code and
migrations run on PostgreSQL (psycopg 3), where several `feedpub worker` processes share one deliveries
table. A store older than this feedpub is migrated by the first command that writes (or `feedpub store
migrate`); a command that only reads never takes the write lock. The engine under it (driver, lock waits,
file modes) is `feedpub.store_engine`'s. Timestamps are stored as naive UTC and read back as aware UTC
datetimes.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from feedpub import schema
from feedpub.errors import message
from feedpub.records import (
    DELIVERY_STATUSES,
    ActiveReader,
    ArchivedIssue,
    Delivery,
    DeliveryStatus,
    StoredIssue,
    StoredVariant,
    Subscriber,
    SubscriberInput,
    SubscriberStatus,
    Suppression,
)
from feedpub.schema import (
    MIGRATIONS,
    bounces,
    deliveries,
    issue_archive,
    issue_holds,
    issue_posts,
    issue_variants,
    issues,
    post_sightings,
    reader_posts,
    subscribers,
    suppressions,
)
from feedpub.store_engine import StoreBusy, StoreError, busy, busy_message, make_engine


class LedgerClash(StoreError):
    """A reader of an issue being stored got one of its posts in another mail meanwhile: compose it again."""

log = logging.getLogger("feedpub.store")

# Rows with these statuses may still be claimed and sent.
OPEN_STATUSES = ("queued", "sending", "deferred")
# The suppression a reader's own unsubscribe leaves: the only one their confirming a new sign-up lifts.
READER_UNSUBSCRIBED = "unsubscribed by the reader"
# Suppression causes that are a reader's own wish: no restore lifts them.
READERS_OWN = ("unsubscribe", "complaint")
# Rows per executemany when queueing an issue: bounded memory for the parameter lists.
_INSERT_CHUNK = 5000


def email_key(email: str) -> str:
    return email.strip().lower()


def utcnow() -> datetime:
    return datetime.now(UTC)


class Store:
    """One store; safe to share between threads (each call takes its own connection)."""

    def __init__(self, engine: Engine, shown: str) -> None:
        self.engine = engine
        self.shown = shown
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None

    # -- subscribers -------------------------------------------------------------------------------

    def save_subscribers(self, entries: Iterable[SubscriberInput], *, status: SubscriberStatus | None,
                         new_status: SubscriberStatus = "active") -> list[tuple[Subscriber, bool]]:
        """Insert or update by address (case-insensitively), in one transaction. `status` overwrites the
        status of existing rows (None keeps it); new rows get `new_status`. Returns (row, created)."""
        now = utcnow()
        results: list[tuple[Subscriber, bool]] = []
        with self.engine.begin() as conn:
            for entry in entries:
                key = email_key(entry.email)
                row = conn.execute(sa.select(subscribers).where(subscribers.c.email_key == key)).first()
                if row is None:
                    wanted = status or new_status
                    conn.execute(subscribers.insert().values(
                        email=entry.email, email_key=key, name=entry.name or "", status=wanted, **_choices(entry),
                        created_at=now, confirmed_at=now if wanted == "active" else None))
                else:
                    changes: dict[str, Any] = {"email": entry.email}
                    if entry.name is not None:
                        changes["name"] = entry.name
                    changes.update(_choices(entry))
                    if entry.cadence is not None and entry.cadence != row.cadence:
                        # From a digest to each post's mail: what waited for the digest comes in one mail.
                        changes["post_since"] = now if entry.cadence == "post" and row.status == "active" else None
                    if status is not None and status != row.status:
                        changes["status"] = status
                        if status == "active":
                            changes.update(confirmed_at=now, unsubscribed_at=None)
                        elif status == "unsubscribed":
                            changes["unsubscribed_at"] = now
                    conn.execute(subscribers.update().where(subscribers.c.id == row.id).values(**changes))
                saved = conn.execute(sa.select(subscribers).where(subscribers.c.email_key == key)).one()
                results.append((_subscriber(saved), row is None))
        return results

    def sign_up(self, entry: SubscriberInput, issued: datetime) -> Subscriber:
        """The subscribe form's request. A new address is stored pending; a known one keeps its address, name
        and choices (only its owner changes them), and unless active, its newest confirmation link becomes
        the one issued at `issued` (whole seconds): older ones stop working."""
        key = email_key(entry.email)
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(subscribers).where(subscribers.c.email_key == key)).first()
            if row is None:
                conn.execute(subscribers.insert().values(
                    email=entry.email, email_key=key, name=entry.name or "", status="pending", **_choices(entry),
                    created_at=utcnow(), confirm_sent_at=issued))
            elif row.status != "active":
                conn.execute(subscribers.update().where(subscribers.c.id == row.id).values(confirm_sent_at=issued))
            return _subscriber(conn.execute(sa.select(subscribers).where(subscribers.c.email_key == key)).one())

    def confirmation_open(self, subscriber_id: int, issued: datetime) -> bool:
        """Whether the confirmation link issued at `issued` is this subscriber's newest, still unused."""
        query = sa.select(subscribers.c.id).where(subscribers.c.id == subscriber_id,
                                                  subscribers.c.confirm_sent_at == issued)
        with self.engine.connect() as conn:
            return conn.scalar(query) is not None

    def confirm(self, subscriber_id: int, issued: datetime) -> Subscriber | None:
        """Activate the subscriber through the confirmation link issued at `issued`, if it is their newest and
        unused, and use it up; None otherwise. Lifts only the suppression of the reader's own unsubscribe: a
        complaint's, a bounce's or an operator's stays until an operator lifts it."""
        now = utcnow()
        with self.engine.begin() as conn:
            done = conn.execute(
                subscribers.update()
                .where(subscribers.c.id == subscriber_id, subscribers.c.confirm_sent_at == issued)
                .values(status="active", confirmed_at=now, unsubscribed_at=None, confirm_sent_at=None))
            if done.rowcount != 1:
                return None
            row = conn.execute(sa.select(subscribers).where(subscribers.c.id == subscriber_id)).one()
            conn.execute(suppressions.delete().where(suppressions.c.email_key == row.email_key,
                                                     suppressions.c.cause == "unsubscribe"))
        return _subscriber(row)

    def subscriber(self, email: str) -> Subscriber | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(subscribers).where(subscribers.c.email_key == email_key(email))).first()
        return _subscriber(row) if row else None

    def subscriber_by_id(self, subscriber_id: int) -> Subscriber | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(subscribers).where(subscribers.c.id == subscriber_id)).first()
        return _subscriber(row) if row else None

    def active_recipients(self, cadence: str | None = None) -> dict[int, tuple[str, ...]]:
        """Active, unsuppressed subscribers (of one cadence, or all) → their topics (one light query, no
        objects)."""
        query = (sa.select(subscribers.c.id, subscribers.c.topics)
                 .where(subscribers.c.status == "active", ~is_suppressed()).order_by(subscribers.c.id))
        if cadence is not None:
            query = query.where(subscribers.c.cadence == cadence)
        with self.engine.connect() as conn:
            return {sid: tuple(topics) for sid, topics in conn.execute(query)}

    def active_readers(self, cadences: Collection[str] | None = None,
                       timezones: Collection[str] | None = None) -> list[ActiveReader]:
        """Active, unsuppressed subscribers (of these cadences, in these time zones, or all), in id order (one
        light query, no objects)."""
        # The topics as text, each distinct list decoded once: most readers share a few.
        query = (sa.select(subscribers.c.id, sa.cast(subscribers.c.topics, sa.Text), subscribers.c.cadence,
                           subscribers.c.timezone, subscribers.c.created_at)
                 .where(subscribers.c.status == "active", ~is_suppressed()).order_by(subscribers.c.id))
        if cadences is not None:
            query = query.where(subscribers.c.cadence.in_(sorted(cadences)))
        if timezones is not None:
            query = query.where(subscribers.c.timezone.in_(sorted(timezones)))
        with self.engine.connect() as conn:
            return [ActiveReader(sid, _topics(topics), cadence, zone, joined)
                    for sid, topics, cadence, zone, joined in conn.execute(query)]

    def catching_up(self, until: datetime) -> list[tuple[ActiveReader, datetime]]:
        """The active `post` readers who switched from a digest at or before `until` and whose catch-up mail
        is not composed yet, with when they switched."""
        query = (sa.select(subscribers.c.id, sa.cast(subscribers.c.topics, sa.Text), subscribers.c.cadence,
                           subscribers.c.timezone, subscribers.c.created_at, subscribers.c.post_since)
                 .where(_catching_up(), subscribers.c.post_since <= until, ~is_suppressed())
                 .order_by(subscribers.c.post_since, subscribers.c.id))
        with self.engine.connect() as conn:
            return [(ActiveReader(sid, _topics(topics), cadence, zone, joined), since)
                    for sid, topics, cadence, zone, joined, since in conn.execute(query)]

    def next_catch_up(self) -> datetime | None:
        """When the earliest switch to each post's mail whose catch-up is not composed yet happened."""
        query = sa.select(sa.func.min(subscribers.c.post_since)).where(_catching_up())
        with self.engine.connect() as conn:
            return conn.scalar(query)

    def caught_up(self, subscriber_id: int, since: datetime) -> None:
        """The catch-up of the switch at `since` is composed (a later switch keeps its own)."""
        with self.writing() as conn:
            conn.execute(subscribers.update().where(subscribers.c.id == subscriber_id,
                                                    subscribers.c.post_since == since).values(post_since=None))

    def subscribers(self, status: SubscriberStatus | None = None) -> list[Subscriber]:
        query = sa.select(subscribers).order_by(subscribers.c.id)
        if status:
            query = query.where(subscribers.c.status == status)
        with self.engine.connect() as conn:
            return [_subscriber(row) for row in conn.execute(query)]

    def unsubscribe(self, email: str, reason: str, *, cause: str, cause_ref: str = "") -> Subscriber | None:
        """Mark the subscriber unsubscribed (if there is one) and suppress the address."""
        now = utcnow()
        key = email_key(email)
        with self.engine.begin() as conn:
            unsubscribe_address(conn, key, reason, now, cause=cause, cause_ref=cause_ref)
        return self.subscriber(email)

    # -- suppressions ------------------------------------------------------------------------------

    def suppress(self, email: str, reason: str, *, cause: str = "operator", cause_ref: str = "") -> None:
        with self.engine.begin() as conn:
            suppress_address(conn, email_key(email), reason, utcnow(), cause=cause, cause_ref=cause_ref)

    def lift_suppression(self, email: str) -> Suppression | None:
        """Remove the suppression of an address; returns what was lifted."""
        found = self.suppression(email)
        if found:
            with self.engine.begin() as conn:
                conn.execute(suppressions.delete().where(suppressions.c.email_key == found.email_key))
        return found

    def suppression(self, email: str) -> Suppression | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(suppressions).where(suppressions.c.email_key == email_key(email))).first()
        return _suppression(row) if row else None

    def suppressed(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.scalars(sa.select(suppressions.c.email_key)))

    def restore(self, *, causes: Collection[str], cause_ref: str | None = None, since: datetime | None = None,
                dry_run: bool = False) -> list[Suppression]:
        """Lift the suppressions made by `causes` (with `cause_ref`: by that one; with `since`: at or after
        it), in one transaction; returns them, oldest first. Never those a reader asked for (unsubscribes,
        complaints)."""
        query = (sa.select(suppressions).where(suppressions.c.cause.in_(set(causes) - set(READERS_OWN)))
                 .order_by(suppressions.c.created_at, suppressions.c.email_key))
        if cause_ref is not None:
            query = query.where(suppressions.c.cause_ref == cause_ref)
        if since is not None:
            query = query.where(suppressions.c.created_at >= since)
        with self.writing() as conn:
            found = [_suppression(row) for row in conn.execute(query)]
            if found and not dry_run:
                keys = iter([s.email_key for s in found])
                while chunk := list(itertools.islice(keys, _INSERT_CHUNK)):
                    conn.execute(suppressions.delete().where(suppressions.c.email_key.in_(chunk),
                                                             suppressions.c.cause.in_(set(causes) - set(READERS_OWN))))
        return found

    # -- issues ------------------------------------------------------------------------------------

    def issue(self, period: str) -> StoredIssue | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(issues).where(issues.c.period == period)).first()
        return _issue(row) if row else None

    def latest_issue(self, stream: tuple[str, str] | None = None) -> StoredIssue | None:
        """The issue ending last (of one stream of digests, (kind, zone), or of any)."""
        query = sa.select(issues).order_by(issues.c.ends.desc(), issues.c.id.desc()).limit(1)
        with self.engine.connect() as conn:
            row = conn.execute(_of_stream(query, stream)).first()
        return _issue(row) if row else None

    def issues(self, stream: tuple[str, str] | None = None) -> list[StoredIssue]:
        """The issues (of one stream of digests, (kind, zone), or all), oldest slot first."""
        query = sa.select(issues).order_by(issues.c.slot, issues.c.id)
        with self.engine.connect() as conn:
            return [_issue(row) for row in conn.execute(_of_stream(query, stream))]

    def choices(self) -> set[tuple[str, str]]:
        """The (cadence, time zone) pairs the active readers chose."""
        query = (sa.select(subscribers.c.cadence, subscribers.c.timezone).distinct()
                 .where(subscribers.c.status == "active"))
        with self.engine.connect() as conn:
            return {(cadence, zone) for cadence, zone in conn.execute(query)}

    def create_issue(self, *, period: str, slot: datetime, starts: datetime, ends: datetime,
                     variants: Sequence[StoredVariant], recipients: Mapping[int, str],
                     archived: Sequence[Mapping[str, Any]] = (), carried: Collection[str] = (),
                     kind: str = "weekly", zone: str = "",
                     variant_posts: Mapping[str, Collection[str]] | None = None,
                     dated: Mapping[str, datetime] | None = None) -> StoredIssue:
        """Store an issue, its variants, one queued delivery per recipient (subscriber id → variant key),
        what the public archive shows of its posts (`archived`; none: not in the archive) and the URLs of
        the posts it carries, all or nothing; with `variant_posts` (variant key → post URLs), the ledger
        rows of each recipient's posts (a post never seen before is recorded as seen at its date, in `dated`).
        Raises StoreError if the period exists (another process composed it first), LedgerClash if a
        recipient got one of its posts meanwhile (compose again)."""
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                issue_id = conn.execute(issues.insert().values(
                    period=period, slot=slot, starts=starts, ends=ends, created_at=now, kind=kind, zone=zone,
                    ledgered=variant_posts is not None)).inserted_primary_key[0]
                if variants:
                    conn.execute(issue_variants.insert(), [
                        {"issue_id": issue_id, "key": v.key, "subject": v.subject, "html": v.html, "text": v.text}
                        for v in variants])
                if archived:
                    conn.execute(issue_archive.insert().values(issue_id=issue_id, entries=list(archived)))
                if carried:
                    conn.execute(issue_posts.insert(), [{"issue_id": issue_id, "url": u} for u in sorted(set(carried))])
                _queue(conn, issue_id, recipients, now)
                if variant_posts is not None:
                    ids = _post_ids(conn, {url for urls in variant_posts.values() for url in urls}, dated or {}, now)
                    _write_ledger(conn, issue_id, {key: [ids[url] for url in urls]
                                                   for key, urls in variant_posts.items()})
        except sa.exc.IntegrityError as exc:
            if self.issue(period) is None:
                raise LedgerClash(f"{self.shown}: a reader of issue {period} got one of its posts meanwhile") from exc
            raise StoreError(message("store_issue_composed_elsewhere", store=self.shown, period=period)) from exc
        stored = self.issue(period)
        assert stored is not None
        return stored

    def carried_since(self, moment: datetime) -> tuple[dict[str, str], datetime | None]:
        """What the issues ending after `moment` carried: post URL → the period of the issue that carried it;
        and the latest end among those that recorded none (composed before schema v6 without an archive
        copy: what they carried is unknown)."""
        query = (sa.select(issues.c.id, issues.c.period, issues.c.ends, issue_posts.c.url)
                 .outerjoin(issue_posts, issue_posts.c.issue_id == issues.c.id).where(issues.c.ends > moment)
                 .order_by(issues.c.slot))
        carried: dict[str, str] = {}
        unknown: datetime | None = None
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                if row.url is None:
                    unknown = max(unknown or row.ends, row.ends)
                else:
                    carried.setdefault(row.url, row.period)
        return carried, unknown

    def readers_got(self, urls: Collection[str], readers: Collection[int] | None = None) -> dict[int, set[str]]:
        """Which of these posts each reader (of `readers`, or any) got already: the ledger's rows, and for the
        issues composed before it (schema v10), every post such an issue carried to each reader it was queued
        for."""
        got: dict[int, set[str]] = {}
        wanted = sorted(set(urls))
        with self.engine.connect() as conn:
            legacy_issues = conn.scalar(sa.select(sa.exists().where(~issues.c.ledgered)))
            for chunk in _chunks(wanted, 500):
                ids = dict(conn.execute(sa.select(post_sightings.c.id, post_sightings.c.url)
                                        .where(post_sightings.c.url.in_(chunk))).all())
                ledger = (sa.select(reader_posts.c.subscriber_id, reader_posts.c.post_id)
                          .where(reader_posts.c.post_id.in_(sorted(ids))))
                for sid, post_id in conn.execute(_narrowed(conn, ledger, reader_posts.c.subscriber_id, readers)):
                    got.setdefault(sid, set()).add(ids[post_id])
                if not legacy_issues:
                    continue
                legacy = (sa.select(deliveries.c.subscriber_id, issue_posts.c.url)
                          .join(issue_posts, issue_posts.c.issue_id == deliveries.c.issue_id)
                          .join(issues, issues.c.id == deliveries.c.issue_id)
                          .where(issue_posts.c.url.in_(chunk), ~issues.c.ledgered))
                for sid, url in conn.execute(_narrowed(conn, legacy, deliveries.c.subscriber_id, readers)):
                    got.setdefault(sid, set()).add(url)
        return got

    def first_windows(self, readers: Collection[int] | None = None) -> dict[int, datetime]:
        """Each reader (of `readers`, or any) who was queued a digest or a welcome → the start of the earliest
        window such a mail covered: what came before is no post of theirs. (A post's mail covers no window.)"""
        query = (sa.select(deliveries.c.subscriber_id, sa.func.min(issues.c.starts))
                 .join(issues, issues.c.id == deliveries.c.issue_id).where(issues.c.kind != "post")
                 .group_by(deliveries.c.subscriber_id))
        with self.engine.connect() as conn:
            return dict(conn.execute(_narrowed(conn, query, deliveries.c.subscriber_id, readers)).all())

    # -- post sightings --------------------------------------------------------------------------------

    def sight_posts(self, found: Mapping[str, tuple[str, datetime]]) -> dict[str, tuple[str, datetime]]:
        """Record the posts seen for the first time (URL → state, first seen; those known keep theirs);
        returns the ones recorded now."""
        with self.writing() as conn:
            known = set()
            for chunk in _chunks(sorted(found), 500):
                known.update(conn.scalars(sa.select(post_sightings.c.url).where(post_sightings.c.url.in_(chunk))))
            new = {url: seen for url, seen in found.items() if url not in known}
            if new:     # another process sighting them at the same moment keeps its own sighting
                insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(post_sightings)
                conn.execute(insert.on_conflict_do_nothing(), [{"url": url, "first_seen": when, "state": state}
                                                               for url, (state, when) in new.items()])
        return new

    def sightings(self, state: str | None = None) -> dict[str, tuple[datetime, str]]:
        """URL → (first seen, state) of the posts seen (in one state, or all)."""
        query = sa.select(post_sightings)
        if state is not None:
            query = query.where(post_sightings.c.state == state)
        with self.engine.connect() as conn:
            return {row.url: (row.first_seen, row.state) for row in conn.execute(query)}

    def next_waiting_post(self) -> datetime | None:
        """When the post waiting longest for its post mail was first seen."""
        query = sa.select(sa.func.min(post_sightings.c.first_seen)).where(post_sightings.c.state == "waiting")
        with self.engine.connect() as conn:
            return conn.scalar(query)

    def mark_sighting(self, url: str, state: str) -> None:
        with self.writing() as conn:
            conn.execute(post_sightings.update().where(post_sightings.c.url == url).values(state=state))

    def archived_issues(self) -> list[ArchivedIssue]:
        """The issues in the public archive, oldest first (an issue archived with no posts is not one)."""
        query = sa.select(issues.c.period, issues.c.slot, issue_archive.c.entries).join(
            issue_archive, issue_archive.c.issue_id == issues.c.id).order_by(issues.c.slot, issues.c.id)
        with self.engine.connect() as conn:
            return [ArchivedIssue(row.period, row.slot, list(row.entries)) for row in conn.execute(query)
                    if row.entries]

    def unarchived_issues(self) -> list[StoredIssue]:
        """Issues the archive table has no row for: composed by a feedpub older than it (schema v3). (Only the
        weekly issues of the site's zone are the archive's; those of the ledger's time have their row.)"""
        query = sa.select(issues).outerjoin(issue_archive, issue_archive.c.issue_id == issues.c.id).where(
            issue_archive.c.issue_id.is_(None), issues.c.kind == "weekly", issues.c.zone == "",
            ~issues.c.ledgered).order_by(issues.c.slot, issues.c.id)
        with self.engine.connect() as conn:
            return [_issue(row) for row in conn.execute(query)]

    def archive_issue(self, issue_id: int, archived: Sequence[Mapping[str, Any]]) -> None:
        """Keep what the public archive shows of an issue stored without it (empty: nothing to show, so it
        stays unlisted and is not looked at again); another process doing it first is no error."""
        try:
            with self.writing() as conn:
                conn.execute(issue_archive.insert().values(issue_id=issue_id, entries=list(archived)))
        except sa.exc.IntegrityError:
            pass

    def issue_period(self, issue_id: int) -> str:
        with self.engine.connect() as conn:
            return conn.scalar(sa.select(issues.c.period).where(issues.c.id == issue_id))

    def variants(self, issue_id: int) -> list[StoredVariant]:
        query = sa.select(issue_variants).where(issue_variants.c.issue_id == issue_id).order_by(issue_variants.c.key)
        with self.engine.connect() as conn:
            return [StoredVariant(r.key, r.subject, r.html, r.text) for r in conn.execute(query)]

    # -- deliveries --------------------------------------------------------------------------------

    def due_deliveries(self, issue_id: int, now: datetime) -> list[Delivery]:
        """Rows to (re)send now: queued, deferred whose retry time has come, and `sending` rows left by a
        process that died between marking and the server's answer; none whose lease is held."""
        query = delivery_select().where(deliveries.c.issue_id == issue_id, due(now)).order_by(deliveries.c.id)
        with self.engine.connect() as conn:
            return [to_delivery(row) for row in conn.execute(query)]

    def count_due(self, issue_id: int | None, now: datetime) -> int:
        """How many rows `due_deliveries` would return (for one issue, or for all), without loading them."""
        query = sa.select(sa.func.count()).select_from(deliveries).where(due(now))
        if issue_id is not None:
            query = query.where(deliveries.c.issue_id == issue_id)
        with self.engine.connect() as conn:
            return conn.scalar(query) or 0

    def next_retry(self, issue_id: int | None = None) -> datetime | None:
        """The earliest retry time of a deferred row (of one issue, or of any)."""
        query = sa.select(sa.func.min(deliveries.c.next_attempt_at)).where(deliveries.c.status == "deferred", ~held())
        if issue_id is not None:
            query = query.where(deliveries.c.issue_id == issue_id)
        with self.engine.connect() as conn:
            return conn.scalar(query)

    def counts(self, issue_id: int) -> dict[DeliveryStatus, int]:
        return self.counts_of_issues([issue_id])[issue_id]

    def counts_of_issues(self, issue_ids: Collection[int] | None = None) -> dict[int, dict[DeliveryStatus, int]]:
        """Each issue's (of `issue_ids`, or every one's) deliveries by status, in one query: a list of a
        welcome per reader is thousands of issues."""
        query = (sa.select(deliveries.c.issue_id, deliveries.c.status, sa.func.count())
                 .group_by(deliveries.c.issue_id, deliveries.c.status))
        found: dict[int, dict[DeliveryStatus, int]] = {}
        with self.engine.connect() as conn:
            if issue_ids is not None:
                found = {issue_id: dict.fromkeys(DELIVERY_STATUSES, 0) for issue_id in issue_ids}
                query = _narrowed(conn, query, deliveries.c.issue_id, issue_ids)
            for issue_id, status, n in conn.execute(query):
                found.setdefault(issue_id, dict.fromkeys(DELIVERY_STATUSES, 0))[status] = n
        return found

    def failure_share(self, issues_back: int = 10) -> float:
        """The share of tried deliveries that failed in the latest `issues_back` issues (0 with none tried)."""
        recent = sa.select(issues.c.id).order_by(issues.c.slot.desc()).limit(issues_back)
        query = sa.select(sa.func.count().filter(deliveries.c.status == "failed"), sa.func.count()).where(
            deliveries.c.issue_id.in_(recent), deliveries.c.attempts > 0, deliveries.c.status.in_(("sent", "failed")))
        with self.engine.connect() as conn:
            failed, total = conn.execute(query).one()
        return failed / total if total else 0.0

    def issue_returns(self, issue_id: int) -> tuple[int, int, int]:
        """(messages answered: sent, or refused as dead addresses; deliveries complained about; hard bounces) of
        one issue: a hard bounce is a returned message or an address the relay refused while sending it (the
        suppressions it made)."""
        about = sa.select(bounces.c.kind, sa.func.count(sa.distinct(bounces.c.delivery_id))).join(
            deliveries, deliveries.c.id == bounces.c.delivery_id).where(
            deliveries.c.issue_id == issue_id, bounces.c.kind.in_(("complaint", "hard"))).group_by(bounces.c.kind)
        sent = sa.select(sa.func.count()).select_from(deliveries).where(deliveries.c.issue_id == issue_id,
                                                                        deliveries.c.status == "sent")
        refused = sa.select(sa.func.count()).select_from(suppressions).where(
            suppressions.c.cause == "issue", suppressions.c.cause_ref == str(issue_id))
        with self.engine.connect() as conn:
            kinds = dict(conn.execute(about).all())
            refused_count = conn.scalar(refused) or 0
            return ((conn.scalar(sent) or 0) + refused_count, kinds.get("complaint", 0),
                    kinds.get("hard", 0) + refused_count)

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction, one per process at a time on SQLite."""
        with self.write_turn(), self.engine.begin() as conn:
            yield conn

    def write_turn(self) -> AbstractContextManager[Any]:
        """This process's turn to write: SQLite has one writer at a time and its busy handler sleeps in
        milliseconds, so the threads of one process take turns on a lock instead. PostgreSQL needs none."""
        return self._write_lock or nullcontext()


def open_store(url: str, *, migrate: bool = True, create: bool = True) -> Store:
    """Open the store at `url`, creating it when there is none yet (without `create`, that is a StoreError:
    a store to copy from must exist). With `migrate`, a store older than this feedpub is brought to its
    schema (once, under the write lock, logged); without, such a store is a StoreError saying what to run,
    so a command that only reads never needs the write lock. StoreError names the file when it is
    unusable; StoreBusy when another process holds the lock too long."""
    engine, shown = make_engine(url, create=create)
    with _usable(engine, shown):
        with engine.connect() as conn:
            found = schema.version(conn)
        if found is None and not create:
            engine.dispose()
            raise StoreError(message("store_not_feedpub", store=shown))
        if found is None or (migrate and found < len(MIGRATIONS)):
            found = _migrated(engine, shown)[1]
    if found > len(MIGRATIONS):
        engine.dispose()
        raise StoreError(message("store_too_new", store=shown, found=found, known=len(MIGRATIONS)))
    if found < len(MIGRATIONS):
        engine.dispose()
        raise StoreError(message("store_needs_migration", store=shown, found=found, needed=len(MIGRATIONS)))
    return Store(engine, shown)


def migrate_store(url: str) -> tuple[str, int, int]:
    """Bring the store at `url` to this feedpub's schema (creating it if need be): how messages name it, the
    version it had (0: none yet) and the one it has now."""
    engine, shown = make_engine(url)
    try:
        with _usable(engine, shown):
            was, found = _migrated(engine, shown)
    finally:
        engine.dispose()
    if found > len(MIGRATIONS):
        raise StoreError(message("store_too_new", store=shown, found=found, known=len(MIGRATIONS)))
    return shown, was, found


def _migrated(engine: Engine, shown: str) -> tuple[int, int]:
    with engine.connect() as conn:
        was, found = schema.migrate(conn)
        conn.commit()
    if 0 < was < found:
        log.info("%s", message("store_migrated_log", store=shown, was=was, found=found))
    return was, found


@contextmanager
def _usable(engine: Engine, shown: str) -> Iterator[None]:
    """The database errors of opening a store as StoreError naming it (StoreBusy for a lock held too long)."""
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        engine.dispose()
        if busy(exc):
            raise StoreBusy(busy_message(shown)) from exc
        reason = getattr(exc, "orig", None) or exc
        raise StoreError(message("store_unusable", store=shown, reason=str(reason))) from exc


def _queue(conn: Connection, issue_id: int, recipients: Mapping[int, str], now: datetime) -> None:
    """One queued row per recipient."""
    stamp = now.astimezone(UTC).replace(tzinfo=None)   # bound as is: at 100,000 rows the column type's
    columns = ("issue_id", "subscriber_id", "variant_key", "status", "attempts", "last_reply", "created_at",
               "updated_at")                          # per-row conversion alone costs seconds
    bulk_insert(conn, "deliveries", columns,
                ((issue_id, sid, key, "queued", 0, "", stamp, stamp) for sid, key in recipients.items()))


# The ledger rows of an issue: each of its deliveries × each post of the delivery's variant, made by the database
# from the rows just queued and a JSON object of variant key → post ids (a day of slots makes a million rows:
# seconds of Python apart, had they passed through it).
_LEDGER = {
    "postgresql": sa.text(
        "INSERT INTO reader_posts (subscriber_id, post_id, issue_id) "
        "SELECT d.subscriber_id, CAST(p.value AS INTEGER), d.issue_id FROM deliveries d "
        "JOIN json_each(CAST(:posts AS json)) v ON v.key = d.variant_key "
        "CROSS JOIN LATERAL json_array_elements_text(v.value) p(value) WHERE d.issue_id = :issue"),
    "sqlite": sa.text(
        "INSERT INTO reader_posts (subscriber_id, post_id, issue_id) "
        "SELECT d.subscriber_id, p.value, d.issue_id FROM deliveries d "
        "JOIN json_each(:posts) v ON v.key = d.variant_key JOIN json_each(v.value) p WHERE d.issue_id = :issue"),
}


def _write_ledger(conn: Connection, issue_id: int, posts_of: Mapping[str, Sequence[int]]) -> None:
    conn.execute(_LEDGER[conn.dialect.name], {"posts": json.dumps(posts_of), "issue": issue_id})


def bulk_insert(conn: Connection, table: str, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> None:
    """Many rows at once, values bound as they are: COPY on PostgreSQL, the driver's executemany of
    _INSERT_CHUNK rows on SQLite (SQLAlchemy's parameter handling would cost more than the inserts: a day of
    slots writes a million ledger rows), naive UTC datetimes written as SQLAlchemy writes them."""
    cursor = conn.connection.driver_connection.cursor()
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    try:
        if conn.dialect.name == "postgresql":
            with cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
            return
        statement = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        rows = iter(rows)
        while chunk := list(itertools.islice(rows, _INSERT_CHUNK)):
            times = [i for i, value in enumerate(chunk[0]) if isinstance(value, datetime)]
            if times:
                chunk = [_times_as_text(row, times) for row in chunk]
            cursor.executemany(statement, chunk)
    except conn.dialect.loaded_dbapi.IntegrityError as exc:   # as SQLAlchemy raises it: a clash callers catch
        raise sa.exc.IntegrityError(statement, None, exc) from exc


def _times_as_text(row: tuple[Any, ...], times: Sequence[int]) -> list[Any]:
    values = list(row)
    for i in times:
        if values[i] is not None:
            values[i] = _time_text(values[i])
    return values


@functools.lru_cache(maxsize=256)      # a queue's rows share their time
def _time_text(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S.%f}"


def due(now: datetime) -> sa.ColumnElement[bool]:
    """Open rows of issues not on hold whose lease is free, and for deferred rows, whose retry time has come."""
    return sa.and_(deliveries.c.status.in_(OPEN_STATUSES),
                   sa.or_(deliveries.c.claimed_until.is_(None), deliveries.c.claimed_until <= now),
                   sa.or_(deliveries.c.status != "deferred", deliveries.c.next_attempt_at <= now), ~held())


def held() -> sa.Exists:
    """The delivery row's issue is paused or cancelled (`feedpub.holds`)."""
    return sa.exists().where(issue_holds.c.issue_id == deliveries.c.issue_id)


def is_suppressed() -> sa.Exists:
    return sa.exists().where(suppressions.c.email_key == subscribers.c.email_key)


def unsubscribe_address(conn: Connection, key: str, reason: str, now: datetime, *, cause: str,
                        cause_ref: str = "") -> None:
    """In `conn`'s transaction: the subscriber with this address key (if any) unsubscribed, the address suppressed."""
    conn.execute(subscribers.update().where(subscribers.c.email_key == key, subscribers.c.status != "unsubscribed")
                 .values(status="unsubscribed", unsubscribed_at=now))
    # A confirmation mailed before is no way back: only a new sign-up's is.
    conn.execute(subscribers.update().where(subscribers.c.email_key == key, subscribers.c.confirm_sent_at.isnot(None))
                 .values(confirm_sent_at=None))
    suppress_address(conn, key, reason, now, cause=cause, cause_ref=cause_ref)


def suppress_address(conn: Connection, key: str, reason: str, now: datetime, *, cause: str,
                     cause_ref: str = "") -> None:
    """Suppress the address for `reason`, made by `cause` (`cause_ref`: which one). An address suppressed
    already keeps the stronger cause: a complaint or an operator's block after the reader's own unsubscribe
    must not be lifted by the reader's next confirmation, nor a complaint by a restore."""
    held = conn.scalar(_SUPPRESSION, {"key": key})   # bounce processing suppresses thousands a second
    if held is None:
        conn.execute(suppressions.insert(), {"email_key": key, "reason": reason, "created_at": now, "cause": cause,
                                             "cause_ref": cause_ref})
    elif _CAUSE_STRENGTH.get(cause, 0) > _CAUSE_STRENGTH.get(held, 0):
        conn.execute(suppressions.update().where(suppressions.c.email_key == key).values(
            reason=reason, created_at=now, cause=cause, cause_ref=cause_ref))


# Which cause an address keeps when it is suppressed again: the one that fewest acts may lift (a complaint
# none; an operator's block only an operator; a bounce's or an issue's a restore; an unsubscribe a confirmation).
_CAUSE_STRENGTH = {"complaint": 4, "operator": 3, "bounce": 2, "issue": 2, "unsubscribe": 1}
_SUPPRESSION = sa.select(suppressions.c.cause).where(suppressions.c.email_key == sa.bindparam("key"))


def delivery_select() -> sa.Select[Any]:
    return sa.select(deliveries, subscribers.c.email, subscribers.c.name).join(
        subscribers, subscribers.c.id == deliveries.c.subscriber_id)


def _suppression(row: Any) -> Suppression:
    return Suppression(row.email_key, row.reason, row.created_at, row.cause, row.cause_ref)


def _subscriber(row: Any) -> Subscriber:
    return Subscriber(row.id, row.email, row.name, row.status, tuple(row.topics), row.cadence, row.timezone,
                      row.created_at, row.confirmed_at, row.unsubscribed_at)


def _choices(entry: SubscriberInput) -> dict[str, Any]:
    """The columns of what a reader chose that `entry` gives (None keeps what is stored)."""
    given = {"topics": None if entry.topics is None else list(entry.topics), "cadence": entry.cadence,
             "timezone": entry.timezone}
    return {name: value for name, value in given.items() if value is not None}


def _of_stream(query: sa.Select[Any], stream: tuple[str, str] | None) -> sa.Select[Any]:
    return query if stream is None else query.where(issues.c.kind == stream[0], issues.c.zone == stream[1])


def _post_ids(conn: Connection, urls: Collection[str], dated: Mapping[str, datetime], now: datetime) -> dict[str, int]:
    """The sighting id of each post; one never looked for (no `digest send` or daemon saw it yet) is recorded
    as the first look records the site's posts: the digests', news from its date."""
    found: dict[str, int] = {}
    for chunk in _chunks(sorted(urls), 500):
        found.update(conn.execute(sa.select(post_sightings.c.url, post_sightings.c.id)
                                  .where(post_sightings.c.url.in_(chunk))).all())
    missing = [url for url in urls if url not in found]
    if not missing:
        return found
    conn.execute(post_sightings.insert(), [{"url": url, "first_seen": min(dated.get(url, now), now), "state": "digest"}
                                           for url in missing])
    return _post_ids(conn, urls, dated, now)


@functools.lru_cache(maxsize=1024)
def _topics(stored: str) -> tuple[str, ...]:
    return tuple(json.loads(stored))


def _catching_up() -> sa.ColumnElement[bool]:
    """An active `post` reader whose switch came after their latest confirmation: one who left before their
    catch-up went out and came back is welcomed instead."""
    return sa.and_(subscribers.c.status == "active", subscribers.c.cadence == "post",
                   subscribers.c.post_since >= subscribers.c.confirmed_at)


def _narrowed(conn: Connection, query: sa.Select[Any], column: Any, ids: Collection[int] | None) -> sa.Select[Any]:
    """`query` as it is (no ids), or with `column` among `ids`, bound as one value: an IN list of a stream's
    thousands of readers costs more to compile than to run."""
    if ids is None:
        return query
    if conn.dialect.name == "postgresql":    # a join on the key, whatever the statistics of a growing ledger say
        listed = sa.func.unnest(sa.bindparam("ids", sorted(ids), type_=postgresql.ARRAY(sa.Integer)))
        return query.where(column.in_(sa.select(listed)))
    listed = sa.func.json_each(sa.bindparam("ids", json.dumps(sorted(ids)))).table_valued("value")
    return query.where(column.in_(sa.select(listed.c.value)))


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _issue(row: Any) -> StoredIssue:
    return StoredIssue(row.id, row.period, row.slot, row.starts, row.ends, row.created_at, row.kind, row.zone)


def to_delivery(row: Any) -> Delivery:
    return Delivery(row.id, row.issue_id, row.subscriber_id, row.email, row.name, row.variant_key, row.status,
                    row.attempts, row.next_attempt_at, row.last_reply)
