"""What a reader chooses on the subscribe and preferences pages: topics by group (only the feeds the site has),
how often (only the cadences the operator offers; no choice when there is one) and their time zone (filled in
by the browser's script, the site's zone without it; checked by the server). Starlette's TestClient on a real
SQLite store; the pages in Chromium are in test_reader_choices_browser.py."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from lxml import html
from starlette.testclient import TestClient

from feedpub.records import SubscriberInput
from feedpub.site.build import Topic
from feedpub.store import open_store
from feedpub.tokens import make_token
from feedpub.web.app import create_app

SECRET = "reader-choices-secret"
TOPICS = [Topic("categories/ai導入戦略", "AI導入戦略"), Topic("categories/news", "news"),
          Topic("tags/python", "Python"), Topic("authors/hanako", "花子")]
EVERY_CADENCE = '[digest]\ncadences = ["post", "daily", "weekly", "monthly"]\n'


def served(site, monkeypatch, *, language: str = "en", digest: str = EVERY_CADENCE, topics=TOPICS):
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    site.configure(f'[web]\npublic_url = "https://news.example.com"\n{digest}', language=language)
    store = open_store(site.config.store_url)
    outbox: list[tuple[str, str, str]] = []
    app = create_app(site.config, store, send_confirmation=lambda *mail: outbox.append(mail),
                     topics=lambda: topics, health=dict)
    return TestClient(app), store, outbox


@pytest.fixture
def web(site, monkeypatch):
    client, store, outbox = served(site, monkeypatch)
    with client:
        yield client, store, outbox


def preferences_path(store, email: str) -> str:
    return f"/preferences/{make_token(SECRET, 'preferences', store.subscriber(email).id)}"


def legends(document) -> list[str]:
    return [" ".join(legend.text_content().split()) for legend in document.iter("legend")]


def test_the_subscribe_page_offers_topics_by_group_cadences_and_the_site_zone(web) -> None:
    client, _, _ = web
    answer = client.get("/subscribe")
    document = html.fromstring(answer.text)
    assert legends(document) == ["What to receive (none ticked: every post)", "Categories", "Tags", "Authors",
                                 "How often"]
    boxes = document.xpath("//input[@name='topics']")
    assert [(box.get("value"), box.getparent().text_content().strip()) for box in boxes] == [
        ("categories/ai導入戦略", "AI導入戦略"), ("categories/news", "news"), ("tags/python", "Python"),
        ("authors/hanako", "花子")]
    radios = document.xpath("//input[@name='cadence']")
    assert [(radio.get("value"), radio.get("checked") is not None) for radio in radios] == [
        ("post", False), ("daily", False), ("weekly", True), ("monthly", False)]
    # Each with when its mail leaves, in the reader's own zone (the defaults: 09:00, weekly on Mondays).
    assert [radio.getparent().text_content().strip() for radio in radios] == [
        "Each post, as it is published", "Daily, at 09:00", "Weekly, on Monday at 09:00", "Monthly, on day 1 at 09:00"]
    # Every control has a label a screen reader reads.
    assert document.xpath("//label[@for='timezone']")[0].text_content() == "Your time zone"
    zone = document.get_element_by_id("timezone")
    assert zone.value == "Asia/Tokyo"                           # without script: the site's zone
    assert zone.xpath(".//optgroup[@label='America']/option[@value='America/Los_Angeles']")[0].text == "Los Angeles"
    assert len(zone.xpath(".//option")) > 400
    # The one script, which picks the browser's zone, runs by its nonce; no other script would.
    [script] = document.xpath("//script")
    nonce = script.get("nonce")
    assert nonce and "resolvedOptions().timeZone" in script.text
    assert answer.headers["content-security-policy"].endswith(f"; script-src 'nonce-{nonce}'")
    assert client.get("/subscribe").headers["content-security-policy"] != answer.headers["content-security-policy"]


def test_only_the_groups_the_site_has_and_no_cadence_choice_when_one_is_offered(site, monkeypatch) -> None:
    client, store, outbox = served(site, monkeypatch, language="ja", digest="",
                                   topics=[Topic("tags/python", "Python")])
    with client:
        document = html.fromstring(client.get("/subscribe").text)
        assert legends(document) == ["受け取る内容（選択なし：すべての記事）", "タグ"]
        assert document.xpath("//input[@name='cadence']") == []
        answer = client.post("/subscribe", data={"email": "reader@example.com", "timezone": "Europe/Paris"})
    assert answer.status_code == 200 and "確認用のリンク" in answer.text
    stored = store.subscriber("reader@example.com")
    assert (stored.topics, stored.cadence, stored.timezone) == ((), "weekly", "Europe/Paris")


def test_a_site_without_topic_feeds_offers_none(site, monkeypatch) -> None:
    client, _, _ = served(site, monkeypatch, topics=[])
    with client:
        document = html.fromstring(client.get("/subscribe").text)
    assert document.xpath("//input[@name='topics']") == [] and legends(document) == ["How often"]


def test_signing_up_stores_the_chosen_topics_cadence_and_zone(web) -> None:
    client, store, outbox = web
    answer = client.post("/subscribe", data={"email": "reader@example.com", "topics": ["tags/python", "authors/hanako",
                                             "categories/gone"], "cadence": "daily",
                                             "timezone": "America/Los_Angeles"})
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    stored = store.subscriber("reader@example.com")
    assert (stored.status, stored.topics, stored.cadence, stored.timezone) == (
        "pending", ("tags/python", "authors/hanako"), "daily", "America/Los_Angeles")
    assert len(outbox) == 1


@pytest.mark.parametrize(("fields", "said"), [
    ({"timezone": "Mars/Olympus_Mons"}, "“Mars/Olympus_Mons” is not a time zone we know"),
    ({"timezone": "../../etc/passwd"}, "“../../etc/passwd” is not a time zone we know"),
    ({"timezone": "asia/tokyo"}, "“asia/tokyo” is not a time zone we know"),
    ({"cadence": "hourly"}, "Please choose how often you want to receive mail: Each post, as it is published; "
                            "Daily, at 09:00; Weekly, on Monday at 09:00; Monthly, on day 1 at 09:00."),
    ({"topics": ["categories/gone"]}, "None of the chosen topics exists any more"),
])
def test_a_bad_choice_is_400_saying_what_to_change_and_keeps_what_was_typed(web, fields, said) -> None:
    client, store, outbox = web
    answer = client.post("/subscribe", data={"email": "reader@example.com", "name": "Hanako",
                                             "cadence": "monthly", **fields})
    assert answer.status_code == 400
    document = html.fromstring(answer.text)
    assert said in document.xpath("//*[@role='alert']")[0].text_content()
    assert document.get_element_by_id("email").value == "reader@example.com"
    assert document.get_element_by_id("name").value == "Hanako"
    assert document.xpath("//script") == []            # what the reader chose stays: no zone guessed over it
    assert store.subscribers() == [] and outbox == []


def test_a_cadence_the_operator_does_not_offer_is_refused(site, monkeypatch) -> None:
    digest = ('[digest]\ncadences = ["weekly", "monthly"]\nschedule = ["tue 07:30", "fri 07:30"]\n'
              'monthly_on = "15 20:00"\n')
    client, store, _ = served(site, monkeypatch, digest=digest)
    with client:
        answer = client.post("/subscribe", data={"email": "reader@example.com", "cadence": "post",
                                                 "timezone": "UTC"})
    assert answer.status_code == 400 and store.subscribers() == []
    assert "Weekly, on Tuesday, Friday at 07:30; Monthly, on day 15 at 20:00." in answer.text


def test_preferences_show_and_change_what_the_reader_gets(web) -> None:
    client, store, _ = web
    store.save_subscribers([SubscriberInput("reader@example.com", "Hanako", topics=("categories/news",),
                                            cadence="weekly", timezone="")], status="active")
    path = preferences_path(store, "reader@example.com")
    document = html.fromstring(client.get(path).text)
    assert [box.get("value") for box in document.xpath("//input[@name='topics'][@checked]")] == ["categories/news"]
    assert document.xpath("//input[@name='cadence'][@checked]")[0].get("value") == "weekly"
    assert document.get_element_by_id("timezone").value == "Asia/Tokyo"   # "" is the site's zone
    assert document.xpath("//script") == []
    answer = client.post(path, data={"topics": ["tags/python"], "cadence": "post", "timezone": "Europe/Berlin"})
    assert answer.status_code == 200 and "Your preferences are saved." in answer.text
    stored = store.subscriber("reader@example.com")
    assert (stored.topics, stored.cadence, stored.timezone, stored.name) == (
        ("tags/python",), "post", "Europe/Berlin", "Hanako")
    document = html.fromstring(client.get(path).text)
    assert document.xpath("//input[@name='cadence'][@checked]")[0].get("value") == "post"
    assert document.get_element_by_id("timezone").value == "Europe/Berlin"
    # Nothing ticked: every post.
    client.post(path, data={"cadence": "post", "timezone": "Europe/Berlin"})
    assert store.subscriber("reader@example.com").topics == ()


def test_a_bad_zone_on_the_preferences_page_changes_nothing(web) -> None:
    client, store, _ = web
    store.save_subscribers([SubscriberInput("reader@example.com", topics=("categories/news",), cadence="daily",
                                            timezone="Asia/Tokyo")], status="active")
    before = store.subscriber("reader@example.com")
    answer = client.post(preferences_path(store, "reader@example.com"),
                         data={"topics": ["tags/python"], "cadence": "post", "timezone": "Nowhere/Atlantis"})
    assert answer.status_code == 400 and "“Nowhere/Atlantis” is not a time zone we know" in answer.text
    assert store.subscriber("reader@example.com") == before


def test_get_and_head_never_change_a_subscription(web) -> None:
    client, store, outbox = web
    store.save_subscribers([SubscriberInput("reader@example.com", topics=("categories/news",), cadence="daily",
                                            timezone="Asia/Tokyo")], status="active")
    before = store.subscriber("reader@example.com")
    path = preferences_path(store, "reader@example.com")
    query = "?topics=tags/python&cadence=post&timezone=UTC&email=new@example.com"
    for method in ("GET", "HEAD"):
        for where in (path + query, "/subscribe" + query):
            assert client.request(method, where).status_code == 200
    assert store.subscriber("reader@example.com") == before
    assert [s.email for s in store.subscribers()] == ["reader@example.com"] and outbox == []


def test_japanese_pages(site, monkeypatch) -> None:
    client, store, _ = served(site, monkeypatch, language="ja")
    with client:
        document = html.fromstring(client.get("/subscribe").text)
        assert legends(document) == ["受け取る内容（選択なし：すべての記事）", "カテゴリ", "タグ", "著者", "配信頻度"]
        assert [r.getparent().text_content().strip() for r in document.xpath("//input[@name='cadence']")] == [
            "記事ごと（公開時）", "毎日 09:00", "毎週 月曜 09:00", "毎月 1日 09:00"]
        assert document.xpath("//label[@for='timezone']")[0].text_content() == "お住まいのタイムゾーン"
        answer = client.post("/subscribe", data={"email": "reader@example.com", "timezone": "火星/オリンポス"})
    assert answer.status_code == 400
    assert re.search("「火星/オリンポス」は不明なタイムゾーンです", answer.text) and store.subscribers() == []


def test_switching_to_each_post_on_the_preferences_page_plans_a_catch_up_and_tells_the_daemon(
        site, monkeypatch) -> None:
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    site.configure(f'[web]\npublic_url = "https://news.example.com"\n{EVERY_CADENCE}', language="ja")
    store = open_store(site.config.store_url)
    told: list[str] = []
    app = create_app(site.config, store, send_confirmation=lambda *mail: None, topics=lambda: TOPICS, health=dict,
                     chosen=lambda: told.append("chosen"))
    store.save_subscribers([SubscriberInput("yomi@example.jp", "読", cadence="weekly")], status="active")
    path = preferences_path(store, "yomi@example.jp")
    with TestClient(app) as client:
        assert client.post(path, data={"cadence": "post", "timezone": "Asia/Tokyo"}).status_code == 200
    assert told == ["chosen"]                       # the daemon's cadence job looks now, not at its next slot
    ((reader, _),) = store.catching_up(datetime.now(UTC))
    assert (reader.id, reader.cadence) == (store.subscriber("yomi@example.jp").id, "post")
    store.engine.dispose()
