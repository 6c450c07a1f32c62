"""VERP return paths: each delivery's envelope sender names the delivery, so a bounce maps to exactly one
delivery row (issue + subscriber) without guessing from its body.

`smtp.return_path = "bounces@example.org"` → `bounces+1234-k3j5h2g7@example.org`: the delivery row's id
in decimal and 40 bits of an HMAC of it (the token key's "verp" purpose) in lower-case base32. Digits and
lower-case letters survive MTAs that lower-case local parts, and the tag stays short (the whole local
part must fit in 64 octets); a forged tag is one chance in 2^40 of naming a delivery, and even then only
records a bounce for an address feedpub did mail.

A delivery's Message-ID is signed the same way, for its recipient's address: a complaint that comes back
without the envelope sender (a feedback loop quotes the message) still shows it is about mail feedpub
sent to that address.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from collections.abc import Callable

from feedpub import tokens
from feedpub.config import Config
from feedpub.send import smtp

_SIGNATURE_BYTES = 5
_TAG = re.compile(r"(\d{1,18})-([a-z2-7]{8})")
# The local part of a delivery's Message-ID: "2025-12-15-0900.<24 hex digits>.<signature>".
# The period, then the nonce: periods of a time zone's stream hold dots ("…-daily-America.Los_Angeles").
_MESSAGE_ID = re.compile(r"<([\w.-]{1,80}\.[0-9a-f]{24})\.([a-z2-7]{8})@", re.I | re.A)


def tag(secret: str, delivery_id: int) -> str:
    """"1234-k3j5h2g7": the delivery id and its signature."""
    return f"{delivery_id}-{_signature(secret, delivery_id)}"


def read_tag(secret: str, text: str) -> int | None:
    """The delivery id a tag names; None if it is not a tag or its signature does not match."""
    match = _TAG.fullmatch(text.strip().lower())
    if match is None:
        return None
    delivery_id = int(match[1])
    return delivery_id if hmac.compare_digest(match[2], _signature(secret, delivery_id)) else None


def return_path(base: str, secret: str, delivery_id: int) -> str:
    """`base` ("bounces@example.org") with the delivery's tag after a "+" in its local part."""
    local, domain = base.rsplit("@", 1)
    return f"{local}+{tag(secret, delivery_id)}@{domain}"


def tags_in(base: str, text: str) -> list[str]:
    """Every tag written in `text` in an address under `base` (any case), in order of appearance."""
    local, domain = base.rsplit("@", 1)
    pattern = re.compile(rf"{re.escape(local)}\+([0-9a-z]{{1,40}}-[0-9a-z]{{1,40}})@{re.escape(domain)}", re.I)
    return [match[1] for match in pattern.finditer(text)]


def message_id(secret: str, period: str, email: str, domain: str) -> str:
    """A fresh Message-ID for one delivery of issue `period` to `email`, signed for that address: a
    complaint or bounce quoting it is about mail feedpub sent to `email`, and to no one else."""
    nonce = f"{period}.{secrets.token_hex(12)}"
    return f"<{nonce}.{_message_id_signature(secret, nonce, email)}@{domain}>"


def message_ids_in(text: str) -> list[tuple[str, str]]:
    """Every (nonce, signature) of a delivery's Message-ID written in `text`, unverified."""
    return [(match[1], match[2].lower()) for match in _MESSAGE_ID.finditer(text)]


def sent_to(secret: str, found: tuple[str, str], email: str) -> bool:
    """Whether a Message-ID `message_ids_in` found is one feedpub signed for a delivery to `email`."""
    nonce, signature = found
    return hmac.compare_digest(signature, _message_id_signature(secret, nonce, email))


def sender_for(config: Config) -> Callable[[int], str]:
    """The MAIL FROM of each delivery (by row id): its VERP address under `smtp.return_path`, else the one
    envelope sender of every message."""
    base = config.smtp.return_path
    if not base:
        fixed = smtp.envelope_sender(config)
        return lambda _delivery_id: fixed
    secret = config.web.secret()
    return lambda delivery_id: return_path(base, secret, delivery_id)


def _message_id_signature(secret: str, nonce: str, email: str) -> str:
    # Without case, as MTAs may change it and the store's email_key compares; "message-id:" keeps these
    # apart from tags. An address feedpub mails is ASCII: "replace" only spares a made-up one an error.
    signed = f"message-id:{nonce.lower()}:{email.strip().lower()}".encode("utf-8", "replace")
    digest = hmac.digest(tokens.purpose_key(secret, "verp"), signed, "sha256")
    return base64.b32encode(digest[:_SIGNATURE_BYTES]).decode("ascii").lower()


def _signature(secret: str, delivery_id: int) -> str:
    digest = hmac.digest(tokens.purpose_key(secret, "verp"), str(delivery_id).encode("ascii"), "sha256")
    return base64.b32encode(digest[:_SIGNATURE_BYTES]).decode("ascii").lower()
