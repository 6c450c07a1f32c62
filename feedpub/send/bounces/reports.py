"""Machine-readable reports, read with the standard library's `email` package: RFC 3464 delivery status
notifications (and RFC 6533's global ones), RFC 5965 ARF feedback reports, and the headers of the
message a report returns."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser

from feedpub.send.bounces.heuristics import header_text

_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
_FEEDBACK_TYPES = ("message/feedback-report",)
_DISPOSITION_TYPES = ("message/disposition-notification", "message/global-disposition-notification")
_RETURNED_TYPES = ("message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers")
_ENHANCED_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
# Header blocks of a delivery-status or feedback-report part that are read: a bounce of ours is about one
# recipient (real reports name at most 11), and each block's address is looked for in the report's text.
BLOCK_LIMIT = 200


class Unreadable(ValueError):
    """A message beyond the bounds within which returned mail is read; the message says which bound."""


@dataclass(frozen=True)
class RecipientStatus:
    """One per-recipient block of a DSN."""

    address: str                 # Original-Recipient when given (the address that was mailed), else Final-
    action: str                  # failed | delayed | delivered | relayed | expanded | "" (missing)
    status: str | None           # "5.1.1"
    diagnostic: str | None       # the remote server's words, without the "smtp;" type
    final: str                   # Final-Recipient (the address after the receiving site's aliases and forwards)


@dataclass(frozen=True)
class FeedbackReport:
    feedback_type: str           # abuse | fraud | virus | other | not-spam | auth-failure
    recipients: tuple[str, ...]  # Original-Rcpt-To
    user_agent: str


def delivery_status(message: Message) -> list[RecipientStatus] | None:
    """The per-recipient blocks of a DSN; None when the message has no delivery-status part."""
    part = _part(message, _DSN_TYPES)
    if part is None:
        return None
    recipients = []
    for block in _blocks(part)[1:]:          # the first block is about the message, the rest one per recipient
        final = _address(block.get("Final-Recipient", ""))
        address = _address(block.get("Original-Recipient", "")) or final
        if not address:
            continue
        found = _ENHANCED_STATUS.search(str(block.get("Status", "")))
        diagnostic = _unfold(header_text(block.get("Diagnostic-Code", "")))
        diagnostic = diagnostic.split(";", 1)[1].strip() if ";" in diagnostic[:12] else diagnostic
        status = found[1] if found else None
        said = _ENHANCED_STATUS.search(diagnostic)
        if said and (status is None or status.endswith(".0.0") and said[1][0] == status[0]):
            status = said[1]        # "5.0.0" with the server's "550 5.1.1 …": the server's is the precise one
        recipients.append(RecipientStatus(address, _unfold(str(block.get("Action", ""))).lower(), status,
                                          diagnostic or None, final or address))
    return recipients


def header_recipients(message: Message) -> list[str]:
    """The recipient a bounce without a delivery-status part names in its own header with a DSN's fields (a
    hosting provider's "Mail Delivery Failure" writes "Original-Recipient: rfc822;x@example.org" there)."""
    return _recipients(message)


def rejected_recipients(message: Message) -> list[str]:
    """The recipients a rejection at delivery names: a disposition notification whose mailbox deleted the
    message unread by itself (Dovecot's quota refusal, Sieve's reject of RFC 5429: "Disposition:
    automatic-action/MDN-sent-automatically; deleted"). A read receipt ("displayed") names none."""
    part = _part(message, _DISPOSITION_TYPES)
    if part is None:
        return []
    return [address for block in _blocks(part)
            if re.match(r"automatic-action\b.*;\s*deleted\b", _unfold(str(block.get("Disposition", ""))), re.I)
            for address in _recipients(block)]


def _recipients(fields: Message) -> list[str]:
    """Original-Recipient (the address that was mailed), else Final-Recipient."""
    for name in ("Original-Recipient", "Final-Recipient"):
        found = [address for address in map(_address, fields.get_all(name, [])) if address]
        if found:
            return found
    return []


def feedback_report(message: Message) -> FeedbackReport | None:
    part = _part(message, _FEEDBACK_TYPES)
    if part is None:
        return None
    fields = _blocks(part)
    if not fields:
        return None
    first = fields[0]
    recipients = tuple(filter(None, (_address(value) for value in first.get_all("Original-Rcpt-To", []))))
    return FeedbackReport(_unfold(str(first.get("Feedback-Type", ""))).lower(), recipients,
                          _unfold(str(first.get("User-Agent", ""))))


def returned_headers(message: Message) -> Message | None:
    """The headers of the message a report (or a bounce that attaches it) sends back."""
    part = _part(message, _RETURNED_TYPES)
    if part is None:
        return None
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    text = part.get_payload(decode=True)
    return HeaderParser().parsestr(text.decode("utf-8", "replace")) if isinstance(text, bytes) else None


def _part(message: Message, types: tuple[str, ...]) -> Message | None:
    """The first part of one of `types`, looking into the report's own parts only (never into a message it
    returns, which may itself be a report)."""
    for part in message.get_payload() if message.is_multipart() else []:
        if not isinstance(part, Message):
            continue
        if part.get_content_type() in types:
            return part
        if part.get_content_type().startswith("multipart/"):
            found = _part(part, types)
            if found is not None:
                return found
    return None


def _blocks(part: Message) -> list[Message]:
    """The header blocks of a delivery-status or feedback-report part: parsed by `email` already, or (when
    the part was encoded, or its type unknown to `email`) parsed here from its text."""
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = [block for block in payload if isinstance(block, Message)]
    else:
        data = part.get_payload(decode=True)
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(payload)
        blocks = [block for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if block.strip()]
    if len(blocks) > BLOCK_LIMIT:
        raise Unreadable(f"{len(blocks)} header blocks in its {part.get_content_type()} part "
                         f"(at most {BLOCK_LIMIT} are read)")
    return [block if isinstance(block, Message) else HeaderParser().parsestr(block.strip("\n") + "\n")
            for block in blocks]


def _address(value: str) -> str:
    """"rfc822; <User@Example.org>" → "User@Example.org"; "" if there is no address."""
    value = _unfold(str(value))
    value = value.split(";", 1)[1] if ";" in value else value
    value = value.strip().strip("<>").strip()
    return value if "@" in value and " " not in value else ""


def _unfold(value: str) -> str:
    return re.sub(r"\s*\r?\n\s+", " ", value).strip()
