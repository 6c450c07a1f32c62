"""The reader-facing web app: subscribe (double opt-in), confirm, one-click unsubscribe (RFC 8058),
preferences, the feeds and the digest archive, and a health check. Starlette, served by uvicorn."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jinja2
from email_validator import EmailNotValidError, validate_email
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from feedpub import templates
from feedpub.config import Config
from feedpub.store import Store, Subscriber, SubscriberInput
from feedpub.tokens import CONFIRM_MAX_AGE, BadToken, make_token, read_token
from feedpub.web import webhooks

FEED_TYPES = {
    "feed.xml": "application/atom+xml",
    "rss.xml": "application/rss+xml",
    "feed.json": "application/feed+json",
    "feeds.opml": "text/x-opml",
    "feed.xsl": "text/xsl",
}
TEXT = {
    "en": {"subscribe": "Subscribe", "email": "E-mail address", "name": "Name (optional)",
           "categories": "Only these categories (none ticked: everything)",
           "check_mail": "Thanks! Check your inbox: we sent a link to confirm the subscription.",
           "confirmed": "Your subscription is confirmed. The next digest will reach you.",
           "unsubscribe": "Unsubscribe", "unsubscribe_ask": "Stop receiving the digest at {email}?",
           "unsubscribed": "You are unsubscribed. You will not receive the digest any more.",
           "preferences": "Save preferences", "saved": "Your preferences are saved.",
           "preferences_for": "Digest preferences for {email}",
           "bad_categories": "None of the chosen categories exists any more: nothing was changed.",
           "bad_link": "This link is invalid or has expired.", "bad_email": "Please enter a valid e-mail address.",
           "too_many": "Too many requests. Please try again later.",
           "use_mail_link": "Please use the link at the bottom of the digest you received: it is made for your "
                            "address.",
           "confirm_subject": "Confirm your subscription to {title}",
           "confirm_body": "Please confirm your subscription to {title} by opening this link:\n\n{url}\n\n"
                           "If you did not ask for it, ignore this mail: nothing will be sent to you.\n"},
    "ja": {"subscribe": "購読する", "email": "メールアドレス", "name": "お名前（任意）",
           "categories": "受け取るカテゴリ（選択なし：すべて）",
           "check_mail": "ありがとうございます。確認用のリンクをメールでお送りしました。",
           "confirmed": "購読が確定しました。次号からお届けします。",
           "unsubscribe": "配信を停止する", "unsubscribe_ask": "{email} へのダイジェスト配信を停止しますか？",
           "unsubscribed": "配信を停止しました。今後ダイジェストは届きません。",
           "preferences": "設定を保存", "saved": "設定を保存しました。",
           "preferences_for": "{email} の配信設定",
           "bad_categories": "選択したカテゴリはもう存在しません。設定は変更されていません。",
           "bad_link": "このリンクは無効か、有効期限が切れています。",
           "bad_email": "正しいメールアドレスを入力してください。",
           "too_many": "リクエストが多すぎます。しばらくしてからお試しください。",
           "use_mail_link": "お受け取りのダイジェスト末尾にあるリンクをご利用ください（読者ごとに異なるリンクです）。",
           "confirm_subject": "{title} の購読確認",
           "confirm_body": "{title} の購読を確定するには、次のリンクを開いてください。\n\n{url}\n\n"
                           "お心当たりのない場合は、このメールを破棄してください。\n"},
}


class RateLimit:
    """At most `count` events per key within `seconds` (in memory: per daemon process)."""

    def __init__(self, count: int, seconds: float) -> None:
        self.count, self.seconds = count, seconds
        self._events: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            events = self._events[key]
            while events and now - events[0] > self.seconds:
                events.popleft()
            if len(events) >= self.count:
                return False
            events.append(now)
            return True


class FeedFiles(StaticFiles):
    """The output folder, with the registered feed content types (ETag/Last-Modified/304 from Starlette).
    Dot-files and dot-folders (`.feedpub-manifest`, temporary files) are never served."""

    async def get_response(self, path: str, scope: Any) -> Response:
        if any(part.startswith(".") for part in path.replace("\\", "/").split("/")):
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)

    def file_response(self, full_path: Any, stat_result: Any, scope: Any, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        media_type = FEED_TYPES.get(Path(full_path).name)
        if media_type:
            response.headers["content-type"] = media_type + ("; charset=utf-8" if "json" not in media_type else "")
        return response


def create_app(config: Config, store: Store, *, send_confirmation: Callable[[str, str, str], None],
               categories: Callable[[], Sequence[str]], health: Callable[[], dict[str, Any]],
               per_ip: RateLimit | None = None, per_address: RateLimit | None = None) -> Starlette:
    """`send_confirmation(email, subject, text)` mails the double opt-in link; `categories()` lists the
    site's categories for the form; `health()` adds daemon facts to /healthz."""
    secret = config.web.secret()
    text = TEXT.get(config.site.language.split("-")[0], TEXT["en"])
    pages = Jinja2Templates(env=_environment(config))
    per_ip = per_ip or RateLimit(10, 3600)
    per_address = per_address or RateLimit(3, 24 * 3600)
    base = config.web.public_url.rstrip("/")

    def page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context.update(site=config.site, t=text)
        return pages.TemplateResponse(request, name, context, status_code=status)

    def message(request: Request, key: str, status: int = 200) -> Response:
        return page(request, "message.html.j2", status, message=text[key])

    async def subscribe_form(request: Request) -> Response:
        return page(request, "subscribe.html.j2", categories=categories())

    async def subscribe(request: Request) -> Response:
        form = await request.form()
        client = request.client.host if request.client else "unknown"
        if not per_ip.allow(client):
            return message(request, "too_many", 429)
        try:
            email = validate_email(str(form.get("email", "")), check_deliverability=False).normalized
        except EmailNotValidError:
            return page(request, "subscribe.html.j2", 400, categories=categories(), error=text["bad_email"])
        known = set(categories())
        chosen = tuple(c for c in form.getlist("categories") if c in known)
        name = " ".join(str(form.get("name", "")).split())[:200]
        # The same answer whether or not the address is known: nothing is revealed.
        if per_address.allow(email.lower()):
            # A reader who left comes back as pending: only a confirmation made for this request (not a
            # replay of the old one, see `confirm`) reactivates them.
            known = store.subscriber(email)
            status = "pending" if known and known.status == "unsubscribed" else None
            store.save_subscribers([SubscriberInput(email, name or None, chosen)], status=status,
                                   new_status="pending")
            link = f"{base}/confirm/{make_token(secret, 'confirm', email)}"
            send_confirmation(email, text["confirm_subject"].format(title=config.site.title),
                              text["confirm_body"].format(title=config.site.title, url=link))
        return message(request, "check_mail")

    async def confirm(request: Request) -> Response:
        try:
            email = read_token(secret, "confirm", request.path_params["token"], max_age=CONFIRM_MAX_AGE)
        except BadToken:
            return message(request, "bad_link", 400)
        subscriber = store.subscriber(email)
        if subscriber is None or subscriber.status == "unsubscribed":   # a confirm link replayed after leaving
            return message(request, "bad_link", 400)
        store.lift_suppression(email)
        store.save_subscribers([SubscriberInput(email)], status="active")
        return message(request, "confirmed")

    async def unsubscribe(request: Request) -> Response:
        try:
            email = read_token(secret, "unsubscribe", request.path_params["token"])
        except BadToken:
            return message(request, "bad_link", 400)
        if request.method == "GET":  # link scanners prefetch GETs: only ever show the button
            return page(request, "unsubscribe.html.j2", ask=text["unsubscribe_ask"].format(email=email))
        store.unsubscribe(email, "unsubscribed by the reader")
        return message(request, "unsubscribed")

    def _preferences_context(subscriber: Subscriber) -> dict[str, Any]:
        """The form shows whose preferences these are, and how to leave instead."""
        return {"categories": categories(), "chosen": set(subscriber.categories),
                "for_email": text["preferences_for"].format(email=subscriber.email),
                "unsubscribe_url": f"{base}/unsubscribe/{make_token(secret, 'unsubscribe', subscriber.email)}"}

    async def preferences(request: Request) -> Response:
        try:
            email = read_token(secret, "preferences", request.path_params["token"])
        except BadToken:
            return message(request, "bad_link", 400)
        subscriber = store.subscriber(email)
        if subscriber is None:
            return message(request, "bad_link", 400)
        if request.method == "POST":
            known = set(categories())
            asked = (await request.form()).getlist("categories")
            chosen = tuple(c for c in asked if c in known)
            if asked and not chosen:   # only unknown names: saving would silently mean "everything"
                return page(request, "preferences.html.j2", 400, error=text["bad_categories"],
                            **_preferences_context(subscriber))
            store.save_subscribers([SubscriberInput(email, None, chosen)], status=None)
            return message(request, "saved")
        return page(request, "preferences.html.j2", **_preferences_context(subscriber))

    async def use_mail_link(request: Request) -> Response:
        """Where the archived issue's generic unsubscribe/preferences links lead."""
        return message(request, "use_mail_link")

    async def healthz(request: Request) -> Response:
        latest = store.latest_issue()
        queued = sum(store.counts(latest.id).get(s, 0) for s in ("queued", "sending", "deferred")) if latest else 0
        return JSONResponse({"status": "ok", "last_digest_period": latest.period if latest else None,
                             "queued_deliveries": queued, **health()})

    routes = [
        Route("/subscribe", subscribe_form, methods=["GET"]),
        Route("/subscribe", subscribe, methods=["POST"]),
        Route("/confirm/{token}", confirm, methods=["GET"]),
        Route("/unsubscribe/{token}", unsubscribe, methods=["GET", "POST"]),
        Route("/preferences/{token}", preferences, methods=["GET", "POST"]),
        Route("/unsubscribe", use_mail_link, methods=["GET"]),
        Route("/preferences", use_mail_link, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        *webhooks.routes(),
    ]
    config.output_dir.mkdir(parents=True, exist_ok=True)
    routes.append(Mount("/", app=FeedFiles(directory=config.output_dir, html=True)))
    app = Starlette(routes=routes)
    app.state.config, app.state.store = config, store
    return app


def _environment(config: Config) -> jinja2.Environment:
    """Shipped page templates, overridable file by file from `web.templates_dir`."""
    return templates.environment("web", config.path(config.web.templates_dir) if config.web.templates_dir else None)
