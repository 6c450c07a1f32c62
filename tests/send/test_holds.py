"""Pause, resume and cancel are real: a paused issue is claimed by no sender (after the messages in flight),
resumes where it stopped, and nothing is sent twice — on SQLite and PostgreSQL, over real SMTP."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import replace

import pytest

from feedpub import holds
from feedpub.config_file import load_config
from feedpub.schema import deliveries
from feedpub.send.delivery import deliver
from feedpub.send.dispatch import Messages, send_due_retries
from feedpub.store import open_store, utcnow
from tests.conftest import emptied
from tests.send.sites import write_config
from tests.test_pg_store import queue_issue

READERS = 120
RATE = 20                 # messages a second: a run takes 6 s, and claims 40 rows (2 s) at a time


@pytest.fixture(params=["sqlite", "postgresql"])
def sending(request, tmp_path, smtp_server, monkeypatch):
    """(config, store, issue) of READERS queued readers, on each kind of store."""
    monkeypatch.setenv("FEEDPUB_SECRET", "hold-secret")
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else "sqlite:///feedpub.db"
    config = load_config(write_config(tmp_path, smtp_server.port, store_url=url, connections=1,
                                      rate_per_second=RATE))
    store = open_store(config.store_url)
    if request.param == "postgresql":
        emptied(store)
    issue = queue_issue(store, READERS)
    yield config, store, issue
    store.engine.dispose()


def test_pause_stops_every_sender_within_a_batch_and_resume_sends_each_message_once(sending, smtp_server):
    config, store, issue = sending
    run = threading.Thread(target=deliver, args=(config, store, issue, Messages(config, store)))
    run.start()
    deadline = time.monotonic() + 20
    while len(smtp_server.received) < 10:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    change = holds.pause(store, issue.period)
    assert change.state == "paused"
    run.join(timeout=30)
    assert not run.is_alive()                      # the run ended: nothing it may claim is left
    sent_at_stop = store.counts(issue.id)["sent"]
    assert 10 <= sent_at_stop <= 10 + 5 < READERS     # only the messages on their way went on, not the batch
    # Another sender (the daemon's retry job, a worker) finds nothing to claim while the issue is paused.
    assert send_due_retries(config, store, utcnow(), stop=threading.Event()) is None
    assert deliver(config, store, None, Messages(config, store)).sent == 0
    assert store.counts(issue.id)["sent"] == sent_at_stop == len(smtp_server.received)
    with pytest.raises(holds.HoldError, match="already paused"):
        holds.pause(store, issue.period)

    assert holds.resume(store, issue.period).rows == READERS - sent_at_stop
    # The rate only kept the first run mid-issue for the pause; the rest goes out unthrottled.
    unthrottled = replace(config, smtp=replace(config.smtp, rate_per_second=READERS * 100))
    summary = send_due_retries(unthrottled, store, utcnow(), stop=threading.Event())
    assert summary is not None and summary.sent == READERS - sent_at_stop
    counts = Counter(smtp_server.recipients())
    assert len(counts) == READERS and set(counts.values()) == {1}       # every reader once, none twice
    assert store.counts(issue.id)["sent"] == READERS


def test_cancel_ends_the_unsent_rest_for_good(sending, smtp_server):
    config, store, issue = sending
    holds.pause(store, issue.period)
    change = holds.cancel(store, issue.period)
    assert change.state == "cancelled" and change.rows == READERS
    assert deliver(config, store, None, Messages(config, store)).sent == 0
    assert smtp_server.received == []
    counts = store.counts(issue.id)
    assert counts["cancelled"] == READERS and counts["queued"] == 0
    with pytest.raises(holds.HoldError, match="was cancelled"):
        holds.resume(store, issue.period)
    with pytest.raises(holds.HoldError, match="no issue 'nope'"):
        holds.pause(store, "nope")


def test_cancelling_an_issue_with_nothing_left_to_send_changes_nothing(sending):
    _, store, issue = sending
    with store.writing() as conn:     # every row went out (one refused): nothing is left to cancel
        conn.execute(deliveries.update().where(deliveries.c.issue_id == issue.id).values(status="sent"))
        conn.execute(deliveries.update().where(deliveries.c.id == conn.scalar(
            deliveries.select().with_only_columns(deliveries.c.id).limit(1))).values(status="failed"))
    with pytest.raises(holds.NothingToCancel, match=f"issue {issue.period}: nothing to cancel"):
        holds.cancel(store, issue.period)
    assert holds.state(store, issue.id) is None
    assert store.counts(issue.id)["sent"] == READERS - 1 and store.counts(issue.id)["cancelled"] == 0
