"""A dashboard over a real SQLite store: an account, subscribers (English and Japanese), one issue with
deliveries in every state; `login` signs a test client in and returns the session's CSRF token."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from feedpub import accounts
from feedpub.schema import deliveries
from feedpub.store import Store, StoredVariant, SubscriberInput, open_store
from feedpub.web.app import create_app

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
    return create_app(config, store, send_confirmation=lambda *mail: None, categories=lambda: ["AI導入戦略", "news"],
                      health=lambda: {"last_build": "2026-12-01T00:00:00+00:00", "last_build_posts": 12,
                                      "last_build_problems": 1})


def seed(store: Store) -> int:
    """Four readers and one issue: sent, deferred, failed and queued rows."""
    store.save_subscribers([SubscriberInput("alice@example.com", "Alice"),
                            SubscriberInput("taro@example.jp", "山田太郎", ("AI導入戦略",)),
                            SubscriberInput("bob@example.com", "Bob", ("news",)),
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
