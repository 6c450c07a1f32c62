"""A dashboard over a real SQLite store: an account, subscribers (English and Japanese), one issue with
deliveries in every state; `login` signs a test client in and returns the session's CSRF token;
`returned` records a bounce for a seeded delivery through the real bounce processing."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from feedpub import accounts
from feedpub.records import StoredVariant, SubscriberInput
from feedpub.schema import deliveries, subscribers
from feedpub.send import verp
from feedpub.send.bounces.process import Outcome, process_message
from feedpub.site.build import Topic
from feedpub.store import Store, open_store
from feedpub.web.app import create_app

TOPICS = [Topic("categories/ai導入戦略", "AI導入戦略"), Topic("categories/news", "news")]

SECRET = "admin-test-secret"
ACCOUNT, PASSWORD = "operator", "correct horse battery"
PERIOD = "2026-11-30-0900"
ISSUE_HTML = ('<html><body><h2 class="title"><a href="https://blog.example.com/2026/11/29/ai.html">AI導入戦略の現在</a>'
              '</h2><h2 class="title"><a href="https://blog.example.com/2026/11/28/rust.html">Rust in production</a>'
              '</h2></body></html>')


@dataclass
class Dashboard:
    client: TestClient
    store: Store
    config: Any
    issue_id: int


def make_app(config: Any, store: Store) -> Any:
    return create_app(config, store, send_confirmation=lambda *mail: None, topics=lambda: TOPICS,
                      health=lambda: {"last_build": "2026-12-01T00:00:00+00:00", "last_build_posts": 12,
                                      "last_build_problems": 1, "last_build_warnings": 2,
                                      "problems": ["posts/b.md:1: front matter is not closed"],
                                      "warnings": ["posts/a.md:3: warning: key 'title' appears twice",
                                                   "posts/c.md:2: warning: <script>alert(1)</script>"]})


def seed(store: Store) -> int:
    """Four readers and one issue: sent, deferred, failed and queued rows."""
    store.save_subscribers([SubscriberInput("alice@example.com", "Alice"),
                            SubscriberInput("taro@example.jp", "山田太郎", ("categories/AI導入戦略",)),
                            SubscriberInput("bob@example.com", "Bob", ("categories/news",)),
                            SubscriberInput("carol@example.com", "Carol")], status="active")
    ids = {s.email: s.id for s in store.subscribers()}
    slot = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
    issue = store.create_issue(period=PERIOD, slot=slot, starts=slot - timedelta(days=7), ends=slot,
                               variants=[StoredVariant("", "Weekly 11-30", ISSUE_HTML, "text"),
                                         StoredVariant("AI導入戦略", "Weekly 11-30 (AI)", ISSUE_HTML, "text")],
                               recipients={ids["alice@example.com"]: "", ids["taro@example.jp"]: "AI導入戦略",
                                           ids["bob@example.com"]: "", ids["carol@example.com"]: ""})
    with store.writing() as conn:
        for email, status, reply in (("alice@example.com", "sent", "250 ok"),
                                     ("taro@example.jp", "deferred", "451 try later"),
                                     ("bob@example.com", "failed", "550 no such user")):
            conn.execute(deliveries.update().where(deliveries.c.subscriber_id == ids[email])
                         .values(status=status, last_reply=reply, attempts=1))
    return issue.id


@pytest.fixture
def dashboard(site, monkeypatch) -> Dashboard:
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    site.configure('[web]\npublic_url = "https://news.example.com"\n', language="ja")
    config = site.config
    store = open_store(config.store_url)
    accounts.add_user(store, ACCOUNT, PASSWORD)
    issue_id = seed(store)
    with TestClient(make_app(config, store), base_url="https://testserver") as client:
        yield Dashboard(client, store, config, issue_id)
    store.engine.dispose()


def login(client: TestClient, name: str = ACCOUNT, password: str = PASSWORD) -> Any:
    """Log in through the form; returns the answer to the POST (not followed)."""
    form = client.get("/admin/login")
    nonce = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    return client.post("/admin/login", data={"csrf": nonce, "name": name, "password": password},
                       follow_redirects=False)


def csrf_of(client: TestClient) -> str:
    """The session's CSRF token, as the pages carry it in their forms."""
    page = client.get("/admin")
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


RETURN_PATH = "bounces@blog.example.com"
FIXTURES = Path(__file__).resolve().parents[2] / "send" / "fixtures" / "bounces"


def verp_config(site: Any) -> Any:
    """The site's config with VERP on, as a relay's bounces would reach `feedpub bounces process`."""
    site.configure('[web]\npublic_url = "https://news.example.com"\n'
                   f'[smtp]\nreturn_path = "{RETURN_PATH}"\n', language="ja")
    return site.config


def returned(config: Any, store: Store, raw: bytes, reader: str, *, about: str = "",
             source: str = "test") -> list[Outcome]:
    """Bounce `raw` (whose report is about `about`) as it comes back for `reader`'s delivery of the seeded
    issue: re-addressed to `reader` and to the delivery's VERP return path, then recorded by the real code."""
    with store.engine.connect() as conn:
        delivery_id = conn.scalar(sa.select(deliveries.c.id).join(subscribers, subscribers.c.id ==
                                                                   deliveries.c.subscriber_id)
                                  .where(subscribers.c.email_key == reader))
    envelope = verp.return_path(RETURN_PATH, SECRET, delivery_id)
    if about:
        raw = raw.replace(about.encode(), reader.encode())
    return process_message(config, store, raw.replace(RETURN_PATH.encode(), envelope.encode()), source)


def dsn(reader: str, status: str, diagnostic: str, message_id: str, action: str = "delayed") -> bytes:
    """A minimal RFC 3464 report, as an MTA returns it to the return path."""
    return textwrap.dedent(f"""\
        Return-Path: <>
        From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
        To: {RETURN_PATH}
        Subject: Delivery Status Notification
        Auto-Submitted: auto-replied
        Message-ID: <{message_id}>
        MIME-Version: 1.0
        Content-Type: multipart/report; report-type=delivery-status; boundary="B"

        --B
        Content-Type: text/plain

        Your message to {reader} could not be delivered yet.

        --B
        Content-Type: message/delivery-status

        Reporting-MTA: dns; mx.example.net

        Final-Recipient: rfc822; {reader}
        Action: {action}
        Status: {status}
        Diagnostic-Code: smtp; {diagnostic}

        --B--
        """).encode()
