"""The sending engine against a real in-process SMTP server and a real SQLite store."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest

from feedpub.config_file import load_config
from feedpub.records import Delivery, StoredVariant, SubscriberInput
from feedpub.send.delivery import deliver
from feedpub.store import open_store
from tests.send.sites import Row, deliveries, write_config
from tests.smtp_server import SMTPTestServer

FAST_RETRY = timedelta(milliseconds=20)


def setup(tmp_path, server: SMTPTestServer, count: int, **smtp: object):
    smtp = {"connections": 2, **smtp}
    config = load_config(write_config(tmp_path, server.port, **smtp))
    store = open_store(config.store_url)
    saved = store.save_subscribers([SubscriberInput(f"reader{i:03d}@example.com", f"読者{i}")
                                    for i in range(count)], status="active")
    now = datetime.now(UTC)
    issue = store.create_issue(period="2025-12-15-0900", slot=now, starts=now - timedelta(days=7), ends=now,
                               variants=[StoredVariant("", "今週のまとめ", "<p>本文</p>", "本文")],
                               recipients={row.id: "" for row, _ in saved})
    return config, store, issue, [row.email for row, _ in saved]


def message_for(row: Delivery) -> bytes:
    message = EmailMessage()
    message["From"] = "news@example.com"
    message["To"] = row.email
    message["Subject"] = "今週のまとめ"
    message.set_content(f"{row.name}さん、こんにちは。")
    return message.as_bytes().replace(b"\n", b"\r\n")


def rows(config) -> dict[str, Row]:
    return deliveries(config.root / "feedpub.toml")


def statuses(config) -> dict[str, str]:
    return {email: row.status for email, row in rows(config).items()}


def test_every_recipient_gets_exactly_one_message_of_their_own(tmp_path, smtp_server):
    config, store, issue, emails = setup(tmp_path, smtp_server, 30, connections=3)
    summary = deliver(config, store, issue, message_for)
    assert (summary.sent, summary.deferred, summary.failed) == (30, 0, 0), summary.problems
    assert sorted(smtp_server.recipients()) == emails
    for received in smtp_server.received:
        (rcpt,) = received.rcpt_tos
        assert received.mail_from == "news@blog.example.com"
        assert received.message()["To"] == rcpt
        assert [e for e in emails if e.encode() in received.data] == [rcpt]
    assert smtp_server.connections <= 3          # connections are reused, not one per message
    assert all(row.reply.startswith("250 2.0.0 Ok: queued as") for row in rows(config).values())

    again = deliver(config, store, issue, message_for)
    assert (again.sent, again.deferred, again.failed) == (0, 0, 0)
    assert len(smtp_server.received) == 30


@pytest.mark.parametrize("pipelining", [True, False])
def test_refusals_at_each_command_with_and_without_pipelining(tmp_path, smtp_server, pipelining):
    smtp_server.pipelining = pipelining
    config, store, issue, emails = setup(tmp_path, smtp_server, 6, connections=1)
    smtp_server.faults.reject_rcpt.add(emails[1])
    smtp_server.faults.defer_rcpt[emails[3]] = 1
    summary = deliver(config, store, issue, message_for, retry_base=FAST_RETRY, wait_for_retries=timedelta(seconds=5))
    assert (summary.sent, summary.failed) == (5, 1)
    assert sorted(smtp_server.recipients()) == sorted(set(emails) - {emails[1]})
    assert all(len(received.rcpt_tos) == 1 for received in smtp_server.received)
    assert smtp_server.connections == 1     # a refusal resets the transaction, not the connection


def test_421_at_connect_is_retried_with_backoff(tmp_path, smtp_server):
    config, store, issue, emails = setup(tmp_path, smtp_server, 3, connections=1)
    smtp_server.faults.refuse_connections = 2
    summary = deliver(config, store, issue, message_for, retry_base=FAST_RETRY, wait_for_retries=timedelta(seconds=5))
    assert summary.sent == 3 and summary.failed == 0
    assert sorted(smtp_server.recipients()) == emails
    first = rows(config)[emails[0]]
    assert first.attempts == 3 and first.status == "sent"


def test_server_down_leaves_rows_deferred_and_nothing_marked_sent(tmp_path, smtp_server):
    config, store, issue, _ = setup(tmp_path, smtp_server, 4)
    smtp_server.faults.refuse_connections = 1000
    before = time.monotonic()
    summary = deliver(config, store, issue, message_for, retry_base=timedelta(minutes=5))
    assert time.monotonic() - before < 2           # no waiting for a retry an hour away
    assert summary.sent == 0 and summary.deferred >= 1
    assert "421 4.3.2 Service not available" in summary.problems[0].reply
    assert "sent" not in statuses(config).values()
    deferred = [row for row in rows(config).values() if row.status == "deferred"]
    assert all(row.next_attempt_at > datetime.now(UTC) + timedelta(minutes=4) for row in deferred)
    assert smtp_server.received == []


def test_retries_give_up_after_max_retries_without_suppressing(tmp_path, smtp_server):
    config, store, issue, emails = setup(tmp_path, smtp_server, 2, max_retries=2)
    smtp_server.faults.defer_rcpt[emails[0]] = 99
    summary = deliver(config, store, issue, message_for, retry_base=FAST_RETRY, wait_for_retries=timedelta(seconds=5))
    assert (summary.sent, summary.failed) == (1, 1)
    (failure,) = summary.problems
    assert failure.email == emails[0] and failure.reply.startswith("gave up after 3 attempts: 451")
    assert store.suppressed() == set()
    assert smtp_server.recipients() == [emails[1]]


def test_451_at_data_defers_then_sends_once(tmp_path, smtp_server):
    config, store, issue, emails = setup(tmp_path, smtp_server, 5, connections=1)
    smtp_server.faults.defer_data = 1
    first = deliver(config, store, issue, message_for, retry_base=timedelta(seconds=1))
    assert (first.sent, first.deferred) == (4, 1)
    assert first.problems[0].reply == "451 4.3.0 Error: queue file write error"
    assert statuses(config)[emails[0]] == "deferred"
    # not due yet: a rerun sends nothing
    assert deliver(config, store, issue, message_for).sent == 0
    second = deliver(config, store, issue, message_for, retry_base=FAST_RETRY, wait_for_retries=timedelta(seconds=3))
    assert second.sent == 1
    assert sorted(smtp_server.recipients()) == emails


def test_550_for_one_recipient_fails_and_suppresses_it(tmp_path, smtp_server):
    config, store, issue, emails = setup(tmp_path, smtp_server, 5)
    smtp_server.faults.reject_rcpt.add(emails[2])
    summary = deliver(config, store, issue, message_for)
    assert (summary.sent, summary.failed) == (4, 1)
    assert summary.problems[0].email == emails[2] and summary.problems[0].reply.startswith("550 5.1.1")
    assert statuses(config)[emails[2]] == "failed"
    assert store.suppressed() == {emails[2]}
    assert sorted(smtp_server.recipients()) == sorted(set(emails) - {emails[2]})


def test_connection_dropped_mid_data_reconnects_and_retries(tmp_path, smtp_server):
    config, store, issue, emails = setup(tmp_path, smtp_server, 6, connections=1)
    smtp_server.faults.drop_data = 1
    summary = deliver(config, store, issue, message_for, retry_base=FAST_RETRY, wait_for_retries=timedelta(seconds=5))
    assert summary.sent == 6
    assert sorted(smtp_server.recipients()) == emails        # the dropped one was not accepted: sent again, once
    assert smtp_server.connections >= 2
    assert rows(config)[emails[0]].attempts == 2


def test_rate_limit_is_never_exceeded(tmp_path, smtp_server):
    config, store, issue, _ = setup(tmp_path, smtp_server, 10, connections=4, rate_per_second=20)
    before = time.monotonic()
    assert deliver(config, store, issue, message_for).sent == 10
    assert time.monotonic() - before >= 9 / 20


def test_stop_flag_ends_after_the_current_message_and_a_rerun_resumes(tmp_path, smtp_server):
    config, store, issue, emails = setup(tmp_path, smtp_server, 8, connections=1)
    stop = threading.Event()

    def after_three(outcome):
        if sum(1 for _ in smtp_server.received) >= 3:
            stop.set()

    summary = deliver(config, store, issue, message_for, stop=stop, on_outcome=after_three)
    assert summary.stopped and summary.sent == 3
    assert list(statuses(config).values()).count("queued") == 5
    assert deliver(config, store, issue, message_for).sent == 5
    assert sorted(smtp_server.recipients()) == emails


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls_is_required_when_configured(tmp_path, smtp_server, security):
    # The test server speaks neither TLS nor STARTTLS: nothing may go out in the clear.
    config, store, issue, _ = setup(tmp_path, smtp_server, 1, security=security, timeout=2)
    summary = deliver(config, store, issue, message_for)
    assert summary.sent == 0 and smtp_server.received == []
