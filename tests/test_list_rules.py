"""The list is sacred (issue 21): random sequences of sign-ups, confirmations, link scanners' GET and HEAD,
unsubscribes, preference changes, bounces of each class (verified by VERP, and forged), complaints by mail and
by Mailgun webhook, replayed webhooks, and the operator's suppressions and lifts, through the real app
(Starlette's TestClient on a SQLite store file), the real bounce processing and the real Mailgun endpoint.
After every step each subscriber's address, name, status and topics and each address's suppression must be
what a small model of the rules says: nothing but a reader or the operator changes a subscriber, except where a
rule says so (a hard bounce or the soft limit suppresses, a complaint unsubscribes)."""

from __future__ import annotations

import functools
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
import time_machine
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from starlette.testclient import TestClient

from feedpub.addresses import mailable
from feedpub.config import Config
from feedpub.config_file import load_config
from feedpub.records import StoredVariant
from feedpub.schema import deliveries, subscribers, suppressions
from feedpub.send import verp
from feedpub.send.bounces import evidence
from feedpub.send.bounces.process import RECORDED_BEFORE, UNVERIFIED, process_message
from feedpub.site.build import Topic
from feedpub.store import READER_UNSUBSCRIBED, Store, email_key, open_store
from feedpub.tokens import CONFIRM_MAX_AGE, make_token
from feedpub.web.app import CONFIRMATIONS_PER_DAY, create_app
from tests.send.test_bounces_process import FIXTURES, RETURN_PATH, bounce_for
from tests.web.test_webhooks import mailgun_body

TOPICS = [Topic("categories/ai導入戦略", "AI導入戦略"), Topic("categories/news", "news")]

SECRET = "list-rules-secret"
MAILGUN_KEY = "list-rules-mailgun-key"
PUBLIC = "https://news.example.com"
CATEGORIES = [topic.folder for topic in TOPICS]
START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
SOFT_LIMIT = 3
# Readers' addresses, and one that never signs up (complaints and operators may still name it).
READERS = ["ayumi.sato@example.jp", "ben@example.com"]
STRANGER = "mallory@example.net"
NAMES = ["", "佐藤あゆみ", "Ben Smith", "  Mallory   the  scanner "]

# A returned message per class (fixture, the address it is about): hard bounces are about the address; the
# soft ones about the sender, the relay, policy, the network, the rate, the content, a full mailbox, greylisting
# and (SIZE, below) the message's size: those never suppress before the soft limit.
HARD = [("postfix-user-unknown.eml", "taro.yamada@example.jp"), ("exim-user-unknown.eml", "dan@example.com"),
        ("qmail-no-mailbox.eml", "fumiko@example.net"), ("gmail-no-such-user-ja.eml", "hanako.suzuki@gmail.com")]
SOFT = [("exim-sender-domain-invalid.eml", "rie.kato@hosting.example.com"),
        ("relay-requires-authentication.eml", "hina.ogawa@client.example.net"),
        ("gmail-rate-limited-policy.eml", "ichiro@gmail.com"),
        ("postfix-dns-try-again-no-dsn.eml", "yuto.ikeda@flaky-dns.example"),
        ("gmail-receiving-rate-5-2-1.eml", "riku.nakano@gmail.example"),
        ("sendmail-transcript-rcpt-ok-then-refused.eml", "kaho.nishimura@example.co.jp"),
        ("exim-quota-exceeded.eml", "chihiro@example.jp"),
        ("postfix-greylisted-delayed.eml", "ben@example.com"),
        ("SIZE", "reader@example.net")]
COMPLAINT = ("arf-abuse.eml", "mina@mailbox.example")
# Each example's store file where the disk is memory (tmpfs) if there is one: what is under test is the rules, and
# on a loaded machine the disk's syncs took two thirds of the run.
FOLDERS = "/dev/shm" if Path("/dev/shm").is_dir() else None
SIZE = """From: MAILER-DAEMON@mx.example.net
To: bounces@blog.example.com
Subject: Undelivered Mail Returned to Sender
Message-ID: <size@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; reader@example.net
Action: failed
Status: 5.3.4
Diagnostic-Code: smtp; 552 5.3.4 Message size exceeds fixed maximum message size

--B--
""".replace("\n", "\r\n")


def returned(fixture: tuple[str, str], reader: str, envelope: str, message_id: str) -> bytes:
    """The fixture about `reader`, sent back to `envelope`, with its own Message-ID."""
    name, fixture_reader = fixture
    if name == "SIZE":
        raw = SIZE.encode().replace(fixture_reader.encode(), reader.encode()).replace(RETURN_PATH.encode(),
                                                                                      envelope.encode())
        return raw.replace(b"<size@mx.example.net>", f"<{message_id}>".encode())
    assert (FIXTURES / name).exists()
    return bounce_for(name, reader, envelope, fixture_reader=fixture_reader, message_id=message_id)


def spelled(address: str, how: int) -> str:
    """The address as someone typed it: the local part in another case (the domain's case is no one's)."""
    local, domain = address.split("@")
    return [address, address.upper(), f"{local.title()}@{domain}"][how]


# Which rule's suppression an address keeps when another one names it (`feedpub.store.suppress_address`).
STRENGTH = {"reader": 1, "hard": 2, "soft": 2, "operator": 3, "complaint": 4}


def suppression_kind(reason: str) -> str:
    """Which rule a stored suppression reason comes from."""
    for kind, pattern in (("reader", re.escape(READER_UNSUBSCRIBED) + "$"), ("complaint", "complaint$"),
                          ("hard", "hard bounce "), ("soft", r"\d+ soft bounces within "),
                          ("operator", "(suppressed|removed) by (an )?operator$")):
        if re.match(pattern, reason):
            return kind
    raise AssertionError(f"a suppression no rule makes: {reason!r}")


@dataclass
class Reader:
    """What the rules say one subscriber is."""

    id: int
    email: str
    name: str
    categories: tuple[str, ...]
    status: str
    confirm_issued: datetime | None            # the one confirmation link that works, if any
    confirm_links: list[str] = field(default_factory=list)    # every one mailed, newest last
    deliveries: list[int] = field(default_factory=list)


@functools.cache
def empty_store() -> bytes:
    """An empty store file, migrated once: each example starts from a copy."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "feedpub.db"
        open_store(f"sqlite:///{path}").engine.dispose()
        return path.read_bytes()


def reader_app(root: Path, outbox: list[tuple[str, str, str]]) -> tuple[Config, Store, TestClient]:
    """A site's config and store in `root`, and the daemon's app on them, its mails kept in `outbox`."""
    (root / "feedpub.db").write_bytes(empty_store())
    (root / "feedpub.toml").write_text(f"""
[site]
title = "Test blog"
url = "https://blog.example.com"
[web]
public_url = "{PUBLIC}"
subscribe_limit = 100000
[smtp]
return_path = "{RETURN_PATH}"
[bounces]
soft_limit = {SOFT_LIMIT}
soft_window = "30d"
[store]
url = "sqlite:///{root / 'feedpub.db'}"
""", encoding="utf-8")
    config = load_config(root / "feedpub.toml")
    store = open_store(config.store_url)
    app = create_app(config, store, send_confirmation=lambda *mail: outbox.append(mail),
                     topics=lambda: TOPICS, health=dict)
    return config, store, TestClient(app)


class ListRules(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.TemporaryDirectory(prefix="feedpub-list-rules-", dir=FOLDERS)
        self.outbox: list[tuple[str, str, str]] = []
        self.config, self.store, self.client = reader_app(Path(self.folder.name), self.outbox)
        self.client.__enter__()
        self.clock = time_machine.travel(START, tick=False)
        self.now = self.clock.start()
        # The model.
        self.readers: dict[str, Reader] = {}
        self.suppressed: dict[str, str] = {}           # address key → the kind of rule that suppressed it
        self.invites: Counter[str] = Counter()
        self.sent: dict[int, tuple[str, datetime]] = {}   # delivery id → (address key, sent at)
        self.named: set[int] = set()                    # deliveries a recorded bounce or complaint names
        self.soft: list[tuple[str, int | str, datetime]] = []   # (key, delivery or message, received at)
        self.processed: list[bytes] = []
        self.captured: list[tuple[dict, int]] = []     # Mailgun requests accepted, with their timestamps
        self.answer: bytes | None = None                # what POST /subscribe answers, whoever asks
        self.serial = 0

    def teardown(self) -> None:
        self.client.__exit__(None, None, None)
        self.clock.stop()
        self.store.engine.dispose()
        self.folder.cleanup()

    # -- the model's rules ----------------------------------------------------------------------------------

    def tick(self) -> datetime:
        self.now.shift(timedelta(seconds=7))
        self.serial += 1
        return datetime.now(UTC)

    def suppress(self, key: str, kind: str) -> None:
        """A suppression stays until an operator lifts it, but gives way to a stronger rule's: a complaint over
        an operator's block over a bounce over the reader's own unsubscribe (the only one confirming lifts)."""
        held = self.suppressed.get(key)
        if held is None or STRENGTH[kind] > STRENGTH[held]:
            self.suppressed[key] = kind

    def unsubscribe(self, key: str, kind: str) -> None:
        if key in self.readers:
            self.readers[key].status = "unsubscribed"
            self.readers[key].confirm_issued = None
        self.suppress(key, kind)

    def link_open(self, reader: Reader, path: str) -> bool:
        """Whether a mailed confirmation link works now: the newest, unused, not expired."""
        issued = reader.confirm_issued
        return (bool(reader.confirm_links) and path == reader.confirm_links[-1] and issued is not None
                and (datetime.now(UTC) - issued).total_seconds() <= CONFIRM_MAX_AGE)

    def soft_count(self, key: str, bouncing: int) -> int:
        """Soft bounces of the address within the window since its last clean delivery, this one included."""
        now = datetime.now(UTC)
        since = now - timedelta(days=30)
        clean = [at for delivery, (owner, at) in self.sent.items()
                 if owner == key and at >= since and delivery not in self.named and delivery != bouncing]
        after = max(clean) if clean else since - timedelta(microseconds=1)
        return len({what for owner, what, at in self.soft if owner == key and at > after} | {bouncing})

    def token(self, reader: Reader, purpose: str, variant: str) -> tuple[str, bool]:
        """A link to one of `reader`'s pages, and whether it is a good one."""
        if variant == "current":
            return f"/{purpose}/{make_token(SECRET, purpose, reader.id)}", True
        if variant == "stale":
            return f"/{purpose}/{make_token(SECRET, purpose, reader.id, START - timedelta(days=400))}", True
        if variant == "other purpose":
            other = "preferences" if purpose == "unsubscribe" else "unsubscribe"
            return f"/{purpose}/{make_token(SECRET, other, reader.id)}", False
        return f"/{purpose}/{make_token('not-' + SECRET, purpose, reader.id)}", False

    # -- what the store holds, compared after every step -----------------------------------------------------

    @invariant()
    def store_is_what_the_rules_say(self) -> None:
        with self.store.engine.connect() as conn:
            stored = {row.email_key: (row.email, row.name, row.status, tuple(row.topics))
                      for row in conn.execute(sa.select(subscribers))}
            held = {row.email_key: suppression_kind(row.reason) for row in conn.execute(sa.select(suppressions))}
        assert stored == {key: (r.email, r.name, r.status, r.categories) for key, r in self.readers.items()}
        assert held == self.suppressed

    # -- readers and strangers on the web --------------------------------------------------------------------

    @initialize(histories=st.lists(st.tuples(st.sampled_from(READERS),
                                             st.just("active") | st.sampled_from(["asked", "asked twice", "left"]),
                                             st.just("") | st.sampled_from(["suppress", "remove"])),
                                   min_size=1, unique_by=lambda history: history[0]))
    def readers_before(self, histories: list[tuple[str, str, str]]) -> None:
        """Where readers stand when the sequence starts: they signed up (once or twice) and may have confirmed
        and left again; the operator may have suppressed or removed them."""
        for address, history, operator in histories:
            self.signed_up(address, "", [])
            reader = self.readers[address]
            if history == "asked twice":
                self.signed_up(address, "", [])
            if history in ("active", "left"):
                self.confirmed(reader, reader.confirm_links[-1])
            if history == "left":
                self.unsubscribed(reader, "current", one_click=True)
            if operator:
                self.operated(address, operator)

    @rule(address=st.sampled_from(READERS + [STRANGER]), how=st.integers(0, 2), name=st.sampled_from(NAMES),
          categories=st.lists(st.sampled_from([*CATEGORIES, "categories/unknown"]), unique=True, max_size=3))
    def sign_up(self, address: str, how: int, name: str, categories: list[str]) -> None:
        link = self.signed_up(spelled(address, how), name, categories)
        if link:
            self.scanned("HEAD" if how else "GET", link, True)    # the mail's link, as the mail arrives
            reader = self.readers[email_key(address)]
            if len(reader.confirm_links) > 1:                      # the button in the mail before: a dead link
                self.confirmed(reader, reader.confirm_links[-2])

    def signed_up(self, typed: str, name: str, categories: list[str]) -> str | None:
        """Sign up through the form; the confirmation link mailed, if one was."""
        now = self.tick()
        key = email_key(typed)
        mailed = len(self.outbox)
        answer = self.client.post("/subscribe", data={"email": typed, "name": name, "topics": categories})
        if categories and not set(categories) & set(CATEGORIES):   # only topics no feed has: refused, as saving
            assert answer.status_code == 400 and len(self.outbox) == mailed     # none would mean every post
            return None
        assert answer.status_code == 200
        self.answer = self.answer or answer.content
        assert answer.content == self.answer          # nothing tells a known address from a new one
        self.invites[key] += 1
        if self.invites[key] > CONFIRMATIONS_PER_DAY or self.suppressed.get(key, "reader") != "reader":
            assert len(self.outbox) == mailed
            return None
        reader = self.readers.get(key)
        (to, _, body), = self.outbox[mailed:]
        if reader is None:
            reader = self.readers[key] = Reader(self.store.subscriber(typed).id, mailable(typed),
                                                " ".join(name.split()), tuple(c for c in categories
                                                                              if c in CATEGORIES), "pending", None)
        assert to == reader.email                       # as stored, not as this sign-up typed it
        if reader.status == "active":
            assert "/confirm/" not in body           # their own preferences page instead, which names them
            page = self.client.get(re.search(rf"{PUBLIC}(/preferences/\S+)", body)[1])
            assert page.status_code == 200 and reader.email in page.text
            return None
        reader.confirm_issued = now.replace(microsecond=0)
        reader.confirm_links.append(re.search(rf"{PUBLIC}(/confirm/\S+)", body)[1])
        return reader.confirm_links[-1]

    @rule(data=st.data(), method=st.sampled_from(["GET", "HEAD"]),
          variant=st.sampled_from(["current", "stale", "other purpose", "forged"]))
    @precondition(lambda self: self.readers)
    def scanner_opens_links(self, data: st.DataObject, method: str, variant: str) -> None:
        """A mail gateway fetches every link of a reader's mails: their confirmation links, newest and older
        ones, and their unsubscribe and preferences links."""
        self.tick()
        reader = data.draw(st.sampled_from(sorted(self.readers.values(), key=lambda r: r.id)))
        for path in reader.confirm_links[-2:]:
            self.scanned(method, path, self.link_open(reader, path))
        for purpose in ("unsubscribe", "preferences"):
            self.scanned(method, *self.token(reader, purpose, variant))

    def scanned(self, method: str, path: str, good: bool) -> None:
        """One fetch (the model, compared after the step, shows whether it changed anything)."""
        assert self.client.request(method, path).status_code == (200 if good else 400), (method, path)

    @rule(data=st.data(), which=st.sampled_from(["newest", "older, then newest", "forged"]), waiting=st.booleans())
    @precondition(lambda self: any(r.confirm_links for r in self.readers.values()))
    def reader_presses_confirm(self, data: st.DataObject, which: str, waiting: bool) -> None:
        """A reader presses the button of a confirmation link: of their newest mail, or of an older one first (then
        they find the newer mail), or a forged one; mostly a reader whose newest link still works."""
        mailed = [r for r in self.readers.values() if r.confirm_links]
        open_ = [r for r in mailed if self.link_open(r, r.confirm_links[-1])]
        reader = data.draw(st.sampled_from(open_ if waiting and open_ else mailed))
        if which == "forged":
            forged = make_token("not-" + SECRET, "confirm", reader.id, reader.confirm_issued)
            self.confirmed(reader, f"/confirm/{forged}")
            return
        if which != "newest" and len(reader.confirm_links) > 1:
            self.confirmed(reader, data.draw(st.sampled_from(reader.confirm_links[:-1])))
        self.confirmed(reader, reader.confirm_links[-1])

    def confirmed(self, reader: Reader, path: str) -> None:
        self.tick()
        good = path in reader.confirm_links and self.link_open(reader, path)
        assert self.client.post(path).status_code == (200 if good else 400)
        if good:
            reader.status, reader.confirm_issued = "active", None
            if self.suppressed.get(email_key(reader.email)) == "reader":
                del self.suppressed[email_key(reader.email)]

    @rule(data=st.data(), one_click=st.booleans(), variant=st.sampled_from(["current", "stale", "other purpose",
                                                                           "forged"]))
    @precondition(lambda self: self.readers)
    def reader_unsubscribes(self, data: st.DataObject, one_click: bool, variant: str) -> None:
        self.unsubscribed(data.draw(st.sampled_from(sorted(self.readers.values(), key=lambda r: r.id))), variant,
                          one_click)

    def unsubscribed(self, reader: Reader, variant: str, one_click: bool) -> None:
        self.tick()
        path, good = self.token(reader, "unsubscribe", variant)
        if one_click:             # RFC 8058: the mail client's POST
            answer = self.client.post(path, content="List-Unsubscribe=One-Click", follow_redirects=False,
                                      headers={"content-type": "application/x-www-form-urlencoded"})
        else:                     # the page's button
            answer = self.client.post(path, follow_redirects=False)
        assert answer.status_code == (200 if good else 400)
        if good:
            self.unsubscribe(email_key(reader.email), "reader")

    @rule(data=st.data(), variant=st.sampled_from(["current", "stale", "other purpose", "forged"]),
          categories=st.lists(st.sampled_from([*CATEGORIES, "categories/unknown"]), unique=True, max_size=3))
    @precondition(lambda self: self.readers)
    def reader_saves_preferences(self, data: st.DataObject, variant: str, categories: list[str]) -> None:
        self.tick()
        reader = data.draw(st.sampled_from(sorted(self.readers.values(), key=lambda r: r.id)))
        path, good = self.token(reader, "preferences", variant)
        chosen = tuple(c for c in categories if c in CATEGORIES)
        good = good and (chosen or not categories)      # only unknown names: refused, nothing saved
        form = urlencode([("topics", c) for c in categories])    # no box ticked: an empty form
        answer = self.client.post(path, content=form, headers={"content-type": "application/x-www-form-urlencoded"})
        assert answer.status_code == (200 if good else 400)
        if good:
            reader.categories = chosen

    # -- issues sent, and what comes back ------------------------------------------------------------------------

    def mailed_now(self) -> list[Reader]:
        """Whom an issue goes to: active subscribers whose address is not suppressed."""
        return [r for key, r in sorted(self.readers.items()) if r.status == "active" and key not in self.suppressed]

    @rule()
    def an_issue_is_sent(self) -> None:
        self.send_issue()

    def send_issue(self) -> None:
        now = self.tick()
        recipients = self.store.active_recipients()
        assert set(recipients) == {r.id for r in self.mailed_now()}
        issue = self.store.create_issue(period=f"2026-12-07-{self.serial:04d}", slot=now, starts=now, ends=now,
                                        variants=[StoredVariant("", "今週", "<p>本文</p>", "本文")],
                                        recipients={sid: "" for sid in recipients})
        with self.store.engine.begin() as conn:
            conn.execute(deliveries.update().where(deliveries.c.issue_id == issue.id).values(status="sent",
                                                                                           updated_at=now))
            for delivery, sid in conn.execute(sa.select(deliveries.c.id, deliveries.c.subscriber_id)
                                              .where(deliveries.c.issue_id == issue.id)):
                reader = next(r for r in self.readers.values() if r.id == sid)
                reader.deliveries.append(delivery)
                self.sent[delivery] = (email_key(reader.email), now)

    def bounced(self, reader: Reader, delivery: int, fixture: tuple[str, str], how: int) -> str:
        """Process a bounce of `delivery` returned to its VERP address; its effect."""
        raw = returned(fixture, spelled(reader.email, how), verp.return_path(RETURN_PATH, SECRET, delivery),
                       f"bounce-{self.serial}@mx.example.net")
        self.processed.append(raw)
        (outcome,) = process_message(self.config, self.store, raw, "test")
        self.named.add(delivery)
        return outcome.effect

    @rule(data=st.data(), fixture=st.sampled_from(HARD), how=st.integers(0, 2))
    @precondition(lambda self: self.sent)
    def hard_bounce(self, data: st.DataObject, fixture: tuple[str, str], how: int) -> None:
        self.tick()
        delivery = data.draw(st.sampled_from(sorted(self.sent)))
        key = self.sent[delivery][0]
        assert self.bounced(self.readers[key], delivery, fixture, how) == "suppressed"
        self.suppress(key, "hard")

    def soft_bounced(self, delivery: int, fixture: tuple[str, str], how: int) -> None:
        key = self.sent[delivery][0]
        count = self.soft_count(key, delivery)
        done = "suppressed" if count >= SOFT_LIMIT else "counted"
        assert self.bounced(self.readers[key], delivery, fixture, how) == \
            f"{done}: soft bounce {count} of {SOFT_LIMIT} within 30d"
        self.soft.append((key, delivery, datetime.now(UTC)))
        if count >= SOFT_LIMIT:
            self.suppress(key, "soft")

    @rule(data=st.data(), fixture=st.sampled_from(SOFT), how=st.integers(0, 2))
    @precondition(lambda self: self.sent)
    def soft_bounce(self, data: st.DataObject, fixture: tuple[str, str], how: int) -> None:
        self.tick()
        self.soft_bounced(data.draw(st.sampled_from(sorted(self.sent))), fixture, how)

    @rule(data=st.data(), fixture=st.sampled_from(SOFT), clean_at=st.one_of(st.none(), st.integers(1, SOFT_LIMIT - 1)))
    @precondition(lambda self: self.mailed_now())
    def issues_soft_bounce(self, data: st.DataObject, fixture: tuple[str, str], clean_at: int | None) -> None:
        """As many of a reader's issues in a row as the limit soft-bounce, or between them one goes through (a
        clean delivery: the count starts again)."""
        reader = data.draw(st.sampled_from(self.mailed_now()))
        for issue in range(SOFT_LIMIT + (clean_at is not None)):
            if reader not in self.mailed_now():
                break
            self.send_issue()
            if issue != clean_at:
                self.tick()
                self.soft_bounced(reader.deliveries[-1], fixture, 0)

    @rule(data=st.data(), how=st.integers(0, 2))
    @precondition(lambda self: self.sent)
    def complaint_by_mail(self, data: st.DataObject, how: int) -> None:
        self.tick()
        delivery = data.draw(st.sampled_from(sorted(self.sent)))
        key = self.sent[delivery][0]
        assert self.bounced(self.readers[key], delivery, COMPLAINT, how) == "unsubscribed and suppressed (complaint)"
        self.unsubscribe(key, "complaint")

    @rule(address=st.sampled_from(READERS + [STRANGER]), how=st.integers(0, 2),
          fixture=st.sampled_from([*HARD, *SOFT, COMPLAINT]), forged_tag=st.booleans())
    def forged_bounce(self, address: str, how: int, fixture: tuple[str, str], forged_tag: bool) -> None:
        """Anyone can mail the return path: without a good VERP tag a bounce or complaint changes nobody."""
        self.tick()
        envelope = RETURN_PATH.replace("@", f"+{max(self.sent, default=1)}-abcdefgh@") if forged_tag else RETURN_PATH
        raw = returned(fixture, spelled(address, how), envelope, f"forged-{self.serial}@mx.example.net")
        self.processed.append(raw)
        (outcome,) = process_message(self.config, self.store, raw, "test")
        assert outcome.effect.startswith(UNVERIFIED)
        assert evidence.one(self.store, outcome.evidence_id).unverified

    @rule(data=st.data())
    @precondition(lambda self: self.processed)
    def a_returned_message_is_read_again(self, data: st.DataObject) -> None:
        self.tick()
        raw = data.draw(st.sampled_from(self.processed))
        assert [o.effect for o in process_message(self.config, self.store, raw, "again")] == [RECORDED_BEFORE]

    # -- Mailgun -------------------------------------------------------------------------------------------------

    def mailgun(self, event: dict) -> dict:
        body = mailgun_body(event, key=MAILGUN_KEY, token=f"t{self.serial:049d}")
        answer = self.client.post("/webhooks/mailgun", json=body)
        assert answer.status_code == 200, answer.text
        self.captured.append((body, int(body["signature"]["timestamp"])))
        assert self.client.post("/webhooks/mailgun", json=body).status_code == 406     # a captured copy, at once
        return answer.json()

    @rule(data=st.data(), event=st.sampled_from(["complained", "failed permanently", "failed temporarily"]))
    def mailgun_event(self, data: st.DataObject, event: str) -> None:
        if event == "complained":
            self.complaint_by_mailgun(data.draw(st.sampled_from(READERS + [STRANGER])), data.draw(st.integers(0, 2)))
        elif self.sent:
            self.failure_by_mailgun(data.draw(st.sampled_from(sorted(self.sent))), event == "failed permanently")

    def complaint_by_mailgun(self, address: str, how: int) -> None:
        self.tick()
        key = email_key(address)
        assert self.mailgun({"event": "complained", "id": f"c-{self.serial}", "recipient": spelled(address, how)}) \
            == {"recorded": 1, "recorded_before": 0}
        if key in self.readers:
            # Without a VERP sender, the complaint is about the address's latest delivery.
            latest = max((d for d, (owner, _) in self.sent.items() if owner == key),
                         key=lambda d: (self.sent[d][1], d), default=None)
            if latest is not None:
                self.named.add(latest)
            self.unsubscribe(key, "complaint")

    def failure_by_mailgun(self, delivery: int, permanent: bool) -> None:
        self.tick()
        key = self.sent[delivery][0]
        status = {"code": 550, "message": "5.1.1 The email account that you tried to reach does not exist"} \
            if permanent else {"code": 452, "message": "4.2.2 The email account is over quota"}
        count = self.soft_count(key, delivery)
        event = {"event": "failed", "id": f"f-{self.serial}", "severity": "permanent" if permanent else "temporary",
                 "reason": "bounce" if permanent else "generic", "recipient": self.readers[key].email,
                 "envelope": {"sender": verp.return_path(RETURN_PATH, SECRET, delivery)}, "delivery-status": status}
        assert self.mailgun(event) == {"recorded": 1, "recorded_before": 0}
        self.named.add(delivery)
        (row,) = evidence.newest(self.store, limit=1)
        if permanent:
            assert row.effect == "suppressed"
            self.suppress(key, "hard")
            return
        done = "suppressed" if count >= SOFT_LIMIT else "counted"
        assert row.effect == f"{done}: soft bounce {count} of {SOFT_LIMIT} within 30d"
        self.soft.append((key, delivery, datetime.now(UTC)))
        if count >= SOFT_LIMIT:
            self.suppress(key, "soft")

    @rule(data=st.data(), replay=st.sampled_from(["as captured", "other event", "retried"]),
          address=st.sampled_from(READERS))
    @precondition(lambda self: self.captured)
    def mailgun_request_replayed(self, data: st.DataObject, replay: str, address: str) -> None:
        """A captured request again, or its signature carrying a complaint about someone else: refused; Mailgun's
        retry of an event under a new token: recorded once."""
        self.tick()
        body, stamp = data.draw(st.sampled_from(self.captured))
        if replay == "retried":
            again = mailgun_body(body["event-data"], key=MAILGUN_KEY, token=f"r{self.serial:049d}")
            assert self.client.post("/webhooks/mailgun", json=again).json() == {"recorded": 0, "recorded_before": 1}
            return
        if replay == "other event":
            body = {**body, "event-data": {"event": "complained", "id": f"x-{self.serial}", "recipient": address}}
        fresh = datetime.now(UTC).timestamp() - stamp <= 15 * 60
        assert self.client.post("/webhooks/mailgun", json=body).status_code == (406 if fresh else 403)

    # -- the operator, and time ----------------------------------------------------------------------------------

    @rule(address=st.sampled_from(READERS + [STRANGER]), action=st.sampled_from(["suppress", "remove", "lift"]))
    def operator(self, address: str, action: str) -> None:
        self.operated(address, action)

    def operated(self, address: str, action: str) -> None:
        """The dashboard's suppress and lift, and `feedpub subscribers remove`: the store calls they make."""
        self.tick()
        key = email_key(address)
        email = self.readers[key].email if key in self.readers else address
        if action == "suppress":
            self.store.suppress(email, "suppressed by an operator")
            self.suppress(key, "operator")
        elif action == "remove":
            self.store.unsubscribe(email, "removed by operator", cause="operator")
            self.unsubscribe(key, "operator")
        else:
            self.store.lift_suppression(email)
            self.suppressed.pop(key, None)

    @rule(days=st.sampled_from([1, 8, 31]))
    def time_passes(self, days: int) -> None:
        self.now.shift(timedelta(days=days))


def test_nothing_but_a_reader_or_the_operator_changes_a_subscriber(monkeypatch) -> None:
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    monkeypatch.setenv("FEEDPUB_MAILGUN_SIGNING_KEY", MAILGUN_KEY)
    run_state_machine_as_test(ListRules, settings=settings(
        max_examples=75, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))



@pytest.mark.parametrize(("event", "reason"), [
    ("complaint", "complaint"), ("hard bounce", "hard bounce 5.1.1: 550 5.1.1 user unknown"),
    ("operator", "suppressed by an operator")])
def test_what_follows_a_readers_unsubscribe_outlasts_their_next_confirmation(tmp_path, monkeypatch, event,
                                                                             reason) -> None:
    """The reader left, signed up again, and before they confirm a complaint, a hard bounce of an earlier
    issue or the operator suppresses the address: confirming lifts only the reader's own unsubscribe."""
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    outbox: list[tuple[str, str, str]] = []
    _, store, client = reader_app(tmp_path, outbox)
    reader = "ayumi.sato@example.jp"
    with client, time_machine.travel(START, tick=False) as clock:
        client.post("/subscribe", data={"email": reader})
        assert client.post(re.search(rf"{PUBLIC}(/confirm/\S+)", outbox[-1][2])[1]).status_code == 200
        clock.shift(timedelta(minutes=1))
        assert client.post(f"/unsubscribe/{make_token(SECRET, 'unsubscribe', 1)}").status_code == 200
        clock.shift(timedelta(minutes=1))
        client.post("/subscribe", data={"email": reader})
        link = re.search(rf"{PUBLIC}(/confirm/\S+)", outbox[-1][2])[1]
        if event == "complaint":
            store.unsubscribe(reader, reason, cause="complaint")   # as a complaint, by mail or webhook, does
        else:                                          # as a hard bounce, or the dashboard's button, does
            store.suppress(reader, reason, cause="bounce" if event == "hard bounce" else "operator")
        confirmed = client.post(link)
        assert confirmed.status_code == (400 if event == "complaint" else 200)
        assert store.suppression(reader).reason == reason
        mailed = len(outbox)
        assert client.post("/subscribe", data={"email": reader}).status_code == 200
    assert len(outbox) == mailed                       # nothing more is mailed to it
