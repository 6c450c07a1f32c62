"""Who gets in: login, sessions, CSRF, the throttle, and every /admin route enumerated from the app."""

from __future__ import annotations

import re

from starlette.routing import Route
from starlette.testclient import TestClient

from feedpub import accounts
from feedpub.schema import admin_audit
from feedpub.store import open_store
from feedpub.tokens import make_text_token, make_token
from feedpub.web.admin import auth
from tests.web.admin.conftest import ACCOUNT, PASSWORD, SECRET, csrf_of, login, make_app


def admin_routes(app) -> list[tuple[str, str]]:
    """(method, path with sample parameters) of every /admin route the app has."""
    found = []
    for route in app.routes:
        if isinstance(route, Route) and route.path.startswith("/admin"):
            path = route.path.replace("{period}", "2026-11-30-0900").replace("{id:int}", "1")
            found += [(method, path) for method in sorted(route.methods - {"HEAD"})]
    return found


def test_every_admin_route_needs_a_session_and_every_post_a_csrf_token(dashboard) -> None:
    client = dashboard.client
    routes = admin_routes(client.app)
    assert len(routes) >= 20 and ("POST", "/admin/issues/2026-11-30-0900/pause") in routes
    for method, path in routes:
        if path == "/admin/login":
            continue
        answer = client.request(method, path, follow_redirects=False)
        assert answer.status_code == 303, (method, path)
        assert answer.headers["location"].startswith("/admin/login"), (method, path)
    assert login(client).status_code == 303
    for method, path in routes:
        if method == "POST":
            for data in ({}, {"csrf": "forged"}):
                answer = client.post(path, data=data, follow_redirects=False)
                assert answer.status_code == 403, (path, data)
    # Nothing was done by the refused requests: the issue still sends, nobody got suppressed.
    assert dashboard.store.suppressed() == set()
    assert "一時停止" in client.get("/admin/issues/2026-11-30-0900").text


def audit_lines(store) -> list:
    with store.engine.connect() as conn:
        return conn.execute(admin_audit.select().order_by(admin_audit.c.id)).all()


def test_a_malformed_csrf_field_is_a_bad_request_on_every_post_and_the_login(dashboard) -> None:
    client, store = dashboard.client, dashboard.store
    form = client.get("/admin/login")
    nonce = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    for bad in ("é" + nonce[1:], "トークン", nonce[:-1] + "\x00"):
        answer = client.post("/admin/login", data={"csrf": bad, "name": ACCOUNT, "password": PASSWORD},
                             follow_redirects=False)
        assert answer.status_code == 400 and "csrf field is malformed" in answer.text, bad
        assert auth.COOKIE not in answer.cookies
    login(client)
    csrf = csrf_of(client)
    before = audit_lines(store)
    for method, path in admin_routes(client.app):
        if method == "POST" and path != "/admin/login":
            for bad in ("é" + csrf[1:], "トークン"):
                answer = client.post(path, data={"csrf": bad}, follow_redirects=False)
                assert answer.status_code == 400, (path, bad)
    assert audit_lines(store) == before and store.suppressed() == set()
    assert "一時停止" in client.get("/admin/issues/2026-11-30-0900").text


def test_login_form_posts_without_its_own_token_are_refused(dashboard) -> None:
    answer = dashboard.client.post("/admin/login", data={"name": ACCOUNT, "password": PASSWORD},
                                   follow_redirects=False)
    assert answer.status_code == 403
    assert auth.COOKIE not in answer.cookies


def test_login_sets_a_strict_http_only_secure_cookie_and_rotates_the_session(dashboard) -> None:
    client = dashboard.client
    answer = login(client)
    assert answer.status_code == 303 and answer.headers["location"] == "/admin"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie and "Path=/admin" in cookie
    first = client.cookies[auth.COOKIE]
    assert login(client).status_code == 303
    second = client.cookies[auth.COOKIE]
    assert first != second
    client.cookies.set(auth.COOKIE, first, path="/admin")   # the id before the new login is dead
    assert client.get("/admin", follow_redirects=False).status_code == 303


def test_cookie_is_not_secure_on_plain_http(site, monkeypatch) -> None:
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    site.configure('[web]\npublic_url = "http://127.0.0.1:8080"\n')
    store = open_store(site.config.store_url)
    accounts.add_user(store, ACCOUNT, PASSWORD)
    with TestClient(make_app(site.config, store)) as client:
        answer = login(client)
    assert answer.status_code == 303 and "Secure" not in answer.headers["set-cookie"]


def test_logout_ends_the_session_server_side(dashboard) -> None:
    client = dashboard.client
    login(client)
    cookie = client.cookies[auth.COOKIE]
    answer = client.post("/admin/logout", data={"csrf": csrf_of(client)}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/login"
    client.cookies.set(auth.COOKIE, cookie, path="/admin")     # replayed after logout
    assert client.get("/admin", follow_redirects=False).status_code == 303
    assert [e.action for e in accounts.audit_log(dashboard.store, 10)][:2] == ["logout", "login"]


def test_a_cookie_signed_with_another_secret_or_a_subscriber_token_opens_nothing(dashboard) -> None:
    client = dashboard.client
    login(client)
    session_id = client.cookies[auth.COOKIE]
    raw = re.match(r"[^.]+", session_id).group(0)
    for forged in (make_text_token("another-secret", "admin-session", "0" * 64),
                   make_token(SECRET, "unsubscribe", 1), make_token(SECRET, "preferences", 1),
                   make_text_token(SECRET, "unsubscribe", "alice@example.com"),    # a link from before ids
                   raw, session_id + "x"):
        fresh = TestClient(client.app, base_url="https://testserver")
        fresh.cookies.set(auth.COOKIE, forged, path="/admin")
        assert fresh.get("/admin", follow_redirects=False).status_code == 303, forged
    fresh = TestClient(client.app, base_url="https://testserver")
    assert fresh.get(f"/admin/subscribers?token={make_token(SECRET, 'unsubscribe', 1)}",
                     follow_redirects=False).status_code == 303


def test_failed_logins_are_throttled_per_account_and_audited(dashboard) -> None:
    client = dashboard.client
    for _ in range(auth.FREE_FAILURES):
        assert login(client, password="wrong password").status_code == 401
    throttled = login(client)                # even the right password waits now
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 60
    assert auth.COOKIE not in client.cookies
    actions = [e.action for e in accounts.audit_log(dashboard.store, 20)]
    assert actions.count("login.failed") == auth.FREE_FAILURES and actions[0] == "login.throttled"
    # A fresh browser (no cookies) for the same account waits too.
    assert login(TestClient(client.app, base_url="https://testserver")).status_code == 429


def test_failed_logins_are_throttled_per_client_address_across_accounts(dashboard) -> None:
    client = dashboard.client
    for number in range(auth.FREE_FAILURES):
        assert login(client, name=f"guess{number}", password="wrong password").status_code == 401
    assert login(client).status_code == 429


def test_throttle_backs_off_per_address_and_forgives() -> None:
    now = [1000.0]
    throttle = auth.LoginThrottle(clock=lambda: now[0])
    for _ in range(auth.FREE_FAILURES - 1):
        throttle.failed("address:1.2.3.4")
    assert throttle.wait("address:1.2.3.4") == 0
    throttle.failed("address:1.2.3.4")
    assert throttle.wait("account:x", "address:1.2.3.4") == auth.FIRST_WAIT
    now[0] += auth.FIRST_WAIT
    throttle.failed("address:1.2.3.4")
    assert throttle.wait("address:1.2.3.4") == 2 * auth.FIRST_WAIT      # doubles
    for _ in range(20):
        throttle.failed("address:1.2.3.4")
    assert throttle.wait("address:1.2.3.4") == auth.LONGEST_WAIT
    throttle.succeeded("address:1.2.3.4")
    assert throttle.wait("address:1.2.3.4") == 0


def test_unknown_account_and_wrong_password_get_the_same_answer(dashboard) -> None:
    unknown = login(dashboard.client, name="nobody")
    wrong = login(dashboard.client, password="not the password")
    assert unknown.status_code == wrong.status_code == 401
    refused = "アカウント名またはパスワードが違います。"
    assert refused in unknown.text and refused in wrong.text


def test_login_redirects_only_within_the_dashboard(dashboard) -> None:
    client = dashboard.client
    form = client.get("/admin/login?next=https://evil.example/")
    nonce = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    answer = client.post("/admin/login?next=https://evil.example/",
                         data={"csrf": nonce, "name": ACCOUNT, "password": PASSWORD}, follow_redirects=False)
    assert answer.headers["location"] == "/admin"


def test_without_an_account_every_page_says_how_to_make_one_and_nothing_opens(site, monkeypatch) -> None:
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    site.configure("", language="ja")
    store = open_store(site.config.store_url)
    with TestClient(make_app(site.config, store)) as client:
        routes = admin_routes(client.app)
        assert len(routes) >= 20
        for method, path in routes:
            answer = client.request(method, path, follow_redirects=False)
            if method == "GET":
                assert answer.status_code == 200, path
                assert "<h1>管理画面のアカウントがまだありません</h1>" in answer.text, path
                assert "<code>feedpub admin add-user NAME</code>" in answer.text, path
                assert 'type="password"' not in answer.text and "set-cookie" not in answer.headers, path
                assert answer.headers["x-frame-options"] == "DENY"
            elif path == "/admin/login":     # no login form was served, so no login form token either
                assert answer.status_code == 403
            else:
                assert answer.status_code == 303 and answer.headers["location"].startswith("/admin/login")
        assert client.cookies.get(auth.COOKIE) is None
    store.engine.dispose()


def test_the_first_account_can_log_in_without_a_new_app(site, monkeypatch) -> None:
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    site.configure("", language="en-GB")
    store = open_store(site.config.store_url)
    with TestClient(make_app(site.config, store)) as client:
        waiting = client.get("/admin")
        assert "<h1>The dashboard has no account yet</h1>" in waiting.text
        assert "needs no restart" in waiting.text
        accounts.add_user(store, ACCOUNT, PASSWORD)
        assert login(client, password="wrong password, ten+").status_code == 401
        assert login(client).status_code == 303
        assert "<h1>Overview</h1>" in client.get("/admin").text
        actions = [entry.action for entry in accounts.audit_log(store, 10)]
        assert actions[:2] == ["login", "login.failed"]
    store.engine.dispose()


def test_no_admin_routes_with_web_admin_off_even_with_an_account(site, monkeypatch) -> None:
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    store = open_store(site.config.store_url)
    accounts.add_user(store, ACCOUNT, PASSWORD)
    site.configure("[web]\nadmin = false\n")
    app = make_app(site.config, store)
    assert admin_routes(app) == []
    with TestClient(app) as client:
        assert client.get("/admin").status_code == 404
        assert client.get("/admin/login").status_code == 404
    store.engine.dispose()


def test_pages_carry_no_store_and_anti_framing_headers(dashboard) -> None:
    login(dashboard.client)
    answer = dashboard.client.get("/admin")
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]


def test_throttle_forgets_old_failures_so_guessing_names_cannot_fill_memory() -> None:
    now = [0.0]
    throttle = auth.LoginThrottle(clock=lambda: now[0])
    for number in range(auth._MAX_KEYS + 1):
        throttle.failed(f"account:guess{number}")
    now[0] += auth._FORGET_AFTER + 1
    throttle.failed("account:late")
    assert len(throttle._failures) == 1
