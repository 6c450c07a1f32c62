"""E-mail addresses: the one check of what feedpub can mail to or from (subscribers, `digest.from`,
reply and bounce addresses).

email-validator does the syntax (RFC 5322 / 5321, internationalised domains), without DNS look-ups. On
top of it: the local part holds at most 64 octets (RFC 5321 4.5.3.1.1, which email-validator does not
enforce), and the address must have an ASCII form, because digests go over plain SMTP without SMTPUTF8.
"""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

MAX_LOCAL_PART = 64


class BadAddress(ValueError):
    """Why a text is not an address feedpub can mail; the message is user-facing."""


def mailable(text: str) -> str:
    """The normalised ASCII form of `text` (domain lower-cased), or `BadAddress` saying what is wrong."""
    if not text.strip():
        raise BadAddress("empty e-mail address")
    try:
        valid = validate_email(text.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise BadAddress(f"{text.strip()!r} is not a valid e-mail address: {exc}") from None
    address = valid.ascii_email or valid.normalized
    local = address.rsplit("@", 1)[0]
    if len(local.encode("ascii")) > MAX_LOCAL_PART:
        raise BadAddress(f"{text.strip()!r} is not a valid e-mail address: the part before the @-sign has "
                         f"{len(local)} characters, more than the {MAX_LOCAL_PART} that RFC 5321 allows")
    return address
