"""The SMTP fault matrix: `feedpub digest send` against a relay that fails in every way relays fail.

Every case runs the real command (click's CliRunner) on a real SQLite store and an aiosmtpd server that
injects one fault, then checks what an operator would see: the exit code, the state, attempts and next
attempt time of every delivery row (read from the store's SQLite file), that nothing is marked sent that
the server did not accept, and that later runs, once the fault clears and the backoff has passed, serve
every remaining reader exactly once. smtp.retry_base is 1 s and smtp.timeout 2 s, so waits stay short.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.send.sites import PASSWORD, READERS, Row, deliveries, feedpub, write_site
from tests.smtp_server import SMTPTestServer, self_signed_cert


def statuses(config: Path) -> dict[str, str]:
    return {email: row.status for email, row in deliveries(config).items()}


def assert_only_accepted_marked_sent(config: Path, server: SMTPTestServer) -> None:
    accepted = Counter(server.recipients())
    for email, row in deliveries(config).items():
        if row.status == "sent":
            assert accepted[email] >= 1, f"{email} marked sent but the server never accepted it"
            assert row.reply.startswith("250 ")


def wait_until_due(config: Path) -> None:
    """Sleep until the last deferred row may be retried."""
    retries = [row.next_attempt_at for row in deliveries(config).values() if row.status == "deferred"]
    if retries:
        time.sleep(max(0.0, (max(retries) - datetime.now(UTC)).total_seconds()) + 0.05)


def assert_backoff(row: Row, base: float = 1.0) -> None:
    """A deferred row waits retry_base × 2^(attempts − 1) from the moment it was deferred."""
    assert row.status == "deferred" and row.next_attempt_at is not None
    wait = (row.next_attempt_at - row.updated_at).total_seconds()
    assert wait == pytest.approx(base * 2 ** (row.attempts - 1), abs=0.25)


# -- the relay is unavailable: nothing goes out, nothing is lost, the fault clears, everyone gets one copy --

@dataclass(frozen=True)
class Unavailable:
    reply: str                                   # what the deferred row records
    server: Callable[[Path], SMTPTestServer]     # the faulty server (started or not)
    smtp: dict[str, object]                      # extra [smtp] settings
    clear: Callable[[SMTPTestServer, Path], dict[str, str]]   # fix it; returns env for the next run


def _plain(_: Path) -> SMTPTestServer:
    return SMTPTestServer()


def _refuse(server: SMTPTestServer, _: Path) -> dict[str, str]:
    server.start()
    return {}


def _greeting_421(_: Path) -> SMTPTestServer:
    server = SMTPTestServer().start()
    server.faults.refuse_connections = 1000
    return server


def _stalled(_: Path) -> SMTPTestServer:
    server = SMTPTestServer().start()
    server.faults.stall_greeting = 3.0          # past smtp.timeout = 2
    return server


def _heal(server: SMTPTestServer, _: Path) -> dict[str, str]:
    server.faults.refuse_connections = 0
    server.faults.stall_greeting = 0.0
    return {}


def _self_signed(tls: str) -> Callable[[Path], SMTPTestServer]:
    return lambda root: SMTPTestServer(tls=tls, cert=self_signed_cert(root)).start()   # type: ignore[arg-type]


def _trust_cert(_: SMTPTestServer, root: Path) -> dict[str, str]:
    """The operator installs the relay's certificate as trusted (OpenSSL reads SSL_CERT_FILE)."""
    return {"SSL_CERT_FILE": str(root / "cert.pem")}


def _auth(_: Path) -> SMTPTestServer:
    return SMTPTestServer(users={"mailer": PASSWORD}).start()


def _wrong_password_fixed(_: SMTPTestServer, __: Path) -> dict[str, str]:
    return {"FEEDPUB_SMTP_PASSWORD": PASSWORD}


UNAVAILABLE = {
    "refused connection": Unavailable("ConnectionRefusedError", _plain, {}, _refuse),
    "421 at greeting": Unavailable("421 4.3.2 Service not available", _greeting_421, {}, _heal),
    "stall past smtp.timeout": Unavailable("timed out", _stalled, {}, _heal),
    "STARTTLS with an untrusted certificate": Unavailable("CERTIFICATE_VERIFY_FAILED", _self_signed("starttls"),
                                                          {"security": "starttls"}, _trust_cert),
    "SSL with an untrusted certificate": Unavailable("CERTIFICATE_VERIFY_FAILED", _self_signed("ssl"),
                                                     {"security": "ssl"}, _trust_cert),
    "AUTH refused (535)": Unavailable("535 5.7.8 Authentication credentials invalid", _auth,
                                      {"username": "mailer"}, _wrong_password_fixed),
}


@pytest.mark.parametrize("fault", UNAVAILABLE.values(), ids=UNAVAILABLE.keys())
def test_unavailable_relay_defers_then_everyone_gets_one_copy(tmp_path, fault: Unavailable) -> None:
    server = fault.server(tmp_path)
    try:
        # retry_base 3 s: the run right after this one (a whole `digest send`, posts read) starts well before it
        config = write_site(tmp_path, server.port, connections=2, retry_base="3s", **fault.smtp)
        started = time.monotonic()
        first = feedpub(config, "digest", "send", password="wrong password")
        assert time.monotonic() - started < 8            # bounded by smtp.timeout, never hangs
        assert first.exit_code == 0, first.output        # deferred is not failed: cron retries
        assert "0 sent" in first.stdout and "4 waiting (next retry" in first.stdout
        assert fault.reply in first.stderr
        rows = deliveries(config)
        deferred = {email: row for email, row in rows.items() if row.status == "deferred"}
        assert 1 <= len(deferred) <= 2                   # the row each connection tried; the rest wait queued
        for row in deferred.values():
            assert row.attempts == 1 and fault.reply in row.reply
            assert_backoff(row, base=3.0)
        assert {rows[email].status for email in set(rows) - set(deferred)} == {"queued"}
        assert server.received == []

        env = fault.clear(server, tmp_path)
        password = env.pop("FEEDPUB_SMTP_PASSWORD", "wrong password")
        early = feedpub(config, "digest", "send", password=password, **env)   # deferred rows are not due yet
        assert early.exit_code == 0
        assert {email: deliveries(config)[email].attempts for email in deferred} == {e: 1 for e in deferred}
        wait_until_due(config)
        final = feedpub(config, "digest", "send", password=password, **env)
        assert final.exit_code == 0, final.output
        assert set(statuses(config).values()) == {"sent"}
        assert sorted(server.recipients()) == sorted(READERS)      # exactly one copy each
        assert_only_accepted_marked_sent(config, server)
    finally:
        server.stop()


# -- per-message faults: one reader's message fails, the others go out ------------------------------------

@dataclass(frozen=True)
class MessageFault:
    inject: Callable[[SMTPTestServer, str], None]
    status: str              # the reader's row after the first run
    reply: str
    exit_code: int
    copies: int              # copies the reader holds in the end (2: the server kept a message it never confirmed)


def _rcpt(reply: str) -> Callable[[SMTPTestServer, str], None]:
    return lambda server, email: server.faults.rcpt_replies.__setitem__(email, [reply])


def _data(reply: str) -> Callable[[SMTPTestServer, str], None]:
    return lambda server, _: server.faults.data_replies.append(reply)


def _set(name: str, value: object) -> Callable[[SMTPTestServer, str], None]:
    return lambda server, _: setattr(server.faults, name, value)


MESSAGE_FAULTS = {
    "451 at RCPT": MessageFault(_rcpt("451 4.3.0 Temporary lookup failure"), "deferred", "451 4.3.0", 0, 1),
    "452 at RCPT": MessageFault(_rcpt("452 4.2.2 Mailbox full"), "deferred", "452 4.2.2", 0, 1),
    "550 at RCPT": MessageFault(_rcpt("550 5.1.1 User unknown"), "failed", "550 5.1.1", 1, 0),
    "553 at RCPT": MessageFault(_rcpt("553 5.1.3 Bad recipient address syntax"), "failed", "553 5.1.3", 1, 0),
    "451 at DATA": MessageFault(_data("451 4.3.0 Queue file write error"), "deferred", "451 4.3.0", 0, 1),
    "452 at DATA": MessageFault(_data("452 4.3.1 Insufficient system storage"), "deferred", "452 4.3.1", 0, 1),
    "dropped before DATA": MessageFault(_set("drop_rcpt", 1), "deferred", "SMTPServerDisconnected", 0, 1),
    "dropped after DATA, discarded": MessageFault(_set("drop_data", 1), "deferred", "SMTPServerDisconnected", 0, 1),
    "dropped after DATA, kept": MessageFault(_set("drop_data_kept", 1), "deferred", "SMTPServerDisconnected", 0, 2),
    # The client gives up after smtp.timeout and closes; the server, finding the client gone, discards it.
    "stall at DATA past smtp.timeout": MessageFault(_set("stall_data", 3.0), "deferred", "timed out", 0, 1),
}
# Without PIPELINING the client sends one command at a time: the same faults meet other code paths.
LOCKSTEP = ("452 at RCPT", "553 at RCPT", "452 at DATA", "dropped before DATA", "dropped after DATA, kept")
CASES = [pytest.param(fault, True, id=name) for name, fault in MESSAGE_FAULTS.items()]
CASES += [pytest.param(MESSAGE_FAULTS[name], False, id=f"{name}, lockstep") for name in LOCKSTEP]


@pytest.mark.parametrize(("fault", "pipelining"), CASES)
def test_one_message_fault(tmp_path, fault: MessageFault, pipelining: bool) -> None:
    server = SMTPTestServer().start()
    server.pipelining = pipelining
    try:
        config = write_site(tmp_path, server.port)
        victim = READERS[0]               # the first row: the fault meets the first message of the run
        fault.inject(server, victim)
        first = feedpub(config, "digest", "send")
        assert first.exit_code == fault.exit_code, first.output
        rows = deliveries(config)
        assert rows[victim].status == fault.status and fault.reply in rows[victim].reply
        assert rows[victim].attempts == 1
        assert f"{victim}: {fault.status}: " in first.stderr
        assert {email: row.status for email, row in rows.items() if email != victim} == \
            dict.fromkeys(READERS[1:], "sent")
        assert_only_accepted_marked_sent(config, server)
        if fault.status == "deferred":
            assert_backoff(rows[victim])
            assert "1 waiting (next retry" in first.stdout
        else:   # a permanent refusal: never retried, the address suppressed
            assert f"{victim}: suppressed" not in first.stderr
            listed = feedpub(config, "subscribers", "list", "--format", "csv").stdout
            assert victim in listed

        wait_until_due(config)
        final = feedpub(config, "digest", "send")
        assert final.exit_code == 0
        counts = Counter(server.recipients())
        assert counts[victim] == fault.copies
        assert all(counts[email] == 1 for email in READERS[1:])
        assert statuses(config)[victim] == ("sent" if fault.copies else "failed")
        assert_only_accepted_marked_sent(config, server)
    finally:
        server.stop()


def test_permanent_refusal_suppresses_and_is_never_retried(tmp_path) -> None:
    server = SMTPTestServer().start()
    try:
        config = write_site(tmp_path, server.port)
        server.faults.rcpt_replies[READERS[2]] = ["553 5.1.3 Bad recipient address syntax"]
        assert feedpub(config, "digest", "send").exit_code == 1
        store_file = config.parent / ".feedpub" / "feedpub.db"
        with sqlite3.connect(store_file) as db:
            assert [key for (key,) in db.execute("SELECT email_key FROM suppressions")] == [READERS[2]]
        server.faults.rcpt_replies.clear()
        time.sleep(1.1)
        again = feedpub(config, "digest", "send")
        assert again.exit_code == 0 and "0 sent" in again.stdout
        assert READERS[2] not in server.recipients()
    finally:
        server.stop()


def test_backoff_doubles_and_retries_stop_at_max_retries(tmp_path) -> None:
    server = SMTPTestServer().start()
    try:
        config = write_site(tmp_path, server.port, max_retries=2)
        victim = READERS[1]
        server.faults.rcpt_replies[victim] = ["452 4.2.2 Mailbox full"] * 5

        assert feedpub(config, "digest", "send").exit_code == 0
        first = deliveries(config)[victim]
        assert first.attempts == 1
        assert_backoff(first)
        assert feedpub(config, "digest", "send").exit_code == 0      # before the retry time: not tried
        assert deliveries(config)[victim] == first and len(server.faults.rcpt_replies[victim]) == 4

        wait_until_due(config)
        assert feedpub(config, "digest", "send").exit_code == 0
        second = deliveries(config)[victim]
        assert second.attempts == 2 and second.next_attempt_at > first.next_attempt_at
        assert_backoff(second)                                        # 2 s after the second try

        wait_until_due(config)
        last = feedpub(config, "digest", "send")
        assert last.exit_code == 1
        final = deliveries(config)[victim]
        assert final.status == "failed" and final.attempts == 3
        assert final.reply.startswith("gave up after 3 attempts: 452 4.2.2")
        assert f"{victim}: failed: gave up after 3 attempts" in last.stderr
        with sqlite3.connect(config.parent / ".feedpub" / "feedpub.db") as db:
            assert db.execute("SELECT count(*) FROM suppressions").fetchone() == (0,)   # temporary: not suppressed
        assert victim not in server.recipients()
        assert sorted(server.recipients()) == sorted(set(READERS) - {victim})
    finally:
        server.stop()


def test_relay_down_for_longer_than_the_retries_loses_nobody(tmp_path) -> None:
    server = SMTPTestServer()            # not listening: every connection refused
    try:
        config = write_site(tmp_path, server.port, max_retries=1)
        for _ in range(3):                # three cron runs while the relay is down
            assert feedpub(config, "digest", "send").exit_code in (0, 1)
            wait_until_due(config)
        assert "sent" not in statuses(config).values()
        server.start()
        time.sleep(1.1)
        feedpub(config, "digest", "send")
        assert sorted(server.recipients()) == sorted(READERS)
    finally:
        server.stop()


def test_relay_down_for_a_whole_run_then_back(tmp_path) -> None:
    """Down (every connection refused with 421) for a whole run, back for the next: every reader once."""
    server = SMTPTestServer().start()
    server.faults.refuse_connections = 10_000
    try:
        config = write_site(tmp_path, server.port, connections=2)
        down = feedpub(config, "digest", "send")
        assert down.exit_code == 0 and "0 sent" in down.stdout
        assert "sent" not in statuses(config).values() and server.received == []
        server.faults.refuse_connections = 0
        wait_until_due(config)
        back = feedpub(config, "digest", "send")
        assert back.exit_code == 0 and "4 of 4 sent in total" in back.stdout
        assert sorted(server.recipients()) == sorted(READERS)
        status = feedpub(config, "digest", "status").stdout.splitlines()
        assert status[1].split()[-7:] == ["0", "0", "4", "0", "0", "0", "0"]   # queued … failed bounced complained
    finally:
        server.stop()


# -- a refusal that is not about the address never suppresses: the same rule as returned mail ------------

NOT_ABOUT_THE_ADDRESS = {
    "relay access denied": "554 5.7.1 <{email}>: Relay access denied",
    "authentication required": "530 5.7.0 Authentication required",
    "IP on a block list": "550 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using zen.spamhaus.org",
    "SPF": "550 5.7.23 <{email}>: Recipient address rejected: SPF check failed for sender domain",
    "rate": "550 5.7.1 This IP has sent too many to too many recipients this hour",
    "mail loop": "554 5.4.6 Hop count exceeded - possible mail loop",
    "mailbox full": "552 5.2.2 <{email}>: Mailbox full",
    "message size": "552 5.3.4 Message size exceeds fixed limit",
}


@pytest.mark.parametrize("reply", NOT_ABOUT_THE_ADDRESS.values(), ids=NOT_ABOUT_THE_ADDRESS.keys())
def test_a_5xx_about_anything_but_the_address_pauses_the_issue_and_suppresses_none(tmp_path, reply) -> None:
    server = SMTPTestServer().start()
    try:
        config = write_site(tmp_path, server.port)
        for email in READERS:
            server.faults.rcpt_replies[email] = [reply.format(email=email)]
        first = feedpub(config, "digest", "send")
        # Every reader refused alike: the circuit breaker pauses the issue; nobody failed or suppressed.
        assert first.exit_code == 1 and "paused" in first.stderr, first.output
        assert set(statuses(config).values()) == {"queued"}
        with sqlite3.connect(config.parent / ".feedpub" / "feedpub.db") as db:
            assert db.execute("SELECT count(*) FROM suppressions").fetchone() == (0,)

        server.faults.rcpt_replies.clear()                   # the relay was fixed: everyone gets one copy
        period = feedpub(config, "digest", "status").stdout.splitlines()[1].split()[0]
        assert feedpub(config, "digest", "resume", period).exit_code == 0
        again = feedpub(config, "digest", "send")
        assert again.exit_code == 0, again.output
        assert set(statuses(config).values()) == {"sent"}
        assert sorted(server.recipients()) == sorted(READERS)
    finally:
        server.stop()


def test_a_5xx_that_says_the_address_is_dead_suppresses_only_it(tmp_path) -> None:
    server = SMTPTestServer().start()
    try:
        config = write_site(tmp_path, server.port)
        server.faults.rcpt_replies[READERS[1]] = [
            f"550 5.1.1 <{READERS[1]}>: Recipient address rejected: User unknown in virtual mailbox table"]
        assert feedpub(config, "digest", "send").exit_code == 1
        with sqlite3.connect(config.parent / ".feedpub" / "feedpub.db") as db:
            assert [key for (key,) in db.execute("SELECT email_key FROM suppressions")] == [READERS[1]]
    finally:
        server.stop()
