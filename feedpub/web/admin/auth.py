"""Who may use the dashboard: login, logout, sessions, CSRF and the throttle on failed logins.

The session cookie carries a random id signed with `web.secret_env`'s key (so a cookie made under
another secret, or a subscriber's link token, never reads); the store holds the session row
(`feedpub.accounts`), so logout and expiry end it server-side. A new id is issued at every login.
Every state-changing request carries the session's CSRF token in a form field; the login form carries
one too, bound to a short-lived signed cookie. Failed logins are throttled per account and per client
address: five are free, then each further one doubles a wait from a minute, up to an hour.
"""

from __future__ import annotations

import functools
import inspect
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from feedpub import accounts, templates
from feedpub.config import Config
from feedpub.errors import reason
from feedpub.store import Store
from feedpub.strings import Strings
from feedpub.tokens import BadToken, make_text_token, read_text_token

COOKIE = "feedpub_admin"
LOGIN_COOKIE = "feedpub_admin_login"
SESSION_LIFETIME = timedelta(hours=12)
LOGIN_FORM_LIFETIME = 3600
FREE_FAILURES = 5
FIRST_WAIT = 60.0
LONGEST_WAIT = 3600.0
# Failures older than this are forgiven; past this many keys, forgiven ones are dropped.
_FORGET_AFTER = 3600.0
_MAX_KEYS = 10_000
# What the browser may do with the pages: no framing, no scripts but the dashboard's own, no referrer
# outside the site; inline styles for the SVG charts.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'",
}

pages = Jinja2Templates(env=templates.environment("admin"))
Endpoint = Callable[[Request], Awaitable[Response] | Response]


class LoginThrottle:
    """Failed logins per key (an account name, a client address), in the daemon's memory."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: dict[str, tuple[int, float]] = {}    # key → (count, time of the last)
        self._lock = threading.Lock()

    def wait(self, *keys: str) -> float:
        """Seconds before another attempt for these keys is heard (0: now)."""
        now = self._clock()
        with self._lock:
            return max([0.0, *(self._until(key, now) - now for key in keys)])

    def failed(self, *keys: str) -> None:
        now = self._clock()
        with self._lock:
            if len(self._failures) > _MAX_KEYS:     # guessing many names must not grow memory for ever
                self._failures = {k: v for k, v in self._failures.items() if now - v[1] <= _FORGET_AFTER}
            for key in keys:
                count, last = self._failures.get(key, (0, now))
                self._failures[key] = (1 if now - last > _FORGET_AFTER else count + 1, now)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)

    def _until(self, key: str, now: float) -> float:
        count, last = self._failures.get(key, (0, now))
        if count < FREE_FAILURES or now - last > _FORGET_AFTER:
            return now
        return last + min(LONGEST_WAIT, FIRST_WAIT * 2 ** (count - FREE_FAILURES))


@dataclass(frozen=True)
class Admin:
    """What a signed-in request knows about its operator."""

    session: accounts.Session
    session_id: str


def page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    """`template` with the dashboard's words of site.language: `t.NAME`, `text(NAME, field=…)` and
    `count(NAME, n)` (feedpub/web/admin/templates/strings.toml)."""
    admin: Admin | None = getattr(request.state, "admin", None)
    site = config(request).site
    shown = words(request)
    context.update(site=site, user=admin.session.user if admin else None, csrf=admin.session.csrf if admin else "",
                   t=shown.all(site=site.title), text=shown.text, count=shown.count)
    response = pages.TemplateResponse(request, template, context, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response


def words(request: Request) -> Strings:
    """The dashboard's strings, loaded with the app (`admin_strings`)."""
    return request.app.state.admin_strings


def refusal(request: Request, exc: BaseException) -> str:
    """What an exception says (its Message, `errors.reason`) in the dashboard's language."""
    return request.app.state.problem_strings.message(reason(exc))


def config(request: Request) -> Config:
    return request.app.state.config


def store(request: Request) -> Store:
    return request.app.state.store


def client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def record(request: Request, action: str, detail: str = "") -> None:
    """Write one line of the audit log for the signed-in operator."""
    admin: Admin = request.state.admin
    accounts.audit(store(request), user=admin.session.user.name, address=client(request), action=action,
                   detail=detail)


def signed_in(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    """Only for a live session (else 303 to the login page); a POST also needs the session's CSRF token
    (else 403)."""
    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        admin = _current(request)
        safe = request.method in ("GET", "HEAD")    # only show a page; every other method changes something
        if admin is None:
            if safe and not accounts.has_users(store(request)):
                return setup(request)
            target = quote(request.url.path) if safe else "/admin"
            return _redirect(f"/admin/login?next={target}")
        request.state.admin = admin
        if not safe:
            sent = form_token(await request.form())
            if sent is None:
                return malformed(request)
            if not secrets.compare_digest(sent, admin.session.csrf):
                return page(request, "message.html.j2", 403, title="Forbidden",
                            message="This form is stale or was not sent by the dashboard. Reload the page and "
                                    "try again.")
        if inspect.iscoroutinefunction(endpoint):
            response = await endpoint(request)
        else:   # a page: its queries run in the thread pool, off the event loop
            response = await run_in_threadpool(endpoint, request)
        response.headers.update(SECURITY_HEADERS)
        return response

    return guarded


def form_token(form: FormData) -> str | None:
    """A form's `csrf` field, if it can be a token (printable ASCII, as the dashboard makes them); None when it
    cannot: a request no page of the dashboard sent."""
    sent = form.get("csrf", "")
    return sent if isinstance(sent, str) and sent.isascii() and sent.isprintable() else None


def malformed(request: Request) -> Response:
    return page(request, "message.html.j2", 400, title="Bad request",
                message="The form's csrf field is malformed: this request was not sent by a dashboard page.")


class Login:
    """The login form and its answer; the throttle lives as long as the app."""

    def __init__(self, throttle: LoginThrottle) -> None:
        self.throttle = throttle

    async def form(self, request: Request) -> Response:
        if not accounts.has_users(store(request)):
            return setup(request)
        return self._form(request, 200)

    async def submit(self, request: Request) -> Response:
        form = await request.form()
        name, password = str(form.get("name", "")), str(form.get("password", ""))
        sent = form_token(form)
        if sent is None:
            return malformed(request)
        if not self._form_token_ok(request, sent):
            return page(request, "message.html.j2", 403, title=words(request).text("forbidden"),
                        message=words(request).text("login_expired"))
        address = client(request)
        keys = (f"account:{name}", f"address:{address}")
        wait = self.throttle.wait(*keys)
        if wait > 0:
            accounts.audit(store(request), user=name, address=address, action="login.throttled")
            response = self._form(request, 429, error=words(request).count("login_throttled", int(wait) + 1),
                                  name=name)
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        # argon2 takes tens of milliseconds of CPU: off the event loop.
        user = await run_in_threadpool(accounts.authenticate, store(request), name, password)
        if user is None:
            self.throttle.failed(*keys)
            accounts.audit(store(request), user=name, address=address, action="login.failed")
            return self._form(request, 401, error=words(request).text("login_wrong"), name=name)
        self.throttle.succeeded(*keys)
        old = _current(request)
        if old is not None:              # a new id at every login: a planted cookie is worth nothing
            accounts.close_session(store(request), old.session_id)
        session_id, _ = accounts.open_session(store(request), user, SESSION_LIFETIME)
        accounts.audit(store(request), user=user.name, address=address, action="login")
        target = str(request.query_params.get("next", ""))
        response = _redirect(target if _local(target) else "/admin")
        response.set_cookie(COOKIE, make_text_token(_secret(request), "admin-session", session_id),
                            max_age=int(SESSION_LIFETIME.total_seconds()), path="/admin", httponly=True,
                            samesite="strict", secure=_secure(request))
        response.delete_cookie(LOGIN_COOKIE, path="/admin/login")
        return response

    def _form(self, request: Request, status: int, **context: Any) -> Response:
        nonce = secrets.token_hex(16)
        response = page(request, "login.html.j2", status, login_csrf=nonce,
                        next=str(request.query_params.get("next", "")), **context)
        response.set_cookie(LOGIN_COOKIE, make_text_token(_secret(request), "admin-login", nonce),
                            max_age=LOGIN_FORM_LIFETIME, path="/admin/login", httponly=True, samesite="strict",
                            secure=_secure(request))
        return response

    def _form_token_ok(self, request: Request, sent: str) -> bool:
        try:
            expected = read_text_token(_secret(request), "admin-login", request.cookies.get(LOGIN_COOKIE, ""),
                                       max_age=LOGIN_FORM_LIFETIME)
        except BadToken:
            return False
        return bool(sent) and secrets.compare_digest(sent, expected)


def setup(request: Request) -> Response:
    """What the dashboard answers while no account exists: how to make the first one, in site.language (the
    reader pages' strings). No form: there is nothing to log in to, and a login POST without the login form's
    cookie is refused as any stale form is."""
    strings = request.app.state.strings
    return page(request, "setup.html.j2", title=strings.text("admin_setup_title"), setup=strings.texts)


@signed_in
async def logout(request: Request) -> Response:
    admin: Admin = request.state.admin
    record(request, "logout")
    accounts.close_session(store(request), admin.session_id)
    response = _redirect("/admin/login")
    response.delete_cookie(COOKIE, path="/admin")
    return response


def _current(request: Request) -> Admin | None:
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    try:
        session_id = read_text_token(_secret(request), "admin-session", cookie,
                                     max_age=int(SESSION_LIFETIME.total_seconds()))
    except BadToken:
        return None
    found = accounts.session(store(request), session_id)
    return Admin(found, session_id) if found else None


def _secret(request: Request) -> str:
    return config(request).web.secret()


def _secure(request: Request) -> bool:
    return config(request).web.public_url.startswith("https://")


def _local(target: str) -> bool:
    """A path of the dashboard itself: never an open redirect to another site."""
    return target.startswith("/admin") and not target.startswith("//") and "\\" not in target


def _redirect(url: str) -> Response:
    response = RedirectResponse(url, status_code=303)
    response.headers.update(SECURITY_HEADERS)
    return response
