"""`feedpub digest preview|send|status`: compose the issue that is due, queue a delivery per reader, deliver it.

The send modules are imported inside the commands: with sqlalchemy they take 0.3 s, which `feedpub --help`
and `feedpub build` would otherwise pay too (measured with `python -X importtime -m feedpub --help`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from feedpub.cli import FAILED, OK, PARTIAL, App, error_text, fail, recipient_line, report, say, words
from feedpub.cli.subscribers import _table, open_store_or_fail, valid_address_or_fail
from feedpub.errors import ConfigError, FeedpubError
from feedpub.files import write_atomic
from feedpub.records import CADENCES, DELIVERY_STATUSES, MAIL_KINDS, ActiveReader
from feedpub.zones import known_zone

if TYPE_CHECKING:
    from feedpub.config import Config
    from feedpub.errors import Problem
    from feedpub.send.dispatch import Dispatch
    from feedpub.send.issue import Variant
    from feedpub.store import Store

log = logging.getLogger("feedpub.send.issue")

# Beside the store, out of the published folder the daemon serves.
PREVIEW = ".feedpub/preview/index.html"


@click.group()
def digest() -> None:
    """Compose, preview and send the e-mail digest."""


@digest.command()
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]),
              help="Cover posts after this time (site.timezone; default: the end of the last issue).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help=f"HTML file to write (default {PREVIEW} in the config file's folder); the text goes beside it.")
@click.option("--cadence", type=click.Choice(CADENCES), default=None,
              help="The next mail of a reader of this cadence (one of digest.cadences), with every topic, instead "
                   "of the public copy of the weekly issue.")
@click.option("--tz", "zone", default=None, metavar="ZONE",
              help="With --cadence: the reader's IANA time zone (default site.timezone).")
@click.pass_obj
def preview(app: App, since: datetime | None, output: Path | None, cadence: str | None, zone: str | None) -> None:
    """Render the next issue to an .html and a .txt file; send nothing."""
    from feedpub.send.dispatch import compose_issue, coverage  # lazy: 0.3 s, see the module docstring
    from feedpub.send.issue import due_slot, public_copy

    config = app.config
    if cadence is not None or zone is not None:
        _preview_reader_mail(app, output, cadence, zone, since)
    with _user_errors():
        now = datetime.now(UTC)
        if since:
            starts = since.replace(tzinfo=config.site.tz)
            issue, problems = compose_issue(config, now, starts, now)
        else:
            found = coverage(config, open_store_or_fail(app, migrate=False), due_slot(config, now)[1])
            starts = found.starts
            issue, problems = compose_issue(config, now, starts, now, reach=found.reach, carried=found.carried.keys())
        report(problems)
        if not issue.posts:
            log.info("%s", words().text("preview_nothing_since", since=starts.astimezone(config.site.tz).isoformat(
                timespec="minutes")))
            raise SystemExit(OK)
        copy = public_copy(config, issue)
    _write_preview(config, output, copy, len(issue.posts))


def _write_preview(config: Config, output: Path | None, copy: Variant, posts: int) -> NoReturn:
    target = output or config.path(PREVIEW)
    write_atomic(target, copy.html.encode("utf-8"))
    write_atomic(target.with_suffix(".txt"), copy.text.encode("utf-8"))
    t = words()
    click.echo(t.text("preview", path=target, posts=t.count("posts", posts), subject=copy.subject))
    click.echo(target.with_suffix(".txt"))
    raise SystemExit(OK)


def _preview_reader_mail(app: App, output: Path | None, cadence: str | None, zone: str | None,
                         since: datetime | None) -> NoReturn:
    """`preview --cadence K --tz Z`: the next mail of such a reader (`_next_reader_mail`), their own links
    become the generic pages' links."""
    from feedpub.send.issue import PREFERENCES_MARKER, UNSUBSCRIBE_MARKER  # lazy: 0.3 s, see the module docstring

    config = app.config
    if since is not None:
        fail(words().text("since_not_with_cadence"))
    cadence = _offered_or_fail(config, cadence, zone)
    store = open_store_or_fail(app, migrate=False)
    with _user_errors():
        _, variant, posts = _next_reader_mail(config, store, cadence, zone, datetime.now(UTC))
    base = config.web.public_url.rstrip("/")
    generic = {UNSUBSCRIBE_MARKER: f"{base}/unsubscribe", PREFERENCES_MARKER: f"{base}/preferences"}
    html, text = variant.html, variant.text
    for marker, url in generic.items():
        html, text = html.replace(marker, url), text.replace(marker, url)
    _write_preview(config, output, replace(variant, html=html, text=text), posts)


def _offered_or_fail(config: Config, cadence: str | None, zone: str | None) -> str:
    """The cadence of `--cadence K [--tz Z]`; exit 2 for one the site does not offer or a zone that does not exist."""
    if cadence is None:
        fail(words().text("tz_needs_cadence"))
    if cadence not in config.digest.cadences:
        fail(words().text("option_cadence_not_offered", cadence=cadence, offered=", ".join(config.digest.cadences)))
    if zone is not None and not known_zone(zone):
        fail(words().text("option_unknown_zone", option="--tz", zone=repr(zone)))
    return cadence


def _next_reader_mail(config: Config, store: Store, cadence: str, zone: str | None,
                      now: datetime) -> tuple[str, Variant, int]:
    """What a reader of `cadence` in `zone` who follows every topic gets next: (its period, the mail, how many
    posts) — the next digest of their stream (its posts since that stream's last issue), or for `post` the next
    post's mail (the post waiting longest for it, else the newest). Exits 0, saying so, when there is none."""
    from feedpub.send import cadences  # lazy: 0.3 s, see the module docstring
    from feedpub.send.dispatch import compose_stream_issue
    from feedpub.send.issue import Issue, render_variant
    from feedpub.site.markup import render_posts
    from feedpub.site.posts import collect

    key = cadences.zone_key(config, zone or "")
    if cadence == "post":
        collection = collect(config, now=now)
        report(list(collection.problems))
        waiting = store.sightings("waiting")
        published = sorted(collection.posts, key=lambda p: (0, waiting[p.url][0].timestamp()) if p.url in waiting
                           else (1, -p.date.timestamp()))
        if not published:
            log.info("%s", words().text("preview_no_post"))
            raise SystemExit(OK)
        rendered, problems = render_posts(config, published[:1], site_posts=collection.posts)
        report(problems)
        period = cadences.post_period(now, published[0].url)
        variant = render_variant(config, Issue(period, now, now, now, tuple(rendered), kind="post", zone=key), "")
        posts = len(rendered)
    else:
        slot = cadences.next_slot(config, cadence, cadences.zone_of(config, zone or ""), now)
        # A reader of no topic in particular (every post), joining now: no mail reached them yet.
        reader = ActiveReader(0, (), cadence, zone or "", now)
        composed = compose_stream_issue(config, store, now, (cadence, key), slot, {0: reader})
        report(composed.problems)
        period = composed.period
        variant = next(iter(composed.variants.values()), None)
        posts = len(next(iter(composed.variant_posts.values()), ()))
    if variant is None:
        log.info("%s", words().text("preview_no_post_for", cadence=cadence, zone=zone or config.site.timezone))
        raise SystemExit(OK)
    return period, variant, posts


@digest.command()
@click.option("--dry-run", is_flag=True,
              help="Print what would be composed and sent now, recipient and subject per line: every stream's digest "
                   "that is due, the post mails, the rows of composed issues still to send; send and record nothing.")
@click.option("--to", "to_email", metavar="EMAIL", help="Send one test copy marked [TEST] here; record nothing.")
@click.option("--force", is_flag=True, help="With --to: send even to an address that unsubscribed or is suppressed.")
@click.option("--cadence", type=click.Choice(CADENCES), default=None,
              help="With --to: the next mail of a reader of this cadence (one of digest.cadences), with every topic, "
                   "instead of the weekly issue that is due.")
@click.option("--tz", "zone", default=None, metavar="ZONE",
              help="With --to and --cadence: the reader's IANA time zone (default site.timezone).")
@click.pass_obj
def send(app: App, dry_run: bool, to_email: str | None, force: bool, cadence: str | None, zone: str | None) -> None:
    """Compose the mail that is due (every cadence and time zone readers chose) and deliver it; a rerun resumes
    only unsent rows."""
    from feedpub.cli.dry_run import print_dry_run  # lazy: 0.3 s, see the module docstring
    from feedpub.send.reader_mail import send_due

    config = app.config
    if (cadence is not None or zone is not None) and not to_email:
        fail(words().text("cadence_needs_to"))
    if to_email and (cadence is not None or zone is not None):
        cadence = _offered_or_fail(config, cadence, zone)
    store = open_store_or_fail(app)
    now = datetime.now(UTC)
    with _user_errors():
        if not dry_run:
            config.web.secret()          # missing secrets are exit 2 before anything is composed
            config.smtp.password()
        if to_email:
            _send_test_copy(config, store, now, to_email, force=force, cadence=cadence, zone=zone)
        if dry_run:
            print_dry_run(config, store, now)
            raise SystemExit(OK)
        due = _due_count(config, store, now)
        with _progress(due) as advance:
            results = send_due(config, store, now, on_outcome=advance)
    problems = list(dict.fromkeys(p for result in results for p in result.problems))
    report(problems)
    partial = _errors(problems)
    for result in results:
        partial = _said(config, store, result) or partial
    raise SystemExit(PARTIAL if partial else OK)


def _said(config: Config, store: Store, result: Dispatch) -> bool:
    """What one issue's run did, on stderr; whether some of it failed or was paused."""
    if result.composed is not None:
        log.info("%s", result.composed)     # in site.language: feedpub.cli.LogWords
    if result.summary is None:
        log.info("%s", result.note)
        return False
    summary, stored = result.summary, result.issue
    assert stored is not None
    for outcome in summary.problems:     # a deferred row is tried again: with -q only the failed ones are shown
        (click.echo if outcome.status == "failed" else say)(recipient_line(words(), outcome), err=True)
    counts = store.counts(stored.id)
    waiting = counts["queued"] + counts["deferred"] + counts["sending"]
    retry = store.next_retry(stored.id)
    t = words()
    say(t.text("send_summary", period=result.period, sent=summary.sent, deferred=summary.deferred,
               failed=summary.failed, skipped=t.count("send_skipped", summary.skipped) if summary.skipped else "",
               stopped=t.text("send_stopped") if summary.stopped else "", sent_total=counts["sent"],
               total=sum(counts.values()), waiting=t.count("send_waiting", waiting) if waiting else "",
               retry=t.text("send_retry", when=f"{retry.astimezone(config.site.tz):%Y-%m-%d %H:%M %Z}") if retry
               else ""))
    problems = click.get_current_context().find_object(App).problems
    for why in summary.paused:
        click.echo(t.text("send_paused", reason=problems.message(why), period=result.period), err=True)
    return bool(summary.failed or summary.paused)


def _send_test_copy(config: Config, store: Store, now: datetime, to_email: str, *, force: bool,
                    cadence: str | None, zone: str | None) -> NoReturn:
    """One copy marked [TEST] of the weekly issue that is due (as composed, or as it would be), or with `cadence`
    of the next mail of a reader of it in `zone` (`_next_reader_mail`, as `preview --cadence` shows it)."""
    from feedpub.send import messages, smtp
    from feedpub.send.dispatch import compose_due_issue, render_variants, stored_variant  # lazy: 0.3 s
    from feedpub.send.issue import due_slot

    address = valid_address_or_fail(to_email)
    if not force:
        _refuse_unwilling(store, address)
    if cadence is not None:
        period, variant, _ = _next_reader_mail(config, store, cadence, zone, now)
    else:
        period, _ = due_slot(config, now)
        stored = store.issue(period)
        found = stored_variant(store, stored, "") if stored else None
        if found is None:
            issue, problems = compose_due_issue(config, store, now)
            report(problems)
            found = render_variants(config, issue, [""]).get("")
        if found is None:
            log.info("%s", words().text("test_no_new_posts", period=period))
            raise SystemExit(OK)
        variant = found
    subscriber = store.subscriber(address)
    message = messages.test_copy(config, variant, period, address, subscriber.id if subscriber else None)
    try:
        reply = smtp.send_one(config, message, address)
    except (smtp.Refused, OSError) as exc:     # OSError covers smtplib.SMTPException
        click.echo(words().text("test_not_sent", address=address, reason=str(exc)), err=True)
        raise SystemExit(PARTIAL) from exc
    click.echo(words().text("test_sent", period=period, address=address, reply=reply))
    raise SystemExit(OK)


def _refuse_unwilling(store: Store, address: str) -> None:
    """Exit 2 for an address that asked for no more mail or whose server refused it."""
    subscriber = store.subscriber(address)
    if subscriber is not None and subscriber.status == "unsubscribed":
        fail(words().text("test_refused_unsubscribed", address=address))
    suppression = store.suppression(address)
    if suppression is not None:
        fail(words().text("test_refused_suppressed", address=address, reason=suppression.reason))


def _due_count(config: Config, store: Store, now: datetime) -> int:
    """How many rows an existing issue still has to send (for the progress bar's length)."""
    from feedpub.send.issue import due_slot  # lazy: 70 ms

    stored = store.issue(due_slot(config, now)[0])
    return store.count_due(stored.id, now) if stored else 0


@digest.command()
@click.option("--kind", type=click.Choice(MAIL_KINDS), default=None, help="Only the mails of this kind.")
@click.pass_obj
def status(app: App, kind: str | None) -> None:
    """List issues (every mail: each post's, the daily, weekly and monthly digests of each time zone, the
    welcomes) with their kind and queued / sent / deferred / failed counts, and the deliveries that bounced or
    were complained about later."""
    from feedpub.send.bounces.evidence import per_issue  # lazy: 0.3 s, see the module docstring

    store = open_store_or_fail(app, migrate=False)
    tz = app.config.site.tz
    from feedpub import holds  # lazy: sqlalchemy, see the module docstring

    held = holds.states(store)
    returned = per_issue(store)
    # The counts stay the last columns, where scripts read them; HOLD is "paused", "cancelled" or "-"; ZONE is
    # the readers' time zone, "-" for the site's.
    rows = [[app.strings.text(f"column_{name}") for name in (
        "issue", "kind", "zone", "covers", "hold", "cancelled", "queued", "sending", "sent", "deferred", "failed",
        "bounced", "complained")]]
    every_count = store.counts_of_issues()
    none = dict.fromkeys(DELIVERY_STATUSES, 0)
    for issue in store.issues():
        if kind is not None and issue.kind != kind:
            continue
        counts = every_count.get(issue.id, none)
        covers = f"{issue.starts.astimezone(tz):%Y-%m-%d %H:%M} – {issue.ends.astimezone(tz):%Y-%m-%d %H:%M}"
        rows.append([issue.period, issue.kind, issue.zone or "-", covers, held.get(issue.id, "-"),
                     *(str(counts[s]) for s in ("cancelled", "queued", "sending", "sent", "deferred", "failed")),
                     *(str(n) for n in returned.get(issue.id, (0, 0)))])
    if len(rows) == 1:
        click.echo(words().text("no_issues"))
        return
    _table(rows[1:], rows[0])
    # Below the table, on stderr: scripts read the rows.
    for period, reason in holds.reasons(store).items():
        click.echo(words().text("status_paused", reason=reason, period=period), err=True)


@digest.command()
@click.argument("period")
@click.pass_obj
def pause(app: App, period: str) -> None:
    """Stop sending issue PERIOD after the messages in flight; `resume` continues where it stopped."""
    _hold(app, "pause", period)


@digest.command()
@click.argument("period")
@click.pass_obj
def resume(app: App, period: str) -> None:
    """Send the rest of paused issue PERIOD (the daemon picks it up within a minute; or run `digest send`)."""
    _hold(app, "resume", period)


@digest.command()
@click.argument("period")
@click.pass_obj
def cancel(app: App, period: str) -> None:
    """Cancel the unsent rest of issue PERIOD for good (exit 1, nothing changed, when nothing is left to send)."""
    _hold(app, "cancel", period)


def _hold(app: App, action: str, period: str) -> None:
    from feedpub import accounts, holds  # lazy: sqlalchemy, see the module docstring

    store = open_store_or_fail(app)
    try:
        change = getattr(holds, action)(store, period)
    except holds.NothingToCancel as exc:
        click.echo(f"feedpub: {error_text(exc)}", err=True)   # finished, but the issue had already gone out: exit 1
        raise SystemExit(PARTIAL) from exc
    except holds.HoldError as exc:
        fail(error_text(exc))
    accounts.audit(store, user="cli", address="cli", action=f"issue.{action}", detail=period)
    say(words().count(f"hold_{action}", change.rows, period=period))


def _errors(problems: list[Problem]) -> int:
    return sum(not p.warning for p in problems)


@contextmanager
def _progress(total: int) -> Iterator[Any]:
    """A progress bar on a terminal; nothing otherwise (cron mail stays short)."""
    if not sys.stderr.isatty() or total == 0:
        yield lambda outcome: None
        return
    seen: set[int] = set()
    with click.progressbar(length=total, label="sending", file=sys.stderr) as bar:
        def advance(outcome: Any) -> None:
            if outcome.delivery_id not in seen:
                seen.add(outcome.delivery_id)
                bar.update(1)
        yield advance


@contextmanager
def _user_errors() -> Iterator[None]:
    """Config and template errors (missing secret, broken template, bad from) → exit 2 with the message."""
    try:
        yield
    except ConfigError as exc:
        fail(error_text(exc))
    except FeedpubError as exc:
        click.echo(f"feedpub: {error_text(exc)}", err=True)
        raise SystemExit(FAILED) from exc
