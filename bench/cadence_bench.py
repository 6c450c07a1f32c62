"""Reader cadences at scale: 100,000 readers spread over 30 time zones and the four cadences.

    .venv/bin/python bench/cadence_bench.py                  # SQLite; and PostgreSQL when FEEDPUB_TEST_PG_URL is set
    .venv/bin/python bench/cadence_bench.py --readers 10000 --repeat 1 --idle 10     # a quick look

For each store, `--repeat` times on a fresh store of `--readers` readers (cadence and zone round-robin, a
third with one category as their topic) and a site of 20 posts of the past week:

- **post**: one post appears; after `digest.post_delay`, the time `send_due_posts` takes to compose its mail
  once per variant and queue a delivery (and a ledger row) for each of its `post` readers (target 2 s);
- **day**: every slot of one local day in every zone in use, each composed once per variant and queued as the
  daemon's job does at that slot: the day is a Monday and `digest.monthly_on`'s day, so the daily, weekly and
  monthly streams of 30 zones all fall due (target 10 s in all);

then, once, **idle**: `feedpub run` on that store (`send_in_daemon = false`: it composes and queues, sends
nothing), left to settle, and its CPU time over `--idle` seconds of a quiet day (no slot due) as a share of
one core (target 2%). Prints medians (and min, max). A measurement: it exits 0 even when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa
import time_machine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from feedpub.config_file import load_config  # noqa: E402
from feedpub.send import cadences  # noqa: E402
from feedpub.send.dispatch import Reading, send_due_issue  # noqa: E402
from feedpub.send.reader_mail import send_due_posts, sight_posts, streams_in_use  # noqa: E402
from feedpub.site.posts import collect  # noqa: E402
from feedpub.store import Store, bulk_insert, open_store  # noqa: E402

ZONES = ("Pacific/Honolulu", "America/Anchorage", "America/Los_Angeles", "America/Denver", "America/Chicago",
         "America/New_York", "America/Halifax", "America/Sao_Paulo", "Atlantic/Azores", "UTC", "Europe/London",
         "Europe/Berlin", "Europe/Helsinki", "Europe/Moscow", "Asia/Dubai", "Asia/Karachi", "Asia/Kolkata",
         "Asia/Kathmandu", "Asia/Dhaka", "Asia/Bangkok", "Asia/Shanghai", "Asia/Tokyo", "Australia/Adelaide",
         "Australia/Sydney", "Pacific/Noumea", "Pacific/Auckland", "Pacific/Tongatapu", "Pacific/Kiritimati",
         "America/Mexico_City", "Africa/Lagos")
CADENCES = ("post", "daily", "weekly", "monthly")
CATEGORIES = ("AI導入戦略", "news", "法務", "研究")
DAY = datetime(2026, 12, 7, tzinfo=UTC)          # a Monday, and digest.monthly_on's day
TARGETS = {"post": 2.0, "day": 10.0}
SECRET = "cadence-bench-secret"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of the daemon's idle CPU measured")
    args = parser.parse_args()
    os.environ["FEEDPUB_SECRET"] = SECRET
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, {platform.system()} {platform.release()}")
    print(f"data: {args.readers:,} readers, {len(ZONES)} zones, {len(CADENCES)} cadences, 20 posts; "
          f"{args.repeat} runs per figure\n")
    with tempfile.TemporaryDirectory(prefix="feedpub-cadence-bench-") as work:
        run("SQLite", Path(work), lambda: f"sqlite:///{Path(work) / f'{uuid.uuid4().hex}.db'}", args)
        server = os.environ.get("FEEDPUB_TEST_PG_URL")
        if not server:
            print("PostgreSQL: skipped (FEEDPUB_TEST_PG_URL is not set)")
            return
        admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        made: list[str] = []

        def database() -> str:
            name = f"feedpub_cadence_bench_{uuid.uuid4().hex[:8]}"
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            made.append(name)
            return sa.make_url(server).set(database=name).render_as_string(False)

        try:
            run("PostgreSQL", Path(work), database, args)
        finally:
            with admin.connect() as conn:
                for name in made:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


def run(kind: str, work: Path, new_url, args: argparse.Namespace) -> None:
    figures: dict[str, list[float]] = {"post": [], "day": []}
    queued: dict[str, int] = {}
    for _ in range(args.repeat):
        site = write_site(work / uuid.uuid4().hex, new_url())
        config = load_config(site / "feedpub.toml")
        store = open_store(config.store_url)
        fill(store, args.readers)
        seconds, rows = post_scenario(site, config, store)
        figures["post"].append(seconds)
        queued["post"] = rows
        seconds, rows = day_scenario(config, store)
        figures["day"].append(seconds)
        queued["day"] = rows
        store.engine.dispose()
    print(f"{kind}")
    print(f"  {'figure':<52} {'median':>8} {'min':>8} {'max':>8}  target")
    for name, label in (("post", f"one post: its {queued['post']:,} post readers queued"),
                        ("day", f"a day of all slots: {queued['day']:,} deliveries queued")):
        times = figures[name]
        median = statistics.median(times)
        verdict = "PASS" if median <= TARGETS[name] else "FAIL"
        print(f"  {label:<52} {median:>7.2f}s {min(times):>7.2f}s {max(times):>7.2f}s  {verdict} (≤ {TARGETS[name]} s)")
    share = idle_cpu(site, args.idle)
    print(f"  {'daemon idle CPU between slots':<52} {share:>7.2f}%{'':>18}  {'PASS' if share < 2 else 'FAIL'} (< 2%)\n")


def write_site(root: Path, url: str) -> Path:
    (root / "posts").mkdir(parents=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (root / "feedpub.toml").write_text(f"""[site]
title = "Bench"
url = "https://blog.example.com"
timezone = "Asia/Tokyo"
[store]
url = "{url}"
[digest]
cadences = ["post", "daily", "weekly", "monthly"]
schedule = "mon 09:00"
daily_at = "07:00"
monthly_on = "7 08:00"
post_delay = "10m"
send_in_daemon = false
[web]
listen = "127.0.0.1:{port}"
public_url = "https://news.example.com"
[smtp]
host = "127.0.0.1"
port = 9
security = "none"
""", encoding="utf-8")
    for i in range(20):
        write_post(root, i, DAY - timedelta(days=7) + timedelta(hours=8 * i))
    return root


def write_post(root: Path, i: int, date: datetime) -> None:
    (root / "posts" / f"{date:%Y-%m-%d}-post{i}.md").write_text(
        f"---\ntitle: \"記事 {i}: 推論性能の話\"\ndate: {date:%Y-%m-%d %H:%M:%S %z}\n"
        f"categories: [{CATEGORIES[i % 4]}]\n"
        f"---\n本文 {i}。推論性能35%向上の話。\n\n" + "段落。" * 200 + "\n", encoding="utf-8")


def fill(store: Store, count: int) -> None:
    """The readers as plain rows (the column types' per-row conversion would dominate the fill)."""
    joined = (DAY - timedelta(days=60)).replace(tzinfo=None)

    def people() -> Iterator[tuple]:
        for i in range(count):
            topics = [f"categories/{CATEGORIES[i % 4]}"] if i % 3 == 0 else []
            yield (i + 1, f"reader{i:06d}@example.com", f"reader{i:06d}@example.com", "", "active",
                   json.dumps(topics), CADENCES[i % 4], ZONES[(i // 4) % len(ZONES)], joined, joined)

    with store.engine.begin() as conn:
        bulk_insert(conn, "subscribers", ("id", "email", "email_key", "name", "status", "topics", "cadence",
                                          "timezone", "created_at", "confirmed_at"), people())
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('subscribers', 'id'), "
                                 "(SELECT max(id) FROM subscribers))"))
            conn.execute(sa.text("ANALYZE"))


def post_scenario(site: Path, config, store: Store) -> tuple[float, int]:
    """One post appears (the site's posts were seen before it); its mail's compose and queue, timed."""
    seen = DAY - timedelta(hours=12)
    sight_posts(config, store, collect(config, now=seen).posts, seen)
    write_post(site, 99, seen)
    sight_posts(config, store, collect(config, now=seen + timedelta(minutes=1)).posts, seen + timedelta(minutes=1))
    began = time.perf_counter()
    (done,) = send_due_posts(config, store, seen + timedelta(minutes=12), send=False)
    seconds = time.perf_counter() - began
    return seconds, sum(store.counts(done.issue.id).values())


def day_scenario(config, store: Store) -> tuple[float, int]:
    """Every slot of the day, in time order, each at its own minute as the daemon's job runs it."""
    slots = []
    for kind, zone in streams_in_use(config, store):
        tz = cadences.zone_of(config, zone)
        slot = cadences.next_slot(config, kind, tz, DAY - timedelta(hours=14))
        while slot < DAY + timedelta(hours=14):
            slots.append((slot, (kind, zone)))
            slot = cadences.next_slot(config, kind, tz, slot)
    began = time.perf_counter()
    issues = []
    reading = Reading()        # as the daemon keeps it between its runs
    for slot, stream in sorted(slots):
        with time_machine.travel(slot + timedelta(minutes=1), tick=False):
            done = send_due_issue(config, store, slot + timedelta(minutes=1), stream=stream, send=False,
                                  reading=reading)
        if done.issue is not None:
            issues.append(done.issue.id)
    seconds = time.perf_counter() - began
    return seconds, sum(sum(store.counts(i).values()) for i in issues)


def idle_cpu(site: Path, seconds: float) -> float:
    """`feedpub run`'s CPU time over `seconds` once it has settled, as a percentage of one core."""
    config = load_config(site / "feedpub.toml")
    env = {**os.environ, "FEEDPUB_SECRET": SECRET, "FEEDPUB_SMTP_PASSWORD": "unused"}
    daemon = subprocess.Popen([sys.executable, "-m", "feedpub", "--config", str(site / "feedpub.toml"), "run",
                               "--no-watch"], cwd=site, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:    # settled: built, and the start-up jobs done
            try:
                if httpx.get(f"http://{config.web.listen}/healthz").json().get("last_build"):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        time.sleep(20)
        before, began = cpu_seconds(daemon.pid), time.monotonic()
        time.sleep(seconds)
        return 100 * (cpu_seconds(daemon.pid) - before) / (time.monotonic() - began)
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
