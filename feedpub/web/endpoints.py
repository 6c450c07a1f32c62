"""The reader pages, one endpoint each. What they share (config, store, secret, strings, templates, the
daemon's callbacks and rate limits) is on `request.app.state`, set by `feedpub.web.app.create_app`."""

from __future__ import annotations

import math
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from feedpub import accounts
from feedpub.addresses import BadAddress, mailable
from feedpub.records import Subscriber, SubscriberInput
from feedpub.tokens import CONFIRM_MAX_AGE, BadToken, Purpose, make_token, read_token


def page(request: Request, name: str, status: int = 200, headers: dict[str, str] | None = None,
         **context: Any) -> Response:
    state = request.app.state
    context.update(site=state.config.site, t=state.strings.texts)
    return state.pages.TemplateResponse(request, name, context, status_code=status, headers=headers)


def message(request: Request, key: str, status: int = 200, headers: dict[str, str] | None = None,
            **values: Any) -> Response:
    return page(request, "message.html.j2", status, headers, message=request.app.state.strings.text(key, **values))


def link(request: Request, purpose: Purpose, subscriber: Subscriber) -> str:
    """An absolute link to one of this subscriber's pages."""
    state = request.app.state
    return f"{state.config.web.public_url.rstrip('/')}/{purpose}/{make_token(state.secret, purpose, subscriber.id)}"


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


async def subscribe_form(request: Request) -> Response:
    return page(request, "subscribe.html.j2", categories=request.app.state.categories())


async def subscribe(request: Request) -> Response:
    state = request.app.state
    form = await request.form()
    try:
        email = mailable(str(form.get("email", "")))
    except BadAddress:
        return page(request, "subscribe.html.j2", 400, categories=state.categories(),
                    error=state.strings.text("bad_email"))
    # Only well-formed requests count: a reader who mistypes their address is not locked out.
    wait = state.subscribe_limit.wait(request.client.host if request.client else "unknown")
    if wait:
        return message(request, "too_many", 429, {"Retry-After": str(math.ceil(wait))},
                       limit=state.subscribe_limit.count, minutes=math.ceil(wait / 60))
    known = set(state.categories())
    chosen = tuple(c for c in form.getlist("categories") if c in known)
    name = " ".join(str(form.get("name", "")).split())[:200]
    # The same answer whether or not the address is known: nothing is revealed.
    if not state.confirmations_limit.wait(email.lower()):
        # A reader who left comes back as pending: only a confirmation made for this request (not a replay
        # of the old one, see `confirm`) reactivates them.
        before = state.store.subscriber(email)
        status = "pending" if before and before.status == "unsubscribed" else None
        state.store.save_subscribers([SubscriberInput(email, name or None, chosen)], status=status,
                                     new_status="pending")
        title = state.config.site.title
        url = link(request, "confirm", state.store.subscriber(email))
        state.send_confirmation(email, state.strings.text("confirm_subject", title=title),
                                state.strings.text("confirm_body", title=title, url=url))
    return message(request, "check_mail")


async def confirm(request: Request) -> Response:
    state = request.app.state
    subscriber = token_holder(request, "confirm", CONFIRM_MAX_AGE)
    if subscriber is None or subscriber.status == "unsubscribed":   # a confirm link replayed after leaving
        return message(request, "bad_link", 400)
    state.store.lift_suppression(subscriber.email)
    state.store.save_subscribers([SubscriberInput(subscriber.email)], status="active")
    noted(request, "reader.confirm", subscriber)
    return message(request, "confirmed")


async def unsubscribe(request: Request) -> Response:
    subscriber = token_holder(request, "unsubscribe")
    if subscriber is None:
        return message(request, "bad_link", 400)
    if request.method == "GET":  # link scanners prefetch GETs: only ever show the button
        return page(request, "unsubscribe.html.j2",
                    ask=request.app.state.strings.text("unsubscribe_ask", email=subscriber.email))
    request.app.state.store.unsubscribe(subscriber.email, "unsubscribed by the reader")
    noted(request, "reader.unsubscribe", subscriber)
    return message(request, "unsubscribed")


async def preferences(request: Request) -> Response:
    state = request.app.state
    subscriber = token_holder(request, "preferences")
    if subscriber is None:
        return message(request, "bad_link", 400)
    # The form shows whose preferences these are, and how to leave instead.
    context = {"categories": state.categories(), "chosen": set(subscriber.categories),
               "for_email": state.strings.text("preferences_for", email=subscriber.email),
               "unsubscribe_url": link(request, "unsubscribe", subscriber)}
    if request.method == "GET":
        return page(request, "preferences.html.j2", **context)
    known = set(state.categories())
    asked = (await request.form()).getlist("categories")
    chosen = tuple(c for c in asked if c in known)
    if asked and not chosen:   # only unknown names: saving would silently mean "everything"
        return page(request, "preferences.html.j2", 400, error=state.strings.text("bad_categories"), **context)
    state.store.save_subscribers([SubscriberInput(subscriber.email, None, chosen)], status=None)
    noted(request, "reader.preferences", subscriber, ", ".join(chosen) or "every category")
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
    return JSONResponse({"status": "problems" if facts["problems"] else "ok",
                         "last_digest_period": latest.period if latest else None, "queued_deliveries": queued,
                         **facts}, status_code=503 if facts["problems"] else 200)
