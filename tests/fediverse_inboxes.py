"""Fediverse instances for the tests and the bench: one Starlette app on many ports of 127.0.0.1 (one instance
per port, told apart by the Host header), whose inboxes verify each request's HTTP Signature against the keys
of the store's accounts and record what they received; an instance can be told to answer 500, 410 or too late."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from feedpub.fediverse import signatures


@dataclass
class Inboxes:
    keys: Mapping[str, str]                          # keyId → public key PEM
    received: list[tuple[str, str, dict]] = field(default_factory=list)   # (instance, path, activity)
    refused: list[str] = field(default_factory=list)  # why a request was refused (401)
    faults: dict[str, str] = field(default_factory=dict)   # instance → "500" | "410" | "slow" | "400"
    slow_for: float = 2.0
    last_at: float = 0.0                             # time.time() of the last request answered

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/_stats", self.stats, methods=["GET"]),
                                 Route("/{path:path}", self.receive, methods=["POST"])])

    async def stats(self, request: Request) -> JSONResponse:
        """How many requests were taken and refused, and when the last was answered (for the bench)."""
        return JSONResponse({"received": len(self.received), "refused": len(self.refused), "last": self.last_at})

    async def receive(self, request: Request) -> Response:
        body = await request.body()
        headers = {name.lower(): value for name, value in request.headers.items()}
        instance = headers["host"]
        try:
            claimed = signatures.claim(headers)
            signatures.verify(claimed, "POST", str(request.url), headers, body, self.keys[claimed.key_id])
        except (signatures.BadSignature, KeyError) as exc:
            self.refused.append(f"{instance}: {exc}")
            self.last_at = time.time()
            return Response("bad signature", status_code=401)
        fault = self.faults.get(instance)
        if fault == "slow":
            await asyncio.sleep(self.slow_for)
        elif fault:
            return Response(f"fault {fault}", status_code=int(fault))
        self.received.append((instance, request.url.path, json.loads(body)))
        self.last_at = time.time()
        return Response(status_code=202)

    def at(self, instance: str) -> list[dict]:
        return [activity for where, _, activity in self.received if where == instance]


def listening(count: int) -> list[socket.socket]:
    """`count` sockets listening on free ports of 127.0.0.1."""
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        sockets.append(sock)
    return sockets


@contextmanager
def serving_ports(app: Starlette, count: int) -> Iterator[list[int]]:
    """`app` served by one uvicorn server on `count` free ports of 127.0.0.1, until the block ends."""
    sockets = listening(count)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield [sock.getsockname()[1] for sock in sockets]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        for sock in sockets:
            sock.close()
