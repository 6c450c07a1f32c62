"""The fediverse wing's ground: `[activitypub]` in feedpub.toml, its tables on SQLite and PostgreSQL (keys made
once, followers, blocks, reactions counted once), and HTTP Signatures signed and verified."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from importlib import resources
from pathlib import Path

import pytest
from apsig.draft import Signer

from feedpub.errors import ConfigError
from feedpub.fediverse.keys import new_key_pair
from feedpub.fediverse.ledger import Ledger
from feedpub.fediverse.signatures import BadSignature, claim, sign_request, verify
from feedpub.store import Store
from tests.conftest import Site


def test_activitypub_settings_are_read_and_bad_ones_name_their_line(site: Site) -> None:
    assert site.config.activitypub.enabled is False and site.config.activitypub.username == "blog"
    site.configure('[activitypub]\nenabled = true\nusername = "news"\ncategories = true\n'
                   'allow_private_addresses = true\ngive_up_after = "3d"\n')
    ap = site.config.activitypub
    assert (ap.enabled, ap.username, ap.categories, ap.allow_private_addresses, ap.give_up_after) == (
        True, "news", True, True, "3d")
    site.configure('[activitypub]\nenabled = true\nusername = "Blog Post"\n')
    with pytest.raises(ConfigError) as bad:
        load_activitypub(site)
    assert str(bad.value).startswith(f"{site.toml}:8: 'activitypub.username': 'Blog Post' is not an account name")
    site.configure('[activitypub]\ngive_up_after = "a week"\n')
    with pytest.raises(ConfigError, match=r"feedpub.toml:7: 'give_up_after': 'a week' is not a duration"):
        load_activitypub(site)


def load_activitypub(site: Site) -> object:
    return site.config.activitypub


def test_the_scaffold_documents_every_activitypub_key() -> None:
    text = (resources.files("feedpub") / "scaffold" / "feedpub.toml").read_text(encoding="utf-8")
    assert "\n[activitypub]" in text
    for key in ("enabled", "username", "categories", "allow_private_addresses", "give_up_after"):
        assert f"\n{key} = " in text.split("[activitypub]", 1)[1], key


@pytest.fixture
def store(any_store: Store) -> Store:
    return any_store


def test_an_account_key_is_made_once_and_kept_private(store: Store, tmp_path: Path) -> None:
    first = Ledger(store).key_pair("blog")
    assert first.private_key.key_size == 2048
    assert Ledger(store).key_pair("blog") == first          # read back, not made again
    assert Ledger(store).key_pair("ai") != first
    assert first.public_pem.startswith("-----BEGIN PUBLIC KEY-----")
    if store.engine.dialect.name == "sqlite":
        assert stat.S_IMODE(os.stat(tmp_path / "feedpub.db").st_mode) == 0o600


def test_followers_blocks_and_reactions(store: Store) -> None:
    ledger = Ledger(store)
    assert ledger.add_follower("blog", "https://m.example/users/ann", "https://m.example/users/ann/inbox",
                               "https://m.example/inbox", "m.example")
    assert not ledger.add_follower("blog", "https://m.example/users/ann", "https://m.example/users/ann/inbox",
                                   "https://m.example/inbox", "m.example")
    ledger.add_follower("ai", "https://m.example/users/ann", "https://m.example/users/ann/inbox", "", "m.example")
    assert ledger.follower_count("blog") == 1 and ledger.follower_count("ai") == 1
    assert ledger.followers("ai")[0].delivery_inbox == "https://m.example/users/ann/inbox"
    assert ledger.remove_follower("blog", "https://m.example/users/ann")
    assert ledger.remove_actor("https://m.example/users/ann") == 1
    assert ledger.follower_count("ai") == 0

    assert ledger.block("Spam.example") and not ledger.block("spam.example")
    assert ledger.blocked("spam.EXAMPLE") and not ledger.blocked("m.example")

    post = "https://news.example.org/ap/posts/1"
    for n in range(2):
        assert ledger.add_reaction(account="", object_id=post, kind="like", actor=f"https://m.example/u/{n}",
                                   activity_id=f"https://m.example/likes/{n}")
    assert not ledger.add_reaction(account="", object_id=post, kind="like", actor="https://m.example/u/0",
                                   activity_id="https://m.example/likes/0")
    ledger.add_reaction(account="blog", object_id=post, kind="reply", actor="https://m.example/u/0",
                        activity_id="https://m.example/notes/9", content="<p>いい記事です</p>")
    assert ledger.reaction_counts(post) == {"like": 2, "reply": 1}
    assert [content for _, content, _ in ledger.replies(post)] == ["<p>いい記事です</p>"]


BODY = b'{"type": "Follow"}'
INBOX = "https://news.example.org/ap/inbox"
KEY_ID = "https://m.example/users/ann#main-key"


def _lower(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def test_a_signed_post_verifies_and_any_change_breaks_it() -> None:
    key = new_key_pair("ann")
    headers = _lower(sign_request(key, KEY_ID, "POST", INBOX, BODY))
    assert headers["host"] == "news.example.org" and headers["digest"].startswith("SHA-256=")
    assert 'headers="(request-target) date host digest"' in headers["signature"]
    claimed = claim(headers)
    assert claimed.key_id == KEY_ID and claimed.scheme == "draft-cavage"
    verify(claimed, "POST", INBOX, headers, BODY, key.public_pem)
    with pytest.raises(BadSignature, match="Digest"):
        verify(claimed, "POST", INBOX, headers, BODY + b" ", key.public_pem)
    with pytest.raises(BadSignature, match="does not verify"):
        verify(claimed, "POST", INBOX, headers, BODY, new_key_pair("eve").public_pem)
    with pytest.raises(BadSignature, match="does not verify"):
        verify(claimed, "POST", "https://news.example.org/ap/accounts/blog/inbox", headers, BODY, key.public_pem)
    with pytest.raises(BadSignature, match="not signed"):
        claim({"date": headers["date"]})


def test_the_date_window_is_mastodons() -> None:
    key = new_key_pair("ann")
    now = datetime.now(UTC)
    for sent, good in ((now - timedelta(hours=11), True), (now - timedelta(hours=13), False),
                       (now + timedelta(minutes=50), True), (now + timedelta(hours=2), False)):
        headers = _lower(sign_request(key, KEY_ID, "POST", INBOX, BODY, now=sent))
        if good:
            verify(claim(headers), "POST", INBOX, headers, BODY, key.public_pem)
        else:
            with pytest.raises(BadSignature, match="outside the window"):
                verify(claim(headers), "POST", INBOX, headers, BODY, key.public_pem)


def test_a_signature_leaving_out_the_digest_or_date_is_refused() -> None:
    key = new_key_pair("ann")
    date = format_datetime(datetime.now(UTC), usegmt=True)
    headers = _lower(Signer(headers={"date": date}, private_key=key.private_key, method="POST", url=INBOX,
                            key_id=KEY_ID, body=BODY, signed_headers=["(request-target)", "host", "date"]).sign())
    with pytest.raises(BadSignature, match="does not cover digest"):
        verify(claim(headers), "POST", INBOX, headers, BODY, key.public_pem)
