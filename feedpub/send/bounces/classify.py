"""What a returned message is: a hard or soft bounce, a complaint, an automatic reply, or none of them,
with the recipients it is about, the status, the remote server's words, and why it was classified so.

Pure: bytes in, a `Bounce` out; nothing is looked up or written. In order:
1. a complaint report: Microsoft's JMRP, or ARF (RFC 5965) of type `abuse`, `fraud`, `virus`, `other`;
2. a delivery status notification (RFC 3464): by each recipient's Action and Status;
3. a mail system's bounce in its own words (Exim, qmail, Yahoo, old Exchange, …): flufl.bounce's
   detectors, else the addresses its words or the returned message name, and the status written in the
   text next to each address;
4. an automatic reply (RFC 3834 Auto-Submitted, Precedence: auto_reply, vacation and out-of-office
   subjects, challenge-response): never a bounce;
5. anything else: not a bounce.
A message beyond the bounds returned mail is read within (size, nesting, parts, report blocks), or one the
`email` package cannot read, is `unreadable`, with the reason: recorded, and never in the way of the rest.
Hard means permanent and about the address (5.1.1 unknown user, 5.1.10 null MX, a disabled mailbox);
soft is everything that may pass (4.x.x, a full mailbox, greylisting, content or reputation blocks that
are not about the address).
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import hashlib
import re
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from typing import Literal

from feedpub.send.bounces import heuristics, reports

Kind = Literal["hard", "soft", "complaint", "auto-reply", "not-a-bounce", "unreadable"]
KINDS: tuple[Kind, ...] = ("hard", "soft", "complaint", "auto-reply", "not-a-bounce", "unreadable")
# Bytes of a message that are parsed: a report says what it has to say in its first parts; a 20 MB
# attachment behind them adds nothing but time.
PARSE_LIMIT = 1024 * 1024
# A larger message is no returned mail of ours (a digest is ~100 KB; Gmail clips HTML past 102 KB): it is
# unreadable, unparsed. Sources read at most SIZE_LIMIT + 1 bytes of a message, so memory stays bounded.
SIZE_LIMIT = 10 * 1024 * 1024
# Bounds on the structure that is parsed, counted in the bytes before the `email` package sees them: it
# recurses once per nested multipart or message/* part (3,000 levels raise RecursionError), and
# flufl.bounce reads every line of every part (100,000 one-line parts: 30 s). Each part needs a
# Content-Type line or a boundary line, at the start of a line ("\r" alone ends lines too). The 153 real
# messages of the flufl.bounce and bounce_email test sets and our fixtures have at most 8 and 16.
_LINE_START = rb"(?:^|(?<=\r))"
_BOUNDS = (("multipart or message/* parts", 50, re.compile(
               _LINE_START + rb"content-type:[ \t]*(?:(?:\r\n|\r|\n)[ \t]+)*(?:multipart|message)/", re.I | re.M)),
           ("MIME boundary lines", 500, re.compile(_LINE_START + rb"--", re.M)))
_COMPLAINT_TYPES = ("abuse", "fraud", "virus", "other")
_FULL = re.compile(r"mailbox (is |was )?full|over ?quota|quota\s+(exceeded|exceed|full)|exceeded (its |the |their )?"
                   r"(storage|quota|allotted)|insufficient (system )?storage|mailbox size limit|out of storage|"
                   r"storage allocation|disk full|too many messages in|is full|容量", re.I)
_NOT_THE_ADDRESS = re.compile(r"gr[ae]y ?list|try (again )?later|temporar|deferred|please retry|spam|blocked|"
                              r"block ?list|black ?list|reputation|rate limit|too many|throttl|dmarc|\bspf\b|dkim|"
                              r"policy|content|suspicious|unsolicited|bulk|message rejected|too (big|large)|"
                              r"size exceeds|message size|virus|malware|\blisted\b|\brbl\b|spamhaus|dnsbl|spamcop|"
                              r"sorbs|barracuda|hop count|mail loop|routing loop|loops back|too many hops|"
                              r"sender verify|callout|not permitted", re.I)
_NO_SUCH_ADDRESS = re.compile(
    r"(user|address(ee)?|recipient|host|domain) unknown|no such (user|recipient|mailbox|address|account|domain)|"
    r"non-?existent (user|recipient|mailbox|address|account|domain)|"
    # Postfix's check_recipient_access REJECT, Exchange Online's directory check (5.4.1): the site refuses
    # this very address. (A relay's "Relay access denied" refuses us: `_NOT_THE_RECIPIENT`.)
    r"recipient address rejected: access denied|"
    r"does ?n[o']t exist|not exist|unknown (user|recipient|address(ee)?|mailbox|alias|host|domain)|"
    r"invalid (recipient|mailbox|address|user)|"
    r"mailbox (not found|unavailable|does not exist|disabled|inactive)|"
    r"no mailbox|account (has been |is |was )?(disabled|closed|deactivated|inactive|suspended|"
    r"terminated|expired)|not a valid (recipient|mailbox|user|address)|unrouteable|unroutable|user not found|"
    r"recipientnotfound|domain (not found|does not exist)|host (or domain name )?not found|"
    r"nxdomain|null mx|does not accept mail|bad destination|address not found|doesn't have an? .{1,40} account|"
    r"no longer (active|available|valid|in use)|not listed in|unknown or illegal alias|user (account )?expired|"
    r"invalid final delivery userid|recipient name is not recognized|宛先.{0,10}(存在|不明)|存在しません", re.I)
# Refusals of the sender or of the sending server, not of the recipient: the stage of the SMTP dialogue
# (Exim's "SMTP error from remote mail server after MAIL FROM:" or "after initial connection:", Postfix's
# "(in reply to MAIL FROM command)") or the words; "550 Unroutable sender address" is no unknown user, and a
# relay that wants SMTP authentication refuses the sending server.
_NOT_THE_RECIPIENT = re.compile(r"after (MAIL FROM|initial connection|HELO|EHLO)\b|in reply to (MAIL FROM|HELO|EHLO)\b|"
                                r"\bsender (address|domain)|reverse dns|\bptr record|\brdns\b|your (ISP|IP)\b|"
                                r"\bSMTP authentication|relay(ing)? (access )?(denied|through)|not permitted to relay",
                                re.I)
# A mailbox that exists but refuses us for now or by its owner's choice (Facebook's "RCP-P2 … Refused due
# to recipient preferences", a recipient's block list, Gmail's "550 5.2.1 The user you are trying to contact
# is receiving mail at a rate that prevents additional messages"): the address is alive, whatever the status.
_REFUSED_BY_RECIPIENT = re.compile(r"recipient('s)? preferences|blocked by (the )?recipient|recipient has blocked|"
                                   r"receiving mail at a rate", re.I)
# A refusal of the message once its recipients were accepted ("550 Protocol violation (in reply to DATA
# command)") is about the message, unless its words say the address does not exist.
_AT_DATA = re.compile(r"(in reply to|after) (end of )?DATA\b", re.I)
# A failure that calls itself temporary, without a status to say so: Postfix's "Name service error for
# domain …: Host not found, try again" is DNS's TRY_AGAIN, not a domain that does not exist.
_TEMPORARY = re.compile(r"not\s+found,\s+try\s+again|temporar(y|ily)\s+(failure|error|suspended|unavailable)", re.I)
_REPLY_CODE = re.compile(r"\b([45])\d\d\b")
# RFC 3463 subjects and details that are about the address itself (5.4.6, a routing loop, is not).
_ADDRESS_STATUSES = re.compile(r"^5\.1\.(\d+)$|^5\.2\.1$|^5\.4\.[14]$|^5\.1\.10$")
# …and those that are not, whatever the class: full mailbox, message too big, expired in a queue, a loop.
_PASSING_STATUSES = re.compile(r"^5\.2\.[23]$|^5\.3\.[14]$|^5\.4\.[567]$|^5\.1\.[78]$")


@dataclass(frozen=True)
class Bounce:
    kind: Kind
    recipients: tuple[str, ...]   # the addresses it is about, as the report writes them
    status: str | None            # "5.1.1"
    diagnostic: str | None        # the remote server's words
    why: str                      # which rule decided, for `feedpub bounces show`
    message_key: str              # the same message read twice has the same key: its Message-ID, else a hash
    feedback_id: str | None       # the Feedback-ID of the message it returns (names our issue)


def read_message(raw: bytes) -> Message:
    """The message, parsed within the bounds; `reports.Unreadable` names the bound it passes."""
    if len(raw) > SIZE_LIMIT:
        raise reports.Unreadable(f"larger than {SIZE_LIMIT // 1024 // 1024} MiB (expected returned mail, "
                                 f"which is never that big)")
    head = raw[:PARSE_LIMIT]
    for what, limit, pattern in _BOUNDS:
        count = sum(1 for _ in pattern.finditer(head))
        if count > limit:
            raise reports.Unreadable(f"{count} {what} (at most {limit} are read)")
    return email.message_from_bytes(head, policy=email.policy.compat32)


def classify(raw: bytes) -> Bounce:
    try:
        return _classified(raw)
    except reports.Unreadable as exc:
        reason = str(exc)
    except Exception as exc:  # noqa: BLE001 - whatever trips the `email` package or a detector on one message
        reason = f"{type(exc).__name__} while reading it: {exc}"[:300]   # must not stop the messages behind it
    key = message_key(BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw[:PARSE_LIMIT]), raw)
    return Bounce("unreadable", (), None, None, f"unreadable: {reason}", key, None)


def _classified(raw: bytes) -> Bounce:
    message = read_message(raw)
    key = message_key(message, raw)
    returned = reports.returned_headers(message)
    feedback_id = _header(returned, "Feedback-ID") if returned is not None else None

    def found(kind: Kind, recipients: list[str] | tuple[str, ...], status: str | None, diagnostic: str | None,
              why: str) -> Bounce:
        return Bounce(kind, tuple(dict.fromkeys(recipients)), status, diagnostic, why, key, feedback_id)

    if returned is not None and returned.get("X-HmXmrOriginalRecipient"):
        # Microsoft's complaint report (JMRP) is no ARF: the reported message, as delivered, names its reader.
        return found("complaint", _header_addresses(returned, "X-HmXmrOriginalRecipient"), None,
                     "complaint report (Microsoft JMRP)", "Microsoft JMRP report: X-HmXmrOriginalRecipient")
    # Some feedback loops wrap their report in multipart/mixed, or leave out report-type: the
    # message/feedback-report part is what makes it one.
    feedback = reports.feedback_report(message)
    if feedback is not None:
        recipients = feedback.recipients or tuple(_to_addresses(returned))
        agent = f" from {feedback.user_agent}" if feedback.user_agent else ""
        if feedback.feedback_type in _COMPLAINT_TYPES:
            return found("complaint", recipients, None, f"feedback report: {feedback.feedback_type}{agent}",
                         f"ARF report, Feedback-Type: {feedback.feedback_type}")
        return found("not-a-bounce", recipients, None, None,
                     f"ARF report of type {feedback.feedback_type or 'none'}: not a complaint")

    statuses = reports.delivery_status(message)
    if statuses:
        failing = [s for s in statuses if _failed(s)]
        if not failing:
            actions = sorted({s.action for s in statuses})
            return found("not-a-bounce", [s.address for s in statuses], None, None,
                         f"delivery status notification: {', '.join(actions)} (not a failure)")
        text = heuristics.text_of(message)
        # The report's own words for each recipient come with the human-readable part's paragraph about it:
        # only there does Postfix say at which stage the server refused ("(in reply to MAIL FROM command)").
        said = {s.address: heuristics.status_in(text, s.address)[1] or heuristics.words_about(text, s.address)
                for s in failing}
        hard = [s for s in failing if not s.action.startswith("delay")
                and severity(s.status, " ".join(filter(None, (s.diagnostic, said[s.address])))) == "hard"]
        chosen = hard[0] if hard else failing[0]
        kind: Kind = "hard" if hard else "soft"
        action = chosen.action or "no action"
        diagnostic = chosen.diagnostic or said[chosen.address]
        mailed = {a.lower() for a in _to_addresses(returned)}
        return found(kind, [_mailed_address(s, mailed) for s in (hard or failing)], chosen.status, diagnostic,
                     f"delivery status notification: {action}, status {chosen.status or 'none'}")

    text = heuristics.text_of(message)
    reason = heuristics.auto_reply(message)
    system = heuristics.from_mail_system(message)
    temporary, permanent = heuristics.failures(message) if system or not reason else ([], [])
    rejected = reports.rejected_recipients(message)
    if temporary or permanent or system or rejected or statuses is not None:
        # The bounce's own addresses (the mail system, our return path) are never the failed recipient.
        ours = {a.lower() for h in ("From", "To", "Delivered-To", "Return-Path") for a in _header_addresses(message, h)}
        ours |= heuristics.quoted_message_ids(text)
        detected = [a for a in permanent or temporary or _header_addresses(message, "X-Failed-Recipients")
                    or rejected or reports.header_recipients(message) if a.lower() not in ours]
        # A quoted sender is a recipient only when the detector found nothing else: a list's bounce for a
        # reader who also posted to it.
        senders = heuristics.quoted_senders(text)
        recipients = [a for a in detected if a.lower() not in senders] or detected
        copied = returned if returned is not None else heuristics.returned_in_text(text)
        ours |= {a.lower() for h in ("From", "Return-Path", "Sender") for a in _header_addresses(copied, h)} \
            if copied is not None else set()
        if not recipients and system:
            recipients = heuristics.failed_in_text(text, ours)
        if not recipients and system and copied is not None:
            # A mail system's bounce that names no address returns the message it could not deliver: ours go
            # one recipient a message, so its To is the recipient.
            recipients = [a for _, a in email.utils.getaddresses([str(copied.get("To", ""))])
                          if "@" in a and a.lower() not in ours]
        status, diagnostic = heuristics.status_in(text, recipients[0] if recipients else "")
        if reason and not (recipients or status):   # an automatic reply that merely looks like a mail system's
            return found("auto-reply", [], None, None, f"automatic reply ({reason}): never a bounce")
        if status and status.startswith("2"):   # e.g. a provider's delivery notification: nothing failed
            return found("not-a-bounce", [], None, None, f"the only status written is a success ({status})")
        if not recipients and diagnostic:   # e.g. a truncated report: the address its text names
            recipients = [a for a in heuristics.addresses_in(diagnostic) if a.lower() not in ours][:1]

        def judged(status: str | None, diagnostic: str | None, about: list[str]) -> Kind:
            if _names_sender(diagnostic, ours, about):
                return "soft"
            if temporary and not permanent:
                return "soft"
            return severity(status, diagnostic or text)

        kind = judged(status, diagnostic, recipients)
        if len(recipients) > 1:
            # One bounce for several recipients (GMX, Exim): each by the words next to its own address; the
            # hard ones are what it is about.
            said = {a: heuristics.status_in(text, a) for a in recipients}
            hard = [a for a in recipients if judged(*said[a], [a]) == "hard"]
            kind = "hard" if hard else "soft"
            recipients = hard or recipients
            status, diagnostic = said[recipients[0]]
        how = "flufl.bounce found " + ("permanent" if permanent else "temporary") if permanent or temporary \
            else "a delivery agent's disposition notification (deleted)" if rejected \
            else "a mail system's non-delivery message"
        return found(kind, recipients, status, diagnostic, f"{how} failure, status {status or 'none'}")

    if reason:
        return found("auto-reply", [], None, None, f"automatic reply ({reason}): never a bounce")
    return found("not-a-bounce", [], None, None, "no report, no mail system's bounce, no automatic reply")


def refusal(reply: str) -> Literal["hard", "soft"]:
    """An SMTP server's refusal while we send ("550 5.1.1 <x>: User unknown"), judged by the rule returned
    mail is judged by: hard only when it is permanent and about the address."""
    status, _ = heuristics.status_in(reply)
    return severity(status, reply)


def severity(status: str | None, diagnostic: str | None) -> Literal["hard", "soft"]:
    """Hard when the failure is permanent and about the address; soft otherwise, and when it says neither
    its class nor what was wrong: a dead address is suppressed at once, so it takes evidence. Words are
    that evidence before a status is: many servers write 5.1.x (or 5.1.0, "other address status") for
    a refusal whose words name another cause (a block list, a rate, SPF, a loop), and 5.x.x other than
    the address statuses (5.5.x protocol, 5.6.x content, 5.3.x system) is never about the address."""
    words = diagnostic or ""
    if status is None:
        code = _REPLY_CODE.search(words)
        status = f"{code[1]}.0.0" if code else None
    if status is None:
        dead = _NO_SUCH_ADDRESS.search(words) and not (_NOT_THE_RECIPIENT.search(words) or _TEMPORARY.search(words))
        return "hard" if dead else "soft"
    if not status.startswith("5"):
        return "soft"
    if _PASSING_STATUSES.match(status) or _FULL.search(words) or _NOT_THE_RECIPIENT.search(words) \
            or _REFUSED_BY_RECIPIENT.search(words):
        return "soft"
    if _NO_SUCH_ADDRESS.search(words):
        return "hard"
    if status.startswith("5.7.") or _NOT_THE_ADDRESS.search(words) or _AT_DATA.search(words):
        return "soft"
    # 5.0.0 says only "permanent" (RFC 3463 "other undefined status"): without words about the address it
    # is counted, not taken for a dead address; so is any status that is not about the address.
    return "hard" if _ADDRESS_STATUSES.match(status) else "soft"


def _mailed_address(block: reports.RecipientStatus, mailed: set[str]) -> str:
    """The address a DSN block is about, as we mailed it. Original-Recipient is the address the sender gave
    (RFC 3464), so when a receiving site forwards or expands an alias it is still ours while Final-Recipient
    is the alias's target; in the real-bounce corpus 12 blocks carry both and they differed once, in a
    relayed report whose Original-Recipient was an intermediate alias and whose returned message was
    addressed to the Final one. So: the one the returned message's To names, else Original-Recipient, else
    Final-Recipient. (A VERP tag of ours, when present, names the delivery and beats both.)"""
    if block.final.lower() in mailed and block.address.lower() not in mailed:
        return block.final
    return block.address


def _names_sender(diagnostic: str | None, senders: set[str], recipients: list[str]) -> bool:
    """Whether the server's reply is about the sender: right after its code it names one of the bounce's
    own addresses or the returned message's sender, and no recipient ("550 5.7.0 <news@blog.example.com>...
    Please use the smtp server of your ISP")."""
    reply = _REPLY_CODE.search(diagnostic or "")
    if reply is None:
        return False
    named = {a.lower() for a in heuristics.addresses_in(diagnostic[reply.start():reply.start() + 120])}
    return bool(named & senders) and not named & {a.lower() for a in recipients}


def _failed(block: reports.RecipientStatus) -> bool:
    """A recipient the report says failed or is delayed; without an Action, one whose status is no success.
    OpenSMTPD (before 6.6) wrote "Action: error" for a failure."""
    if block.action:
        return block.action.startswith(("fail", "delay", "error"))
    return block.status is None or not block.status.startswith("2")


def message_key(message: Message, raw: bytes) -> str:
    """The Message-ID the mail system gave the bounce; a hash of its bytes when it has none."""
    message_id = (_header(message, "Message-ID") or "").strip().strip("<>")
    if message_id and len(message_id) < 300:
        return f"mid:{message_id}"
    return f"sha256:{hashlib.sha256(raw).hexdigest()}"


def _header(message: Message, name: str) -> str | None:
    value = message.get(name)
    return re.sub(r"\s+", " ", str(value)).strip() if value is not None else None


def _to_addresses(returned: Message | None) -> list[str]:
    return _header_addresses(returned, "To") if returned is not None else []


def _header_addresses(message: Message, name: str) -> list[str]:
    return [address for _, address in email.utils.getaddresses(message.get_all(name, [])) if "@" in address]
