"""The inboxes over real HTTP: feedpub's web app and a remote server with its own actors and keys (requests
signed with apsig), both served by uvicorn on 127.0.0.1, the store on SQLite (and PostgreSQL for the follow)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from apsig.draft import Verifier

from feedpub.fediverse.ledger import Ledger
from feedpub.store import Store
from tests.cli.test_daemon_e2e import free_port
from tests.conftest import Site
from tests.fediverse_actor import RemoteServer, remote_server, served_blog

AP = "application/activity+json"


class World:
    def __init__(self, blog: str, store: Store, remote: RemoteServer) -> None:
        self.blog, self.store, self.remote = blog, store, remote
        self.ledger = Ledger(store)
        self.ann, self.bob = remote.actors["ann"], remote.actors["bob"]
        self.account = f"{blog}/ap/accounts/blog"
        self.inbox = f"{blog}/ap/inbox"

    def follow(self, actor: Any = None, *, account: str = "", n: int = 1) -> dict[str, Any]:
        actor = actor or self.ann
        return {"@context": "https://www.w3.org/ns/activitystreams", "id": f"{actor.id}/follows/{n}",
                "type": "Follow", "actor": actor.id, "object": account or self.account}

    def post_id(self, index: int = 0) -> str:
        page = httpx.get(f"{self.account}/outbox?page=1", headers={"Accept": AP}).json()
        return page["orderedItems"][index]["object"]["id"]

    def followers(self, account: str = "blog") -> int:
        return httpx.get(f"{self.blog}/ap/accounts/{account}/followers", headers={"Accept": AP}).json()["totalItems"]


def _world(site: Site, monkeypatch: pytest.MonkeyPatch, *, store_url: str = "", extra: str = "") -> Iterator[World]:
    monkeypatch.setenv("FEEDPUB_SECRET", "fediverse-test-secret")
    with remote_server(free_port()) as remote, served_blog(site, free_port(), store_url=store_url,
                                                           extra=extra) as (blog, store):
        yield World(blog, store, remote)


@pytest.fixture
def world(site: Site, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    yield from _world(site, monkeypatch)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store_world(request: pytest.FixtureRequest, site: Site, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    yield from _world(site, monkeypatch, store_url=url)


def test_a_follow_is_stored_and_a_signed_accept_reaches_the_followers_inbox(any_store_world: World) -> None:
    world = any_store_world
    follow = world.follow()
    answer = world.ann.post(world.inbox, follow)
    assert answer.status_code == 202, answer.text
    assert world.followers() == 1 and world.followers("ai") == 0
    [follower] = world.ledger.followers("blog")
    assert (follower.inbox, follower.shared_inbox, follower.host) == (
        f"{world.ann.id}/inbox", f"{world.remote.base}/inbox", "127.0.0.1")
    [(path, headers, body)] = world.remote.wait_for(1)
    accepted = json.loads(body)
    assert path == "/users/ann/inbox"
    assert accepted["type"] == "Accept" and accepted["actor"] == world.account
    assert accepted["object"]["id"] == follow["id"] and accepted["object"]["actor"] == world.ann.id
    # The Accept's signature verifies with the key the account publishes (checked with apsig, not feedpub).
    actor = httpx.get(world.account, headers={"Accept": AP}).json()
    assert f'keyId="{world.account}#main-key"' in headers["signature"]
    assert Verifier(actor["publicKey"]["publicKeyPem"], "POST", f"{world.ann.id}/inbox", headers,
                    body).verify(raise_on_fail=True) == actor["publicKey"]["id"]


def test_a_replayed_follow_is_accepted_once_and_a_new_follow_again(any_store_world: World) -> None:
    world = any_store_world
    follow = world.follow()
    body = json.dumps(follow).encode()
    first = world.ann.post(world.inbox, body)
    assert first.status_code == 202, first.text
    world.remote.wait_for(1)
    # The same request again, byte for byte with its signature: taken, and nothing more is sent.
    replayed = httpx.post(world.inbox, content=body, headers={k: v for k, v in first.request.headers.items()
                                                              if k.lower() != "content-length"})
    assert replayed.status_code == 202, replayed.text
    assert world.ann.post(world.inbox, follow).status_code == 202     # signed anew, the same Follow id
    # Mastodon sends a new Follow when it thinks the first was lost, and expects an Accept of it.
    assert world.ann.post(world.inbox, world.follow(n=2)).status_code == 202
    accepts = [json.loads(body)["object"]["id"] for _, _, body in world.remote.wait_for(2)]
    time.sleep(1)           # an Accept sent anyway would be here by now
    assert [json.loads(body)["object"]["id"] for _, _, body in world.remote.received] == accepts == [
        follow["id"], world.follow(n=2)["id"]]
    assert world.followers() == 1
    # An unfollow, then the old Follow replayed: still no follower, nothing sent.
    undo = {"id": f"{world.ann.id}/undo/1", "type": "Undo", "actor": world.ann.id, "object": world.follow(n=2)}
    assert world.ann.post(world.inbox, undo).status_code == 202
    assert world.ann.post(world.inbox, follow).status_code == 202
    assert world.followers() == 0 and len(world.remote.received) == 2


def test_the_web_apps_log_speaks_the_sites_language(site: Site, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("FEEDPUB_SECRET", "fediverse-test-secret")
    caplog.set_level(logging.INFO, logger="feedpub.fediverse")
    with remote_server(free_port()) as remote, served_blog(site, free_port(), language="ja") as (blog, store):
        world = World(blog, store, remote)
        assert world.ann.post(world.inbox, world.follow()).status_code == 202
        remote.wait_for(1)
        time.sleep(0.5)      # the run's line is logged after the Accept is answered
    logged = [record.getMessage() for record in caplog.records if record.name == "feedpub.fediverse"]
    assert f"{world.ann.id} が blog をフォローしました" in logged
    assert "ウェブアプリからのフェディバース配信：配信 1 件を送信" in logged, logged


def test_undo_follow_and_a_deleted_actor_are_no_longer_followers(world: World) -> None:
    assert world.ann.post(world.inbox, world.follow()).status_code == 202
    assert world.ann.post(f"{world.blog}/ap/accounts/ai/inbox", world.follow(account=f"{world.blog}/ap/accounts/ai",
                                                                            n=2)).status_code == 202
    assert (world.followers(), world.followers("ai")) == (1, 1)
    undo = {"id": f"{world.ann.id}/undo/1", "type": "Undo", "actor": world.ann.id, "object": world.follow()}
    assert world.ann.post(world.inbox, undo).status_code == 202
    assert (world.followers(), world.followers("ai")) == (0, 1)
    delete = {"id": f"{world.ann.id}#delete", "type": "Delete", "actor": world.ann.id, "object": world.ann.id}
    assert world.ann.post(world.inbox, delete).status_code == 202
    assert world.followers("ai") == 0


def test_likes_and_boosts_are_counted_once_and_replies_kept(world: World) -> None:
    post = world.post_id()
    like = {"id": f"{world.ann.id}/likes/1", "type": "Like", "actor": world.ann.id, "object": post}
    for _ in range(2):    # a replay counts once
        assert world.ann.post(world.inbox, like).status_code == 202
    boost = {"id": f"{world.bob.id}/statuses/1/activity", "type": "Announce", "actor": world.bob.id,
             "object": post, "to": ["https://www.w3.org/ns/activitystreams#Public"]}
    assert world.bob.post(world.inbox, boost).status_code == 202
    reply = {"id": f"{world.ann.id}/statuses/9/activity", "type": "Create", "actor": world.ann.id,
             "object": {"id": f"{world.ann.id}/statuses/9", "type": "Note", "attributedTo": world.ann.id,
                        "inReplyTo": post, "content": "<p>面白い記事でした</p>"}}
    assert world.ann.post(world.inbox, reply).status_code == 202
    elsewhere = {"id": f"{world.ann.id}/likes/2", "type": "Like", "actor": world.ann.id,
                 "object": "https://elsewhere.example/notes/1"}
    assert world.ann.post(world.inbox, elsewhere).status_code == 202
    assert world.ledger.reaction_counts(post) == {"like": 1, "announce": 1, "reply": 1}
    assert [(actor, content) for actor, content, _ in world.ledger.replies(post)] == [
        (world.ann.id, "<p>面白い記事でした</p>")]
    undo = {"id": f"{world.ann.id}/likes/1/undo", "type": "Undo", "actor": world.ann.id, "object": like}
    assert world.ann.post(world.inbox, undo).status_code == 202
    assert world.ledger.reaction_counts(post) == {"announce": 1, "reply": 1}
    # Never published: the outbox still holds the two posts only.
    outbox = httpx.get(f"{world.account}/outbox", headers={"Accept": AP}).json()
    assert outbox["totalItems"] == 2


def test_other_activities_are_acknowledged_and_dropped(world: World) -> None:
    move = {"id": f"{world.ann.id}/moves/1", "type": "Move", "actor": world.ann.id, "object": world.ann.id,
            "target": "https://elsewhere.example/users/ann"}
    assert world.ann.post(world.inbox, move).status_code == 202
    assert world.followers() == 0


def test_unsigned_wrongly_signed_and_forged_activities_are_refused_and_nothing_is_recorded(world: World) -> None:
    follow = world.follow()
    unsigned = world.ann.post(world.inbox, follow, signed=False)
    assert unsigned.status_code == 401 and "not signed" in unsigned.text
    wrong_key = world.ann.post(world.inbox, follow, key=world.bob.key)
    assert wrong_key.status_code == 401 and "does not verify" in wrong_key.text
    # Bob signs, with his own good key, a Follow that says Ann sent it.
    forged = world.bob.post(world.inbox, follow)
    assert forged.status_code == 401 and "not by the activity's actor" in forged.text
    stale = world.ann.post(world.inbox, follow, date=datetime.now(UTC) - timedelta(hours=13))
    assert stale.status_code == 401 and "outside the window" in stale.text
    tampered_body = json.dumps({**follow, "id": f"{world.ann.id}/follows/other"}).encode()
    signed = world.ann.post(world.inbox, follow)       # a good one, to replay its headers over another body
    assert signed.status_code == 202
    replayed_headers = {k: v for k, v in signed.request.headers.items() if k.lower() != "content-length"}
    replayed = httpx.post(world.inbox, content=tampered_body, headers=replayed_headers)
    assert replayed.status_code == 401 and "Digest" in replayed.text
    assert world.followers() == 1          # the good one only
    assert len(world.ledger.followers("blog")) == 1


def test_oversized_and_malformed_bodies(world: World) -> None:
    big = {**world.follow(), "padding": "x" * 300_000}
    assert world.ann.post(world.inbox, big).status_code == 413
    assert world.ann.post(world.inbox, b"{not json").status_code == 400
    assert world.ann.post(world.inbox, b'["a list"]').status_code == 400
    assert world.ann.post(world.inbox, {"type": "Follow"}).status_code == 400     # no actor
    assert world.ann.post(f"{world.blog}/ap/accounts/nobody/inbox", world.follow()).status_code == 404
    assert world.followers() == 0


def test_a_blocked_instance_is_refused(world: World) -> None:
    world.ledger.block("127.0.0.1")
    answer = world.ann.post(world.inbox, world.follow())
    assert answer.status_code == 403 and "blocked" in answer.text
    assert world.followers() == 0


@pytest.fixture
def guarded_world(site: Site, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    yield from _world(site, monkeypatch, extra="allow_private_addresses = false")


def test_keys_at_private_addresses_are_not_fetched_without_the_setting(guarded_world: World) -> None:
    world = guarded_world
    answer = world.ann.post(world.inbox, world.follow())
    assert answer.status_code == 401
    assert "only https:// addresses are fetched from" in answer.text
    assert world.followers() == 0


def test_private_addresses_are_refused_even_over_https() -> None:
    import asyncio

    from feedpub.fediverse.remote import FetchRefused, check_address

    for url in ("https://127.0.0.1/users/a", "https://10.1.2.3/key", "https://[::1]/a", "https://169.254.169.254/",
                "https://localhost/users/a"):
        with pytest.raises(FetchRefused, match="private or local address"):
            asyncio.run(check_address(url, allow_private=False))
    asyncio.run(check_address("http://127.0.0.1:9/x", allow_private=True))


def test_keys_are_fetched_with_a_signed_get_once_and_kept(world: World) -> None:
    assert world.ann.post(world.inbox, world.follow()).status_code == 202
    like = {"id": f"{world.ann.id}/likes/5", "type": "Like", "actor": world.ann.id, "object": world.post_id()}
    assert world.ann.post(world.inbox, like).status_code == 202
    # The key once (kept for the like), the actor once more for the follow's inboxes.
    assert [path for path, _ in world.remote.fetched] == ["/users/ann", "/users/ann"]
    _, headers = world.remote.fetched[0]
    assert f'keyId="{world.blog}/ap/actor#main-key"' in headers["signature"]
    instance = httpx.get(f"{world.blog}/ap/actor", headers={"Accept": AP}).json()
    assert instance["type"] == "Application"
    assert httpx.get(instance["outbox"], headers={"Accept": AP}).json()["totalItems"] == 0
    Verifier(instance["publicKey"]["publicKeyPem"], "GET", world.ann.id, headers).verify(raise_on_fail=True)


def test_an_rfc_9421_signature_is_accepted_too(world: World) -> None:
    from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

    body = json.dumps(world.follow(world.bob)).encode()
    request = httpx.Request("POST", world.inbox, content=body, headers={"Content-Type": AP})
    signer = HTTPMessageSigner(signature_algorithm=algorithms.RSA_V1_5_SHA256,
                               key_resolver=MappingKeyResolver(public_keys={},
                                                               private_keys={world.bob.key_id: world.bob.key}))
    signer.sign(request, key_id=world.bob.key_id, label="sig1",
                covered_component_ids=("@method", "@target-uri"), body=body)
    assert httpx.Client().send(request).status_code == 202
    assert [f.actor for f in world.ledger.followers("blog")] == [world.bob.id]
    # The same signature over another body does not verify.
    tampered = httpx.Request("POST", world.inbox, content=body.replace(b"follows/1", b"follows/2"),
                             headers={k: v for k, v in request.headers.items() if k != "content-length"})
    answer = httpx.Client().send(tampered)
    assert answer.status_code == 401 and "RFC 9421" in answer.text


def test_behind_a_proxy_ending_tls_an_rfc_9421_signature_of_the_public_url_verifies(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

    monkeypatch.setenv("FEEDPUB_SECRET", "fediverse-test-secret")
    with remote_server(free_port()) as remote, served_blog(site, free_port(), public_scheme="https") as (blog, store):
        public, bob = blog.replace("http://", "https://"), remote.actors["bob"]
        body = json.dumps({"@context": "https://www.w3.org/ns/activitystreams", "id": f"{bob.id}/follows/1",
                           "type": "Follow", "actor": bob.id, "object": f"{public}/ap/accounts/blog"}).encode()
        request = httpx.Request("POST", f"{public}/ap/inbox", content=body, headers={"Content-Type": AP})
        HTTPMessageSigner(signature_algorithm=algorithms.RSA_V1_5_SHA256, key_resolver=MappingKeyResolver(
            public_keys={}, private_keys={bob.key_id: bob.key})).sign(
            request, key_id=bob.key_id, label="sig1", covered_component_ids=("@method", "@target-uri"), body=body)
        request.url = httpx.URL(f"{blog}/ap/inbox")     # the proxy passes it on over http, Host kept
        assert httpx.Client().send(request).status_code == 202
        assert [f.actor for f in Ledger(store).followers("blog")] == [bob.id]


def test_an_actor_deleted_on_its_server_is_removed_though_its_key_is_gone(world: World) -> None:
    bob = world.bob
    world.ledger.add_follower("blog", bob.id, bob.id + "/inbox", "", "127.0.0.1")
    del world.remote.actors["bob"]          # its server answers 410 Gone for it now
    delete = {"id": f"{bob.id}#delete", "type": "Delete", "actor": bob.id, "object": bob.id}
    assert bob.post(world.inbox, delete).status_code == 202
    assert world.followers() == 0
    # Anything else from a gone actor cannot be verified.
    assert bob.post(world.inbox, world.follow(bob)).status_code == 401


def test_a_request_signed_for_another_host_is_refused(world: World) -> None:
    elsewhere = "http://other.example/ap/inbox"
    body = json.dumps(world.follow()).encode()
    from email.utils import format_datetime

    from apsig.draft import Signer

    headers = Signer(headers={"date": format_datetime(datetime.now(UTC), usegmt=True)}, private_key=world.ann.key,
                     method="POST", url=elsewhere, key_id=world.ann.key_id, body=body).sign()
    answer = httpx.post(world.inbox, content=body, headers=headers)
    assert answer.status_code == 401 and "other.example" in answer.text


def test_a_category_with_a_japanese_slug_is_an_account_too(world: World) -> None:
    from urllib.parse import quote

    actor_url = f"{world.blog}/ap/accounts/{quote('国内')}"
    host = world.blog.removeprefix("http://")
    jrd = httpx.get(f"{world.blog}/.well-known/webfinger", params={"resource": f"acct:国内@{host}"}).json()
    assert jrd["links"][0]["href"] == actor_url
    actor = httpx.get(actor_url, headers={"Accept": AP}).json()
    assert actor["preferredUsername"] == "国内" and actor["inbox"] == actor_url + "/inbox"
    # Its inbox's path is signed percent-encoded, as sent.
    assert world.ann.post(actor["inbox"], world.follow(account=actor_url)).status_code == 202
    assert world.followers(quote("国内")) == 1
