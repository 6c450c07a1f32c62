"""Security: header and XML injection, script in mail and archive pages, forged / replayed / expired
tokens, subscribe rate limits, secrets kept out of every output, verified TLS, a world-writable config."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from lxml import etree
from lxml import html as lxml_html
from starlette.testclient import TestClient

from feedpub.config_file import load_config
from feedpub.records import SubscriberInput
from feedpub.send.issue import due_slot
from feedpub.site.build import Topic
from feedpub.store import open_store
from feedpub.tokens import make_token
from feedpub.web.app import create_app
from tests.send.sites import PASSWORD, SECRET, deliveries, feedpub, write_site
from tests.smtp_server import SMTPTestServer, self_signed_cert

TOPICS = [Topic("categories/ai導入戦略", "AI導入戦略"), Topic("categories/news", "news")]

# The headers a digest message has; anything else was injected.
HEADERS = {"from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post", "list-id",
           "mime-version", "content-type", "content-transfer-encoding", "feedback-id"}
INJECTED = "Bcc: victim@attacker.example"


def post(root: Path, name: str, front_matter: str, body: str) -> None:
    # Before the slot now due, so that the issue `digest send` composes covers it.
    date = due_slot(load_config(root / "feedpub.toml"), datetime.now(UTC))[1] - timedelta(hours=len(name))
    (root / "posts" / f"{date:%Y-%m-%d}-{name}.md").write_text(
        f"---\n{front_matter}\ndate: {date:%Y-%m-%d %H:%M:%S %z}\n---\n\n{body}\n", encoding="utf-8")


def import_readers(config: Path, rows: list[tuple[str, str]]) -> None:
    with (config.parent / "hostile.csv").open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([("email", "name"), *rows])
    assert feedpub(config, "subscribers", "import", str(config.parent / "hostile.csv")).exit_code in (0, 1)


# -- CR, LF and NUL never make headers or split feed XML ---------------------------------------------------

def test_line_breaks_in_titles_names_and_categories_never_make_headers(tmp_path, smtp_server):
    config = write_site(tmp_path, smtp_server.port, ["plain@example.com"])
    text = config.read_text(encoding="utf-8").replace('title = "ALLFORCES"', rf'title = "ALLFORCES\r\n{INJECTED}"')
    config.write_text(text, encoding="utf-8")
    post(tmp_path, "crlf-title", rf'title: "週刊\r\n{INJECTED}\r\n\r\n<p>body</p>"' + "\n"
         r'categories: ["news\r\nX-Injected: 1", "AI\u2028導入"]', "本文です。")
    post(tmp_path, "lf-title", 'title: "Line\\nX-Injected: yes"\ncategories: ["a\\rb"]', "Body.")
    import_readers(config, [("named@example.com", f"読者\r\n{INJECTED}"), ("lf@example.com", "Name\nX-Injected: 1"),
                            ("nul@example.com", "Nul\x00Name")])

    result = feedpub(config, "digest", "send")
    assert result.exit_code in (0, 1), result.output
    delivered = {rcpt for received in smtp_server.received for rcpt in received.rcpt_tos}
    assert delivered <= {"plain@example.com", "named@example.com", "lf@example.com", "nul@example.com"}
    assert "plain@example.com" in delivered and "named@example.com" in delivered
    assert "victim@attacker.example" not in delivered
    for received in smtp_server.received:
        assert b"\x00" not in received.data
        head = received.data.split(b"\r\n\r\n", 1)[0]
        names = {line.split(b":", 1)[0].decode().lower() for line in head.split(b"\r\n") if line[:1] not in b" \t"}
        assert names <= HEADERS, names
        message = received.message()
        assert message["Bcc"] is None and message["X-Injected"] is None
        assert len(message["To"].addresses) == 1
        assert "\n" not in str(message["Subject"]) and "\r" not in str(message["Subject"])

    assert feedpub(config, "build").exit_code in (0, 1)
    for feed in tmp_path.glob("public/**/*.xml"):
        if feed.name == "feed.xsl":
            continue
        document = etree.parse(str(feed))
        entries = document.findall(".//{http://www.w3.org/2005/Atom}entry") + document.findall(".//item")
        if feed.parent.name == "public":
            assert len(entries) == 4    # two plain posts and two hostile ones, each one entry
        assert not [element for element in document.iter() if "X-Injected" in str(element.tag)]


# -- post content cannot put script into the digest or the archive page -----------------------------------

SCRIPTS = """<script>alert('body')</script>

<img src="x" onerror="alert('img')"> <a href="javascript:alert('link')">click</a>
<svg onload="alert('svg')"></svg> <iframe src="https://attacker.example/"></iframe>
<a href="  JaVaScRiPt:alert('case')">case</a> <form action="https://attacker.example/"><input name=x></form>
<style>body{background:url(javascript:alert('css'))}</style> <object data="x.swf"></object>

[md link](javascript:alert('markdown')) <div style="background:url(javascript:alert(1))">styled</div>
"""


def assert_inert(document: str, where: str) -> None:
    tree = lxml_html.fromstring(document)
    for element in tree.iter():
        if not isinstance(element.tag, str):
            continue
        assert element.tag not in ("script", "iframe", "object", "embed", "form", "svg"), (where, element.tag)
        for name, value in element.attrib.items():
            assert not name.lower().startswith("on"), (where, element.tag, name)
            assert "javascript:" not in value.lower().replace(" ", ""), (where, element.tag, name, value)
    assert "alert('body')" not in document or "&lt;script" in document


def test_post_content_cannot_inject_script_into_the_digest_or_its_archive(tmp_path, smtp_server):
    config = write_site(tmp_path, smtp_server.port, ["reader@example.com"])
    post(tmp_path, "script", "title: \"<script>alert('title')</script> 見出し\"\n"
         "excerpt: \"<img src=x onerror=alert('excerpt')> 抜粋\"", SCRIPTS)
    assert feedpub(config, "digest", "send").exit_code == 0
    (received,) = smtp_server.received
    message = received.message()
    assert_inert(message.get_body(("html",)).get_content(), "mail")
    (archive,) = tmp_path.glob("public/digests/*/index.html")
    page = archive.read_text(encoding="utf-8")
    assert_inert(page, "archive")
    assert "見出し" in page and "<script>alert('title')" not in page


# -- tokens ------------------------------------------------------------------------------------------------

@pytest.fixture
def web(tmp_path, monkeypatch):
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    (tmp_path / "feedpub.toml").write_text('[site]\nlanguage = "ja"\n[web]\npublic_url = "https://news.example.com"\n',
                                           encoding="utf-8")
    config = load_config(tmp_path / "feedpub.toml")
    store = open_store(config.store_url)
    outbox: list[tuple[str, str, str]] = []
    app = create_app(config, store, send_confirmation=lambda *mail: outbox.append(mail),
                     topics=lambda: TOPICS[1:], health=dict)
    with TestClient(app) as client:
        yield client, store, outbox


def state(store, email: str) -> tuple[str, bool]:
    subscriber = store.subscriber(email)
    return subscriber.status, store.suppression(email) is not None


ENDPOINTS = {"confirm": ("POST", "/confirm/"), "unsubscribe": ("POST", "/unsubscribe/"),
             "preferences": ("POST", "/preferences/")}


def call(client, purpose: str, token: str):
    method, path = ENDPOINTS[purpose]
    return client.request(method, path + token, data={"topics": ["categories/news"]})


def test_altered_tokens_are_refused_at_every_position(web):
    client, store, _ = web
    store.save_subscribers([SubscriberInput("target@example.com")], status="active")
    for purpose in ("unsubscribe", "preferences"):
        good = make_token(SECRET, purpose, store.subscriber("target@example.com").id)
        for i in range(len(good) - 1):   # the last character may carry only base64 padding bits
            for replacement in ("A", "_", "."):
                if good[i] != replacement:
                    altered = good[:i] + replacement + good[i + 1:]
                    assert call(client, purpose, altered).status_code in (400, 404), (purpose, i, altered)
        assert call(client, purpose, good[:-3]).status_code in (400, 404)
        assert call(client, purpose, good + "A").status_code in (400, 404)
    assert state(store, "target@example.com") == ("active", False)
    assert store.subscriber("target@example.com").topics == ()


def test_forged_tokens_change_nothing(web):
    client, store, _ = web
    store.save_subscribers([SubscriberInput("victim@example.com")], status="active")
    store.save_subscribers([SubscriberInput("attacker@example.com")], status="active")
    mine = make_token(SECRET, "unsubscribe", store.subscriber("attacker@example.com").id)
    foreign = make_token("guessed-secret", "unsubscribe", store.subscriber("victim@example.com").id)
    victims_part = foreign.split(".", 1)[0]
    forged = [
        foreign,                                                      # signed with another secret
        victims_part + mine[mine.index("."):],                        # the victim's address, my signature
        make_token("", "unsubscribe", store.subscriber("victim@example.com").id),           # empty secret
        "victim@example.com", "", "..", "a.b.c", "%00", "x" * 5000, "受信者.署名.時刻",
    ]
    for token in forged:
        answer = client.post(f"/unsubscribe/{token}")
        assert answer.status_code in (400, 404, 405), token
    assert state(store, "victim@example.com") == ("active", False)


@pytest.mark.parametrize("made_for", ["confirm", "unsubscribe", "preferences"])
def test_a_token_works_only_for_its_own_purpose(web, made_for):
    client, store, _ = web
    store.save_subscribers([SubscriberInput("reader@example.com")], status=None, new_status="pending")
    token = make_token(SECRET, made_for, store.subscriber("reader@example.com").id)
    for purpose in ENDPOINTS:
        if purpose != made_for:
            assert call(client, purpose, token).status_code == 400, (made_for, purpose)
    assert state(store, "reader@example.com") == ("pending", False)


def test_confirm_links_expire_after_seven_days_and_unsubscribe_links_never(web):
    client, store, outbox = web
    with time_machine.travel(datetime(2025, 12, 1, 9, 0, tzinfo=UTC), tick=False) as clock:
        client.post("/subscribe", data={"email": "late@example.com"})
        client.post("/subscribe", data={"email": "ontime@example.com"})
        late, ontime = (body.split("https://news.example.com", 1)[1].split()[0] for _, _, body in outbox)
        clock.shift(timedelta(days=6, hours=23))
        assert client.post(ontime).status_code == 200
        clock.shift(timedelta(hours=2))
        expired = client.post(late)
        assert expired.status_code == 400 and "有効期限" in expired.text
        assert state(store, "late@example.com") == ("pending", False)

        unsubscribe = make_token(SECRET, "unsubscribe", store.subscriber("ontime@example.com").id)
        clock.shift(timedelta(days=400))        # an old digest in the archive of a mailbox: still works
        assert client.post(f"/unsubscribe/{unsubscribe}").status_code == 200
        assert state(store, "ontime@example.com") == ("unsubscribed", True)


def test_a_used_confirm_link_cannot_resubscribe_after_unsubscribing(web):
    client, store, outbox = web
    client.post("/subscribe", data={"email": "reader@example.com"})
    link = outbox[-1][2].split("https://news.example.com", 1)[1].split()[0]
    assert client.post(link).status_code == 200
    assert state(store, "reader@example.com") == ("active", False)
    unsubscribe = make_token(SECRET, "unsubscribe", store.subscriber("reader@example.com").id)
    assert client.post(f"/unsubscribe/{unsubscribe}").status_code == 200
    assert client.get(link).status_code == 400     # the old confirm mail, opened again (or by a link scanner)
    replay = client.post(link)
    assert replay.status_code == 400
    assert state(store, "reader@example.com") == ("unsubscribed", True)
    # Subscribing again through the form is the way back, with a fresh confirmation.
    client.post("/subscribe", data={"email": "reader@example.com"})
    fresh = outbox[-1][2].split("https://news.example.com", 1)[1].split()[0]
    assert client.post(fresh).status_code == 200
    assert state(store, "reader@example.com") == ("active", False)


# -- subscribe rate limits ---------------------------------------------------------------------------------

def test_subscribe_rate_limits_hold_with_the_shipped_limits(web):
    client, _, outbox = web
    answers = [client.post("/subscribe", data={"email": "Target@Example.com" if i % 2 else "target@example.com"},
                           headers={"x-forwarded-for": f"10.0.0.{i}"}) for i in range(3 + 2)]
    assert len(outbox) == 3          # per address, whatever the case: no mail bombing one inbox
    assert [a.status_code for a in answers] == [200] * 5
    more = [client.post("/subscribe", data={"email": f"other{i}@example.com"},
                        headers={"x-forwarded-for": f"192.0.2.{i}"}) for i in range(10)]
    assert [a.status_code for a in more].count(429) == 5   # 10 per client per hour; forged X-Forwarded-For ignored
    assert len(outbox) == 3 + 5


# -- secrets never appear in output, logs or files ---------------------------------------------------------

def test_secrets_never_appear_in_output_logs_or_files(tmp_path):
    password = "Pa55-zz9-plural-z-alpha"
    secret = "web-secret-5f2d9c7e"
    env = {**os.environ, "FEEDPUB_SMTP_PASSWORD": password, "FEEDPUB_SECRET": secret}
    server = SMTPTestServer(users={"mailer": "the-real-password"}).start()
    captured = []
    try:
        config = write_site(tmp_path, server.port, ["reader@example.com"], username="mailer", max_retries=1)
        commands = [("-v", "digest", "send"), ("-v", "digest", "send", "--to", "editor@example.com"),
                    ("-v", "digest", "status"), ("-v", "subscribers", "list")]
        for args in commands:
            captured.append(subprocess.run([sys.executable, "-m", "feedpub", "--config", str(config), *args],
                                           env=env, capture_output=True, text=True, timeout=60))
        assert server.auth_attempts >= 2 and server.received == []
        assert any("535" in run.stderr for run in captured)
        text = config.read_text(encoding="utf-8").replace('host = "127.0.0.1"', 'host = "smtp.invalid"')
        config.write_text(text, encoding="utf-8")
        (tmp_path / "feedpub.toml").chmod(0o644)
        captured.append(subprocess.run([sys.executable, "-m", "feedpub", "--config", str(config), "-v", "digest",
                                        "send", "--to", "editor@example.com"], env=env, capture_output=True,
                                       text=True, timeout=60))
        assert captured[-1].returncode == 1 and "smtp.invalid" not in password
    finally:
        server.stop()
    for run in captured:
        for stream in (run.stdout, run.stderr):
            assert password not in stream and secret not in stream, stream
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert password.encode() not in data and secret.encode() not in data, path


# -- TLS: verified by default, never downgraded, no password before it -------------------------------------

def test_default_security_is_verified_starttls(tmp_path):
    assert load_config(None).smtp.security == "starttls"


@pytest.mark.parametrize("tls", ["starttls", "ssl", None], ids=["self-signed STARTTLS", "self-signed SSL",
                                                                  "no STARTTLS offered"])
def test_unverified_or_missing_tls_is_refused_before_the_password_is_sent(tmp_path, tls):
    server = SMTPTestServer(tls=tls, cert=self_signed_cert(tmp_path) if tls else None,
                            users={"mailer": PASSWORD}).start()
    try:
        config = write_site(tmp_path, server.port, ["reader@example.com"], security=tls or "starttls",
                            username="mailer")
        result = feedpub(config, "digest", "send")
        assert result.exit_code == 0 and "0 sent" in result.stdout
        assert server.auth_attempts == 0 and server.received == []
        assert {row.status for row in deliveries(config).values()} == {"deferred"}
    finally:
        server.stop()


# -- a config anyone may edit is refused -------------------------------------------------------------------

def test_world_writable_config_is_refused_with_the_fix(tmp_path, smtp_server):
    config = write_site(tmp_path, smtp_server.port, ["reader@example.com"])
    config.chmod(0o666)
    for args in (("digest", "send"), ("build",), ("check",), ("subscribers", "list")):
        result = feedpub(config, *args)
        assert result.exit_code == 2, args
        assert str(config) in result.stderr and f"chmod o-w {config}" in result.stderr
    assert smtp_server.received == []
    config.chmod(0o664)               # group-writable is the operator's choice
    assert feedpub(config, "digest", "send").exit_code == 0
