"""The fediverse delivery queue against real inboxes on 127.0.0.1 that verify every signature: each activity once
per inbox, retries with back-off on 500 and timeouts, an instance paused then given up, 410 and 4xx, blocked
hosts; on SQLite and PostgreSQL, and two workers on one PostgreSQL store never sending a row twice."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import time_machine

from feedpub.config import Config
from feedpub.fediverse import delivery, queue
from feedpub.fediverse.ledger import Ledger
from feedpub.fediverse.urls import key_id
from feedpub.schema import fediverse_deliveries, fediverse_followers, fediverse_hosts
from feedpub.store import Store, open_store
from feedpub.strings import load_strings
from tests.conftest import Site, emptied
from tests.fediverse_inboxes import Inboxes, serving_ports
from tests.web.test_web import Lines

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(any_store: Store) -> Store:
    return any_store


@pytest.fixture
def config(site: Site) -> Config:
    site.configure('[web]\npublic_url = "https://news.example.org"\n'
                   '[activitypub]\nenabled = true\nallow_private_addresses = true\ngive_up_after = "7d"\n')
    return site.config


@pytest.fixture
def inboxes(config: Config, store: Store) -> Inboxes:
    return Inboxes({key_id(config, "blog"): Ledger(store).key_pair("blog").public_pem})


def note(number: int) -> dict:
    target = f"https://news.example.org/ap/objects/{number}"
    return {"@context": "https://www.w3.org/ns/activitystreams", "id": target + "#create", "type": "Create",
            "actor": "https://news.example.org/ap/accounts/blog",
            "object": {"id": target, "type": "Article", "name": f"記事 {number}"}}


def statuses(store: Store) -> Counter[str]:
    with store.engine.connect() as conn:
        return Counter(conn.scalars(sa.select(fediverse_deliveries.c.status)))


def follow(store: Store, actor: str, inbox: str, shared: str = "") -> None:
    Ledger(store).add_follower("blog", actor, inbox, shared, queue.hostname(queue.instance(inbox)))


def test_each_inbox_gets_each_activity_once_signed(config: Config, store: Store, inboxes: Inboxes) -> None:
    with serving_ports(inboxes.app(), 3) as ports:
        a, b, c = (f"127.0.0.1:{port}" for port in ports)
        queued = queue.enqueue(store, account="blog", activity=note(1),
                               inboxes=[f"http://{a}/inbox", f"http://{a}/inbox", f"http://{b}/inbox",
                                        f"http://{c}/users/x/inbox", ""])
        assert queued == 3
        summary = delivery.deliver(config, store)
        assert summary.counts["sent"] == 3 and summary.line() == "3 deliveries sent"
        assert summary.line(load_strings("cli", "ja", None)) == "配信 3 件を送信"
        assert not inboxes.refused
        assert sorted((where, path) for where, path, _ in inboxes.received) == sorted(
            [(a, "/inbox"), (b, "/inbox"), (c, "/users/x/inbox")])
        assert inboxes.at(a)[0]["object"]["name"] == "記事 1"
        # Nothing is due any more: a second run sends nothing again.
        assert delivery.deliver(config, store).counts["sent"] == 0
        assert len(inboxes.received) == 3
    assert statuses(store) == {"sent": 3}


def test_500_and_timeouts_are_retried_with_backoff(config: Config, store: Store, inboxes: Inboxes) -> None:
    with serving_ports(inboxes.app(), 2) as ports, time_machine.travel(T0, tick=True) as clock:
        failing, slow = (f"127.0.0.1:{port}" for port in ports)
        inboxes.faults = {failing: "500", slow: "slow"}
        inboxes.slow_for = 1.5
        queue.enqueue(store, account="blog", activity=note(1), inboxes=[f"http://{failing}/inbox",
                                                                        f"http://{slow}/inbox"])
        summary = delivery.deliver(config, store, timeout=httpx.Timeout(0.5))
        assert summary.counts["deferred"] == 2
        with store.engine.connect() as conn:
            rows = {r.host: r for r in conn.execute(sa.select(fediverse_deliveries))}
        assert rows[failing].status == "deferred" and rows[failing].last_error.startswith("500 Internal Server Error")
        assert rows[slow].last_error == "timed out" and rows[slow].attempts == 1
        assert timedelta(seconds=29) < rows[failing].next_attempt_at - T0 < timedelta(seconds=40)
        # Not due yet: nothing is sent before the back-off ends.
        assert delivery.deliver(config, store).counts == Counter()
        inboxes.faults = {}
        clock.shift(timedelta(seconds=45))
        assert delivery.deliver(config, store).counts["sent"] == 2
    assert [where for where, _, _ in inboxes.received].count(failing) == 1
    assert statuses(store) == {"sent": 2}


def test_a_failing_instance_is_paused_then_given_up(config: Config, store: Store, inboxes: Inboxes) -> None:
    with serving_ports(inboxes.app(), 2) as ports, time_machine.travel(T0, tick=True) as clock:
        down, up = (f"127.0.0.1:{port}" for port in ports)
        follow(store, "https://down.example/users/ann", f"http://{down}/users/ann/inbox", f"http://{down}/inbox")
        follow(store, "https://up.example/users/bob", f"http://{up}/users/bob/inbox")
        inboxes.faults = {down: "500"}
        for number in (1, 2, 3):
            queue.enqueue(store, account="blog", activity=note(number),
                          inboxes=[f"http://{down}/inbox", f"http://{up}/users/bob/inbox"])
        summary = delivery.deliver(config, store)
        assert summary.counts == {"sent": 3, "deferred": 3} and summary.paused == {down}
        with store.engine.connect() as conn:
            paused = conn.execute(sa.select(fediverse_hosts)).one()
        assert paused.host == down and paused.failures == 3 and paused.paused_until > T0
        # A new post while it is paused: queued, not tried, though its own row is due; the other instance gets it.
        queue.enqueue(store, account="blog", activity=note(4), inboxes=[f"http://{down}/inbox",
                                                                        f"http://{up}/users/bob/inbox"])
        assert delivery.deliver(config, store).counts == {"sent": 1}
        assert statuses(store)["queued"] == 1
        # Still failing a week on: its deliveries are dropped and its followers removed.
        for days in range(1, 9):
            clock.move_to(T0 + timedelta(days=days))
            summary = delivery.deliver(config, store)
        assert down in summary.dropped or statuses(store)["dropped"] == 4
        assert statuses(store) == {"sent": 4, "dropped": 4}
        with store.engine.connect() as conn:
            assert list(conn.scalars(sa.select(fediverse_followers.c.actor))) == ["https://up.example/users/bob"]
            assert conn.scalar(sa.select(sa.func.count()).select_from(fediverse_hosts)) == 0
    assert not inboxes.at(down)


@pytest.mark.parametrize(("language", "deferred", "paused", "given_up"), [
    ("en", ": deferred: 500 Internal Server Error", " paused until 2026-03-02T09:0",
     " given up: instance failing since more than 7d: 500 Internal"),
    ("ja", ": 延期: 500 Internal Server Error", " を 2026-03-02T09:0",
     " への配信を断念: 7d より長く失敗し続けています: 500 Internal"),
])
def test_a_failing_instance_is_logged_in_the_site_language(site: Site, tmp_path: Path, language: str, deferred: str,
                                                            paused: str, given_up: str) -> None:
    site.configure('[web]\npublic_url = "https://news.example.org"\n[activitypub]\nenabled = true\n'
                   'allow_private_addresses = true\ngive_up_after = "7d"\n', language=language)
    config, store = site.config, open_store(f"sqlite:///{tmp_path / 'feedpub.db'}")
    inboxes = Inboxes({key_id(config, "blog"): Ledger(store).key_pair("blog").public_pem})
    log, seen = logging.getLogger("feedpub.fediverse.delivery"), Lines(config)
    log.addHandler(seen)
    log.setLevel(logging.INFO)
    try:
        with serving_ports(inboxes.app(), 1) as ports, time_machine.travel(T0, tick=True) as clock:
            down = f"127.0.0.1:{ports[0]}"
            inboxes.faults = {down: "500"}
            for number in (1, 2, 3):
                queue.enqueue(store, account="blog", activity=note(number), inboxes=[f"http://{down}/inbox"])
            delivery.deliver(config, store)
            clock.move_to(T0 + timedelta(days=8))
            delivery.deliver(config, store)
    finally:
        log.removeHandler(seen)
        log.setLevel(logging.NOTSET)
        store.engine.dispose()
    row = f"http://{down}/inbox{deferred}: fault 500"
    assert seen.lines[0].startswith(down + paused) and seen.lines[0].endswith(": 500 Internal Server Error: fault 500")
    assert seen.lines[1:] == [row] * 3 + [f"{down}{given_up} Server Error: fault 500"] + [row] * 3


def test_after_a_pause_ends_the_sender_waits_for_the_rows_own_back_off(config: Config, store: Store,
                                                                        inboxes: Inboxes) -> None:
    with serving_ports(inboxes.app(), 1) as ports, time_machine.travel(T0, tick=True) as clock:
        down = f"127.0.0.1:{ports[0]}"
        inboxes.faults = {down: "500"}
        queue.enqueue(store, account="blog", activity=note(1), inboxes=[f"http://{down}/inbox"])
        # Three failed attempts, 30 s then 60 s apart: the instance is paused 30 s, its row waits 120 s.
        for wait in (0, 31, 61):
            clock.shift(timedelta(seconds=wait))
            summary = delivery.deliver(config, store)
        assert summary.paused == {down}
        with store.engine.connect() as conn:
            row_due = conn.scalar(sa.select(fediverse_deliveries.c.next_attempt_at))
            paused_until = conn.scalar(sa.select(fediverse_hosts.c.paused_until))
        assert paused_until < row_due
        assert queue.next_retry(store) == row_due
        # The pause has ended, the row's back-off has not: the next retry is the row's, not the pause's past end.
        clock.shift(paused_until - datetime.now(UTC) + timedelta(seconds=1))
        assert queue.next_retry(store) == row_due
        assert delivery.deliver(config, store).counts == Counter()
        inboxes.faults = {}
        clock.shift(row_due - datetime.now(UTC) + timedelta(seconds=1))
        assert delivery.deliver(config, store).counts == {"sent": 1}
        assert queue.next_retry(store) is None
    assert len(inboxes.at(down)) == 1


def test_gone_removes_the_followers_and_other_4xx_fail(config: Config, store: Store, inboxes: Inboxes) -> None:
    with serving_ports(inboxes.app(), 3) as ports:
        gone, refusing, busy = (f"127.0.0.1:{port}" for port in ports)
        follow(store, "https://gone.example/users/ann", f"http://{gone}/users/ann/inbox", f"http://{gone}/inbox")
        follow(store, "https://no.example/users/bob", f"http://{refusing}/users/bob/inbox")
        inboxes.faults = {gone: "410", refusing: "400", busy: "429"}
        queue.enqueue(store, account="blog", activity=note(1),
                      inboxes=[f"http://{gone}/inbox", f"http://{refusing}/users/bob/inbox", f"http://{busy}/inbox"])
        assert delivery.deliver(config, store).counts == {"gone": 1, "failed": 1, "deferred": 1}
    with store.engine.connect() as conn:
        assert list(conn.scalars(sa.select(fediverse_followers.c.actor))) == ["https://no.example/users/bob"]
        # Only the instance asking to slow down counts as failing (the others answered).
        assert list(conn.scalars(sa.select(fediverse_hosts.c.host))) == [busy]
        assert conn.scalar(sa.select(fediverse_deliveries.c.last_error).where(fediverse_deliveries.c.host == busy)) \
            .startswith("429 Too Many Requests")


def test_blocked_hosts_get_nothing_and_queued_rows_are_cancelled(config: Config, store: Store,
                                                                 inboxes: Inboxes) -> None:
    queue.enqueue(store, account="blog", activity=note(1),
                  inboxes=["https://spam.example/inbox", "https://spam.example:8443/inbox", "https://ok.example/inbox"])
    assert queue.cancel_host(store, "spam.example", "blocked by the operator") == 2
    Ledger(store).block("spam.example")
    assert queue.enqueue(store, account="blog", activity=note(2),
                         inboxes=["https://spam.example/inbox", "https://ok.example/inbox"]) == 1
    assert statuses(store) == {"cancelled": 2, "queued": 2}


def test_two_workers_on_postgresql_never_send_a_row_twice(pg_url: str, config: Config) -> None:
    store = emptied(open_store(pg_url))
    inboxes = Inboxes({key_id(config, "blog"): Ledger(store).key_pair("blog").public_pem})
    with serving_ports(inboxes.app(), 4) as ports:
        wanted = [f"http://127.0.0.1:{port}/users/{n}/inbox" for port in ports for n in range(150)]
        for number in (1, 2):
            queue.enqueue(store, account="blog", activity=note(number), inboxes=wanted)
        results = []
        workers = [threading.Thread(target=lambda: results.append(delivery.deliver(config, store)))
                   for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert sum(r.counts["sent"] for r in results) == 1200
    assert all(r.counts["sent"] > 0 for r in results), "both workers took a share"
    got = Counter((where, path, activity["id"]) for where, path, activity in inboxes.received)
    assert len(got) == 1200 and max(got.values()) == 1 and not inboxes.refused
    assert statuses(store) == {"sent": 1200}
    store.engine.dispose()


def test_a_batch_outlasting_its_lease_keeps_its_rows(config: Config, store: Store, inboxes: Inboxes) -> None:
    lease = timedelta(seconds=1.5)
    with serving_ports(inboxes.app(), 1) as (port,):
        slow = f"127.0.0.1:{port}"
        inboxes.faults, inboxes.slow_for = {slow: "slow"}, 3.0
        queue.enqueue(store, account="blog", activity=note(1), inboxes=[f"http://{slow}/inbox"])
        first = threading.Thread(target=delivery.deliver, args=(config, store),
                                 kwargs={"lease": lease, "timeout": httpx.Timeout(6.0)})
        first.start()
        while statuses(store) != {"sending": 1}:
            time.sleep(0.02)
        # Another worker keeps looking while the first one's POST is out, past its lease.
        others = Counter()
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            others.update(delivery.deliver(config, store, lease=lease, timeout=httpx.Timeout(6.0)).counts)
            time.sleep(0.2)
        first.join()
    assert others == Counter() and statuses(store) == {"sent": 1}
    assert len(inboxes.received) == 1


def test_feedpub_workers_deliver_each_once_on_postgresql(pg_url: str, site: Site) -> None:
    site.configure(f'[store]\nurl = "{pg_url}"\n[web]\npublic_url = "https://news.example.org"\n'
                   '[activitypub]\nenabled = true\nallow_private_addresses = true\n')
    config = site.config
    store = emptied(open_store(pg_url))
    inboxes = Inboxes({key_id(config, "blog"): Ledger(store).key_pair("blog").public_pem})
    env = {**os.environ, "FEEDPUB_SECRET": "worker-test"}
    command = [sys.executable, "-m", "feedpub", "--config", str(site.toml), "worker", "--idle", "1s"]
    with serving_ports(inboxes.app(), 4) as ports:
        workers = [subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        try:
            for worker in workers:
                assert "worker started" in worker.stderr.readline()
            for number in (1, 2):
                queue.enqueue(store, account="blog", activity=note(number),
                              inboxes=[f"http://127.0.0.1:{port}/users/{n}/inbox" for port in ports for n in range(50)])
            deadline = time.monotonic() + 60
            while len(inboxes.received) < 400 and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            codes = [worker.wait(timeout=30) for worker in workers]
    assert codes == [0, 0]
    got = Counter((where, path, activity["id"]) for where, path, activity in inboxes.received)
    assert len(got) == 400 and max(got.values()) == 1 and not inboxes.refused
    assert statuses(store) == {"sent": 400}
    store.engine.dispose()
