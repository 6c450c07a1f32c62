"""The dashboard's pages and actions, one module-level function each, behind `auth.signed_in`.

Pages are plain functions: Starlette's thread pool runs them, so their queries never hold up the event
loop that also serves the readers' pages. Actions that read their form are coroutines.

Actions answer with a 303 back to their page and `?done=WHAT` (a fixed message: nothing the request
carried is shown back); every action writes an audit line first.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator
from datetime import datetime

from lxml import html as lxml_html
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from feedpub import accounts, holds, spreadsheet
from feedpub.addresses import BadAddress, mailable
from feedpub.config import parse_duration
from feedpub.errors import FeedpubError
from feedpub.fediverse import reports
from feedpub.fediverse.publish import publish
from feedpub.records import MAIL_KINDS, StoredIssue, Subscriber, SubscriberInput
from feedpub.scheduler import digest_trigger
from feedpub.send import archive_sync, messages, smtp
from feedpub.send.bounces import evidence
from feedpub.send.bounces.classify import KINDS
from feedpub.send.dispatch import late_posts, stored_variant
from feedpub.site.build import build_site
from feedpub.site.posts import collect
from feedpub.store import utcnow
from feedpub.web.admin import charts, published, queries
from feedpub.web.admin.auth import config, page, record, refusal, signed_in, store, words
from feedpub.web.endpoints import choices_context, read_choices

log = logging.getLogger("feedpub.web.admin")
# While an issue has rows to send, its page reloads itself this often (no script needed).
LIVE_REFRESH_SECONDS = 5
AUDIT_LINES = 200
# The mails the mails page lists (the newest first).
ISSUES_LISTED = 200
# Bounces and complaints listed on an issue's or a subscriber's page (the bounces page has them all, by page).
EVIDENCE_LINES = 100
# The fediverse page: days of the followers chart, instances charted and listed, posts listed.
FOLLOWER_DAYS, CHARTED_INSTANCES, LISTED_INSTANCES, LISTED_POSTS = 30, 15, 200, 100
# The messages an action's `?done=` may name; their words are the `done_…` strings (strings.toml beside the templates).
DONE = ("paused", "resumed", "cancelled", "retry", "test", "suppressed", "lifted", "restored", "choices", "rebuilt")


@signed_in
def overview(request: Request) -> Response:
    cfg, db = config(request), store(request)
    now = utcnow()
    weekly = queries.weekly(db, now)
    t = words(request)
    chart = charts.lines(t.text("chart_subscribers"), t.text("chart_no_data"), weekly.labels, (
        (t.text("series_active"), weekly.active), (t.text("series_new"), weekly.new),
        (t.text("series_unsubscribed"), weekly.unsubscribed), (t.text("series_suppressed"), weekly.suppressed)))
    facts = request.app.state.health()
    next_digest = digest_trigger(cfg).get_next_fire_time(None, now.astimezone(cfg.site.tz))
    last_build = _last_build(facts)
    next_build = last_build + parse_duration(cfg.feeds.rebuild_every) if last_build else None
    days, sent = queries.sent_per_day(db, MAIL_KINDS, now, cfg.site.tz)
    kinds_chart = charts.bars(t.text("chart_kinds"), t.text("chart_no_data"), tuple(f"{day:%m-%d}" for day in days),
                              tuple((t.text(f"kind_{kind}"), tuple(counts)) for kind, counts in sent.items()))
    return page(request, "overview.html.j2", title=t.text("overview"), chart=chart, weekly=weekly,
                kinds=queries.by_kind(db, MAIL_KINDS), kinds_chart=kinds_chart,
                issues=queries.recent_issues(db), queue=queries.queue_now(db), facts=facts,
                next_digest=next_digest, next_build=next_build, last_build=last_build,
                next_retry=db.next_retry(), tz=cfg.site.tz, flash=_flash(request),
                late=late_posts(cfg, db, collect(cfg, now=now).posts, now))


@signed_in
def issues(request: Request) -> Response:
    """The newest mails, of every kind or of the one asked (`?kind=`), as the overview lists issues."""
    kind = request.query_params.get("kind", "")
    kind = kind if kind in MAIL_KINDS else ""
    t = words(request)
    return page(request, "issues.html.j2", title=t.text("mails_heading"), kinds=MAIL_KINDS, kind=kind,
                issues=queries.recent_issues(store(request), ISSUES_LISTED, kind))


@signed_in
def issue(request: Request) -> Response:
    cfg, db = config(request), store(request)
    stored, row = _issue_or_404(request)
    edges, series = queries.progress(db, stored.id)
    t = words(request)
    chart = charts.bars(t.text("chart_deliveries"), t.text("chart_no_data"),
                        tuple(f"{e.astimezone(cfg.site.tz):%H:%M:%S}" for e in edges),
                        tuple((t.text(f"status_{status}"), tuple(counts)) for status, counts in series.items()))
    sending = row.hold is None and any(row.counts[s] for s in ("queued", "sending"))
    variants = db.variants(stored.id)
    archive = f"{cfg.web.public_url.rstrip('/')}/digests/{stored.period}/"
    return page(request, "issue.html.j2", title=t.text("issue_title", period=stored.period), issue=stored, row=row,
                chart=chart, variants=queries.variant_counts(db, stored.id), posts=_posts(v.html for v in variants),
                failures=queries.failures(db, stored.id), archive=archive, tz=cfg.site.tz,
                refresh=LIVE_REFRESH_SECONDS if sending else None,
                returned=evidence.newest(db, issue_id=stored.id, limit=EVIDENCE_LINES),
                paused_because=holds.reasons(db).get(stored.period),
                suppressed=queries.issue_suppressions(db, stored.id),
                flash=_flash(request))


@signed_in
async def issue_action(request: Request) -> Response:
    """pause, resume, cancel, retry (deferred rows due now)."""
    stored, _ = _issue_or_404(request)
    action = request.url.path.rsplit("/", 1)[1]
    record(request, f"issue.{action}", stored.period)
    db = store(request)
    try:
        if action == "pause":
            holds.pause(db, stored.period)
        elif action == "resume":
            holds.resume(db, stored.period)
        elif action == "cancel":
            holds.cancel(db, stored.period)
        else:
            holds.retry_now(db, stored.period)
    except holds.HoldError as exc:
        return page(request, "message.html.j2", 409, title=words(request).text("not_done"),
                    message=refusal(request, exc))
    done = {"pause": "paused", "resume": "resumed", "cancel": "cancelled", "retry": "retry"}[action]
    return _back(f"/admin/issues/{stored.period}", done)


@signed_in
def issue_restore(request: Request) -> Response:
    """Lift the suppressions the relay's refusals made while sending this issue, as `feedpub subscribers
    restore --cause PERIOD` does (unsubscribes and complaints are never lifted)."""
    stored, _ = _issue_or_404(request)
    db = store(request)
    found = db.restore(causes=("issue",), cause_ref=str(stored.id), dry_run=True)
    record(request, "suppressions.restore",
           f"--cause {stored.period}: {len(found)} lifted: {', '.join(s.email_key for s in found)}")
    db.restore(causes=("issue",), cause_ref=str(stored.id))
    return _back(f"/admin/issues/{stored.period}", "restored")


@signed_in
async def issue_test(request: Request) -> Response:
    """Send a [TEST] copy of the issue (the variant of readers with no category preference) to an address."""
    cfg, t = config(request), words(request)
    stored, _ = _issue_or_404(request)
    try:
        address = mailable(str((await request.form()).get("to", "")))
    except BadAddress as exc:
        return page(request, "message.html.j2", 400, title=t.text("not_sent"),
                    message=t.text("test_not_sent", error=exc))
    variant = stored_variant(store(request), stored, "") or next(
        (stored_variant(store(request), stored, v.key) for v in store(request).variants(stored.id)), None)
    if variant is None:
        return page(request, "message.html.j2", 409, title=t.text("not_sent"), message=t.text("no_content"))
    record(request, "issue.test", f"{stored.period} → {address}")
    try:
        reader = store(request).subscriber(address)
        message = messages.test_copy(cfg, variant, stored.period, address, reader.id if reader else None)
        await run_in_threadpool(smtp.send_one, cfg, message, address)
    except (smtp.Refused, OSError, FeedpubError) as exc:     # OSError covers smtplib.SMTPException
        return page(request, "message.html.j2", 502, title=t.text("not_sent"),
                    message=t.text("test_not_sent", error=exc))
    return _back(f"/admin/issues/{stored.period}", "test")


@signed_in
def subscribers(request: Request) -> Response:
    wanted = _search(request)
    found, after = queries.search(store(request), wanted)
    return page(request, "subscribers.html.j2", title=words(request).text("subscribers"), wanted=wanted, found=found,
                after=after, topics=request.app.state.topics(), tz=config(request).site.tz)


@signed_in
def subscribers_csv(request: Request) -> Response:
    wanted = _search(request)
    record(request, "subscribers.export", _shown(wanted))

    def lines() -> Iterator[str]:
        out = io.StringIO()
        writer = spreadsheet.Writer(out)
        writer.writerow(["email", "name", "topics", "cadence", "timezone", "status", "suppressed", "created_at"])
        for row in queries.every_match(store(request), wanted):
            writer.writerow([row.email, row.name, ";".join(row.topics), row.cadence, row.timezone, row.status,
                             "yes" if row.blocked else "no", row.created_at.isoformat(timespec="seconds")])
            if out.tell() > 64 * 1024:
                yield out.getvalue()
                out.seek(0)
                out.truncate()
        yield out.getvalue()

    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="subscribers.csv"'})


@signed_in
def subscriber(request: Request) -> Response:
    db = store(request)
    found = _subscriber_or_404(request)
    changes = accounts.audit_log(db, AUDIT_LINES, about=found.email)
    return page(request, "subscriber.html.j2", title=found.email, subscriber=found,
                suppression=db.suppression(found.email), history=queries.history(db, found.id),
                returned=evidence.newest(db, recipient=found.email, limit=EVIDENCE_LINES),
                changes=changes, tz=config(request).site.tz,
                **choices_context(request, found.topics, found.cadence, found.timezone),
                flash=_flash(request))


@signed_in
async def subscriber_action(request: Request) -> Response:
    """suppress, lift (a suppression), choices (what the reader gets: topics, cadence, time zone)."""
    db = store(request)
    found = _subscriber_or_404(request)
    action = request.url.path.rsplit("/", 1)[1]
    if action == "suppress":
        record(request, "subscriber.suppress", found.email)
        db.suppress(found.email, "suppressed by an operator", cause_ref=request.state.admin.session.user.name)
        done = "suppressed"
    elif action == "lift":
        record(request, "subscriber.lift", found.email)
        db.lift_suppression(found.email)
        done = "lifted"
    else:
        choices = read_choices(request, await request.form())
        if choices.problem:
            return page(request, "message.html.j2", 400, title=words(request).text("not_done"),
                        message=choices.problem)
        record(request, "subscriber.choices", f"{found.email}: {', '.join(choices.topics) or 'everything'}; "
                                              f"{choices.cadence}; {choices.timezone or 'site time zone'}")
        db.save_subscribers([SubscriberInput(found.email, None, topics=choices.topics, cadence=choices.cadence,
                                             timezone=choices.timezone)], status=None)
        if request.app.state.chosen is not None:
            request.app.state.chosen()
        done = "choices"
    return _back(f"/admin/subscribers/{found.id}", done)


@signed_in
def bounces(request: Request) -> Response:
    """Every bounce, complaint and reply read, newest first, a page at a time, of one kind if asked."""
    params = request.query_params
    kind = params.get("kind", "")
    kind = kind if kind in KINDS else ""
    before = params.get("before", "")
    before_id = int(before) if before.isdigit() else None
    found = evidence.newest(store(request), kinds=(kind,) if kind else (), before=before_id,
                            limit=queries.PAGE_SIZE + 1)
    more = len(found) > queries.PAGE_SIZE
    found = found[:queries.PAGE_SIZE]
    return page(request, "bounces.html.j2", title=words(request).text("bounces_heading"), returned=found, kinds=KINDS,
                kind=kind, paged=before_id is not None, before=found[-1].id if more else None,
                tz=config(request).site.tz)


@signed_in
def bounce(request: Request) -> Response:
    """One piece of evidence and the message (or provider event) itself, as `feedpub bounces show` prints it."""
    found = evidence.one(store(request), request.path_params["id"])
    if found is None:
        raise HTTPException(404)
    # Shown as text whatever its charset: the evidence is for reading, and the bytes stay in the store.
    raw = found.raw.decode("utf-8", "replace")
    return page(request, "bounce.html.j2", title=words(request).text("bounce_title", id=found.id), bounce=found,
                raw=raw, tz=config(request).site.tz)


@signed_in
def feeds(request: Request) -> Response:
    return page(request, "feeds.html.j2", title=words(request).text("feeds"),
                feeds=published.published_feeds(config(request)), last_build=_last_build(request.app.state.health()),
                tz=config(request).site.tz, flash=_flash(request))


@signed_in
async def rebuild(request: Request) -> Response:
    """Build now, as the daemon's build job does: the feeds, then the digest archive (incremental: only what
    changed is written), then what the fediverse accounts publish of it."""
    record(request, "feeds.rebuild")
    try:
        report = await run_in_threadpool(build_site, config(request))
        archived = await run_in_threadpool(archive_sync.refresh, config(request), store(request))
        if config(request).activitypub.enabled:
            if (await run_in_threadpool(publish, config(request), store(request))).queued:
                request.app.state.fediverse.queued()      # the daemon's sender, or this app's own
    except FeedpubError as exc:
        return page(request, "message.html.j2", 500, title=words(request).text("build_failed"),
                    message=refusal(request, exc))
    log.info("rebuild from the dashboard: %s; %s", report.summary(), archived.summary())
    return _back("/admin/feeds", "rebuilt")


@signed_in
def audit(request: Request) -> Response:
    return page(request, "audit.html.j2", title=words(request).text("audit"),
                entries=accounts.audit_log(store(request), AUDIT_LINES), tz=config(request).site.tz)


@signed_in
def fediverse(request: Request) -> Response:
    """The accounts' followers over time, deliveries per instance with their failures, reactions per post."""
    cfg, db, t = config(request), store(request), words(request)
    today = utcnow().astimezone(cfg.site.tz).date()
    over_time = reports.followers_over_time(db, FOLLOWER_DAYS, today)
    labels = tuple(f"{day:%m-%d}" for day, _ in next(iter(over_time.values()), ()))
    followers_chart = charts.lines(t.text("chart_followers"), t.text("chart_no_data"), labels, tuple(
        (account, tuple(number for _, number in points)) for account, points in over_time.items()))
    instances = reports.instances(db)
    busiest = instances[:CHARTED_INSTANCES]
    instances_chart = charts.bars(t.text("chart_instances"), t.text("chart_no_data"),
                                  tuple(row.instance for row in busiest), (
        (t.text("series_delivered"), tuple(row.counts["sent"] for row in busiest)),
        (t.text("series_failing"), tuple(row.failures for row in busiest)),
        (t.text("series_cancelled"), tuple(row.counts["cancelled"] for row in busiest))))
    totals = [(account, points[-1][1]) for account, points in over_time.items()]
    return page(request, "fediverse.html.j2", title=t.text("fediverse_heading"), enabled=cfg.activitypub.enabled,
                totals=totals, followers_chart=followers_chart, instances_chart=instances_chart,
                instances=instances[:LISTED_INSTANCES], reactions=reports.reactions(cfg, db)[:LISTED_POSTS],
                tz=cfg.site.tz)


def _last_build(facts: dict[str, object]) -> datetime | None:
    """When the daemon last built the feeds (its /healthz facts), if it has since it started."""
    return datetime.fromisoformat(str(facts["last_build"])) if facts.get("last_build") else None


def _issue_or_404(request: Request) -> tuple[StoredIssue, queries.IssueRow]:
    """The issue of the path and its counts."""
    db = store(request)
    stored = db.issue(request.path_params["period"])
    row = queries.issue_row(db, stored.period) if stored else None
    if stored is None or row is None:
        raise HTTPException(404)
    return stored, row


def _subscriber_or_404(request: Request) -> Subscriber:
    found = store(request).subscriber_by_id(request.path_params["id"])
    if found is None:
        raise HTTPException(404)
    return found


def _search(request: Request) -> queries.Search:
    params = request.query_params
    after = params.get("after", "0")
    return queries.Search(query=params.get("q", "").strip()[:200], status=params.get("status", ""),
                          topic=params.get("topic", ""), suppressed=params.get("suppressed", ""),
                          after=int(after) if after.isdigit() else 0)


def _shown(wanted: queries.Search) -> str:
    parts = [f"{k}={v}" for k, v in (("q", wanted.query), ("status", wanted.status), ("topic", wanted.topic),
                                      ("suppressed", wanted.suppressed)) if v]
    return " ".join(parts) or "everyone"


def _posts(variant_html: Iterable[str]) -> list[tuple[str, str]]:
    """(title, URL) of the posts in the issue's variants as sent, each once, in order."""
    seen: dict[str, str] = {}
    for text in variant_html:
        for link in lxml_html.fromstring(text).xpath("//h2//a[@href]"):
            seen.setdefault(link.get("href"), link.text_content().strip())
    return [(title, url) for url, title in seen.items()]


def _flash(request: Request) -> str | None:
    """The message of the action that returned to this page, in site.language."""
    done = request.query_params.get("done", "")
    return words(request).text(f"done_{done}") if done in DONE else None


def _back(path: str, done: str) -> Response:
    return RedirectResponse(f"{path}?done={done}", status_code=303)
