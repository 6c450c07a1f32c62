"""Every post reaches the readers who want it: a post dated into a window an issue already covered
(backdated, or saved after that issue went out) goes into the next issue, exactly once, and `feedpub check`
and the dashboard say so; the first issue still reaches back only `digest.first_issue_days`. On SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from feedpub import accounts
from feedpub.cli import main
from feedpub.records import SubscriberInput
from feedpub.send.dispatch import send_due_issue
from feedpub.store import open_store
from tests.conftest import emptied
from tests.smtp_server import SMTPTestServer
from tests.web.admin.conftest import ACCOUNT, PASSWORD, login, make_app

TOKYO = ZoneInfo("Asia/Tokyo")
FIRST = datetime(2026, 11, 30, 9, 0, tzinfo=TOKYO)          # a Monday: the first issue's slot
POST = "---\ntitle: {title}\ndate: {date} +09:00\n---\n{title}の本文。\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def setup(request, site, smtp_server: SMTPTestServer, monkeypatch):
    monkeypatch.setenv("FEEDPUB_SECRET", "s")
    store_url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    site.configure(f"""
[digest]
schedule = "mon 09:00"
[smtp]
host = "127.0.0.1"
port = {smtp_server.port}
security = "none"
{f'[store]{chr(10)}url = "{store_url}"' if store_url else ''}
""", language="ja")
    store = emptied(open_store(site.config.store_url)) if store_url else open_store(site.config.store_url)
    store.save_subscribers([SubscriberInput("reader@example.jp")], status="active")
    yield site, store, smtp_server
    store.engine.dispose()


def html(received) -> str:
    return received.message().get_body(("html",)).get_content()


def test_a_backdated_post_goes_into_the_next_issue_exactly_once(setup) -> None:
    site, store, smtp = setup
    site.post("2026-11-10-archive.md", POST.format(title="三週間前の記事", date="2026-11-10 10:00:00"))
    site.post("2026-11-25-in-week.md", POST.format(title="水曜の記事", date="2026-11-25 10:00:00"))
    first = send_due_issue(site.config, store, FIRST + timedelta(minutes=1))
    assert first.summary.sent == 1
    assert "水曜の記事" in html(smtp.received[0])
    assert "三週間前の記事" not in html(smtp.received[0])      # digest.first_issue_days (7) bounds the first issue

    # Saved after the first issue went out, dated inside its window.
    site.post("2026-11-27-late.md", POST.format(title="遅れて保存した記事", date="2026-11-27 18:00:00"))
    site.post("2026-12-02-this-week.md", POST.format(title="今週の記事", date="2026-12-02 10:00:00"))
    check = CliRunner().invoke(main, ["--config", str(site.toml), "check"], catch_exceptions=False)
    assert check.exit_code == 0
    notes = [line for line in check.stderr.splitlines() if "注意:" in line]     # the site is Japanese
    assert len(notes) == 1 and "2026-11-27-late.md" in notes[0]
    assert "日付 2026-11-27 18:00 は号 2026-11-30-0900 の期間内" in notes[0]
    assert "次の号に入ります" in notes[0]
    accounts.add_user(store, ACCOUNT, PASSWORD)
    with TestClient(make_app(site.config, store), base_url="https://testserver") as client:
        login(client)
        overview = client.get("/admin").text
    late = overview[overview.index('<ul id="late-posts">'):]
    assert "遅れて保存した記事" in late[:late.index("</ul>")] and "2026-11-30-0900" in late[:late.index("</ul>")]
    assert "今週の記事" not in late[:late.index("</ul>")]

    second = send_due_issue(site.config, store, FIRST + timedelta(days=7, minutes=1))
    assert second.summary.sent == 1
    body = html(smtp.received[1])
    assert "遅れて保存した記事" in body and "今週の記事" in body
    assert "水曜の記事" not in body and "三週間前の記事" not in body

    check = CliRunner().invoke(main, ["--config", str(site.toml), "check"], catch_exceptions=False)
    assert "note:" not in check.stderr                          # carried now: nothing late any more
    site.post("2026-12-09-next.md", POST.format(title="翌週の記事", date="2026-12-09 10:00:00"))
    third = send_due_issue(site.config, store, FIRST + timedelta(days=14, minutes=1))
    assert third.summary.sent == 1
    body = html(smtp.received[2])
    assert "翌週の記事" in body and "遅れて保存した記事" not in body   # exactly once
    assert [len(store.carried_since(FIRST - timedelta(days=30))[0])] == [4]


def test_a_post_older_than_the_reach_stays_out(setup) -> None:
    site, store, smtp = setup
    site.post("2026-11-25-in-week.md", POST.format(title="水曜の記事", date="2026-11-25 10:00:00"))
    send_due_issue(site.config, store, FIRST + timedelta(minutes=1))
    # Backdated five weeks: beyond the 30 days an issue reaches back for posts no issue carried.
    site.post("2026-10-20-old.md", POST.format(title="古い記事", date="2026-10-20 10:00:00"))
    site.post("2026-12-02-this-week.md", POST.format(title="今週の記事", date="2026-12-02 10:00:00"))
    second = send_due_issue(site.config, store, FIRST + timedelta(days=7, minutes=1))
    assert second.summary.sent == 1
    assert "今週の記事" in html(smtp.received[1]) and "古い記事" not in html(smtp.received[1])
