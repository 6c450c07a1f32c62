"""A tiny remote fediverse server for tests, on 127.0.0.1: actors with their own RSA keys (made here with
`cryptography`, requests signed with apsig, not with feedpub's signing code), each actor document served, and
an inbox that records what it is sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
from apsig.draft import Signer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.conftest import serving


@dataclass
class RemoteActor:
    server: str
    name: str
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537,
                                                                                   key_size=2048))

    @property
    def id(self) -> str:
        return f"{self.server}/users/{self.name}"

    @property
    def key_id(self) -> str:
        return self.id + "#main-key"

    @property
    def public_pem(self) -> str:
        return self.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def document(self) -> dict[str, Any]:
        return {"@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
                "id": self.id, "type": "Person", "preferredUsername": self.name, "inbox": self.id + "/inbox",
                "endpoints": {"sharedInbox": self.server + "/inbox"},
                "publicKey": {"id": self.key_id, "owner": self.id, "publicKeyPem": self.public_pem}}

    def post(self, url: str, activity: dict[str, Any] | bytes, *, key: rsa.RSAPrivateKey | None = None,
             key_id: str | None = None, date: datetime | None = None, signed: bool = True) -> httpx.Response:
        """POST `activity` to `url`, signed draft-cavage as Mastodon signs (by this actor's key unless told)."""
        body = activity if isinstance(activity, bytes) else json.dumps(activity).encode()
        headers = {"Content-Type": "application/activity+json"}
        if signed:
            headers = Signer(headers={"date": format_datetime(date or datetime.now(UTC), usegmt=True), **headers},
                             private_key=key or self.key, method="POST", url=url, key_id=key_id or self.key_id,
                             body=body).sign()
            headers.pop("Authorization", None)
        return httpx.post(url, content=body, headers=headers, timeout=30)


class RemoteServer:
    """Actors `ann` and `bob` at http://127.0.0.1:PORT; `received` holds (path, headers, body) of each inbox POST."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.port = port
        self.actors = {name: RemoteActor(self.base, name) for name in ("ann", "bob")}
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.fetched: list[tuple[str, dict[str, str]]] = []      # (path, headers) of each actor GET
        self.arrived = threading.Condition()
        self.app = Starlette(routes=[Route("/users/{name}", self._actor, methods=["GET"]),
                                     Route("/users/{name}/inbox", self._inbox, methods=["POST"]),
                                     Route("/inbox", self._inbox, methods=["POST"])])

    async def _actor(self, request: Request) -> Response:
        self.fetched.append((request.url.path, {k.lower(): v for k, v in request.headers.items()}))
        found = self.actors.get(request.path_params["name"])
        if found is None:
            return Response(status_code=410)
        return JSONResponse(found.document(), media_type="application/activity+json")

    async def _inbox(self, request: Request) -> Response:
        body = await request.body()
        with self.arrived:
            self.received.append((request.url.path, {k.lower(): v for k, v in request.headers.items()}, body))
            self.arrived.notify_all()
        return Response(status_code=202)

    def wait_for(self, count: int, seconds: float = 20) -> list[tuple[str, dict[str, str], bytes]]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.received) >= count, seconds), self.received
            return list(self.received)


@contextmanager
def remote_server(port: int) -> Iterator[RemoteServer]:
    server = RemoteServer(port)
    with serving(server.app, port):
        yield server


POSTS = {
    "2025-12-01-hello.md": """\
        ---
        title: Hello fediverse
        date: 2025-12-01 09:00:00 +0900
        categories: [news]
        tags: [intro]
        ---
        The first post, in English.
        """,
    "2025-12-16-ai.md": """\
        ---
        title: 推論性能35%向上
        date: 2025-12-16 04:49:25 +0000
        categories: [AI, news, 国内]
        ---
        **推論性能35%**向上しました。
        """,
}


@contextmanager
def served_blog(site: Any, port: int, *, store_url: str = "", extra: str = "", language: str = "en",
                public_scheme: str = "http") -> Iterator[tuple[str, Any]]:
    """The site (POSTS, title and description, categories as accounts) served by feedpub's web app on `port` with
    `[activitypub]` on, keys fetched from 127.0.0.1 allowed unless `extra` says otherwise: (base URL, store).
    With `public_scheme="https"`, web.public_url says https, as behind a proxy that ends TLS."""
    from feedpub.store import open_store
    from feedpub.web.app import create_app
    from tests.conftest import emptied

    for name, text in POSTS.items():
        site.post(name, text)
    base = f"http://127.0.0.1:{port}"
    store_line = f'[store]\nurl = "{store_url}"\n' if store_url else ""
    site.configure(f'[web]\npublic_url = "{public_scheme}://127.0.0.1:{port}"\n'
                   '[activitypub]\nenabled = true\ncategories = true\n'
                   f'{extra or "allow_private_addresses = true"}\n{store_line}',
                   description="AIのニュースと分析", icon="/icon.png", language=language)
    store = open_store(site.config.store_url)
    if store_url:
        emptied(store)
    app = create_app(site.config, store, send_confirmation=lambda *mail: None, topics=lambda: [], health=dict)
    with serving(app, port):
        yield base, store
    store.engine.dispose()
