"""What the dashboard reads from the store: aggregates over subscribers and deliveries, shaped for its pages.

Each page costs a handful of indexed queries, whatever the size of the list (bench/admin_bench.py: 100,000
subscribers, 1,000,000 deliveries). Counting over time buckets is done with a CASE over the bucket edges,
portable between SQLite and PostgreSQL, on rows an index narrows to the chart's window. Bounces and
complaints are `feedpub.send.bounces.evidence`'s queries, shared with `feedpub bounces` and `digest status`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

import sqlalchemy as sa

from feedpub.records import DELIVERY_STATUSES
from feedpub.schema import (
    UTCDateTime,
    bounces,
    deliveries,
    issue_holds,
    issue_variants,
    issues,
    subscribers,
    suppressions,
)
from feedpub.send.bounces import evidence
from feedpub.store import OPEN_STATUSES, Store

PAGE_SIZE = 50


@dataclass(frozen=True)
class Weekly:
    labels: tuple[str, ...]
    active: tuple[int, ...]
    new: tuple[int, ...]
    unsubscribed: tuple[int, ...]
    suppressed: tuple[int, ...]


class Rates:
    """Shares of a set of deliveries (`counts`: status → how many), as the pages show them."""

    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def rate(self, count: int) -> str:
        return f"{100 * count / self.total:.1f}%" if self.total else "–"

    def rate_of_sent(self, count: int) -> str:
        """Bounces and complaints come back for accepted mail: their rate is of the messages sent, as a
        mailbox provider counts it."""
        sent = self.counts["sent"]
        return f"{100 * count / sent:.1f}%" if sent else "–"


@dataclass(frozen=True)
class IssueRow(Rates):
    id: int
    period: str
    created_at: datetime
    counts: dict[str, int]
    hold: str | None
    bounced: int                      # deliveries a hard or soft bounce names
    complained: int                   # deliveries a complaint names
    kind: str = "weekly"              # post, daily, weekly, monthly, welcome
    zone: str = ""                    # its readers' time zone ("": the site's)


@dataclass(frozen=True)
class SubscriberRow:
    id: int
    email: str
    name: str
    status: str
    topics: tuple[str, ...]
    cadence: str
    created_at: datetime
    suppressed: bool


@dataclass(frozen=True)
class Search:
    query: str = ""
    status: str = ""
    topic: str = ""                   # a feed folder ("categories/news")
    suppressed: str = ""              # "", "yes", "no"
    after: int = 0                    # the last id of the previous page


def weekly(store: Store, now: datetime, weeks: int = 12) -> Weekly:
    """Per week, the last `weeks` weeks: readers at the week's end (confirmed, and neither unsubscribed nor
    suppressed since), new readers (confirmed that week: a sign-up never confirmed is none), unsubscribed,
    suppressed."""
    edges = [now - timedelta(weeks=weeks - i) for i in range(weeks + 1)]
    left = _readers_left()
    with store.engine.connect() as conn:
        confirmed = _per_bucket(conn, subscribers.c.confirmed_at, edges)
        gone = _per_bucket(conn, left, edges)
        unsubscribed = _per_bucket(conn, subscribers.c.unsubscribed_at, edges)
        suppressed = _per_bucket(conn, suppressions.c.created_at, edges)
        before = conn.scalar(sa.select(sa.func.count()).where(subscribers.c.confirmed_at < edges[0])) or 0
        gone_before = conn.scalar(sa.select(sa.func.count()).where(left < edges[0])) or 0
    active, running = [], before - gone_before
    for joined, quit_ in zip(confirmed, gone, strict=True):
        running += joined - quit_
        active.append(running)
    labels = tuple(f"{edge:%m-%d}" for edge in edges[1:])
    return Weekly(labels, tuple(active), tuple(confirmed), tuple(unsubscribed), tuple(suppressed))


def _readers_left() -> sa.ColumnElement[datetime]:
    """When each confirmed reader stopped being one: the first of their unsubscribing and their address's
    suppression, never before they joined (a reader whose address was suppressed before confirming left
    as they joined). Null for readers still there."""
    unsubscribed, suppressed = subscribers.c.unsubscribed_at, suppressions.c.created_at
    first = sa.case((unsubscribed.is_(None), suppressed), (suppressed.is_(None), unsubscribed),
                    (unsubscribed < suppressed, unsubscribed), else_=suppressed)
    left = sa.case((first < subscribers.c.confirmed_at, subscribers.c.confirmed_at), else_=first)
    readers = (sa.select(sa.type_coerce(left, UTCDateTime).label("left_at"))
               .select_from(subscribers.outerjoin(suppressions, suppressions.c.email_key == subscribers.c.email_key))
               .where(subscribers.c.confirmed_at.is_not(None)).subquery())
    return readers.c.left_at


def issue_suppressions(store: Store, issue_id: int) -> int:
    """Addresses suppressed because the relay refused them while sending this issue."""
    query = sa.select(sa.func.count()).select_from(suppressions).where(suppressions.c.cause == "issue",
                                                                       suppressions.c.cause_ref == str(issue_id))
    with store.engine.connect() as conn:
        return conn.scalar(query) or 0


def recent_issues(store: Store, limit: int = 10, kind: str = "") -> list[IssueRow]:
    """The newest issues (of every kind, or of one) with their counts, bounces and complaints."""
    query = _issue_columns().order_by(issues.c.slot.desc(), issues.c.id.desc()).limit(limit)
    return _issue_rows(store, query.where(issues.c.kind == kind) if kind else query)


def issue_row(store: Store, period: str) -> IssueRow | None:
    rows = _issue_rows(store, _issue_columns().where(issues.c.period == period))
    return rows[0] if rows else None


@dataclass(frozen=True)
class KindRow(Rates):
    """Every mail of one kind together: how many, and their deliveries' counts as an issue's."""

    kind: str
    mails: int
    counts: dict[str, int]
    bounced: int
    complained: int



def by_kind(store: Store, kinds: Sequence[str]) -> list[KindRow]:
    """Each kind of mail's totals (`kinds` in order, those with no mail too): issues, deliveries per status,
    deliveries bounced and complained about. Three grouped queries, whatever the number of mails."""
    bounced = sa.case((bounces.c.kind.in_(["hard", "soft"]), bounces.c.delivery_id))
    complained = sa.case((bounces.c.kind == "complaint", bounces.c.delivery_id))
    with store.engine.connect() as conn:
        mails = dict(conn.execute(sa.select(issues.c.kind, sa.func.count()).group_by(issues.c.kind)).all())
        statuses = conn.execute(sa.select(issues.c.kind, deliveries.c.status, sa.func.count())
                                .join(issues, issues.c.id == deliveries.c.issue_id)
                                .group_by(issues.c.kind, deliveries.c.status))
        counts: dict[str, dict[str, int]] = {kind: dict.fromkeys(DELIVERY_STATUSES, 0) for kind in kinds}
        for kind, status, n in statuses:
            counts.setdefault(kind, dict.fromkeys(DELIVERY_STATUSES, 0))[status] = n
        returned = {kind: (b, c) for kind, b, c in conn.execute(
            sa.select(issues.c.kind, sa.func.count(sa.distinct(bounced)), sa.func.count(sa.distinct(complained)))
            .select_from(bounces).join(deliveries, deliveries.c.id == bounces.c.delivery_id)
            .join(issues, issues.c.id == deliveries.c.issue_id).group_by(issues.c.kind))}
    return [KindRow(kind, mails.get(kind, 0), counts[kind], *returned.get(kind, (0, 0))) for kind in kinds]


def sent_per_day(store: Store, kinds: Sequence[str], now: datetime, tz: tzinfo,
                 days: int = 14) -> tuple[list[date], dict[str, list[int]]]:
    """Messages sent per day (the site's days) of the last `days`, by kind of mail, for the overview's chart."""
    today = now.astimezone(tz).date()
    starts = [today - timedelta(days=days - 1 - i) for i in range(days + 1)]
    edges = [datetime.combine(day, time(0), tz).astimezone(UTC) for day in starts]
    bucket = _bucket(deliveries.c.updated_at, edges)
    series = {kind: [0] * days for kind in kinds}
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(bucket, issues.c.kind, sa.func.count())
                            .join(issues, issues.c.id == deliveries.c.issue_id)
                            .where(deliveries.c.status == "sent", deliveries.c.updated_at >= edges[0],
                                   deliveries.c.updated_at < edges[-1])
                            .group_by(bucket, issues.c.kind))
        for index, kind, n in rows:
            if index is not None and kind in series:
                series[kind][index] = n
    return starts[:-1], series


def queue_now(store: Store) -> dict[str, int]:
    """Open rows of every issue by status, and how many wait on a paused issue."""
    query = sa.select(deliveries.c.status, sa.func.count()).where(
        deliveries.c.status.in_(OPEN_STATUSES)).group_by(deliveries.c.status)
    paused = sa.select(sa.func.count()).where(
        deliveries.c.issue_id.in_(sa.select(issue_holds.c.issue_id).where(issue_holds.c.state == "paused")),
        deliveries.c.status.in_(OPEN_STATUSES))
    with store.engine.connect() as conn:
        counts = dict.fromkeys(OPEN_STATUSES, 0) | dict(conn.execute(query).all())
        counts["on_paused"] = conn.scalar(paused) or 0        # its words: status_on_paused
    return counts


def variant_counts(store: Store, issue_id: int) -> list[tuple[tuple[str, ...], str, int]]:
    """(topics, subject, recipients) per variant of an issue; no topics (): everyone's variant."""
    counts = (sa.select(deliveries.c.variant_key, sa.func.count().label("n"))
              .where(deliveries.c.issue_id == issue_id).group_by(deliveries.c.variant_key).subquery())
    query = (sa.select(issue_variants.c.key, issue_variants.c.subject, sa.func.coalesce(counts.c.n, 0))
             .outerjoin(counts, counts.c.variant_key == issue_variants.c.key)
             .where(issue_variants.c.issue_id == issue_id).order_by(issue_variants.c.key))
    with store.engine.connect() as conn:
        return [(tuple(key.split("\t")) if key else (), subject, n) for key, subject, n in conn.execute(query)]


def progress(store: Store, issue_id: int, buckets: int = 24) -> tuple[list[datetime], dict[str, list[int]]]:
    """Rows that reached sent / deferred / failed, per time bucket between the issue's first and last
    change (their `updated_at`), for the deliveries chart: (the start of each bucket, counts per status)."""
    done = ("sent", "deferred", "failed")
    with store.engine.connect() as conn:
        first, last = conn.execute(sa.select(sa.func.min(deliveries.c.updated_at), sa.func.max(deliveries.c.updated_at))
                                   .where(deliveries.c.issue_id == issue_id)).one()
        if first is None:
            return [], {}
        step = max((last - first) / buckets, timedelta(seconds=1))
        edges = [first + step * i for i in range(buckets + 1)]
        edges[-1] = last + timedelta(microseconds=1)
        bucket = _bucket(deliveries.c.updated_at, edges)
        rows = conn.execute(sa.select(bucket, deliveries.c.status, sa.func.count())
                            .where(deliveries.c.issue_id == issue_id, deliveries.c.status.in_(done))
                            .group_by(bucket, deliveries.c.status))
        series = {status: [0] * buckets for status in done}
        for index, status, n in rows:
            if index is not None:
                series[status][index] = n
    return edges[:-1], series


def failures(store: Store, issue_id: int, limit: int = 100) -> list[Any]:
    """Failed and deferred rows with the server's reply, the newest first."""
    query = (sa.select(deliveries.c.status, deliveries.c.last_reply, deliveries.c.attempts, deliveries.c.updated_at,
                       subscribers.c.id.label("subscriber_id"), subscribers.c.email)
             .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
             .where(deliveries.c.issue_id == issue_id, deliveries.c.status.in_(("failed", "deferred")))
             .order_by(deliveries.c.updated_at.desc()).limit(limit))
    with store.engine.connect() as conn:
        return list(conn.execute(query))


def search(store: Store, wanted: Search) -> tuple[list[SubscriberRow], int | None]:
    """One page of subscribers matching `wanted`, in id order, and the id to continue after (None: last page)."""
    blocked = sa.exists().where(suppressions.c.email_key == subscribers.c.email_key)
    query = (sa.select(subscribers.c.id, subscribers.c.email, subscribers.c.name, subscribers.c.status,
                       subscribers.c.topics, subscribers.c.cadence, subscribers.c.created_at, blocked.label("blocked"))
             .where(*_filters(wanted, blocked), subscribers.c.id > wanted.after)
             .order_by(subscribers.c.id).limit(PAGE_SIZE + 1))
    with store.engine.connect() as conn:
        found = [SubscriberRow(r.id, r.email, r.name, r.status, tuple(r.topics), r.cadence, r.created_at,
                               bool(r.blocked))
                 for r in conn.execute(query)]
    more = len(found) > PAGE_SIZE
    return found[:PAGE_SIZE], found[PAGE_SIZE - 1].id if more else None


def every_match(store: Store, wanted: Search) -> Any:
    """Every subscriber matching `wanted` (for the CSV export), streamed in id order."""
    blocked = sa.exists().where(suppressions.c.email_key == subscribers.c.email_key)
    query = (sa.select(subscribers.c.email, subscribers.c.name, subscribers.c.topics, subscribers.c.cadence,
                       subscribers.c.timezone, subscribers.c.status, blocked.label("blocked"), subscribers.c.created_at)
             .where(*_filters(wanted, blocked)).order_by(subscribers.c.id))
    with store.engine.connect() as conn:
        yield from conn.execution_options(yield_per=1000).execute(query)


def history(store: Store, subscriber_id: int, limit: int = 100) -> list[Any]:
    """The issues a subscriber was queued for, the newest first, with what became of each."""
    query = (sa.select(issues.c.period, deliveries.c.status, deliveries.c.last_reply, deliveries.c.attempts,
                       deliveries.c.updated_at)
             .join(issues, issues.c.id == deliveries.c.issue_id)
             .where(deliveries.c.subscriber_id == subscriber_id).order_by(deliveries.c.id.desc()).limit(limit))
    with store.engine.connect() as conn:
        return list(conn.execute(query))


def _issue_columns() -> sa.Select[Any]:
    return sa.select(issues.c.id, issues.c.period, issues.c.created_at, issues.c.kind, issues.c.zone)


def _issue_rows(store: Store, query: sa.Select[Any]) -> list[IssueRow]:
    with store.engine.connect() as conn:
        found = list(conn.execute(query))
        ids = [row.id for row in found]
        counts: dict[int, dict[str, int]] = {i: dict.fromkeys(DELIVERY_STATUSES, 0) for i in ids}
        for issue_id, status, n in conn.execute(
                sa.select(deliveries.c.issue_id, deliveries.c.status, sa.func.count())
                .where(deliveries.c.issue_id.in_(ids)).group_by(deliveries.c.issue_id, deliveries.c.status)):
            counts[issue_id][status] = n
        holds = dict(conn.execute(sa.select(issue_holds.c.issue_id, issue_holds.c.state)
                                  .where(issue_holds.c.issue_id.in_(ids))).all())
    returned = evidence.per_issue(store, ids)
    return [IssueRow(r.id, r.period, r.created_at, counts[r.id], holds.get(r.id), *returned.get(r.id, (0, 0)),
                     r.kind, r.zone) for r in found]


def _filters(wanted: Search, blocked: sa.Exists) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = []
    if wanted.query:
        where.append(sa.or_(subscribers.c.email_key.contains(wanted.query.lower(), autoescape=True),
                            subscribers.c.name.contains(wanted.query, autoescape=True)))
    if wanted.status:
        where.append(subscribers.c.status == wanted.status)
    if wanted.topic:
        # The list is stored as JSON text (json.dumps, non-ASCII escaped): look for the topic as it is written,
        # in either case, as digests match topics (`categories/releases` is `categories/Releases`).
        where.append(sa.func.lower(sa.cast(subscribers.c.topics, sa.Text)).contains(
            json.dumps(wanted.topic).lower(), autoescape=True))
    if wanted.suppressed == "yes":
        where.append(blocked)
    elif wanted.suppressed == "no":
        where.append(~blocked)
    return where


def _per_bucket(conn: sa.Connection, column: sa.ColumnElement[Any], edges: Sequence[datetime]) -> list[int]:
    bucket = _bucket(column, edges)
    counts = [0] * (len(edges) - 1)
    for index, n in conn.execute(sa.select(bucket, sa.func.count())
                                 .where(column >= edges[0], column < edges[-1]).group_by(bucket)):
        if index is not None:
            counts[index] = n
    return counts


def _bucket(column: sa.ColumnElement[Any], edges: Sequence[datetime]) -> sa.Case[Any]:
    """The index of the bucket [edges[i], edges[i + 1]) a value falls in."""
    return sa.case(*((column < edge, index) for index, edge in enumerate(edges[1:])), else_=None).label("bucket")
