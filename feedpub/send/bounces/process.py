"""Bounces, complaints and replies, from whatever source, to their evidence and their effect on subscribers.

The delivery comes from the VERP tag when the return path carries one (signed: a forged tag names
nothing), else from the address the report names (its latest delivery, of the issue a returned
Feedback-ID names if any). Effects:
- hard: the address is suppressed at once;
- soft: suppressed once `bounces.soft_limit` soft bounces fall within `bounces.soft_window` with no clean
  delivery in between;
- complaint: unsubscribed and suppressed with reason `complaint`;
- auto-replies, other mail, and bounces for addresses feedpub never mailed: recorded, nothing done.
Returned mail is verified before it acts, with or without `smtp.return_path` (without it the bounce
address is the public From: address, which anyone can write to): a bounce or complaint with neither a
VERP tag that verifies nor the signed Message-ID of a delivery to the address it names (most returned
mail quotes the message's headers), and anything with a forged tag, is recorded as unverified and
changes no subscriber.
A provider's event is vouched for by the provider's signature, checked by `feedpub.web.webhooks`.
A batch of messages is one transaction: each message's evidence and effect are committed together, and
a message recorded before (read twice, or by two processes at once) does nothing again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from feedpub.config import Config, parse_duration
from feedpub.send import verp
from feedpub.send.bounces import evidence
from feedpub.send.bounces.classify import PARSE_LIMIT, Bounce, classify
from feedpub.store import Store, email_key, suppress_address, unsubscribe_address, utcnow

COMPLAINT = "complaint"
RECORDED_BEFORE = "recorded before; nothing done again"
UNVERIFIED = "none: unverified: "


@dataclass(frozen=True)
class Outcome:
    evidence_id: int | None      # None: recorded before
    recipient: str
    kind: str
    effect: str


@dataclass(frozen=True)
class Named:
    """What a message's own bytes say about who it is about: the delivery its VERP tags name, whether a
    tag was present that did not verify, and the delivery Message-IDs it quotes (verified per address)."""

    delivery_id: int | None
    forged: bool
    message_ids: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Returned:
    """One message or provider event, classified, ready to record."""

    bounce: Bounce
    named: Named
    raw: bytes
    source: str
    signed: bool = False         # a provider's signature vouches for it (a webhook's event)


class Replayed(Exception):
    """A signed request's token was seen before: nothing of it is recorded."""


@dataclass(frozen=True)
class Target:
    recipient: str
    delivery_id: int | None
    note: str                    # replaces the effect when not ""
    unverified: bool = False


def named_delivery(config: Config, raw: bytes) -> Named:
    """The delivery the VERP tags in `raw` name (None without `smtp.return_path` or without a good tag), and
    the delivery Message-IDs it quotes (whatever the config: every delivery's Message-ID is signed)."""
    text = raw[:PARSE_LIMIT].decode("latin-1")
    message_ids = tuple(verp.message_ids_in(text))
    tags = verp.tags_in(config.smtp.return_path, text) if config.smtp.return_path else []
    if not tags:
        return Named(None, False, message_ids)
    secret = config.web.secret()
    for tag in tags:
        delivery_id = verp.read_tag(secret, tag)
        if delivery_id is not None:
            return Named(delivery_id, False, message_ids)
    return Named(None, True, message_ids)


def verified(config: Config, item: Returned, recipient: str) -> bool:
    """Whether anything vouches for `item` being about mail feedpub sent to `recipient`: a provider's
    signature, a good VERP tag, or the signed Message-ID of a delivery to that address."""
    named = item.named
    if named.forged:
        return False
    if item.signed or named.delivery_id is not None:
        return True
    return any(verp.sent_to(config.web.secret(), found, recipient) for found in named.message_ids)


def read_message(config: Config, raw: bytes, source: str) -> Returned:
    return Returned(classify(raw), named_delivery(config, raw), raw, source)


def process_message(config: Config, store: Store, raw: bytes, source: str) -> list[Outcome]:
    """Classify one message, record it and apply its effect."""
    return record_all(config, store, [read_message(config, raw, source)])[0]


def record_all(config: Config, store: Store, items: Sequence[Returned], *,
               token: evidence.Token | None = None) -> list[list[Outcome]]:
    """Record each item once per recipient and do what its kind asks, in one transaction; with the
    `token` of a signed request, only if that token was not seen before (else `Replayed`)."""
    with store.writing() as conn:
        if token is not None and not evidence.remember(conn, token, utcnow()):
            raise Replayed(f"{token.provider} token seen before")
        done = evidence.recorded(conn, (item.bounce.message_key for item in items))
        addresses = evidence.addresses_of(conn, (i.named.delivery_id for i in items if i.named.delivery_id))
        results = []
        for item in items:
            outcomes = []
            for target in _targets(config, conn, item, addresses):
                key = (item.bounce.message_key, email_key(target.recipient))
                if key in done:
                    outcomes.append(Outcome(None, target.recipient, item.bounce.kind, RECORDED_BEFORE))
                    continue
                # The evidence first: the suppression it makes names it as its cause.
                evidence_id = evidence.record(conn, {
                    "received_at": utcnow(), "source": item.source, "message_key": item.bounce.message_key,
                    "recipient": target.recipient, "delivery_id": target.delivery_id, "kind": item.bounce.kind,
                    "status": item.bounce.status, "diagnostic": item.bounce.diagnostic, "why": item.bounce.why,
                    "effect": target.note, "raw": item.raw[:config.bounces.raw_limit], "raw_size": len(item.raw),
                    "unverified": target.unverified})
                effect = target.note or _effect(config, conn, item.bounce, target.recipient, target.delivery_id,
                                                evidence_id)
                if evidence_id is not None and not target.note:
                    evidence.set_effect(conn, evidence_id, effect)
                done.add(key)
                outcomes.append(Outcome(evidence_id, target.recipient, item.bounce.kind,
                                        effect if evidence_id else RECORDED_BEFORE))
            results.append(outcomes)
    return results


def _targets(config: Config, conn: Connection, item: Returned, addresses: dict[int, str]) -> list[Target]:
    """Each address the item is about, with its delivery, or the note that replaces the effect."""
    bounce, named = item.bounce, item.named
    if named.delivery_id in addresses:
        return [Target(addresses[named.delivery_id], named.delivery_id, "")]
    recipients = bounce.recipients or ("",)
    if named.forged:   # real bounces go to the envelope sender, tag and all: this one was made up
        return [Target(r, None, UNVERIFIED + "its VERP tag is not signed with this site's key", True)
                for r in recipients]
    if bounce.kind in ("auto-reply", "not-a-bounce"):
        return [Target(recipients[0], None, f"none ({bounce.kind})")]
    if not bounce.recipients:
        return [Target("", None, "none: no recipient found in the message")]
    period = bounce.feedback_id.split(":", 1)[0] if bounce.feedback_id else None
    targets = []
    for recipient in bounce.recipients:
        if not verified(config, item, recipient):
            targets.append(Target(recipient, None, UNVERIFIED + "neither a VERP tag of this site nor the Message-ID "
                                                                "of a message feedpub sent this address", True))
            continue
        found = evidence.delivery_for(conn, recipient, period) or evidence.delivery_for(conn, recipient, None)
        if found is None and not evidence.is_subscriber(conn, recipient):
            targets.append(Target(recipient, None, "none: feedpub never mailed this address"))
        else:
            targets.append(Target(found[1] if found else recipient, found[0] if found else None, ""))
    return targets


def _effect(config: Config, conn: Connection, bounce: Bounce, recipient: str, delivery_id: int | None,
            evidence_id: int | None) -> str:
    now = utcnow()
    key = email_key(recipient)
    cause_ref = "" if evidence_id is None else str(evidence_id)
    if bounce.kind == "hard":
        reason = f"hard bounce {bounce.status or ''}: {bounce.diagnostic or bounce.why}".replace("  ", " ")
        suppress_address(conn, key, reason[:300], now, cause="bounce", cause_ref=cause_ref)
        return "suppressed"
    if bounce.kind == "soft":
        window = config.bounces.soft_window
        count = len(evidence.soft_bounces(conn, recipient, now, parse_duration(window), delivery_id)
                    | {delivery_id or bounce.message_key})
        limit = config.bounces.soft_limit
        if count >= limit:
            suppress_address(conn, key, f"{count} soft bounces within {window}: "
                                        f"{bounce.diagnostic or bounce.status or bounce.why}"[:300], now,
                             cause="bounce", cause_ref=cause_ref)
            return f"suppressed: soft bounce {count} of {limit} within {window}"
        return f"counted: soft bounce {count} of {limit} within {window}"
    if bounce.kind == "complaint":
        unsubscribe_address(conn, key, COMPLAINT, now, cause="complaint", cause_ref=cause_ref)
        return "unsubscribed and suppressed (complaint)"
    return f"none ({bounce.kind})"
