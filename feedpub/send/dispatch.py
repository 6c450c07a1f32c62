"""The digest that is due: compose it once, queue a delivery per reader, deliver what is unsent.

Shared by `feedpub digest send` (cron or by hand) and the daemon's scheduled jobs (the issue on its slot,
deferred rows when their retry time comes). Whether an issue went out is the store's truth: a second
run, a second process or a restart only resumes unsent rows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime, timedelta

from feedpub import holds
from feedpub.config import Config
from feedpub.counts import counted
from feedpub.errors import Problem
from feedpub.records import Delivery, StoredIssue, StoredVariant
from feedpub.send import archive, archive_sync, delivery, messages
from feedpub.send.issue import Issue, Variant, compose, covers, due_slot, entries, render_variant, variant_key
from feedpub.site.markup import RenderedPost, render_posts
from feedpub.site.posts import Collection, collect
from feedpub.site.reader import Post
from feedpub.store import Store, StoreError

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
    note: str                          # one line for the log when nothing was sent


def send_due_issue(config: Config, store: Store, now: datetime, *, stop: threading.Event | None = None,
                   on_outcome: Callable[[delivery.Outcome], None] | None = None,
                   missed_after: timedelta | None = None, send: bool = True) -> Dispatch:
    """Compose the issue of the latest scheduled slot unless it exists, then deliver its due rows
    (with `send=False`, only queue them for `feedpub worker` processes).

    With `missed_after` (the daemon's misfire grace), a slot that passed longer ago and was never
    composed is skipped: its posts go into the next issue instead of a stale one going out now.
    """
    period, slot = due_slot(config, now)
    stored = store.issue(period)
    problems: list[Problem] = []
    if stored is None:
        if missed_after is not None and now - slot > missed_after:
            return Dispatch(period, None, None, (), f"issue {period} was due {_ago(now - slot)} ago, beyond "
                            f"digest.misfire_grace; skipped (its posts go into the next issue)")
        recipients = active_recipients(store)
        if not recipients:   # composing now would use up the slot before anyone could receive it
            return Dispatch(period, None, None, (), f"issue {period}: no active subscribers; nothing composed")
        issue, problems = compose_due_issue(config, store, now)
        if not issue.posts:
            return Dispatch(period, None, None, tuple(problems), f"issue {period}: no posts published from "
                            f"{_shown(config, issue.starts)} to {_shown(config, issue.ends)}; nothing to send")
        variants = render_variants(config, issue, {"", *recipients.values()})
        queued = {sid: key for sid, key in recipients.items() if key in variants}
        try:
            stored = store.create_issue(period=period, slot=slot, starts=issue.starts, ends=issue.ends,
                                        recipients=queued, variants=[_stored(v) for v in variants.values()],
                                        archived=[archive.record(e) for e in entries(config, issue.posts)],
                                        carried=[r.post.url for r in issue.posts])
        except StoreError:
            stored = store.issue(period)   # another process composed it a moment ago: resume that one
            if stored is None:
                raise
        archive_sync.refresh(config, store)
        log.info("issue %s: %s, %s", period, counted(len(issue.posts), "post"), counted(len(queued), "recipient"))
    hold = holds.state(store, stored.id)
    if hold is not None:
        why = holds.reasons(store).get(period)
        state = f"{hold} by the circuit breaker: {why}" if why else hold
        resume = f" (`feedpub digest resume {period}` sends the rest)" if hold == "paused" else ""
        return Dispatch(period, stored, None, tuple(problems), f"issue {period} is {state}; nothing sent{resume}")
    if not send:
        return Dispatch(period, stored, None, tuple(problems), f"issue {period}: queued; "
                        "digest.send_in_daemon = false, so `feedpub worker` processes send it")
    summary = delivery.deliver(config, store, stored, Messages(config, store), stop=stop or threading.Event(),
                               on_outcome=on_outcome)
    return Dispatch(period, stored, summary, tuple(problems), "")


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


def coverage(config: Config, store: Store, slot: datetime) -> Coverage:
    """Where the issue of `slot` starts: the previous issue's end, reaching LATE_REACH further back for
    posts no issue carried, but never before the first issue's window: the first issue covers
    `digest.first_issue_days` before its slot, and what came before is the archive, not late posts."""
    issues = store.issues()
    if not issues:
        starts = slot - timedelta(days=config.digest.first_issue_days)
        return Coverage(starts, starts, {})
    latest = store.latest_issue()
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


def covered_posts(config: Config, collection: Collection, starts: datetime, ends: datetime, *,
                  reach: datetime | None = None,
                  carried: AbstractSet[str] = frozenset()) -> tuple[list[RenderedPost], list[Problem]]:
    """The posts of `collection` an issue covering (starts, ends] can hold, rendered; with the warnings met.
    Only those are rendered (a large site would otherwise render every post it has); `{% post_url %}` still
    resolves against all of them."""
    covered = sorted((p for p in collection.posts if covers(p.date, p.url, starts, ends, reach, carried)),
                     key=lambda p: p.date, reverse=True)
    return render_posts(config, covered[:config.digest.max_posts], site_posts=collection.posts)


def active_recipients(store: Store) -> dict[int, str]:
    """Active, unsuppressed subscribers → the variant key of their topics."""
    return {sid: variant_key(topics) for sid, topics in store.active_recipients().items()}


def render_variants(config: Config, issue: Issue, keys: Iterable[str]) -> dict[str, Variant]:
    """Each variant once; keys whose topics match no post are left out (those readers get nothing)."""
    rendered = {key: render_variant(config, issue, key) for key in sorted(keys)}
    return {key: variant for key, variant in rendered.items() if variant is not None}


def stored_variant(store: Store, issue: StoredIssue, key: str) -> Variant | None:
    found = [v for v in store.variants(issue.id) if v.key == key]
    return Variant(key, found[0].subject, found[0].html, found[0].text) if found else None


def _stored(variant: Variant) -> StoredVariant:
    return StoredVariant(variant.key, variant.subject, variant.html, variant.text)


def _shown(config: Config, moment: datetime) -> str:
    return moment.astimezone(config.site.tz).isoformat(timespec="minutes")


def _ago(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"
