"""Each account's RSA key pair: made once (2048 bits, as Mastodon's), kept in the store's `fediverse_keys`
table, read back by every process that signs for the account (the daemon, `feedpub worker`s)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KEY_BITS = 2048
# The account whose key signs the server's own GETs (remote actors' keys): a name no username or slug can be.
INSTANCE = "@instance"


@dataclass(frozen=True)
class KeyPair:
    account: str
    private_pem: str
    public_pem: str

    @cached_property
    def private_key(self) -> rsa.RSAPrivateKey:
        key = serialization.load_pem_private_key(self.private_pem.encode("ascii"), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key


def new_key_pair(account: str) -> KeyPair:
    """A fresh pair for `account`: PKCS#8 private PEM, SubjectPublicKeyInfo public PEM (`publicKeyPem`)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode("ascii")
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")
    return KeyPair(account, private, public)
