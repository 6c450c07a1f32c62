"""Each reader's own cadence, driven through the real dispatch with a clock on a real SQLite store and
aiosmtpd: a post's mail after `digest.post_delay` (never again after an edit), bulk imports and backdated
posts left to the digests, a daily reader in Los Angeles and a weekly one in Tokyo, the welcome mail, and a
reader switching cadence mid-week who gets every post once."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from starlette.testclient import TestClient

from feedpub.records import SubscriberInput
from feedpub.send import reader_mail
from feedpub.send.reader_mail import queue_welcome
from feedpub.store import open_store
from feedpub.web.app import create_app
from tests.smtp_server import SMTPTestServer

TOKYO, LA = ZoneInfo("Asia/Tokyo"), ZoneInfo("America/Los_Angeles")
MONDAY = datetime(2026, 12, 7, 9, 0, tzinfo=TOKYO)
POST = "---\ntitle: {title}\ndate: {date:%Y-%m-%d %H:%M:%S %z}\ncategories: [{category}]\n---\n{title}の本文。\n"


@pytest.fixture
def setup(site, smtp_server: SMTPTestServer, monkeypatch):
    monkeypatch.setenv("FEEDPUB_SECRET", "s")
    site.configure(f"""
[digest]
cadences = ["post", "daily", "weekly", "monthly"]
schedule = "mon 09:00"
daily_at = "07:00"
post_delay = "10m"
post_burst = 3
welcome_posts = 2
[smtp]
host = "127.0.0.1"
port = {smtp_server.port}
security = "none"
""", language="ja")
    store = open_store(site.config.store_url)
    yield site, store, smtp_server
    store.engine.dispose()


def send_due(config, store, now: datetime) -> None:
    """As the daemon runs it: a slot missed by more than digest.misfire_grace is skipped."""
    reader_mail.send_due(config, store, now, missed_after=timedelta(hours=6))


def publish(site, name: str, title: str, date: datetime, category: str = "news") -> None:
    site.post(f"{name}.md", POST.format(title=title, date=date, category=category))


def mails(smtp: SMTPTestServer) -> list[tuple[str, str, str]]:
    """(recipient, subject, text body) of every mail, in arrival order."""
    found = []
    for received in smtp.received:
        message = received.message()
        found += [(rcpt, str(message["Subject"]), message.get_body(("plain",)).get_content())
                  for rcpt in received.rcpt_tos]
    return found


def test_a_post_readers_mail_comes_after_the_delay_once_and_digests_carry_it_in_each_zone(setup):
    site, store, smtp = setup
    store.save_subscribers([SubscriberInput("post@example.jp", "", (), "post", "Asia/Tokyo"),
                            SubscriberInput("daily@example.com", "", ("categories/news",), "daily",
                                            "America/Los_Angeles"),
                            SubscriberInput("weekly@example.jp", "", (), "weekly", "")], status="active")
    publish(site, "2026-12-01-old", "前からある記事", MONDAY - timedelta(days=6))
    first_look = MONDAY + timedelta(hours=1)
    send_due(site.config, store, first_look)          # the archive at the first look is no news: no post mail
    # The Monday weekly of the site's zone, whose first issue reaches a week back: the post reader takes it too
    # (it carries what no post mail brings them).
    assert sorted(m[0] for m in mails(smtp)) == ["post@example.jp", "weekly@example.jp"]

    seen = MONDAY + timedelta(hours=2)
    publish(site, "2026-12-07-new", "新しい記事", seen - timedelta(minutes=1))
    send_due(site.config, store, seen)
    send_due(site.config, store, seen + timedelta(minutes=9))
    assert len(mails(smtp)) == 2                       # not before digest.post_delay
    site.post("2026-12-07-new.md", POST.format(title="新しい記事（修正）", date=seen - timedelta(minutes=1),
                                                 category="news"))
    send_due(site.config, store, seen + timedelta(minutes=11))
    post_mail = mails(smtp)[2]
    assert post_mail[:2] == ("post@example.jp", "新しい記事（修正）")    # as it is when sent
    assert "新しい記事（修正）の本文。" in post_mail[2] and "新しい記事を1件ずつメールでお届けします。" in post_mail[2]
    site.post("2026-12-07-new.md", POST.format(title="また直した", date=seen - timedelta(minutes=1), category="news"))
    send_due(site.config, store, seen + timedelta(hours=3))
    assert len(mails(smtp)) == 3                       # an edit never mails again

    # The next 07:00 in Los Angeles (midnight in Tokyo): the daily reader gets the new post (their first
    # window reaches a day back only: the old post is older).
    la_morning = datetime(2026, 12, 7, 7, 0, tzinfo=LA)
    send_due(site.config, store, la_morning + timedelta(minutes=1))
    daily = [m for m in mails(smtp) if m[0] == "daily@example.com"]
    assert len(daily) == 1 and "また直した" in daily[0][2] and "前からある記事" not in daily[0][2]
    assert "毎日 07:00（America/Los_Angeles）にダイジェストをお届けします。 対象: news" in daily[0][2]
    assert "■ また直した\r\n2026年12月6日 · news" in daily[0][2]      # the post's date where the reader lives
    # The next Monday in Tokyo: the weekly reader gets the new post; the post reader nothing (they had it).
    send_due(site.config, store, MONDAY + timedelta(days=7, minutes=1))
    assert [m[0] for m in mails(smtp)[4:]] == ["weekly@example.jp"]
    assert "また直した" in mails(smtp)[4][2]
    assert len(mails(smtp)) == 5


def test_a_bulk_import_and_a_backdated_post_go_to_the_post_readers_weekly_digest(setup):
    site, store, smtp = setup
    store.save_subscribers([SubscriberInput("post@example.jp", "", (), "post", "")], status="active")
    send_due(site.config, store, MONDAY - timedelta(days=6))           # the first look: an empty site
    seen = MONDAY - timedelta(days=3)
    for i in range(4):                                                  # more than digest.post_burst
        publish(site, f"2026-12-04-import{i}", f"移行した記事{i}", seen - timedelta(hours=i))
    send_due(site.config, store, seen)
    send_due(site.config, store, seen + timedelta(hours=1))
    assert mails(smtp) == []
    publish(site, "2026-11-20-backdated", "日付を遡った記事", seen - timedelta(days=10))
    publish(site, "2026-12-05-single", "普通の記事", seen + timedelta(days=1))
    send_due(site.config, store, seen + timedelta(days=1, minutes=1))
    send_due(site.config, store, seen + timedelta(days=1, minutes=20))
    assert [subject for _, subject, _ in mails(smtp)] == ["普通の記事"]
    send_due(site.config, store, MONDAY + timedelta(minutes=1))
    weekly = mails(smtp)[1][2]
    assert all(f"移行した記事{i}" in weekly for i in range(4)) and "普通の記事" not in weekly
    assert "日付を遡った記事" in weekly                # news from when it appeared, whatever its date


def test_the_welcome_carries_the_newest_posts_and_the_next_digest_does_not_repeat_them(setup):
    site, store, smtp = setup
    for day in (1, 2, 3):
        publish(site, f"2026-12-0{day}-p{day}", f"記事{day}", MONDAY - timedelta(days=7 - day))
    ((reader, _),) = store.save_subscribers([SubscriberInput("new@example.jp", "", (), "weekly", "")],
                                            status="active")
    welcomed = queue_welcome(site.config, store, reader, MONDAY - timedelta(days=2))
    assert welcomed.kind == "welcome"
    send_due(site.config, store, MONDAY - timedelta(days=2))          # cron: everything due, the welcome too
    ((_, subject, text),) = mails(smtp)
    assert subject == "Test blog へようこそ" and "記事3" in text and "記事2" in text and "記事1" not in text
    send_due(site.config, store, MONDAY + timedelta(minutes=1))
    assert len(mails(smtp)) == 1                        # the week's posts before the welcome: already had


def test_switching_weekly_to_daily_mid_week_brings_the_waiting_posts_once(setup):
    site, store, smtp = setup
    store.save_subscribers([SubscriberInput("switch@example.jp", "", (), "weekly", "")], status="active")
    publish(site, "2026-12-06-before", "先週の記事", MONDAY - timedelta(days=1))
    send_due(site.config, store, MONDAY + timedelta(minutes=1))
    publish(site, "2026-12-08-tue", "火曜の記事", MONDAY + timedelta(days=1))
    store.save_subscribers([SubscriberInput("switch@example.jp", None, None, "daily")], status=None)
    send_due(site.config, store, MONDAY + timedelta(days=2, hours=-1, minutes=1))   # Wednesday 07:01
    publish(site, "2026-12-09-wed", "水曜の記事", MONDAY + timedelta(days=2))
    send_due(site.config, store, MONDAY + timedelta(days=3, hours=-1, minutes=1))   # Thursday 07:01
    texts = [text for _, _, text in mails(smtp)]
    assert len(texts) == 3 and "先週の記事" in texts[0]
    assert "火曜の記事" in texts[1] and "先週の記事" not in texts[1]
    assert "水曜の記事" in texts[2] and "火曜の記事" not in texts[2]


def test_confirming_through_the_page_queues_the_welcome_and_digest_send_delivers_it(setup):
    site, store, smtp = setup
    publish(site, "2026-12-05-p", "最新の記事", datetime.now(UTC) - timedelta(days=1))
    outbox: list[tuple[str, str, str]] = []

    def welcome(reader) -> None:
        queue_welcome(site.config, store, reader, datetime.now(UTC))

    app = create_app(site.config, store, send_confirmation=lambda *mail: outbox.append(mail), topics=list,
                     health=dict, welcome=welcome)
    with TestClient(app) as client:
        assert client.post("/subscribe", data={"email": "new@example.jp"}).status_code == 200
        confirm = re.search(r"https?://[^/\s]+(/confirm/\S+)", outbox[-1][2])[1]
        assert client.post(confirm).status_code == 200
        assert client.post(confirm).status_code == 400          # used up: no second welcome
    reader_mail.send_due(site.config, store, datetime.now(UTC))
    ((rcpt, subject, text),) = mails(smtp)
    assert (rcpt, subject) == ("new@example.jp", "Test blog へようこそ")
    assert "最新の記事" in text and "対象: すべての記事" in text


def test_switching_weekly_to_each_post_mid_week_brings_the_waiting_posts_in_one_mail_after_the_delay(setup):
    site, store, smtp = setup
    store.save_subscribers([SubscriberInput("switch@example.jp", "", (), "weekly", ""),
                            SubscriberInput("post@example.jp", "", (), "post", "")], status="active")
    publish(site, "2026-12-06-before", "先週の記事", MONDAY - timedelta(days=1))
    send_due(site.config, store, MONDAY + timedelta(minutes=1))
    assert sorted(m[0] for m in mails(smtp)) == ["post@example.jp", "switch@example.jp"]
    for day, title in ((1, "火曜の記事"), (2, "水曜朝の記事")):
        seen = MONDAY + timedelta(days=day)
        publish(site, f"2026-12-0{7 + day}-p", title, seen)
        send_due(site.config, store, seen)
        send_due(site.config, store, seen + timedelta(minutes=11))    # its mail, to the post reader only
    assert [m[0] for m in mails(smtp)[2:]] == ["post@example.jp", "post@example.jp"]

    switched = MONDAY + timedelta(days=2, hours=3)                       # Wednesday 12:00
    with time_machine.travel(switched, tick=False):
        store.save_subscribers([SubscriberInput("switch@example.jp", None, None, "post")], status=None)
    assert reader_mail.next_due(site.config, store, switched) == switched + timedelta(minutes=10)
    send_due(site.config, store, switched + timedelta(minutes=9))
    assert len(mails(smtp)) == 4                                          # not before digest.post_delay
    send_due(site.config, store, switched + timedelta(minutes=10))
    send_due(site.config, store, switched + timedelta(minutes=20))
    ((to, subject, text),) = mails(smtp)[4:]
    assert (to, subject) == ("switch@example.jp", "Test blog：前回のメール以降の記事 2 件")
    assert "火曜の記事" in text and "水曜朝の記事" in text and "先週の記事" not in text
    assert "これからは新しい記事を公開ごとにお届けします。" in text
    assert "新しい記事を1件ずつメールでお届けします。" in text

    thursday = MONDAY + timedelta(days=3)
    publish(site, "2026-12-10-thu", "木曜の記事", thursday)
    send_due(site.config, store, thursday)
    send_due(site.config, store, thursday + timedelta(minutes=11))
    send_due(site.config, store, MONDAY + timedelta(days=7, minutes=1))   # the next weekly: nothing is left
    assert sorted(m[:2] for m in mails(smtp)[5:]) == [("post@example.jp", "木曜の記事"),
                                                       ("switch@example.jp", "木曜の記事")]


def test_a_switch_to_each_post_is_caught_up_once_and_a_switch_back_cancels_it(any_store):
    store = any_store
    switched = datetime(2026, 12, 9, 3, 0, tzinfo=UTC)
    store.save_subscribers([SubscriberInput("a@example.com", "", ("tags/日本語",), "weekly", "Asia/Tokyo"),
                            SubscriberInput("b@example.com", "", (), "daily", "")], status="active")
    with time_machine.travel(switched, tick=False):
        store.save_subscribers([SubscriberInput("a@example.com", None, None, "post"),
                                SubscriberInput("b@example.com", None, None, "post")], status=None)
    with time_machine.travel(switched + timedelta(minutes=1), tick=False):
        store.save_subscribers([SubscriberInput("b@example.com", None, None, "daily")], status=None)
    assert store.next_catch_up() == switched
    assert store.catching_up(switched - timedelta(seconds=1)) == []
    ((reader, since),) = store.catching_up(switched)
    assert (reader.topics, reader.cadence, reader.timezone, since) == (("tags/日本語",), "post", "Asia/Tokyo", switched)
    store.caught_up(reader.id, since)
    assert store.catching_up(switched + timedelta(days=1)) == [] and store.next_catch_up() is None
    # One who left before their catch-up and came back is welcomed instead.
    with time_machine.travel(switched, tick=False):
        store.save_subscribers([SubscriberInput("c@example.com", "", (), "weekly", "")], status="active")
        store.save_subscribers([SubscriberInput("c@example.com", None, None, "post")], status=None)
    with time_machine.travel(switched + timedelta(hours=1), tick=False):
        store.save_subscribers([SubscriberInput("c@example.com", None, None, None)], status="unsubscribed")
        store.save_subscribers([SubscriberInput("c@example.com", None, None, None)], status="active")
    assert store.catching_up(switched + timedelta(days=1)) == [] and store.next_catch_up() is None
