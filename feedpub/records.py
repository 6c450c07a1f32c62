"""The records the store reads and writes: subscribers, suppressions, issues, their variants and archive,
and deliveries. Plain frozen dataclasses, so every wing can hold them without the store's SQL."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

SubscriberStatus = Literal["pending", "active", "unsubscribed"]
# How often a reader gets mail: each post as it is published, or a digest per local day, week or month.
CADENCES = ("post", "daily", "weekly", "monthly")
# What a mail is: a post's own, a digest of a reader's cadence, or the welcome on confirmation.
MAIL_KINDS = (*CADENCES, "welcome")


def offered_cadences(chosen: Collection[str]) -> tuple[str, ...]:
    """The cadences of `digest.cadences` as readers are shown them: most often first."""
    return tuple(cadence for cadence in CADENCES if cadence in chosen)


def default_cadence(chosen: Collection[str]) -> str:
    """A new reader's cadence when none is given: weekly (the digest as it always was) when offered, else the
    first offered."""
    offered = offered_cadences(chosen)
    return "weekly" if "weekly" in offered else offered[0]


DeliveryStatus = Literal["queued", "sending", "sent", "deferred", "failed", "cancelled"]
DELIVERY_STATUSES: tuple[DeliveryStatus, ...] = ("queued", "sending", "sent", "deferred", "failed", "cancelled")


@dataclass(frozen=True)
class Subscriber:
    id: int
    email: str
    name: str
    status: SubscriberStatus
    topics: tuple[str, ...]                   # feed folders ("categories/AI", "tags/x", "authors/y"); () = everything
    cadence: str                              # post | daily | weekly | monthly
    timezone: str                             # IANA name; "" = site.timezone
    created_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None


class ActiveReader(NamedTuple):
    """What sending needs of an active, unsuppressed subscriber."""

    id: int
    topics: tuple[str, ...]
    cadence: str
    timezone: str
    joined: datetime                          # when they subscribed (created_at)


@dataclass(frozen=True)
class SubscriberInput:
    email: str
    name: str | None = None                   # None keeps the stored name
    topics: tuple[str, ...] | None = None     # None keeps what is stored (each of these)
    cadence: str | None = None
    timezone: str | None = None


@dataclass(frozen=True)
class Suppression:
    email_key: str
    reason: str
    created_at: datetime
    cause: str = ""                           # issue, bounce, complaint, unsubscribe, operator ("": unknown)
    cause_ref: str = ""                       # the issue id, the bounce evidence id, the operator


@dataclass(frozen=True)
class StoredIssue:
    id: int
    period: str
    slot: datetime
    starts: datetime
    ends: datetime
    created_at: datetime
    kind: str = "weekly"                      # daily, weekly, monthly (digests), post, welcome
    zone: str = ""                            # its readers' time zone ("": the site's)


@dataclass(frozen=True)
class StoredVariant:
    key: str
    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class ArchivedIssue:
    period: str
    slot: datetime
    entries: list[dict[str, Any]]             # `feedpub.send.archive` records, as the issue showed its posts


@dataclass(frozen=True)
class Delivery:
    id: int
    issue_id: int
    subscriber_id: int
    email: str
    name: str
    variant_key: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_reply: str
