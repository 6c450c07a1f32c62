"""Fetching from other servers: remote actors and their keys, with a GET signed by our instance actor (instances
in "authorized fetch" mode answer only signed GETs), and only from public HTTPS addresses: the host is resolved
and every address it has must be global (no private, loopback, link-local, reserved or multicast address), so a
forged keyId cannot make the server probe its own network. `activitypub.allow_private_addresses` lifts that and
allows plain http (tests, private networks). Each fetch is bounded: FETCH_SECONDS in all, FETCH_BYTES of body,
no redirects followed. Keys are kept in memory (KEY_SECONDS, at most KEYS of them); a signature that fails with
a kept key is checked again with the key fetched anew (the actor may have a new one).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from feedpub.config import Config
from feedpub.fediverse import signatures, urls
from feedpub.fediverse.keys import KeyPair
from feedpub.fediverse.negotiation import ACTIVITY_JSON, LD_JSON

FETCH_SECONDS = 10.0
FETCH_BYTES = 1024 * 1024
KEY_SECONDS = 24 * 3600
KEYS = 10_000


class FetchRefused(Exception):
    """The address may not be fetched from, or did not answer with an actor or key; says why."""

    def __init__(self, message: str, *, gone: bool = False) -> None:
        super().__init__(message)
        self.gone = gone          # the server answered 410 Gone: the actor was deleted


@dataclass(frozen=True)
class RemoteKey:
    key_id: str
    owner: str               # the actor the key belongs to
    public_pem: str


@dataclass(frozen=True)
class RemoteActor:
    id: str
    inbox: str
    shared_inbox: str        # "" when it has none


async def check_address(url: str, *, allow_private: bool) -> None:
    """FetchRefused unless `url` is https (or http with allow_private) on a host whose every address is public
    (any address with allow_private)."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (allow_private and parts.scheme == "http"):
        raise FetchRefused(f"{url}: only https:// addresses are fetched from")
    if not parts.hostname:
        raise FetchRefused(f"{url}: no host")
    if allow_private:
        return
    try:
        found = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443,
                                                             type=socket.SOCK_STREAM)
    except OSError as exc:
        raise FetchRefused(f"{url}: host cannot be resolved ({exc})") from None
    for *_, address in found:
        ip = ipaddress.ip_address(address[0])
        if not ip.is_global or ip.is_multicast:
            raise FetchRefused(f"{url}: {parts.hostname} is at {ip}, a private or local address "
                               "(set activitypub.allow_private_addresses only for tests and private networks)")


class Remote:
    """Signed, bounded GETs of actors and keys, with the keys kept for a while."""

    def __init__(self, config: Config, instance_key: KeyPair, transport: httpx.AsyncBaseTransport | None = None
                 ) -> None:
        self.config = config
        self.instance_key = instance_key
        self.client = httpx.AsyncClient(transport=transport, follow_redirects=False,
                                        timeout=httpx.Timeout(FETCH_SECONDS))
        self._keys: OrderedDict[str, tuple[float, RemoteKey]] = OrderedDict()

    async def key(self, key_id: str, *, fresh: bool = False) -> RemoteKey:
        kept = self._keys.get(key_id)
        if kept and not fresh and time.monotonic() - kept[0] < KEY_SECONDS:
            return kept[1]
        document = await self.fetch(key_id.split("#", 1)[0])
        found = _key_in(document, key_id)
        self._keys[key_id] = (time.monotonic(), found)
        self._keys.move_to_end(key_id)
        while len(self._keys) > KEYS:
            self._keys.popitem(last=False)
        return found

    async def actor(self, actor_id: str) -> RemoteActor:
        document = await self.fetch(actor_id)
        inbox = document.get("inbox")
        endpoints = document.get("endpoints")
        shared = endpoints.get("sharedInbox") if isinstance(endpoints, dict) else None
        if document.get("id") != actor_id or not isinstance(inbox, str):
            raise FetchRefused(f"{actor_id}: not an actor with an inbox")
        return RemoteActor(actor_id, inbox, shared if isinstance(shared, str) else "")

    async def fetch(self, url: str) -> dict[str, Any]:
        """The JSON object at `url`, fetched with a GET signed as the instance actor."""
        allow = self.config.activitypub.allow_private_addresses
        await check_address(url, allow_private=allow)
        headers = {"Accept": f"{ACTIVITY_JSON}, {LD_JSON}",
                   **signatures.sign_request(self.instance_key, urls.instance_key_id(self.config), "GET", url)}
        try:
            body = await asyncio.wait_for(self._get(url, headers), FETCH_SECONDS)
        except (TimeoutError, httpx.HTTPError) as exc:
            raise FetchRefused(f"{url}: {type(exc).__name__} {exc}") from None
        try:
            document = json.loads(body)
        except ValueError:
            raise FetchRefused(f"{url}: not JSON") from None
        if not isinstance(document, dict):
            raise FetchRefused(f"{url}: not a JSON object")
        return document

    async def _get(self, url: str, headers: dict[str, str]) -> bytes:
        async with self.client.stream("GET", url, headers=headers) as answer:
            if answer.status_code in (404, 410):
                raise FetchRefused(f"{url}: {answer.status_code}", gone=answer.status_code == 410)
            if answer.status_code != 200:
                raise FetchRefused(f"{url}: answered {answer.status_code}")
            body = bytearray()
            async for chunk in answer.aiter_bytes():
                body += chunk
                if len(body) > FETCH_BYTES:
                    raise FetchRefused(f"{url}: more than {FETCH_BYTES} bytes")
            return bytes(body)

    async def close(self) -> None:
        await self.client.aclose()


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def _key_in(document: dict[str, Any], key_id: str) -> RemoteKey:
    """The key `key_id` in an actor document (its publicKey, one or a list) or a key document of its own."""
    keys = document.get("publicKey")
    candidates = keys if isinstance(keys, list) else [keys] if isinstance(keys, dict) else [document]
    for key in candidates:
        if isinstance(key, dict) and key.get("id") == key_id and isinstance(key.get("publicKeyPem"), str):
            owner = key.get("owner") or document.get("id")
            if not isinstance(owner, str):
                break
            if keys is not None and owner != document.get("id"):
                break        # an actor document may only vouch for its own keys
            if _origin(owner) != _origin(key_id):
                break        # nor a server for another's actors
            return RemoteKey(key_id, owner, key["publicKeyPem"])
    raise FetchRefused(f"{key_id}: no such public key in the document fetched")
