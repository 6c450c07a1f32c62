"""Signed, timestamped, single-purpose tokens for confirm / unsubscribe / preferences links.

`ID.TIME.SIGNATURE`, each part URL-safe base64: the subscriber's id (opaque: no address in any link,
so none in access logs, proxies or Referer headers), the issuing time in seconds, and an HMAC-SHA256
(cut to 128 bits) of both under a key derived from the secret and the purpose, so a token made for one
purpose never reads for another. Made with `hmac` directly: a digest sends two per message, and
itsdangerous's serializer costs ~40 µs a token against ~3 µs here. A confirmation link's time is also stored
with its subscriber, so that only the newest one confirms, once (`feedpub.store.Store.confirm`).

Links sent before ids (the same form, with the lower-cased address in place of the id, signed under
the older key) are still read until `LEGACY_MAX_AGE` after they were issued. That older form carries
text, and still signs what must be text: the dashboard's session cookies (`make_text_token`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal

# "admin-session" and "admin-login" sign the dashboard's cookies (`feedpub.web.admin.auth`).
Purpose = Literal["confirm", "unsubscribe", "preferences", "admin-session", "admin-login", "verp"]
# What a token names: a subscriber id, or the address in a link made before ids.
Holder = int | str
# Unsubscribe links must keep working in old mail: no expiry unless a caller asks for one.
CONFIRM_MAX_AGE = 7 * 24 * 3600
LEGACY_MAX_AGE = 365 * 24 * 3600
_SIGNATURE_BYTES = 16


class BadToken(ValueError):
    """Forged, altered, expired or made for another purpose."""


def make_token(secret: str, purpose: Purpose, subscriber_id: int, issued: datetime | None = None) -> str:
    """A link token naming one subscriber, issued now or at `issued` (whole seconds: a confirmation link's
    time is also stored, and only the newest works)."""
    return _seal(_key(secret, purpose, 2), _int_bytes(subscriber_id), issued)


def read_token(secret: str, purpose: Purpose, token: str, max_age: int | None = None) -> Holder:
    """The subscriber id a link token was made for (the address, for a link made before ids); BadToken
    otherwise."""
    try:
        raw, age = _unseal(_key(secret, purpose, 2), token)
    except BadToken:
        legacy_age = LEGACY_MAX_AGE if max_age is None else min(max_age, LEGACY_MAX_AGE)
        return read_text_token(secret, purpose, token, legacy_age)
    if max_age is not None and age > max_age:
        raise BadToken("link expired")
    return int.from_bytes(raw, "big")


def issued_at(token: str) -> datetime:
    """When a token that `read_token` accepted was made."""
    return datetime.fromtimestamp(int.from_bytes(_decode(token.split(".")[1]), "big"), UTC)


def make_text_token(secret: str, purpose: Purpose, text: str) -> str:
    """A token carrying `text` as it is (readable, so never an address in a link): a session id."""
    return _seal(_key(secret, purpose, 1), text.encode("utf-8"))


def read_text_token(secret: str, purpose: Purpose, token: str, max_age: int | None = None) -> str:
    """The text a token made by `make_text_token` carries; BadToken otherwise."""
    raw, age = _unseal(_key(secret, purpose, 1), token)
    if max_age is not None and age > max_age:
        raise BadToken("link expired")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadToken("invalid link") from exc


def _seal(key: bytes, value: bytes, issued: datetime | None = None) -> str:
    seconds = int(issued.timestamp() if issued else time.time())
    signed = f"{_encode(value)}.{_encode(_int_bytes(seconds))}"
    return f"{signed}.{_sign(key, signed)}"


def _unseal(key: bytes, token: str) -> tuple[bytes, float]:
    """What a token carries and its age in seconds, if `key` signed it."""
    signed, _, signature = token.rpartition(".")
    if not hmac.compare_digest(signature.encode("ascii", "replace"), _sign(key, signed).encode("ascii")):
        raise BadToken("invalid link")
    value, _, issued = signed.partition(".")
    try:
        return _decode(value), time.time() - int.from_bytes(_decode(issued), "big")
    except binascii.Error as exc:
        raise BadToken("invalid link") from exc


@lru_cache(maxsize=16)
def _key(secret: str, purpose: Purpose, version: int) -> bytes:
    label = f"feedpub.{purpose}" if version == 1 else f"feedpub.v{version}.{purpose}"
    return hmac.new(secret.encode("utf-8"), label.encode("ascii"), hashlib.sha256).digest()


def _sign(key: bytes, signed: str) -> str:
    return _encode(hmac.digest(key, signed.encode("utf-8"), "sha256")[:_SIGNATURE_BYTES])


def purpose_key(secret: str, purpose: Purpose) -> bytes:
    """The HMAC key of one purpose, derived from the secret (also signs VERP return paths)."""
    return _key(secret, purpose, 1)


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
