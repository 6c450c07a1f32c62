"""The evidence of bounces and complaints in the store: one row per message (or provider event) and
recipient, written once however often the message is read, and the queries that decide and show what
was done: soft bounces counted since the last clean delivery, the list, one row, per-issue counts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from feedpub.schema import bounces, deliveries, issues, subscribers
from feedpub.send.bounces.classify import Kind
from feedpub.store import Store, email_key, utcnow


@dataclass(frozen=True)
class Evidence:
    id: int
    received_at: datetime
    source: str
    message_key: str
    recipient: str
    delivery_id: int | None
    issue: str | None             # the period of the delivery's issue
    kind: Kind
    status: str | None
    diagnostic: str | None
    why: str
    effect: str
    raw: bytes
    raw_size: int


@dataclass(frozen=True)
class NewEvidence:
    source: str
    message_key: str
    recipient: str
    delivery_id: int | None
    kind: Kind
    status: str | None
    diagnostic: str | None
    why: str
    effect: str
    raw: bytes
    raw_size: int


def recorded(store: Store, message_key: str) -> set[str]:
    """The recipients already recorded for a message or event."""
    with store.engine.connect() as conn:
        return set(conn.scalars(sa.select(bounces.c.recipient).where(bounces.c.message_key == message_key)))


def record(store: Store, entry: NewEvidence) -> int | None:
    """Store one piece of evidence; None if that message and recipient were recorded already (by another
    process a moment ago)."""
    values = {**entry.__dict__, "recipient": email_key(entry.recipient), "received_at": utcnow(),
              "diagnostic": entry.diagnostic[:2000] if entry.diagnostic else None}
    try:
        with store.writing() as conn:
            return conn.execute(bounces.insert().values(**values)).inserted_primary_key[0]
    except sa.exc.IntegrityError:
        return None


def soft_bounces(store: Store, recipient: str, now: datetime, window: timedelta,
                 bouncing: int | None) -> set[int | str]:
    """Soft bounces of `recipient` within `window` before `now` and after its last clean delivery (one sent
    that no bounce names, nor the one `bouncing` now); a delivery that bounced more than once (a delay
    warning, then the failure) counts once: the deliveries (or, without one, the messages) that bounced."""
    key = email_key(recipient)
    since = now - window
    bounced = sa.select(bounces.c.delivery_id).where(bounces.c.delivery_id.is_not(None))
    clean = (sa.select(sa.func.max(deliveries.c.updated_at))
             .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
             .where(subscribers.c.email_key == key, deliveries.c.status == "sent", deliveries.c.updated_at >= since,
                    deliveries.c.id.not_in(bounced), deliveries.c.id != (bouncing or 0)))
    with store.engine.connect() as conn:
        last_clean = conn.scalar(clean)
        after = bounces.c.received_at > last_clean if last_clean else bounces.c.received_at >= since
        query = sa.select(bounces.c.delivery_id, bounces.c.message_key).where(
            bounces.c.recipient == key, bounces.c.kind == "soft", after)
        return {delivery or message for delivery, message in conn.execute(query)}


def delivery_for(store: Store, recipient: str, period: str | None) -> tuple[int, str] | None:
    """The delivery a bounce without VERP is most likely about: to that address, of the issue `period`
    names (a returned Feedback-ID) if any, else the latest sent. (id, subscriber's address)."""
    query = (sa.select(deliveries.c.id, subscribers.c.email)
             .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
             .where(subscribers.c.email_key == email_key(recipient), deliveries.c.status == "sent")
             .order_by(deliveries.c.updated_at.desc(), deliveries.c.id.desc()).limit(1))
    if period:
        query = query.join(issues, issues.c.id == deliveries.c.issue_id).where(issues.c.period == period)
    with store.engine.connect() as conn:
        row = conn.execute(query).first()
    return (row.id, row.email) if row else None


def delivery_address(store: Store, delivery_id: int) -> str | None:
    """The address of the subscriber a delivery went to; None if the store has no such delivery."""
    query = (sa.select(subscribers.c.email).join(deliveries, subscribers.c.id == deliveries.c.subscriber_id)
             .where(deliveries.c.id == delivery_id))
    with store.engine.connect() as conn:
        return conn.scalar(query)


def listing(store: Store, *, since: datetime | None = None, kinds: Iterable[Kind] = ()) -> list[Evidence]:
    """Evidence oldest first, without the raw message."""
    query = _select(with_raw=False).order_by(bounces.c.id)
    if since is not None:
        query = query.where(bounces.c.received_at >= since)
    if kinds:
        query = query.where(bounces.c.kind.in_(list(kinds)))
    with store.engine.connect() as conn:
        return [_evidence(row) for row in conn.execute(query)]


def one(store: Store, evidence_id: int) -> Evidence | None:
    with store.engine.connect() as conn:
        row = conn.execute(_select(with_raw=True).where(bounces.c.id == evidence_id)).first()
    return _evidence(row) if row else None


def per_issue(store: Store) -> dict[int, tuple[int, int]]:
    """Issue id → (deliveries that bounced, deliveries complained about)."""
    bounced = sa.case((bounces.c.kind.in_(["hard", "soft"]), bounces.c.delivery_id))
    complained = sa.case((bounces.c.kind == "complaint", bounces.c.delivery_id))
    query = (sa.select(deliveries.c.issue_id, sa.func.count(sa.distinct(bounced)),
                       sa.func.count(sa.distinct(complained)))
             .select_from(bounces).join(deliveries, deliveries.c.id == bounces.c.delivery_id)
             .group_by(deliveries.c.issue_id))
    with store.engine.connect() as conn:
        return {issue_id: (b, c) for issue_id, b, c in conn.execute(query)}


def _select(*, with_raw: bool) -> sa.Select:
    columns = [c for c in bounces.c if with_raw or c.name != "raw"]
    return (sa.select(*columns, issues.c.period)
            .outerjoin(deliveries, deliveries.c.id == bounces.c.delivery_id)
            .outerjoin(issues, issues.c.id == deliveries.c.issue_id))


def _evidence(row: sa.Row) -> Evidence:
    return Evidence(row.id, row.received_at, row.source, row.message_key, row.recipient, row.delivery_id, row.period,
                    row.kind, row.status, row.diagnostic, row.why, row.effect, getattr(row, "raw", b""), row.raw_size)
