"""Signs read from mail that is no standard report: auto-replies (RFC 3834 and what vacation, out-of-office
and challenge-response systems add), the look of a mail system's bounce, the recipients GNU Mailman's
`flufl.bounce` detectors find in the bounces of common MTAs, and status codes written in the text."""

from __future__ import annotations

import logging
import re
from email.errors import HeaderParseError
from email.header import Header, decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from email.utils import parseaddr

from flufl.bounce import all_failures

from feedpub.addresses import BadAddress, mailable

log = logging.getLogger(__name__)
# flufl.bounce logs a traceback for every detector a hostile message trips (and re-raises, which `failures`
# handles): one line in our log is enough.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)

# The text of a bounce that is read for codes and words: its start says why (an attached 20 MB message
# adds nothing).
_TEXT_LIMIT = 64 * 1024
_MAIL_SYSTEM = re.compile(r"^(mailer-daemon|post_?master|mail-daemon|mailerdaemon|mail\.delivery|"
                          r"mdaemon|mail-delivery-system|microsoftexchange[0-9a-f]*)$", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery status notification|delivery (status )?fail|failure notice|returned mail|"
    r"mail delivery (failed|failure|subsystem|problem)|could not be delivered|non-?delivery|nondeliverable|"
    r"delivery (has )?failed|delayed mail|delivery delayed|warning: could not send|not delivered|"
    r"message you sent .*(blocked|rejected)|配信(不能|エラー|に失敗)|届きませんでした|送信エラー|エラー通知", re.I)
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
# A status is no part of a longer dotted number: "SMSSMTP 4.1.5.31", "[64.4.15.110]", "X-StarScan-Version: 5.5.9.1".
_CODE_AND_STATUS = re.compile(r"\b([245]\d\d)[\s\-]+#?([245]\.\d{1,3}\.\d{1,3})\b(?!\.?\d)")
_LONE_STATUS = re.compile(r"(?<![\d.])([45]\.\d{1,3}\.\d{1,3})\b(?!\.\d)")
_BARE_CODE = re.compile(r"(?:said|error|reply|response|replied|answer|returned|code|smtp)[:;\s]*\(?([45][0-5]\d)\b"
                        r"|^\s*([45][0-5]\d)[\s\-:]+\S", re.I | re.M)
_MESSAGE_ID = re.compile(r"^\s*(?:Message-ID|In-Reply-To|References|X-Original-Message-ID):"
                         r"\s*<?([^\s<>]+@[^\s<>]+?)>?\s*$", re.I | re.M)
# A header line of a quoted message: its ids and dates hold dotted numbers ("Message-Id: <5.0.2.1.0.2001…>")
# that are no status.
_QUOTED_HEADER = re.compile(r"^\s*(?:Message-ID|In-Reply-To|References|Received|Date|X-[\w-]+)\s*:", re.I)
_SENDER_LINE = re.compile(r"^\s*(?:From|Sender|Reply-To|Return-Path):(.*)$", re.I | re.M)
_RCPT_TO = re.compile(r"RCPT TO:\s*<?([^\s<>@]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,})", re.I)
_COPY_MARKER = re.compile(r"^(?:-+ ?(this is a copy of (the|your) message|below this line is a copy of the message|"
                          r"original message|returned message|the header of the original message is following)\b|"
                          r"\s*below is a copy of the original message\b).*$", re.I | re.M)
# Addresses a bounce's words name that are never the failed recipient ("please contact <support@isp>").
_ROLE = re.compile(r"^(postmaster|post_master|mailer-daemon|support|help|abuse|admin|no-?reply)@", re.I)
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
    """The Subject, its encoded words decoded ("=?UTF-8?B?…?=" → "不在のお知らせ"); raw 8-bit bytes (a
    Japanese carrier writes "メールエラー通知" unencoded, in UTF-8 or Shift_JIS) and raw ISO-2022-JP are
    decoded as `decoded` guesses."""
    subject = message.get("Subject", "")
    value = header_text(subject)
    if isinstance(subject, Header):
        return value
    try:
        return str(make_header(decode_header(value)))
    except (HeaderParseError, LookupError, UnicodeDecodeError):
        return value


def header_text(value: str | Header) -> str:
    """A header value as `email` (compat32) gives it — a `Header` of raw 8-bit bytes, or a string with
    them as surrogates, or raw ISO-2022-JP — decoded: a Japanese server's Diagnostic-Code or Subject in its
    own charset."""
    if isinstance(value, Header):
        return "".join(decoded(part, None) if isinstance(part, bytes) else part for part, _ in decode_header(value))
    if value.isascii() and "\x1b" not in value:
        return value
    return decoded(value.encode("ascii", "surrogateescape"), None)


def decoded(data: bytes, charset: str | None) -> str:
    """Text in the charset it declares, else the one it is in: ISO-2022-JP by its escapes, UTF-8 if valid,
    then Shift_JIS (Microsoft's cp932, a superset) and EUC-JP, the legacy charsets of Japanese mail, and
    Latin-1 for the rest. A declared charset that is unknown or that the bytes contradict is guessed too."""
    if charset and _known_charset(charset):
        try:
            return data.decode(charset)
        except UnicodeDecodeError:
            pass
    if b"\x1b$" in data or b"\x1b(" in data:
        return data.decode("iso-2022-jp", "replace")
    for guess in ("utf-8", "cp932", "euc-jp"):
        try:
            return data.decode(guess)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def returned_in_text(text: str) -> Message | None:
    """The headers of the message a plain-text bounce copies below its explanation (Exim's "------ This is
    a copy of the message, including all the headers. ------", qmail's "--- Below this line is a copy of
    the message.", Gmail's "----- Original message -----"), or None."""
    marker = _COPY_MARKER.search(text)
    if marker is None:
        return None
    return HeaderParser().parsestr(text[marker.end():].lstrip("\r\n"), headersonly=True)


def failed_in_text(text: str, senders: set[str]) -> list[str]:
    """The recipient a mail system's own words name when no detector knew its format: the address of an
    SMTP transcript's "RCPT TO:" (Apache James, Sendmail, Courier), else the one address its text names
    other than `senders` (a Japanese carrier's notice lists the address alone, in <…>)."""
    marker = _COPY_MARKER.search(text)
    words = text[:marker.start()] if marker else text      # not the copy of the message it returns
    rcpt = [a for a in dict.fromkeys(m[1] for m in _RCPT_TO.finditer(words)) if a.lower() not in senders]
    if rcpt:
        return rcpt
    others = [a for a in addresses_in(words) if a.lower() not in senders and not _ROLE.match(a)]
    return others if len(others) == 1 else []


def quoted_message_ids(text: str) -> set[str]:
    """The Message-IDs a bounce's text quotes ("Message-ID:<…@host>"): they look like addresses, and some
    detectors take them for failed recipients."""
    return {match[1].lower() for match in _MESSAGE_ID.finditer(text)}


def quoted_senders(text: str) -> set[str]:
    """The senders a bounce's text quotes from the message it returns (From:, Sender:, Reply-To:,
    Return-Path:), which some detectors take for failed recipients."""
    return {address.lower() for line in _SENDER_LINE.finditer(text) for address in addresses_in(line[1])}


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
        text = decoded(data[:_TEXT_LIMIT - size], part.get_content_charset())
        if part.get_content_type() == "text/html":
            text = re.sub(r"<[^>]*>", " ", text)
        pieces.append(text)
        size += len(data)
        if size >= _TEXT_LIMIT:
            break
    return "\n".join(pieces)


def status_in(text: str, near: str = "") -> tuple[str | None, str | None]:
    """(enhanced status, the words around it) written in `text`, preferring a line that names `near`
    (the recipient); a bare reply code gives its class ("550" → "5.0.0"). The words are the paragraph the
    status stands in, because MTAs fold a reply over lines: Exim writes "SMTP error … after MAIL FROM:" on
    the line above the code and Postfix continues "Recipient address rejected: …" on the line below."""
    lines = [line if not _QUOTED_HEADER.match(line) else "" for line in text.splitlines()]
    order = sorted(range(len(lines)), key=lambda i: near.lower() not in lines[i].lower()) if near \
        else range(len(lines))   # stable: the recipient's lines first
    success: tuple[str, str] | None = None    # "250 2.1.5 … Recipient ok" of a transcript: only if nothing failed
    for pattern, group in ((_CODE_AND_STATUS, 2), (_LONE_STATUS, 1)):
        for i in order:
            match = pattern.search(lines[i])
            if match and match[group].startswith("2"):
                success = success or (match[group], _paragraph(lines, i))
            elif match:
                return match[group], _paragraph(lines, i)
    for i in order:
        match = _BARE_CODE.search(lines[i])
        if match:
            code = match[1] or match[2]
            return f"{code[0]}.0.0", _paragraph(lines, i)
    return success or (None, None)


def words_about(text: str, address: str) -> str | None:
    """The paragraph of `text` that names `address`, when it writes no status: OpenSMTPD's report lists
    "x@example.org: Domain does not exist" and nothing else says why."""
    lines = [line if not _QUOTED_HEADER.match(line) else "" for line in text.splitlines()]
    named = (i for i, line in enumerate(lines) if address and address.lower() in line.lower())
    at = next(named, None)
    return _paragraph(lines, at) if at is not None else None


def _paragraph(lines: list[str], at: int) -> str:
    """The lines around `at` up to the blank lines before and after it (at most three above and three below),
    joined into one line of at most 500 characters."""
    start = at
    while start > 0 and at - start < 3 and lines[start - 1].strip():
        start -= 1
    end = at + 1
    while end < len(lines) and end - at <= 3 and lines[end].strip():
        end += 1
    return " ".join(line.strip() for line in lines[start:end])[:500]


def _readable_parts(message: Message) -> list[Message]:
    if not message.is_multipart():
        # A multipart message whose boundary was lost (a parameter on an unindented line, as Verizon's
        # gateway writes it) reaches us as one string: its text is the bounce's text.
        return [message] if message.get_content_maintype() in ("text", "multipart") else []
    found: list[Message] = []
    for part in message.get_payload():
        if not isinstance(part, Message) or part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            continue
        # A multipart part whose boundary was lost (a parameter written on an unindented line, as Apache
        # James does) reaches us as one string: its text is still the bounce's text.
        broken = part.get_content_maintype() == "multipart" and not part.is_multipart()
        found += _readable_parts(part) if part.is_multipart() else \
            [part] if broken or part.get_content_type() in ("text/plain", "text/html") else []
    return found


def _known_charset(name: str | None) -> bool:
    try:
        "".encode(name or "utf-8")
    except LookupError:
        return False
    return True


def _addresses(found: frozenset[bytes] | set[bytes]) -> list[str]:
    """The addresses in what flufl.bounce's detectors return. A detector that matches a format it does not
    know returns the text around an address (a JSON notification gave '"bounce":{… "emailAddress":"x@y"'):
    the addresses written in such a text are taken instead of the text."""
    addresses: set[str] = set()
    for value in found:
        text = value.decode("utf-8", "replace").strip().strip("<>")
        addresses |= {text} if _is_address(text) else {a for a in addresses_in(text) if _is_address(a)}
    return sorted(addresses)


def _is_address(text: str) -> bool:
    try:
        mailable(text)
    except BadAddress:
        return False
    return True
