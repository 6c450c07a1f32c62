"""DKIM: every message that reaches a real SMTP server verifies with dkimpy's own verifier, looking the key
up in a DNS stub that serves the TXT record feedpub printed; a message changed on the way does not."""

from __future__ import annotations

import hashlib
import re
from email.header import decode_header, make_header
from pathlib import Path

import dkim
import dkim.canonicalization
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from feedpub.cli.daemon import Daemon
from feedpub.config import DkimConfig
from feedpub.config_file import load_config
from feedpub.send.dkim import Signer, dns_record, new_key, write_private_key
from feedpub.site.websub import Publisher
from feedpub.store import open_store
from feedpub.web.app import create_app
from tests.send.sites import SECRET, feedpub, write_site
from tests.smtp_server import SMTPTestServer

DOMAIN, SELECTOR = "blog.example.com", "feedpub2026"
SUBJECT = "ALLFORCES 週刊ダイジェスト：生成AIと著作権、推論性能35%向上、日本語NLPの前処理まで今週の注目記事"
SIGNED = ["from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post",
          "mime-version", "content-type"]


@pytest.fixture(scope="module")
def key() -> tuple[bytes, str]:
    """A 2048-bit key pair (made once: generating one takes a while): PEM, and the DNS TXT record text."""
    private, public = new_key(2048)
    record = dns_record(SELECTOR, DOMAIN, public)
    return private, "".join(re.findall(r'"([^"]*)"', record))


def dns(record: str):
    """dkimpy's `dnsfunc`: the TXT record at SELECTOR._domainkey.DOMAIN., nothing anywhere else."""
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return record.encode("ascii") if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else None

    return lookup


def signing_site(root: Path, port: int, private: bytes) -> Path:
    config = write_site(root, port, digest={"subject": SUBJECT})
    write_private_key(root / "dkim.key", private)
    with config.open("a", encoding="utf-8") as toml:
        toml.write(f'[smtp.dkim]\ndomain = "{DOMAIN}"\nselector = "{SELECTOR}"\nkey_file = "dkim.key"\n')
    return config


def signature_tags(message: bytes) -> dict[str, str]:
    header = re.search(rb"^DKIM-Signature:(.*?)\r\n(?! )", message, re.M | re.S)
    assert header, message[:300]
    unfolded = re.sub(r"\s+", "", header[1].decode("ascii"))
    return dict(tag.split("=", 1) for tag in unfolded.split(";") if tag)


def test_every_digest_verifies_and_a_tampered_one_does_not(tmp_path, smtp_server: SMTPTestServer, key) -> None:
    private, record = key
    config = signing_site(tmp_path, smtp_server.port, private)
    assert feedpub(config, "digest", "send", "--to", "editor@example.jp").exit_code == 0   # the test copy
    assert feedpub(config, "digest", "send").exit_code == 0
    assert len(smtp_server.received) == 5

    for received in smtp_server.received:
        assert dkim.verify(received.data, dnsfunc=dns(record)), received.rcpt_tos
        tags = signature_tags(received.data)
        assert (tags["a"], tags["c"], tags["d"], tags["s"]) == ("rsa-sha256", "relaxed/relaxed", DOMAIN, SELECTOR)
        assert tags["h"].split(":") == [name for name in SIGNED for _ in range(2)]   # oversigned
        message = received.message()
        assert str(make_header(decode_header(message["Subject"]))).endswith(SUBJECT)
        assert message["List-Unsubscribe"].startswith("<https://news.blog.example.com/unsubscribe")

    data = smtp_server.received[-1].data
    link = re.search(rb"https://news\.blog\.example\.com/unsubscribe/[^\s<>\"=]+", data.split(b"\r\n\r\n", 1)[1])
    assert link, "the unsubscribe link is in the body"
    other_link = data.replace(link[0], link[0][:-1] + (b"A" if link[0][-1:] != b"A" else b"B"))
    other_subject = data.replace(b"\r\nTo: ", b"\r\nSubject: =?utf-8?b?5YWN6KiO?=\r\nTo: ", 1)
    for tampered in (other_link, other_subject, data.replace(b"\r\n\r\n", b"\r\n\r\nHello!\r\n", 1)):
        assert tampered != data
        assert not dkim.verify(tampered, dnsfunc=dns(record))
    other_key = record[:120] + ("A" if record[120] != "A" else "B") + record[121:]    # a bit of the modulus
    assert not dkim.verify(data, dnsfunc=dns(other_key))


def test_the_confirmation_mail_verifies(tmp_path, monkeypatch, smtp_server: SMTPTestServer, key) -> None:
    private, record = key
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    config = load_config(signing_site(tmp_path, smtp_server.port, private))
    store = open_store(config.store_url)
    app = create_app(config, store, send_confirmation=Daemon(config, store, None, Publisher()).send_confirmation,
                     topics=lambda: [], health=lambda: {})
    with TestClient(app) as client:
        answer = client.post("/subscribe", data={"email": "yuki@example.jp", "name": "山田 由紀"})
    assert answer.status_code == 200
    assert [received.rcpt_tos for received in smtp_server.received] == [("yuki@example.jp",)]
    data = smtp_server.received[0].data
    assert dkim.verify(data, dnsfunc=dns(record))
    signed = ["from", "to", "subject", "date", "message-id", "mime-version", "content-type"]  # no List-Unsubscribe
    assert signature_tags(data)["h"].split(":") == [name for name in signed for _ in range(2)]
    assert not dkim.verify(data.replace(b"/confirm/", b"/confirm/x", 1), dnsfunc=dns(record))


def test_without_dkim_nothing_is_signed(tmp_path, smtp_server: SMTPTestServer) -> None:
    config = write_site(tmp_path, smtp_server.port)
    assert feedpub(config, "digest", "send").exit_code == 0
    assert smtp_server.received and not any(b"DKIM-Signature" in r.data for r in smtp_server.received)


# Lines of a body: words, runs of spaces and tabs (also at line ends), quoted-printable soft breaks, empty lines.
LINES = st.lists(st.text(alphabet=["a", "語", " ", "\t", "="], max_size=12).map(lambda line: (line + "\r\n").encode()),
                 max_size=6)


@given(pieces=st.lists(LINES.map(b"".join), max_size=5))
def test_a_body_cut_at_line_ends_hashes_piece_by_piece_as_whole(key, pieces: list[bytes]) -> None:
    """How digests are signed: the static pieces canonicalised once, the links per reader, the same bh= as
    dkimpy's relaxed canonicalisation of the whole body."""
    signing = Signer(DkimConfig(DOMAIN, SELECTOR, "dkim.key", _private_key=key[0]))
    whole = dkim.canonicalization.Relaxed.canonicalize_body(b"".join(pieces))
    assert signing.body_hash(signing.canonical_piece(piece) for piece in pieces) == hashlib.sha256(whole).digest()
