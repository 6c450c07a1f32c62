"""The reader-facing web app: its routes, what its endpoints share (`app.state`), and the published folder
(feeds, the digest archive). Starlette, served by uvicorn; the pages are in `feedpub.web.endpoints`."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from brotli_asgi import BrotliMiddleware
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp

from feedpub import templates
from feedpub.config import Config
from feedpub.records import Subscriber
from feedpub.store import Store
from feedpub.store_engine import BUSY_WAIT_SECONDS, StoreBusy, busy
from feedpub.strings import load_strings
from feedpub.web import admin, endpoints, webhooks

if TYPE_CHECKING:
    from feedpub.site.build import Topic

FEED_TYPES = {
    "feed.xml": "application/atom+xml",
    "rss.xml": "application/rss+xml",
    "feed.json": "application/feed+json",
    "feeds.opml": "text/x-opml",
    "feed.xsl": "text/xsl",
}
# Confirmation mails one address can be sent a day, whoever asks: the subscribe form must not become a
# way to flood someone's inbox.
CONFIRMATIONS_PER_DAY = 3

# Published files may be this old in a browser's or a proxy's cache; then they are asked again with their
# ETag, and a rebuild that changed nothing answers 304.
PUBLISHED_MAX_AGE = 300

# GET (and with it HEAD) only shows a page; each change is its own POST endpoint.
ROUTES = [
    Route("/subscribe", endpoints.subscribe_form, methods=["GET"]),
    Route("/subscribe", endpoints.subscribe, methods=["POST"]),
    Route("/confirm/{token}", endpoints.confirm_page, methods=["GET"]),
    Route("/confirm/{token}", endpoints.confirm, methods=["POST"]),
    Route("/unsubscribe/{token}", endpoints.unsubscribe_page, methods=["GET"]),
    Route("/unsubscribe/{token}", endpoints.unsubscribe, methods=["POST"]),
    Route("/preferences/{token}", endpoints.preferences_page, methods=["GET"]),
    Route("/preferences/{token}", endpoints.preferences, methods=["POST"]),
    Route("/unsubscribe", endpoints.use_mail_link, methods=["GET"]),
    Route("/preferences", endpoints.use_mail_link, methods=["GET"]),
    Route("/healthz", endpoints.healthz, methods=["GET"]),
    *webhooks.routes(),
]


class RateLimit:
    """At most `count` events per key within `seconds` (in memory: per daemon process)."""

    def __init__(self, count: int, seconds: float) -> None:
        self.count, self.seconds = count, seconds
        self._events: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def wait(self, key: str) -> float:
        """0 when one more event for `key` is allowed (and counts it); else the seconds until it would be."""
        now = time.monotonic()
        with self._lock:
            events = self._events[key]
            while events and now - events[0] > self.seconds:
                events.popleft()
            if len(events) >= self.count:
                return events[0] + self.seconds - now
            events.append(now)
            return 0.0


class FeedFiles(StaticFiles):
    """The output folder, with the registered feed content types and a Cache-Control (ETag/Last-Modified/304
    from Starlette). Dot-files and dot-folders (`.feedpub-manifest`, temporary files) are never served. A
    folder asked without its slash is redirected on `web.public_url`, never on the request's Host header."""

    def __init__(self, *, directory: Path, public_url: str) -> None:
        super().__init__(directory=directory, html=True)
        self.public_url = public_url.rstrip("/")

    async def get_response(self, path: str, scope: Any) -> Response:
        if any(part.startswith(".") for part in path.replace("\\", "/").split("/")):
            raise HTTPException(status_code=404)
        response = await super().get_response(path, scope)
        if isinstance(response, RedirectResponse):
            folder = scope["path"].removeprefix(scope.get("root_path", ""))
            query = scope.get("query_string", b"").decode("latin-1")
            return RedirectResponse(f"{self.public_url}{folder}/{'?' + query if query else ''}")
        return response

    def file_response(self, full_path: Any, stat_result: Any, scope: Any, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["cache-control"] = f"public, max-age={PUBLISHED_MAX_AGE}"
        response.headers["x-content-type-options"] = "nosniff"
        media_type = FEED_TYPES.get(Path(full_path).name)
        if media_type and response.status_code != 304:
            response.headers["content-type"] = media_type + ("; charset=utf-8" if "json" not in media_type else "")
        return response


def published(config: Config) -> ASGIApp:
    """The output folder as served: brotli- or gzip-compressed for clients that ask (feeds shrink to about
    0.25-0.3)."""
    return BrotliMiddleware(FeedFiles(directory=config.output_dir, public_url=config.web.public_url))


def store_busy(request: Request, exc: Exception) -> Response:
    """Another process holds the store's write lock for longer than the store waits: 503 and when to come
    back (a form resubmitted, a provider's webhook retried), instead of an error page."""
    if not busy(exc):
        raise exc
    return PlainTextResponse("The service is busy; please try again in a few seconds.\n", 503,
                             headers={"Retry-After": str(BUSY_WAIT_SECONDS)})


def create_app(config: Config, store: Store, *, send_confirmation: Callable[[str, str, str], None],
               topics: Callable[[], Sequence[Topic]], health: Callable[[], dict[str, Any]],
               welcome: Callable[[Subscriber], object] | None = None,
               chosen: Callable[[], object] | None = None) -> Starlette:
    """`send_confirmation(email, subject, text)` mails what the subscribe form sends (the double opt-in link, or
    a known reader's preferences link); `topics()` lists what a reader may follow (the last build's category,
    tag and author feeds); `health()` adds daemon facts to /healthz; `welcome(subscriber)` queues a newly
    confirmed reader's welcome mail; `chosen()` is told a reader changed what they get (a switch to each post's
    mail has its catch-up to plan)."""
    config.output_dir.mkdir(parents=True, exist_ok=True)
    # Mounted with or without an account: until `feedpub admin add-user` makes one, /admin says how to.
    operator = admin.routes() if config.web.admin else []
    fediverse = _fediverse_routes(config) if config.activitypub.enabled else []
    app = Starlette(routes=[*ROUTES, *operator, *fediverse, Mount("/", app=published(config))],
                    exception_handlers={sa.exc.OperationalError: store_busy, StoreBusy: store_busy})
    state = app.state
    state.config, state.store = config, store
    state.secret = config.web.secret()
    override = config.path(config.web.templates_dir) if config.web.templates_dir else None
    state.strings = load_strings("web", config.site.language, override)
    state.admin_strings = load_strings("admin", config.site.language, override)
    state.problem_strings = load_strings("problems", config.site.language, override)
    state.pages = Jinja2Templates(env=templates.environment("web", override))
    state.send_confirmation, state.topics, state.health = send_confirmation, topics, health
    state.welcome, state.chosen = welcome, chosen
    state.subscribe_limit = RateLimit(config.web.subscribe_limit, 3600)
    state.confirmations_limit = RateLimit(CONFIRMATIONS_PER_DAY, 24 * 3600)
    if config.activitypub.enabled:
        from feedpub.fediverse.routes import Fediverse

        state.fediverse = Fediverse(config, store)
    return app


def _fediverse_routes(config: Config) -> list[Route]:
    """The accounts' routes (`[activitypub] enabled`). Imported only then: httpx, apsig and the signature
    libraries add 0.4 s to the start of daemons that do not federate (-X importtime)."""
    from feedpub.fediverse.routes import routes

    return routes()
