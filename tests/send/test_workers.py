"""`feedpub worker` processes sharing one store: real subprocesses, a real SMTP server, real PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from feedpub.config_file import load_config
from feedpub.records import SubscriberInput
from feedpub.send.dispatch import send_due_issue
from feedpub.send.reader_mail import send_due
from feedpub.store import open_store
from tests.send.sites import write_config, write_post
from tests.test_pg_store import queue_issue, store  # noqa: F401 - the PostgreSQL store fixture

CONNECTIONS = 2


def write_worker_site(root, port: int, store_url: str) -> Path:
    """A site whose daemon only composes and queues: `feedpub worker`s send."""
    return write_config(root, port, digest={"send_in_daemon": False}, store_url=store_url, connections=CONNECTIONS,
                 rate_per_second=5000)


def start_worker(root) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "feedpub", "--config", str(root / "feedpub.toml"), "worker",
                             "--lease", "3s", "--idle", "1s"], env={**os.environ, "FEEDPUB_SECRET": "s"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_three_workers_one_killed_deliver_everything_once(tmp_path, smtp_server, store, pg_url):  # noqa: F811
    issue = queue_issue(store, 5000)
    write_worker_site(tmp_path, smtp_server.port, pg_url)
    workers = [start_worker(tmp_path) for _ in range(3)]
    try:
        wait_until(lambda: len(smtp_server.received) >= 1500, 40, "1,500 messages")
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        wait_until(lambda: store.counts(issue.id)["sent"] == 5000, 60, "every row sent")
        for process in workers[1:]:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=15) for process in workers[1:]]
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
    assert codes == [0, 0], [process.stderr.read() for process in workers[1:]]
    counts = Counter(smtp_server.recipients())
    assert set(counts) == {f"reader{i:04d}@example.com" for i in range(5000)}
    assert sum(counts.values()) - 5000 <= CONNECTIONS          # at most the killed worker's messages in flight
    assert store.counts(issue.id) == {"queued": 0, "sending": 0, "sent": 5000, "deferred": 0, "failed": 0,
                                     "cancelled": 0}
    senders = {received.connection for received in smtp_server.received}
    assert len(senders) >= 3 * CONNECTIONS                      # every worker took part


def test_daemon_job_only_queues_when_told_and_a_worker_on_sqlite_sends(tmp_path, smtp_server, monkeypatch):
    write_post(write_worker_site(tmp_path, smtp_server.port, "sqlite:///feedpub.db"), "ai", "生成AIと著作権",
               days_before_slot=1)
    monkeypatch.setenv("FEEDPUB_SECRET", "s")
    config = load_config(tmp_path / "feedpub.toml")
    sqlite = open_store(config.store_url)
    sqlite.save_subscribers([SubscriberInput(f"reader{i}@example.jp") for i in range(5)], status="active")
    result = send_due_issue(config, sqlite, datetime.now(UTC), send=config.digest.send_in_daemon)
    assert result.summary is None and "feedpub worker" in str(result.note)
    assert sqlite.counts(result.issue.id)["queued"] == 5 and smtp_server.received == []

    worker = start_worker(tmp_path)
    try:
        wait_until(lambda: sqlite.counts(result.issue.id)["sent"] == 5, 20, "the worker to send")
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0, worker.stderr.read()
    assert sorted(smtp_server.recipients()) == [f"reader{i}@example.jp" for i in range(5)]


def test_workers_on_postgresql_send_every_kind_of_mail_once(tmp_path, smtp_server, store, pg_url,  # noqa: F811
                                                           monkeypatch):
    """Daily readers in two zones, weekly readers and post readers, all queued by `digest send`'s run on
    PostgreSQL; two workers claim rows across the issues of every kind and each reader gets each mail once."""
    config_path = write_config(tmp_path, smtp_server.port, store_url=pg_url, connections=CONNECTIONS,
                               rate_per_second=5000, digest={"send_in_daemon": False, "post_delay": "1m",
                                                             "cadences": ["post", "daily", "weekly"]})
    monkeypatch.setenv("FEEDPUB_SECRET", "s")
    config = load_config(config_path)
    now = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)    # Monday 10:00 in Tokyo: the weekly and daily slots passed
    kinds = {"daily": ["", "America/Los_Angeles"], "weekly": [""], "post": [""]}
    readers = [SubscriberInput(f"{cadence}{i:03d}-{zone.split('/')[-1] or 'site'}@example.com", "", (), cadence,
                               zone) for cadence, zones in kinds.items() for zone in zones for i in range(150)]
    store.save_subscribers(readers, status="active")
    (tmp_path / "posts").mkdir()
    for name, date in (("yesterday", now - timedelta(hours=13)), ("new", now - timedelta(minutes=5))):
        (tmp_path / "posts" / f"{date:%Y-%m-%d}-{name}.md").write_text(
            f"---\ntitle: {name}\ndate: {date:%Y-%m-%d %H:%M:%S %z}\n---\n本文。\n", encoding="utf-8")
        send_due(config, store, now - timedelta(minutes=4) if name == "new" else now - timedelta(hours=12),
                 send=False)     # seen: `yesterday` on the first look (the digests'), `new` after (a post mail)
    done = send_due(config, store, now, send=False)
    assert sorted(result.issue.kind for result in done if result.issue is not None) == [
        "daily", "daily", "post", "weekly"]
    queued = sum(sum(store.counts(result.issue.id).values()) for result in done if result.issue is not None)
    assert queued == 150 * 2 + 150 + 150 * 2          # daily ×2 zones, weekly, post readers: weekly and post mail
    workers = [start_worker(tmp_path) for _ in range(2)]
    try:
        wait_until(lambda: len(smtp_server.recipients()) >= queued, 60, f"{queued} messages")
    finally:
        for process in workers:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=15) for process in workers]
    assert codes == [0, 0]
    mails = Counter((rcpt, str(received.message()["Subject"])) for received in smtp_server.received
                    for rcpt in received.rcpt_tos)
    assert len(mails) == queued and max(mails.values()) == 1
    assert sum(subject == "new" for _, subject in mails) == 150      # the post mail: its post readers only
