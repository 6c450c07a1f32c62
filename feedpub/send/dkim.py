"""DKIM (RFC 6376): the signature on every outgoing message, and the keys to make it with.

rsa-sha256, relaxed/relaxed, over the headers of `SIGNED_HEADERS` that the message has. The signature is made
in two halves: dkimpy canonicalises and hashes (its canonicalisation functions, `hash_headers`, `fold`), OpenSSL
makes the RSA signature through `cryptography`. dkimpy's own `sign` is not used: its RSA is pure-Python `pow`,
7.4 ms a message against OpenSSL's 0.72 ms on the project's machine (bench/README.md), and OpenSSL lets go of
the GIL while it signs, so the claiming thread signs on one core while the sender loop runs on the other. dkimpy
stays the verifier in the tests.

A digest's 34 KB body is not canonicalised per reader either. Relaxed body canonicalisation works line by line,
so a body cut at line ends canonicalises piece by piece, as a header section cut between fields does:
`MessageTemplate` (`feedpub.send.messages`) keeps the canonical form of its static pieces and fields and
canonicalises only the reader's own (`canonical_piece`, `body_hash`, `canonical_fields`). Nothing else can be
shared: To, Date, Message-ID, List-Unsubscribe and the body's links differ per reader, so every message has
its own body hash and RSA signature.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Iterable
from pathlib import Path

from feedpub.config import Config, DkimConfig

# The headers signed (h=), those of them that the message has: the sender, the reader, what the message
# is, and the one-click unsubscribe that mailbox providers require of bulk mail to be authenticated. Each
# is named twice (RFC 6376 8.15, "oversigning"): a verifier then also hashes the absent second instance,
# so a header added on the way (a forged Subject above the real one, which many clients show) breaks
# the signature instead of riding along unsigned.
SIGNED_HEADERS = (b"from", b"to", b"subject", b"date", b"message-id", b"list-unsubscribe",
                  b"list-unsubscribe-post", b"mime-version", b"content-type")
_HEADER_NAME = b"DKIM-Signature"
_LINE = 72                   # longest line of the folded signature value (b=), as dkimpy folds
_TXT_STRING = 255            # longest character-string in a TXT record (RFC 1035 3.3)


class Signer:
    """Signs messages as `[smtp.dkim]` says."""

    def __init__(self, config: DkimConfig) -> None:
        # Imported here: dkimpy's import costs ~120 ms (dnspython) and cryptography's ~20 ms (-X importtime),
        # which a config without [smtp.dkim] never pays.
        import dkim
        import dkim.canonicalization
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, utils

        self._dkim = dkim
        self._relaxed = dkim.canonicalization
        self._policy = dkim.canonicalization.CanonicalizationPolicy(self._relaxed.Relaxed, self._relaxed.Relaxed)
        self._key = serialization.load_pem_private_key(config.private_key, password=None)
        self._padding = padding.PKCS1v15()
        self._prehashed = utils.Prehashed(hashes.SHA256())
        self._tags = b"v=1; a=rsa-sha256; c=relaxed/relaxed; d=%s; s=%s" % (config.domain.encode("ascii"),
                                                                            config.selector.encode("ascii"))

    def sign(self, message: bytes) -> bytes:
        """`message` (CRLF line endings) with its DKIM-Signature header in front; ValueError if it cannot
        be signed."""
        header, _, body = message.partition(b"\r\n\r\n")
        return self.signature(self.canonical_fields(header + b"\r\n"),
                              self.body_hash([self.canonical_piece(body)])) + message

    def canonical_fields(self, header: bytes) -> list[tuple[bytes, bytes]]:
        """The fields of `header` (CRLF-terminated header lines) in relaxed canonical form, in order; a
        header section cut between fields canonicalises part by part. ValueError if it is not header lines."""
        try:
            fields, _ = self._dkim.rfc822_parse(header + b"\r\n")
        except self._dkim.MessageFormatError as exc:
            raise ValueError(f"cannot DKIM-sign the message: {exc}") from exc
        return self._relaxed.Relaxed.canonicalize_headers(fields)

    def signature(self, fields: list[tuple[bytes, bytes]], body_hash: bytes) -> bytes:
        """The DKIM-Signature header field (CRLF-terminated) of a message whose header fields, as
        `canonical_fields` gives them, are `fields` and whose body hashes to `body_hash`; ValueError if it
        has no From."""
        present = {name for name, _ in fields}
        if b"from" not in present:
            raise ValueError("cannot DKIM-sign a message without a From header")
        signed = tuple(name for name in SIGNED_HEADERS if name in present for _ in range(2))
        tags = b"%s; t=%d; h=%s; bh=%s" % (self._tags, time.time(), b" : ".join(signed),
                                          base64.b64encode(body_hash))
        # b= on a line of its own, empty while hashed (RFC 6376 3.7): folding inside its value is then
        # whitespace a verifier removes with the value.
        value = b" " + self._dkim.fold(tags, namelen=len(_HEADER_NAME)) + b";\r\n b="
        hashed = hashlib.sha256()
        self._dkim.hash_headers(hashed, self._policy, fields, signed, (_HEADER_NAME, value), None)
        signature = base64.b64encode(self._key.sign(hashed.digest(), self._padding, self._prehashed))
        folded = b"\r\n ".join(signature[start:start + _LINE] for start in range(0, len(signature), _LINE))
        return _HEADER_NAME + b":" + value + folded + b"\r\n"

    def canonical_piece(self, piece: bytes) -> bytes:
        """`piece` of a message body, cut at line ends, in relaxed canonical form (RFC 6376 3.4.4) but for
        the empty lines at the body's end, which `body_hash` drops from the joined pieces."""
        return self._relaxed.compress_whitespace(self._relaxed.strip_trailing_whitespace(piece))

    def body_hash(self, canonical_pieces: Iterable[bytes]) -> bytes:
        """SHA-256 (bh=) of the body whose pieces, in order, `canonical_piece` made."""
        body = self._relaxed.strip_trailing_lines(b"".join(canonical_pieces))
        return hashlib.sha256(self._relaxed.correct_empty_body(body)).digest()


def signer(config: Config) -> Signer | None:
    """The signer of `config`; None when it has no `[smtp.dkim]`."""
    return Signer(config.smtp.dkim) if config.smtp.dkim.enabled else None


def new_key(bits: int) -> tuple[bytes, str]:
    """A new RSA key pair: the private key (PKCS#8 PEM) and the public key as DNS publishes it (p=)."""
    # Imported here, as in `Signer`: cryptography adds ~20 ms to the import of this module (-X importtime),
    # which every send loads; only keygen and signing need it.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, base64.b64encode(public).decode("ascii")


def write_private_key(path: Path, private: bytes) -> None:
    """Write `private` to a new file only its owner can read; FileExistsError if `path` exists (a key in
    use is never overwritten: mail signed with it would stop verifying)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private)


def dns_record(selector: str, domain: str, public: str) -> str:
    """`SELECTOR._domainkey.DOMAIN IN TXT "v=DKIM1; k=rsa; p=…" "…"` (without a domain, the name relative
    to the zone): the record text in strings of at most 255 characters, which DNS joins into one value."""
    value = f"v=DKIM1; k=rsa; p={public}"
    strings = " ".join(f'"{value[start:start + _TXT_STRING]}"' for start in range(0, len(value), _TXT_STRING))
    return f"{selector}._domainkey{'.' + domain if domain else ''} IN TXT {strings}"
