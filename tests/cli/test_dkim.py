"""`feedpub dkim keygen`, and `[smtp.dkim]` keys that cannot sign: exit 2 naming feedpub.toml and the line."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import dkim
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from feedpub.cli import main
from feedpub.config_file import load_config
from feedpub.send.dkim import Signer

NOTICE = (b"From: =?utf-8?b?57eo6ZuG6YOo?= <news@blog.example.com>\r\nTo: reader@example.jp\r\n"
          b"Subject: =?utf-8?b?6LO86Kqt44Gu56K66KqN?=\r\nMIME-Version: 1.0\r\n"
          b"Content-Type: text/plain; charset=\"utf-8\"\r\n\r\nHello, world.\r\n")


def feedpub(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_keygen_writes_a_private_key_and_the_record_that_verifies_its_signatures(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "2026.key"
    key.parent.mkdir()
    code, out, err = feedpub("dkim", "keygen", "--selector", "s2026", "--domain", "blog.example.com",
                             "--output", str(key))
    assert code == 0, err
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    name, strings = re.fullmatch(r'(\S+) IN TXT ((?:"[^"]*" ?)+)\n', out).groups()
    assert name == "s2026._domainkey.blog.example.com"
    parts = re.findall(r'"([^"]*)"', strings)
    assert len(parts) == 2 and all(len(part) <= 255 for part in parts)   # 2048 bits: ~400 characters
    record = "".join(parts)
    assert record.startswith("v=DKIM1; k=rsa; p=MIIBIjAN")

    # The config lines keygen suggests load, and mail signed with the key verifies against the record.
    suggested = err[err.index("[smtp.dkim]"):]
    (tmp_path / "feedpub.toml").write_text(suggested, encoding="utf-8")
    signed = Signer(load_config(tmp_path / "feedpub.toml").smtp.dkim).sign(NOTICE)
    lookup = {b"s2026._domainkey.blog.example.com.": record.encode()}
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: lookup.get(name))
    assert not dkim.verify(signed.replace(b"Hello", b"Hallo"), dnsfunc=lambda name, timeout=5: lookup.get(name))


def test_keygen_never_overwrites_and_refuses_bad_names(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = feedpub("dkim", "keygen", "--bits", "1024")
    assert code == 0 and out.startswith("feedpub._domainkey IN TXT ")   # relative to the zone: no --domain
    first = (tmp_path / "dkim-feedpub.key").read_bytes()
    code, out, err = feedpub("dkim", "keygen", "--bits", "1024")
    assert (code, out) == (2, "") and "dkim-feedpub.key: already exists" in err
    assert (tmp_path / "dkim-feedpub.key").read_bytes() == first
    code, _, err = feedpub("dkim", "keygen", "--selector", "新しい鍵")
    assert code == 2 and "--selector: '新しい鍵' is not a DNS name" in err
    assert feedpub("dkim", "keygen", "--bits", "512")[0] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dkim-feedpub.key"]


EC_KEY = ec.generate_private_key(ec.SECP256R1()).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode("ascii")


@pytest.mark.parametrize(("key_text", "table", "line", "message"), [
    (None, 'key_file = "missing.key"', 5, "cannot read"),
    ("秘密鍵ではありません\n", 'key_file = "dkim.key"', 5, "is not a private key OpenSSL can read"),
    ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n",
     'key_file = "dkim.key"', 5, "is not a private key OpenSSL can read"),
    (EC_KEY, 'key_file = "dkim.key"', 5, "holds no RSA key"),
    (None, "", 2, "'smtp.dkim.key_file' not set"),
])
def test_a_key_that_cannot_sign_stops_every_command(tmp_path: Path, key_text: str | None, table: str, line: int,
                                                    message: str) -> None:
    if key_text is not None:
        (tmp_path / "dkim.key").write_text(key_text, encoding="utf-8")
    config = tmp_path / "feedpub.toml"
    config.write_text(f'[site]\n[smtp.dkim]\ndomain = "blog.example.com"\nselector = "feedpub"\n{table}\n',
                      encoding="utf-8")
    for command in (["check"], ["digest", "send"]):
        code, _, err = feedpub("--config", str(config), *command)
        assert code == 2
        assert err.startswith(f"feedpub: {config}:{line}: ") and message in err, err


def test_keygen_makes_the_folder_it_writes_into_readable_only_by_its_owner(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = feedpub("dkim", "keygen", "--bits", "1024", "--output", "dkim/x.key")
    assert code == 0, err
    assert stat.S_IMODE((tmp_path / "dkim").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "dkim" / "x.key").stat().st_mode) == 0o600
    assert out.startswith("feedpub._domainkey IN TXT ")
