"""Reader cadences, pure: which feed folders ("topics") a post is in and whether a reader's topics take it;
the slots of each digest cadence in each time zone.

A topic is a feed folder as `feedpub.site.feeds.Feed.folder` names it: "categories/<slug>", "tags/<slug>",
"authors/<slug>". A reader's list of them (empty: everything) is matched case-insensitively against both the
post's names and their slugs, so a topic written with the name ("categories/AI導入戦略", as stores migrated
from category names hold them) and one written as the feed's folder take the same posts.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from feedpub import urls
from feedpub.config import Config
from feedpub.site.reader import Post


def post_topics(config: Config, post: Post) -> frozenset[str]:
    """Every spelling of the feed folders `post` is in, case-folded."""
    groups = (("categories", post.categories), ("tags", post.tags), ("authors", (post.author,) if post.author else ()))
    found = set()
    for group, names in groups:
        for name in names:
            found.add(f"{group}/{name}".casefold())
            found.add(f"{group}/{config.feeds.slugs.get(name) or urls.slugify(name)}".casefold())
    return frozenset(found)


def wanted(topics: Iterable[str], in_topics: frozenset[str]) -> bool:
    """Whether a reader of `topics` (none: everything) takes a post in `in_topics` (`post_topics`)."""
    chosen = {topic.casefold() for topic in topics}
    return not chosen or bool(chosen & in_topics)


def variant_keys(choices: Iterable[tuple[str, tuple[str, ...]]]) -> dict[tuple[str, tuple[str, ...]], str]:
    """The variant key of each (topics key, post URLs) readers were chosen: for each topics key, its most
    common set of posts keeps the plain key (the variant every such reader got before the ledger), any other
    set the key with "#" and a digest of its URLs."""
    counts = Counter(choices)
    keys: dict[tuple[str, tuple[str, ...]], str] = {}
    plain_taken: set[str] = set()
    for topics_key, post_urls in sorted(counts, key=lambda choice: (-counts[choice], choice)):
        if topics_key in plain_taken:
            digest = hashlib.sha256("\n".join(post_urls).encode()).hexdigest()[:12]
            keys[topics_key, post_urls] = f"{topics_key}#{digest}"
        else:
            plain_taken.add(topics_key)
            keys[topics_key, post_urls] = topics_key
    return keys


def topic_label(topic: str) -> str:
    """What a reader reads of a topic: its name without the group's folder."""
    return topic.split("/", 1)[-1]


# -- slots -------------------------------------------------------------------------------------------------
# Every slot is a local date and time in a reader's zone, turned into one instant by zoneinfo's fold=0: a
# time a spring-forward gap skips lands just after the gap, and a time an autumn fold repeats is its first
# occurrence, so each local day has exactly one instant per slot time. Instants are compared in UTC (two
# aware datetimes of one tzinfo compare by their wall time, fold ignored).

DIGESTS = ("daily", "weekly", "monthly")


def zone_of(config: Config, timezone: str) -> ZoneInfo:
    """A reader's zone: their own, or the site's when they chose none."""
    return ZoneInfo(timezone) if timezone else config.site.tz


def zone_key(config: Config, timezone: str) -> str:
    """How a reader's zone names their stream of digests: "" for the site's (a reader who chose the site's
    own zone is in the same stream as one who chose none)."""
    return "" if not timezone or timezone == config.site.timezone else timezone


def local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The instant, in UTC, of `at` on `day` in `tz` (gaps: just after; folds: the first)."""
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def _local_days(kind: str, config: Config, day: date) -> list[time]:
    """The slot times of a local day for a digest `kind`."""
    digest = config.digest
    if kind == "daily":
        return [digest.daily_at]
    if kind == "weekly":
        return sorted({entry.at for entry in digest.schedule if day.weekday() in entry.days})
    if kind == "monthly":
        return [digest.monthly_on.at] if day.day == digest.monthly_on.day else []
    raise ValueError(f"{kind!r} is not a digest cadence (expected one of {', '.join(DIGESTS)})")


def previous_slot(config: Config, kind: str, tz: ZoneInfo, now: datetime) -> datetime:
    """The latest slot of `kind` in `tz` at or before `now` (UTC)."""
    today = now.astimezone(tz).date()
    for back in range(0, 63):
        day = today - timedelta(days=back)
        found = [s for s in (local_instant(day, at, tz) for at in _local_days(kind, config, day)) if s <= now]
        if found:
            return max(found)
    raise AssertionError("every cadence has a slot within two months")


def next_slot(config: Config, kind: str, tz: ZoneInfo, now: datetime) -> datetime:
    """The earliest slot of `kind` in `tz` after `now` (UTC)."""
    today = now.astimezone(tz).date()
    for ahead in range(-1, 63):
        day = today + timedelta(days=ahead)
        found = [s for s in (local_instant(day, at, tz) for at in _local_days(kind, config, day)) if s > now]
        if found:
            return min(found)
    raise AssertionError("every cadence has a slot within two months")


def period_key(config: Config, kind: str, zone: str, slot: datetime) -> str:
    """The issue of a slot: its local date and time ("2025-12-15-0900", as the weekly issues of the site's
    zone have always been named), then the cadence and zone of any other stream."""
    local = slot.astimezone(zone_of(config, zone)).strftime("%Y-%m-%d-%H%M")
    if kind == "weekly" and not zone:
        return local
    # A period is a path segment (/admin/issues/…, digests/…) and a Message-ID's left part: no "/" or "+".
    return f"{local}-{kind}" + (f"-{zone.replace('/', '.').replace('+', 'plus')}" if zone else "")


def first_window(config: Config, kind: str, tz: ZoneInfo, slot: datetime) -> datetime:
    """Where the first issue of a stream starts: `digest.first_issue_days` back for weekly, the previous
    slot for daily and monthly."""
    if kind == "weekly":
        return slot - timedelta(days=config.digest.first_issue_days)
    return previous_slot(config, kind, tz, slot - timedelta(microseconds=1))


# -- posts as they appear ------------------------------------------------------------------------------------

# A post dated further back than this when it first appears is backdated: the digests carry it, no post mail.
BACKDATED = timedelta(days=1)


def sightings(new: Iterable[tuple[str, datetime]], now: datetime, *, burst: int,
              first: bool) -> dict[str, tuple[str, datetime]]:
    """What becomes of posts seen for the first time, (URL, date) each, and when they appeared: "waiting" for
    their post mail, or "digest" (the digests carry them): a backdated post, and all of them when more than
    `burst` fresh ones appear at once (a bulk import). On the very first look every post is "digest" and
    appeared when it is dated: the site's archive is no news."""
    found = list(new)
    if first:
        return {url: ("digest", min(dated, now)) for url, dated in found}
    fresh = [url for url, dated in found if dated >= now - BACKDATED]
    mailed = set() if len(fresh) > burst else set(fresh)
    return {url: ("waiting" if url in mailed else "digest", now) for url, _ in found}


def appeared(date: datetime, first_seen: datetime | None) -> datetime:
    """When a post became news: when it was first seen, or its date when it was seen on the first look (or
    never looked for). A backdated post is news from when it appears, not from its date."""
    return date if first_seen is None else max(date, first_seen)


def catch_up_period(slot: datetime, reader: int) -> str:
    """The mail that brings a reader who switched to each post's mail what was waiting for their digest."""
    return f"{slot.astimezone(UTC):%Y-%m-%d-%H%M%S}-post-catch-up-{reader}"


def post_period(slot: datetime, url: str) -> str:
    """The issue of one post's mail: its slot (UTC) and a digest of the post's URL."""
    return f"{slot.astimezone(UTC):%Y-%m-%d-%H%M}-post-{hashlib.sha256(url.encode()).hexdigest()[:12]}"
