"""A real SMTP server for tests: aiosmtpd in-process on 127.0.0.1, recording every accepted message and
injecting faults on demand. Use the `smtp_server` fixture (`from smtp_server import smtp_server_fixture`
in a test module) or `SMTPTestServer` directly.

    smtp_server.faults.refuse_connections = 2          # the next 2 connections get "421" and are closed
    smtp_server.faults.reject_rcpt.add("x@example.com")  # 550 at RCPT for this address
    smtp_server.faults.defer_rcpt["y@example.com"] = 1   # 451 at RCPT once
    smtp_server.faults.defer_data = 1                   # the next DATA gets 451 after the content
    smtp_server.faults.drop_data = 1                    # the next DATA: connection dropped before any reply
    smtp_server.faults.stall_data = 2.0                 # wait this long before answering each DATA
    smtp_server.pipelining = False                      # stop offering ESMTP PIPELINING (on by default)
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Faults:
    refuse_connections: int = 0
    reject_rcpt: set[str] = field(default_factory=set)
    defer_rcpt: dict[str, int] = field(default_factory=dict)
    defer_data: int = 0
    drop_data: int = 0
    stall_data: float = 0.0


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
            if address.lower() in {a.lower() for a in faults.reject_rcpt}:
                return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
            if faults.defer_rcpt.get(address, 0) > 0:
                faults.defer_rcpt[address] -= 1
                return f"451 4.3.0 <{address}>: Temporary lookup failure"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        faults = self.server.faults
        if faults.stall_data:
            await asyncio.sleep(faults.stall_data)
        with self.server.lock:
            if faults.drop_data > 0:
                faults.drop_data -= 1
                assert smtp.transport is not None
                smtp.transport.abort()      # gone before any reply: the client cannot know
                return "421 dropped"
            if faults.defer_data > 0:
                faults.defer_data -= 1
                return "451 4.3.0 Error: queue file write error"
            number = len(self.server.received) + 1
            self.server.received.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos),
                                                 bytes(envelope.original_content or b""),
                                                 getattr(session, "connection_number", 0)))
        return f"250 2.0.0 Ok: queued as Q{number:05d}"


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
        await super()._handle_client()


class _Controller(Controller):
    def __init__(self, server: SMTPTestServer, port: int) -> None:
        super().__init__(_Handler(server), hostname="127.0.0.1", port=port)
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

    def __init__(self) -> None:
        self.port = _free_port()
        self.faults = Faults()
        self.received: list[Received] = []
        self.connections = 0
        self.pipelining = True
        self.lock = threading.Lock()
        self._controller = _Controller(self, self.port)

    def start(self) -> SMTPTestServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(name="smtp_server")
def smtp_server_fixture() -> Iterator[SMTPTestServer]:
    """A started server; import `smtp_server_fixture` into a test module and ask for `smtp_server`."""
    server = SMTPTestServer().start()
    try:
        yield server
    finally:
        server.stop()
