"""HTTP Signatures: signing an outgoing request as Mastodon signs (draft-cavage `rsa-sha256` over
`(request-target) host date` and, with a body, `digest`: `Digest: SHA-256=…`), and verifying an incoming one,
draft-cavage (apsig) or RFC 9421 (http-message-signatures). The keys are fetched by the caller between
`claim` (which key says it signed) and `verify`; nothing here does I/O.

The date window is Mastodon's (`SignatureVerification`): a signature made up to 12 hours ago, or up to an
hour ahead of our clock, is taken; older is a replay or a stuck queue, refused.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Literal

import http_sf
from apsig.draft import Signer, Verifier
from apsig.exceptions import MissingSignatureError, UnknownSignatureError, VerificationFailedError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from http_message_signatures import HTTPMessageVerifier, InvalidSignature, MappingKeyResolver, algorithms
from http_message_signatures.exceptions import HTTPMessageSignaturesException

from feedpub.fediverse.keys import KeyPair

PAST_WINDOW = timedelta(hours=12)       # Mastodon's EXPIRATION_WINDOW_LIMIT
FUTURE_WINDOW = timedelta(hours=1)      # Mastodon's CLOCK_SKEW_MARGIN

# draft-cavage's `Signature` parameters: name="value" pairs.
_PARAM = re.compile(r'\s*([A-Za-z]+)\s*=\s*"([^"]*)"\s*(?:,|$)')


class BadSignature(Exception):
    """The request is not signed, or not as the key it names would sign it (→ 401); says why."""


@dataclass(frozen=True)
class Claim:
    """Which key a request says signed it, read before that key is fetched."""

    key_id: str
    scheme: Literal["draft-cavage", "rfc9421"]


def sign_request(key: KeyPair, key_id: str, method: str, url: str, body: bytes = b"", *,
                 now: datetime | None = None) -> dict[str, str]:
    """The headers that sign `method url` (with `body` for a POST) as `key_id`: Host, Date, Signature and, with a
    body, Digest. Send them with the request as they are; add Content-Type / Accept beside them."""
    date = format_datetime((now or datetime.now(UTC)).astimezone(UTC), usegmt=True)
    signed = Signer(headers={"date": date}, private_key=key.private_key, method=method.upper(), url=url,
                    key_id=key_id, body=body).sign()
    names = {"host": "Host", "date": "Date", "digest": "Digest", "signature": "Signature"}
    return {names[name.lower()]: value for name, value in signed.items() if name.lower() in names}


def claim(headers: Mapping[str, str]) -> Claim:
    """The key a request names: RFC 9421's `Signature-Input` keyid when it has one, else draft-cavage's
    `Signature` keyId. BadSignature when it is unsigned or the header cannot be read."""
    if "signature-input" in headers:
        try:
            inputs = http_sf.parse(headers["signature-input"].encode(), tltype="dictionary")
        except ValueError as exc:
            raise BadSignature(f"Signature-Input cannot be read ({exc})") from None
        if len(inputs) != 1:
            raise BadSignature("one signature expected in Signature-Input")
        (_, (_, params)), = inputs.items()
        key_id = params.get("keyid")
        if not isinstance(key_id, str) or not key_id:
            raise BadSignature("Signature-Input names no keyid")
        return Claim(key_id, "rfc9421")
    if "signature" not in headers:
        raise BadSignature("the request is not signed (no Signature header)")
    params = _cavage_params(headers["signature"])
    if not params.get("keyId"):
        raise BadSignature("the Signature header names no keyId")
    return Claim(params["keyId"], "draft-cavage")


def verify(claimed: Claim, method: str, url: str, headers: Mapping[str, str], body: bytes, public_pem: str, *,
           now: datetime | None = None) -> None:
    """Check that the key `public_pem` (the claimed key's) signed this request within the date window, over its
    target, host, date and (with a body) the body's digest. `headers` are lower-cased names. BadSignature if not."""
    now = now or datetime.now(UTC)
    try:
        key = serialization.load_pem_public_key(public_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise BadSignature(f"the key {claimed.key_id} cannot be read ({exc})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise BadSignature(f"the key {claimed.key_id} is not an RSA key")
    if claimed.scheme == "rfc9421":
        _verify_rfc9421(claimed, method, url, headers, body, key, now)
    else:
        _verify_cavage(claimed, method, url, headers, body, key, now)


def _verify_cavage(claimed: Claim, method: str, url: str, headers: Mapping[str, str], body: bytes,
                   key: rsa.RSAPublicKey, now: datetime) -> None:
    params = _cavage_params(headers["signature"])
    covered = params.get("headers", "date").lower().split()
    wanted = ["(request-target)", "host", "date"] + (["digest"] if body else [])
    missing = [name for name in wanted if name not in covered]
    if missing:
        raise BadSignature(f"the signature does not cover {', '.join(missing)}")
    if params.get("algorithm", "rsa-sha256") not in ("rsa-sha256", "hs2019"):
        raise BadSignature(f"unsupported signature algorithm {params['algorithm']!r} (expected rsa-sha256)")
    _check_date(headers.get("date", ""), now)
    if body:
        _check_digest(headers.get("digest", ""), body)
    # apsig reads the parameters it needs by name, `algorithm` included: hs2019 (the key's own algorithm, an RSA
    # key's being rsa-sha256) is given to it as rsa-sha256. The digest and date were checked above.
    normalised = {**headers, "signature": ",".join(
        f'{name}="{value}"' for name, value in {**params, "algorithm": "rsa-sha256", "headers": " ".join(covered)}
        .items())}
    try:
        Verifier(key, method.upper(), url, normalised, body=None,
                 clock_skew=int((PAST_WINDOW + FUTURE_WINDOW).total_seconds())).verify(raise_on_fail=True)
    except (MissingSignatureError, UnknownSignatureError, VerificationFailedError) as exc:
        raise BadSignature(f"the signature does not verify with {claimed.key_id} ({exc})") from None
    except (KeyError, ValueError) as exc:     # a covered header missing, a Date apsig cannot read
        raise BadSignature(f"the signature cannot be checked ({type(exc).__name__}: {exc})") from None


def _verify_rfc9421(claimed: Claim, method: str, url: str, headers: Mapping[str, str], body: bytes,
                    key: rsa.RSAPublicKey, now: datetime) -> None:
    verifier = _Rfc9421Verifier(signature_algorithm=algorithms.RSA_V1_5_SHA256,
                                key_resolver=MappingKeyResolver(public_keys={claimed.key_id: key}, private_keys={}))
    required = ("@method", "@target-uri") + (("content-digest",) if body else ())
    try:
        verifier.verify(_Request(method.upper(), url, dict(headers)), max_age=PAST_WINDOW,
                        require_components=required, body=body)
    except (InvalidSignature, HTTPMessageSignaturesException) as exc:
        raise BadSignature(f"the RFC 9421 signature does not verify with {claimed.key_id} ({exc})") from None


class _Rfc9421Verifier(HTTPMessageVerifier):
    max_clock_skew = FUTURE_WINDOW


@dataclass(frozen=True)
class _Request:
    """What http-message-signatures reads of a request."""

    method: str
    url: str
    headers: dict[str, str]


def _cavage_params(header: str) -> dict[str, str]:
    params = dict(_PARAM.findall(header))
    if not params or not params.get("signature"):
        raise BadSignature("the Signature header cannot be read (expected keyId=\"…\",headers=\"…\",signature=\"…\")")
    return params


def _check_date(value: str, now: datetime) -> None:
    try:
        sent = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise BadSignature(f"the Date header {value!r} cannot be read") from None
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=UTC)
    if sent < now - PAST_WINDOW or sent > now + FUTURE_WINDOW:
        raise BadSignature(f"the signature's date {value} is outside the window (12 hours back, 1 hour ahead)")


def _check_digest(value: str, body: bytes) -> None:
    """`Digest: SHA-256=<base64>` (RFC 3230; other algorithms beside it are ignored) must be the body's."""
    expected = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
    for part in value.split(","):
        algorithm, _, digest = part.strip().partition("=")
        if algorithm.lower() == "sha-256" and digest == expected:
            return
    raise BadSignature("the Digest header is not the body's SHA-256 (expected Digest: SHA-256=…)")
