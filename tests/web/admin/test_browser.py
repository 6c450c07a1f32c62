"""The dashboard in Debian's Chromium: log in, every page, every action, log out — served by uvicorn as the
daemon serves it, on a real SQLite store and a real SMTP server.

Set FEEDPUB_UPDATE_SCREENSHOTS=1 to refresh docs/admin-*.png (overview and an issue, desktop and phone).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from feedpub import accounts
from feedpub.records import SubscriberInput
from feedpub.schema import deliveries, subscribers
from feedpub.store import open_store
from tests.cli.test_admin_daemon import feedpub
from tests.cli.test_daemon_e2e import DaemonProcess, free_port, write_site
from tests.conftest import BROWSER_ARGS, CHROMIUM, require_browser, serving
from tests.web.admin.conftest import ACCOUNT, FIXTURES, PASSWORD, PERIOD, RETURN_PATH, SECRET, make_app, returned, seed

DOCS = Path(__file__).resolve().parents[3] / "docs"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def grow(store, now: datetime) -> None:
    """Twelve weeks of a growing list and an issue mid-way through sending, so the charts have a shape."""
    store.save_subscribers([SubscriberInput(f"reader{i:03d}@example.org", f"読者{i}") for i in range(240)],
                           status="active")
    with store.writing() as conn:
        for i in range(240):
            joined = now - timedelta(days=84 - i * 84 / 240)
            conn.execute(subscribers.update().where(subscribers.c.email == f"reader{i:03d}@example.org")
                         .values(created_at=joined, confirmed_at=joined,
                                 **({"status": "unsubscribed", "unsubscribed_at": joined + timedelta(days=9)}
                                    if i % 17 == 0 else {})))
        ids = [row.id for row in conn.execute(subscribers.select().where(subscribers.c.email.like("reader%")))]
        conn.execute(deliveries.insert(), [
            {"issue_id": 1, "subscriber_id": sid, "variant_key": "",
             "status": "sent" if n < 150 else "deferred" if n % 40 == 0 else "queued", "attempts": 1 if n < 150 else 0,
             "last_reply": "250 2.0.0 Ok" if n < 150 else "", "created_at": now - timedelta(minutes=20),
             "updated_at": now - timedelta(minutes=20) + timedelta(seconds=6 * n) if n < 150 else now}
            for n, sid in enumerate(ids)])


@pytest.fixture
def served(site, smtp_server, monkeypatch) -> Iterator[tuple[str, object]]:
    require_browser()
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    port = free_port()
    site.configure(f'[web]\npublic_url = "http://127.0.0.1:{port}"\n'
                   f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_server.port}\nsecurity = "none"\n'
                   f'return_path = "{RETURN_PATH}"\n', language="ja")
    store = open_store(site.config.store_url)
    accounts.add_user(store, ACCOUNT, PASSWORD)
    seed(store)
    grow(store, datetime.now(UTC))
    returned(site.config, store, (FIXTURES / "postfix-user-unknown.eml").read_bytes(), "carol@example.com",
             about="taro.yamada@example.jp")
    try:
        with serving(make_app(site.config, store), port):
            yield f"http://127.0.0.1:{port}", store
    finally:
        store.engine.dispose()


def test_an_operator_logs_in_uses_every_page_and_action_and_logs_out(served, smtp_server, tmp_path) -> None:
    from playwright.sync_api import expect, sync_playwright  # only when the browser is there (require_browser)

    base, store = served
    shots: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport=DESKTOP)
            page.goto(f"{base}/admin")
            expect(page).to_have_url(f"{base}/admin/login?next=/admin")
            page.fill("#name", ACCOUNT)
            page.fill("#password", "wrong password")
            page.click("button:text('ログイン')")
            expect(page.get_by_role("alert")).to_have_text("アカウント名またはパスワードが違います。")
            page.fill("#password", PASSWORD)
            page.click("button:text('ログイン')")
            expect(page.locator("h1")).to_have_text("概要")
            expect(page.get_by_role("img", name="週ごとの購読者数")).to_be_visible()
            expect(page.get_by_role("img", name="1日に送信したメール（種類別）")).to_be_visible()
            shots.append(_shot(page, tmp_path, "admin-overview-desktop.png"))

            page.click("#kinds >> text=毎週")                         # the mails of one kind
            expect(page.locator("h1")).to_have_text("メール")
            expect(page.locator("[aria-current=page]")).to_have_text("毎週")
            page.click(f"a[href='/admin/issues/{PERIOD}']")
            expect(page.locator("h1")).to_have_text(f"{PERIOD} 号")
            expect(page.get_by_text("AI導入戦略の現在")).to_be_visible()
            expect(page.get_by_text("550 no such user")).to_be_visible()
            shots.append(_shot(page, tmp_path, "admin-issue-desktop.png"))
            page.click("button:text('一時停止')")
            expect(page.get_by_role("status")).to_contain_text("一時停止しました")
            page.click("button:text('再開')")
            expect(page.get_by_role("status")).to_contain_text("再開しました")
            page.click("button:text('再送待ちを今すぐ再送')")
            expect(page.get_by_role("status")).to_contain_text("再送待ちの配信を今すぐ送る対象にしました")
            page.fill("input[name=to]", "editor@example.com")
            page.click("button:text('テスト送信')")
            expect(page.get_by_role("status")).to_have_text("テストメールを送信しました。")
            assert smtp_server.recipients() == ["editor@example.com"]
            page.click("button:text('残りを中止')")
            expect(page.get_by_role("status")).to_contain_text("中止しました")
            assert store.counts(1)["cancelled"] > 0

            page.click("nav >> text=購読者")
            page.fill("input[name=q]", "山田")
            page.click("button:text('検索')")
            page.click("text=taro@example.jp")
            expect(page.locator("h1")).to_have_text("taro@example.jp")
            page.click("button:text('配信停止にする')")
            expect(page.get_by_role("status")).to_contain_text("このアドレスを配信停止にしました")
            page.click("button:text('配信停止を解除')")
            expect(page.get_by_role("status")).to_have_text("配信停止を解除しました。")
            page.check("input[value='categories/news']")        # his stored categories/AI導入戦略 is ticked
            page.select_option("select[name=timezone]", "Asia/Seoul")
            page.click("button:text('配信内容を保存')")
            expect(page.get_by_role("status")).to_have_text("この読者の配信内容を保存しました。")
            taro = store.subscriber("taro@example.jp")
            assert (set(taro.topics), taro.timezone) == ({"categories/ai導入戦略", "categories/news"}, "Asia/Seoul")
            page.click("nav >> text=購読者")
            with page.expect_download() as download:
                page.click("text=CSVで書き出す")
            assert download.value.suggested_filename == "subscribers.csv"

            page.click("nav >> text=バウンス")
            expect(page.locator("main")).to_contain_text("Recipient address rejected: User unknown")
            page.click("text=メッセージ 1")
            expect(page.locator("h1")).to_have_text("バウンス 1")
            expect(page.locator("pre")).to_contain_text("Final-Recipient: rfc822; carol@example.com")
            page.click("nav >> text=フィード")
            page.click("button:text('今すぐ再生成')")
            expect(page.get_by_role("status")).to_have_text("フィードを再生成しました。")
            page.click("nav >> text=操作記録")
            for action in ("login.failed", "login", "issue.pause", "issue.test", "subscriber.suppress",
                           "feeds.rebuild"):
                expect(page.locator("td", has_text=action).first).to_be_visible()

            page.click("button:text('ログアウト')")
            expect(page).to_have_url(f"{base}/admin/login")
            page.goto(f"{base}/admin/subscribers")
            expect(page.locator("h1")).to_contain_text("管理画面")       # the login form again

            phone = browser.new_page(viewport=PHONE, is_mobile=True, color_scheme="dark")
            phone.goto(f"{base}/admin/login")
            phone.fill("#name", ACCOUNT)
            phone.fill("#password", PASSWORD)
            phone.click("button:text('ログイン')")
            expect(phone.locator("h1")).to_have_text("概要")
            assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]   # no sideways scroll
            shots.append(_shot(phone, tmp_path, "admin-overview-phone.png"))
            phone.goto(f"{base}/admin/issues/{PERIOD}")
            shots.append(_shot(phone, tmp_path, "admin-issue-phone.png"))
        finally:
            browser.close()
    if os.environ.get("FEEDPUB_UPDATE_SCREENSHOTS") == "1":
        for shot in shots:
            shutil.copy(shot, DOCS / shot.name)


def test_a_running_daemon_opens_the_dashboard_once_the_first_account_exists(tmp_path, smtp_server) -> None:
    """No account at start: /admin says how to make one; `feedpub admin add-user` in another process; then
    the same daemon (no restart) logs the operator in."""
    require_browser()
    from playwright.sync_api import expect, sync_playwright  # only when the browser is there (require_browser)

    port = free_port()
    write_site(tmp_path, smtp_server, port)
    daemon = DaemonProcess(tmp_path, port)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            try:
                page = browser.new_page(viewport=DESKTOP)
                page.goto(f"{daemon.base}/admin")
                expect(page.locator("h1")).to_have_text("管理画面のアカウントがまだありません")
                expect(page.locator("code")).to_have_text("feedpub admin add-user NAME")
                expect(page.locator("#password")).to_have_count(0)

                added = feedpub(tmp_path, "admin", "add-user", "ops", "--password-stdin", stdin="operator password\n")
                assert added.returncode == 0, added.stderr
                page.reload()
                expect(page).to_have_url(f"{daemon.base}/admin/login?next=/admin")
                page.fill("#name", "ops")
                page.fill("#password", "operator password")
                page.click("button:text('ログイン')")
                expect(page.locator("h1")).to_have_text("概要")
                expect(page.locator("header")).to_contain_text("ops")
            finally:
                browser.close()
    finally:
        assert daemon.stop() == 0


def _shot(page, folder: Path, name: str) -> Path:
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path
