"""Sending the fediverse queue: claimed batches of deliveries POSTed, signed, over reused connections.

One run claims due rows in batches under a lease (`Leases` over `fediverse_deliveries`, the machinery mail's
deliveries use: several workers on PostgreSQL never take the same row; renewed while a batch is out), marking
them `sending`; POSTs each one signed as its account (draft-cavage with Digest, `signatures.sign_request`) with
httpx from `CONNECTIONS` threads, each with its own client and instances, connections kept alive across batches;
then writes the batch's outcomes in one transaction:

- 2xx: sent. 410: gone: the followers whose inbox it was are removed. Other 4xx but 429: failed for good.
- 429, 5xx, a timeout, a connection error: deferred, retried with exponential back-off from `RETRY_BASE`
  (a 429's Retry-After when it says longer).
- An instance (the inbox URL's authority) answering that way `PAUSE_AFTER` times in a row is paused: none of its
  rows is claimed until its back-off ends, so a dead instance costs one timeout per round, not one per row.
  One success closes the breaker. An instance failing for longer than `activitypub.give_up_after` is dropped:
  its open rows end `dropped`, its followers are removed.

A process killed while POSTing leaves its rows `sending`; they are due again when the lease runs out (or at once
for a worker on the same host that sees the pid gone) and sent again: instances drop an activity id they have
seen, so a crash repeats at most the requests in flight, never a post in a timeline.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
import sqlalchemy as sa

from feedpub.config import Config, parse_duration
from feedpub.errors import message
from feedpub.fediverse import signatures
from feedpub.fediverse.keys import KeyPair
from feedpub.fediverse.ledger import Ledger
from feedpub.fediverse.queue import due, next_retry
from feedpub.fediverse.urls import key_id
from feedpub.schema import fediverse_activities, fediverse_deliveries, fediverse_followers, fediverse_hosts
from feedpub.send.claims import Leases, new_worker_id
from feedpub.store import Store, utcnow
from feedpub.strings import Strings, english

log = logging.getLogger(__name__)

CONNECTIONS = 8                           # POSTs in flight at once, per process
KEPT_ALIVE = 512                          # idle connections kept open (one per instance, as many as there are)
BATCH = 256                               # rows claimed at a time
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
RETRY_BASE = timedelta(seconds=30)
MAX_BACKOFF = timedelta(hours=6)
PAUSE_AFTER = 3                           # failed attempts in a row that pause an instance
LEASE = timedelta(minutes=5)
_FORGET_WORKERS = timedelta(days=1)
_USER_AGENT = "feedpub (ActivityPub)"
_STOP_SLICE = 0.5                         # seconds the idle sender waits between looks at the daemon's stop
_ERROR_CHARS = 300                        # of an answer's body kept as last_error


@dataclass(frozen=True)
class Row:
    id: int
    inbox: str
    host: str
    attempts: int                          # this one included
    account: str
    body: bytes


@dataclass(frozen=True)
class Result:
    """How one POST ended: `status` the row's new status, `error` why it did not succeed."""

    row: Row
    status: str                            # sent | deferred | failed | gone
    error: str = ""
    retry_after: timedelta | None = None   # what a 429 or 503 asked for

    @property
    def transient(self) -> bool:
        return self.status == "deferred"


@dataclass
class Summary:
    counts: Counter[str] = field(default_factory=Counter)
    paused: set[str] = field(default_factory=set)     # instances paused in this run
    dropped: set[str] = field(default_factory=set)    # instances given up

    def line(self, t: Strings | None = None) -> str:
        """What the run did (`2 deliveries sent; mastodon.example paused`), in the language of `t` (the command
        line's and the daemon's strings, `cli/strings.toml`); English without."""
        t = t or english("cli")
        parts = [t.count(f"fediverse_deliveries_{status}", self.counts[status])
                 for status in ("sent", "deferred", "failed", "gone", "dropped") if self.counts[status]]
        parts += [t.text("fediverse_instance_paused", host=host) for host in sorted(self.paused)]
        parts += [t.text("fediverse_instance_dropped", host=host) for host in sorted(self.dropped)]
        return t.text("list_separator").join(parts) or t.text("fediverse_nothing_due")


def deliver(config: Config, store: Store, *, stop: threading.Event | None = None, lease: timedelta = LEASE,
            retry_base: timedelta = RETRY_BASE, timeout: httpx.Timeout = TIMEOUT) -> Summary:
    """Send every due delivery until none is due (deferred rows whose time has not come stay for a later run)."""
    return _Run(config, store, stop or threading.Event(), lease, retry_base).go(timeout)


class _Run:
    def __init__(self, config: Config, store: Store, stop: threading.Event, lease: timedelta,
                 retry_base: timedelta) -> None:
        self.config = config
        self.store = store
        self.stop = stop
        self.lease = lease
        self.retry_base = retry_base
        self.give_up_after = parse_duration(config.activitypub.give_up_after)
        self.leases = Leases(store, new_worker_id(), fediverse_deliveries, due)
        self.ledger = Ledger(store)
        self.keys: dict[str, KeyPair] = {}
        self.summary = Summary()

    def go(self, timeout: httpx.Timeout) -> Summary:
        self.leases.register(utcnow(), _FORGET_WORKERS)
        # Threads over httpx's synchronous client: a third of the CPU per request of its asyncio client here
        # (0.7 ms against 1.8 ms, 1,000 POSTs to a local server). Each thread has its own client and the
        # instances hashed to it: its pool keeps their connections alive between batches and looks through a
        # few of them per request (httpcore's pool polls each idle connection it holds, per request), and an
        # instance gets one request at a time.
        limits = httpx.Limits(max_connections=KEPT_ALIVE, max_keepalive_connections=KEPT_ALIVE)
        # One TLS context for them all: each client would load the CA bundle again (25 ms apiece, every run).
        tls = httpx.create_ssl_context()
        clients = [httpx.Client(limits=limits, timeout=timeout, verify=tls, headers={"User-Agent": _USER_AGENT})
                   for _ in range(CONNECTIONS)]
        try:
            with ThreadPoolExecutor(CONNECTIONS, thread_name_prefix="fediverse") as pool:
                while not self.stop.is_set():
                    rows = self._claim()
                    if not rows:
                        break
                    shares: list[list[Row]] = [[] for _ in clients]
                    for row in rows:
                        shares[zlib.crc32(row.host.encode()) % len(clients)].append(row)
                    posting = pool.map(self._post_all, clients, shares)
                    # A batch of slow instances can outlast the lease: renewed while it is out, no one else
                    # takes its rows.
                    done = threading.Event()
                    renewer = threading.Thread(target=self._renew_until, args=(done,), name="fediverse-lease")
                    renewer.start()
                    try:
                        results = [result for found in posting for result in found]
                    finally:
                        done.set()
                        renewer.join()
                    self._record(results)
        finally:
            for client in clients:
                client.close()
            self.leases.release(retire=True)
        return self.summary

    def _renew_until(self, done: threading.Event) -> None:
        while not done.wait(self.lease.total_seconds() / 3):
            self.leases.renew(utcnow(), self.lease, busy=False)

    def _post_all(self, client: httpx.Client, rows: Sequence[Row]) -> list[Result]:
        """One thread's share, in order; an instance that failed PAUSE_AFTER times in a row here is not tried
        again in this batch (its breaker decides when it is)."""
        results = []
        failing: Counter[str] = Counter()
        for row in rows:
            if failing[row.host] >= PAUSE_AFTER:
                results.append(Result(row, "deferred", f"not tried: {row.host} failed {PAUSE_AFTER} times in a row"))
                continue
            result = self._post(client, row)
            failing[row.host] = failing[row.host] + 1 if result.transient else 0
            results.append(result)
        return results

    def _claim(self) -> list[Row]:
        now = utcnow()
        rows = fediverse_deliveries.c
        ids = self.leases.take(now, self.lease, BATCH)
        if not ids:
            return []
        with self.store.writing() as conn:
            conn.execute(fediverse_deliveries.update().where(rows.id.in_(ids), rows.claimed_by == self.leases.worker)
                         .values(status="sending", attempts=rows.attempts + 1, next_attempt_at=None, updated_at=now))
        query = (sa.select(rows.id, rows.inbox, rows.host, rows.attempts, fediverse_activities.c.account,
                           fediverse_activities.c.body)
                 .join(fediverse_activities, fediverse_activities.c.id == rows.activity_id)
                 .where(rows.id.in_(ids)).order_by(rows.id))
        with self.store.engine.connect() as conn:
            found = [Row(r.id, r.inbox, r.host, r.attempts, r.account, r.body.encode()) for r in conn.execute(query)]
        for account in {row.account for row in found} - self.keys.keys():
            self.keys[account] = self.ledger.key_pair(account)
        return found

    def _post(self, client: httpx.Client, row: Row) -> Result:
        headers = signatures.sign_request(self.keys[row.account], key_id(self.config, row.account), "POST",
                                          row.inbox, row.body)
        headers["Content-Type"] = "application/activity+json"
        try:
            answer = client.post(row.inbox, content=row.body, headers=headers)
        except httpx.TimeoutException:
            return Result(row, "deferred", "timed out")
        except httpx.HTTPError as exc:
            return Result(row, "deferred", f"{type(exc).__name__}: {exc}")
        return judged(row, answer)

    def _record(self, results: Sequence[Result]) -> None:
        now = utcnow()
        rows = fediverse_deliveries.c
        by_host: dict[str, list[Result]] = defaultdict(list)
        for result in results:
            by_host[result.row.host].append(result)
        with self.store.writing() as conn:
            conn.execute(fediverse_deliveries.update()
                         .where(rows.id == sa.bindparam("row_id"), rows.claimed_by == self.leases.worker)
                         .values(status=sa.bindparam("new_status"), last_error=sa.bindparam("error"),
                                 next_attempt_at=sa.bindparam("retry_at"), claimed_by=None, claimed_until=None,
                                 updated_at=now),
                         [{"row_id": r.row.id, "new_status": r.status, "error": r.error,
                           "retry_at": now + self._backoff(r.row.attempts, r.retry_after) if r.transient else None}
                          for r in results])
            gone = {r.row.inbox for r in results if r.status == "gone"}
            if gone:
                conn.execute(fediverse_followers.delete().where(sa.or_(
                    fediverse_followers.c.shared_inbox.in_(gone),
                    sa.and_(fediverse_followers.c.shared_inbox == "", fediverse_followers.c.inbox.in_(gone)))))
            for host, found in by_host.items():
                self._judge_host(conn, host, found, now)
        self.summary.counts.update(r.status for r in results)
        for result in results:
            if result.status != "sent":
                log.info("%s", message(f"fediverse_row_{result.status}", inbox=result.row.inbox, error=result.error))

    def _judge_host(self, conn: sa.Connection, host: str, results: list[Result], now: datetime) -> None:
        """The breaker of one instance after a batch: any answer that was not a transient failure closes it."""
        hosts = fediverse_hosts.c
        if any(not r.transient for r in results):
            conn.execute(fediverse_hosts.delete().where(hosts.host == host))
            return
        known = conn.execute(sa.select(fediverse_hosts).where(hosts.host == host)).first()
        failures = (known.failures if known else 0) + len(results)
        since = known.failing_since if known else now
        error = results[-1].error
        if now - since >= self.give_up_after:
            self._give_up(conn, host, now, error)
            return
        paused_until = None
        if failures >= PAUSE_AFTER:
            paused_until = now + self._backoff(failures - PAUSE_AFTER + 1, None)
            if not (known and known.paused_until and known.paused_until > now):
                self.summary.paused.add(host)
                log.warning("%s", message("fediverse_host_paused", host=host, error=error,
                                          until=paused_until.isoformat(timespec="seconds")))
        values = {"failures": failures, "paused_until": paused_until, "last_error": error}
        if known:
            conn.execute(fediverse_hosts.update().where(hosts.host == host).values(**values))
        else:
            conn.execute(fediverse_hosts.insert().values(host=host, failing_since=since, **values))

    def _give_up(self, conn: sa.Connection, host: str, now: datetime, error: str) -> None:
        rows = fediverse_deliveries.c
        reason = f"instance failing since more than {self.config.activitypub.give_up_after}: {error}"
        dropped = conn.execute(fediverse_deliveries.update()
                               .where(rows.host == host, rows.status.in_(("queued", "deferred", "sending")),
                                      sa.or_(rows.claimed_by.is_(None), rows.claimed_by == self.leases.worker))
                               .values(status="dropped", last_error=reason, claimed_by=None, claimed_until=None,
                                       updated_at=now)).rowcount
        followers = fediverse_followers.c
        prefixes = [f"{scheme}://{host}/" for scheme in ("https", "http")]
        conn.execute(fediverse_followers.delete().where(sa.or_(
            *(followers.inbox.startswith(p, autoescape=True) for p in prefixes),
            *(followers.shared_inbox.startswith(p, autoescape=True) for p in prefixes))))
        conn.execute(fediverse_hosts.delete().where(fediverse_hosts.c.host == host))
        self.summary.dropped.add(host)
        self.summary.counts["dropped"] += dropped
        log.warning("%s", message("fediverse_host_given_up", host=host, error=error,
                                  since=self.config.activitypub.give_up_after))

    def _backoff(self, attempts: int, asked: timedelta | None) -> timedelta:
        wait = min(self.retry_base * 2 ** max(0, attempts - 1), MAX_BACKOFF)
        return max(wait, asked) if asked else wait


def judged(row: Row, answer: httpx.Response) -> Result:
    """The row's outcome from the instance's answer."""
    code = answer.status_code
    if 200 <= code < 300:
        return Result(row, "sent")
    error = f"{code} {answer.reason_phrase}: {answer.text[:_ERROR_CHARS]}".strip()
    if code == 410:
        return Result(row, "gone", error)
    if code == 429 or code >= 500:
        return Result(row, "deferred", error, _retry_after(answer.headers.get("retry-after", "")))
    return Result(row, "failed", error)


def _retry_after(value: str) -> timedelta | None:
    """Retry-After: seconds, or an HTTP date; None when absent or unreadable."""
    if value.strip().isdigit():
        return timedelta(seconds=int(value))
    try:
        return parsedate_to_datetime(value) - utcnow()
    except (TypeError, ValueError):
        return None


def keep_delivering(config: Callable[[], Config], store: Store, stop: threading.Event, wake: threading.Event,
                    words: Callable[[], Strings], look_every: timedelta = timedelta(seconds=30)) -> None:
    """The daemon's fediverse sender, until `stop`: a run whenever `wake` is set (a build queued activities), a
    retry falls due, or at least every `look_every` (rows another process queued). It logs in the language of
    `words` (the daemon's strings as the config last loaded them)."""
    while not stop.is_set():
        try:
            summary = deliver(config(), store, stop=stop)
            if summary.counts or summary.paused or summary.dropped:
                t = words()
                log.info("%s", t.text("fediverse_sending", counts=summary.line(t)))
            retry_at = next_retry(store)
        except Exception:
            log.exception("%s", words().text("fediverse_sending_failed_logged",
                                             seconds=round(look_every.total_seconds())))
            retry_at = None
        wait = look_every.total_seconds()
        if retry_at is not None:
            wait = min(wait, max(0.0, (retry_at - utcnow()).total_seconds()) + 0.05)
        deadline = time.monotonic() + wait
        # In slices, so that the daemon's stop is seen within one.
        while not stop.is_set() and not wake.wait(min(_STOP_SLICE, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                break
        wake.clear()
