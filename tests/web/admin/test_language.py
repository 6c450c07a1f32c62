"""Every page of the dashboard speaks site.language: no English sentence of the shipped [en] table is left on
a Japanese site's pages, and an operator's strings.toml (web.templates_dir) replaces one word."""

from __future__ import annotations

import tomllib
from pathlib import Path

from lxml import html
from starlette.testclient import TestClient

from feedpub import accounts
from feedpub.store import open_store
from tests.web.admin.conftest import ACCOUNT, PASSWORD, PERIOD, SECRET, csrf_of, login, make_app, seed

STRINGS = Path(__file__).resolve().parents[3] / "feedpub" / "web" / "admin" / "templates" / "strings.toml"
PAGES = ("/admin", f"/admin/issues/{PERIOD}", "/admin/subscribers", "/admin/subscribers/1", "/admin/bounces",
         "/admin/feeds", "/admin/audit", f"/admin/issues/{PERIOD}?done=paused")


def english_sentences() -> set[str]:
    """The [en] strings of two words or more, with their fields cut out: what must not show in Japanese."""
    texts = [v for value in tomllib.loads(STRINGS.read_text(encoding="utf-8"))["en"].values()
             for v in ([value] if isinstance(value, str) else value.values())]
    parts = {part.strip(" ().,;:“”«»") for text in texts for part in text.replace("}", "{").split("{")[::2]}
    return {part for part in parts if " " in part}


def visible_text(page: str) -> str:
    tree = html.fromstring(page)
    words = [*tree.xpath("//body//text()[not(ancestor::style)]"), *tree.xpath("//@title | //@placeholder"),
             *tree.xpath("//title/text()")]
    return " ".join(words)


def test_every_page_of_a_japanese_site_is_japanese(dashboard) -> None:
    assert login(dashboard.client).status_code == 303
    english = english_sentences()
    assert "Rebuild now" in english and "Subscribers per week" in english     # the check can fail
    for path in PAGES:
        answer = dashboard.client.get(path)
        assert answer.status_code == 200, path
        shown = visible_text(answer.text)
        assert [s for s in english if s in shown] == [], path
    overview = dashboard.client.get("/admin").text
    assert "<h1>概要</h1>" in overview and "<title>概要 · Test blog 管理画面</title>" in overview
    assert "週ごとの購読者数" in overview                                     # the chart's title, in its SVG
    assert '<div class="card">一時停止中の号<b>0</b></div>' in overview
    issue = dashboard.client.get(f"/admin/issues/{PERIOD}?done=paused").text
    assert "一時停止しました。" in issue and "時間ごとの配信" in issue and "送信済み" in issue
    assert "<tr><td>すべて</td><td>Weekly 11-30</td>" in issue and "<tr><td>AI導入戦略</td>" in issue


def test_the_login_form_and_its_refusal_in_english(site, monkeypatch) -> None:
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    site.configure('[web]\npublic_url = "https://news.example.com"\n', language="en")
    store = open_store(site.config.store_url)
    accounts.add_user(store, ACCOUNT, PASSWORD)
    try:
        with TestClient(make_app(site.config, store), base_url="https://testserver") as client:
            form = client.get("/admin/login").text
            assert "<h1>Test blog — dashboard</h1>" in form and "<title>Log in · Test blog admin</title>" in form
            assert "Wrong account name or password." in login(client, password="nope").text
            login(client)
            shown = visible_text(client.get("/admin").text)
            assert {"Subscribers per week", "New this week", "Feeds and schedule"} <= {
                s for s in english_sentences() if s in shown}
    finally:
        store.engine.dispose()


def test_an_operator_overrides_one_word_of_the_dashboard(site, monkeypatch) -> None:
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    words = site.root / "web_templates"
    words.mkdir()
    (words / "strings.toml").write_text('[ja]\nnav_subscribers = "読者"\n', encoding="utf-8")
    site.configure('[web]\npublic_url = "https://news.example.com"\ntemplates_dir = "web_templates"\n',
                   language="ja")
    store = open_store(site.config.store_url)
    accounts.add_user(store, ACCOUNT, PASSWORD)
    seed(store)
    try:
        with TestClient(make_app(site.config, store), base_url="https://testserver") as client:
            login(client)
            page = client.get("/admin").text
            assert '<a href="/admin/subscribers">読者</a>' in page and '<a href="/admin/feeds">フィード</a>' in page
    finally:
        store.engine.dispose()


def test_a_refusal_and_a_failed_build_are_worded_in_japanese(dashboard) -> None:
    login(dashboard.client)
    csrf = csrf_of(dashboard.client)
    refused = dashboard.client.post(f"/admin/issues/{PERIOD}/resume", data={"csrf": csrf})
    assert refused.status_code == 409 and f"号 {PERIOD} は一時停止していません（想定: 一時停止中の号）" in refused.text
    dashboard.config.posts_dir.rmdir()
    failed = dashboard.client.post("/admin/feeds/rebuild", data={"csrf": csrf})
    assert failed.status_code == 500 and "生成に失敗しました" in failed.text
    assert ": 記事フォルダがありません（想定: site.posts_dir にフォルダを指定）" in failed.text


def test_a_refusal_and_a_failed_build_in_english(site, monkeypatch) -> None:
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    site.configure('[web]\npublic_url = "https://news.example.com"\n', language="en")
    store = open_store(site.config.store_url)
    accounts.add_user(store, ACCOUNT, PASSWORD)
    seed(store)
    try:
        with TestClient(make_app(site.config, store), base_url="https://testserver") as client:
            login(client)
            csrf = csrf_of(client)
            refused = client.post(f"/admin/issues/{PERIOD}/resume", data={"csrf": csrf})
            assert refused.status_code == 409
            assert f"issue {PERIOD} is not paused (expected a paused issue)" in refused.text
            site.config.posts_dir.rmdir()
            failed = client.post("/admin/feeds/rebuild", data={"csrf": csrf})
            assert failed.status_code == 500 and "Build failed" in failed.text
            assert ": posts folder does not exist (expected site.posts_dir to name a folder)" in failed.text
    finally:
        store.engine.dispose()
