"""The circuit breaker: when an issue's refusals say its sending is broken rather than its readers' addresses
dead, the issue is paused instead of retrying every reader until each one gives up.

A misconfigured relay (`554 5.7.1 <a@example.com>: Relay access denied` to every RCPT, `530 5.7.0
Authentication required` to every MAIL) refuses every reader with the same words, none of them about the
address; dead addresses are refused each in its own words (`550 5.1.1 <b@example.com>: User unknown`).
The breaker trips on
- the same reply, addresses taken out, refusing `STREAK` recipients in a row (fewer on a small issue), when
  that reply is not about the address (`feedpub.send.bounces.classify.refusal` says soft, the rule the sender
  and returned mail follow);
- a run's share of such refusals far above the share of failures the list usually has;
- an issue's complaint or hard-bounce rate (per message sent or refused) above `bounces.max_complaint_rate` or
  `bounces.max_bounce_rate`, once enough messages went out to judge.
Pure: `Breaker` is fed each outcome as the server answers and says when to trip and which rows to put back
(every row the run refused with a reply not about the address); `feedpub.send.delivery` does the I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from feedpub.send.bounces.classify import refusal

# The same reply for this many recipients in a row is a sending problem (or every row of a smaller issue,
# from SMALLEST rows up: one or two refusals say nothing).
STREAK = 10
SMALLEST = 3
# A run's share of refusals not about the address, over at least MIN_SAMPLE answers, this far above the
# list's usual share of failures.
MIN_SAMPLE = 20
FAR_ABOVE = 0.25
# Messages an issue has sent before its complaint and bounce rates are judged: one complaint out of ten is
# no rate.
RATE_SAMPLE = 100

_ADDRESS = re.compile(r"<[^<>\s]*>|[^\s<>\"']+@[^\s<>\"']+")
_SMTP_REFUSAL = re.compile(r"^5\d\d\b")


@dataclass(frozen=True)
class Trip:
    issue_id: int
    reason: str


def sending_refusal(reply: str) -> str | None:
    """A permanent SMTP refusal that is not about the address, with the addresses taken out (what a streak
    compares); None for anything else (a dead address, a deferral, a broken connection)."""
    if not _SMTP_REFUSAL.match(reply) or refusal(reply) == "hard":
        return None
    return _ADDRESS.sub("<>", reply).strip().lower()


def rates_trip(answered: int, complaints: int, hard_bounces: int, max_complaint_rate: float,
               max_bounce_rate: float) -> str | None:
    """Why an issue with these counts is paused (complaints or hard bounces per message answered, sent or
    refused as a dead address, above the line), or None; with fewer than RATE_SAMPLE answered, None. The
    refused count too: a relay that calls every address dead has sent nothing, and must still be stopped."""
    if answered < RATE_SAMPLE:
        return None
    if complaints / answered > max_complaint_rate:
        return (f"complaint rate {complaints / answered:.2%} ({complaints} of {answered} answered) is above "
                f"bounces.max_complaint_rate {max_complaint_rate:.2%}")
    if hard_bounces / answered > max_bounce_rate:
        return (f"hard-bounce rate {hard_bounces / answered:.2%} ({hard_bounces} of {answered} answered) is above "
                f"bounces.max_bounce_rate {max_bounce_rate:.2%}")
    return None


@dataclass
class _Issue:
    rows: int                                  # the issue's deliveries (a streak needs no more than these)
    pattern: str | None = None                 # the reply of the current streak
    streak: int = 0
    first_reply: str = ""
    answered: int = 0                          # sent, failed or refused this run
    refused: int = 0                           # refused this run with a reply not about the address
    dead: int = 0                              # refused this run as a dead address
    refused_rows: set[int] = field(default_factory=set)
    tripped: bool = False


class Breaker:
    """The refusals of one sending run, per issue. `usual_failures`: the share of the list's deliveries
    that failed before this run."""

    def __init__(self, usual_failures: float, max_bounce_rate: float = 1.0) -> None:
        self.usual_failures = usual_failures
        self.max_bounce_rate = max_bounce_rate
        self._issues: dict[int, _Issue] = {}
        self._returned: set[int] = set()

    def expect(self, issue_id: int, rows: int) -> None:
        """The run sends rows of `issue_id`, an issue of `rows` deliveries."""
        self._issues.setdefault(issue_id, _Issue(rows))

    def knows(self, issue_id: int) -> bool:
        return issue_id in self._issues

    def untripped(self) -> list[int]:
        return [issue_id for issue_id, issue in self._issues.items() if not issue.tripped]

    def observe(self, issue_id: int, delivery_id: int, status: str, reply: str) -> Trip | None:
        """One row's outcome; the trip it causes, once per issue."""
        issue = self._issues.setdefault(issue_id, _Issue(STREAK))
        # A 5xx not about the address is deferred (`feedpub.send.sender`), never failed: it counts here.
        pattern = sending_refusal(reply) if status in ("failed", "deferred") else None
        if status not in ("sent", "failed") and pattern is None:
            return None                        # 4xx deferrals retry by themselves; skipped rows were not tried
        issue.answered += 1
        if pattern is None:
            issue.pattern, issue.streak = None, 0
            if status != "failed" or not _SMTP_REFUSAL.match(reply) or issue.tripped:
                return None
            # Refused as a dead address: judged as it goes (the store's rates are read only every second,
            # and a relay that calls every address dead answers hundreds in that time).
            issue.dead += 1
            reason = rates_trip(issue.answered, 0, issue.dead, 1.0, self.max_bounce_rate)
            if reason is None:
                return None
            issue.tripped = True
            return Trip(issue_id, reason)
        issue.refused += 1
        issue.refused_rows.add(delivery_id)
        if pattern == issue.pattern:
            issue.streak += 1
        else:
            # Without its addresses: the reason is shown in /healthz and the dashboard.
            issue.pattern, issue.streak, issue.first_reply = pattern, 1, _ADDRESS.sub("<>", reply)
        if issue.tripped:
            return None
        if issue.streak >= max(SMALLEST, min(STREAK, issue.rows)):
            issue.tripped = True
            return Trip(issue_id, f"{issue.streak} recipients in a row refused with the same reply, which is not "
                                  f"about their addresses: {issue.first_reply}")
        share = issue.refused / issue.answered
        if issue.answered >= MIN_SAMPLE and share > self.usual_failures + FAR_ABOVE:
            issue.tripped = True
            return Trip(issue_id, f"{issue.refused} of {issue.answered} recipients refused with replies not about "
                                  f"their addresses ({share:.0%}; usually {self.usual_failures:.0%} fail), "
                                  f"e.g. {_ADDRESS.sub('<>', reply)}")
        return None

    def tripped(self, issue_id: int) -> None:
        """The issue was paused for another reason (its rates): what it refuses from now on is put back."""
        self._issues.setdefault(issue_id, _Issue(STREAK)).tripped = True

    def to_put_back(self) -> dict[int, set[int]]:
        """Issue → the rows this run refused with a reply not about the address, for each tripped issue,
        not yet put back."""
        return {issue_id: issue.refused_rows - self._returned for issue_id, issue in self._issues.items()
                if issue.tripped and issue.refused_rows - self._returned}

    def put_back(self, rows: set[int]) -> None:
        """These rows are queued again (their failure is no longer this run's)."""
        self._returned |= rows
