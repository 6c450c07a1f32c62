"""The mail of each reader's own cadence: every stream of digests in use (cadence and time zone), each
post's mail `digest.post_delay` after it first appears, and the welcome on confirmation. All through the
store's idempotency (an issue's period is composed once; the ledger gives a reader a post once) and the one
queue of deliveries.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from feedpub.config import Config, parse_duration
from feedpub.errors import Problem, message
from feedpub.records import ActiveReader, StoredIssue, Subscriber
from feedpub.send import cadences, delivery
from feedpub.send.dispatch import (
    Dispatch,
    Messages,
    Reading,
    as_stored,
    compose_stream_issue,
    send_due_issue,
    send_due_retries,
    store_composed,
)
from feedpub.send.issue import Issue, render_variant, variant_key
from feedpub.site.markup import render_posts
from feedpub.site.posts import collect
from feedpub.site.reader import Post
from feedpub.store import LedgerClash, Store, StoreError

log = logging.getLogger("feedpub.send.issue")

# The sighting that records when feedpub first looked at the site's posts (no post has this URL).
FIRST_LOOK = ""


def streams_in_use(config: Config, store: Store) -> list[tuple[str, str]]:
    """The (cadence, zone) of every stream of digests some active reader takes: `post` readers take the weekly
    one of their zone (it carries what their post mails do not)."""
    found = {("weekly" if cadence == "post" else cadence, cadences.zone_key(config, timezone))
             for cadence, timezone in store.choices()}
    return sorted(found)


def send_due(config: Config, store: Store, now: datetime, *, stop: threading.Event | None = None,
             on_outcome: Callable[[delivery.Outcome], None] | None = None, missed_after: timedelta | None = None,
             send: bool = True, reading: Reading | None = None) -> list[Dispatch]:
    """Everything due at `now`: the posts seen for the first time recorded, each stream's latest digest, the
    post mails whose delay has passed, then any other row due (a welcome, a retry, a resumed issue)."""
    reading = reading or Reading()
    sight_posts(config, store, reading.collect(config, now).posts, now)
    done = [send_due_issue(config, store, now, stop=stop, on_outcome=on_outcome, missed_after=missed_after,
                           send=send, stream=stream, reading=reading)
            for stream in streams_in_use(config, store) or [("weekly", "")]]
    done += send_due_posts(config, store, now, stop=stop, on_outcome=on_outcome, send=send, reading=reading)
    done += send_due_catch_ups(config, store, now, stop=stop, on_outcome=on_outcome, send=send, reading=reading)
    if send:
        send_due_retries(config, store, now, stop=stop or threading.Event())
    return done


def next_due(config: Config, store: Store, now: datetime) -> datetime | None:
    """When mail falls due next after `now`: the next slot of a stream in use, or a waiting post's mail."""
    slots = [cadences.next_slot(config, kind, cadences.zone_of(config, zone), now)
             for kind, zone in streams_in_use(config, store)]
    delay = parse_duration(config.digest.post_delay)
    slots += [max(moment + delay, now) for moment in (store.next_waiting_post(), store.next_catch_up())
              if moment is not None]
    return min(slots, default=None)


def sight_posts(config: Config, store: Store, posts: Sequence[Post], now: datetime) -> dict[str, tuple[str, datetime]]:
    """Record the posts seen for the first time: their post mail waits `digest.post_delay`, unless they are
    backdated or a bulk import (`cadences.sightings`); the digests take a backdated one from when it appeared."""
    found = new_sightings(config, store.sightings(), posts, now)
    return store.sight_posts(found) if found else {}


def new_sightings(config: Config, known: Mapping[str, object], posts: Sequence[Post],
                  now: datetime) -> dict[str, tuple[str, datetime]]:
    """The sightings `sight_posts` records (URL → state, first seen) given the URLs `known` already."""
    new = [(p.url, p.date) for p in posts if p.url not in known]
    first = FIRST_LOOK not in known
    found = cadences.sightings(new, now, burst=config.digest.post_burst, first=first)
    if first:         # the first look, remembered even when the site has no post yet
        found[FIRST_LOOK] = ("look", now)
    return found


def send_due_posts(config: Config, store: Store, now: datetime, *, stop: threading.Event | None = None,
                   on_outcome: Callable[[delivery.Outcome], None] | None = None, send: bool = True,
                   reading: Reading | None = None) -> list[Dispatch]:
    """One mail per post whose `digest.post_delay` has passed since it first appeared, to the `post` readers
    of its topics who did not get it yet, showing the post as it is now."""
    delay = parse_duration(config.digest.post_delay)
    due = sorted((seen, url) for url, (seen, _) in store.sightings("waiting").items() if seen + delay <= now)
    if not due:
        return []
    reading = reading or Reading()
    collection = reading.collect(config, now)
    published = {p.url: p for p in collection.posts}
    done = []
    for seen, url in due:
        post = published.get(url)
        if post is None:                          # taken down before its mail: nothing to send
            store.mark_sighting(url, "digest")
            continue
        stored = _post_issue(config, store, post, seen + delay, collection.posts, reading)
        store.mark_sighting(url, "mailed")
        if stored is None:
            continue
        done.append(_delivered(config, store, stored, collection.problems, stop, on_outcome, send))
    return done


def send_due_catch_ups(config: Config, store: Store, now: datetime, *, stop: threading.Event | None = None,
                       on_outcome: Callable[[delivery.Outcome], None] | None = None, send: bool = True,
                       reading: Reading | None = None) -> list[Dispatch]:
    """For each reader who switched from a digest to each post's mail `digest.post_delay` ago or more: one mail
    with the posts that were waiting for their digest (what their zone's weekly digest would bring them now),
    so the switch neither loses them nor holds them until that digest."""
    delay = parse_duration(config.digest.post_delay)
    switched = store.catching_up(now - delay)
    if not switched:
        return []
    reading = reading or Reading()
    done = []
    for reader, since in switched:
        stored, problems = _catch_up_issue(config, store, reader, since + delay, now, reading)
        store.caught_up(reader.id, since)
        if stored is None:
            continue
        done.append(_delivered(config, store, stored, problems, stop, on_outcome, send))
    return done


def queue_welcome(config: Config, store: Store, reader: Subscriber, now: datetime) -> StoredIssue | None:
    """Queue a newly confirmed reader's welcome: the newest `digest.welcome_posts` posts of their topics (none
    they got already); it counts as having carried them. None when it is off or no post is theirs. The
    daemon's retry job (or the next `digest send`) sends it."""
    if config.digest.welcome_posts < 1:
        return None
    collection = collect(config, now=now)
    # Posts no dispatch saw yet are sighted first, as a dispatch would: carried unseen, a post would be recorded
    # as news from its date and never wait for its post mail, and the other readers would never get it.
    sight_posts(config, store, collection.posts, now)
    got = store.readers_got([p.url for p in collection.posts], [reader.id]).get(reader.id, set())
    newest = [p for p in sorted(collection.posts, key=lambda p: (p.date, p.url), reverse=True)
              if p.url not in got and cadences.wanted(reader.topics, cadences.post_topics(config, p))]
    chosen = newest[:config.digest.welcome_posts]
    if not chosen:
        return None
    rendered, _ = render_posts(config, chosen, site_posts=collection.posts)
    period = f"{now.astimezone(UTC):%Y-%m-%d-%H%M%S}-welcome-{reader.id}"
    key = variant_key(reader.topics)
    zone = cadences.zone_key(config, reader.timezone)
    variant = render_variant(config, Issue(period, now, now, now, tuple(rendered), kind="welcome", zone=zone), key)
    if variant is None:
        return None
    try:
        return store.create_issue(period=period, slot=now, starts=now, ends=now, kind="welcome", zone=zone,
                                  variants=[as_stored(variant)], recipients={reader.id: key},
                                  carried=[p.url for p in chosen], variant_posts={key: [p.url for p in chosen]},
                                  dated={p.url: p.date for p in chosen})
    except StoreError:     # confirmed twice in one second, or a post of it reached them meanwhile
        return store.issue(period)


def post_recipients(config: Config, store: Store, post: Post) -> dict[int, str]:
    """The `post` readers of `post`'s topics who did not get it yet → the variant key of their topics."""
    readers = store.active_readers(["post"])
    got = store.readers_got([post.url], [reader.id for reader in readers])
    in_topics = cadences.post_topics(config, post)
    return {reader.id: variant_key(reader.topics) for reader in readers
            if post.url not in got.get(reader.id, ()) and cadences.wanted(reader.topics, in_topics)}


def _delivered(config: Config, store: Store, stored: StoredIssue, problems: Sequence[Problem],
               stop: threading.Event | None, on_outcome: Callable[[delivery.Outcome], None] | None,
               send: bool) -> Dispatch:
    """A mail of one post or one reader, delivered now (with `send=False`, left queued for the workers)."""
    summary = (delivery.deliver(config, store, stored, Messages(config, store), stop=stop or threading.Event(),
                                on_outcome=on_outcome) if send else None)
    return Dispatch(stored.period, stored, summary, tuple(problems),
                    None if send else message("note_queued", period=stored.period))


def _post_issue(config: Config, store: Store, post: Post, slot: datetime, site_posts: Sequence[Post],
                reading: Reading) -> StoredIssue | None:
    """The stored mail of one post (composed once: a second run finds it), None when no reader wants it."""
    period = cadences.post_period(slot, post.url)
    for _attempt in range(3):
        stored = store.issue(period)
        if stored is not None:
            return stored
        recipients = post_recipients(config, store, post)
        if not recipients:
            return None
        rendered, _ = reading.render(config, [post], site_posts)
        issue = Issue(period, slot, slot, slot, tuple(rendered), kind="post")
        variants = {key: variant for key in set(recipients.values())
                    if (variant := render_variant(config, issue, key)) is not None}
        try:
            return store.create_issue(period=period, slot=slot, starts=slot, ends=slot, kind="post",
                                      variants=[as_stored(v) for v in variants.values()],
                                      recipients={sid: key for sid, key in recipients.items() if key in variants},
                                      carried=[post.url], variant_posts={key: (post.url,) for key in variants},
                                      dated={post.url: post.date})
        except LedgerClash:
            continue
        except StoreError:
            continue    # another process stored it a moment ago: the next turn finds it
    raise StoreError(message("store_post_mail_kept_changing", store=store.shown, url=post.url))


def _catch_up_issue(config: Config, store: Store, reader: ActiveReader, slot: datetime, now: datetime,
                    reading: Reading) -> tuple[StoredIssue | None, list[Problem]]:
    """The stored catch-up mail of a reader who switched to each post's mail (composed once: a second run finds
    it), None when nothing was waiting for them."""
    stream = ("weekly", cadences.zone_key(config, reader.timezone))
    period = cadences.catch_up_period(slot, reader.id)
    for _attempt in range(3):
        stored = store.issue(period)
        if stored is not None:
            return stored, []
        composed = compose_stream_issue(config, store, now, stream, now, {reader.id: reader}, reading,
                                        mail=("post", period))
        if not composed.recipients:
            return None, composed.problems
        try:
            return store_composed(config, store, composed), composed.problems
        except LedgerClash:
            continue      # a post of it reached them in another mail meanwhile: compose it again
        except StoreError:
            continue      # another process stored it a moment ago: the next turn finds it
    raise StoreError(message("store_issue_kept_changing", store=store.shown, period=period))
