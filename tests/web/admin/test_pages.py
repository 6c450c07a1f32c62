"""The dashboard's pages and actions through Starlette's test client, on a real SQLite store and a real
SMTP server (the test copy)."""

from __future__ import annotations

import csv
import io

from starlette.testclient import TestClient

from feedpub import accounts, holds
from feedpub.records import SubscriberInput
from feedpub.store import open_store, utcnow
from feedpub.tokens import make_token
from tests.conftest import emptied
from tests.web.admin.conftest import (
    ACCOUNT,
    PASSWORD,
    PERIOD,
    SECRET,
    csrf_of,
    dsn,
    login,
    make_app,
    returned,
    seed,
    verp_config,
)

SCRIPT = "<script>alert(1)</script>"


def test_overview_shows_the_list_the_last_issue_the_queue_and_the_schedule(dashboard) -> None:
    login(dashboard.client)
    page = dashboard.client.get("/admin").text
    assert "<svg" in page and "週ごとの購読者数" in page and "<script" not in page
    assert f'href="/admin/issues/{PERIOD}"' in page
    assert "25.0%" in page                          # 1 sent of 4 recipients
    assert "記事 12 件、問題 1 件、警告 2 件" in page           # the last build, from the daemon's facts
    problems = page[page.index('<ul class="problems">'):]
    warnings = page[page.index('<ul class="warnings">'):]
    assert problems.index("front matter is not closed") < problems.index("</ul>")
    assert warnings.index("key &#39;title&#39; appears twice") < warnings.index("</ul>")
    assert "appears twice" not in problems[:problems.index("</ul>")]      # warnings apart from problems
    assert "次回のダイジェスト" in page and "送信待ち" in page


def test_issue_page_lists_posts_variants_failures_and_refreshes_while_sending(dashboard) -> None:
    login(dashboard.client)
    page = dashboard.client.get(f"/admin/issues/{PERIOD}").text
    assert "AI導入戦略の現在" in page and "Rust in production" in page
    assert "Weekly 11-30 (AI)" in page and "550 no such user" in page and "451 try later" in page
    assert f"https://news.example.com/digests/{PERIOD}/" in page
    assert '<meta http-equiv="refresh" content="5">' in page           # one row still queued
    assert dashboard.client.get("/admin/issues/1999-01-01-0900").status_code == 404


def test_pause_resume_retry_and_cancel_from_the_issue_page(dashboard) -> None:
    client, store = dashboard.client, dashboard.store
    login(client)
    csrf = csrf_of(client)
    answer = client.post(f"/admin/issues/{PERIOD}/pause", data={"csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303 and holds.state(store, dashboard.issue_id) == "paused"
    page = client.get(answer.headers["location"]).text
    assert "一時停止しました。" in page and "再開" in page and "http-equiv" not in page
    client.post(f"/admin/issues/{PERIOD}/resume", data={"csrf": csrf})
    assert holds.state(store, dashboard.issue_id) is None
    client.post(f"/admin/issues/{PERIOD}/retry", data={"csrf": csrf})
    assert store.count_due(dashboard.issue_id, utcnow()) == 2
    client.post(f"/admin/issues/{PERIOD}/cancel", data={"csrf": csrf})
    assert store.counts(dashboard.issue_id)["cancelled"] == 2
    refused = client.post(f"/admin/issues/{PERIOD}/resume", data={"csrf": csrf})
    assert refused.status_code == 409 and f"号 {PERIOD} は取り消し済みです（想定: 一時停止中の号）" in refused.text
    actions = [e.action for e in accounts.audit_log(store, 10)]
    assert actions[:5] == ["issue.resume", "issue.cancel", "issue.retry", "issue.resume", "issue.pause"]
    assert "issue.cancel" in client.get("/admin/audit").text


def test_send_a_test_copy_over_smtp(site, dashboard, smtp_server) -> None:
    site.configure('[web]\npublic_url = "https://news.example.com"\n'
                   f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_server.port}\nsecurity = "none"\n', language="ja")
    dashboard.client.app.state.config = site.config
    login(dashboard.client)
    csrf = csrf_of(dashboard.client)
    answer = dashboard.client.post(f"/admin/issues/{PERIOD}/test", data={"csrf": csrf, "to": "editor@example.com"})
    assert answer.status_code == 200 and "テストメールを送信しました。" in answer.text
    [received] = smtp_server.received
    assert received.rcpt_tos == ("editor@example.com",) and received.message()["Subject"].startswith("[TEST] Weekly")
    bad = dashboard.client.post(f"/admin/issues/{PERIOD}/test", data={"csrf": csrf, "to": "not an address"})
    assert bad.status_code == 400 and len(smtp_server.received) == 1


def test_subscribers_search_filters_and_pages(dashboard) -> None:
    client, store = dashboard.client, dashboard.store
    store.save_subscribers([SubscriberInput(f"reader{i:03d}@example.org", f"読者{i}") for i in range(60)],
                           status="active")
    login(client)
    assert "taro@example.jp" in client.get("/admin/subscribers?q=山田").text
    by_topic = client.get("/admin/subscribers", params={"topic": "categories/ai導入戦略"}).text
    assert "taro@example.jp" in by_topic and "alice@example.com" not in by_topic
    first = client.get("/admin/subscribers").text
    assert first.count('href="/admin/subscribers/') == 50 and 'rel="next"' in first
    second = client.get("/admin/subscribers?after=50").text
    assert "reader059@example.org" in second and 'rel="next"' not in second
    store.suppress("bob@example.com", "550 no such user")
    suppressed = client.get("/admin/subscribers?suppressed=yes").text
    assert "bob@example.com" in suppressed and "alice@example.com" not in suppressed


def test_subscriber_page_history_and_actions(dashboard) -> None:
    client, store = dashboard.client, dashboard.store
    login(client)
    csrf = csrf_of(client)
    bob = store.subscriber("bob@example.com")
    page = client.get(f"/admin/subscribers/{bob.id}").text
    assert PERIOD in page and "550 no such user" in page
    client.post(f"/admin/subscribers/{bob.id}/suppress", data={"csrf": csrf})
    assert store.suppression("bob@example.com") is not None
    client.post(f"/admin/subscribers/{bob.id}/lift", data={"csrf": csrf})
    assert store.suppression("bob@example.com") is None
    client.post(f"/admin/subscribers/{bob.id}/choices", data={"csrf": csrf, "cadence": "weekly",
                "topics": ["categories/ai導入戦略", "categories/nope"], "timezone": "Europe/Paris"})
    bob = store.subscriber("bob@example.com")
    assert (bob.topics, bob.cadence, bob.timezone) == (("categories/ai導入戦略",), "weekly", "Europe/Paris")
    page = client.get(f"/admin/subscribers/{bob.id}").text
    assert "subscriber.choices bob@example.com: categories/ai導入戦略; weekly; Europe/Paris" in page
    refused = client.post(f"/admin/subscribers/{bob.id}/choices", data={"csrf": csrf, "timezone": "Mars/Base"})
    assert refused.status_code == 400 and store.subscriber("bob@example.com") == bob


def test_a_readers_own_changes_are_in_their_history(dashboard) -> None:
    client, store = dashboard.client, dashboard.store
    taro = store.subscriber("taro@example.jp")
    link = f"/preferences/{make_token(SECRET, 'preferences', taro.id)}"
    assert client.post(link, data={"topics": ["categories/news"]}).status_code == 200   # the reader, from mail
    assert client.post(f"/unsubscribe/{make_token(SECRET, 'unsubscribe', taro.id)}").status_code == 200
    login(client)
    page = client.get(f"/admin/subscribers/{taro.id}").text
    assert "(reader): reader.preferences taro@example.jp: categories/news; weekly; site time zone" in page
    assert "(reader): reader.unsubscribe taro@example.jp" in page
    assert "reader." not in client.get(f"/admin/subscribers/{store.subscriber('bob@example.com').id}").text


def test_export_csv_of_the_filtered_list(dashboard) -> None:
    login(dashboard.client)
    answer = dashboard.client.get("/admin/subscribers.csv", params={"topic": "categories/AI導入戦略"})
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [(r["email"], r["name"], r["topics"]) for r in rows] == [
        ("taro@example.jp", "山田太郎", "categories/AI導入戦略")]


def test_no_page_reflects_unescaped_input(dashboard) -> None:
    client, store = dashboard.client, dashboard.store
    store.save_subscribers([SubscriberInput("mallory@example.com", SCRIPT)], status="active")
    mallory = store.subscriber("mallory@example.com")
    login(client)
    pages = [client.get("/admin/subscribers", params={"q": SCRIPT}),
             client.get("/admin/subscribers", params={"q": "mallory", "topic": SCRIPT, "status": SCRIPT}),
             client.get(f"/admin/subscribers/{mallory.id}"),
             client.get("/admin/login", params={"next": '"><script>alert(1)</script>'}),
             client.get("/admin/subscribers.csv", params={"q": SCRIPT})]
    login(client, name=SCRIPT, password="wrong password")
    pages.append(client.get("/admin/audit"))
    for answer in pages[:4] + pages[5:]:
        assert answer.status_code == 200 and SCRIPT not in answer.text, answer.url
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[2].text and "&lt;script&gt;" in pages[5].text


def test_feeds_page_lists_the_published_feeds_and_rebuilds(site, dashboard) -> None:
    site.post("2026-11-29-ai.md", """
        ---
        title: AI導入戦略の現在
        categories: [AI導入戦略]
        ---
        本文です。
        """)
    login(dashboard.client)
    assert "公開中のフィードはまだありません" in dashboard.client.get("/admin/feeds").text
    answer = dashboard.client.post("/admin/feeds/rebuild", data={"csrf": csrf_of(dashboard.client)})
    assert answer.status_code == 200 and "フィードを再生成しました。" in answer.text
    assert "https://blog.example.com/feed.xml" in answer.text and "<td class=\"n\">1</td>" in answer.text


def test_every_page_and_the_issue_actions_on_postgresql(site, monkeypatch, pg_url) -> None:
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    site.configure(f'[store]\nurl = "{pg_url}"\n[web]\npublic_url = "https://news.example.com"\n')
    config = site.config
    store = emptied(open_store(config.store_url))
    accounts.add_user(store, ACCOUNT, PASSWORD)
    seed(store)
    store.suppress("bob@example.com", "550 no such user")
    returned(verp_config(site), store, dsn("carol@example.com", "4.2.2", "452 4.2.2 mailbox full", "full@mx"),
             "carol@example.com")
    try:
        with TestClient(make_app(config, store), base_url="https://testserver") as client:
            assert login(client).status_code == 303
            for path, expected in (("/admin", "25.0%"), (f"/admin/issues/{PERIOD}", "550 no such user"),
                                   ("/admin/subscribers?q=山田", "taro@example.jp"),
                                   ("/admin/subscribers?topic=categories/AI導入戦略&suppressed=no", "taro@example.jp"),
                                   ("/admin/subscribers?suppressed=yes&status=active", "bob@example.com"),
                                   ("/admin/subscribers/3", "550 no such user"),
                                   ("/admin/subscribers/4", "452 4.2.2 mailbox full"),
                                   ("/admin/bounces?kind=soft", "452 4.2.2 mailbox full"),
                                   ("/admin/bounces/1", "Final-Recipient: rfc822; carol@example.com"),
                                   ("/admin/audit", "login")):
                answer = client.get(path)
                assert answer.status_code == 200 and expected in answer.text, path
            token = csrf_of(client)
            client.post(f"/admin/issues/{PERIOD}/pause", data={"csrf": token})
            client.post(f"/admin/issues/{PERIOD}/cancel", data={"csrf": token})
            assert store.counts(1)["cancelled"] == 2 and holds.state(store, 1) == "cancelled"
            client.post("/admin/logout", data={"csrf": token})
            assert client.get("/admin", follow_redirects=False).status_code == 303
    finally:
        store.engine.dispose()
