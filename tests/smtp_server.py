"""A real SMTP server for tests: aiosmtpd in-process on 127.0.0.1, recording every accepted message and
injecting faults on demand. Tests ask for the `smtp_server` fixture (conftest.py) or use `SMTPTestServer`
directly.

    smtp_server.faults.refuse_connections = 2          # the next 2 connections get "421" and are closed
    smtp_server.faults.stall_greeting = 3.0             # each new connection waits this long for its banner
    smtp_server.faults.reject_rcpt.add("x@example.com")  # 550 at RCPT for this address
    smtp_server.faults.defer_rcpt["y@example.com"] = 1   # 451 at RCPT once
    smtp_server.faults.rcpt_replies["z@example.com"] = ["452 4.2.2 Mailbox full", "553 5.1.3 Bad address"]
                                                        # scripted RCPT replies for an address, one per try
    smtp_server.faults.drop_rcpt = 1                    # the next RCPT: connection dropped (before DATA)
    smtp_server.faults.defer_data = 1                   # the next DATA gets 451 after the content
    smtp_server.faults.data_replies = ["452 4.3.1 Insufficient system storage"]   # the next DATAs' replies
    smtp_server.faults.drop_data = 1                    # the next DATA: message discarded, connection dropped
    smtp_server.faults.drop_data_kept = 1               # the next DATA: message kept, connection dropped
                                                        # before the 250 (the client cannot know it went out)
    smtp_server.faults.stall_data = 2.0                 # the next DATA: keep the message, answer this late
    smtp_server.faults.hold_data = True                 # keep each message but hold its 250 until set False
    smtp_server.pipelining = False                      # stop offering ESMTP PIPELINING (on by default)

TLS and AUTH: `SMTPTestServer(tls="starttls" | "ssl", cert=self_signed_cert(folder))` offers STARTTLS
(or speaks TLS from the first byte) with that certificate; `SMTPTestServer(users={"name": "password"})`
offers AUTH and answers 535 to any other credentials (with `auth_required=True`, 530 to a MAIL before
AUTH). `stop()` and `start()` again keep the port, for a server that is down for a while and comes back.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Faults:
    refuse_connections: int = 0
    stall_greeting: float = 0.0
    reject_rcpt: set[str] = field(default_factory=set)
    defer_rcpt: dict[str, int] = field(default_factory=dict)
    rcpt_replies: dict[str, list[str]] = field(default_factory=dict)
    drop_rcpt: int = 0
    defer_data: int = 0
    data_replies: list[str] = field(default_factory=list)
    drop_data: int = 0
    drop_data_kept: int = 0
    stall_data: float = 0.0
    hold_data: bool = False


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    connection: int           # which SMTP connection carried it

    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no CA signed (OpenSSL's command line): (cert.pem, key.pem)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


class _Handler:
    def __init__(self, server: SMTPTestServer) -> None:
        self.server = server

    async def handle_EHLO(self, smtp: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        # aiosmtpd reads commands one after another, so pipelined ones work; it just does not say so.
        return [responses[0], "250-PIPELINING", *responses[1:]] if self.server.pipelining else responses

    async def handle_RCPT(self, smtp: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        faults = self.server.faults
        with self.server.lock:
            if faults.drop_rcpt > 0:
                faults.drop_rcpt -= 1
                _abort(smtp)
                return "421 dropped"
            scripted = faults.rcpt_replies.get(address)
            if scripted:
                return scripted.pop(0)
            if address.lower() in {a.lower() for a in faults.reject_rcpt}:
                return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
            if faults.defer_rcpt.get(address, 0) > 0:
                faults.defer_rcpt[address] -= 1
                return f"451 4.3.0 <{address}>: Temporary lookup failure"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        faults = self.server.faults
        with self.server.lock:
            stall, faults.stall_data = faults.stall_data, 0.0
        if stall:
            await asyncio.sleep(stall)
        with self.server.lock:
            if faults.drop_data > 0:
                faults.drop_data -= 1
                _abort(smtp)                # gone before any reply: the client cannot know
                return "421 dropped"
            if faults.defer_data > 0:
                faults.defer_data -= 1
                return "451 4.3.0 Error: queue file write error"
            if faults.data_replies:
                return faults.data_replies.pop(0)
            number = len(self.server.received) + 1
            self.server.received.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos),
                                                 bytes(envelope.original_content or b""),
                                                 getattr(session, "connection_number", 0)))
            if faults.drop_data_kept > 0:
                faults.drop_data_kept -= 1
                _abort(smtp)                # kept, but the 250 never leaves
                return "421 dropped"
        while faults.hold_data:             # kept; the 250 waits (a client killed now never reads it)
            await asyncio.sleep(0.005)
        return f"250 2.0.0 Ok: queued as Q{number:05d}"


def _abort(smtp: SMTP) -> None:
    assert smtp.transport is not None
    smtp.transport.abort()


class _FaultySMTP(SMTP):
    def __init__(self, handler: Any, server: SMTPTestServer, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.test_server = server

    async def _handle_client(self) -> None:
        with self.test_server.lock:
            self.test_server.connections += 1
            assert self.session is not None
            self.session.connection_number = self.test_server.connections  # type: ignore[attr-defined]
            refuse = self.test_server.faults.refuse_connections > 0
            if refuse:
                self.test_server.faults.refuse_connections -= 1
        if refuse:
            await self.push("421 4.3.2 Service not available, try again later")
            assert self.transport is not None
            self.transport.close()
            return
        if self.test_server.faults.stall_greeting:
            await asyncio.sleep(self.test_server.faults.stall_greeting)
        await super()._handle_client()


class _Controller(Controller):
    def __init__(self, server: SMTPTestServer, port: int, **kwargs: Any) -> None:
        super().__init__(_Handler(server), hostname="127.0.0.1", port=port, **kwargs)
        self.test_server = server

    def factory(self) -> SMTP:
        return _FaultySMTP(self.handler, self.test_server, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        # The base class opens a probe connection; do not count it as a client.
        super()._trigger_server()
        with self.test_server.lock:
            self.test_server.connections = 0


class SMTPTestServer:
    host = "127.0.0.1"

    def __init__(self, *, tls: Literal["starttls", "ssl"] | None = None, cert: tuple[Path, Path] | None = None,
                 users: dict[str, str] | None = None, auth_required: bool = False) -> None:
        self.port = _free_port()
        self.faults = Faults()
        self.received: list[Received] = []
        self.connections = 0
        self.auth_attempts = 0
        self.pipelining = True
        self.lock = threading.Lock()
        self.users = users
        self._kwargs: dict[str, Any] = {}
        if tls:
            assert cert is not None, "TLS needs a certificate: self_signed_cert(folder)"
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*cert)
            self._kwargs = {"ssl_context": context} if tls == "ssl" else {"tls_context": context}
        if users is not None:
            # auth_required: MAIL before a successful AUTH gets "530 5.7.0 Authentication required".
            self._kwargs.update(authenticator=self._authenticate, auth_require_tls=False, auth_required=auth_required)
        self._controller: _Controller | None = None

    def start(self) -> SMTPTestServer:
        self._controller = _Controller(self, self.port, **self._kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def recipients(self) -> list[str]:
        """Every envelope recipient of every accepted message, in arrival order."""
        with self.lock:
            return [rcpt for msg in self.received for rcpt in msg.rcpt_tos]

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.received)} messages arrived, expected {count}")
            time.sleep(0.01)

    def _authenticate(self, smtp: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        with self.lock:
            self.auth_attempts += 1
        ok = (isinstance(auth_data, LoginPassword) and self.users is not None
              and self.users.get(auth_data.login.decode()) == auth_data.password.decode())
        return AuthResult(success=ok, handled=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


