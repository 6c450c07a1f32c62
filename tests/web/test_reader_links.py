"""The reader's links as link scanners, strangers and readers use them: GET and HEAD only show a page, every
change is a POST; a known address's sign-up changes nothing; only the newest confirmation link works, once;
confirming never lifts a complaint's, a bounce's or an operator's suppression; malformed forms answer 400;
the pages' and the published folder's headers; a relay that refuses the confirmation mail leaves the reader's
link working, and a slow one holds up no other page. Starlette's TestClient on a real SQLite store, the
confirmation mail through the daemon's sender to a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import gzip
import re
import threading
from datetime import UTC, datetime, timedelta

import brotli
import pytest
import time_machine
from starlette.testclient import TestClient

from feedpub.cli.daemon import Daemon
from feedpub.records import SubscriberInput
from feedpub.schema import admin_audit, subscribers, suppressions
from feedpub.site.build import Topic
from feedpub.site.websub import Publisher
from feedpub.store import open_store
from feedpub.tokens import make_token
from feedpub.web.app import create_app

TOPICS = [Topic("categories/ai導入戦略", "AI導入戦略"), Topic("categories/news", "news")]

SECRET = "reader-links-secret"
PUBLIC = "https://news.example.com"
FEED = "<feed>" + "<entry>推論性能35%向上 — weekly roundup</entry>" * 200 + "</feed>"


@pytest.fixture
def web(site, monkeypatch):
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    site.configure(f'[web]\npublic_url = "{PUBLIC}"\n', language="ja")
    config = site.config
    store = open_store(config.store_url)
    outbox: list[tuple[str, str, str]] = []
    app = create_app(config, store, send_confirmation=lambda *mail: outbox.append(mail),
                     topics=lambda: TOPICS, health=dict)
    (config.output_dir / "digests" / "2025-12-15-0900").mkdir(parents=True)
    (config.output_dir / "digests" / "2025-12-15-0900" / "index.html").write_text("<p>号</p>", encoding="utf-8")
    (config.output_dir / "feed.xml").write_text(FEED, encoding="utf-8")
    with TestClient(app) as client:
        yield client, store, outbox


def rows(store) -> tuple[list, list, list]:
    """Everything a reader's request may change: subscribers, suppressions, the audit log."""
    with store.engine.connect() as conn:
        return tuple(conn.execute(table.select().order_by(*table.primary_key.columns)).all()
                     for table in (subscribers, suppressions, admin_audit))


def mailed_link(outbox, purpose: str) -> str:
    """The path of the last `purpose` link mailed."""
    return re.search(rf"{PUBLIC}(/{purpose}/\S+)", outbox[-1][2])[1]


def signed_up(client, outbox, email: str, **fields) -> str:
    """Sign up through the form; the path of the confirmation link mailed."""
    assert client.post("/subscribe", data={"email": email, **fields}).status_code == 200
    return mailed_link(outbox, "confirm")


def link(store, purpose: str, email: str) -> str:
    return f"/{purpose}/{make_token(SECRET, purpose, store.subscriber(email).id)}"


# -- GET and HEAD change nothing; each change is a POST ------------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_opening_any_reader_link_changes_nothing(web, method) -> None:
    client, store, outbox = web
    confirm = signed_up(client, outbox, "new@example.com")
    store.save_subscribers([SubscriberInput("reader@example.com", "読者", ("categories/news",))], status="active")
    before = rows(store)
    for path in (confirm, link(store, "unsubscribe", "reader@example.com"),
                 link(store, "preferences", "reader@example.com")):
        for _ in range(3):       # a gateway and two scanners
            answer = client.request(method, path)
            assert answer.status_code == 200, path
            assert answer.headers["content-type"].startswith("text/html")
        assert rows(store) == before, path
    assert store.subscriber("new@example.com").status == "pending"
    assert store.subscriber("reader@example.com").topics == ("categories/news",)


def test_each_page_shows_the_button_that_makes_its_change(web) -> None:
    client, store, outbox = web
    confirm = signed_up(client, outbox, "new@example.com")
    store.save_subscribers([SubscriberInput("reader@example.com", "読者", ("categories/news",))], status="active")
    for path, button in ((confirm, "購読を確定する"),
                         (link(store, "unsubscribe", "reader@example.com"), "配信を停止する"),
                         (link(store, "preferences", "reader@example.com"), "設定を保存")):
        page = client.get(path).text
        assert re.search(rf'<form method="post">.*<button type="submit">{button}</button>', page, re.S), path

    assert client.post(confirm).status_code == 200
    assert store.subscriber("new@example.com").status == "active"
    preferences = link(store, "preferences", "reader@example.com")
    assert client.post(preferences, data={"topics": ["categories/ai導入戦略"]}).status_code == 200
    assert store.subscriber("reader@example.com").topics == ("categories/ai導入戦略",)
    # RFC 8058: the mail client's one-click POST, answered 200 without a redirect.
    one_click = client.post(link(store, "unsubscribe", "reader@example.com"), content="List-Unsubscribe=One-Click",
                            headers={"content-type": "application/x-www-form-urlencoded"}, follow_redirects=False)
    assert one_click.status_code == 200 and "配信を停止しました" in one_click.text
    assert store.subscriber("reader@example.com").status == "unsubscribed"
    actions = [row.action for row in rows(store)[2]]
    assert actions == ["reader.confirm", "reader.preferences", "reader.unsubscribe"]


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_are_not_allowed_and_change_nothing(web, method) -> None:
    client, store, outbox = web
    confirm = signed_up(client, outbox, "new@example.com")
    store.save_subscribers([SubscriberInput("reader@example.com")], status="active")
    before = rows(store)
    for path in (confirm, link(store, "unsubscribe", "reader@example.com"),
                 link(store, "preferences", "reader@example.com"), "/subscribe"):
        assert client.request(method, path, content="List-Unsubscribe=One-Click").status_code == 405, path
    assert rows(store) == before


# -- a sign-up for a known address -----------------------------------------------------------------------------

def test_a_known_readers_sign_up_changes_nothing_and_mails_their_preferences_link(web) -> None:
    client, store, outbox = web
    store.save_subscribers([SubscriberInput("Taro.Yamada@example.jp", "山田太郎", ("categories/news",))],
                           status="active")
    before = rows(store)
    known = client.post("/subscribe", data={"email": "taro.yamada@EXAMPLE.JP", "name": "Mallory",
                                            "topics": ["categories/ai導入戦略"]})
    assert rows(store) == before
    fresh = client.post("/subscribe", data={"email": "hanako@example.jp", "name": "Mallory",
                                            "topics": ["categories/ai導入戦略"]})
    assert (known.status_code, known.headers, known.content) == (fresh.status_code, fresh.headers, fresh.content)
    (to, subject, body), (fresh_to, fresh_subject, _) = outbox
    assert to == "Taro.Yamada@example.jp"                           # as stored, not as the stranger typed it
    assert subject == "Test blog のご購読について" and fresh_subject == "Test blog の購読確認"
    assert "すでに購読中のため、何も変更していません" in body and "/confirm/" not in body
    page = client.get(re.search(rf"{PUBLIC}(/preferences/\S+)", body)[1]).text
    assert "Taro.Yamada@example.jp の配信設定" in page and 'value="categories/news" checked' in page


def test_preferences_link_mails_are_rate_limited_with_confirmations(web) -> None:
    client, store, outbox = web
    store.save_subscribers([SubscriberInput("reader@example.com")], status="active")
    answers = {client.post("/subscribe", data={"email": "reader@example.com"}).content for _ in range(5)}
    assert len(answers) == 1 and len(outbox) == 3       # three a day to one address, whoever asks


def test_only_the_newest_confirmation_link_works_and_only_once(web) -> None:
    client, store, outbox = web
    with time_machine.travel(datetime(2026, 12, 7, 9, 0, tzinfo=UTC), tick=False) as clock:
        first = signed_up(client, outbox, "pending@example.com", name="花子", topics=["categories/news"])
        clock.shift(timedelta(minutes=5))          # links made within one second are one and the same link
        second = signed_up(client, outbox, "PENDING@example.com", name="Mallory", topics=["categories/ai導入戦略"])
    assert first != second
    stored = store.subscriber("pending@example.com")
    assert (stored.email, stored.name, stored.topics) == ("pending@example.com", "花子", ("categories/news",))
    for method in ("GET", "POST"):
        stale = client.request(method, first)
        assert stale.status_code == 400 and "無効か、有効期限が切れています" in stale.text
    assert store.subscriber("pending@example.com").status == "pending"
    assert client.post(second).status_code == 200
    assert store.subscriber("pending@example.com").status == "active"
    assert client.post(second).status_code == 400 and client.get(second).status_code == 400   # used up
    assert [row.action for row in rows(store)[2]] == ["reader.confirm"]


def test_a_reader_who_left_comes_back_only_through_a_new_confirmation(web) -> None:
    client, store, outbox = web
    with time_machine.travel(datetime(2026, 12, 7, 9, 0, tzinfo=UTC), tick=False) as clock:
        confirm = signed_up(client, outbox, "reader@example.com", topics=["categories/news"])
        client.post(confirm)
        client.post(link(store, "unsubscribe", "reader@example.com"))
        assert store.suppression("reader@example.com").reason == "unsubscribed by the reader"
        clock.shift(timedelta(days=1))
        again = signed_up(client, outbox, "reader@example.com", topics=["categories/ai導入戦略"])
    assert store.subscriber("reader@example.com").status == "unsubscribed"       # until they confirm
    assert client.post(confirm).status_code == 400
    assert client.post(again).status_code == 200
    reader = store.subscriber("reader@example.com")
    assert (reader.status, reader.topics) == ("active", ("categories/news",))
    assert store.suppression("reader@example.com") is None


# -- suppressions only an operator lifts -----------------------------------------------------------------------

def test_a_complaint_survives_a_confirmation_link(web) -> None:
    client, store, outbox = web
    confirm = signed_up(client, outbox, "reader@example.com")
    store.unsubscribe("reader@example.com", "complaint", cause="complaint")   # as an ARF complaint does
    before = rows(store)
    for method in ("GET", "POST"):
        assert client.request(method, confirm).status_code == 400
    # Signing up again mails nothing to an address that complained, and says so to no one.
    answer = client.post("/subscribe", data={"email": "reader@example.com"})
    assert answer.status_code == 200 and "確認用のリンク" in answer.text
    assert len(outbox) == 1 and rows(store) == before
    assert store.suppression("reader@example.com").reason == "complaint"


@pytest.mark.parametrize("reason", ["hard bounce 5.1.1: 550 no such user", "suppressed by an operator"])
def test_confirming_keeps_a_bounce_or_operator_suppression(web, reason) -> None:
    client, store, outbox = web
    confirm = signed_up(client, outbox, "reader@example.com")
    store.suppress("reader@example.com", reason)
    assert client.post(confirm).status_code == 200
    assert store.subscriber("reader@example.com").status == "active"
    assert store.suppression("reader@example.com").reason == reason
    assert rows(store)[2][-1].detail == f"reader@example.com: suppression kept ({reason})"
    client.post("/subscribe", data={"email": "reader@example.com"})
    assert len(outbox) == 1                                    # nothing more is mailed to it


# -- malformed requests --------------------------------------------------------------------------------------

MALFORMED = [
    ("text/plain", b"email=reader@example.com"),
    ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="email"\r\n\r\n'
                                        b"reader@example.com\r\n--x--\r\n"),
    ("multipart/form-data", b"garbage"),
    ("application/x-www-form-urlencoded", b"email=reader%FF@example.com&topics=categories%2Fnews"),
    ("application/x-www-form-urlencoded", "email=reader@example.com&name=読者".encode()),
    ("application/x-www-form-urlencoded", b"email=reader@example.com&name=a%00b"),
    ("application/x-www-form-urlencoded; charset=utf-16", b"email=reader@example.com"),
    ("application/x-www-form-urlencoded", b"email=reader@example.com&name=" + b"a" * 70000),
    ("", b"email=reader@example.com"),
]


@pytest.mark.parametrize(("content_type", "body"), MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_forms_answer_400_and_record_nothing(web, content_type, body) -> None:
    client, store, outbox = web
    store.save_subscribers([SubscriberInput("known@example.com", None, ("categories/news",))], status="active")
    before = rows(store)
    for path in ("/subscribe", link(store, "preferences", "known@example.com")):
        answer = client.post(path, content=body, headers={"content-type": content_type})
        assert answer.status_code == 400, path
        assert "フォームから送られたリクエストではありません" in answer.text
    assert rows(store) == before and outbox == []


def test_a_well_formed_japanese_form_is_read(web) -> None:
    client, store, outbox = web
    body = ("email=reader%40example.com&name=%E8%AA%AD%E8%80%85"
            "&topics=categories%2Fai%E5%B0%8E%E5%85%A5%E6%88%A6%E7%95%A5")
    assert client.post("/subscribe", content=body,
                       headers={"content-type": "application/x-www-form-urlencoded; charset=UTF-8"}).status_code == 200
    reader = store.subscriber("reader@example.com")
    assert (reader.name, reader.topics) == ("読者", ("categories/ai導入戦略",)) and len(outbox) == 1


# -- headers ----------------------------------------------------------------------------------------------------

def test_reader_pages_send_a_strict_content_security_policy(web) -> None:
    client, store, outbox = web
    confirm = signed_up(client, outbox, "new@example.com")
    store.save_subscribers([SubscriberInput("reader@example.com")], status="active")
    answers = [client.get("/subscribe"), client.get(confirm),
               client.get(link(store, "unsubscribe", "reader@example.com")),
               client.get(link(store, "preferences", "reader@example.com")), client.get("/confirm/forged"),
               client.get("/unsubscribe"),
               client.post("/subscribe", content=b"x", headers={"content-type": "text/plain"})]
    for answer in answers:
        policy = dict(part.strip().split(" ", 1) for part in answer.headers["content-security-policy"].split(";"))
        assert policy["default-src"] == "'none'"
        assert policy["frame-ancestors"] == "'none'" and policy["form-action"] == "'self'"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"
        if answer is answers[0]:     # the subscribe page: its one script (the reader's time zone), by its nonce
            nonce = re.search(r"<script nonce=\"([^\"]+)\">", answer.text)[1]
            assert policy["script-src"] == f"'nonce-{nonce}'" and answer.text.count("<script") == 1
        else:                        # no script at all
            assert "script-src" not in policy and "<script" not in answer.text


def test_feeds_and_archive_pages_are_cached_revalidated_and_gzipped(web) -> None:
    client, _, _ = web
    plain = client.get("/feed.xml", headers={"accept-encoding": "identity"})
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    assert plain.content == FEED.encode() and plain.headers["cache-control"] == "public, max-age=300"
    packed = client.get("/feed.xml", headers={"accept-encoding": "gzip, deflate"})
    assert packed.headers["content-encoding"] == "gzip" and "accept-encoding" in packed.headers["vary"].lower()
    assert int(packed.headers["content-length"]) < len(FEED.encode()) / 5
    assert packed.content == FEED.encode()                 # httpx decodes; the bytes on the wire were gzip
    assert packed.headers["content-type"].startswith("application/atom+xml")
    again = client.get("/feed.xml", headers={"accept-encoding": "gzip", "if-none-match": packed.headers["etag"]})
    assert again.status_code == 304 and again.headers["cache-control"] == "public, max-age=300"
    page = client.get("/digests/2025-12-15-0900/")
    assert page.text == "<p>号</p>" and page.headers["etag"] and page.headers["cache-control"]
    assert client.head("/feed.xml").status_code == 200


@pytest.mark.parametrize(("accepted", "encoding", "decompress"),
                         [("gzip", "gzip", gzip.decompress), ("gzip, deflate, br", "br", brotli.decompress)])
def test_compressed_bytes_are_a_stream_of_the_file(web, accepted, encoding, decompress) -> None:
    client, _, _ = web
    with client.stream("GET", "/feed.xml", headers={"accept-encoding": accepted}) as answer:
        raw = b"".join(answer.iter_raw())
    assert answer.headers["content-encoding"] == encoding and decompress(raw) == FEED.encode()


@pytest.mark.parametrize("host", ["evil.example", "news.example.com:8443"])
def test_folder_redirects_go_to_the_public_url_never_the_host_header(web, host) -> None:
    client, _, _ = web
    answer = client.get("/digests/2025-12-15-0900", headers={"host": host}, follow_redirects=False)
    assert answer.status_code in (301, 302, 307, 308)
    assert answer.headers["location"] == f"{PUBLIC}/digests/2025-12-15-0900/"
    with_query = client.get("/digests/2025-12-15-0900?from=mail", headers={"host": host}, follow_redirects=False)
    assert with_query.headers["location"] == f"{PUBLIC}/digests/2025-12-15-0900/?from=mail"


# -- the confirmation mail through a real relay -----------------------------------------------------------------

@pytest.fixture
def relayed(site, smtp_server, monkeypatch):
    """The reader pages mailing through the daemon's own sender to a real SMTP server (that waits up to 60 s
    for a reply)."""
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    site.configure(f'[web]\npublic_url = "{PUBLIC}"\n[digest]\nfrom = "編集部 <news@example.com>"\n'
                   f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_server.port}\nsecurity = "none"\ntimeout = 60\n',
                   language="ja")
    config = site.config
    store = open_store(config.store_url)
    daemon = Daemon(config, store, None, Publisher())
    app = create_app(config, store, send_confirmation=daemon.send_confirmation, topics=lambda: TOPICS[1:],
                     health=dict)
    with TestClient(app) as client:
        yield client, store, smtp_server


def confirm_link_in(received) -> str:
    return re.search(rf"{PUBLIC}(/confirm/\S+)", received.message().get_content())[1]


@pytest.mark.parametrize("known", [False, True], ids=["new address", "pending address"])
def test_when_the_relay_refuses_the_mail_the_reader_gets_503_and_their_link_still_works(relayed, known) -> None:
    client, store, smtp = relayed
    with time_machine.travel(datetime(2026, 12, 7, 9, 0, tzinfo=UTC), tick=False) as clock:
        if known:
            assert client.post("/subscribe", data={"email": "hanako@example.jp"}).status_code == 200
            first = confirm_link_in(smtp.received[-1])
        clock.shift(timedelta(minutes=5))
        smtp.faults.data_replies = ["451 4.3.0 Temporary local problem"]
        refused = client.post("/subscribe", data={"email": "hanako@example.jp"})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "300"
        assert "ただいまメールを送信できませんでした" in refused.text
        assert len(smtp.received) == int(known)
        if known:
            assert client.get(first).status_code == 200          # the link already mailed still works
        clock.shift(timedelta(minutes=5))
        again = client.post("/subscribe", data={"email": "hanako@example.jp"})
        assert again.status_code == 200 and "確認用のリンク" in again.text
        newest = confirm_link_in(smtp.received[-1])
    if known:
        assert newest != first and client.get(first).status_code == 400     # replaced once the new one went out
    assert client.post(newest).status_code == 200
    assert store.subscriber("hanako@example.jp").status == "active"


def test_a_slow_relay_does_not_hold_up_other_readers_pages(relayed) -> None:
    """The SMTP exchange runs off the event loop: while the relay holds one reader's mail, other pages answer."""
    client, store, smtp = relayed
    smtp.faults.hold_data = True
    answers: dict[str, int] = {}
    signing_up = threading.Thread(target=lambda: answers.update(
        subscribe=client.post("/subscribe", data={"email": "slow@example.jp"}).status_code))
    signing_up.start()
    try:
        smtp.wait_for(1)                                     # the relay has the mail and holds its 250
        other = threading.Thread(target=lambda: answers.update(form=client.get("/subscribe").status_code))
        other.start()
        other.join(timeout=30)              # no timing: a blocked loop answers nothing before the relay does
        assert answers == {"form": 200}                      # and the sign-up still waits for its 250
    finally:
        smtp.faults.hold_data = False
        signing_up.join(timeout=30)
    assert answers == {"form": 200, "subscribe": 200}
    assert store.subscriber("slow@example.jp").status == "pending"
