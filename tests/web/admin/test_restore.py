"""The issue page after a bad send: why the circuit breaker paused it, and a button that lifts the
suppressions the issue made (POST with the session's CSRF token, audited), never a reader's own
unsubscribe. Through the test client, and clicked in Debian's Chromium."""

from __future__ import annotations

from feedpub import accounts, holds
from feedpub.store import open_store
from tests.cli.test_daemon_e2e import free_port
from tests.conftest import BROWSER_ARGS, CHROMIUM, require_browser, serving
from tests.web.admin.conftest import ACCOUNT, PASSWORD, PERIOD, SECRET, csrf_of, login, make_app, seed

REFUSED = "554 5.7.1 <bob@example.com>: Relay access denied"


def bad_send(store, issue_id: int) -> None:
    """What a misconfigured relay left before the breaker existed: bob and carol suppressed by the issue;
    alice left on her own (her suppression must stay)."""
    store.suppress("bob@example.com", REFUSED, cause="issue", cause_ref=str(issue_id))
    store.suppress("carol@example.com", REFUSED.replace("bob", "carol"), cause="issue", cause_ref=str(issue_id))
    store.unsubscribe("alice@example.com", "unsubscribed by the reader", cause="unsubscribe")


def test_the_issue_page_says_why_the_breaker_paused_it(dashboard) -> None:
    holds.trip(dashboard.store, dashboard.issue_id, f"10 recipients in a row refused with the same reply: {REFUSED}")
    login(dashboard.client)
    page = dashboard.client.get(f"/admin/issues/{PERIOD}").text
    assert "サーキットブレーカーが一時停止しました：10 recipients in a row refused" in page
    assert "Relay access denied" in page and "この号で停止した宛先を元に戻す" not in page   # none made


def test_restore_lifts_the_issues_suppressions_only_with_the_csrf_token(dashboard) -> None:
    bad_send(dashboard.store, dashboard.issue_id)
    login(dashboard.client)
    page = dashboard.client.get(f"/admin/issues/{PERIOD}").text
    assert "この号で停止した宛先を元に戻す" in page and "（送信中にリレーが拒否した 2 件のアドレス）" in page
    forged = dashboard.client.post(f"/admin/issues/{PERIOD}/restore", data={"csrf": "forged"}, follow_redirects=False)
    assert forged.status_code == 403 and dashboard.store.suppression("bob@example.com") is not None
    done = dashboard.client.post(f"/admin/issues/{PERIOD}/restore", data={"csrf": csrf_of(dashboard.client)},
                                 follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/admin/issues/{PERIOD}?done=restored"
    assert dashboard.store.suppression("bob@example.com") is None
    assert dashboard.store.suppression("carol@example.com") is None
    assert dashboard.store.suppression("alice@example.com").cause == "unsubscribe"
    (entry, *_) = accounts.audit_log(dashboard.store, 1)
    assert (entry.user, entry.action) == (ACCOUNT, "suppressions.restore")
    assert entry.detail == f"--cause {PERIOD}: 2 lifted: bob@example.com, carol@example.com"


def test_an_operator_restores_an_issues_suppressions_in_chromium(site, monkeypatch) -> None:
    require_browser()
    from playwright.sync_api import expect, sync_playwright  # only when the browser is there (require_browser)

    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    port = free_port()
    site.configure(f'[web]\npublic_url = "http://127.0.0.1:{port}"\n', language="ja")
    store = open_store(site.config.store_url)
    accounts.add_user(store, ACCOUNT, PASSWORD)
    bad_send(store, seed(store))
    with serving(make_app(site.config, store), port):
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            try:
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{port}/admin/issues/{PERIOD}")
                page.fill("#name", ACCOUNT)
                page.fill("#password", PASSWORD)
                page.click("button:text('ログイン')")
                expect(page.locator("h1")).to_have_text(f"{PERIOD} 号")
                page.click("button:text('この号で停止した宛先を元に戻す')")
                expect(page.get_by_role("status")).to_contain_text("この号で停止した宛先を元に戻しました")
                expect(page.locator("button:text('この号で停止した宛先を元に戻す')")).to_have_count(0)
                page.click("nav >> text=操作記録")
                expect(page.locator("td", has_text="suppressions.restore").first).to_be_visible()
            finally:
                browser.close()
    assert store.suppression("bob@example.com") is None and store.suppression("carol@example.com") is None
    assert store.suppression("alice@example.com") is not None
