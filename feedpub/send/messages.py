"""Digest e-mail messages: built once per variant, personalised per recipient by splicing bytes.

`message_template` builds the MIME skeleton with the `email` package once. Both bodies are
quoted-printable, encoded once in static segments around the link markers of `feedpub.send.issue`; per
recipient only the links (and To, Date, Message-ID, List-Unsubscribe) are encoded and joined in —
no template render and no EmailMessage build per recipient. With `[smtp.dkim]`, every message is signed;
the static pieces are canonicalised for it once, with the template (`feedpub.send.dkim`).

Header values come only from cleaned text (`digest.header_text`) and validated addresses, so a CR or LF
in a title or a name can never start a new header.
"""

from __future__ import annotations

import binascii
import html
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.charset import Charset
from email.header import Header
from email.headerregistry import Address, AddressHeader
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, formataddr, getaddresses, quote
from functools import lru_cache
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from feedpub import tokens
from feedpub.config import Config
from feedpub.errors import ConfigError
from feedpub.send import verp
from feedpub.send.dkim import Signer, signer
from feedpub.send.issue import PREFERENCES_MARKER, UNSUBSCRIBE_MARKER, Variant, header_text

# A guard, not the address check (that is `feedpub.addresses`, run where addresses enter the store or the
# config): what goes into a To header is plain ASCII without whitespace or header syntax, so it can never
# break the header. email-validator per recipient would cost ~54 µs a message.
_HEADER_SAFE = re.compile(r"^[!#-'*+\-/-9=?A-Z^-~]+(\.[!#-'*+\-/-9=?A-Z^-~]+)*@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*$")
_TEXT_BODY = "feedpubtextbody5d0c9a1e"
_HTML_BODY = "feedpubhtmlbody5d0c9a1e"
_CRLF = b"\r\n"
_UTF8 = Charset("utf-8")
_MAX_NAME = 150
_SOFT_BREAK = b"=\r\n"
_QP_LINE = 76                                  # longest quoted-printable line (RFC 2045)


class MailPolicy(EmailPolicy):
    """The SMTP policy, except for a non-ASCII Subject (encoded with `email.header.Header`) and display
    name (see `format_address`): Python 3.11's folder drops or adds spaces between encoded words
    (gh-92081)."""

    def fold(self, name: str, value: str) -> str:
        if not str(value).isascii():
            if name.lower() == "subject":
                return f"{name}: {encode_words(str(value), name, self.linesep)}{self.linesep}"
            if isinstance(value, AddressHeader) and len(value.addresses) == 1:
                address = value.addresses[0]
                return f"{name}: {format_address(address.display_name, address.addr_spec)}{self.linesep}"
        return super().fold(name, value)

    def fold_binary(self, name: str, value: str) -> bytes:
        if not str(value).isascii() and (name.lower() == "subject" or isinstance(value, AddressHeader)):
            return self.fold(name, value).encode("ascii")
        return super().fold_binary(name, value)


POLICY = MailPolicy(linesep="\r\n", max_line_length=78)


def encode_words(text: str, header_name: str, linesep: str = "\r\n") -> str:
    """RFC 2047 encoded words, folded at 76 characters, decoding back to exactly `text`."""
    return Header(text, "utf-8", header_name=header_name).encode(maxlinelen=76, linesep=linesep)


def format_address(name: str, address: str) -> str:
    """`Name <address>` with the name cleaned of line breaks and, when not ASCII, in one encoded word.

    One word although RFC 2047 caps a word at 75 characters: Python 3.11's address parser inserts a
    space between adjacent encoded words of a display name, so a split name would not read back as
    written. The cut keeps the header line far below the 998-octet limit."""
    if not _HEADER_SAFE.match(address):
        raise ValueError(f"{address!r} is not a plain ASCII e-mail address")
    name = header_text(name)[:_MAX_NAME]
    return formataddr((name, address), charset=_UTF8) if name else address


@dataclass(frozen=True)
class _Slot:
    """A per-recipient value inside a body: which link, and whether it goes into HTML."""

    marker: str
    in_html: bool


class MessageTemplate:
    """One variant's message, ready to personalise. Built by `message_template`."""

    def __init__(self, header: bytes, body: tuple[bytes | _Slot, ...], tz: ZoneInfo, unsubscribe_mailto: str,
                 signing: Signer | None) -> None:
        self._header = header                                  # the fields every recipient shares
        self._body = body
        self._tz = tz
        self._mailto = unsubscribe_mailto
        self._signing = signing
        # Every piece ends a line (`_body_chunks`), so each canonicalises on its own (`feedpub.send.dkim`).
        self._canonical = tuple(signing.canonical_piece(piece) if isinstance(piece, bytes) else piece
                                for piece in self._body) if signing else ()
        self._canonical_header = signing.canonical_fields(header) if signing else []

    def render(self, *, to_email: str, to_name: str, unsubscribe_url: str, preferences_url: str,
               message_id: str) -> bytes:
        """The complete message for one recipient, CRLF line endings, DKIM-signed when configured."""
        for value in (unsubscribe_url, preferences_url, message_id):
            if not value.isascii() or not value.isprintable() or " " in value:
                raise ValueError(f"{value!r} is not a header-safe ASCII value")
        links = {UNSUBSCRIBE_MARKER: unsubscribe_url, PREFERENCES_MARKER: preferences_url}
        encoded = {_Slot(marker, in_html): _qp(html.escape(url) if in_html else url) + _SOFT_BREAK
                   for marker, url in links.items() for in_html in (False, True)}
        unsubscribe = f"<{unsubscribe_url}>" + (f",\r\n <{self._mailto}>" if self._mailto else "")
        own = (f"To: {format_address(to_name, to_email)}\r\n"
               f"Date: {format_datetime(datetime.now(self._tz))}\r\n"
               f"Message-ID: {message_id}\r\n"
               f"List-Unsubscribe: {unsubscribe}\r\n").encode("ascii")
        message = b"".join([own, self._header, _CRLF, *(encoded[piece] if isinstance(piece, _Slot) else piece
                                                         for piece in self._body)])
        if not self._signing:
            return message
        canonical = {slot: self._signing.canonical_piece(value) for slot, value in encoded.items()}
        body_hash = self._signing.body_hash(canonical[piece] if isinstance(piece, _Slot) else piece
                                            for piece in self._canonical)
        return self._signing.signature(self._signing.canonical_fields(own) + self._canonical_header,
                                       body_hash) + message


def message_template(config: Config, variant: Variant, *, period: str, test_copy: bool = False) -> MessageTemplate:
    """Build the message skeleton for `variant` of the issue `period` once; `render()` it per recipient."""
    subject = header_text(("[TEST] " if test_copy else "") + variant.subject)
    message = EmailMessage(policy=POLICY)
    message["From"] = _from_address(config)
    message["Subject"] = subject
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["Feedback-ID"] = feedback_id(config, period)
    message.set_content(_TEXT_BODY, charset="utf-8", cte="quoted-printable")
    message.add_alternative(_HTML_BODY, subtype="html", charset="utf-8", cte="quoted-printable")
    skeleton = message.as_bytes(policy=POLICY)
    header, before_text = skeleton.split(_CRLF + _CRLF, 1)
    before_text, rest = before_text.split(_TEXT_BODY.encode(), 1)
    between, after_html = rest.split(_HTML_BODY.encode(), 1)
    list_id = f"List-Id: {_list_id(config)}\r\n".encode("ascii")
    body = [before_text, *_body_chunks(variant.text, in_html=False), between,
            *_body_chunks(variant.html, in_html=True), after_html]
    return MessageTemplate(list_id + header + _CRLF, tuple(_merge(body)), config.site.tz,
                           _unsubscribe_mailto(config), signer(config))


def test_copy(config: Config, variant: Variant, period: str, to_email: str, subscriber_id: int | None) -> bytes:
    """A copy of one variant marked [TEST], made out to `to_email`. A subscriber's copy carries their own
    links; anyone else's the generic pages that say to use the links of one's own mail."""
    public = config.web.public_url.rstrip("/")
    return message_template(config, variant, period=period, test_copy=True).render(
        to_email=to_email, to_name="",
        unsubscribe_url=unsubscribe_url(config, subscriber_id) if subscriber_id else f"{public}/unsubscribe",
        preferences_url=preferences_url(config, subscriber_id) if subscriber_id else f"{public}/preferences",
        message_id=new_message_id(config, period))


def feedback_id(config: Config, period: str) -> str:
    """`2025-12-15-0900:digest:blog.example.com`: the issue, the kind of mail and the sender, as the big
    mailbox providers' feedback loops (Gmail's Feedback-ID) report complaints per campaign."""
    return f"{period}:digest:{_site_host(config)}"


def unsubscribe_url(config: Config, subscriber_id: int) -> str:
    """The one-click unsubscribe link (RFC 8058) of one subscriber."""
    token = tokens.make_token(config.web.secret(), "unsubscribe", subscriber_id)
    return f"{config.web.public_url.rstrip('/')}/unsubscribe/{token}"


def preferences_url(config: Config, subscriber_id: int) -> str:
    token = tokens.make_token(config.web.secret(), "preferences", subscriber_id)
    return f"{config.web.public_url.rstrip('/')}/preferences/{token}"


def new_message_id(config: Config, issue_period: str) -> str:
    """A fresh Message-ID for a test copy or a notice. Random, so a test copy never shares an ID with the real
    message (Gmail drops a second message with a known ID)."""
    return f"<{issue_period}.{secrets.token_hex(12)}@{_sender_domain(config)}>"


def delivery_message_id(config: Config, issue_period: str, email: str) -> str:
    """The Message-ID of a delivery: fresh, and signed for its reader (`verp.message_id`), so a complaint
    quoting it without a VERP tag is still known to be about mail feedpub sent them."""
    return verp.message_id(config.web.secret(), issue_period, email, _sender_domain(config))


def notice(config: Config, to_email: str, subject: str, text: str) -> bytes:
    """A one-off plain-text message to one reader (the subscription confirmation), DKIM-signed when
    configured."""
    message = EmailMessage(policy=POLICY)
    message["From"] = _from_address(config)
    message["To"] = format_address("", to_email)
    message["Subject"] = header_text(subject)
    message["Date"] = format_datetime(datetime.now(config.site.tz))
    message["Message-ID"] = new_message_id(config, "notice")
    message.set_content(text, charset="utf-8", cte="quoted-printable")
    signing = signer(config)
    return signing.sign(message.as_bytes()) if signing else message.as_bytes()


def _from_address(config: Config) -> Address:
    return _parse_from(config.digest.from_, str(config.source))


@lru_cache(maxsize=8)
def _parse_from(value: str, source: str) -> Address:
    """Parsed once: every Message-ID names the sender's domain."""
    found = getaddresses([value])
    name, address = found[0] if len(found) == 1 else ("", "")
    # `digest.from` was checked as an address when the config loaded; this guards the header only.
    if not _HEADER_SAFE.match(address) or header_text(value) != value.strip():
        raise ConfigError(f"{source}: 'digest.from': {value!r} has no plain e-mail address "
                          "(expected e.g. 'ALLFORCES編集部 <news@blog.example.com>')")
    return Address(display_name=header_text(name), addr_spec=address)


def _unsubscribe_mailto(config: Config) -> str:
    """`web.unsubscribe_mailto` as a mailto: URI ("" when unset); an address gets "?subject=unsubscribe"."""
    value = config.web.unsubscribe_mailto.strip()
    if not value:
        return ""
    uri = value if value.startswith("mailto:") else f"mailto:{value}?subject=unsubscribe"
    address = uri.removeprefix("mailto:").split("?", 1)[0]
    if not _HEADER_SAFE.match(address) or not uri.isascii() or not uri.isprintable() or " " in uri or ">" in uri:
        raise ConfigError(f"{config.source}: 'web.unsubscribe_mailto': {value!r} is not an e-mail address "
                          "(expected e.g. 'unsubscribe@blog.example.com')")
    return uri


def _sender_domain(config: Config) -> str:
    return _from_address(config).domain


def _list_id(config: Config) -> str:
    """`Title <digest.blog.example.com>` (RFC 2919): the site title as the phrase, the id from its host."""
    host = _site_host(config)
    title = header_text(config.site.title)
    phrase = f'"{quote(title)}"' if title.isascii() else encode_words(title, "List-Id")
    return f"{phrase} <digest.{host}>" if title else f"<digest.{host}>"


def _site_host(config: Config) -> str:
    return (urlsplit(config.site.url).hostname or "localhost").encode("idna").decode("ascii")


def _body_chunks(body: str, *, in_html: bool) -> list[bytes | _Slot]:
    """`body` quoted-printable encoded around the link markers, each static segment ending in a soft
    line break so a spliced value starts on its own line and no line exceeds 76 characters."""
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    pattern = f"({re.escape(UNSUBSCRIBE_MARKER)}|{re.escape(PREFERENCES_MARKER)})"
    chunks: list[bytes | _Slot] = []
    for index, piece in enumerate(re.split(pattern, body)):
        if index % 2:
            chunks.append(_Slot(piece, in_html))
        elif piece:
            chunks.append(_qp(piece) + _SOFT_BREAK)
    return chunks


def _qp(text: str) -> bytes:
    """Quoted-printable with CRLF line ends and no line that starts with "." (written "=2E" instead):
    soft breaks often fall before one (`line-height:1.4`), and SMTP would then have to dot-stuff, that is
    copy, every 30 KB message once more on its way out."""
    encoded = binascii.b2a_qp(text.encode("utf-8"), istext=True)
    if not encoded.startswith(b".") and b"\n." not in encoded:
        return encoded.replace(b"\n", _CRLF)
    lines: list[bytes] = []
    for line in encoded.split(b"\n"):
        while line.startswith(b"."):
            line = b"=2E" + line[1:]
            if len(line) <= _QP_LINE:
                break
            cut = _QP_LINE - 1                     # room for the soft break's "="
            escape = line.rfind(b"=", cut - 2, cut)
            cut = escape if escape != -1 else cut  # never split an "=XX" escape
            lines.append(line[:cut] + b"=")
            line = line[cut:]
        lines.append(line)
    return _CRLF.join(lines)


def _merge(chunks: list[bytes | _Slot]) -> list[bytes | _Slot]:
    merged: list[bytes | _Slot] = []
    for chunk in chunks:
        if isinstance(chunk, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += chunk
        else:
            merged.append(chunk)
    return merged
