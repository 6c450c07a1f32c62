"""Signed, timestamped, single-purpose tokens for confirm / unsubscribe / preferences links."""

from __future__ import annotations

from typing import Literal

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

Purpose = Literal["confirm", "unsubscribe", "preferences"]
# Unsubscribe links must keep working in old mail: no expiry unless a caller asks for one.
CONFIRM_MAX_AGE = 7 * 24 * 3600


class BadToken(ValueError):
    """Forged, altered, expired or made for another purpose."""


def make_token(secret: str, purpose: Purpose, email: str) -> str:
    return _serializer(secret, purpose).dumps(email.lower())


def read_token(secret: str, purpose: Purpose, token: str, max_age: int | None = None) -> str:
    """The e-mail address a token was made for; BadToken otherwise."""
    try:
        email = _serializer(secret, purpose).loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise BadToken("link expired") from exc
    except BadSignature as exc:
        raise BadToken("invalid link") from exc
    if not isinstance(email, str):
        raise BadToken("invalid link")
    return email


def _serializer(secret: str, purpose: Purpose) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=f"feedpub.{purpose}")
