"""Dashboard benchmark: the /admin pages over a large store, timed in-process (server time).

    .venv/bin/python bench/admin_bench.py                     # SQLite; and PostgreSQL when FEEDPUB_TEST_PG_URL is set
    .venv/bin/python bench/admin_bench.py --subscribers 10000 --issues 10 --repeat 5    # a quick look

Fills a store with `--subscribers` subscribers (created over two years, 1 in 20 unsubscribed, 1 in 50
suppressed), `--issues` issues and `--deliveries` delivery rows spread over them, then asks the app for
the overview, the newest issue's page and subscriber searches through Starlette's TestClient with a
signed-in session, `--repeat` times each. Prints the median, min and max milliseconds per page against
the target (150 ms median). A measurement: it exits 0 even when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from starlette.testclient import TestClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from feedpub import accounts  # noqa: E402
from feedpub.config_file import load_config  # noqa: E402
from feedpub.store import Store, bulk_insert, open_store  # noqa: E402
from feedpub.web.app import create_app  # noqa: E402

TARGET_MS = 150.0
SECRET = "admin-bench-secret"
ACCOUNT, PASSWORD = "bench", "bench password 1"
CATEGORIES = ("AI導入戦略", "news", "法務", "研究")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--issues", type=int, default=100)
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    os.environ["FEEDPUB_SECRET"] = SECRET
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, {platform.system()} {platform.release()}")
    print(f"data: {args.subscribers:,} subscribers, {args.issues} issues, {args.deliveries:,} deliveries; "
          f"{args.repeat} requests per page; target {TARGET_MS:.0f} ms median server time\n")
    with tempfile.TemporaryDirectory(prefix="feedpub-admin-bench-") as work:
        run("SQLite", Path(work), "sqlite:///" + str(Path(work) / "feedpub.db"), args)
        server = os.environ.get("FEEDPUB_TEST_PG_URL")
        if server:
            name = f"feedpub_admin_bench_{uuid.uuid4().hex[:8]}"
            admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            try:
                run("PostgreSQL", Path(work), sa.make_url(server).set(database=name).render_as_string(False), args)
            finally:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()
        else:
            print("PostgreSQL: skipped (FEEDPUB_TEST_PG_URL is not set)")


def run(kind: str, work: Path, url: str, args: argparse.Namespace) -> None:
    toml = work / f"feedpub-{kind.lower()}.toml"
    toml.write_text(f'[site]\ntitle = "Bench"\ntimezone = "Asia/Tokyo"\n[store]\nurl = "{url}"\n'
                    f'[web]\npublic_url = "https://news.example.com"\n', encoding="utf-8")
    config = load_config(toml)
    store = open_store(config.store_url)
    started = time.perf_counter()
    periods = fill(store, args.subscribers, args.issues, args.deliveries)
    print(f"{kind}: filled in {time.perf_counter() - started:.0f} s")
    accounts.add_user(store, ACCOUNT, PASSWORD)
    app = create_app(config, store, send_confirmation=lambda *mail: None, categories=lambda: list(CATEGORIES),
                     health=lambda: {"last_build": None})
    pages = {
        "overview": "/admin",
        "issue page (newest, 10,000 rows)": f"/admin/issues/{periods[-1]}",
        "search: address": "/admin/subscribers?q=reader0099",
        "search: name (日本語)": "/admin/subscribers?q=読者 1234",
        "filter: category + suppressed": "/admin/subscribers?category=法務&suppressed=no",
        "subscribers, page 1,000": f"/admin/subscribers?after={args.subscribers // 2}",
    }
    with TestClient(app, base_url="https://testserver") as client:
        login(client)
        print(f"{'page':<36} {'median':>8} {'min':>8} {'max':>8}  target")
        for name, path in pages.items():
            times = []
            for _ in range(args.repeat):
                began = time.perf_counter()
                answer = client.get(path)
                times.append((time.perf_counter() - began) * 1000)
                assert answer.status_code == 200, (path, answer.status_code)
            median = statistics.median(times)
            verdict = "PASS" if median <= TARGET_MS else "FAIL"
            print(f"{name:<36} {median:>6.1f}ms {min(times):>6.1f}ms {max(times):>6.1f}ms  {verdict}")
    print()
    store.engine.dispose()


def fill(store: Store, count: int, issues: int, rows: int) -> list[str]:
    """Bulk rows, as plain tuples (the column types' per-row conversion would dominate the fill); JSON as
    the store writes it (json.dumps, non-ASCII escaped)."""
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    start = now - timedelta(days=730)
    step = timedelta(days=730) / count

    def people() -> Iterator[tuple]:
        for i in range(count):
            joined = start + step * i
            left = joined + timedelta(days=30) if i % 20 == 0 else None
            yield (i + 1, f"reader{i:06d}@example.com", f"reader{i:06d}@example.com", f"読者 {i}",
                   "unsubscribed" if left else "active",
                   json.dumps([f"categories/{CATEGORIES[i % 4]}"] if i % 3 else []), joined,
                   joined, left)

    insert(store, "subscribers", ("id", "email", "email_key", "name", "status", "topics", "created_at",
                                  "confirmed_at", "unsubscribed_at"), people())
    insert(store, "suppressions", ("email_key", "reason", "created_at"),
           ((f"reader{i:06d}@example.com", "550 no such user", start + step * i) for i in range(0, count, 50)))
    per_issue = rows // issues
    periods = []
    for n in range(issues):
        slot = now - timedelta(weeks=issues - n)
        periods.append(f"{slot:%Y-%m-%d}-0900")
    insert(store, "issues", ("id", "period", "slot", "starts", "ends", "created_at"),
           ((n + 1, period, now - timedelta(weeks=issues - n), now - timedelta(weeks=issues - n + 1),
             now - timedelta(weeks=issues - n), now - timedelta(weeks=issues - n)) for n, period in enumerate(periods)))
    insert(store, "issue_variants", ("issue_id", "key", "subject", "html", "text"),
           ((n + 1, "", f"Weekly {period}", f'<h2 class="title"><a href="https://b.example/{n}">Post {n}</a></h2>',
             "text") for n, period in enumerate(periods)))

    def sends() -> Iterator[tuple]:
        number = 0
        for n in range(issues):
            sent_at = now - timedelta(weeks=issues - n)
            for k in range(per_issue):
                number += 1
                status = "failed" if k % 97 == 0 else "deferred" if k % 211 == 0 else "sent"
                if n == issues - 1 and k > per_issue * 0.7:
                    status = "queued"
                yield (number, n + 1, (k * 7 + n) % count + 1, "", status, 1, "250 ok" if status == "sent" else
                       "550 5.1.1 user unknown", sent_at, sent_at + timedelta(seconds=k * 0.36))

    insert(store, "deliveries", ("id", "issue_id", "subscriber_id", "variant_key", "status", "attempts", "last_reply",
                                 "created_at", "updated_at"), sends())
    if store.engine.dialect.name == "postgresql":
        with store.engine.begin() as conn:
            for table in ("subscribers", "issues", "deliveries"):
                conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                     f"(SELECT max(id) FROM {table}))"))
        # The state autovacuum keeps a live store in: statistics, and the visibility map index-only scans need.
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
    else:
        with store.engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
    return periods


def insert(store: Store, table: str, columns: tuple[str, ...], rows: Iterator[tuple]) -> None:
    with store.engine.begin() as conn:
        bulk_insert(conn, table, columns, rows)


def login(client: TestClient) -> None:
    form = client.get("/admin/login")
    nonce = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    answer = client.post("/admin/login", data={"csrf": nonce, "name": ACCOUNT, "password": PASSWORD},
                         follow_redirects=False)
    assert answer.status_code == 303, answer.text


if __name__ == "__main__":
    main()
