"""A bounce, complaint or reply, from whatever source, to its evidence and its effect on the subscriber.

The delivery comes from the VERP tag when the return path carries one (signed: a forged tag names
nothing), else from the address the report names (its latest delivery, of the issue a returned
Feedback-ID names if any). Effects, all idempotent so a message read twice or by two processes at once
does no more than once:
- hard: the address is suppressed at once;
- soft: suppressed once `bounces.soft_limit` soft bounces fall within `bounces.soft_window` with no clean
  delivery in between;
- complaint: unsubscribed and suppressed with reason `complaint`;
- auto-replies, other mail, and bounces for addresses feedpub never mailed: recorded, nothing done.
The effect is applied before the evidence is written, so a process killed in between applies it again
when the message is read again (suppressing twice is suppressing once).
"""

from __future__ import annotations

from dataclasses import dataclass

from feedpub.config import Config, parse_duration
from feedpub.send import verp
from feedpub.send.bounces import evidence
from feedpub.send.bounces.classify import PARSE_LIMIT, Bounce, classify
from feedpub.store import Store, utcnow

COMPLAINT = "complaint"


@dataclass(frozen=True)
class Outcome:
    evidence_id: int | None      # None: recorded before (this message was read already)
    recipient: str
    kind: str
    effect: str


@dataclass(frozen=True)
class Named:
    """The delivery a message's VERP tags name, and whether a tag was present that did not verify."""

    delivery_id: int | None
    forged: bool


def named_delivery(config: Config, raw: bytes) -> Named:
    """The delivery the VERP tags in `raw` name (None without `smtp.return_path` or without a good tag)."""
    if not config.smtp.return_path:
        return Named(None, False)
    tags = verp.tags_in(config.smtp.return_path, raw[:PARSE_LIMIT].decode("latin-1"))
    if not tags:
        return Named(None, False)
    secret = config.web.secret()
    for tag in tags:
        delivery_id = verp.read_tag(secret, tag)
        if delivery_id is not None:
            return Named(delivery_id, False)
    return Named(None, True)


def process_message(config: Config, store: Store, raw: bytes, source: str) -> list[Outcome]:
    """Classify one message, record it and apply its effect."""
    return apply(config, store, classify(raw), raw, source, named_delivery(config, raw))


def apply(config: Config, store: Store, bounce: Bounce, raw: bytes, source: str, named: Named) -> list[Outcome]:
    """Record `bounce` once per recipient and do what its kind asks."""
    done = evidence.recorded(store, bounce.message_key)
    targets = _targets(store, bounce, named)
    outcomes = []
    for recipient, delivery_id, note in targets:
        if recipient.lower() in done:
            outcomes.append(Outcome(None, recipient, bounce.kind, "recorded before; nothing done again"))
            continue
        effect = note or _effect(config, store, bounce, recipient, delivery_id)
        entry = evidence.NewEvidence(source, bounce.message_key, recipient, delivery_id, bounce.kind, bounce.status,
                                     bounce.diagnostic, bounce.why, effect, raw[:config.bounces.raw_limit], len(raw))
        evidence_id = evidence.record(store, entry)
        outcomes.append(Outcome(evidence_id, recipient, bounce.kind,
                                effect if evidence_id else "recorded before; nothing done again"))
    return outcomes


def _targets(store: Store, bounce: Bounce, named: Named) -> list[tuple[str, int | None, str]]:
    """(recipient, delivery, a note that replaces the effect) for each address the bounce is about."""
    if named.delivery_id is not None:
        address = evidence.delivery_address(store, named.delivery_id)
        if address is not None:
            return [(address, named.delivery_id, "")]
    recipients = bounce.recipients or ("",)
    if named.forged:   # real bounces go to the envelope sender, tag and all: this one was made up
        return [(r, None, "none: its VERP tag is not signed with this site's key") for r in recipients]
    if bounce.kind in ("auto-reply", "not-a-bounce"):
        return [(recipients[0], None, f"none ({bounce.kind})")]
    if not bounce.recipients:
        return [("", None, "none: no recipient found in the message")]
    period = bounce.feedback_id.split(":", 1)[0] if bounce.feedback_id else None
    targets: list[tuple[str, int | None, str]] = []
    for recipient in bounce.recipients:
        found = evidence.delivery_for(store, recipient, period) or evidence.delivery_for(store, recipient, None)
        if found is None and store.subscriber(recipient) is None:
            targets.append((recipient, None, "none: feedpub never mailed this address"))
        else:
            targets.append((found[1] if found else recipient, found[0] if found else None, ""))
    return targets


def _effect(config: Config, store: Store, bounce: Bounce, recipient: str, delivery_id: int | None) -> str:
    if bounce.kind == "hard":
        reason = f"hard bounce {bounce.status or ''}: {bounce.diagnostic or bounce.why}".replace("  ", " ")
        store.suppress(recipient, reason[:300])
        return "suppressed"
    if bounce.kind == "soft":
        window = parse_duration(config.bounces.soft_window)
        count = len(evidence.soft_bounces(store, recipient, utcnow(), window, delivery_id)
                    | {delivery_id or bounce.message_key})
        limit = config.bounces.soft_limit
        if count >= limit:
            store.suppress(recipient, f"{count} soft bounces within {config.bounces.soft_window}: "
                                      f"{bounce.diagnostic or bounce.status or bounce.why}"[:300])
            return f"suppressed: soft bounce {count} of {limit} within {config.bounces.soft_window}"
        return f"counted: soft bounce {count} of {limit} within {config.bounces.soft_window}"
    if bounce.kind == "complaint":
        store.unsubscribe(recipient, COMPLAINT)
        return "unsubscribed and suppressed (complaint)"
    return f"none ({bounce.kind})"
