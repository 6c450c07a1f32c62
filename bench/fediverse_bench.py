"""Fediverse delivery benchmark: one post published to 10,000 followers on 200 instances.

    .venv/bin/python bench/fediverse_bench.py                     # SQLite, then two `feedpub worker`s on PostgreSQL
    .venv/bin/python bench/fediverse_bench.py --followers 2000 --instances 50 --stores sqlite
    .venv/bin/python bench/fediverse_bench.py --pg-url postgresql+psycopg://postgres@127.0.0.1:54330/postgres

The instances are one separate process (`serve`): a Starlette app on `--instances` ports of 127.0.0.1, one
instance per port, whose inboxes verify every request's HTTP Signature and count what they received. Each scenario
starts from an empty store with the followers in it, writes one new post, builds the site, queues its activities
(`fediverse.publish`) and times until the instances have every delivery:

- `shared`: followers with their instance's shared inbox, as Mastodon's have: one delivery per instance (200).
- `inboxes`: followers without a shared inbox: one delivery per follower (10,000): signed requests per second.

On SQLite the deliveries are sent in this process (as the daemon's sender does), under cProfile for the
`inboxes` scenario: the cost per delivery and where it goes. On PostgreSQL two real `feedpub worker` processes
claim them; their CPU time per delivery is read from /proc. See bench/README.md.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from feedpub.config_file import load_config  # noqa: E402
from feedpub.fediverse import delivery, signatures  # noqa: E402
from feedpub.fediverse.ledger import Ledger  # noqa: E402
from feedpub.fediverse.publish import publish  # noqa: E402
from feedpub.fediverse.urls import key_id  # noqa: E402
from feedpub.schema import fediverse_followers  # noqa: E402
from feedpub.site.build import build_site  # noqa: E402
from feedpub.store import open_store  # noqa: E402

WORK = ROOT / "bench" / "work" / "fediverse"
RESULTS = ROOT / "bench" / "fediverse_results.json"
TARGET_SECONDS = 10.0
TARGET_PER_SECOND = 200.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="(internal) the instances")
    serve.add_argument("--instances", type=int, required=True)
    serve.add_argument("--keys", type=Path, required=True)
    parser.add_argument("--followers", type=int, default=10_000)
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--scenarios", default="shared,inboxes")
    parser.add_argument("--pg-url", default=os.environ.get("FEEDPUB_TEST_PG_URL", ""),
                        help="a PostgreSQL server where a database feedpub_bench_fediverse may be made")
    args = parser.parse_args()
    if args.command == "serve":
        _serve(args.instances, args.keys)
        return
    stores = args.stores.split(",")
    if "postgresql" in stores and not args.pg_url:
        sys.exit("--pg-url (or FEEDPUB_TEST_PG_URL) is needed for the PostgreSQL runs")
    results = []
    for store_kind in stores:
        for scenario in args.scenarios.split(","):
            found = _scenario(store_kind, scenario, args.followers, args.instances, args.pg_url)
            results.append(found)
            _print(found)
    # Runs of other stores or scenarios than this one's are kept (`--stores sqlite` leaves PostgreSQL's figures).
    kept = json.loads(RESULTS.read_text())["runs"] if RESULTS.exists() else []
    ran = {(r["store"], r["scenario"]) for r in results}
    runs = [r for r in kept if (r["store"], r["scenario"]) not in ran] + results
    RESULTS.write_text(json.dumps({"machine": _machine(), "runs": runs}, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwritten: {RESULTS.relative_to(ROOT)}")


def _scenario(store_kind: str, scenario: str, followers: int, instances: int, pg_url: str) -> dict:
    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "posts").mkdir(parents=True)
    url = f"sqlite:///{WORK / 'feedpub.db'}" if store_kind == "sqlite" else _fresh_database(pg_url)
    toml = WORK / "feedpub.toml"
    toml.write_text(f'[site]\ntitle = "ベンチ"\nurl = "https://blog.example.com"\nlanguage = "ja"\n'
                    f'timezone = "Asia/Tokyo"\n[store]\nurl = "{url}"\n'
                    '[web]\npublic_url = "https://news.example.org"\n'
                    '[activitypub]\nenabled = true\nallow_private_addresses = true\n', encoding="utf-8")
    config = load_config(toml)
    store = open_store(url)
    keys = WORK / "keys.json"
    keys.write_text(json.dumps({key_id(config, "blog"): Ledger(store).key_pair("blog").public_pem}))
    server = subprocess.Popen([sys.executable, __file__, "serve", "--instances", str(instances), "--keys", str(keys)],
                              stdout=subprocess.PIPE, text=True)
    workers: list[subprocess.Popen] = []
    try:
        ports = json.loads(server.stdout.readline())
        _add_followers(store, ports, followers, shared=scenario == "shared")
        _post(WORK / "posts", "older", datetime.now(UTC) - timedelta(days=30))
        build_site(config)
        publish(config, store)                 # the blog's past: recorded, not pushed
        if store_kind == "postgresql":
            workers = [_worker(toml) for _ in range(2)]
        _post(WORK / "posts", "new", datetime.now(UTC) - timedelta(minutes=5))
        build_site(config)
        started = time.time()
        queued = publish(config, store).queued
        profile = None
        served = _cpu_seconds(server.pid)
        if store_kind == "sqlite":
            profiler = cProfile.Profile() if scenario == "inboxes" else None
            cpu = time.process_time()
            if profiler:
                profiler.enable()      # the claiming thread: the store's part (the POSTs run in the pool's)
            summary = delivery.deliver(config, store)
            if profiler:
                profiler.disable()
            cpu = time.process_time() - cpu
            if profiler:
                profile = _where(profiler, summary.counts["sent"], cpu, _signing_ms(store))
        else:
            cpu = sum(_cpu_seconds(w.pid) for w in workers)
        stats = _wait_for(ports[0], queued, started)
        elapsed = stats["last"] - started
        served = _cpu_seconds(server.pid) - served
        if workers:
            cpu = sum(_cpu_seconds(w.pid) for w in workers) - cpu
        return {"store": store_kind, "scenario": scenario, "followers": followers, "instances": instances,
                "deliveries": queued, "received": stats["received"], "refused": stats["refused"],
                "seconds": round(elapsed, 3), "per_second": round(stats["received"] / elapsed, 1),
                "cpu_ms_per_delivery": round(cpu * 1000 / max(1, stats["received"]), 3) if cpu is not None else None,
                "workers": len(workers) or 1, "profile": profile,
                "instances_cpu_ms_per_request": round(served * 1000 / max(1, stats["received"]), 3)}
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)
        server.terminate()
        server.wait(timeout=10)
        store.engine.dispose()


def _add_followers(store, ports: list[int], followers: int, *, shared: bool) -> None:  # noqa: ANN001 - Store
    now = datetime.now(UTC)
    rows = []
    for n in range(followers):
        port = ports[n % len(ports)]
        actor = f"http://127.0.0.1:{port}/users/{n}"
        rows.append({"account": "blog", "actor": actor, "inbox": actor + "/inbox",
                     "shared_inbox": f"http://127.0.0.1:{port}/inbox" if shared else "", "host": "127.0.0.1",
                     "created_at": now})
    with store.writing() as conn:
        conn.execute(fediverse_followers.insert(), rows)


def _post(folder: Path, slug: str, when: datetime) -> None:
    (folder / f"{when:%Y-%m-%d}-{slug}.md").write_text(
        f"---\ntitle: \"記事 {slug}\"\ndate: {when.isoformat()}\ntags: [ベンチ]\n---\n"
        + "推論性能の**評価指標**について。" * 40 + "\n", encoding="utf-8")


def _worker(toml: Path) -> subprocess.Popen:
    # Its mail's unsubscribe links are signed: a worker refuses to start without the secret.
    worker = subprocess.Popen([str(ROOT / ".venv" / "bin" / "feedpub"), "--config", str(toml), "worker", "--idle",
                               "1s"], stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "FEEDPUB_SECRET": os.environ.get("FEEDPUB_SECRET", "bench")})
    for line in worker.stderr:
        if "worker started" in line:
            # Its log goes on being read, so that a full pipe never stops it.
            threading.Thread(target=worker.stderr.read, daemon=True).start()
            return worker
    sys.exit(f"feedpub worker did not start (exit {worker.wait()})")


def _wait_for(port: int, expected: int, started: float, limit: float = 300.0) -> dict:
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=10) as answer:
            stats = json.load(answer)
        if stats["received"] + stats["refused"] >= expected or time.time() - started > limit:
            return stats
        time.sleep(0.02)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _where(profiler: cProfile.Profile, deliveries: int, cpu: float, signing_ms: float) -> dict:
    """CPU ms per delivery: the store's (claims, marks: the claiming thread's profile), signing's (timed apart), and
    the rest of the POST (httpx, the pool's threads)."""
    store = sum(self_time for (file, _, _), (_, _, self_time, _, _) in pstats.Stats(profiler).stats.items()  # type: ignore[attr-defined]
                if any(mark in file for mark in ("sqlalchemy", "sqlite3", "psycopg", "fediverse/queue.py")))
    per = cpu * 1000 / max(1, deliveries)
    store_ms = store * 1000 / max(1, deliveries)
    return {"total": round(per, 3), "signing (RSA-SHA256, Digest)": round(signing_ms, 3),
            "store (claim, mark, record)": round(store_ms, 3),
            "HTTP POST and the rest (httpx, threads)": round(per - signing_ms - store_ms, 3)}


def _signing_ms(store, times: int = 200) -> float:  # noqa: ANN001 - Store
    """One signature's cost, as the sender makes it (2048-bit RSA over a 2 kB activity)."""
    key = Ledger(store).key_pair("blog")
    body = b"x" * 2048
    started = time.process_time()
    for n in range(times):
        signatures.sign_request(key, "https://news.example.org/ap/accounts/blog#main-key", "POST",
                                f"http://127.0.0.1:1/users/{n}/inbox", body)
    return (time.process_time() - started) * 1000 / times


def _fresh_database(pg_url: str) -> str:
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text('DROP DATABASE IF EXISTS "feedpub_bench_fediverse" WITH (FORCE)'))
        conn.execute(sa.text('CREATE DATABASE "feedpub_bench_fediverse"'))
    admin.dispose()
    return pg_url.rsplit("/", 1)[0] + "/feedpub_bench_fediverse"


def _serve(instances: int, keys: Path) -> None:
    """The instances, until terminated: their ports on the first line of stdout."""
    import uvicorn

    from tests.fediverse_inboxes import Inboxes, listening

    inboxes = Inboxes(json.loads(keys.read_text()))
    sockets = listening(instances)
    server = uvicorn.Server(uvicorn.Config(inboxes.app(), log_level="warning", lifespan="off", access_log=False))
    print(json.dumps([sock.getsockname()[1] for sock in sockets]), flush=True)
    server.run(sockets=sockets)


def _print(found: dict) -> None:
    """The figure each scenario is for: the time until every instance has the post (`shared`), the signed
    requests per second (`inboxes`)."""
    senders = f"{found['workers']} sender{'s' if found['workers'] > 1 else ''}"
    if found["scenario"] == "shared":
        verdict = "PASS" if found["seconds"] < TARGET_SECONDS else "FAIL"
        figure = f"every instance has it after {found['seconds']:.2f} s [{verdict} < {TARGET_SECONDS:g} s]"
    else:
        verdict = "PASS" if found["per_second"] >= TARGET_PER_SECOND else "FAIL"
        figure = (f"{found['per_second']:.0f} signed requests/s [{verdict} ≥ {TARGET_PER_SECOND:g}], "
                  f"all in {found['seconds']:.2f} s")
    print(f"{found['store']:10} {found['scenario']:8} {found['deliveries']:6} deliveries to {found['instances']} "
          f"instances ({senders}): {figure}; CPU {found['cpu_ms_per_delivery']} ms/delivery; received "
          f"{found['received']}, refused {found['refused']}")
    if found["profile"]:
        print("    CPU per delivery (ms): " + ", ".join(f"{group} {ms}" for group, ms in found["profile"].items()))
    print(f"    the instances (verifying each signature): {found['instances_cpu_ms_per_request']} ms CPU per request")


def _machine() -> dict:
    return {"cores": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
            "when": datetime.now(UTC).isoformat(timespec="seconds")}


if __name__ == "__main__":
    main()
