"""Signs read from mail that is no standard report: auto-replies (RFC 3834 and what vacation, out-of-office
and challenge-response systems add), the look of a mail system's bounce, the recipients GNU Mailman's
`flufl.bounce` detectors find in the bounces of common MTAs, and status codes written in the text."""

from __future__ import annotations

import logging
import re
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from email.utils import parseaddr

from flufl.bounce import all_failures

log = logging.getLogger(__name__)
# flufl.bounce logs a traceback for every detector a hostile message trips (and re-raises, which `failures`
# handles): one line in our log is enough.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)

# The text of a bounce that is read for codes and words: its start says why (an attached 20 MB message
# adds nothing).
_TEXT_LIMIT = 64 * 1024
_MAIL_SYSTEM = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon|mail\.delivery|"
                          r"mdaemon|mail-delivery-system|microsoftexchange[0-9a-f]*)$", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery status notification|delivery (status )?fail|failure notice|returned mail|"
    r"mail delivery (failed|failure|subsystem|problem)|could not be delivered|non-?delivery|nondeliverable|"
    r"delivery (has )?failed|delayed mail|delivery delayed|warning: could not send|not delivered|"
    r"message you sent .*(blocked|rejected)|配信(不能|エラー|に失敗)|届きませんでした|送信エラー", re.I)
_AUTO_SUBJECT = re.compile(
    r"^\s*(\[?auto(matic|matische)?[ -]?(reply|response|antwort|r[ée]ponse)|auto:|ooo\b|out of (the )?office|"
    r"away from (the|my) office|on vacation|vacation|abwesen|absence|r[ée]ponse automatique|"
    r"respuesta autom|risposta autom|automatisch antwoord|resposta autom|fuera de la oficina|autosvar|"
    r"【?自動(応答|返信)|不在)|\b(out of (the )?office|autoreply|auto-reply|autoresponder|auto reply)\b|"
    r"自動(応答|返信)|不在の", re.I)
_CHALLENGE = re.compile(r"please confirm (your|that you|this)|verify (your|that you)|sender verification|"
                        r"approve (your|this) (e-?mail|message)|challenge|spam ?arrest|boxbe|mailblocks|"
                        r"requires? (verification|authentication)", re.I)
_CHALLENGE_HEADERS = ("X-Challenge", "X-Challenge-Response", "X-Boxbe-Request", "X-SpamArrest")
_AUTO_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Auto-Reply", "X-Vacation")
# An SMTP reply with an enhanced status ("550 5.1.1", "550-5.1.1", "#5.1.1"), a lone enhanced status, or a
# bare reply code where a server's words are quoted.
_CODE_AND_STATUS = re.compile(r"\b([245]\d\d)[\s\-]+#?([245]\.\d{1,3}\.\d{1,3})\b")
_LONE_STATUS = re.compile(r"(?:#|\(|\b)([45]\.\d{1,3}\.\d{1,3})\b")
_BARE_CODE = re.compile(r"(?:said|error|reply|response|replied|answer|returned|code|smtp)[:;\s]*\(?([45][0-5]\d)\b"
                        r"|^\s*([45][0-5]\d)[\s\-:]+\S", re.I | re.M)
_ADDRESS = re.compile(r"<?([A-Za-z0-9._%+\-=#!$&'*/?^`{|}~]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,})>?")


def auto_reply(message: Message) -> str | None:
    """Why `message` is an automatic reply (vacation, out of office, challenge-response), or None."""
    auto = str(message.get("Auto-Submitted", "")).split(";")[0].strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    if str(message.get("Precedence", "")).strip().lower() == "auto_reply":
        return "Precedence: auto_reply"
    for name in _AUTO_HEADERS:
        if message.get(name) is not None:
            return f"{name} header"
    subject = subject_of(message)
    if _AUTO_SUBJECT.search(subject):
        return f"an automatic reply's subject: {subject.strip()[:80]!r}"
    sender = str(message.get("From", ""))
    if any(message.get(name) is not None for name in _CHALLENGE_HEADERS) or \
            str(message.get("X-Delivery-Agent", "")).upper().startswith("TMDA") or \
            _CHALLENGE.search(subject) or _CHALLENGE.search(sender):
        return "a challenge-response request"
    return None


def from_mail_system(message: Message) -> bool:
    """Whether `message` looks like a mail system's bounce: a daemon or postmaster sender, Exim's
    X-Failed-Recipients, or a non-delivery subject."""
    local = parseaddr(str(message.get("From", "")))[1].rsplit("@", 1)[0]
    return bool(_MAIL_SYSTEM.match(local) or message.get("X-Failed-Recipients") is not None
                or _BOUNCE_SUBJECT.search(subject_of(message)))


def subject_of(message: Message) -> str:
    """The Subject, its encoded words decoded ("=?UTF-8?B?…?=" → "不在のお知らせ")."""
    value = str(message.get("Subject", ""))
    try:
        return str(make_header(decode_header(value)))
    except (HeaderParseError, LookupError, UnicodeDecodeError):
        return value


def addresses_in(text: str) -> list[str]:
    """The addresses written in `text`, in order."""
    return list(dict.fromkeys(match[1] for match in _ADDRESS.finditer(text)))


def failures(message: Message) -> tuple[list[str], list[str]]:
    """(temporary, permanent) failing recipients that flufl.bounce's MTA detectors find."""
    try:
        temporary, permanent = all_failures(message)
    except Exception as exc:   # noqa: BLE001 - a detector tripping on a hostile message must not stop the rest
        log.debug("flufl.bounce could not read the message: %s", exc)
        return [], []
    return _addresses(temporary), _addresses(permanent)


def text_of(message: Message) -> str:
    """The human-readable text of a bounce (its text parts, not the message it returns), capped."""
    pieces: list[str] = []
    size = 0
    for part in _readable_parts(message):
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            continue
        text = data[:_TEXT_LIMIT - size].decode(part.get_content_charset() or "utf-8", "replace") \
            if _known_charset(part.get_content_charset()) else data[:_TEXT_LIMIT - size].decode("latin-1")
        if part.get_content_type() == "text/html":
            text = re.sub(r"<[^>]*>", " ", text)
        pieces.append(text)
        size += len(data)
        if size >= _TEXT_LIMIT:
            break
    return "\n".join(pieces)


def status_in(text: str, near: str = "") -> tuple[str | None, str | None]:
    """(enhanced status, the line that says it) written in `text`, preferring a line that names `near`
    (the recipient); a bare reply code gives its class ("550" → "5.0.0")."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if near:
        lines.sort(key=lambda line: near.lower() not in line.lower())   # stable: the recipient's lines first
    for pattern, group in ((_CODE_AND_STATUS, 2), (_LONE_STATUS, 1)):
        for line in lines:
            match = pattern.search(line)
            if match:
                return match[group], line[:500]
    for line in lines:
        match = _BARE_CODE.search(line)
        if match:
            code = match[1] or match[2]
            return f"{code[0]}.0.0", line[:500]
    return None, None


def _readable_parts(message: Message) -> list[Message]:
    if not message.is_multipart():
        return [message] if message.get_content_maintype() == "text" else []
    found: list[Message] = []
    for part in message.get_payload():
        if not isinstance(part, Message) or part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            continue
        found += _readable_parts(part) if part.is_multipart() else \
            [part] if part.get_content_type() in ("text/plain", "text/html") else []
    return found


def _known_charset(name: str | None) -> bool:
    try:
        "".encode(name or "utf-8")
    except LookupError:
        return False
    return True


def _addresses(found: frozenset[bytes] | set[bytes]) -> list[str]:
    return sorted({value.decode("utf-8", "replace").strip().strip("<>") for value in found if b"@" in value})
