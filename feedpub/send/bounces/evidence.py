"""The evidence of bounces and complaints in the store: one row per message (or provider event) and
recipient, written once however often the message is read, and the queries that decide and show what
was done: soft bounces counted since the last clean delivery, the list (oldest first for the CLI, newest
first by page for the dashboard), one row, per-issue counts; and the tokens of signed webhook requests
seen, which make a replayed request known.

The functions that decide take the connection of the caller's transaction, so a batch of messages costs
one transaction, and evidence and effect are committed together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from feedpub.schema import UTCDateTime, bounces, deliveries, issues, subscribers, webhook_tokens
from feedpub.send.bounces.classify import Kind
from feedpub.store import Store, email_key

# Built once: a statement built per row costs more than the row's insert (SQLAlchemy's coercions).
_INSERT = {name: dialect.insert(bounces).on_conflict_do_nothing().returning(bounces.c.id)
           for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))}
_REMEMBER = {name: dialect.insert(webhook_tokens).on_conflict_do_nothing().returning(webhook_tokens.c.token)
             for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))}


# The last delivery to an address that was sent and that no bounce names, and the soft bounces after a time.
_LAST_CLEAN = (sa.select(sa.func.max(deliveries.c.updated_at))
               .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
               .where(subscribers.c.email_key == sa.bindparam("key"), deliveries.c.status == "sent",
                      deliveries.c.updated_at >= sa.bindparam("since", type_=UTCDateTime),
                      deliveries.c.id != sa.bindparam("bouncing"),
                      ~sa.exists().where(bounces.c.delivery_id == deliveries.c.id)))
# Unverified ones count for nothing: two made-up soft bounces must not make a real one suppress.
_SOFT_AFTER = sa.select(bounces.c.delivery_id, bounces.c.message_key).where(
    bounces.c.recipient == sa.bindparam("key"), bounces.c.kind == "soft", bounces.c.unverified.is_(False),
    bounces.c.received_at > sa.bindparam("after", type_=UTCDateTime))


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
    unverified: bool              # nothing vouched for it: it changed no subscriber


@dataclass(frozen=True)
class Token:
    """The token of a signed webhook request, and when its signature stops being accepted anyway."""

    provider: str
    token: str
    expires_at: datetime


def remember(conn: Connection, token: Token, now: datetime) -> bool:
    """Remember `token` until it expires; False if it was seen before (a replay). Expired ones are forgotten."""
    conn.execute(webhook_tokens.delete().where(webhook_tokens.c.expires_at < now))
    values = {"provider": token.provider, "token": token.token, "expires_at": token.expires_at}
    return conn.scalar(_REMEMBER[conn.dialect.name], values) is not None


def recorded(conn: Connection, message_keys: Iterable[str]) -> set[tuple[str, str]]:
    """The (message key, recipient) pairs already recorded among `message_keys`."""
    query = sa.select(bounces.c.message_key, bounces.c.recipient).where(bounces.c.message_key.in_(set(message_keys)))
    return {(key, recipient) for key, recipient in conn.execute(query)}


def record(conn: Connection, values: dict[str, Any]) -> int | None:
    """Store one piece of evidence (the columns of `bounces`); None if that message and recipient were
    recorded already, by another process a moment ago."""
    values = {**values, "recipient": email_key(values["recipient"]),
              "diagnostic": values["diagnostic"][:2000] if values["diagnostic"] else None}
    return conn.scalar(_INSERT[conn.dialect.name], values)


def set_effect(conn: Connection, evidence_id: int, effect: str) -> None:
    """What feedpub did about a piece of evidence, once done (the suppression it made names the evidence)."""
    conn.execute(bounces.update().where(bounces.c.id == evidence_id).values(effect=effect))


def addresses_of(conn: Connection, delivery_ids: Iterable[int]) -> dict[int, str]:
    """Delivery id → the address of the subscriber it went to, for those the store has."""
    query = (sa.select(deliveries.c.id, subscribers.c.email)
             .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
             .where(deliveries.c.id.in_(set(delivery_ids))))
    return dict(conn.execute(query).all())


def delivery_for(conn: Connection, recipient: str, period: str | None) -> tuple[int, str] | None:
    """The delivery a bounce without VERP is most likely about: to that address, of the issue `period`
    names (a returned Feedback-ID) if any, else the latest sent. (id, subscriber's address)."""
    query = (sa.select(deliveries.c.id, subscribers.c.email)
             .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
             .where(subscribers.c.email_key == email_key(recipient), deliveries.c.status == "sent")
             .order_by(deliveries.c.updated_at.desc(), deliveries.c.id.desc()).limit(1))
    if period:
        query = query.join(issues, issues.c.id == deliveries.c.issue_id).where(issues.c.period == period)
    row = conn.execute(query).first()
    return (row.id, row.email) if row else None


def is_subscriber(conn: Connection, address: str) -> bool:
    return conn.scalar(sa.select(subscribers.c.id).where(subscribers.c.email_key == email_key(address))) is not None


def soft_bounces(conn: Connection, recipient: str, now: datetime, window: timedelta,
                 bouncing: int | None) -> set[int | str]:
    """Soft bounces of `recipient` within `window` before `now` and after its last clean delivery (one sent
    that no bounce names, nor the one `bouncing` now); a delivery that bounced more than once (a delay
    warning, then the failure) counts once: the deliveries (or, without one, the messages) that bounced."""
    key = email_key(recipient)
    since = now - window
    last_clean = conn.scalar(_LAST_CLEAN, {"key": key, "since": since, "bouncing": bouncing or 0})
    after = last_clean if last_clean else since - timedelta(microseconds=1)
    return {delivery or message for delivery, message in conn.execute(_SOFT_AFTER, {"key": key, "after": after})}


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


def newest(store: Store, *, kinds: Iterable[Kind] = (), recipient: str | None = None, issue_id: int | None = None,
           before: int | None = None, limit: int = 50) -> list[Evidence]:
    """Evidence newest first, without the raw message: of `kinds` (all when empty), about one address, or
    about one issue's deliveries; `before` is the last id of the previous page."""
    query = _select(with_raw=False).order_by(bounces.c.id.desc()).limit(limit)
    if kinds:
        query = query.where(bounces.c.kind.in_(list(kinds)))
    if recipient is not None:
        query = query.where(bounces.c.recipient == email_key(recipient))
    if issue_id is not None:
        query = query.where(deliveries.c.issue_id == issue_id)
    if before is not None:
        query = query.where(bounces.c.id < before)
    with store.engine.connect() as conn:
        return [_evidence(row) for row in conn.execute(query)]


def per_issue(store: Store, issue_ids: Iterable[int] | None = None) -> dict[int, tuple[int, int]]:
    """Issue id → (deliveries that bounced, deliveries complained about), of every issue or of `issue_ids`."""
    bounced = sa.case((bounces.c.kind.in_(["hard", "soft"]), bounces.c.delivery_id))
    complained = sa.case((bounces.c.kind == "complaint", bounces.c.delivery_id))
    query = (sa.select(deliveries.c.issue_id, sa.func.count(sa.distinct(bounced)),
                       sa.func.count(sa.distinct(complained)))
             .select_from(bounces).join(deliveries, deliveries.c.id == bounces.c.delivery_id)
             .group_by(deliveries.c.issue_id))
    if issue_ids is not None:
        query = query.where(deliveries.c.issue_id.in_(list(issue_ids)))
    with store.engine.connect() as conn:
        return {issue_id: (b, c) for issue_id, b, c in conn.execute(query)}


def _select(*, with_raw: bool) -> sa.Select[Any]:
    columns = [c for c in bounces.c if with_raw or c.name != "raw"]
    return (sa.select(*columns, issues.c.period)
            .outerjoin(deliveries, deliveries.c.id == bounces.c.delivery_id)
            .outerjoin(issues, issues.c.id == deliveries.c.issue_id))


def _evidence(row: Any) -> Evidence:
    raw = row.raw if "raw" in row._fields else b""
    return Evidence(row.id, row.received_at, row.source, row.message_key, row.recipient, row.delivery_id, row.period,
                    row.kind, row.status, row.diagnostic, row.why, row.effect, raw, row.raw_size, row.unverified)
