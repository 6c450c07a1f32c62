"""The blog's ActivityPub account against an implementation nobody here wrote: Fedify (tests/fediverse_peer).

A real daemon (`feedpub run`) behind an HTTPS front at https://127.0.0.1:PORT (its web.public_url), with
`activitypub.allow_private_addresses` (the peer lives at http://127.0.0.1). The peer looks the account up by
WebFinger, follows it, and verifies with Fedify's own checks (HTTP Signature, Digest, date, signer = actor) every
activity the blog sends it: the Accept, the Create(Article) of a post saved in the posts folder, its Update after
an edit, its Delete after removal; then it unfollows. The peer also signs the bad input feedpub must refuse.

Beside it, with the same peer: a category account's Announce, NodeInfo and the outbox as Fedify reads them, likes,
boosts and replies, the operator's follower list; and, on sites served in the test process (builds and deliveries
run by the test, or by two `feedpub worker`s on PostgreSQL): a key at a private address refused, an instance that
answers 500 or hangs retried then paused, a blocked instance, each post delivered to an instance once.

Needs Node.js and `npm ci --prefix tests/fediverse_peer` (skipped without them, except under CI=true, where
.ci/run installs them). One peer (about 3 s to start) and one daemon for the module.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from feedpub.config import Config
from feedpub.config_file import load_config
from feedpub.fediverse.delivery import deliver
from feedpub.fediverse.ledger import Ledger
from feedpub.fediverse.queue import cancel_host, next_retry
from feedpub.store import Store, open_store
from feedpub.web.app import create_app
from tests.conftest import serving
from tests.fedify_peer import FedifyPeer, TLSFront, free_port, require_peer, self_signed_certificate

SITE_URL = "https://blog.example.com"
TITLE = "ALLFORCES"
TOKYO = ZoneInfo("Asia/Tokyo")


@dataclass
class Blog:
    """A site folder with the accounts on, at `public_url`."""

    root: Path
    public_url: str

    @property
    def log(self) -> Path:
        """What its daemon (`start_daemon`) wrote to stderr."""
        return self.root / "daemon.log"

    @property
    def handle(self) -> str:
        return f"@blog@{self.public_url.removeprefix('https://')}"

    def feedpub(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "feedpub", *args], cwd=self.root, capture_output=True,
                              text=True, timeout=60, env={**os.environ, "FEEDPUB_SECRET": "peer-secret"})

    def followers(self, account: str) -> list[str]:
        """The actors following `account`, as `feedpub fediverse followers --format json` lists them."""
        listed = self.feedpub("fediverse", "followers", "--format", "json")
        assert listed.returncode == 0, listed.stderr
        return [row["actor"] for row in json.loads(listed.stdout) if row["account"] == account]

    def save_post(self, slug: str, title: str, body: str, date: datetime, tags: str = "[]",
                  categories: str = "[]") -> Path:
        """posts/DATE-slug.md, dated `date` in the site's time zone (as the file name is read)."""
        date = date.astimezone(TOKYO)
        path = self.root / "posts" / f"{date:%Y-%m-%d}-{slug}.md"
        path.write_text(f'---\ntitle: "{title}"\ndate: {date:%Y-%m-%d %H:%M:%S %z}\ntags: {tags}\n'
                        f'categories: {categories}\n---\n\n{body}\n', encoding="utf-8")
        return path


def write_site(root: Path, web_port: int, public_url: str, *, private: bool, store: str = "") -> None:
    """feedpub.toml with the accounts on (and `store` as [store] url when given), and an empty posts/."""
    (root / "feedpub.toml").write_text(f"""
[site]
title = "{TITLE}"
description = "AIと開発の週報 / a weekly on AI and software"
url = "{SITE_URL}"
timezone = "Asia/Tokyo"
language = "ja"
[web]
listen = "127.0.0.1:{web_port}"
public_url = "{public_url}"
[activitypub]
enabled = true
username = "blog"
categories = true
allow_private_addresses = {str(private).lower()}
""" + (f'[store]\nurl = "{store}"\n' if store else ""), encoding="utf-8")
    (root / "posts").mkdir()


def start_daemon(root: Path, backend: str) -> subprocess.Popen[bytes]:
    """`feedpub run` in `root`, once its first build is done; its stderr in root/daemon.log."""
    log = root / "daemon.log"
    with log.open("wb") as err:   # the child has its own copy
        process = subprocess.Popen([sys.executable, "-m", "feedpub", "run"], cwd=root, stdout=subprocess.DEVNULL,
                                   stderr=err, env={**os.environ, "FEEDPUB_SECRET": "peer-secret"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{backend}/healthz").json()["last_build"]:
                return process
        except httpx.HTTPError:
            pass
        assert process.poll() is None, log.read_text()
        time.sleep(0.2)
    raise AssertionError(f"the daemon did not come up:\n{log.read_text()}")


@dataclass
class ServedSite:
    """A site's web app served in this process (no daemon: the test runs builds and deliveries itself)."""

    blog: Blog
    config: Config
    store: Store
    actor: str    # the blog account's actor id, as WebFinger gives it


@contextmanager
def served_site(root: Path, *, private: bool = True, store: str = "") -> Iterator[ServedSite]:
    """A site at http://127.0.0.1:PORT whose web app (inboxes, actors, objects) uvicorn serves until the block
    ends; FEEDPUB_SECRET must be set."""
    web_port = free_port()
    public_url = f"http://127.0.0.1:{web_port}"
    write_site(root, web_port, public_url, private=private, store=store)
    config = load_config(root / "feedpub.toml")
    opened = open_store(config.store_url)
    app = create_app(config, opened, send_confirmation=lambda *mail: None, topics=lambda: [], health=lambda: {})
    try:
        with serving(app, web_port):
            found = httpx.get(f"{public_url}/.well-known/webfinger",
                              params={"resource": f"acct:blog@127.0.0.1:{web_port}"})
            found.raise_for_status()
            actor = next(link["href"] for link in found.json()["links"] if link.get("rel") == "self")
            yield ServedSite(Blog(root, public_url), config, opened, actor)
    finally:
        opened.engine.dispose()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path]) -> Iterator[FedifyPeer]:
    require_peer()
    started = FedifyPeer(free_port(), certificate[0], tmp_path_factory.mktemp("peer") / "peer.log")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def blog(tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path],
         peer: FedifyPeer) -> Iterator[Blog]:
    """The daemon with one backdated post (built, never pushed), at https://127.0.0.1:PORT."""
    root = tmp_path_factory.mktemp("blog")
    web_port, front_port = free_port(), free_port()
    public_url = f"https://127.0.0.1:{front_port}"
    write_site(root, web_port, public_url, private=True)
    front = TLSFront(front_port, web_port, *certificate).start()
    backend = f"http://127.0.0.1:{web_port}"
    process = start_daemon(root, backend)
    blog = Blog(root, public_url)
    blog.save_post("archive", "過去の記事", "以前の本文。", datetime.now(UTC) - timedelta(days=30))
    try:
        yield blog
    finally:
        front.stop()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)   # test_sigterm_stops_the_daemon_promptly holds it to less


def follower_count(peer: FedifyPeer, account: dict[str, Any]) -> int:
    """The account's followers collection as Fedify reads it (a count only, as the issue asks)."""
    return peer.lookup(account["followers"])["object"]["totalItems"]


def listed(value: Any) -> list[Any]:
    """A JSON-LD value as a list: Fedify's compacted form writes a list of one as that one."""
    return value if isinstance(value, list) else [value]


def posts_for(received: dict[str, Any], activity_id: str) -> list[dict[str, Any]]:
    """Every POST the peer's inboxes got carrying the activity `activity_id` (whatever Fedify answered)."""
    return [post for post in received["posts"] if json.loads(post["body"]).get("id") == activity_id]


def test_the_peer_follows_by_webfinger_and_verifies_create_update_delete_then_unfollows(
        blog: Blog, peer: FedifyPeer) -> None:
    """Fedify finds @blog by WebFinger; two of its accounts follow and each gets a signed Accept; a post saved in
    the folder comes as a Create(Article), its edit as an Update, its removal as a Delete, each verified by Fedify
    and POSTed to the instance's shared inbox once; the backdated post never comes; Undo(Follow) unfollows."""
    peer.reset()
    followed = peer.follow(blog.handle)
    account = followed["actor"]
    assert account["preferredUsername"] == "blog"
    assert account["name"] == TITLE
    assert account["id"].startswith(blog.public_url + "/")

    accept = peer.wait_for(peer.verified("Accept", followed["follow"]), "the signed Accept of its Follow")
    assert accept["actor"] == account["id"]
    mallory_followed = peer.follow(blog.handle, as_="mallory")
    peer.wait_for(peer.verified("Accept", mallory_followed["follow"]), "the Accept of the second account's Follow")
    assert follower_count(peer, account) == 2

    post = blog.save_post("fedify", "連合のテスト: Fedify", "新しい**記事**の本文です。", datetime.now(UTC),
                          tags="[ActivityPub, 日本語]")
    create = peer.wait_for(peer.verified("Create"), "the Create(Article) of the new post", timeout=30)
    article = create["object"]
    assert create["actor"] == account["id"]
    assert article["type"] == "Article"
    assert article["name"] == "連合のテスト: Fedify"
    assert "<strong>記事</strong>" in article["content"]
    assert article["url"].startswith(SITE_URL + "/")
    assert article["attributedTo"] == account["id"]
    assert {tag["name"] for tag in listed(article["tag"])} == {"#ActivityPub", "#日本語"}

    post.write_text(post.read_text(encoding="utf-8").replace("本文です。", "本文です(追記あり)。"), encoding="utf-8")
    update = peer.wait_for(peer.verified("Update", article["id"]), "the Update after the edit", timeout=30)
    assert "追記あり" in update["object"]["content"]
    assert update["actor"] == account["id"]

    post.unlink()
    delete = peer.wait_for(peer.verified("Delete", article["id"]), "the Delete after the removal", timeout=30)
    assert delete["object"]["type"] == "Tombstone"

    peer.unfollow(account["id"])
    peer.unfollow(account["id"], as_="mallory")
    assert follower_count(peer, account) == 0, "an Undo(Follow) left its follower"

    received = peer.received()
    assert [item["object_id"] for item in received["verified"] if item["type"] == "Create"] == [article["id"]], \
        "the backdated post was pushed"
    for activity in (accept, create, update, delete):
        sent = posts_for(received, activity["id"])
        assert [post["status"] for post in sent] == [202], f"{activity['type']} not delivered exactly once: {sent}"
    assert {post["path"] for post in received["posts"] if post["body"].count('"Article"')} == {"/inbox"}, \
        "a post went to a personal inbox, not the instance's shared one"


def test_a_category_account_boosts_its_posts_to_its_followers(blog: Blog, peer: FedifyPeer) -> None:
    """Following only the category `news`: its new post arrives as the category's Announce of the blog's Article,
    which Fedify fetches from its id."""
    peer.reset()
    handle = blog.handle.replace("@blog@", "@news@")
    blog.save_post("older-news", "以前のニュース", "古い本文。", datetime.now(UTC) - timedelta(days=20),
                   categories="[news]")   # the category's first post makes it an account; backdated: not pushed
    deadline = time.monotonic() + 20
    while peer.http.post("/control/lookup", content=json.dumps({"uri": handle})).status_code != 200:
        assert time.monotonic() < deadline, f"{handle} never found by WebFinger"
        time.sleep(0.2)
    followed = peer.follow(handle)
    category = followed["actor"]
    assert category["preferredUsername"] == "news"
    peer.wait_for(peer.verified("Accept", followed["follow"]), "the category's Accept")
    try:
        blog.save_post("outside", "カテゴリ外の記事", "関係のない本文。", datetime.now(UTC))
        blog.save_post("news", "ニュース: 連合", "カテゴリの本文です。", datetime.now(UTC), categories="[news]")
        announce = peer.wait_for(peer.verified("Announce"), "the category's Announce", timeout=30)
        assert announce["actor"] == category["id"]
        assert announce["object"] is not None, announce["object_error"]
        assert announce["object"]["type"] == "Article"
        assert announce["object"]["name"] == "ニュース: 連合"
        assert announce["object"]["id"] == announce["object_id"]
    finally:
        peer.unfollow(category["id"])
    received = peer.received()
    assert [item["type"] for item in received["verified"]] == ["Accept", "Announce"], "the post outside the category"
    assert [post["status"] for post in posts_for(received, announce["id"])] == [202]


def test_fedify_reads_the_nodeinfo_and_walks_the_outbox(blog: Blog, peer: FedifyPeer) -> None:
    info = peer.control("nodeinfo", url=blog.public_url + "/")
    assert info["software"]["name"] == "feedpub"
    assert info["protocols"] == ["activitypub"]
    outbox = peer.control("outbox", actor=blog.handle)
    assert outbox["totalItems"] == len(outbox["items"]) >= 1
    assert {item["type"] for item in outbox["items"]} == {"Create"}
    assert {item["object"]["type"] for item in outbox["items"]} == {"Article"}
    assert "過去の記事" in {item["object"]["name"] for item in outbox["items"]}


def test_likes_boosts_and_replies_signed_by_fedify_are_counted_once_and_replies_never_published(
        blog: Blog, peer: FedifyPeer, account: dict[str, Any], certificate: tuple[Path, Path]) -> None:
    """On the backdated post (in the outbox since the daemon started): a Like replayed byte for byte and a boost
    count once each, an undone Like no more; a reply is kept for the operator and appears in no outbox."""
    outbox = peer.control("outbox", actor=blog.handle)["items"]
    target = next(item["object"]["id"] for item in outbox if item["object"]["name"] == "過去の記事")
    context = "https://www.w3.org/ns/activitystreams"
    like = {"@context": context, "id": f"{peer.actor}/likes/1", "type": "Like", "actor": peer.actor, "object": target}
    boost = {"@context": context, "id": f"{peer.mallory}/boosts/1", "type": "Announce", "actor": peer.mallory,
             "object": target}
    reply = {"@context": context, "id": f"{peer.actor}/replies/1#create", "type": "Create", "actor": peer.actor,
             "object": {"id": f"{peer.actor}/replies/1", "type": "Note", "attributedTo": peer.actor,
                        "inReplyTo": target, "content": "<p>読みました、ありがとう</p>"}}
    inbox = shared_inbox(account)
    liked = peer.send(inbox, like)
    assert liked["status"] == 202, liked
    with httpx.Client(verify=ssl.create_default_context(cafile=certificate[0])) as client:
        replayed = client.post(inbox, content=json.dumps(like, ensure_ascii=False).encode(),
                               headers={k: v for k, v in liked["headers"].items() if k != "content-length"})
    assert replayed.status_code < 300 or replayed.status_code == 401, replayed.text
    assert peer.send(inbox, boost, signer="mallory")["status"] == 202
    assert peer.send(inbox, reply)["status"] == 202

    store = open_store(load_config(blog.root / "feedpub.toml").store_url)
    try:
        ledger = Ledger(store)
        assert ledger.reaction_counts(target) == {"like": 1, "announce": 1, "reply": 1}
        assert [(actor, content) for actor, content, _ in ledger.replies(target)] == \
            [(peer.actor, "<p>読みました、ありがとう</p>")]
        undo = {"@context": context, "id": f"{peer.actor}/likes/1#undo", "type": "Undo", "actor": peer.actor,
                "object": {key: value for key, value in like.items() if key != "@context"}}
        assert peer.send(inbox, undo)["status"] == 202
        assert ledger.reaction_counts(target) == {"announce": 1, "reply": 1}
    finally:
        store.engine.dispose()
    published = peer.control("outbox", actor=blog.handle)["items"]
    assert "読みました" not in json.dumps(published, ensure_ascii=False)


def test_the_operator_sees_the_peer_follow_and_unfollow(blog: Blog, peer: FedifyPeer) -> None:
    followed = peer.follow(blog.handle)
    peer.wait_for(peer.verified("Accept", followed["follow"]), "the signed Accept of its Follow")
    assert blog.followers("blog").count(peer.actor) == 1
    peer.unfollow(followed["actor"]["id"])
    assert peer.actor not in blog.followers("blog")


@pytest.fixture(scope="module")
def account(blog: Blog, peer: FedifyPeer) -> dict[str, Any]:
    """The blog's actor document as Fedify read it (by WebFinger)."""
    return peer.lookup(blog.handle)["object"]


def shared_inbox(account: dict[str, Any]) -> str:
    return account["endpoints"]["sharedInbox"]


def follow_of(actor: str, account: dict[str, Any], name: str) -> dict[str, Any]:
    return {"@context": "https://www.w3.org/ns/activitystreams", "id": f"{actor}/follows/{name}", "type": "Follow",
            "actor": actor, "object": account["id"]}


def accepted(peer: FedifyPeer, follow_id: str) -> bool:
    return any(item["type"] == "Accept" and item["object_id"] == follow_id for item in peer.received()["verified"])


def test_unsigned_wrongly_signed_forged_and_stale_follows_answer_401_and_record_nothing(
        peer: FedifyPeer, account: dict[str, Any]) -> None:
    before = follower_count(peer, account)
    inbox = shared_inbox(account)
    day_ago = (datetime.now(UTC) - timedelta(days=1)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    in_two_hours = (datetime.now(UTC) + timedelta(hours=2)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    cases = {
        "unsigned": {"unsigned": True},
        "body-changed-after-signing": {"tamper": "body"},
        "mallory-signs-under-peers-key-id": {"signer": "mallory", "key_of": "peer"},
        "mallory-signs-as-herself-for-peer": {"signer": "mallory"},
        "signed-a-day-ago": {"date": day_ago},
        "signed-two-hours-ahead": {"date": in_two_hours},
        "rfc9421-body-changed-after-signing": {"tamper": "body", "spec": "rfc9421"},
        "rfc9421-mallory-signs-under-peers-key-id": {"signer": "mallory", "key_of": "peer", "spec": "rfc9421"},
        "rfc9421-mallory-signs-as-herself-for-peer": {"signer": "mallory", "spec": "rfc9421"},
        "rfc9421-signed-a-day-ago": {"date": day_ago, "spec": "rfc9421"},
    }
    follows = {}
    for name, how in cases.items():
        follows[name] = follow_of(peer.actor, account, name)
        answer = peer.send(inbox, follows[name], **how)
        assert answer["status"] == 401, f"{name}: {answer}"
    time.sleep(1)   # an Accept sent anyway would be on its way by now
    assert follower_count(peer, account) == before
    assert not [name for name, follow in follows.items() if accepted(peer, follow["id"])]


def test_fedify_signing_per_rfc9421_is_taken_at_the_first_knock(peer: FedifyPeer, account: dict[str, Any]) -> None:
    """Fedify (≥ 1.6) signs per RFC 9421 first and falls back to draft-cavage only when refused ("double
    knocking"): both its own Follow and a raw RFC 9421 request are taken as they come."""
    before = follower_count(peer, account)
    follow = follow_of(peer.mallory, account, "rfc9421")
    answer = peer.send(shared_inbox(account), follow, signer="mallory", spec="rfc9421")
    assert answer["status"] == 202, answer
    assert follower_count(peer, account) == before + 1

    peer.reset()
    followed = peer.follow(account["id"])
    peer.wait_for(peer.verified("Accept", followed["follow"]), "the Accept")
    knocks = [(sent["status"], "signature-input" in sent["headers"]) for sent in peer.received()["sent"]]
    assert knocks == [(202, True)], "Fedify's RFC 9421 Follow was refused (then sent again per draft-cavage)"
    peer.unfollow(account["id"])
    undo = {"@context": "https://www.w3.org/ns/activitystreams", "id": f"{peer.mallory}/undos/rfc9421",
            "type": "Undo", "actor": peer.mallory, "object": follow}
    assert peer.send(shared_inbox(account), undo, signer="mallory")["status"] == 202


def test_a_replayed_follow_is_taken_once(peer: FedifyPeer, account: dict[str, Any],
                                         certificate: tuple[Path, Path]) -> None:
    before = follower_count(peer, account)
    mallory = peer.mallory
    follow = follow_of(mallory, account, "replayed")
    first = peer.send(shared_inbox(account), follow, signer="mallory")
    assert 200 <= first["status"] < 300, first
    peer.wait_for(peer.verified("Accept", follow["id"]), "the Accept of mallory's Follow")

    body = json.dumps(follow, ensure_ascii=False).encode()
    headers = {name: value for name, value in first["headers"].items() if name != "content-length"}
    with httpx.Client(verify=ssl.create_default_context(cafile=certificate[0])) as client:
        again = client.post(shared_inbox(account), content=body, headers=headers)
    assert again.status_code < 300 or again.status_code == 401, again.text   # taken again (idempotent) or refused
    assert follower_count(peer, account) == before + 1
    undo = {"@context": "https://www.w3.org/ns/activitystreams", "id": f"{mallory}/undos/replayed", "type": "Undo",
            "actor": mallory, "object": follow}
    assert peer.send(shared_inbox(account), undo, signer="mallory")["status"] == 202
    assert follower_count(peer, account) == before


def test_oversized_and_malformed_activities_are_refused(blog: Blog, peer: FedifyPeer,
                                                        account: dict[str, Any]) -> None:
    before = follower_count(peer, account)
    inbox = shared_inbox(account)
    mallory = peer.mallory
    huge = {"@context": "https://www.w3.org/ns/activitystreams", "id": f"{mallory}/notes/huge", "type": "Create",
            "actor": mallory, "object": {"id": f"{mallory}/notes/huge/object", "type": "Note",
                                         "attributedTo": mallory, "content": "長" * 2_000_000}}
    assert peer.send(inbox, huge, signer="mallory")["status"] == 413
    long_reply = {**huge, "id": f"{mallory}/notes/long", "object": {**huge["object"], "id": f"{mallory}/notes/long/1",
                                                                     "content": "長い返信。" * 6_000}}
    assert peer.send(inbox, long_reply, signer="mallory")["status"] == 202   # 90 kB: an honest long one

    malformed = {
        "not JSON": '{"type": "Follow", "actor": ',
        "a JSON array": "[]",
        "a JSON string": '"Follow"',
        "no type": {"@context": "https://www.w3.org/ns/activitystreams", "id": f"{mallory}/x/1", "actor": mallory,
                    "object": account["id"]},
        "an actor that is not a URL": {"@context": "https://www.w3.org/ns/activitystreams", "id": f"{mallory}/x/2",
                                       "type": "Follow", "actor": 42, "object": account["id"]},
    }
    for name, body in malformed.items():
        answer = peer.send(inbox, body, signer="mallory")
        assert 400 <= answer["status"] < 500, f"{name}: {answer}"
    assert follower_count(peer, account) == before
    assert "Traceback" not in blog.log.read_text(errors="replace")


def test_an_actor_deleted_on_its_instance_no_longer_follows(peer: FedifyPeer, account: dict[str, Any]) -> None:
    before = follower_count(peer, account)
    follow = follow_of(peer.mallory, account, "then-deleted")
    assert peer.send(shared_inbox(account), follow, signer="mallory")["status"] == 202
    assert follower_count(peer, account) == before + 1
    deleted = {"@context": "https://www.w3.org/ns/activitystreams", "id": f"{peer.mallory}#delete", "type": "Delete",
               "actor": peer.mallory, "object": peer.mallory}
    assert peer.send(shared_inbox(account), deleted, signer="mallory")["status"] == 202
    assert follower_count(peer, account) == before


def test_a_key_at_a_private_address_is_refused_without_allow_private_addresses(
        tmp_path: Path, peer: FedifyPeer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The peer's key lives at http://127.0.0.1: a site without allow_private_addresses never fetches it."""
    monkeypatch.setenv("FEEDPUB_SECRET", "peer-secret")
    with served_site(tmp_path, private=False) as site:
        document = httpx.get(site.actor, headers={"Accept": "application/activity+json"}).json()
        follow = {"@context": "https://www.w3.org/ns/activitystreams", "id": f"{peer.actor}/follows/private",
                  "type": "Follow", "actor": peer.actor, "object": site.actor}
        answer = peer.send(document["inbox"], follow)
        assert answer["status"] == 401, answer
        assert httpx.get(document["followers"], headers={"Accept": "application/activity+json"}
                         ).json()["totalItems"] == 0
    # feedpub signs its fetches as its instance actor, on its own public_url
    by_this_site = [fetch for fetch in peer.received()["fetched"]
                    if site.blog.public_url in f"{fetch['signature']} {fetch['signature_input']}"]
    assert by_this_site == [], "the key at a private address was fetched"


def test_sigterm_stops_the_daemon_promptly_with_activitypub_enabled(tmp_path: Path) -> None:
    """A service manager's stop ends `feedpub run` in about a second with the accounts on, as without them: the
    fediverse sender does not sleep out its 30 s between looks at the queue first."""
    web_port = free_port()
    public_url = f"http://127.0.0.1:{web_port}"
    write_site(tmp_path, web_port, public_url, private=True)
    process = start_daemon(tmp_path, public_url)
    process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(timeout=10) == 0, (tmp_path / "daemon.log").read_text()
    finally:
        process.kill()


def sleep_until_retry(store: Store) -> None:
    """Until the queue's next deferred delivery is due (what the daemon's sender waits for)."""
    time.sleep(max(0.0, (next_retry(store) - datetime.now(UTC)).total_seconds()) + 0.05)


def test_a_follower_instance_answering_500_is_retried_then_paused_and_a_hanging_one_times_out(
        tmp_path: Path, peer: FedifyPeer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deliveries of one site's queue, run as the daemon runs them (a shorter back-off), to the peer answering
    500, then hanging: each failure is retried, the third in a row pauses the instance (its rows wait, unsent, until
    the pause ends), then the post reaches it once and Fedify verifies it."""
    monkeypatch.setenv("FEEDPUB_SECRET", "peer-secret")
    retry_base, peer_host = timedelta(seconds=0.5), f"127.0.0.1:{peer.port}"
    peer.reset()
    with served_site(tmp_path) as site:
        config, store, blog = site.config, site.store, site.blog
        followed = peer.follow(site.actor)
        peer.wait_for(peer.verified("Accept", followed["follow"]), "the Accept")
        try:
            peer.fault("500")
            blog.save_post("down", "落ちている相手へ", "再送の本文。", datetime.now(UTC))
            built = blog.feedpub("build")
            assert built.returncode == 0, built.stderr
            paused = set()
            for attempt in range(1, 4):
                summary = deliver(config, store, retry_base=retry_base)
                assert summary.counts["deferred"] == 1, f"attempt {attempt}: {summary.line()}"
                paused |= summary.paused
                if attempt < 3:
                    assert not paused
                    sleep_until_retry(store)
            assert paused == {peer_host}
            assert len([post for post in peer.received()["posts"] if post.get("fault") == "500"]) == 3

            peer.fault("ok")
            assert deliver(config, store, retry_base=retry_base).line() == "nothing due"   # paused
            for _ in range(3):   # the pause ends, then the row's own back-off (4 × retry_base after 3 attempts)
                sleep_until_retry(store)
                summary = deliver(config, store, retry_base=retry_base)
                if summary.counts["sent"]:
                    break
                assert next_retry(store) > datetime.now(UTC), \
                    "nothing was due, yet the next retry is past: the daemon's sender would wake every 50 ms"
            assert summary.counts["sent"] == 1
            create = peer.wait_for(peer.verified("Create"), "the Create after the pause")
            assert create["object"]["name"] == "落ちている相手へ"
            assert [post.get("status") for post in posts_for(peer.received(), create["id"])] == [None] * 3 + [202]

            peer.fault("hang")
            blog.save_post("hang", "応答しない相手へ", "時間切れの本文。", datetime.now(UTC))
            assert blog.feedpub("build").returncode == 0
            summary = deliver(config, store, retry_base=retry_base, timeout=httpx.Timeout(1.0))
            assert summary.counts["deferred"] == 1, summary.line()
            assert [post["fault"] for post in peer.received()["posts"] if post.get("fault") == "hang"] == ["hang"]
        finally:
            peer.fault("ok")
            peer.unfollow(followed["actor"]["id"])


def test_a_blocked_instance_is_refused_and_gets_nothing_more(tmp_path: Path, peer: FedifyPeer,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The peer follows, then its host is blocked: its next activity is refused (403), the post published after
    the block is queued for nobody and never reaches it. (Blocked as `feedpub fediverse block` blocks, with its
    functions: the command takes domain names only, and the peer has an address.)"""
    monkeypatch.setenv("FEEDPUB_SECRET", "peer-secret")
    peer.reset()
    with served_site(tmp_path) as site:
        followed = peer.follow(site.actor)
        peer.wait_for(peer.verified("Accept", followed["follow"]), "the Accept")
        assert Ledger(site.store).block("127.0.0.1")
        cancel_host(site.store, "127.0.0.1", "instance blocked by the operator")

        follow = {"@context": "https://www.w3.org/ns/activitystreams", "id": f"{peer.mallory}/follows/blocked",
                  "type": "Follow", "actor": peer.mallory, "object": site.actor}
        answer = peer.send(followed["actor"]["inbox"], follow, signer="mallory")
        assert answer["status"] == 403, answer
        assert peer.mallory not in site.blog.followers("blog")

        site.blog.save_post("after-block", "ブロック後の記事", "届かない本文。", datetime.now(UTC))
        assert site.blog.feedpub("build").returncode == 0
        deliver(site.config, site.store)
    received = peer.received()
    assert [item["type"] for item in received["verified"]] == ["Accept"]
    assert not [post for post in received["posts"] if "ブロック後の記事" in post["body"]]


def test_two_workers_on_postgresql_deliver_each_post_to_the_instance_once(
        tmp_path: Path, peer: FedifyPeer, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two accounts of the peer's instance follow; three new posts; two `feedpub worker`s share the PostgreSQL
    queue: each Create reaches the instance's shared inbox once, and Fedify verifies each."""
    monkeypatch.setenv("FEEDPUB_SECRET", "peer-secret")
    peer.reset()
    workers: list[subprocess.Popen[bytes]] = []
    with served_site(tmp_path, store=pg_url) as site:
        for follower in ("peer", "mallory"):
            followed = peer.follow(site.actor, as_=follower)
            peer.wait_for(peer.verified("Accept", followed["follow"]), f"{follower}'s Accept")
        titles = {f"並行配信 {n}" for n in range(3)}
        for n, title in enumerate(sorted(titles)):
            site.blog.save_post(f"parallel-{n}", title, f"{title}の本文。", datetime.now(UTC) - timedelta(minutes=n))
        built = site.blog.feedpub("build")
        assert built.returncode == 0, built.stderr
        assert "配信 3 件をキューに追加しました" in built.stdout, built.stdout   # 3 Creates, one inbox
        try:
            for n in range(2):
                with (tmp_path / f"worker-{n}.log").open("wb") as log:
                    workers.append(subprocess.Popen([sys.executable, "-m", "feedpub", "worker", "--idle", "1s"],
                                                    cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT))
            creates = peer.wait_for(
                lambda got: (found := [item for item in got["verified"] if item["type"] == "Create"])
                and len(found) >= 3 and found, "three Creates", timeout=30)
            time.sleep(1)   # a second copy from the other worker would be in by now
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            assert [worker.wait(timeout=30) for worker in workers] == [0, 0]
        finally:
            for worker in workers:
                worker.kill()
    received = peer.received()
    assert {create["object"]["name"] for create in creates} == titles
    for create in creates:
        assert [post["path"] for post in posts_for(received, create["id"])] == ["/inbox"], create["id"]
