"""The web app through Starlette's test client, on a real SQLite store."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from feedpub.cli import LogWords
from feedpub.records import SubscriberInput
from feedpub.send.smtp import Refused
from feedpub.site.build import Topic
from feedpub.store import open_store
from feedpub.strings import operator_strings
from feedpub.tokens import make_token
from feedpub.web.app import create_app

TOPICS = [Topic("categories/ai導入戦略", "AI導入戦略"), Topic("categories/news", "news")]

SECRET = "test-secret-key"


@pytest.fixture
def web(site, monkeypatch):
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    site.configure('[web]\npublic_url = "https://news.example.com"\nsubscribe_limit = 5\n', language="ja")
    config = site.config
    store = open_store(config.store_url)
    outbox: list[tuple[str, str, str]] = []
    app = create_app(config, store, send_confirmation=lambda *mail: outbox.append(mail),
                     topics=lambda: TOPICS, health=lambda: {"last_build": "2025-12-16T00:00:00Z"})
    (config.output_dir / "categories" / "news").mkdir(parents=True)
    (config.output_dir / "feed.xml").write_text("<feed/>", encoding="utf-8")
    (config.output_dir / "categories" / "news" / "rss.xml").write_text("<rss/>", encoding="utf-8")
    (config.output_dir / "feed.json").write_text("{}", encoding="utf-8")
    (config.output_dir / "digests" / "2025-12-15-0900").mkdir(parents=True)
    (config.output_dir / "digests" / "2025-12-15-0900" / "index.html").write_text("<p>issue</p>", encoding="utf-8")
    with TestClient(app) as client:
        yield client, store, outbox


def token(store, purpose: str, email: str, secret: str = SECRET) -> str:
    """A link token for the stored subscriber `email`, as mail carries it."""
    return make_token(secret, purpose, store.subscriber(email).id)


def tampered(value: str) -> str:
    """One character changed inside the signature (the last base64 character may only carry padding)."""
    return value[:-5] + ("A" if value[-5] != "A" else "B") + value[-4:]


def test_subscribe_form_lists_categories_in_the_site_language(web) -> None:
    client, _, _ = web
    page = client.get("/subscribe")
    assert page.status_code == 200
    assert '<html lang="ja">' in page.text and "メールアドレス" in page.text
    assert 'value="categories/ai導入戦略"' in page.text


def test_double_opt_in(web) -> None:
    client, store, outbox = web
    answer = client.post("/subscribe", data={"email": "Reader@Example.com", "name": "読者\r\nBcc: x@evil",
                                             "topics": ["categories/news", "categories/unknown"]})
    assert answer.status_code == 200 and "確認用のリンク" in answer.text
    subscriber = store.subscriber("reader@example.com")
    assert subscriber.status == "pending" and subscriber.topics == ("categories/news",)
    assert "\n" not in subscriber.name
    [(to, subject, body)] = outbox
    assert to == "Reader@example.com" and "購読確認" in subject
    link = next(line for line in body.splitlines() if line.startswith("https://news.example.com/confirm/"))
    shown = client.get(link.removeprefix("https://news.example.com"))
    assert shown.status_code == 200 and "Reader@example.com でダイジェストを受け取りますか" in shown.text
    assert store.subscriber("reader@example.com").status == "pending"      # opening the link is not confirming
    confirmed = client.post(link.removeprefix("https://news.example.com"))
    assert confirmed.status_code == 200 and "購読が確定しました" in confirmed.text
    assert store.subscriber("reader@example.com").status == "active"


def test_resubscribing_reveals_nothing_and_changes_nothing(web) -> None:
    client, store, outbox = web
    store.save_subscribers([SubscriberInput("known@example.com", "山田太郎", ("categories/news",))], status="active")
    before = store.subscriber("known@example.com")
    known = client.post("/subscribe", data={"email": "KNOWN@example.com", "name": "Mallory <evil>",
                                            "topics": ["categories/ai導入戦略"]})
    unknown = client.post("/subscribe", data={"email": "new@example.com", "name": "Mallory <evil>",
                                              "topics": ["categories/ai導入戦略"]})
    assert known.status_code == unknown.status_code == 200
    assert known.content == unknown.content and known.headers == unknown.headers
    assert store.subscriber("known@example.com") == before     # address case, name, categories, status
    # The owner is told, with a link to the page where they change what they receive.
    (to, subject, body), (new_to, _, new_body) = outbox
    assert to == "known@example.com" and subject == "Test blog のご購読について"
    assert "すでに購読中" in body and "/confirm/" not in body
    preferences = re.search(r"https://news.example.com(/preferences/\S+)", body)[1]
    assert 'value="categories/news" checked' in client.get(preferences).text
    assert new_to == "new@example.com" and "/confirm/" in new_body


def test_invalid_address_is_refused(web) -> None:
    client, store, outbox = web
    answer = client.post("/subscribe", data={"email": "not an address"})
    assert answer.status_code == 400 and "正しいメールアドレス" in answer.text
    assert outbox == [] and store.subscribers() == []


def test_rate_limits_per_address_and_per_ip(web) -> None:
    client, _, outbox = web
    for _ in range(4):
        client.post("/subscribe", data={"email": "target@example.com"})
    assert len(outbox) == 3  # per-address limit: no mail bombing of one inbox
    for _ in range(5):
        assert client.post("/subscribe", data={"email": "not an address"}).status_code == 400  # never counted
    client.post("/subscribe", data={"email": "other1@example.com"})
    refused = client.post("/subscribe", data={"email": "other2@example.com"})
    # web.subscribe_limit = 5 requests an hour from one client; the answer says when to come back.
    assert refused.status_code == 429
    assert 3500 <= int(refused.headers["retry-after"]) <= 3600
    assert "1時間に5件まで" in refused.text and "60分後" in refused.text
    assert len(outbox) == 4


def test_links_carry_no_address(web) -> None:
    client, store, outbox = web
    client.post("/subscribe", data={"email": "alice@example.com"})
    [(_, _, body)] = outbox
    link = next(line for line in body.splitlines() if "/confirm/" in line)
    token_text = link.rsplit("/", 1)[1]
    assert len(token_text) < 40
    readable = token_text + "".join(base64.urlsafe_b64decode(part + "==").decode("latin-1")
                                    for part in token_text.split("."))
    assert "alice" not in readable.lower() and "YWxpY2" not in token_text
    assert client.post(link.removeprefix("https://news.example.com")).status_code == 200


def legacy_token(purpose: str, email: str, issued: float) -> str:
    """A link as mail sent before opaque ids carried it: the address, the time, the HMAC under the old key."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    seconds = int(issued)
    signed = f"{b64(email.encode())}.{b64(seconds.to_bytes((seconds.bit_length() + 7) // 8, 'big'))}"
    key = hmac.new(SECRET.encode(), f"feedpub.{purpose}".encode(), hashlib.sha256).digest()
    return f"{signed}.{b64(hmac.digest(key, signed.encode(), 'sha256')[:16])}"


def test_links_in_mail_sent_before_ids_work_for_a_year(web) -> None:
    client, store, _ = web
    store.save_subscribers([SubscriberInput("old@example.com")], status="active")
    recent = legacy_token("unsubscribe", "old@example.com", time.time() - 300 * 86400)
    expired = legacy_token("unsubscribe", "old@example.com", time.time() - 366 * 86400)
    assert client.post(f"/unsubscribe/{expired}").status_code == 400
    assert store.subscriber("old@example.com").status == "active"
    assert "old@example.com" in client.get(f"/unsubscribe/{recent}").text
    assert client.post(f"/unsubscribe/{recent}").status_code == 200
    assert store.subscriber("old@example.com").status == "unsubscribed"


def test_confirm_token_is_single_purpose_and_unforgeable(web) -> None:
    client, store, _ = web
    store.save_subscribers([SubscriberInput("a@example.com")], status=None, new_status="pending")
    for bad in (token(store, "unsubscribe", "a@example.com"), tampered(token(store, "confirm", "a@example.com")),
                "garbage"):
        assert client.get(f"/confirm/{bad}").status_code == 400
        assert client.post(f"/confirm/{bad}").status_code == 400
    assert store.subscriber("a@example.com").status == "pending"


def test_one_click_unsubscribe(web) -> None:
    client, store, _ = web
    store.save_subscribers([SubscriberInput("b@example.com")], status="active")
    url = f"/unsubscribe/{token(store, 'unsubscribe', 'b@example.com')}"
    shown = client.get(url)
    assert shown.status_code == 200 and "<button" in shown.text
    assert store.subscriber("b@example.com").status == "active"  # GET never unsubscribes
    client.cookies.clear()
    done = client.post(url, content="List-Unsubscribe=One-Click",
                       headers={"content-type": "application/x-www-form-urlencoded"}, follow_redirects=False)
    assert done.status_code == 200
    assert store.subscriber("b@example.com").status == "unsubscribed"
    assert store.suppression("b@example.com") is not None


def test_forged_unsubscribe_changes_nothing(web) -> None:
    client, store, _ = web
    store.save_subscribers([SubscriberInput("c@example.com")], status="active")
    good = token(store, "unsubscribe", "c@example.com")
    forged = [tampered(good), token(store, "preferences", "c@example.com"),
              token(store, "unsubscribe", "c@example.com", secret="another-secret")]
    for bad in forged:
        assert client.post(f"/unsubscribe/{bad}", content="List-Unsubscribe=One-Click").status_code == 400
    assert store.subscriber("c@example.com").status == "active"


def test_preferences(web) -> None:
    client, store, _ = web
    store.save_subscribers([SubscriberInput("d@example.com", None, ("categories/news",))], status="active")
    url = f"/preferences/{token(store, 'preferences', 'd@example.com')}"
    page = client.get(url).text
    assert 'value="categories/news" checked' in page
    assert "d@example.com の配信設定" in page                        # whose preferences these are
    leave = re.search(r'href="https://news.example.com(/unsubscribe/[^"]+)"', page)[1]
    assert "d@example.com" in client.get(leave).text              # the reader's own unsubscribe page
    assert client.post(url, data={"topics": ["categories/ai導入戦略"]}).status_code == 200
    assert store.subscriber("d@example.com").topics == ("categories/ai導入戦略",)


def test_preferences_with_only_unknown_categories_are_refused_and_kept(web) -> None:
    client, store, _ = web
    store.save_subscribers([SubscriberInput("e@example.com", None, ("categories/news",))], status="active")
    url = f"/preferences/{token(store, 'preferences', 'e@example.com')}"
    answer = client.post(url, data={"topics": ["categories/gone-category"]})
    assert answer.status_code == 400
    assert "設定は変更されていません" in answer.text and 'value="categories/news" checked' in answer.text
    assert store.subscriber("e@example.com").topics == ("categories/news",)


def test_feeds_served_with_types_etag_and_304(web) -> None:
    client, _, _ = web
    for path, media_type in [("/feed.xml", "application/atom+xml"), ("/categories/news/rss.xml", "application/rss+xml"),
                             ("/feed.json", "application/feed+json")]:
        first = client.get(path)
        assert first.status_code == 200
        assert first.headers["content-type"].startswith(media_type)
        assert first.headers["etag"] and first.headers["last-modified"]
        again = client.get(path, headers={"if-none-match": first.headers["etag"]})
        assert again.status_code == 304
    assert client.get("/digests/2025-12-15-0900/").text == "<p>issue</p>"
    assert client.get("/nothing-here.xml").status_code == 404


def test_healthz(web) -> None:
    client, _, _ = web
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "last_digest_period": None, "queued_deliveries": 0,
                             "last_build": "2025-12-16T00:00:00Z", "problems": [], "warnings": []}


@pytest.mark.parametrize(("problems", "status", "code"),
                         [([], "ok", 200), (["posts/b.md:1: 壊れている"], "problems", 503)])
def test_healthz_answers_503_for_problems_and_200_for_warnings_alone(site, monkeypatch, problems, status, code) -> None:
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    warnings = ["posts/a.md:3: key 'title' appears twice; the last one is used (expected each key once)"]
    app = create_app(site.config, open_store(site.config.store_url), send_confirmation=lambda *mail: None,
                     topics=lambda: [], health=lambda: {"last_build": None, "problems": problems,
                                                            "warnings": warnings})
    with TestClient(app) as client:
        answer = client.get("/healthz")
    assert answer.status_code == code
    assert answer.json()["status"] == status
    assert answer.json()["problems"] == problems and answer.json()["warnings"] == warnings


def test_archive_links_without_token_explain_what_to_do(web) -> None:
    client, _, _ = web
    for path in ("/unsubscribe", "/preferences"):
        page = client.get(path)
        assert page.status_code == 200 and "ダイジェスト末尾にあるリンク" in page.text


def test_dot_files_and_dot_folders_are_never_served(web):
    client, _, _ = web
    assert client.get("/feed.xml").status_code == 200
    # The build's manifest and a preview or cache folder written beside the feeds stay private.
    output = Path(client.app.routes[-1].app.app.directory)
    (output / ".feedpub-manifest").write_text("feed.xml\n", encoding="utf-8")
    (output / ".feedpub" / "preview").mkdir(parents=True)
    (output / ".feedpub" / "preview" / "index.html").write_text("<p>unsent</p>", encoding="utf-8")
    for path in ("/.feedpub-manifest", "/.feedpub/preview/index.html", "/.feedpub/preview/",
                 "/categories/../.feedpub-manifest"):
        assert client.get(path).status_code == 404, path


def test_page_words_are_overridden_from_the_templates_folder(site, monkeypatch) -> None:
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    (site.root / "pages").mkdir()
    (site.root / "pages" / "strings.toml").write_text('[ja]\nsubscribe = "登録する"\n', encoding="utf-8")
    site.configure('[web]\ntemplates_dir = "pages"\n', language="ja")
    app = create_app(site.config, open_store(site.config.store_url), send_confirmation=lambda *mail: None,
                     topics=list, health=dict)
    page = TestClient(app).get("/subscribe").text
    assert "登録する</button>" in page and "メールアドレス" in page     # the rest still shipped


class Lines(logging.Handler):
    """The lines an operator reads in the daemon's log: through the daemon's filter, in site.language."""

    def __init__(self, config) -> None:
        super().__init__()
        self.lines: list[str] = []
        words = LogWords()
        words.source = lambda: operator_strings(config, "problems")
        self.addFilter(words)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.mark.parametrize(("language", "lines"), [
    ("en", ["the subscribe form's mail to reader@example.com was not sent: 451 try later",
            "the welcome mail of known@example.com was not queued"]),
    ("ja", ["購読フォームから reader@example.com へのメールを送れませんでした: 451 try later",
            "known@example.com への歓迎メールをキューに入れられませんでした"]),
])
def test_a_mail_not_sent_is_logged_in_the_site_language(site, monkeypatch, language, lines) -> None:
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    site.configure('[web]\npublic_url = "https://news.example.com"\n', language=language)
    config = site.config
    store = open_store(config.store_url)
    outbox: list[str] = []

    def mail_or_refuse(to: str, subject: str, text: str) -> None:
        if to == "reader@example.com":
            raise Refused(451, "try later")
        outbox.append(text)

    def fail(reader) -> None:
        raise RuntimeError("the queue is gone")

    log, seen = logging.getLogger("feedpub.web"), Lines(config)
    log.addHandler(seen)
    try:
        with TestClient(create_app(config, store, send_confirmation=mail_or_refuse, topics=list, health=dict,
                                   welcome=fail)) as client:
            assert client.post("/subscribe", data={"email": "reader@example.com"}).status_code == 503
            assert client.post("/subscribe", data={"email": "known@example.com"}).status_code == 200
            link = re.search(r"https://news.example.com(/confirm/\S+)", outbox[0])[1]
            assert client.post(link).status_code == 200
    finally:
        log.removeHandler(seen)
    assert seen.lines == lines
