"""The digest that is due: compose it once, queue a delivery per reader, deliver what is unsent.

Shared by `feedpub digest send` (cron or by hand) and the daemon's scheduled jobs (the issue on its slot,
deferred rows when their retry time comes). Whether an issue went out is the store's truth: a second
run, a second process or a restart only resumes unsent rows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from feedpub import holds
from feedpub.config import Config
from feedpub.errors import Message, Problem, message
from feedpub.records import ActiveReader, Delivery, StoredIssue, StoredVariant
from feedpub.send import archive, archive_sync, cadences, delivery, messages
from feedpub.send.issue import (
    Issue,
    Variant,
    compose,
    covered_posts,
    covers,
    due_slot,
    entries,
    render_variant,
    variant_key,
)
from feedpub.site.markup import CachedRender, RenderedPost, render_posts
from feedpub.site.posts import Collection, FileEntry, collect
from feedpub.site.reader import Post
from feedpub.store import LedgerClash, Store, StoreError

log = logging.getLogger("feedpub.send.issue")

# How far before its window an issue still takes a post no issue carried (backdated, or saved after its
# window's issue went out): weeks, not the whole archive (a URL changed long ago is no new post).
LATE_REACH = timedelta(days=30)


@dataclass(frozen=True)
class Dispatch:
    period: str
    issue: StoredIssue | None          # None: nothing composed (no new posts, or the slot was missed)
    summary: delivery.Summary | None
    problems: tuple[Problem, ...]      # met while reading posts
    note: Message | None               # when nothing was sent, why (cli/strings.toml's `note_…` words)
    composed: Message | None = None    # the issue was composed in this run: its posts and recipients


def send_due_issue(config: Config, store: Store, now: datetime, *, stop: threading.Event | None = None,
                   on_outcome: Callable[[delivery.Outcome], None] | None = None,
                   missed_after: timedelta | None = None, send: bool = True,
                   stream: tuple[str, str] = ("weekly", ""), reading: Reading | None = None) -> Dispatch:
    """Compose the issue of the latest slot of a stream of digests (cadence, zone: "" the site's) unless it
    exists, then deliver its due rows (with `send=False`, only queue them for `feedpub worker` processes).

    With `missed_after` (the daemon's misfire grace), a slot that passed longer ago and was never
    composed is skipped: its posts go into the next issue instead of a stale one going out now.
    """
    kind, zone = stream
    slot = cadences.previous_slot(config, kind, cadences.zone_of(config, zone), now)
    period = cadences.period_key(config, kind, zone, slot)
    stored = store.issue(period)
    problems: list[Problem] = []
    if stored is None:
        if missed_after is not None and now - slot > missed_after:
            return Dispatch(period, None, None, (), message("note_missed", period=period, ago=_ago(now - slot)))
        readers = stream_readers(config, store, stream)
        if not readers:   # composing now would use up the slot before anyone could receive it
            return Dispatch(period, None, None, (), message("note_no_subscribers", period=period))
        for _attempt in range(3):
            composed = compose_stream_issue(config, store, now, stream, slot, readers, reading)
            problems = composed.problems
            if not composed.recipients:
                return Dispatch(period, None, None, tuple(problems), message(
                    "note_no_posts", period=period, start=_shown(config, composed.starts), end=_shown(config, slot)))
            try:
                stored = store_composed(config, store, composed)
                break
            except LedgerClash:
                continue     # a reader got one of its posts in another mail meanwhile: compose it again
            except StoreError:
                stored = store.issue(period)   # another process composed it a moment ago: resume that one
                if stored is None:
                    raise
                break
        else:
            raise StoreError(message("store_issue_kept_changing", store=store.shown, period=period))
        if stream == ("weekly", ""):    # the archive's issues
            archive_sync.refresh(config, store)
        composed_words = message("note_composed", period=period,
                                 posts=message("count_posts", count=len(composed.carried)),
                                 recipients=message("count_recipients", count=len(composed.recipients)))
    else:
        composed_words = None
    hold = holds.state(store, stored.id)
    if hold is not None:
        why = holds.reasons(store).get(period)
        note = message(f"note_{hold}_by_breaker" if why else f"note_{hold}", period=period, reason=why or "")
        return Dispatch(period, stored, None, tuple(problems), note, composed_words)
    if not send:
        return Dispatch(period, stored, None, tuple(problems), message("note_queued", period=period), composed_words)
    summary = delivery.deliver(config, store, stored, Messages(config, store), stop=stop or threading.Event(),
                               on_outcome=on_outcome)
    return Dispatch(period, stored, summary, tuple(problems), None, composed_words)


def stream_readers(config: Config, store: Store, stream: tuple[str, str]) -> dict[int, ActiveReader]:
    """The active readers a stream of digests mails: those of its cadence in its zone, and for the weekly
    one, the `post` readers of that zone too (it carries what their post mails do not: backdated posts,
    bulk imports)."""
    kind, zone = stream
    takers = {kind, "post"} if kind == "weekly" else {kind}
    timezones = [zone] if zone else ["", config.site.timezone]
    return {reader.id: reader for reader in store.active_readers(takers, timezones)}


@dataclass
class Reading:
    """What reading and rendering the posts gave, for the next issue to reuse while the files and their render
    keys are unchanged: a day of slots in 30 zones reads and renders each post once, not once per slot."""

    entries: dict[str, FileEntry] = field(default_factory=dict)
    renders: dict[str, CachedRender] = field(default_factory=dict)

    def collect(self, config: Config, now: datetime) -> Collection:
        found = collect(config, now=now, known=self.entries)
        self.entries = dict(found.entries)
        return found

    def render(self, config: Config, posts: Sequence[Post],
               site_posts: Sequence[Post]) -> tuple[list[RenderedPost], list[Problem]]:
        shown = {post.url for post in site_posts}
        self.renders = {url: found for url, found in self.renders.items() if url in shown}   # none unpublished
        return render_posts(config, posts, site_posts=site_posts, cache=self.renders)


@dataclass(frozen=True)
class Composed:
    """An issue ready to store: its variants, who gets which, and which posts each variant carries."""

    kind: str
    zone: str
    period: str
    slot: datetime
    starts: datetime
    variants: dict[str, Variant]
    recipients: dict[int, str]               # subscriber id → variant key
    variant_posts: dict[str, tuple[str, ...]]  # variant key → post URLs
    carried: tuple[RenderedPost, ...]        # every post some variant carries, newest first
    problems: list[Problem]


def compose_stream_issue(config: Config, store: Store, now: datetime, stream: tuple[str, str], slot: datetime,
                         readers: Mapping[int, ActiveReader], reading: Reading | None = None, *,
                         mail: tuple[str, str] | None = None) -> Composed:
    """The issue of `slot` for each reader of a stream: the posts of their topics dated by its slot that became
    news in their window (`cadences.appeared`: a backdated post when it appeared), none they got already (the
    ledger), composed once per variant (topics and the set of posts). A reader's
    window starts at the stream's previous issue (the first: one period back), reaching LATE_REACH further
    for posts no mail brought them, never before the earliest window a mail to them covered (none yet: the
    stream's window, or from when they joined if that was before it, LATE_REACH at most). With `mail` (kind,
    period), what the stream's issue would bring them now is composed as that mail instead (a catch-up)."""
    kind, zone = stream
    found = coverage(config, store, slot, stream)
    reading = reading or Reading()
    collection = reading.collect(config, now)
    seen = store.sightings()
    news = {p.url: cadences.appeared(p.date, seen[p.url][0] if p.url in seen else None) for p in collection.posts}
    floor = found.starts - LATE_REACH     # no reader's window reaches further back
    candidates = [p for p in collection.posts if p.date <= slot and news[p.url] > floor]
    got = store.readers_got([p.url for p in candidates], readers)
    since = store.first_windows(readers)
    waiting = {url for url, (_, state) in seen.items() if state == "waiting"}
    # A reader some mail reached takes what they did not get since its window began, back to the stream's reach;
    # a stream with no issue yet reaches LATE_REACH back, not just to its first window: a reader who moved to it
    # would lose the posts between their last mail and that window when its first slot passed unsent.
    reach = found.reach if store.latest_issue(stream) is not None else floor
    topics_of = {p.url: cadences.post_topics(config, p) for p in candidates}
    newest_first = sorted(candidates, key=lambda p: (p.date, p.url), reverse=True)
    chosen: dict[int, tuple[str, tuple[str, ...]]] = {}
    takes: dict[tuple[str, ...], frozenset[str]] = {}    # topics → the candidates they take (few distinct sets)
    # (topics, window start, posts got, takes post mail) → the posts: readers alike get the same, computed once
    picked: dict[tuple[tuple[str, ...], datetime, frozenset[str], bool], tuple[str, ...]] = {}
    for sid, reader in readers.items():
        if reader.topics not in takes:
            takes[reader.topics] = frozenset(url for url, in_topics in topics_of.items()
                                             if cadences.wanted(reader.topics, in_topics))
        theirs = takes[reader.topics]
        # A reader no digest reached yet takes the stream's window, and the posts since they joined before it
        # (a slot missed, or a stream new to them), LATE_REACH at most.
        lower = max(reach, since[sid]) if sid in since else max(floor, min(found.starts, reader.joined))
        mine = frozenset(got.get(sid, ()))
        pick = (reader.topics, lower, mine, reader.cadence == "post")
        if pick not in picked:
            picked[pick] = tuple(p.url for p in newest_first
                                 if news[p.url] > lower and p.url not in mine and p.url in theirs
                                 and not (pick[3] and p.url in waiting))[:config.digest.max_posts]
        urls = picked[pick]
        if urls:
            chosen[sid] = (variant_key(reader.topics), urls)
    keys = cadences.variant_keys(chosen.values())
    carried_urls = {url for _, urls in chosen.values() for url in urls}
    rendered, warnings = reading.render(config, [p for p in newest_first if p.url in carried_urls],
                                        collection.posts)
    by_url = {r.post.url: r for r in rendered}
    kind, period = mail or (kind, cadences.period_key(config, kind, zone, slot))
    variants: dict[str, Variant] = {}
    for (topics_key, urls), key in keys.items():
        posts = tuple(by_url[url] for url in urls if url in by_url)
        variant = render_variant(config, Issue(period, slot, found.starts, slot, posts, kind, zone), topics_key)
        if variant is not None:
            variants[key] = Variant(key, variant.subject, variant.html, variant.text)
    recipients = {sid: keys[choice] for sid, choice in chosen.items() if keys[choice] in variants}
    variant_posts = {key: urls for (_, urls), key in keys.items() if key in variants}
    carried = tuple(r for r in rendered if any(r.post.url in variant_posts[recipients[sid]] for sid in recipients))
    return Composed(kind, zone, period, slot, found.starts, variants, recipients, variant_posts, carried,
                    [*collection.problems, *warnings])


def store_composed(config: Config, store: Store, composed: Composed) -> StoredIssue:
    """Store a composed issue with its deliveries and ledger rows; only the weekly digests of the site's zone
    are the public archive's issues."""
    public = (composed.kind, composed.zone) == ("weekly", "")
    return store.create_issue(
        period=composed.period, slot=composed.slot, starts=composed.starts, ends=composed.slot,
        recipients=composed.recipients, variants=[as_stored(v) for v in composed.variants.values()],
        archived=[archive.record(e) for e in entries(config, composed.carried)] if public else (),
        carried=[r.post.url for r in composed.carried], kind=composed.kind, zone=composed.zone,
        variant_posts=composed.variant_posts, dated={r.post.url: r.post.date for r in composed.carried})


def send_due_retries(config: Config, store: Store, now: datetime, *,
                     stop: threading.Event) -> delivery.Summary | None:
    """Deliver the rows of any issue that are due: deferred rows whose retry time has come, and the
    unsent rows of an issue resumed after a pause (or left by a run that stopped); None when none is
    due (the daemon asks often: that costs two queries)."""
    retry_at = store.next_retry()
    if (retry_at is None or retry_at > now) and not store.count_due(None, now):
        return None
    return delivery.deliver(config, store, None, Messages(config, store), stop=stop)


class Messages:
    """The message for any delivery row: each issue's variant templates are built once, on first use, so a
    worker sending rows of several issues builds each skeleton once."""

    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store
        self._issues: dict[int, Callable[[Delivery], bytes]] = {}
        self._lock = threading.Lock()

    def __call__(self, row: Delivery) -> bytes:
        with self._lock:
            if row.issue_id not in self._issues:
                self._issues[row.issue_id] = self._load(row.issue_id)
            message_for = self._issues[row.issue_id]
        return message_for(row)

    def _load(self, issue_id: int) -> Callable[[Delivery], bytes]:
        period = self.store.issue_period(issue_id)
        templates = {v.key: messages.message_template(self.config, Variant(v.key, v.subject, v.html, v.text),
                                                        period=period)
                     for v in self.store.variants(issue_id)}
        return delivery.personalised(self.config, period, templates)


@dataclass(frozen=True)
class Coverage:
    """What the next issue takes: the posts dated in (starts, its slot], and the late ones, dated in
    (reach, starts], that no issue carried."""

    starts: datetime
    reach: datetime
    carried: dict[str, str]            # post URL → the period of the issue that carried it


def coverage(config: Config, store: Store, slot: datetime, stream: tuple[str, str] = ("weekly", "")) -> Coverage:
    """Where the issue of `slot` of a stream of digests starts: the previous issue's end, reaching LATE_REACH
    further back for posts no issue carried, but never before the first issue's window: the first issue
    covers one period before its slot (`digest.first_issue_days` for weekly), and what came before is the
    archive, not late posts."""
    issues = store.issues(stream)
    if not issues:
        starts = cadences.first_window(config, stream[0], cadences.zone_of(config, stream[1]), slot)
        return Coverage(starts, starts, {})
    latest = store.latest_issue(stream)
    assert latest is not None
    reach = max(latest.ends - LATE_REACH, min(issue.starts for issue in issues))
    carried, unknown = store.carried_since(reach)
    return Coverage(latest.ends, max(reach, unknown) if unknown else reach, carried)


def late_posts(config: Config, store: Store, posts: Iterable[Post], now: datetime) -> list[tuple[Post, str]]:
    """The posts the next issue takes though they are dated into a window an issue already covered, each
    with the period of that issue (it went out without them), oldest first."""
    found = coverage(config, store, due_slot(config, now)[1])
    late = sorted((p for p in posts if covers(p.date, p.url, found.starts, found.starts, found.reach, found.carried)),
                  key=lambda p: p.date)
    windows = store.issues()
    return [(post, next((i.period for i in windows if i.starts < post.date <= i.ends), windows[-1].period))
            for post in late]


def compose_due_issue(config: Config, store: Store, now: datetime) -> tuple[Issue, list[Problem]]:
    """The issue of the slot due at `now`, as `send_due_issue` composes it: it covers (the previous
    issue's end, its slot] and the late posts no issue carried; a post dated after the slot goes into
    the next issue."""
    _, slot = due_slot(config, now)
    found = coverage(config, store, slot)
    return compose_issue(config, now, found.starts, slot, reach=found.reach, carried=found.carried.keys())


def compose_issue(config: Config, now: datetime, starts: datetime, ends: datetime, *, reach: datetime | None = None,
                  carried: AbstractSet[str] = frozenset()) -> tuple[Issue, list[Problem]]:
    """The issue of the slot due at `now`, covering (starts, ends] (and late posts back to `reach` not in
    `carried`); with the problems met reading posts."""
    collection = collect(config, now=now)
    rendered, warnings = covered_posts(config, collection, starts, ends, reach=reach, carried=carried)
    period, slot = due_slot(config, now)
    issue = compose(config, rendered, period=period, slot=slot, starts=starts, ends=ends, reach=reach, carried=carried)
    return issue, [*collection.problems, *warnings]


def render_variants(config: Config, issue: Issue, keys: Iterable[str]) -> dict[str, Variant]:
    """Each variant once; keys whose topics match no post are left out (those readers get nothing)."""
    rendered = {key: render_variant(config, issue, key) for key in sorted(keys)}
    return {key: variant for key, variant in rendered.items() if variant is not None}


def stored_variant(store: Store, issue: StoredIssue, key: str) -> Variant | None:
    found = [v for v in store.variants(issue.id) if v.key == key]
    return Variant(key, found[0].subject, found[0].html, found[0].text) if found else None


def as_stored(variant: Variant) -> StoredVariant:
    return StoredVariant(variant.key, variant.subject, variant.html, variant.text)


def _shown(config: Config, moment: datetime) -> str:
    return moment.astimezone(config.site.tz).isoformat(timespec="minutes")


def _ago(delta: timedelta) -> Message:
    hours = delta.total_seconds() / 3600
    return message("hours", hours=f"{hours:.1f}") if hours < 48 else message("days", days=f"{hours / 24:.1f}")
