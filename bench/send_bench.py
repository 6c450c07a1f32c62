"""Send benchmark: the real `feedpub digest send` against Postfix's smtp-sink, next to smtp-source.

    .venv/bin/python bench/send_bench.py                        # 10,000 subscribers, SQLite, 3 repeats,
                                                                # DKIM off and on
    .venv/bin/python bench/send_bench.py --dkim on --subscribers 2000 [--dkim-bits 1024]
    .venv/bin/python bench/send_bench.py --subscribers 100000 --repeat 1
    .venv/bin/python bench/send_bench.py --store-url postgresql://postgres@127.0.0.1:54329/feedpub_bench

Needs /usr/sbin/smtp-sink and smtp-source (Debian: `apt-get install -y postfix`). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from feedpub.config_file import load_config  # noqa: E402
from feedpub.schema import metadata, schema_version, subscribers  # noqa: E402
from feedpub.send.dispatch import send_due_issue  # noqa: E402
from feedpub.send.dkim import new_key  # noqa: E402
from feedpub.send.issue import due_slot  # noqa: E402
from feedpub.store import open_store  # noqa: E402

SINK = "/usr/sbin/smtp-sink"
SOURCE = "/usr/sbin/smtp-source"
SENDER = "news@blog.example.com"
# The issue's targets for the ratio to smtp-source, without and with DKIM signing.
TARGETS = {False: 0.5, True: 0.35}
WORDS = ("生成AI", "推論性能", "日本語NLP", "著作権", "データ基盤", "評価指標", "導入戦略", "半導体", "検索拡張生成",
         "モデル圧縮", "エージェント", "セキュリティ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--store-url", help="a PostgreSQL database to use (its feedpub tables are dropped)")
    parser.add_argument("--dkim", choices=["both", "off", "on"], default="both",
                        help="send unsigned, DKIM-signed ([smtp.dkim], rsa-sha256), or both in turn")
    parser.add_argument("--dkim-bits", type=int, default=2048,
                        help="the RSA key size to sign with (the RSA signature is most of signing's cost)")
    args = parser.parse_args()
    modes = {"both": [False, True], "off": [False], "on": [True]}[args.dkim]
    for tool in (SINK, SOURCE):
        if not Path(tool).exists():
            sys.exit(f"{tool} not found: install Postfix (DEBIAN_FRONTEND=noninteractive apt-get install -y postfix)")
    work = Path(tempfile.mkdtemp(prefix="feedpub-send-bench-"))
    port = _free_port()
    sink = subprocess.Popen([SINK, "-u", "nobody", f"127.0.0.1:{port}", "1024"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs: dict[bool, list[dict[str, float]]] = {dkim: [] for dkim in modes}
    private_key = new_key(args.dkim_bits)[0] if True in modes else b""
    try:
        _wait_for_port(port)
        for number in range(1, args.repeat + 1):
            for dkim in modes:
                run = _one_run(work, port, args, private_key if dkim else None)
                runs[dkim].append(run)
                print(f"run {number}, DKIM {'on' if dkim else 'off'}: feedpub {run['feedpub_msgs_per_s']:.0f} "
                      f"msgs/s, smtp-source {run['smtp_source_msgs_per_s']:.0f} msgs/s, ratio {run['ratio']:.2f}, "
                      f"queue {run['queue_seconds']:.2f} s, peak RSS {run['peak_rss_mb']:.0f} MB, message "
                      f"{run['message_bytes'] / 1024:.1f} KB", flush=True)
    finally:
        sink.terminate()
        sink.wait()
        shutil.rmtree(work, ignore_errors=True)
    for dkim in modes:
        _summary(args, runs[dkim], dkim)


def _summary(args: argparse.Namespace, runs: list[dict[str, float]], dkim: bool) -> None:
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0] if key != "message_bytes"}
    target = "PASS" if median["ratio"] >= TARGETS[dkim] else "FAIL"
    mode = f"on (rsa-sha256, {args.dkim_bits} bits)" if dkim else "off"
    print(f"\nDKIM {mode}: median of {len(runs)} ({args.subscribers} "
          f"subscribers, {args.connections} connections, {runs[0]['message_bytes'] / 1024:.1f} KB messages, store "
          f"{'PostgreSQL' if args.store_url else 'SQLite'}):")
    print(f"  feedpub      {median['feedpub_msgs_per_s']:8.0f} msgs/s   ({median['send_seconds']:.2f} s, "
          f"peak RSS {median['peak_rss_mb']:.0f} MB)")
    print(f"  smtp-source  {median['smtp_source_msgs_per_s']:8.0f} msgs/s   ({median['smtp_source_seconds']:.2f} s)")
    print(f"  ratio        {median['ratio']:8.2f}          (target ≥ {TARGETS[dkim]}) {target}")
    print(f"  queue        {median['queue_seconds']:8.2f} s        (compose + queue {args.subscribers} deliveries)")
    _write_results(args, runs, median, dkim)


def _one_run(work: Path, port: int, args: argparse.Namespace, dkim_key: bytes | None) -> dict[str, float]:
    site = work / "site"
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir()
    store_url = args.store_url or f"sqlite:///{site}/feedpub.db"
    _write_site(site, port, args.connections, store_url, dkim_key)
    if args.store_url:
        _drop_feedpub_tables(args.store_url)
    config = load_config(site / "feedpub.toml")
    store = open_store(config.store_url)
    _add_subscribers(store, args.subscribers)
    os.environ["FEEDPUB_SECRET"] = "bench-secret"

    before = time.perf_counter()
    queued = send_due_issue(config, store, datetime.now(UTC), send=False)
    queue_seconds = time.perf_counter() - before
    assert queued.issue is not None, queued.note
    message_bytes = len(_sample_message(config, store, queued.issue.id))
    store.engine.dispose()

    command = [str(ROOT / ".venv/bin/feedpub"), "--config", str(site / "feedpub.toml"), "-q", "digest", "send"]
    before = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    send_seconds = time.perf_counter() - before
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"feedpub digest send failed: {process.stderr.read().decode()}")
    counts = open_store(config.store_url).counts(queued.issue.id)
    if counts["sent"] != args.subscribers:
        sys.exit(f"only {counts['sent']} of {args.subscribers} sent: {counts}")

    before = time.perf_counter()
    subprocess.run([SOURCE, "-d", "-s", str(args.connections), "-m", str(args.subscribers), "-l", str(message_bytes),
                    "-f", SENDER, "-t", "reader@example.com", f"127.0.0.1:{port}"], check=True)
    source_seconds = time.perf_counter() - before
    feedpub_rate, source_rate = args.subscribers / send_seconds, args.subscribers / source_seconds
    return {"feedpub_msgs_per_s": feedpub_rate, "smtp_source_msgs_per_s": source_rate,
            "ratio": feedpub_rate / source_rate, "send_seconds": send_seconds, "smtp_source_seconds": source_seconds,
            "queue_seconds": queue_seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "message_bytes": message_bytes}


def _write_site(site: Path, port: int, connections: int, store_url: str, dkim_key: bytes | None) -> None:
    dkim = ""
    if dkim_key is not None:
        (site / "dkim.key").write_bytes(dkim_key)
        dkim = '[smtp.dkim]\ndomain = "blog.example.com"\nselector = "bench"\nkey_file = "dkim.key"\n'
    (site / "feedpub.toml").write_text(f"""
[site]
title = "ALLFORCES"
url = "https://blog.example.com"
language = "ja"
timezone = "Asia/Tokyo"
[digest]
from = "ALLFORCES編集部 <{SENDER}>"
max_posts = 7
excerpt_chars = 120
[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
connections = {connections}
rate_per_second = 1000000
[store]
url = "{store_url}"
[web]
public_url = "https://news.blog.example.com"
{dkim}""", encoding="utf-8")
    posts = site / "posts"
    posts.mkdir()
    rng = random.Random(1)
    # Dated before the slot that is due, so that the due issue covers them whatever the day of the week.
    config = load_config(site / "feedpub.toml")
    slot = due_slot(config, datetime.now(UTC))[1]
    for number in range(20):
        date = slot - timedelta(hours=6 * number + 1)
        words = rng.sample(WORDS, 3)
        body = "\n\n".join("".join(f"{rng.choice(WORDS)}の動向について、現場の事例をもとに整理します。"
                                   for _ in range(12)) for _ in range(4))
        (posts / f"{date:%Y-%m-%d}-post-{number}.md").write_text(
            f'---\ntitle: "{words[0]}と{words[1]}：{words[2]}の最前線 その{number}"\n'
            f"date: {date:%Y-%m-%d %H:%M:%S %z}\ncategories: [{words[0]}]\n---\n\n{body}\n", encoding="utf-8")


def _add_subscribers(store, count: int) -> None:
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        for first in range(0, count, 10_000):
            conn.execute(subscribers.insert(), [
                {"email": f"reader{i:06d}@example.com", "email_key": f"reader{i:06d}@example.com",
                 "name": f"読者{i}", "status": "active", "categories": [], "created_at": now, "confirmed_at": now}
                for i in range(first, min(count, first + 10_000))])


def _sample_message(config, store, issue_id: int) -> bytes:
    from feedpub.send.dispatch import Messages

    row = store.due_deliveries(issue_id, datetime.now(UTC))[0]
    return Messages(config, store)(row)


def _drop_feedpub_tables(url: str) -> None:
    engine = open_store(url).engine
    with engine.begin() as conn:
        metadata.drop_all(conn, tables=[t for t in metadata.sorted_tables if t is not schema_version])
        schema_version.drop(conn)
    engine.dispose()


def _write_results(args: argparse.Namespace, runs: list[dict[str, float]], median: dict[str, float],
                   dkim: bool) -> None:
    path = ROOT / "bench" / "send_results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    key = f"{args.subscribers}-{'postgresql' if args.store_url else 'sqlite'}-{args.connections}c"
    key += ("-dkim" if args.dkim_bits == 2048 else f"-dkim{args.dkim_bits}") if dkim else ""
    results["machine"] = {"cores": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()}
    results[key] = {"median": median, "runs": runs}
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"  wrote {path.relative_to(ROOT)} [{key}]")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"smtp-sink did not start on 127.0.0.1:{port}")


if __name__ == "__main__":
    main()
