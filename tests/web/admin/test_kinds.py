"""The dashboard's mails by kind (each post's, daily, weekly, monthly, welcome): the overview's totals per kind and
their chart, the mails page filtered by kind, and a post mail paused and resumed from its page as an issue is —
on the seeded dashboard (one weekly issue: sent, deferred, failed and queued rows) with mails of other kinds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from lxml import html
from starlette.testclient import TestClient

from feedpub import accounts
from feedpub.records import MAIL_KINDS, StoredVariant
from feedpub.schema import deliveries
from feedpub.store import open_store
from feedpub.web.admin import queries
from tests.conftest import emptied
from tests.web.admin.conftest import ACCOUNT, PASSWORD, PERIOD, SECRET, csrf_of, login, make_app, seed

NOW = datetime.now(UTC)
POST = "2026-12-01-0910-post-tools"
HOLD_PAUSED = "一時停止中"


def mail(store, kind: str, period: str, readers: list[int], zone: str = "", sent: int = 0) -> int:
    """A stored mail of `kind` to `readers`, the first `sent` of them already sent (just now)."""
    issue = store.create_issue(period=period, slot=NOW, starts=NOW - timedelta(days=1), ends=NOW, kind=kind,
                               zone=zone, variants=[StoredVariant("", f"{kind} mail", "<p>本文</p>", "本文")],
                               recipients=dict.fromkeys(readers, ""))
    with store.writing() as conn:
        for reader in readers[:sent]:
            conn.execute(deliveries.update().where(deliveries.c.issue_id == issue.id,
                                                   deliveries.c.subscriber_id == reader)
                         .values(status="sent", updated_at=NOW))
    return issue.id


def kinds_table(page: str) -> dict[str, list[str]]:
    rows = html.fromstring(page).xpath("//table[@id='kinds']/tbody/tr")
    return {row[0].text_content().strip(): [" ".join(cell.text_content().split()) for cell in row[1:]]
            for row in rows}


def test_the_overview_counts_mails_by_kind_and_charts_them(dashboard) -> None:
    client, store = dashboard.client, dashboard.store
    readers = sorted(s.id for s in store.subscribers())
    mail(store, "post", POST, readers[:3], sent=2)
    mail(store, "post", "2026-12-02-0910-post-rust", readers[:1], sent=1)
    mail(store, "daily", "2026-12-02-daily-los-angeles", readers[1:3], zone="America/Los_Angeles")
    mail(store, "welcome", "2026-12-02-welcome-4", readers[3:], sent=1)
    login(client)
    page = client.get("/admin").text
    table = kinds_table(page)
    # Kind: mails, recipients, sent, deferred, failed, bounced, complained, waiting (with rates)
    assert table == {
        "記事ごと": ["2", "4", "3 75.0%", "0 0.0%", "0 0.0%", "0 0.0%", "0 0.0%", "1"],
        "毎日": ["1", "2", "0 0.0%", "0 0.0%", "0 0.0%", "0 –", "0 –", "2"],
        "毎週": ["1", "4", "1 25.0%", "1 25.0%", "1 25.0%", "0 0.0%", "0 0.0%", "1"],
        "毎月": ["0", "0", "0 –", "0 –", "0 –", "0 –", "0 –", "0"],
        "ウェルカム": ["1", "1", "1 100.0%", "0 0.0%", "0 0.0%", "0 0.0%", "0 0.0%", "0"]}
    chart = html.fromstring(page).xpath("//figure[@aria-label='1日に送信したメール（種類別）']")[0]
    legend = " ".join(chart.xpath(".//text()"))
    assert all(word in legend for word in ("記事ごと", "毎日", "毎週", "毎月", "ウェルカム"))


def test_the_mails_page_lists_one_kind_and_the_post_mail_pauses_like_an_issue(dashboard) -> None:
    client, store = dashboard.client, dashboard.store
    readers = sorted(s.id for s in store.subscribers())
    mail(store, "post", POST, readers[:3], sent=1)
    mail(store, "daily", "2026-12-02-daily-los-angeles", readers[1:3], zone="America/Los_Angeles")
    login(client)
    every = client.get("/admin/issues").text
    assert all(period in every for period in (PERIOD, POST, "2026-12-02-daily-los-angeles"))
    posts = html.fromstring(client.get("/admin/issues?kind=post").text)
    assert [a.text for a in posts.xpath("//td[@class='key']/a")] == [POST]
    assert posts.xpath("//strong[@aria-current='page']")[0].text == "記事ごと"
    daily = client.get("/admin/issues?kind=daily").text
    assert "America/Los_Angeles" in daily and POST not in daily
    assert PERIOD in client.get("/admin/issues?kind=nonsense").text          # an unknown kind: every mail

    page = client.get(f"/admin/issues/{POST}").text
    assert "記事ごと" in page
    csrf = csrf_of(client)
    assert client.post(f"/admin/issues/{POST}/pause", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert kinds_table(client.get("/admin").text)["記事ごと"][-1] == "2"       # still waiting, on hold
    assert HOLD_PAUSED in client.get("/admin/issues?kind=post").text
    client.post(f"/admin/issues/{POST}/cancel", data={"csrf": csrf})
    with store.engine.connect() as conn:
        statuses = sorted(conn.execute(sa.select(deliveries.c.status).where(
            deliveries.c.issue_id == store.issue(POST).id)).scalars())
    assert statuses == ["cancelled", "cancelled", "sent"]


def test_mails_by_kind_on_postgresql(site, monkeypatch, pg_url) -> None:
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    site.configure(f'[store]\nurl = "{pg_url}"\n[web]\npublic_url = "https://news.example.com"\n')
    config = site.config
    store = emptied(open_store(config.store_url))
    accounts.add_user(store, ACCOUNT, PASSWORD)
    seed(store)
    readers = sorted(s.id for s in store.subscribers())
    mail(store, "post", POST, readers[:3], sent=2)
    mail(store, "monthly", "2026-12-01-monthly-asia-kolkata", readers[2:], zone="Asia/Kolkata", sent=2)
    days, sent = queries.sent_per_day(store, MAIL_KINDS, NOW, config.site.tz)
    assert len(days) == 14 and days[-1] == NOW.astimezone(config.site.tz).date()
    assert {kind: sum(counts) for kind, counts in sent.items()} == {
        "post": 2, "daily": 0, "weekly": 1, "monthly": 2, "welcome": 0}      # the seeded weekly's sent row: today
    try:
        with TestClient(make_app(config, store), base_url="https://testserver") as client:
            login(client)
            table = kinds_table(client.get("/admin").text)
            assert table["each post"][:3] == ["1", "3", "2 66.7%"] and table["monthly"][:3] == ["1", "2", "2 100.0%"]
            assert table["weekly"][:2] == ["1", "4"]           # in English: the site's language is not set
            monthly = client.get("/admin/issues?kind=monthly").text
            assert "Asia/Kolkata" in monthly and POST not in monthly
    finally:
        store.engine.dispose()
