"""Provider webhooks on the daemon: bounce and complaint events from Amazon SES (through SNS), Postmark,
Mailgun, SendGrid, and a generic JSON with a bearer token. Module-level endpoints that read
`request.app.state.config` and `request.app.state.store`; `routes()` is what the app includes.

Each request is authenticated before anything is recorded from it, the provider's way: SNS's signature
against its signing certificate (fetched only from an HTTPS sns.<region>.amazonaws.com URL), Mailgun's
HMAC, SendGrid's ECDSA signature, a bearer token (or the password of HTTP basic auth, as Postmark sends
it) for the others. Missing credentials answer 401, wrong ones 403; a malformed request (a body that is
not the provider's JSON, nested too deeply, a signature, token or timestamp that is not what the provider
writes) 400, too large 413, of another content type 415: each with a short reason, and none records
anything.

Replays: events are read only from what the signature covers, and each event's id is its key, so a
replayed event is recorded once. Mailgun signs a timestamp and a token but not the event, so a token is
accepted once (remembered in the store until its timestamp is too old anyway) and a reused one answers
406; a Mailgun or SendGrid signature more than SIGNATURE_MAX_AGE from now is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import time
import urllib.request
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import lru_cache, partial, wraps
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from feedpub.config import Config
from feedpub.send.bounces import evidence, providers
from feedpub.send.bounces.process import Named, Replayed, Returned, named_delivery, record_all

MAX_BODY = 1024 * 1024
SIGNATURE_MAX_AGE = 15 * 60
JSON_TYPES = ("application/json",)
SNS_TYPES = ("text/plain", "application/json")    # SNS posts its JSON as text/plain
# ASCII only: int() reads "١٢٣" and " 12", and a signature is compared as ASCII.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_MAILGUN_TOKEN = re.compile(r"[0-9A-Za-z]{1,256}")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]{1,4096}={0,2}")
_LENGTH = re.compile(r"[0-9]{1,18}")
# Where SNS signing certificates and subscription confirmations may come from. Tests point these at
# 127.0.0.1; nothing else changes them.
SNS_CERT_URL = re.compile(r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[A-Za-z0-9/_.-]+\.pem$")
SNS_SUBSCRIBE_URL = re.compile(r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/\?Action=ConfirmSubscription&")
# The fields SNS signs, in order, for each message type (AWS: "Verifying the signatures of Amazon SNS messages").
_SNS_SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


class Refused(Exception):
    """Answer the request at once with this status: a refusal, or SNS's housekeeping (200)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


Endpoint = Callable[[Request], Awaitable[Response]]


def _refusals(endpoint: Endpoint) -> Endpoint:
    """The endpoint, with its refusals (and payloads that are not what the provider documents) answered as
    such: a status and a short reason, nothing recorded."""
    @wraps(endpoint)
    async def answered(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Refused as exc:
            return _answer(exc.status, str(exc))
        except providers.BadEvent as exc:
            return _answer(400, str(exc))
        except Replayed:
            # 406: the one refusal Mailgun does not retry; a first delivery of this token was recorded.
            return _answer(406, "this signature's token was used before (a replay?)")

    return answered


@_refusals
async def ses(request: Request) -> Response:
    config = request.app.state.config
    if not config.bounces.ses_topic_arn:
        raise Refused(404, "SES webhooks are off (set bounces.ses_topic_arn)")
    body = await _body(request, SNS_TYPES)
    payload = _dict(providers.parse_json(body))
    if payload.get("TopicArn") != config.bounces.ses_topic_arn:
        raise Refused(403, "not from the SNS topic bounces.ses_topic_arn names")
    await run_in_threadpool(verify_sns, payload)
    if payload["Type"] == "SubscriptionConfirmation":
        await run_in_threadpool(_confirm_subscription, str(payload.get("SubscribeURL", "")))
        raise Refused(200, "subscription confirmed")
    if payload["Type"] != "Notification":
        raise Refused(200, "nothing to do")
    # Only the signed Message is read: the events are what SNS signed.
    message = _dict(providers.parse_json(str(payload.get("Message", "")).encode("utf-8")))
    return await _record(request, list(providers.ses(message)), body, "webhook:ses")


@_refusals
async def postmark(request: Request) -> Response:
    _bearer(request)
    body = await _body(request, JSON_TYPES)
    events = providers.postmark(_dict(providers.parse_json(body)))
    return await _record(request, list(events), body, "webhook:postmark")


@_refusals
async def generic(request: Request) -> Response:
    _bearer(request)
    body = await _body(request, JSON_TYPES)
    return await _record(request, list(providers.generic(providers.parse_json(body))), body, "webhook:bounce")


@_refusals
async def mailgun(request: Request) -> Response:
    """Mailgun signs only a timestamp and a token, not the event: a token is accepted once, so a captured
    signature cannot carry other events while its timestamp is fresh."""
    name = request.app.state.config.bounces.mailgun_key_env
    key = _env_secret(name)
    if not key:
        raise Refused(404, f"Mailgun webhooks are off (set the variable {name})")
    body = await _body(request, JSON_TYPES)
    payload = _dict(providers.parse_json(body))
    signature = payload.get("signature")
    if not isinstance(signature, dict):
        raise Refused(401, "no signature")
    timestamp = _well_formed(signature.get("timestamp"), _TIMESTAMP, "signature.timestamp", "Unix time in digits")
    token = _well_formed(signature.get("token"), _MAILGUN_TOKEN, "signature.token", "letters and digits")
    given = _well_formed(signature.get("signature"), _HEX_SHA256, "signature.signature", "64 hex digits")
    expected = hmac.new(key.encode(), (timestamp + token).encode("ascii"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.lower()):
        raise Refused(403, "bad signature")
    _fresh(timestamp)
    expires = datetime.fromtimestamp(int(timestamp) + SIGNATURE_MAX_AGE, UTC)
    events = list(providers.mailgun(_dict(payload.get("event-data"))))
    return await _record(request, events, body, "webhook:mailgun", evidence.Token("mailgun", token, expires))


@_refusals
async def sendgrid(request: Request) -> Response:
    """SendGrid signs the timestamp and the body: the events are read from the bytes verified, and only
    while the timestamp is fresh (a replay within it repeats signed event ids, recorded once)."""
    config = request.app.state.config
    if not config.bounces.sendgrid_public_key:
        raise Refused(404, "SendGrid webhooks are off (set bounces.sendgrid_public_key)")
    signature = request.headers.get("X-Twilio-Email-Event-Webhook-Signature", "")
    timestamp = request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp", "")
    if not signature or not timestamp:
        raise Refused(401, "no signature")
    _well_formed(timestamp, _TIMESTAMP, "X-Twilio-Email-Event-Webhook-Timestamp", "Unix time in digits")
    _well_formed(signature, _BASE64, "X-Twilio-Email-Event-Webhook-Signature", "base64")
    body = await _body(request, JSON_TYPES)
    try:
        key = _sendgrid_key(config.bounces.sendgrid_public_key)
        key.verify(base64.b64decode(signature), timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise Refused(403, "bad signature") from exc
    _fresh(timestamp)
    payload = providers.parse_json(body)
    if not isinstance(payload, list):
        raise providers.BadEvent("not a list of events")
    return await _record(request, list(providers.sendgrid(payload)), body, "webhook:sendgrid")


def routes() -> list[Route]:
    endpoints = {"ses": ses, "postmark": postmark, "mailgun": mailgun, "sendgrid": sendgrid, "bounce": generic}
    return [Route(f"/webhooks/{name}", endpoint, methods=["POST"]) for name, endpoint in endpoints.items()]


def verify_sns(payload: dict[str, Any]) -> None:
    """Refused(403) unless `payload` is signed by the certificate its SigningCertURL names, and that URL
    is SNS's own; Refused(400) for a message no SNS sends."""
    kind = payload.get("Type")
    if not isinstance(kind, str) or kind not in _SNS_SIGNED:
        raise Refused(400, f"unknown SNS message type {kind!r}"[:200])
    url = str(payload.get("SigningCertURL", ""))
    if not SNS_CERT_URL.match(url):
        raise Refused(403, "the signing certificate is not SNS's (expected https://sns.<region>.amazonaws.com/…)")
    version = str(payload.get("SignatureVersion", ""))
    if version not in ("1", "2"):
        raise Refused(403, f"unknown SNS signature version {version!r}"[:200])
    signature = _well_formed(payload.get("Signature"), _BASE64, "Signature", "base64")
    signed = "".join(f"{name}\n{payload[name]}\n" for name in _SNS_SIGNED[kind] if name in payload)
    try:
        key = _sns_key(url)
        key.verify(base64.b64decode(signature), signed.encode("utf-8"), padding.PKCS1v15(),
                   hashes.SHA1() if version == "1" else hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError, OSError) as exc:
        raise Refused(403, "bad signature") from exc


@lru_cache(maxsize=16)
def _sns_key(url: str) -> rsa.RSAPublicKey:
    with urllib.request.urlopen(url, timeout=10) as response:   # noqa: S310 - the URL was checked against SNS_CERT_URL
        key = x509.load_pem_x509_certificate(response.read(64 * 1024)).public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA certificate")
    return key


@lru_cache(maxsize=4)
def _sendgrid_key(text: str) -> ec.EllipticCurvePublicKey:
    key = serialization.load_der_public_key(base64.b64decode(text))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an elliptic curve key")
    return key


def _confirm_subscription(url: str) -> None:
    if not SNS_SUBSCRIBE_URL.match(url):
        raise Refused(403, "the SubscribeURL is not SNS's")
    try:
        with urllib.request.urlopen(url, timeout=10) as response:   # noqa: S310 - checked against SNS_SUBSCRIBE_URL
            response.read(64 * 1024)
    except OSError as exc:
        raise Refused(502, f"could not confirm the subscription: {exc}") from exc


def _bearer(request: Request) -> None:
    """Refused unless the request carries the token of bounces.webhook_token_env."""
    name = request.app.state.config.bounces.webhook_token_env
    token = _env_secret(name)
    if not token:
        raise Refused(404, f"webhooks are off (set the variable {name})")
    given = _credential(request.headers.get("Authorization", ""))
    if given is None:
        raise Refused(401, "no credentials (expected Authorization: Bearer TOKEN)")
    if not given.isascii() or not given.isprintable():
        raise Refused(400, "malformed credentials (expected printable ASCII)")
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise Refused(403, "wrong token")


async def _record(request: Request, events: list[providers.Event], raw: bytes, source: str,
                  token: evidence.Token | None = None) -> Response:
    """Record the events (each once); a signed request's `token` only once (else `Replayed`)."""
    config, store = request.app.state.config, request.app.state.store
    items = [Returned(event.bounce, _named(config, event.sender), raw, source, signed=True) for event in events]
    results = await run_in_threadpool(partial(record_all, config, store, items, token=token))
    outcomes = [outcome for result in results for outcome in result]
    new = sum(outcome.evidence_id is not None for outcome in outcomes)
    return JSONResponse({"recorded": new, "recorded_before": len(outcomes) - new})


def _named(config: Config, sender: str) -> Named:
    return named_delivery(config, sender.encode("utf-8", "replace")) if sender else Named(None, False, ())


def _credential(header: str) -> str | None:
    """The token of `Bearer TOKEN`, or the password of `Basic base64(user:password)`; Refused(400) for
    Basic credentials that are not base64 of UTF-8."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
        except ValueError as exc:     # binascii.Error, UnicodeDecodeError, and non-ASCII text
            raise Refused(400, "malformed Basic credentials (expected base64 of user:password)") from exc
    return None


async def _body(request: Request, types: tuple[str, ...]) -> bytes:
    """The body, of one of `types` and within MAX_BODY."""
    given = request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if given not in types:
        raise Refused(415, f"Content-Type {given or 'none'!r}"[:100] + f" (expected {' or '.join(types)})")
    length = request.headers.get("Content-Length")
    if length is not None and not _LENGTH.fullmatch(length):
        raise Refused(400, "malformed Content-Length")
    if length is not None and int(length) > MAX_BODY:
        raise Refused(413, f"more than {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise Refused(413, f"more than {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _well_formed(value: Any, pattern: re.Pattern[str], what: str, expected: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise Refused(400, f"malformed {what} (expected {expected})")
    return value


def _fresh(timestamp: str) -> None:
    """Refused(403) for a signature's timestamp (checked digits) more than SIGNATURE_MAX_AGE from now."""
    if abs(time.time() - int(timestamp)) > SIGNATURE_MAX_AGE:
        raise Refused(403, f"signature older than {SIGNATURE_MAX_AGE} s (a replay?)")


def _env_secret(name: str) -> str:
    return os.environ.get(name, "")


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise providers.BadEvent("not a JSON object")
    return value


def _answer(status: int, message: str) -> Response:
    return JSONResponse({"error" if status >= 400 else "status": message}, status_code=status)
