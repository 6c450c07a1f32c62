"""Provider webhooks on the daemon: bounce and complaint events from Amazon SES (through SNS), Postmark,
Mailgun, SendGrid, and a generic JSON with a bearer token. Module-level endpoints that read
`request.app.state.config` and `request.app.state.store`; `routes()` is what the app includes.

Each request is authenticated before anything is read from it, the provider's way: SNS's signature
against its signing certificate (fetched only from an HTTPS sns.<region>.amazonaws.com URL), Mailgun's
HMAC, SendGrid's ECDSA signature, a bearer token (or the password of HTTP basic auth, as Postmark sends
it) for the others. Missing credentials answer 401, wrong ones 403, a payload that is not what the
provider documents 400; none of them records anything. A replayed event is recorded once (its event id
is its key), and a Mailgun or SendGrid signature older than SIGNATURE_MAX_AGE is refused.
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
from collections.abc import Awaitable, Callable, Iterable
from functools import lru_cache
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
from feedpub.send.bounces import providers
from feedpub.send.bounces.process import Named, Returned, named_delivery, record_all
from feedpub.store import Store

MAX_BODY = 1024 * 1024
SIGNATURE_MAX_AGE = 15 * 60
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


# A provider's events in a request's body, once its signature holds; raises Refused or providers.BadEvent.
Reader = Callable[[Request, Config, bytes], Awaitable[list[providers.Event]]]


async def ses(request: Request) -> Response:
    if not request.app.state.config.bounces.ses_topic_arn:
        return _answer(404, "SES webhooks are off (set bounces.ses_topic_arn)")
    return await _receive(request, "webhook:ses", _ses_events)


async def postmark(request: Request) -> Response:
    return await _with_token(request, "webhook:postmark", lambda payload: providers.postmark(_dict(payload)))


async def generic(request: Request) -> Response:
    return await _with_token(request, "webhook:bounce", providers.generic)


async def mailgun(request: Request) -> Response:
    name = request.app.state.config.bounces.mailgun_key_env
    if not _env_secret(name):
        return _answer(404, f"Mailgun webhooks are off (set the variable {name})")
    return await _receive(request, "webhook:mailgun", _mailgun_events)


async def sendgrid(request: Request) -> Response:
    if not request.app.state.config.bounces.sendgrid_public_key:
        return _answer(404, "SendGrid webhooks are off (set bounces.sendgrid_public_key)")
    return await _receive(request, "webhook:sendgrid", _sendgrid_events)


async def _ses_events(request: Request, config: Config, body: bytes) -> list[providers.Event]:
    payload = providers.parse_json(body)
    if not isinstance(payload, dict) or payload.get("TopicArn") != config.bounces.ses_topic_arn:
        raise Refused(403, "not from the SNS topic bounces.ses_topic_arn names")
    await run_in_threadpool(verify_sns, payload)
    if payload["Type"] == "SubscriptionConfirmation":
        await run_in_threadpool(_confirm_subscription, str(payload.get("SubscribeURL", "")))
        raise Refused(200, "subscription confirmed")
    if payload["Type"] != "Notification":
        raise Refused(200, "nothing to do")
    return list(providers.ses(providers.parse_json(str(payload.get("Message", "")).encode())))


async def _mailgun_events(request: Request, config: Config, body: bytes) -> list[providers.Event]:
    payload = _dict(providers.parse_json(body))
    signature = payload.get("signature")
    if not isinstance(signature, dict):
        raise Refused(401, "no signature")
    timestamp, token = str(signature.get("timestamp", "")), str(signature.get("token", ""))
    key = _env_secret(config.bounces.mailgun_key_env)
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, str(signature.get("signature", ""))):
        raise Refused(403, "bad signature")
    _fresh(timestamp)
    return list(providers.mailgun(_dict(payload.get("event-data"))))


async def _sendgrid_events(request: Request, config: Config, body: bytes) -> list[providers.Event]:
    signature = request.headers.get("X-Twilio-Email-Event-Webhook-Signature", "")
    timestamp = request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp", "")
    if not signature or not timestamp:
        raise Refused(401, "no signature")
    try:
        key = _sendgrid_key(config.bounces.sendgrid_public_key)
        key.verify(base64.b64decode(signature), timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise Refused(403, "bad signature") from exc
    _fresh(timestamp)
    payload = providers.parse_json(body)
    if not isinstance(payload, list):
        raise providers.BadEvent("not a list of events")
    return list(providers.sendgrid(payload))


def routes() -> list[Route]:
    endpoints = {"ses": ses, "postmark": postmark, "mailgun": mailgun, "sendgrid": sendgrid, "bounce": generic}
    return [Route(f"/webhooks/{name}", endpoint, methods=["POST"]) for name, endpoint in endpoints.items()]


def verify_sns(payload: dict[str, Any]) -> None:
    """Refused(403) unless `payload` is signed by the certificate its SigningCertURL names, and that URL
    is SNS's own."""
    kind = payload.get("Type")
    if kind not in _SNS_SIGNED:
        raise Refused(400, f"unknown SNS message type {kind!r}")
    url = str(payload.get("SigningCertURL", ""))
    if not SNS_CERT_URL.match(url):
        raise Refused(403, "the signing certificate is not SNS's (expected https://sns.<region>.amazonaws.com/…)")
    version = str(payload.get("SignatureVersion", ""))
    if version not in ("1", "2"):
        raise Refused(403, f"unknown SNS signature version {version!r}")
    signed = "".join(f"{name}\n{payload[name]}\n" for name in _SNS_SIGNED[kind] if name in payload)
    try:
        key = _sns_key(url)
        key.verify(base64.b64decode(str(payload.get("Signature", ""))), signed.encode("utf-8"), padding.PKCS1v15(),
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


async def _with_token(request: Request, source: str,
                      events_of: Callable[[Any], Iterable[providers.Event]]) -> Response:
    name = request.app.state.config.bounces.webhook_token_env
    token = _env_secret(name)
    if not token:
        return _answer(404, f"webhooks are off (set the variable {name})")
    given = _credential(request.headers.get("Authorization", ""))
    if given is None:
        return _answer(401, "no credentials (expected Authorization: Bearer TOKEN)")
    if not hmac.compare_digest(given.encode(), token.encode()):
        return _answer(403, "wrong token")

    async def read(_request: Request, _config: Config, body: bytes) -> list[providers.Event]:
        return list(events_of(providers.parse_json(body)))

    return await _receive(request, source, read)


async def _receive(request: Request, source: str, read: Reader) -> Response:
    """Read the body within MAX_BODY, take its events with `read`, record them (each once)."""
    config, store = _state(request)
    try:
        body = await _body(request)
        events = await read(request, config, body)
    except Refused as exc:
        return _answer(exc.status, str(exc))
    except providers.BadEvent as exc:
        return _answer(400, str(exc))
    return await _record(config, store, events, body, source)


async def _record(config: Config, store: Store, events: list[providers.Event], raw: bytes, source: str) -> Response:
    items = [Returned(event.bounce, _named(config, event.sender), raw, source) for event in events]
    results = await run_in_threadpool(record_all, config, store, items)
    outcomes = [outcome for result in results for outcome in result]
    new = sum(outcome.evidence_id is not None for outcome in outcomes)
    return JSONResponse({"recorded": new, "recorded_before": len(outcomes) - new})


def _named(config: Config, sender: str) -> Named:
    return named_delivery(config, sender.encode("utf-8", "replace")) if sender else Named(None, False)


def _credential(header: str) -> str | None:
    """The token of `Bearer TOKEN`, or the password of `Basic base64(user:password)`."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip()).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return None


async def _body(request: Request) -> bytes:
    if int(request.headers.get("Content-Length") or 0) > MAX_BODY:
        raise Refused(413, f"more than {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise Refused(413, f"more than {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _fresh(timestamp: str) -> None:
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError as exc:
        raise Refused(403, "bad signature timestamp") from exc
    if age > SIGNATURE_MAX_AGE:
        raise Refused(403, f"signature older than {SIGNATURE_MAX_AGE} s (a replay?)")


def _state(request: Request) -> tuple[Config, Store]:
    return request.app.state.config, request.app.state.store


def _env_secret(name: str) -> str:
    return os.environ.get(name, "")


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise providers.BadEvent("not a JSON object")
    return value


def _answer(status: int, message: str) -> Response:
    return JSONResponse({"error" if status >= 400 else "status": message}, status_code=status)
