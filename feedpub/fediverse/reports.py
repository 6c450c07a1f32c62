"""What the operator sees of the fediverse (`feedpub fediverse`, the dashboard's page): followers, deliveries per
instance with the breaker's state, followers over time, likes, boosts and replies per post. Reads only."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from feedpub.config import Config
from feedpub.fediverse.objects import OBJECTS_PATH
from feedpub.fediverse.queue import STATUSES, hostname, instance
from feedpub.schema import (
    fediverse_blocks,
    fediverse_deliveries,
    fediverse_followers,
    fediverse_hosts,
    fediverse_published,
    fediverse_reactions,
)
from feedpub.store import Store


@dataclass(frozen=True)
class FollowerRow:
    account: str
    actor: str
    instance: str            # where its activities go: its shared inbox's, else its inbox's
    since: datetime


@dataclass(frozen=True)
class InstanceRow:
    instance: str
    counts: dict[str, int]   # status → deliveries
    paused_until: datetime | None
    failing_since: datetime | None
    last_error: str
    blocked: bool

    @property
    def failures(self) -> int:
        return sum(self.counts.get(status, 0) for status in ("deferred", "failed", "gone", "dropped"))


@dataclass(frozen=True)
class PostReactions:
    url: str                 # the post's page ("" when the post is not one the store knows)
    object_id: str
    likes: int
    boosts: int
    replies: int


def followers(store: Store) -> list[FollowerRow]:
    rows = fediverse_followers.c
    query = sa.select(rows.account, rows.actor, rows.inbox, rows.shared_inbox, rows.created_at).order_by(
        rows.account, rows.created_at, rows.id)
    with store.engine.connect() as conn:
        return [FollowerRow(r.account, r.actor, instance(r.shared_inbox or r.inbox), r.created_at)
                for r in conn.execute(query)]


def instances(store: Store) -> list[InstanceRow]:
    """Every instance deliveries went or go to, the busiest first."""
    rows = fediverse_deliveries.c
    with store.engine.connect() as conn:
        counted = conn.execute(sa.select(rows.host, rows.status, sa.func.count()).group_by(rows.host, rows.status))
        counts: dict[str, dict[str, int]] = defaultdict(dict)
        for host, status, number in counted:
            counts[host][status] = number
        breakers = {r.host: r for r in conn.execute(sa.select(fediverse_hosts))}
        blocked = set(conn.scalars(sa.select(fediverse_blocks.c.host)))
    found = [InstanceRow(host, {s: counts[host].get(s, 0) for s in STATUSES},
                         breakers[host].paused_until if host in breakers else None,
                         breakers[host].failing_since if host in breakers else None,
                         breakers[host].last_error if host in breakers else "", hostname(host) in blocked)
             for host in counts]
    return sorted(found, key=lambda row: (-sum(row.counts.values()), row.instance))


def followers_over_time(store: Store, days: int, today: date) -> dict[str, list[tuple[date, int]]]:
    """Account → its followers at the end of each of the last `days` days (those following today, by the day
    they followed: an unfollow leaves no row to date it)."""
    start = today - timedelta(days=days - 1)
    per_day: dict[str, Counter[date]] = defaultdict(Counter)
    with store.engine.connect() as conn:
        for account, created in conn.execute(sa.select(fediverse_followers.c.account,
                                                       fediverse_followers.c.created_at)):
            per_day[account][max(created.date(), start - timedelta(days=1))] += 1
    series: dict[str, list[tuple[date, int]]] = {}
    for account in sorted(per_day):
        total = sum(n for day, n in per_day[account].items() if day < start)
        points = []
        for offset in range(days):
            day = start + timedelta(days=offset)
            total += per_day[account].get(day, 0)
            points.append((day, total))
        series[account] = points
    return series


def reactions(config: Config, store: Store) -> list[PostReactions]:
    """Likes, boosts and replies per post, the most reacted to first."""
    prefix = config.web.public_url.rstrip("/") + OBJECTS_PATH
    rows = fediverse_reactions.c
    with store.engine.connect() as conn:
        counted = list(conn.execute(sa.select(rows.object_id, rows.kind, sa.func.count())
                                    .group_by(rows.object_id, rows.kind)))
        pages = {prefix + key: url for key, url in conn.execute(
            sa.select(fediverse_published.c.object_key, fediverse_published.c.url).distinct())}
    per_object: dict[str, Counter[str]] = defaultdict(Counter)
    for object_id, kind, number in counted:
        per_object[object_id][kind] += number
    found = [PostReactions(pages.get(object_id, ""), object_id, kinds["like"], kinds["announce"], kinds["reply"])
             for object_id, kinds in per_object.items()]
    return sorted(found, key=lambda row: (-(row.likes + row.boosts + row.replies), row.object_id))
