"""The circuit breaker: a relay that refuses every reader for reasons of its own pauses the issue with
nobody failed or suppressed, says why (`digest send`, `digest status`, /healthz), and `digest resume`
after the fix sends each reader exactly once; dead addresses are still failed and suppressed one by one;
an issue whose complaint or hard-bounce rate passes its line is paused too."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from starlette.testclient import TestClient

from feedpub import accounts, holds
from feedpub.cli.daemon import Daemon
from feedpub.config_file import load_config
from feedpub.records import SubscriberInput
from feedpub.send.bounces import evidence
from feedpub.send.breaker import STREAK, Breaker, rates_trip, sending_refusal
from feedpub.send.dispatch import send_due_issue, send_due_retries
from feedpub.send.issue import due_slot
from feedpub.site.websub import Publisher
from feedpub.store import open_store
from feedpub.web.app import create_app
from tests.conftest import emptied
from tests.send.sites import PASSWORD, SECRET, deliveries, feedpub, write_site
from tests.smtp_server import SMTPTestServer

READERS = [f"reader{i:02d}@example.{'jp' if i % 2 else 'com'}" for i in range(50)]
RELAY_DENIED = "554 5.7.1 <{}>: Relay access denied"


def suppressed(config: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(config.parent / ".feedpub" / "feedpub.db") as db:
        return db.execute("SELECT email_key, cause, cause_ref FROM suppressions ORDER BY email_key").fetchall()


def period_of(config: Path) -> str:
    return feedpub(config, "digest", "status").stdout.splitlines()[1].split()[0]


# -- the decision, on its own ------------------------------------------------------------------------------

def test_a_sending_refusal_is_the_reply_without_its_address() -> None:
    assert sending_refusal("554 5.7.1 <ayumi@example.jp>: Relay access denied") == "554 5.7.1 <>: relay access denied"
    assert sending_refusal("530 5.7.0 Authentication required") == "530 5.7.0 authentication required"
    assert sending_refusal("550 5.7.1 このサーバーからの中継は許可されていません") is not None
    # About the address, a deferral, no SMTP reply at all: none of them is a sending problem.
    assert sending_refusal("550 5.1.1 <ben@example.com>: Recipient address rejected: User unknown") is None
    assert sending_refusal("550 5.1.1 宛先のメールアドレスは存在しません") is None
    assert sending_refusal("451 4.3.0 Temporary lookup failure") is None
    assert sending_refusal("ConnectionRefusedError: [Errno 111] Connection refused") is None


def test_the_same_refusal_many_times_in_a_row_trips_dead_addresses_never_do() -> None:
    breaker = Breaker(usual_failures=0.01)
    breaker.expect(1, 500)
    dead = [breaker.observe(1, i, "failed", f"550 5.1.1 <r{i}@example.com>: User unknown") for i in range(40)]
    assert dead == [None] * 40 and breaker.to_put_back() == {}
    trips = [breaker.observe(1, 100 + i, "failed", RELAY_DENIED.format(f"r{i}@example.com")) for i in range(STREAK)]
    assert trips[:-1] == [None] * (STREAK - 1)
    assert trips[-1].issue_id == 1 and "10 recipients in a row" in trips[-1].reason
    assert "Relay access denied" in trips[-1].reason and "@" not in trips[-1].reason   # /healthz shows it
    assert breaker.to_put_back() == {1: set(range(100, 100 + STREAK))}     # the dead addresses stay failed
    breaker.observe(1, 200, "failed", RELAY_DENIED.format("late@example.com"))   # in flight when it tripped
    breaker.put_back(set(range(100, 100 + STREAK)))
    assert breaker.to_put_back() == {1: {200}}


def test_a_small_issue_trips_when_every_row_is_refused_alike() -> None:
    breaker = Breaker(usual_failures=0.0)
    breaker.expect(1, 4)
    breaker.expect(2, 2)
    assert [breaker.observe(1, i, "failed", "530 5.7.0 Authentication required") for i in range(3)] == [None] * 3
    assert breaker.observe(1, 3, "failed", "530 5.7.0 Authentication required") is not None
    assert [breaker.observe(2, 10 + i, "failed", "530 5.7.0 Authentication required") for i in range(2)] == [None] * 2


def test_a_share_of_refusals_far_above_the_usual_trips() -> None:
    # Half the readers refused, each for another reason: no streak, but 50% where 2% usually fail.
    breaker = Breaker(usual_failures=0.02)
    breaker.expect(1, 1000)
    outcomes = []
    for i in range(40):
        if i % 2:
            outcomes.append(breaker.observe(1, i, "failed", f"554 5.7.1 Service unavailable; client host blocked #{i}"))
        else:
            outcomes.append(breaker.observe(1, i, "sent", "250 2.0.0 Ok"))
    tripped = [i for i, trip in enumerate(outcomes) if trip]
    assert tripped == [19] and "10 of 20 recipients" in outcomes[19].reason
    # Where a third usually fails, the same run goes on.
    calm = Breaker(usual_failures=0.34)
    calm.expect(1, 1000)
    assert not any(calm.observe(1, i, "failed" if i % 2 else "sent", f"554 5.7.1 blocked #{i}") for i in range(40))


def test_rates_need_enough_messages_sent() -> None:
    assert rates_trip(10, 1, 0, 0.003, 0.05) is None                   # one complaint out of ten is no rate
    assert "complaint rate 1.00%" in rates_trip(100, 1, 0, 0.003, 0.05)
    assert rates_trip(1000, 3, 0, 0.003, 0.05) is None                 # 0.3% is the line, not over it
    assert "hard-bounce rate 6.00%" in rates_trip(100, 0, 6, 0.003, 0.05)
    assert rates_trip(100, 0, 5, 0.003, 0.05) is None


# -- a misconfigured relay, end to end ---------------------------------------------------------------------

def assert_paused_with_nobody_lost(config: Path, server: SMTPTestServer, first, reply: str) -> str:
    assert first.exit_code == 1, first.output
    assert "paused" in first.stderr and reply in first.stderr
    assert "0 failed" in first.stdout and "0 of 50 sent in total" in first.stdout
    assert {row.status for row in deliveries(config).values()} == {"queued"}   # every row waits, unfailed
    assert suppressed(config) == []
    assert server.received == []
    period = period_of(config)
    status = feedpub(config, "digest", "status")
    assert status.stdout.splitlines()[1].split()[-9] == "paused"          # HOLD, before the eight counts
    assert f"issue {period} paused by the circuit breaker" in status.stderr and reply in status.stderr
    again = feedpub(config, "digest", "send")          # cron comes back: the hold holds
    assert again.exit_code == 0 and server.received == []
    return period


def resume_sends_each_once(config: Path, server: SMTPTestServer, period: str) -> None:
    resumed = feedpub(config, "digest", "resume", period)
    assert resumed.exit_code == 0 and "50 rows left to send" in resumed.stdout
    final = feedpub(config, "digest", "send")
    assert final.exit_code == 0, final.output
    assert "50 of 50 sent in total" in final.stdout
    assert sorted(server.recipients()) == sorted(READERS)        # exactly one copy each
    assert suppressed(config) == []


def test_relay_denying_every_rcpt_pauses_the_issue_with_nobody_suppressed(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)     # the web app's, for /healthz
    server = SMTPTestServer().start()
    try:
        config = write_site(tmp_path, server.port, readers=READERS, connections=2)
        for reader in READERS:
            server.faults.rcpt_replies[reader] = [RELAY_DENIED.format(reader)]
        first = feedpub(config, "digest", "send")
        period = assert_paused_with_nobody_lost(config, server, first, "Relay access denied")

        # /healthz says why, through the daemon's facts.
        site = load_config(config)
        store = open_store(site.store_url)
        daemon = Daemon(site, store, config, Publisher())
        app = create_app(site, store, send_confirmation=lambda *mail: None, topics=lambda: [],
                         health=daemon.health)
        with TestClient(app) as client:
            paused = client.get("/healthz").json()["paused_issues"]
        assert list(paused) == [period] and "Relay access denied" in paused[period]

        server.faults.rcpt_replies.clear()                # the operator fixes the relay
        resume_sends_each_once(config, server, period)
    finally:
        server.stop()


def test_a_relay_calling_every_address_dead_is_stopped_by_the_bounce_rate_and_restored(tmp_path) -> None:
    # A broken relay_recipient_maps: every reader, on 150 domains, refused as unknown in the same words.
    readers = [f"reader{i:03d}@site{i:03d}.example.jp" for i in range(150)]
    server = SMTPTestServer().start()
    try:
        config = write_site(tmp_path, server.port, readers=readers, connections=1)
        for reader in readers:
            server.faults.rcpt_replies[reader] = [
                f"550 5.1.1 <{reader}>: Recipient address rejected: User unknown in relay recipient table"]
        first = feedpub(config, "digest", "send")
        assert first.exit_code == 1 and "hard-bounce rate" in first.stderr, first.output
        assert len(suppressed(config)) >= 100                      # judged from 100 answers on
        period = period_of(config)
        assert period in feedpub(config, "digest", "status").stderr
        restored = feedpub(config, "subscribers", "restore", "--cause", period)
        assert restored.exit_code == 0 and suppressed(config) == []
    finally:
        server.stop()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_relay_wanting_authentication_pauses_the_issue(tmp_path) -> None:
    server = SMTPTestServer(users={"mailer": PASSWORD}, auth_required=True).start()
    try:
        config = write_site(tmp_path, server.port, readers=READERS, connections=2)   # no smtp.username
        first = feedpub(config, "digest", "send")
        period = assert_paused_with_nobody_lost(config, server, first, "530 5.7.0 Authentication required")
        text = config.read_text(encoding="utf-8")
        config.write_text(text.replace("[smtp]\n", '[smtp]\nusername = "mailer"\n'), encoding="utf-8")
        resume_sends_each_once(config, server, period)
    finally:
        server.stop()


def test_relay_refusing_connections_loses_nobody_and_needs_no_resume(tmp_path) -> None:
    """421 at every greeting: no reader is refused (the relay never heard of them), so nothing is paused;
    the rows wait, and the run after the relay is back sends each once."""
    server = SMTPTestServer().start()
    server.faults.refuse_connections = 10_000
    try:
        config = write_site(tmp_path, server.port, readers=READERS, connections=2, retry_base="1s")
        first = feedpub(config, "digest", "send")
        assert first.exit_code == 0 and "421 4.3.2" in first.stderr
        assert {row.status for row in deliveries(config).values()} <= {"queued", "deferred"}
        assert suppressed(config) == [] and "paused" not in feedpub(config, "digest", "status").stdout
        server.faults.refuse_connections = 0
        retry_at = max(row.next_attempt_at for row in deliveries(config).values() if row.next_attempt_at)
        with time_machine.travel(retry_at + timedelta(seconds=1)):
            final = feedpub(config, "digest", "send")
        assert final.exit_code == 0 and "50 of 50 sent in total" in final.stdout
        assert sorted(server.recipients()) == sorted(READERS)
    finally:
        server.stop()


def test_dead_addresses_are_still_suppressed_and_restore_lifts_them(tmp_path) -> None:
    server = SMTPTestServer().start()
    dead = READERS[:12]
    try:
        config = write_site(tmp_path, server.port, readers=READERS, connections=2)
        for reader in dead:
            server.faults.rcpt_replies[reader] = [f"550 5.1.1 <{reader}>: Recipient address rejected: User unknown"]
        first = feedpub(config, "digest", "send")
        assert first.exit_code == 1 and "paused" not in first.stderr
        assert "38 sent" in first.stdout and "12 failed" in first.stdout
        issue_id = str(open_store(load_config(config).store_url).issue(period_of(config)).id)
        assert suppressed(config) == sorted((reader, "issue", issue_id) for reader in dead)

        period = period_of(config)
        dry = feedpub(config, "subscribers", "restore", "--cause", period, "--dry-run")
        assert dry.exit_code == 0 and sorted(line.split("\t")[0] for line in dry.stdout.splitlines()) == sorted(dead)
        assert "12 suppressions would be lifted" in dry.stderr and len(suppressed(config)) == 12
        done = feedpub(config, "subscribers", "restore", "--cause", period)
        assert done.exit_code == 0 and "12 suppressions lifted" in done.stderr
        assert suppressed(config) == []
        (entry, *_) = accounts.audit_log(open_store(load_config(config).store_url), 1)
        assert (entry.user, entry.action) == ("cli", "suppressions.restore")
        assert entry.detail.startswith(f"--cause {period}: 12 lifted: ") and dead[0] in entry.detail
    finally:
        server.stop()


# -- complaint and bounce rates ----------------------------------------------------------------------------

@pytest.fixture
def sent_issue(site, smtp_server: SMTPTestServer, monkeypatch):
    """110 readers; 100 got the issue that is due, 10 are deferred an hour: (config, store, issue, smtp)."""
    monkeypatch.setenv("FEEDPUB_SECRET", "s")
    site.configure(f"""
[digest]
schedule = "mon 09:00"
[smtp]
host = "127.0.0.1"
port = {smtp_server.port}
security = "none"
retry_base = "1h"
rate_per_second = 1000
""", language="ja")
    config = site.config
    _, slot = due_slot(config, datetime.now(UTC))
    date = slot - timedelta(days=1)
    site.post("this-week.md", f"---\ntitle: 今週の記事\ndate: {date:%Y-%m-%d %H:%M:%S %z}\n---\n本文。\n")
    store = open_store(config.store_url)
    readers = [f"r{i:03d}@example.jp" for i in range(110)]
    store.save_subscribers([SubscriberInput(r) for r in readers], status="active")
    for reader in readers[100:]:
        smtp_server.faults.defer_rcpt[reader] = 1
    first = send_due_issue(config, store, datetime.now(UTC))
    assert (first.summary.sent, first.summary.deferred) == (100, 10)
    return config, store, first.issue, smtp_server


def returned(store, issue_id: int, kind: str, count: int) -> None:
    """`count` of the issue's sent deliveries bounced or complained about (as bounce processing records)."""
    with sqlite3.connect(store.engine.url.database) as db:
        sent = [row[0] for row in db.execute("SELECT id FROM deliveries WHERE issue_id = ? AND status = 'sent' "
                                             "ORDER BY id LIMIT ?", (issue_id, count))]
    assert len(sent) == count
    with store.writing() as conn:
        for delivery_id in sent:
            evidence.record(conn, {"received_at": datetime.now(UTC), "source": "test", "message_key": f"m{delivery_id}",
                                   "recipient": f"d{delivery_id}@example.jp", "delivery_id": delivery_id, "kind": kind,
                                   "status": "5.1.1" if kind == "hard" else None, "diagnostic": None, "why": "test",
                                   "effect": "", "raw": b"", "raw_size": 0})


def retry(config, store):
    with time_machine.travel(store.next_retry() + timedelta(seconds=1)):
        return send_due_retries(config, store, datetime.now(UTC), stop=threading.Event())


@pytest.mark.parametrize(("kind", "count", "paused"), [("complaint", 1, True), ("hard", 6, True), ("hard", 5, False)])
def test_complaint_or_bounce_rate_over_the_line_pauses_the_rest(sent_issue, kind: str, count: int,
                                                                 paused: bool) -> None:
    config, store, issue, smtp = sent_issue
    returned(store, issue.id, kind, count)
    rest = retry(config, store)
    if paused:
        assert rest.sent == 0 and len(rest.paused) == 1
        rate = "bounces.max_complaint_rate" if kind == "complaint" else "bounces.max_bounce_rate"
        assert rate in str(rest.paused[0])
        assert store.counts(issue.id)["deferred"] == 10 and len(smtp.received) == 100
    else:
        assert rest.sent == 10 and rest.paused == ()


def test_relay_denying_every_rcpt_on_postgresql(tmp_path, pg_url) -> None:
    """The same on a shared PostgreSQL store (the one `feedpub worker` processes use)."""
    store = emptied(open_store(pg_url))
    server = SMTPTestServer().start()
    try:
        config = write_site(tmp_path, server.port, readers=READERS, connections=2, store_url=pg_url)
        for reader in READERS:
            server.faults.rcpt_replies[reader] = [RELAY_DENIED.format(reader)]
        first = feedpub(config, "digest", "send")
        assert first.exit_code == 1 and "Relay access denied" in first.stderr
        (issue,) = store.issues()
        assert store.counts(issue.id)["queued"] == 50 and store.suppressed() == set()
        assert "Relay access denied" in holds.reasons(store)[issue.period]
        server.faults.rcpt_replies.clear()
        assert feedpub(config, "digest", "resume", issue.period).exit_code == 0
        assert "50 of 50 sent in total" in feedpub(config, "digest", "send").stdout
        assert sorted(server.recipients()) == sorted(READERS)
    finally:
        server.stop()
        store.engine.dispose()
