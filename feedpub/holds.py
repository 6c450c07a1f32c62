"""Pausing, resuming and cancelling an issue's sending: a row in `issue_holds` that every claim honours.

The circuit breaker (`feedpub.send.breaker`) pauses an issue too, with the reason it says why; the rows
it found refused by a sending problem go back to queued (`put_back`).
A paused issue's rows stay as they are and no sender (the daemon, `digest send`, any `feedpub worker`)
claims them any more (`feedpub.store.due`); the rows a sender holds but has not started are taken back,
so only the messages already on their way (one per connection, a few with pipelining) go out.
Resuming removes the hold: the next claim takes the unsent rows where they stopped, and rows already
marked sent are never claimed again. Cancelling marks every unsent row `cancelled` for good.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa

from feedpub.errors import FeedpubError, message
from feedpub.schema import deliveries, issue_holds, issues
from feedpub.store import Store, utcnow

HoldState = Literal["paused", "cancelled"]
CANCELLED_REPLY = "cancelled by the operator"


class HoldError(FeedpubError):
    """The issue does not exist, or is not in a state the action applies to."""


class NothingToCancel(HoldError):
    """Every delivery of the issue was already sent or failed: cancelling would change nothing."""


@dataclass(frozen=True)
class HoldChange:
    period: str
    state: HoldState | None        # after the change; None: sending
    rows: int                      # rows cancelled (cancel), or rows left to send (pause, resume)


def state(store: Store, issue_id: int) -> HoldState | None:
    with store.engine.connect() as conn:
        return conn.scalar(sa.select(issue_holds.c.state).where(issue_holds.c.issue_id == issue_id))


def states(store: Store) -> dict[int, HoldState]:
    """Every issue on hold → its state."""
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.select(issue_holds.c.issue_id, issue_holds.c.state)).all())


def reasons(store: Store) -> dict[str, str]:
    """The period of every issue the circuit breaker paused → why."""
    query = (sa.select(issues.c.period, issue_holds.c.reason).join(issues, issues.c.id == issue_holds.c.issue_id)
             .where(issue_holds.c.state == "paused", issue_holds.c.reason != "").order_by(issues.c.slot))
    with store.engine.connect() as conn:
        return dict(conn.execute(query).all())


def pause(store: Store, period: str) -> HoldChange:
    with store.writing() as conn:
        issue_id = _issue_id(conn, store, period)
        _refuse(conn, issue_id, period, {"paused": "hold_already_paused", "cancelled": "hold_was_cancelled"})
        _hold(conn, issue_id, "")
        return HoldChange(period, "paused", _unsent(conn, issue_id))


def trip(store: Store, issue_id: int, reason: str) -> bool:
    """Pause the issue for `reason` (the circuit breaker, `feedpub.send.breaker`); False if it was on hold
    already (paused by the operator meanwhile, or cancelled)."""
    with store.writing() as conn:
        if conn.scalar(sa.select(issue_holds.c.state).where(issue_holds.c.issue_id == issue_id)) is not None:
            return False
        _hold(conn, issue_id, reason)
        return True


def put_back(store: Store, issue_id: int, delivery_ids: set[int]) -> set[int]:
    """Rows the circuit breaker found refused by a sending problem (deferred: such a refusal never fails or
    suppresses anyone): queued again, to wait for `digest resume`. Returns the rows put back (a row whose
    outcome is not written yet is not: the caller asks again once it is)."""
    with store.writing() as conn:
        return set(conn.scalars(deliveries.update().where(
            deliveries.c.issue_id == issue_id, deliveries.c.id.in_(sorted(delivery_ids)),
            deliveries.c.status == "deferred").values(
                status="queued", next_attempt_at=None, claimed_by=None, claimed_until=None, updated_at=utcnow())
            .returning(deliveries.c.id)))


def _hold(conn: sa.Connection, issue_id: int, reason: str) -> None:
    conn.execute(issue_holds.insert().values(issue_id=issue_id, state="paused", since=utcnow(), reason=reason))
    # Rows a sender claimed but has not started are taken back: it marks a row `sending` only while
    # it still holds the claim, so only the messages already on their way go out.
    conn.execute(deliveries.update().where(deliveries.c.issue_id == issue_id,
                                           deliveries.c.status.in_(("queued", "deferred")),
                                           deliveries.c.claimed_by.is_not(None))
                 .values(claimed_by=None, claimed_until=None))


def resume(store: Store, period: str) -> HoldChange:
    with store.writing() as conn:
        issue_id = _issue_id(conn, store, period)
        found = conn.scalar(sa.select(issue_holds.c.state).where(issue_holds.c.issue_id == issue_id))
        if found != "paused":
            raise HoldError(message("hold_not_paused_was_cancelled" if found else "hold_not_paused", period=period))
        conn.execute(issue_holds.delete().where(issue_holds.c.issue_id == issue_id))
        return HoldChange(period, None, _unsent(conn, issue_id))


def cancel(store: Store, period: str) -> HoldChange:
    """Hold the issue for good and mark its unsent rows cancelled (a paused issue can be cancelled).
    NothingToCancel, and nothing changed, when no row is left to send."""
    now = utcnow()
    with store.writing() as conn:
        issue_id = _issue_id(conn, store, period)
        _refuse(conn, issue_id, period, {"cancelled": "hold_already_cancelled"})
        if not _unsent(conn, issue_id):
            raise NothingToCancel(message("hold_nothing_to_cancel", period=period))
        conn.execute(issue_holds.delete().where(issue_holds.c.issue_id == issue_id))
        conn.execute(issue_holds.insert().values(issue_id=issue_id, state="cancelled", since=now))
        # A row `sending` under a live lease is left to its sender, which marks its outcome; one left by a
        # process that died is ended with the rest.
        unsent = sa.or_(deliveries.c.status.in_(("queued", "deferred")), sa.and_(
            deliveries.c.status == "sending",
            sa.or_(deliveries.c.claimed_until.is_(None), deliveries.c.claimed_until <= now)))
        ended = conn.execute(deliveries.update().where(deliveries.c.issue_id == issue_id, unsent)
                             .values(status="cancelled", last_reply=CANCELLED_REPLY, next_attempt_at=None,
                                     claimed_by=None, claimed_until=None, updated_at=now)).rowcount
        return HoldChange(period, "cancelled", ended)


def retry_now(store: Store, period: str) -> int:
    """Make the issue's deferred rows due at once (the next claim takes them); returns how many."""
    with store.writing() as conn:
        issue_id = _issue_id(conn, store, period)
        return conn.execute(deliveries.update()
                            .where(deliveries.c.issue_id == issue_id, deliveries.c.status == "deferred")
                            .values(next_attempt_at=utcnow())).rowcount


def _issue_id(conn: sa.Connection, store: Store, period: str) -> int:
    found = conn.scalar(sa.select(issues.c.id).where(issues.c.period == period))
    if found is None:
        raise HoldError(message("hold_no_issue", store=store.shown, period=repr(period)))
    return found


def _refuse(conn: sa.Connection, issue_id: int, period: str, refusals: dict[str, str]) -> None:
    """HoldError with the words (problems.toml's key in `refusals`) of the hold the issue already has."""
    found = conn.scalar(sa.select(issue_holds.c.state).where(issue_holds.c.issue_id == issue_id))
    if found in refusals:
        raise HoldError(message(refusals[found], period=period))


def _unsent(conn: sa.Connection, issue_id: int) -> int:
    return conn.scalar(sa.select(sa.func.count()).select_from(deliveries).where(
        deliveries.c.issue_id == issue_id, deliveries.c.status.in_(("queued", "sending", "deferred")))) or 0
