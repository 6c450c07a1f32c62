"""What an activity delivered to an inbox does, decided from its JSON alone (pure). The routes verify the
signature first and apply the decision with the ledger after:

- `Follow` of one of our accounts → a follower, and an `Accept` back to its inbox;
- `Undo` of such a `Follow` → no longer one; `Delete` of an actor by itself → none of its follows;
- `Like` / `Announce` of one of our posts → counted (`Undo` of one → no longer);
- `Create(Note)` in reply to one of our posts → kept for the operator, never published;
- anything else → acknowledged and dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from feedpub.config import Config
from feedpub.fediverse import objects, urls


class Malformed(Exception):
    """Not an activity (→ 400); says what is missing."""


@dataclass(frozen=True)
class Follow:
    account: str
    actor: str
    activity: dict[str, Any]


@dataclass(frozen=True)
class Unfollow:
    account: str
    actor: str


@dataclass(frozen=True)
class ActorGone:
    actor: str


@dataclass(frozen=True)
class Reaction:
    kind: str               # like | announce | reply
    object_id: str
    actor: str
    activity_id: str
    content: str = ""


@dataclass(frozen=True)
class Unreact:
    activity_id: str
    actor: str


@dataclass(frozen=True)
class Dropped:
    why: str


Effect = Follow | Unfollow | ActorGone | Reaction | Unreact | Dropped


def actor_of(activity: Any) -> str:
    """The activity's actor id; Malformed when it is not an activity."""
    if not isinstance(activity, dict):
        raise Malformed("the body is not a JSON object")
    if not isinstance(activity.get("type"), str):
        raise Malformed("the activity has no type")
    actor = ident(activity.get("actor"))
    if not actor:
        raise Malformed("the activity has no actor")
    return actor


def ident(value: Any) -> str:
    """The id of a link or an embedded object ("" when it has none)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    return ""


def decide(config: Config, activity: dict[str, Any], *, accounts: Collection[str], inbox_account: str | None
           ) -> Effect:
    """What `activity` (signed by its actor) does; `inbox_account` is the account whose inbox it came to (None for
    the shared inbox)."""
    kind, actor, target = activity["type"], actor_of(activity), activity.get("object")
    if kind == "Follow":
        account = urls.account_of(config, ident(target))
        if account not in accounts or not ident(activity.get("id")):
            return Dropped("a Follow of no account of ours")
        return Follow(account, actor, activity)
    if kind == "Undo":
        return _undo(config, target, actor, accounts, inbox_account)
    if kind == "Delete":
        return ActorGone(actor) if ident(target) == actor else Dropped("a Delete of something not ours")
    if kind in ("Like", "Announce"):
        object_id, activity_id = ident(target), ident(activity.get("id"))
        if not _ours(config, object_id) or not activity_id:
            return Dropped(f"a {kind} of something not ours")
        return Reaction(kind.lower(), object_id, actor, activity_id)
    if kind == "Create" and isinstance(target, dict) and target.get("type") == "Note":
        replied = ident(target.get("inReplyTo"))
        note_id = ident(target)
        if not _ours(config, replied) or not note_id:
            return Dropped("a Note in reply to nothing of ours")
        content = target.get("content")
        return Reaction("reply", replied, actor, note_id, content if isinstance(content, str) else "")
    return Dropped(f"{kind} is not acted on")


def _undo(config: Config, target: Any, actor: str, accounts: Collection[str], inbox_account: str | None) -> Effect:
    if isinstance(target, dict) and target.get("type") == "Follow":
        if ident(target.get("actor")) not in ("", actor):
            return Dropped("an Undo of someone else's Follow")
        account = urls.account_of(config, ident(target.get("object"))) or inbox_account
        return Unfollow(account, actor) if account in accounts else Dropped("an Undo of a Follow of no account")
    if isinstance(target, dict) and target.get("type") in ("Like", "Announce") and ident(target):
        return Unreact(ident(target), actor)
    if isinstance(target, str) and inbox_account in accounts:
        # An Undo naming its Follow by id only (the id is not kept): on an account's own inbox, that account's.
        return Unfollow(inbox_account, actor)
    return Dropped("an Undo of nothing acted on")


def _ours(config: Config, object_id: str) -> bool:
    return object_id.startswith(urls.base(config) + objects.OBJECTS_PATH)


def accept(config: Config, account: str, follow: dict[str, Any]) -> dict[str, Any]:
    """The account's `Accept` of a Follow: the Follow embedded (id, actor, object), as Mastodon matches it."""
    actor = urls.actor_id(config, account)
    follow_id = ident(follow.get("id"))
    embedded = {"id": follow_id, "type": "Follow", "actor": ident(follow.get("actor")), "object": actor}
    digest = hashlib.sha256(follow_id.encode()).hexdigest()[:24]
    return {"@context": "https://www.w3.org/ns/activitystreams", "id": f"{actor}#accepts/{digest}",
            "type": "Accept", "actor": actor, "object": embedded}
