"""Provider webhooks through the real app (Starlette's TestClient) into a real SQLite store (and PostgreSQL
where replays are remembered): signatures made the way SNS, Mailgun and SendGrid make them, with keys
generated here; the SNS signing certificate served from 127.0.0.1 (the only place the tests let the URL
check point)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa
import time_machine
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from starlette.testclient import TestClient

from feedpub.config_file import load_config
from feedpub.records import StoredVariant, SubscriberInput
from feedpub.schema import deliveries, webhook_tokens
from feedpub.send import verp
from feedpub.send.bounces import evidence
from feedpub.store import open_store
from feedpub.web import webhooks
from feedpub.web.app import create_app
from tests.conftest import emptied

SECRET = "webhook-test-secret"
TOKEN = "generic-webhook-token"
MAILGUN_KEY = "key-mailgun-signing"
TOPIC = "arn:aws:sns:ap-northeast-1:123456789012:ses-bounces"
READERS = ["ayumi@example.jp", "ben@example.com", "chihiro@example.jp", "dan@example.com"]
SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
SNS_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class CertServer(BaseHTTPRequestHandler):
    """Serves the SNS signing certificate; records subscription confirmations."""

    cert = b""
    confirmed: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.startswith("/?Action=ConfirmSubscription&"):
            CertServer.confirmed.append(self.path)
            body = b"<ConfirmSubscriptionResponse/>"
        else:
            body = CertServer.cert
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def cert_server():
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.ap-northeast-1.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(SNS_KEY.public_key())
            .serial_number(1).not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .sign(SNS_KEY, hashes.SHA256()))
    CertServer.cert = cert.public_bytes(serialization.Encoding.PEM)
    server = ThreadingHTTPServer(("127.0.0.1", 0), CertServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def app(request, tmp_path: Path, monkeypatch, cert_server):
    """The app on a SQLite store, or on PostgreSQL when parametrized indirectly with "postgresql"."""
    on_pg = getattr(request, "param", "sqlite") == "postgresql"
    store_section = f'[store]\nurl = "{request.getfixturevalue("pg_url")}"' if on_pg else ""
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    monkeypatch.setenv("FEEDPUB_WEBHOOK_TOKEN", TOKEN)
    monkeypatch.setenv("FEEDPUB_MAILGUN_SIGNING_KEY", MAILGUN_KEY)
    monkeypatch.setattr(webhooks, "SNS_CERT_URL", re.compile(rf"^{re.escape(cert_server)}/[a-z-]+\.pem$"))
    monkeypatch.setattr(webhooks, "SNS_SUBSCRIBE_URL",
                        re.compile(rf"^{re.escape(cert_server)}/\?Action=ConfirmSubscription&"))
    webhooks._sns_key.cache_clear()
    public = SENDGRID_KEY.public_key().public_bytes(serialization.Encoding.DER,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "feedpub.toml").write_text(f"""
[site]
url = "https://blog.example.com"
[smtp]
return_path = "bounces@blog.example.com"
[bounces]
ses_topic_arn = "{TOPIC}"
sendgrid_public_key = "{base64.b64encode(public).decode()}"
{store_section}
""", encoding="utf-8")
    config = load_config(tmp_path / "feedpub.toml")
    store = open_store(config.store_url)
    if on_pg:
        emptied(store)
    saved = store.save_subscribers([SubscriberInput(email) for email in READERS], status="active")
    now = datetime.now(UTC)
    issue = store.create_issue(period="2025-12-15-0900", slot=now, starts=now - timedelta(days=7), ends=now,
                               variants=[StoredVariant("", "今週", "<p>本文</p>", "本文")],
                               recipients={row.id: "" for row, _ in saved})
    with store.engine.begin() as conn:
        conn.execute(deliveries.update().values(status="sent"))
        ids = dict(conn.execute(sa.text("SELECT s.email, d.id FROM deliveries d JOIN subscribers s "
                                        "ON s.id = d.subscriber_id WHERE d.issue_id = :i"), {"i": issue.id}).all())
    client = TestClient(create_app(config, store, send_confirmation=lambda *mail: None, topics=lambda: [],
                                   health=dict))
    client.store, client.ids = store, ids
    yield client
    store.engine.dispose()


def sns(cert_server: str, kind: str, message: str = "", **fields: str) -> dict:
    payload = {"Type": kind, "MessageId": "9f1b", "TopicArn": TOPIC, "Message": message,
               "Timestamp": "2025-12-15T00:10:00.000Z", "SignatureVersion": "2",
               "SigningCertURL": f"{cert_server}/sns-cert.pem", **fields}
    order = webhooks._SNS_SIGNED[kind]
    signed = "".join(f"{name}\n{payload[name]}\n" for name in order if name in payload).encode()
    payload["Signature"] = base64.b64encode(SNS_KEY.sign(signed, padding.PKCS1v15(), hashes.SHA256())).decode()
    return payload


def ses_bounce(app, reader: str, bounce_type: str = "Permanent", feedback: str = "fb-1") -> str:
    return json.dumps({"notificationType": "Bounce", "mail": {
        "messageId": "0100018c-aaaa", "source": verp.return_path("bounces@blog.example.com", SECRET, app.ids[reader])},
        "bounce": {"bounceType": bounce_type, "bounceSubType": "General", "feedbackId": feedback,
                   "bouncedRecipients": [{"emailAddress": reader, "action": "failed", "status": "5.1.1",
                                          "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]}})


def post_sns(app, payload: dict):
    """As SNS posts: its JSON as text/plain."""
    return app.post("/webhooks/ses", content=json.dumps(payload), headers={"Content-Type": "text/plain; charset=UTF-8"})


def recorded(app) -> list:
    return evidence.listing(app.store)


def test_a_signed_ses_bounce_suppresses_once_and_a_replay_records_nothing(app, cert_server):
    payload = sns(cert_server, "Notification", ses_bounce(app, READERS[1]))
    first = post_sns(app, payload)
    assert first.status_code == 200 and first.json() == {"recorded": 1, "recorded_before": 0}
    assert post_sns(app, payload).json() == {"recorded": 0, "recorded_before": 1}
    (row,) = recorded(app)
    assert (row.recipient, row.kind, row.status, row.delivery_id, row.source) == (
        READERS[1], "hard", "5.1.1", app.ids[READERS[1]], "webhook:ses")
    assert json.loads(evidence.one(app.store, row.id).raw)["TopicArn"] == TOPIC
    assert app.store.suppression(READERS[1]) is not None and app.store.suppression(READERS[0]) is None


def test_ses_signatures_certificates_and_topics_are_checked(app, cert_server):
    payload = sns(cert_server, "Notification", ses_bounce(app, READERS[1]))
    altered = {**payload, "Message": ses_bounce(app, READERS[2])}
    assert app.post("/webhooks/ses", json=altered).status_code == 403
    foreign = sns(cert_server, "Notification", ses_bounce(app, READERS[1]),
                  SigningCertURL="https://sns.evil.example/sns-cert.pem")
    assert app.post("/webhooks/ses", json=foreign).status_code == 403
    other_topic = sns(cert_server, "Notification", ses_bounce(app, READERS[1]), TopicArn=TOPIC + "-other")
    assert app.post("/webhooks/ses", json=other_topic).status_code == 403
    assert app.post("/webhooks/ses", content=b"{not json", headers={"Content-Type": "text/plain"}).status_code == 400
    assert recorded(app) == [] and app.store.suppressed() == set()


def test_only_sns_urls_are_trusted_for_certificates():
    pattern = re.compile(r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[A-Za-z0-9/_.-]+\.pem$")
    assert webhooks.SNS_CERT_URL.pattern == pattern.pattern
    assert pattern.match("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem")
    for url in ("http://sns.eu-west-1.amazonaws.com/x.pem", "https://sns.eu-west-1.amazonaws.com.evil.example/x.pem",
                "https://evil.example/sns.eu-west-1.amazonaws.com/x.pem", "https://sns.eu-west-1.amazonaws.com/x.txt"):
        assert not pattern.match(url), url


def test_an_sns_subscription_is_confirmed(app, cert_server):
    url = f"{cert_server}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=abc"
    payload = sns(cert_server, "SubscriptionConfirmation", "You have chosen to subscribe", SubscribeURL=url,
                  Token="abc")
    before = len(CertServer.confirmed)
    assert app.post("/webhooks/ses", json=payload).status_code == 200
    assert CertServer.confirmed[before:] == [url.removeprefix(cert_server)]


def test_an_ses_complaint_unsubscribes(app, cert_server):
    message = json.dumps({"notificationType": "Complaint", "mail": {"messageId": "m-2", "source": "x@example.org"},
                          "complaint": {"feedbackId": "c-1", "complaintFeedbackType": "abuse",
                                        "complainedRecipients": [{"emailAddress": READERS[3]}]}})
    assert app.post("/webhooks/ses", json=sns(cert_server, "Notification", message)).status_code == 200
    subscriber = app.store.subscriber(READERS[3])
    assert subscriber.status == "unsubscribed" and app.store.suppression(READERS[3]).reason == "complaint"


def test_postmark_needs_the_token_and_records_a_hard_bounce(app):
    event = {"RecordType": "Bounce", "ID": 4323372036854775807, "Type": "HardBounce", "TypeCode": 1,
             "Email": READERS[0], "Description": "The server was unable to deliver your message",
             "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist."}
    assert app.post("/webhooks/postmark", json=event).status_code == 401
    assert app.post("/webhooks/postmark", json=event, auth=("postmark", "wrong")).status_code == 403
    assert recorded(app) == []
    answer = app.post("/webhooks/postmark", json=event, auth=("postmark", TOKEN))
    assert answer.status_code == 200 and answer.json()["recorded"] == 1
    assert [(r.recipient, r.kind, r.status) for r in recorded(app)] == [(READERS[0], "hard", "5.1.1")]
    auto = {**event, "ID": 2, "Type": "AutoResponder", "Email": READERS[2]}
    app.post("/webhooks/postmark", json=auto, headers={"Authorization": f"Bearer {TOKEN}"})
    assert app.store.suppression(READERS[2]) is None


def mailgun_body(event: dict, *, key: str = MAILGUN_KEY, timestamp: int | None = None, token: str = "a" * 50) -> dict:
    stamp = str(timestamp or int(time.time()))
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": stamp, "token": token, "signature": signature}, "event-data": event}


def test_mailgun_signatures_freshness_and_replays(app):
    event = {"event": "failed", "id": "G9Bn5sl1TC6nu79C8C0bwg", "severity": "temporary", "reason": "generic",
             "recipient": READERS[2], "envelope": {"sender": "bounces@blog.example.com"},
             "delivery-status": {"code": 452, "message": "4.2.2 The email account is over quota"}}
    assert app.post("/webhooks/mailgun", json=mailgun_body(event, key="other")).status_code == 403
    stale = mailgun_body(event, timestamp=int(time.time()) - 3600)
    assert app.post("/webhooks/mailgun", json=stale).status_code == 403
    assert app.post("/webhooks/mailgun", json={"event-data": event}).status_code == 401
    good = mailgun_body(event)
    assert app.post("/webhooks/mailgun", json=good).json() == {"recorded": 1, "recorded_before": 0}
    (row,) = recorded(app)
    assert (row.kind, row.status, row.effect) == ("soft", "4.2.2", "counted: soft bounce 1 of 3 within 30d")
    # The same event under a new token (Mailgun's retry of a request it thinks failed) is recorded once.
    again = app.post("/webhooks/mailgun", json=mailgun_body(event, token="b" * 50))
    assert again.json() == {"recorded": 0, "recorded_before": 1}


@pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)
def test_a_captured_mailgun_signature_is_refused_a_second_time(app):
    """Mailgun's signature covers its timestamp and token, not the event: once one request has been
    accepted, its signature carries nothing else, however fresh."""
    event = {"event": "complained", "id": "cmp-1", "recipient": READERS[0]}
    captured = mailgun_body(event)
    assert app.post("/webhooks/mailgun", json=captured).json() == {"recorded": 1, "recorded_before": 0}
    assert app.store.subscriber(READERS[0]).status == "unsubscribed"

    replayed = app.post("/webhooks/mailgun", json=captured)
    assert replayed.status_code == 406 and "used before" in replayed.json()["error"]
    for number, reader in enumerate(READERS[1:3]):          # the attack: other readers' "complaints"
        forged = {**captured, "event-data": {"event": "complained", "id": f"forged-{number}", "recipient": reader}}
        assert app.post("/webhooks/mailgun", json=forged).status_code == 406
        assert app.store.subscriber(reader).status == "active" and app.store.suppression(reader) is None
    assert [r.recipient for r in recorded(app)] == [READERS[0]]

    # Remembered until the signature would be refused as old anyway; then forgotten.
    with app.store.engine.connect() as conn:
        ((token, expires_at),) = conn.execute(sa.select(webhook_tokens.c.token, webhook_tokens.c.expires_at)).all()
    stamp = int(captured["signature"]["timestamp"])
    assert token == "a" * 50 and expires_at == datetime.fromtimestamp(stamp + webhooks.SIGNATURE_MAX_AGE, UTC)
    later = mailgun_body({"event": "delivered", "id": "d-1"}, timestamp=stamp + webhooks.SIGNATURE_MAX_AGE + 60,
                         token="c" * 50)
    with time_machine.travel(stamp + webhooks.SIGNATURE_MAX_AGE + 61):
        assert app.post("/webhooks/mailgun", json=later).json() == {"recorded": 0, "recorded_before": 0}
    with app.store.engine.connect() as conn:
        assert conn.execute(sa.select(webhook_tokens.c.token)).scalars().all() == ["c" * 50]


def sendgrid_post(app, events: list, *, key=SENDGRID_KEY, timestamp: str | None = None):
    body = json.dumps(events).encode()
    stamp = timestamp or str(int(time.time()))
    signature = base64.b64encode(key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    return app.post("/webhooks/sendgrid", content=body, headers={
        "X-Twilio-Email-Event-Webhook-Signature": signature, "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        "Content-Type": "application/json"})


def test_sendgrid_signed_events(app):
    events = [{"email": READERS[3], "event": "bounce", "type": "bounce", "status": "5.1.1",
               "reason": "550 5.1.1 User unknown", "sg_event_id": "sg-1", "timestamp": 1765757000},
              {"email": READERS[0], "event": "spamreport", "sg_event_id": "sg-2"},
              {"email": READERS[1], "event": "open", "sg_event_id": "sg-3"}]
    assert sendgrid_post(app, events, key=ec.generate_private_key(ec.SECP256R1())).status_code == 403
    assert app.post("/webhooks/sendgrid", json=events).status_code == 401
    answer = sendgrid_post(app, events)
    assert answer.status_code == 200 and answer.json() == {"recorded": 2, "recorded_before": 0}
    assert {(r.recipient, r.kind) for r in recorded(app)} == {(READERS[3], "hard"), (READERS[0], "complaint")}
    assert app.store.subscriber(READERS[0]).status == "unsubscribed"


def test_the_generic_webhook_reads_the_documented_json(app):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    tag = verp.return_path("bounces@blog.example.com", SECRET, app.ids[READERS[2]])
    events = [{"id": "evt-1", "kind": "hard", "recipient": "forwarded@example.org", "status": "5.1.1",
               "diagnostic": "550 5.1.1 no such user", "return_path": tag},
              {"id": "evt-2", "kind": "auto-reply", "recipient": READERS[1]}]
    assert app.post("/webhooks/bounce", json=events, headers=headers).json() == {"recorded": 2, "recorded_before": 0}
    rows = {r.message_key: r for r in recorded(app)}
    assert rows["generic:evt-1"].recipient == READERS[2]          # the VERP tag names the delivery
    assert app.store.suppression(READERS[2]) is not None and app.store.suppression(READERS[1]) is None
    bad = app.post("/webhooks/bounce", json=[{"id": "evt-3", "kind": "maybe", "recipient": READERS[0]}],
                   headers=headers)
    assert bad.status_code == 400 and "kind" in bad.json()["error"]
    assert app.post("/webhooks/bounce", content=b"\xff" * 10, headers=BEARER).status_code == 400
    huge = app.post("/webhooks/bounce", content=b"[" + b" " * (2 * 1024 * 1024) + b"]", headers=BEARER)
    assert huge.status_code == 413
    assert len(recorded(app)) == 2


def test_webhooks_without_their_secret_are_off(app, monkeypatch):
    monkeypatch.delenv("FEEDPUB_WEBHOOK_TOKEN")
    monkeypatch.delenv("FEEDPUB_MAILGUN_SIGNING_KEY")
    assert app.post("/webhooks/bounce", json={}, headers={"Authorization": "Bearer x"}).status_code == 404
    assert app.post("/webhooks/mailgun", json={}).status_code == 404


# -- malformed requests: 4xx with a short reason, nothing recorded -------------------------------------

BEARER = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
NESTED = b"[" * 100_000 + b"]" * 100_000
TEXT = {"Content-Type": "text/plain"}
JSON = {"Content-Type": "application/json"}


def signed_mailgun(**signature: object) -> bytes:
    body = mailgun_body({"event": "complained", "id": "m-1", "recipient": READERS[0]})
    return json.dumps({**body, "signature": {**body["signature"], **signature}}).encode()


def sendgrid_headers(signature: str | bytes, timestamp: str | bytes) -> dict:
    return {"X-Twilio-Email-Event-Webhook-Signature": signature, "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            **JSON}


MALFORMED = {
    # before any authentication: the signature is in the body
    "mailgun non-ASCII signature": ("mailgun", JSON, lambda _: signed_mailgun(signature="é" * 64), 400,
                                    "malformed signature.signature"),
    "mailgun non-ASCII token": ("mailgun", JSON, lambda _: signed_mailgun(token="トークン"), 400,
                                "malformed signature.token"),
    "mailgun Arabic-Indic timestamp": ("mailgun", JSON, lambda _: signed_mailgun(timestamp="١٧٦٥٧٥٧٠٠٠"), 400,
                                       "malformed signature.timestamp"),
    "mailgun timestamp as a number": ("mailgun", JSON, lambda _: signed_mailgun(timestamp=1765757000), 400,
                                      "malformed signature.timestamp"),
    "mailgun nested JSON": ("mailgun", JSON, lambda _: NESTED, 400, "nested too deeply"),
    "mailgun a list": ("mailgun", JSON, lambda _: b"[1, 2]", 400, "not a JSON object"),
    "mailgun form data": ("mailgun", {"Content-Type": "application/x-www-form-urlencoded"},
                          lambda _: b"signature=x", 415, "expected application/json"),
    "mailgun no content type": ("mailgun", {}, lambda _: b"{}", 415, "expected application/json"),
    "ses nested JSON": ("ses", TEXT, lambda _: NESTED, 400, "nested too deeply"),
    "ses a string": ("ses", TEXT, lambda _: b'"Notification"', 400, "not a JSON object"),
    "ses HTML": ("ses", {"Content-Type": "text/html"}, lambda _: b"<p>", 415,
                 "expected text/plain or application/json"),
    "ses type a list": ("ses", TEXT, lambda _: json.dumps({"TopicArn": TOPIC, "Type": ["Notification"]}).encode(),
                        400, "unknown SNS message type"),
    "ses non-ASCII signature": ("ses", TEXT, lambda cert: json.dumps(
        {**sns(cert, "Notification", "{}"), "Signature": "署名"}).encode(), 400, "malformed Signature"),
    "ses lone surrogate": ("ses", TEXT, lambda _: b'{"TopicArn": "\\ud800"}', 400, "lone surrogate"),
    # after authentication: the signature is in the headers, or the token is
    "ses signed message a list": ("ses", TEXT, lambda cert: json.dumps(sns(cert, "Notification", "[1]")).encode(),
                                  400, "not a JSON object"),
    "bounce nested JSON": ("bounce", BEARER, lambda _: NESTED, 400, "nested too deeply"),
    "bounce a number": ("bounce", BEARER, lambda _: b"5", 400, "event is not an object"),
    "bounce a lone surrogate": ("bounce", BEARER, lambda _: json.dumps(
        {"id": "s-1", "kind": "hard", "recipient": "\ud800@example.com"}).encode(), 400, "lone surrogate"),
    "bounce text": ("bounce", {**BEARER, "Content-Type": "text/plain"}, lambda _: b"{}", 415, "application/json"),
    "bounce non-ASCII bearer token": ("bounce", {**BEARER, "Authorization": "Bearer トークン".encode()},
                                      lambda _: b"{}", 400, "malformed credentials"),
    "postmark non-ASCII basic auth": ("postmark", {**BEARER, "Authorization": "Basic ÿÿÿÿ".encode()},
                                      lambda _: b"{}", 400, "malformed Basic credentials"),
    "postmark a list": ("postmark", BEARER, lambda _: b"[]", 400, "not a JSON object"),
    "postmark nested JSON": ("postmark", BEARER, lambda _: NESTED, 400, "nested too deeply"),
    "sendgrid non-ASCII timestamp": ("sendgrid", sendgrid_headers("c2ln", "１７６５".encode()), lambda _: b"[]", 400,
                                     "malformed X-Twilio-Email-Event-Webhook-Timestamp"),
    "sendgrid non-base64 signature": ("sendgrid", sendgrid_headers("署名".encode(),
                                                                   str(int(time.time()))), lambda _: b"[]", 400,
                                      "malformed X-Twilio-Email-Event-Webhook-Signature"),
    "sendgrid XML": ("sendgrid", {**sendgrid_headers("c2ln", "1"), "Content-Type": "application/xml"},
                     lambda _: b"<x/>", 415, "application/json"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_requests_answer_4xx_with_a_reason_and_record_nothing(app, cert_server, case):
    route, headers, body, status, reason = MALFORMED[case]
    answer = app.post(f"/webhooks/{route}", content=body(cert_server), headers=headers)
    assert (answer.status_code, reason in answer.json()["error"]) == (status, True), answer.text
    assert len(answer.json()["error"]) < 200
    assert recorded(app) == [] and app.store.suppressed() == set()
    assert {s.status for s in app.store.subscribers()} == {"active"}


def test_a_signed_sendgrid_object_is_refused_as_not_a_list(app):
    answer = sendgrid_post(app, {"email": READERS[0], "event": "spamreport", "sg_event_id": "x"})
    assert answer.status_code == 400 and answer.json() == {"error": "not a list of events"}
    assert recorded(app) == []


@pytest.mark.parametrize("route, headers", [("ses", TEXT), ("mailgun", JSON), ("bounce", BEARER),
                                            ("postmark", BEARER), ("sendgrid", sendgrid_headers("c2ln", "1"))])
def test_oversized_bodies_answer_413_on_every_route(app, route, headers):
    answer = app.post(f"/webhooks/{route}", content=b"[" + b" " * (2 * 1024 * 1024) + b"]", headers=headers)
    assert answer.status_code == 413 and answer.json() == {"error": f"more than {webhooks.MAX_BODY} bytes"}
    assert recorded(app) == []
