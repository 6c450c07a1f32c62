"""Bounce and complaint events of sending providers, as the same `Bounce` a returned message becomes:
Amazon SES (through SNS), Postmark, Mailgun, SendGrid and feedpub's own generic JSON. Pure: parsed JSON
in, events out; `BadEvent` for a payload that is not what the provider documents. Authenticating the
request is the web endpoint's job (`feedpub.web.webhooks`).

Each event's key (provider and event id) makes a replayed event a repeat of the one recorded.
Events that are neither a bounce nor a complaint (deliveries, opens, clicks) yield nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from feedpub.send.bounces.classify import KINDS, Bounce, Kind, severity
from feedpub.send.bounces.heuristics import status_in

_POSTMARK_KINDS: dict[str, Kind] = {
    "HardBounce": "hard", "BadEmailAddress": "hard", "ManuallyDeactivated": "hard",
    "SoftBounce": "soft", "Transient": "soft", "DnsError": "soft", "Blocked": "soft", "ContentRelated": "soft",
    "SMTPApiError": "soft", "InboundError": "soft", "DMARCPolicy": "soft", "TemplateRenderingFailed": "soft",
    "AutoResponder": "auto-reply", "ChallengeVerification": "auto-reply",
    "SpamComplaint": "complaint", "SpamNotification": "complaint",
}


class BadEvent(ValueError):
    """A payload that is not what the provider documents; the message says what is missing."""


@dataclass(frozen=True)
class Event:
    bounce: Bounce
    sender: str        # the envelope sender the provider reports (a VERP address when feedpub sent it), or ""


def ses(message: dict[str, Any]) -> Iterator[Event]:
    """The Message of an SES notification (or event publishing record) delivered by SNS."""
    kind_name = _text(message.get("notificationType") or message.get("eventType"))
    mail = _object(message.get("mail", {}), "mail")
    sender = _text(mail.get("source"))
    if kind_name == "Bounce":
        bounce = _object(message.get("bounce"), "bounce")
        permanent = _text(bounce.get("bounceType")) == "Permanent"
        feedback = _text(bounce.get("feedbackId")) or _text(mail.get("messageId"))
        for recipient in _list(bounce.get("bouncedRecipients"), "bounce.bouncedRecipients"):
            address = _text(_object(recipient, "bouncedRecipient").get("emailAddress"))
            status, diagnostic = _status(_text(recipient.get("status")), _text(recipient.get("diagnosticCode")))
            kind = severity(status, diagnostic) if permanent else "soft"
            why = f"SES bounce: {bounce.get('bounceType')}/{bounce.get('bounceSubType')}"
            yield Event(_bounce(kind, address, status, diagnostic, why, f"ses:{feedback}"), sender)
    elif kind_name == "Complaint":
        complaint = _object(message.get("complaint"), "complaint")
        feedback = _text(complaint.get("feedbackId")) or _text(mail.get("messageId"))
        kind_of = _text(complaint.get("complaintFeedbackType")) or "abuse"
        for recipient in _list(complaint.get("complainedRecipients"), "complaint.complainedRecipients"):
            address = _text(_object(recipient, "complainedRecipient").get("emailAddress"))
            yield Event(_bounce("complaint" if kind_of != "not-spam" else "not-a-bounce", address, None,
                                f"SES complaint: {kind_of}", f"SES complaint, feedback type {kind_of}",
                                f"ses:{feedback}"), sender)


def postmark(payload: dict[str, Any]) -> Iterator[Event]:
    record = _text(payload.get("RecordType"))
    if record not in ("Bounce", "SpamComplaint"):
        return
    type_name = _text(payload.get("Type")) or record
    kind = _POSTMARK_KINDS.get(type_name, "not-a-bounce")
    event_id = payload.get("ID")
    if event_id is None:
        raise BadEvent("a Postmark bounce without ID")
    status, diagnostic = _status("", _text(payload.get("Details")) or _text(payload.get("Description")))
    if kind == "hard" and type_name == "HardBounce":
        kind = severity(status, diagnostic or "")
    yield Event(_bounce(kind, _text(payload.get("Email")), status, diagnostic, f"Postmark {record}: {type_name}",
                        f"postmark:{event_id}"), "")


def mailgun(data: dict[str, Any]) -> Iterator[Event]:
    """The "event-data" of a Mailgun webhook (its signature checked by the caller)."""
    event = _text(data.get("event"))
    if event not in ("failed", "complained"):
        return
    event_id = _text(data.get("id"))
    if not event_id:
        raise BadEvent("a Mailgun event without id")
    sender = _text(_object(data.get("envelope", {}), "envelope").get("sender"))
    if event == "complained":
        yield Event(_bounce("complaint", _text(data.get("recipient")), None, "Mailgun complaint",
                            "Mailgun complained event", f"mailgun:{event_id}"), sender)
        return
    delivery = _object(data.get("delivery-status", {}), "delivery-status")
    code = delivery.get("code")
    said = " ".join(filter(None, (str(code) if code else "", _text(delivery.get("message")),
                                  _text(delivery.get("description")))))
    status, diagnostic = _status(_text(delivery.get("enhanced-code")), said)
    temporary = _text(data.get("severity")) == "temporary"
    kind = "soft" if temporary else severity(status, diagnostic or _text(data.get("reason")))
    why = f"Mailgun failed ({data.get('severity')}, {data.get('reason')})"
    yield Event(_bounce(kind, _text(data.get("recipient")), status, diagnostic, why, f"mailgun:{event_id}"), sender)


def sendgrid(events: list[Any]) -> Iterator[Event]:
    for entry in events:
        event = _object(entry, "event")
        name = _text(event.get("event"))
        if name not in ("bounce", "spamreport"):
            continue
        event_id = _text(event.get("sg_event_id"))
        if not event_id:
            raise BadEvent("a SendGrid event without sg_event_id")
        address = _text(event.get("email"))
        if name == "spamreport":
            yield Event(_bounce("complaint", address, None, "SendGrid spam report", "SendGrid spamreport event",
                                f"sendgrid:{event_id}"), "")
            continue
        status, diagnostic = _status(_text(event.get("status")), _text(event.get("reason")))
        kind = "soft" if _text(event.get("type")) == "blocked" else severity(status, diagnostic)
        yield Event(_bounce(kind, address, status, diagnostic, f"SendGrid bounce ({event.get('type') or 'bounce'})",
                            f"sendgrid:{event_id}"), "")


def generic(payload: Any) -> Iterator[Event]:
    """feedpub's own format, one object or a list: {"id", "kind", "recipient", "status"?, "diagnostic"?,
    "return_path"?} (see README: "Webhooks")."""
    for entry in payload if isinstance(payload, list) else [payload]:
        event = _object(entry, "event")
        event_id, kind = _text(event.get("id")), _text(event.get("kind"))
        if not event_id:
            raise BadEvent("an event without \"id\" (expected a unique id per event)")
        if kind not in KINDS:
            raise BadEvent(f"\"kind\" {kind!r} (expected one of {', '.join(KINDS)})")
        status, diagnostic = _status(_text(event.get("status")), _text(event.get("diagnostic")))
        yield Event(_bounce(kind, _text(event.get("recipient")), status, diagnostic, f"webhook event: {kind}",
                            f"generic:{event_id}"), _text(event.get("return_path")))


def parse_json(body: bytes) -> Any:
    """The JSON in `body`; BadEvent for anything else, nesting too deep to parse included, and text no
    store can hold (a lone surrogate written as "\\ud800")."""
    try:
        value = json.loads(body)
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise BadEvent("not JSON feedpub reads: nested too deeply") from None
    except UnicodeEncodeError:
        raise BadEvent("not JSON feedpub reads: a lone surrogate (\\ud800-\\udfff) in a string") from None
    except ValueError as exc:    # UnicodeDecodeError is one
        raise BadEvent(f"not JSON: {exc}") from None
    return value


def _bounce(kind: Kind, recipient: str, status: str | None, diagnostic: str | None, why: str, key: str) -> Bounce:
    if kind in ("hard", "soft", "complaint") and "@" not in recipient:
        raise BadEvent(f"a {kind} event without a recipient address")
    return Bounce(kind, (recipient,) if recipient else (), status, diagnostic, why, key[:400], None)


def _status(status: str, diagnostic: str) -> tuple[str | None, str | None]:
    """An enhanced status as given, or as written in the diagnostic."""
    found = status_in(f"{status} {diagnostic}")[0] if status or diagnostic else None
    return found, (diagnostic or None)


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else str(value) if isinstance(value, int) else ""


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadEvent(f"{what} is not an object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadEvent(f"{what} is not a list")
    return value
