"""DKIM (RFC 6376): the signature on every outgoing message, made by dkimpy, and the keys to make it with.

`Signer.sign` is the one call, on the final bytes of each message (digest, test copy, confirmation):
rsa-sha256, relaxed/relaxed, over the headers of `SIGNED_HEADERS` that the message has. The private key
comes from the config, which read and checked it once at load (`feedpub.config`).

Cost, measured (bench/README.md): ~10 ms of CPU a message, almost all of it inside dkimpy. Its RSA
signature is pure-Python `pow` (~7 ms for a 2048-bit key on the project's 2-core machine; OpenSSL takes
0.8 ms) and its relaxed body canonicalisation ~1 ms for a 34 KB digest. None of it can be done once per
variant: the signed headers (To, Date, Message-ID, List-Unsubscribe) and the body (its unsubscribe and
preferences links) differ per reader, so every message has its own body hash and RSA signature. Signing
runs where messages are built, in the claiming thread, off the sender loop's path; the sender waits for
signed messages, not the other way round. A pool of 2 signing processes was measured at 1.15x the
signing rate of one thread on the shared 2-core machine (106 against 93 messages/s; at most 2x on an idle
one), which does not change the order of magnitude, so there is none: the pool's lifecycle, shutdown on
SIGTERM and a copy of every message through a pipe would be cost without a gain that counts.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from feedpub.config import Config, DkimConfig

# The headers signed (h=), those of them that the message has: the sender, the reader, what the message
# is, and the one-click unsubscribe that mailbox providers require of bulk mail to be authenticated. Each
# is named twice (RFC 6376 8.15, "oversigning"): a verifier then also hashes the absent second instance,
# so a header added on the way (a forged Subject above the real one, which many clients show) breaks
# the signature instead of riding along unsigned.
SIGNED_HEADERS = (b"from", b"to", b"subject", b"date", b"message-id", b"list-unsubscribe",
                  b"list-unsubscribe-post", b"mime-version", b"content-type")
_TXT_STRING = 255            # longest character-string in a TXT record (RFC 1035 3.3)


class Signer:
    """Signs messages as `[smtp.dkim]` says."""

    def __init__(self, config: DkimConfig) -> None:
        # Imported here: dkimpy's import costs ~120 ms (dnspython; -X importtime), which a config without
        # [smtp.dkim] never pays.
        import dkim

        self._dkim = dkim
        self._domain = config.domain.encode("ascii")
        self._selector = config.selector.encode("ascii")
        self._key = config.private_key

    def sign(self, message: bytes) -> bytes:
        """`message` (CRLF line endings) with its DKIM-Signature header in front; ValueError if dkimpy
        cannot sign it."""
        try:
            signing = self._dkim.DKIM(message, linesep=b"\r\n")
            present = {name.lower() for name, _ in signing.headers}
            signature = signing.sign(self._selector, self._domain, self._key, canonicalize=(b"relaxed", b"relaxed"),
                                     include_headers=[name for name in SIGNED_HEADERS if name in present
                                                      for _ in range(2)])
        except self._dkim.DKIMException as exc:
            raise ValueError(f"cannot DKIM-sign the message: {exc}") from exc
        return signature + message


def signer(config: Config) -> Signer | None:
    """The signer of `config`; None when it has no `[smtp.dkim]`."""
    return Signer(config.smtp.dkim) if config.smtp.dkim.enabled else None


def new_key(bits: int) -> tuple[bytes, str]:
    """A new RSA key pair: the private key (PKCS#8 PEM) and the public key as DNS publishes it (p=)."""
    # Imported here: cryptography adds ~20 ms to the import of this module (-X importtime), which every
    # send loads; only keygen needs it.
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
