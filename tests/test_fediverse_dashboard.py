"""The dashboard's fediverse page: followers per account over time, deliveries per instance with failures and the
breaker's state, likes/boosts/replies per post; in Debian's Chromium (Japanese) and through the test client
(English), over a real SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from feedpub import accounts
from feedpub.fediverse import queue
from feedpub.fediverse.ledger import Ledger
from feedpub.fediverse.objects import OBJECTS_PATH
from feedpub.schema import fediverse_deliveries, fediverse_followers, fediverse_hosts, fediverse_published
from feedpub.store import Store, open_store
from tests.cli.test_daemon_e2e import free_port
from tests.conftest import BROWSER_ARGS, CHROMIUM, Site, require_browser, serving
from tests.web.admin.conftest import ACCOUNT, PASSWORD, SECRET, login, make_app

POST_URL = "https://blog.example.com/2026/12/01/ai.html"


def fill(store: Store, public_url: str) -> None:
    now = datetime.now(UTC)
    ledger = Ledger(store)
    for n in range(5):
        ledger.add_follower("blog", f"https://m.example/users/u{n}", f"https://m.example/users/u{n}/inbox",
                            "https://m.example/inbox", "m.example")
    ledger.add_follower("ai", "https://m.example/users/u0", "https://m.example/users/u0/inbox",
                        "https://m.example/inbox", "m.example")
    with store.writing() as conn:   # followed over the last weeks, so the chart climbs
        for n in range(5):
            conn.execute(fediverse_followers.update().where(fediverse_followers.c.actor == f"https://m.example/users/u{n}")
                         .values(created_at=now - timedelta(days=20 - 4 * n)))
        conn.execute(fediverse_published.insert().values(account="blog", object_key="k1", url=POST_URL,
                                                         content_hash="h", state="pushed", published_at=now,
                                                         created_at=now, updated_at=now))
    activity = {"id": public_url + OBJECTS_PATH + "k1#create", "type": "Create",
                "object": {"id": public_url + OBJECTS_PATH + "k1"}}
    queue.enqueue(store, account="blog", activity=activity,
                  inboxes=["https://m.example/inbox", "https://down.example/inbox", "https://spam.example/inbox"])
    with store.writing() as conn:
        rows = fediverse_deliveries.c
        conn.execute(fediverse_deliveries.update().where(rows.host == "m.example").values(status="sent"))
        conn.execute(fediverse_deliveries.update().where(rows.host == "down.example")
                     .values(status="deferred", last_error="503 Service Unavailable"))
        conn.execute(fediverse_hosts.insert().values(host="down.example", failures=4, failing_since=now,
                                                     paused_until=now + timedelta(minutes=10),
                                                     last_error="503 Service Unavailable"))
    queue.cancel_host(store, "spam.example", "blocked")
    ledger.block("spam.example")
    for n, kind in enumerate(("like", "like", "announce", "reply")):
        ledger.add_reaction(account="blog", object_id=public_url + OBJECTS_PATH + "k1", kind=kind,
                            actor=f"https://m.example/users/u{n}", activity_id=f"https://m.example/a/{n}",
                            content="<p>読みました</p>")


@pytest.fixture
def dashboard(site: Site, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Site, Store, int]]:
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    port = free_port()
    site.configure(f'[web]\npublic_url = "http://127.0.0.1:{port}"\n[activitypub]\nenabled = true\n'
                   'categories = true\n', language="ja")
    store = open_store(site.config.store_url)
    accounts.add_user(store, ACCOUNT, PASSWORD)
    fill(store, f"http://127.0.0.1:{port}")
    yield site, store, port
    store.engine.dispose()


def test_the_operator_reads_the_fediverse_page_in_chromium(dashboard: tuple[Site, Store, int]) -> None:
    require_browser()
    from playwright.sync_api import expect, sync_playwright  # only when the browser is there (require_browser)

    site, store, port = dashboard
    base = f"http://127.0.0.1:{port}"
    with serving(make_app(site.config, store), port), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base}/admin/login")
            page.fill("#name", ACCOUNT)
            page.fill("#password", PASSWORD)
            page.click("button:text('ログイン')")
            page.click("a[href='/admin/fediverse']")
            expect(page.locator("h1")).to_have_text("フェディバース")
            expect(page.get_by_text("blog：フォロワー 5 人")).to_be_visible()
            expect(page.get_by_text("ai：フォロワー 1 人")).to_be_visible()
            charts = page.locator("figure.chart svg")
            expect(charts).to_have_count(2)
            expect(charts.first).to_contain_text("アカウントごとのフォロワー数（過去 30 日）")
            expect(charts.nth(1)).to_contain_text("down.example")
            rows = page.locator("table").first.locator("tbody tr")
            expect(rows).to_have_count(3)
            expect(rows.filter(has_text="down.example")).to_contain_text("まで一時停止中")
            expect(rows.filter(has_text="down.example")).to_contain_text("503 Service Unavailable")
            expect(rows.filter(has_text="spam.example")).to_contain_text("ブロック中")
            reactions = page.locator("table").nth(1).locator("tbody tr")
            expect(reactions).to_have_count(1)
            expect(reactions.first.locator("td")).to_have_text([POST_URL, "2", "1", "1"])
        finally:
            browser.close()


def test_the_page_in_english_and_empty(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    site.configure('[web]\npublic_url = "https://news.example.org"\n', language="en")
    store = open_store(site.config.store_url)
    accounts.add_user(store, ACCOUNT, PASSWORD)
    client = TestClient(make_app(site.config, store), base_url="https://testserver")
    assert client.get("/admin/fediverse", follow_redirects=False).status_code == 303
    login(client)
    answer = client.get("/admin/fediverse")
    assert answer.status_code == 200
    assert "The fediverse accounts are off (activitypub.enabled = false)" in answer.text
    assert "Nothing queued or delivered yet." in answer.text and "No likes, boosts or replies yet." in answer.text
    fill(store, "https://news.example.org")
    answer = client.get("/admin/fediverse")
    assert "blog: 5 followers" in answer.text and "ai: 1 follower<" in answer.text
    assert "paused until" in answer.text and "<td>blocked</td>" in answer.text
    with store.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(fediverse_deliveries)) == 3
    store.engine.dispose()
