"""The reader pages, one endpoint per page and method. What they share (config, store, secret, strings,
templates, the daemon's callbacks and rate limits) is on `request.app.state`, set by `feedpub.web.app.create_app`.

GET and HEAD only ever show a page: link scanners and mail gateways fetch every link in a mail. Each change is
a POST from the page's button (RFC 8058's one-click POST on the unsubscribe link is one of those)."""

from __future__ import annotations

import logging
import math
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from email.message import Message
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from feedpub import accounts, errors
from feedpub.addresses import BadAddress, mailable
from feedpub.records import Subscriber, SubscriberInput, default_cadence, offered_cadences
from feedpub.send.smtp import Refused
from feedpub.store import READER_UNSUBSCRIBED, utcnow
from feedpub.tokens import CONFIRM_MAX_AGE, BadToken, Purpose, issued_at, make_token, read_token
from feedpub.zones import known_zone, zone_groups

if TYPE_CHECKING:
    from feedpub.site.build import Topic

log = logging.getLogger("feedpub.web")

# When a reader whose confirmation mail the relay did not take may try again: a relay that is down or
# deferring is seldom back within seconds.
NOT_SENT_RETRY_AFTER = 300

# What a browser may do with a reader page: no script (but the subscribe page's own, by its nonce), nothing from
# elsewhere, no framing, forms only to this site, and no Referer carrying a link's token. Inline styles stay
# allowed, so an operator's own templates (web.templates_dir) keep their looks.
PAGE_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
               "base-uri 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
# A reader form is a few fields: a longer body is not one.
FORM_BYTES = 64 * 1024
FORM_FIELDS = 1000
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def page(request: Request, name: str, status: int = 200, headers: dict[str, str] | None = None, *,
         scripted: bool = False, **context: Any) -> Response:
    """A page; `scripted` lets its template run the inline scripts that carry its `nonce` (and no other)."""
    state = request.app.state
    context.update(site=state.config.site, t=state.strings.texts)
    sent = {**PAGE_HEADERS, **(headers or {})}
    if scripted:
        context["nonce"] = secrets.token_urlsafe(16)
        sent["Content-Security-Policy"] = f"{PAGE_POLICY}; script-src 'nonce-{context['nonce']}'"
    return state.pages.TemplateResponse(request, name, context, status_code=status, headers=sent)


def message(request: Request, key: str, status: int = 200, headers: dict[str, str] | None = None,
            **values: Any) -> Response:
    return page(request, "message.html.j2", status, headers, message=request.app.state.strings.text(key, **values))


def link(request: Request, purpose: Purpose, subscriber: Subscriber, issued: datetime | None = None) -> str:
    """An absolute link to one of this subscriber's pages."""
    state = request.app.state
    token = make_token(state.secret, purpose, subscriber.id, issued)
    return f"{state.config.web.public_url.rstrip('/')}/{purpose}/{token}"


def noted(request: Request, action: str, subscriber: Subscriber, detail: str = "") -> None:
    """A reader's own change, in the audit log the dashboard shows on that subscriber's page."""
    accounts.audit(request.app.state.store, user="(reader)", address=request.client.host if request.client else "",
                   action=action, detail=f"{subscriber.email}{': ' + detail if detail else ''}")


def token_holder(request: Request, purpose: Purpose, max_age: int | None = None) -> Subscriber | None:
    """The subscriber the path's token was made for; None for a bad, expired or foreign token."""
    state = request.app.state
    try:
        holder = read_token(state.secret, purpose, request.path_params["token"], max_age=max_age)
    except BadToken:
        return None
    return state.store.subscriber_by_id(holder) if isinstance(holder, int) else state.store.subscriber(holder)


async def reader_form(request: Request) -> FormData | None:
    """The fields of a reader page's form as browsers send it (urlencoded UTF-8, no control characters but
    line breaks and tabs); None for any other body, which the caller answers 400."""
    head = Message()
    head["content-type"] = request.headers.get("content-type", "")
    if (head.get_content_type() != "application/x-www-form-urlencoded"
            or head.get_content_charset("utf-8") not in ("utf-8", "us-ascii")):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_BYTES:
            return None
    try:
        fields = parse_qsl(body.decode("ascii"), keep_blank_values=True, errors="strict",
                           max_num_fields=FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        return None
    if any(CONTROL.search(text) for pair in fields for text in pair):
        return None
    return FormData(fields)


def choices_context(request: Request, topics: Iterable[str], cadence: str, zone: str) -> dict[str, Any]:
    """What the subscribe and preferences forms offer (the site's topics by group, the cadences offered, every
    time zone) and what is chosen."""
    state = request.app.state
    groups: dict[str, list[Topic]] = {}
    for topic in state.topics():
        groups.setdefault(topic.group, []).append(topic)
    # A store migrated from categories holds names ("categories/AI導入戦略"), the forms feed folders: either
    # ticks the box, in any case (as digests match them), and saving stores the folder.
    stored = {topic.casefold() for topic in topics}
    chosen = {topic.folder for topic in state.topics()
              if {topic.folder.casefold(), f"{topic.group}/{topic.name}".casefold()} & stored}
    return {"topics": list(groups.items()), "chosen": chosen,
            "cadences": offered_cadences(state.config.digest.cadences), "cadence": cadence,
            "cadence_words": cadence_words(request), "zones": zone_groups(), "zone": zone or state.config.site.timezone}


def cadence_words(request: Request) -> dict[str, str]:
    """Each cadence as a reader reads it, with when its mail leaves (in their own zone)."""
    state = request.app.state
    digest, text = state.config.digest, state.strings.text
    days = ", ".join(text("day_names").split()[day] for entry in digest.schedule for day in entry.days)
    at = {"daily": digest.daily_at, "weekly": digest.schedule[0].at, "monthly": digest.monthly_on.at}
    return {cadence: text(f"cadence_{cadence}", time=f"{at.get(cadence, digest.daily_at):%H:%M}", days=days,
                          day=digest.monthly_on.day) for cadence in offered_cadences(digest.cadences)}


@dataclass(frozen=True)
class Choices:
    """What a reader's form asks for. A cadence or zone the form did not send is None (kept, or the default)."""

    topics: tuple[str, ...]
    cadence: str | None
    timezone: str | None
    problem: str | None = None      # what is wrong, in the reader's words: then nothing is saved


def read_choices(request: Request, form: FormData) -> Choices:
    """The topics, cadence and time zone a form sent. Topics no feed has any more are dropped (the page was
    open across a rebuild); naming only such topics is a problem, as saving none would mean every post."""
    state = request.app.state
    known = {topic.folder for topic in state.topics()}
    asked = [str(value) for value in form.getlist("topics")]
    topics = tuple(dict.fromkeys(folder for folder in asked if folder in known))
    cadence = str(form["cadence"]) if "cadence" in form else None
    zone = str(form["timezone"]) if "timezone" in form else None
    choices = Choices(topics, cadence, zone)
    if asked and not topics:
        return replace(choices, problem=state.strings.text("bad_topics"))
    offered = offered_cadences(state.config.digest.cadences)
    if cadence is not None and cadence not in offered:
        words = "; ".join(cadence_words(request).values())
        return replace(choices, problem=state.strings.text("bad_cadence", offered=words))
    if zone is not None and not known_zone(zone):
        return replace(choices, problem=state.strings.text("bad_timezone", zone=zone))
    return choices


async def subscribe_form(request: Request) -> Response:
    config = request.app.state.config
    return page(request, "subscribe.html.j2", scripted=True,
                **choices_context(request, (), default_cadence(config.digest.cadences), config.site.timezone))


async def subscribe(request: Request) -> Response:
    state = request.app.state
    form = await reader_form(request)
    if form is None:
        return message(request, "bad_form", 400)
    email, name = str(form.get("email", "")), " ".join(str(form.get("name", "")).split())[:200]
    choices = read_choices(request, form)
    offered = offered_cadences(state.config.digest.cadences)
    cadence = choices.cadence if choices.cadence in offered else default_cadence(offered)

    def again(problem: str) -> Response:
        """The form as the reader sent it, saying what to change."""
        zone = choices.timezone if choices.timezone and known_zone(choices.timezone) else ""
        return page(request, "subscribe.html.j2", 400, error=problem, typed_email=email, typed_name=name,
                    **choices_context(request, choices.topics, cadence, zone))

    if choices.problem:
        return again(choices.problem)
    try:
        email = mailable(email)
    except BadAddress:
        return again(state.strings.text("bad_email"))
    # Only well-formed requests count: a reader who mistypes their address is not locked out.
    wait = state.subscribe_limit.wait(request.client.host if request.client else "unknown")
    if wait:
        return message(request, "too_many", 429, {"Retry-After": str(math.ceil(wait))},
                       limit=state.subscribe_limit.count, minutes=math.ceil(wait / 60))
    entry = SubscriberInput(email, name or None, topics=choices.topics, cadence=cadence,
                            timezone=choices.timezone or "")
    if not state.confirmations_limit.wait(email.lower()):
        # The store's waits and the relay's SMTP exchange block: off the event loop, so other requests go on.
        try:
            await run_in_threadpool(invite, request, entry)
        except (Refused, OSError) as exc:    # the relay refused the mail, or could not be reached (smtplib's errors)
            log.warning("%s", errors.message("subscribe_mail_not_sent", email=email, reason=errors.reason(exc)))
            return message(request, "not_sent", 503, {"Retry-After": str(NOT_SENT_RETRY_AFTER)})
    # The same answer whatever the address's state: nothing is revealed.
    return message(request, "check_mail")


def invite(request: Request, entry: SubscriberInput) -> None:
    """Mail the address's owner what they need: a new or returning reader the one confirmation link that works,
    a subscriber a link to their own preferences page. An address suppressed for a complaint, a bounce or by an
    operator is mailed nothing: only an operator lifts that. A new link replaces the reader's older one only
    once its mail was handed to the relay: when sending fails, the link they already have still works."""
    state = request.app.state
    suppression = state.store.suppression(entry.email)
    if suppression and suppression.cause != "unsubscribe":
        return
    title = state.config.site.title
    known = state.store.subscriber(entry.email)
    if known is not None and known.status == "active":
        url = link(request, "preferences", known)
        state.send_confirmation(known.email, state.strings.text("known_subject", title=title),
                                state.strings.text("known_body", title=title, url=url, email=known.email))
        return
    issued = utcnow().replace(microsecond=0)
    # A new address needs its row first (the link names its id); it has no older link to lose.
    subscriber = known or state.store.sign_up(entry, issued)
    url = link(request, "confirm", subscriber, issued)
    state.send_confirmation(subscriber.email, state.strings.text("confirm_subject", title=title),
                            state.strings.text("confirm_body", title=title, url=url))
    if known is not None:
        state.store.sign_up(entry, issued)


def confirmation(request: Request) -> tuple[Subscriber, datetime] | None:
    """The subscriber the path's confirmation link was made for, and when it was made."""
    subscriber = token_holder(request, "confirm", CONFIRM_MAX_AGE)
    return (subscriber, issued_at(request.path_params["token"])) if subscriber else None


async def confirm_page(request: Request) -> Response:
    found = confirmation(request)
    if found is None or not request.app.state.store.confirmation_open(found[0].id, found[1]):
        return message(request, "bad_link", 400)
    return page(request, "confirm.html.j2",
                ask=request.app.state.strings.text("confirm_ask", email=found[0].email))


async def confirm(request: Request) -> Response:
    state = request.app.state
    found = confirmation(request)
    confirmed = state.store.confirm(found[0].id, found[1]) if found else None
    if confirmed is None:
        return message(request, "bad_link", 400)
    kept = state.store.suppression(confirmed.email)
    noted(request, "reader.confirm", confirmed, f"suppression kept ({kept.reason})" if kept else "")
    if state.welcome is not None and kept is None:
        try:     # the reader is subscribed whatever becomes of it: a failure here is logged, not theirs
            await run_in_threadpool(state.welcome, confirmed)
        except Exception:
            log.exception("%s", errors.message("welcome_mail_not_queued", email=confirmed.email))
    return message(request, "confirmed")


async def unsubscribe_page(request: Request) -> Response:
    subscriber = token_holder(request, "unsubscribe")
    if subscriber is None:
        return message(request, "bad_link", 400)
    return page(request, "unsubscribe.html.j2",
                ask=request.app.state.strings.text("unsubscribe_ask", email=subscriber.email))


async def unsubscribe(request: Request) -> Response:
    """The page's button and RFC 8058's one-click POST alike (whatever the body): 200, never a redirect."""
    subscriber = token_holder(request, "unsubscribe")
    if subscriber is None:
        return message(request, "bad_link", 400)
    request.app.state.store.unsubscribe(subscriber.email, READER_UNSUBSCRIBED, cause="unsubscribe")
    noted(request, "reader.unsubscribe", subscriber)
    return message(request, "unsubscribed")


def preferences_context(request: Request, subscriber: Subscriber) -> dict[str, Any]:
    """The form shows whose preferences these are, what they get now, and how to leave instead."""
    state = request.app.state
    return {**choices_context(request, subscriber.topics, subscriber.cadence, subscriber.timezone),
            "for_email": state.strings.text("preferences_for", email=subscriber.email),
            "unsubscribe_url": link(request, "unsubscribe", subscriber)}


async def preferences_page(request: Request) -> Response:
    subscriber = token_holder(request, "preferences")
    if subscriber is None:
        return message(request, "bad_link", 400)
    return page(request, "preferences.html.j2", **preferences_context(request, subscriber))


async def preferences(request: Request) -> Response:
    state = request.app.state
    subscriber = token_holder(request, "preferences")
    if subscriber is None:
        return message(request, "bad_link", 400)
    form = await reader_form(request)
    if form is None:
        return message(request, "bad_form", 400)
    choices = read_choices(request, form)
    if choices.problem:
        return page(request, "preferences.html.j2", 400, error=choices.problem,
                    **preferences_context(request, subscriber))
    entry = SubscriberInput(subscriber.email, None, topics=choices.topics, cadence=choices.cadence,
                            timezone=choices.timezone)
    state.store.save_subscribers([entry], status=None)
    if state.chosen is not None:
        state.chosen()
    saved = state.store.subscriber_by_id(subscriber.id) or subscriber
    noted(request, "reader.preferences", subscriber,
          f"{', '.join(saved.topics) or 'everything'}; {saved.cadence}; {saved.timezone or 'site time zone'}")
    return message(request, "saved")


async def use_mail_link(request: Request) -> Response:
    """Where the archived issue's generic unsubscribe/preferences links lead."""
    return message(request, "use_mail_link")


async def healthz(request: Request) -> Response:
    """The daemon's facts with what is wrong (`problems`: 503, status "problems") apart from what is worth a
    look (`warnings`: still 200, status "ok"), so a monitor pages someone only for the first."""
    state = request.app.state
    latest = state.store.latest_issue()
    queued = (sum(state.store.counts(latest.id).get(s, 0) for s in ("queued", "sending", "deferred"))
              if latest else 0)
    facts = {"problems": [], "warnings": [], **state.health()}
    facts.pop("shown", None)    # the same lines in site.language, for the dashboard: monitors read English
    return JSONResponse({"status": "problems" if facts["problems"] else "ok",
                         "last_digest_period": latest.period if latest else None, "queued_deliveries": queued,
                         **facts}, status_code=503 if facts["problems"] else 200)
