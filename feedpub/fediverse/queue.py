"""The fediverse's delivery queue in the store: each activity stored once (`fediverse_activities`), one delivery
row per inbox (`fediverse_deliveries`, unique per activity and inbox), claimed under a lease by the daemon or
`feedpub worker`s as mail's deliveries are (`feedpub.send.claims.Leases`).

An instance is the authority of its inbox URL (`host[:port]`, lower-case): the circuit breaker pauses one
instance, `feedpub fediverse block DOMAIN` stops every instance on that host name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from feedpub.schema import fediverse_activities, fediverse_blocks, fediverse_deliveries, fediverse_hosts
from feedpub.store import Store, utcnow

OPEN_STATUSES = ("queued", "sending", "deferred")
# What `feedpub fediverse deliveries` and the dashboard count; sent and the four ends that are not.
STATUSES = ("queued", "sending", "deferred", "sent", "failed", "gone", "cancelled", "dropped")


def instance(inbox: str) -> str:
    """The instance an inbox belongs to: its URL's authority, lower-case (`social.example:8443`)."""
    return urlsplit(inbox).netloc.lower()


def hostname(authority: str) -> str:
    """The host name of an instance (`social.example:8443` → `social.example`), as blocks name it."""
    return urlsplit("//" + authority).hostname or authority


def enqueue(store: Store, *, account: str, activity: dict[str, Any], inboxes: Iterable[str],
            now: datetime | None = None) -> int:
    """Store `activity` (sent by `account`) and queue it for each of `inboxes` once; inboxes on blocked hosts get
    none. Returns how many deliveries were queued. The body is stored as it will be signed and sent; an activity
    with no inbox to go to is not stored."""
    with store.writing() as conn:
        return enqueue_in(conn, account=account, activity=activity, inboxes=inboxes, now=now)


def enqueue_in(conn: sa.Connection, *, account: str, activity: dict[str, Any], inboxes: Iterable[str],
               now: datetime | None = None) -> int:
    """`enqueue` in the caller's transaction (the publisher records the post's new state in the same one)."""
    now = now or utcnow()
    blocked = set(conn.scalars(sa.select(fediverse_blocks.c.host)))
    wanted = sorted({inbox for inbox in inboxes if inbox and hostname(instance(inbox)) not in blocked})
    if not wanted:       # an activity nobody is to get is not kept
        return 0
    body = json.dumps(activity, ensure_ascii=False, separators=(",", ":"))
    thing = activity.get("object", "")
    target = thing if isinstance(thing, str) else str(thing.get("id", ""))
    activity_id = conn.scalar(fediverse_activities.insert().values(
        account=account, object_id=target, kind=activity["type"], body=body, created_at=now)
        .returning(fediverse_activities.c.id))
    conn.execute(fediverse_deliveries.insert(), [
        {"activity_id": activity_id, "inbox": inbox, "host": instance(inbox), "status": "queued", "attempts": 0,
         "last_error": "", "created_at": now, "updated_at": now} for inbox in wanted])
    return len(wanted)


def queued_before(conn: sa.Connection, *, account: str, kind: str, object_id: str) -> bool:
    """Whether `account` queued a `kind` activity of `object_id` already (an Accept of this Follow id)."""
    activities = fediverse_activities.c
    return conn.scalar(sa.select(activities.id).where(activities.object_id == object_id, activities.kind == kind,
                                                      activities.account == account).limit(1)) is not None


def due(now: datetime) -> sa.ColumnElement[bool]:
    """Open rows whose lease is free, deferred ones whose retry time has come, of instances not paused."""
    rows = fediverse_deliveries.c
    paused = sa.exists().where(fediverse_hosts.c.host == rows.host, fediverse_hosts.c.paused_until > now)
    return sa.and_(rows.status.in_(OPEN_STATUSES),
                   sa.or_(rows.claimed_until.is_(None), rows.claimed_until <= now),
                   sa.or_(rows.status != "deferred", rows.next_attempt_at <= now), ~paused)


def cancel_host(store: Store, name: str, reason: str, now: datetime | None = None) -> int:
    """Cancel the deliveries not yet sent to every instance on host name `name`; returns how many."""
    now = now or utcnow()
    rows = fediverse_deliveries.c
    on_host = sa.or_(rows.host == name, rows.host.like(name.replace("%", r"\%").replace("_", r"\_") + ":%",
                                                       escape="\\"))
    with store.writing() as conn:
        return conn.execute(fediverse_deliveries.update()
                            .where(on_host, rows.status.in_(("queued", "deferred")))
                            .values(status="cancelled", last_error=reason, claimed_by=None, claimed_until=None,
                                    updated_at=now)).rowcount


def next_retry(store: Store, now: datetime | None = None) -> datetime | None:
    """When the next waiting row falls due, if any: per instance, its earliest row (a queued one now, a deferred one
    at its retry time), but not before the instance's pause ends. A pause that has ended counts for nothing (the
    instance's row stays until it answers, while its rows wait for their own back-off)."""
    now = now or utcnow()
    rows = fediverse_deliveries.c
    with store.engine.connect() as conn:
        earliest = dict(conn.execute(sa.select(rows.host, sa.func.min(rows.next_attempt_at))
                                     .where(rows.status == "deferred").group_by(rows.host)).all())
        earliest |= dict.fromkeys(conn.scalars(sa.select(rows.host).where(rows.status == "queued").distinct()), now)
        paused = dict(conn.execute(sa.select(fediverse_hosts.c.host, fediverse_hosts.c.paused_until)
                                   .where(fediverse_hosts.c.paused_until > now)).all())
    return min((max(moment, paused.get(host, moment)) for host, moment in earliest.items()), default=None)
