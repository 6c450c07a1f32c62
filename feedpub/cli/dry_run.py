"""`feedpub digest send --dry-run`: everything a real `digest send` would compose or send at this moment, printed
(recipient and subject per line on stdout; which mail they belong to, and who would get nothing, on stderr),
with nothing sent or recorded: no issue, delivery, ledger row or post sighting.

Imported by `feedpub.cli.digest` only when a dry run is asked for (the send modules take 0.3 s to import).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

import click

from feedpub.cli import report, words
from feedpub.config import Config, parse_duration
from feedpub.errors import Problem
from feedpub.records import StoredIssue
from feedpub.send import cadences
from feedpub.send.dispatch import Reading, compose_stream_issue, render_variants, stream_readers
from feedpub.send.issue import Issue, Variant
from feedpub.send.reader_mail import new_sightings, post_recipients, streams_in_use
from feedpub.site.reader import Post
from feedpub.store import Store

log = logging.getLogger("feedpub.send.issue")


class Sighted(Store):
    """The store as `digest send` reads it once it has recorded the posts seen for the first time: a dry run
    records no sighting, yet composes as though it had (a fresh post waits for its post mail, so the digests of
    `post` readers leave it out; a backdated one is news from now)."""

    def __init__(self, store: Store, found: Mapping[str, tuple[str, datetime]]) -> None:
        super().__init__(store.engine, store.shown)
        self.found = {url: (when, state) for url, (state, when) in found.items()}

    def sightings(self, state: str | None = None) -> dict[str, tuple[datetime, str]]:
        merged = {**self.found, **super().sightings()}     # a post seen before keeps its own sighting
        return {url: seen for url, seen in merged.items() if state is None or seen[1] == state}


def print_dry_run(config: Config, store: Store, now: datetime) -> None:
    """Print, in the order `send_due` goes: each stream's digest that is due and not composed yet, the post mails
    whose `digest.post_delay` has passed, the catch-ups of readers who switched to each post's mail, then the rows
    due of every composed issue (any kind, welcomes too)."""
    reading = Reading()
    collection = reading.collect(config, now)
    sighted = Sighted(store, new_sightings(config, store.sightings(), collection.posts, now))
    problems: list[Problem] = list(collection.problems)
    shown: set[int] = set()        # the composed issues whose due rows are printed already
    for stream in streams_in_use(config, store) or [("weekly", "")]:
        kind, zone = stream
        slot = cadences.previous_slot(config, kind, cadences.zone_of(config, zone), now)
        period = cadences.period_key(config, kind, zone, slot)
        _heading(config, kind, zone, period)
        stored = store.issue(period)
        if stored is not None:
            _print_pending(store, stored, now)
            shown.add(stored.id)
            continue
        readers = stream_readers(config, store, stream)
        if not readers:
            log.info("%s", words().text("dry_run_no_readers", period=period))
            continue
        composed = compose_stream_issue(config, sighted, now, stream, slot, readers, reading)
        problems += composed.problems
        if not composed.recipients:
            log.info("%s", words().text("dry_run_no_new_posts", period=period))
            continue
        _print_plan(store, composed.variants, composed.recipients, readers)
    delay = parse_duration(config.digest.post_delay)
    published = {p.url: p for p in collection.posts}
    for seen, url in sorted((seen, url) for url, (seen, _) in sighted.sightings("waiting").items()
                            if seen + delay <= now and url in published):
        period = cadences.post_period(seen + delay, url)
        if store.issue(period) is not None:     # composed by a run that stopped before marking it mailed: its rows
            continue                             # are among the composed issues' below
        problems += _post_mail(config, store, published[url], period, seen + delay, collection.posts, reading)
    for reader, since in store.catching_up(now - delay):
        period = cadences.catch_up_period(since + delay, reader.id)
        if store.issue(period) is not None:
            continue
        zone = cadences.zone_key(config, reader.timezone)
        _heading(config, "post", zone, period)
        composed = compose_stream_issue(config, sighted, now, ("weekly", zone), now, {reader.id: reader}, reading,
                                        mail=("post", period))
        problems += composed.problems
        _print_plan(store, composed.variants, composed.recipients, [reader.id])
    for issue in store.issues():
        if issue.id not in shown and store.count_due(issue.id, now):
            _heading(config, issue.kind, issue.zone, issue.period)
            _print_pending(store, issue, now)
    report(list(dict.fromkeys(problems)))


def _post_mail(config: Config, store: Store, post: Post, period: str, slot: datetime, site_posts: Sequence[Post],
               reading: Reading) -> list[Problem]:
    """The mail of one post, as `send_due_posts` would compose it, printed."""
    click.echo(words().text("dry_run_post_heading", title=post.title, period=period), err=True)
    recipients = post_recipients(config, store, post)
    if not recipients:
        log.info("%s", words().text("dry_run_no_post_readers", period=period))
        return []
    rendered, problems = reading.render(config, [post], site_posts)
    variants = render_variants(config, Issue(period, slot, slot, slot, tuple(rendered), kind="post"),
                               set(recipients.values()))
    _print_plan(store, variants, {sid: key for sid, key in recipients.items() if key in variants}, recipients)
    return problems


def _heading(config: Config, kind: str, zone: str, period: str) -> None:
    click.echo(words().text("dry_run_heading", kind=kind, zone=zone or config.site.timezone, period=period), err=True)


def _print_plan(store: Store, variants: Mapping[str, Variant], recipients: Mapping[int, str],
                readers: Collection[int]) -> None:
    """Each recipient with the subject they would get (stdout); on stderr, the `readers` who would get nothing
    because no new post is in their topics, and the totals."""
    by_id = {s.id: s for s in store.subscribers("active")}
    t = words()
    for sid in sorted(recipients):
        click.echo(f"{by_id[sid].email}\t{variants[recipients[sid]].subject}")
    for sid in sorted(set(readers) - recipients.keys()):
        subscriber = by_id[sid]
        if subscriber.topics:
            click.echo(t.text("dry_run_nothing_for", email=subscriber.email, topics=", ".join(subscriber.topics)),
                       err=True)
        else:
            click.echo(t.text("dry_run_nothing_new", email=subscriber.email), err=True)
    used = set(recipients.values())
    click.echo(t.text("dry_run_plan", recipients=t.count("recipients", len(recipients)),
                      variants=t.count("variants", len(used))), err=True)


def _print_pending(store: Store, issue: StoredIssue, now: datetime) -> None:
    subjects = {v.key: v.subject for v in store.variants(issue.id)}
    rows = store.due_deliveries(issue.id, now)
    for row in rows:
        click.echo(f"{row.email}\t{subjects[row.variant_key]}")
    t = words()
    click.echo(t.text("dry_run_pending", period=issue.period, deliveries=t.count("deliveries", len(rows))), err=True)
