"""The reader pages in Debian's Chromium, served by uvicorn as the daemon serves them, with their Content
Security Policy in force: sign up, open the confirmation link and press its button, change the categories,
unsubscribe — and the browser blocks nothing the pages need, but would block a script."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from feedpub.site.build import Topic
from feedpub.store import open_store
from feedpub.tokens import make_token
from feedpub.web.app import create_app
from tests.cli.test_daemon_e2e import free_port
from tests.conftest import BROWSER_ARGS, CHROMIUM, require_browser, serving

TOPICS = [Topic("categories/ai導入戦略", "AI導入戦略"), Topic("categories/news", "news")]

SECRET = "reader-browser-secret"


@pytest.fixture
def served(site, monkeypatch) -> Iterator[tuple[str, object, list]]:
    require_browser()
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    port = free_port()
    site.configure(f'[web]\npublic_url = "http://127.0.0.1:{port}"\n', language="ja")
    store = open_store(site.config.store_url)
    outbox: list[tuple[str, str, str]] = []
    app = create_app(site.config, store, send_confirmation=lambda *mail: outbox.append(mail),
                     topics=lambda: TOPICS, health=dict)
    with serving(app, port):
        yield f"http://127.0.0.1:{port}", store, outbox


def test_the_buttons_work_with_the_content_security_policy_in_force(served) -> None:
    from playwright.sync_api import expect, sync_playwright  # only when the browser is there (require_browser)

    base, store, outbox = served
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda entry: console.append(entry.text))

            page.goto(f"{base}/subscribe")
            page.get_by_label("メールアドレス").fill("reader@example.com")
            page.get_by_label("news").check()
            page.get_by_role("button", name="購読する").click()
            expect(page.get_by_role("status")).to_have_text(re.compile("確認用のリンクをメールでお送りしました"))

            confirm = re.search(r"http://\S+/confirm/\S+", outbox[-1][2])[0]
            shown = page.goto(confirm)
            assert "frame-ancestors 'none'" in shown.headers["content-security-policy"]
            assert store.subscriber("reader@example.com").status == "pending"     # opening is not confirming
            # The inline stylesheet applies (34rem at 16px); an inline script would be refused.
            assert page.evaluate("getComputedStyle(document.body).maxWidth") == "544px"
            with pytest.raises(Exception, match="Content Security Policy|Refused"):
                page.add_script_tag(content="document.title = 'injected'")
            assert page.title() != "injected"
            page.get_by_role("button", name="購読を確定する").click()
            expect(page.get_by_role("status")).to_have_text(re.compile("購読が確定しました"))
            assert store.subscriber("reader@example.com").status == "active"

            reader = store.subscriber("reader@example.com")
            page.goto(f"{base}/preferences/{make_token(SECRET, 'preferences', reader.id)}")
            expect(page.get_by_label("news")).to_be_checked()
            page.get_by_label("AI導入戦略").check()
            page.get_by_label("news").uncheck()
            page.get_by_role("button", name="設定を保存").click()
            expect(page.get_by_role("status")).to_have_text("設定を保存しました。")
            assert store.subscriber("reader@example.com").topics == ("categories/ai導入戦略",)

            page.goto(f"{base}/preferences/{make_token(SECRET, 'preferences', reader.id)}")
            page.get_by_role("link", name="配信を停止する").click()
            expect(page.get_by_text("reader@example.com へのダイジェスト配信を停止しますか？")).to_be_visible()
            assert store.subscriber("reader@example.com").status == "active"
            page.get_by_role("button", name="配信を停止する").click()
            expect(page.get_by_role("status")).to_have_text(re.compile("配信を停止しました"))
            assert store.subscriber("reader@example.com").status == "unsubscribed"
            # Nothing but the script added above was refused: no style, form or image the pages need.
            refused = [text for text in console if "Content Security Policy" in text]
            assert refused and all("script" in text for text in refused), refused
        finally:
            browser.close()
