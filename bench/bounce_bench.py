"""Bounce benchmark: the real `feedpub bounces poll` reading a Maildir of returned mail into the store.

    .venv/bin/python bench/bounce_bench.py                      # 10,000 messages, SQLite, 3 repeats
    .venv/bin/python bench/bounce_bench.py --messages 2000 --repeat 1

Each repetition builds a fresh store (10,000 subscribers, one issue, every delivery sent) and a Maildir
of one message per delivery, returned to its VERP address: 60% hard DSNs (Postfix, Gmail), 20% soft
(greylisting, a full mailbox in Exim's words), 10% ARF complaints, 10% vacation replies. Then it times
`feedpub bounces poll` as a separate process (interpreter start and imports count) and checks what it
did: every hard bounce and complaint suppressed, every message moved. Target (issue 12): ≥ 500/s.
"""

from __future__ import annotations

import argparse
import mailbox
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from feedpub.config_file import load_config  # noqa: E402
from feedpub.records import StoredVariant  # noqa: E402
from feedpub.schema import deliveries, subscribers  # noqa: E402
from feedpub.send import verp  # noqa: E402
from feedpub.store import open_store  # noqa: E402

FIXTURES = ROOT / "tests" / "send" / "fixtures" / "bounces"
SECRET = "bench-secret"
RETURN_PATH = "bounces@blog.example.com"
TARGET = 500.0
# fixture, the reader it names, share of the messages
MIX = [("postfix-user-unknown.eml", "taro.yamada@example.jp", 4), ("gmail-no-such-user-ja.eml",
       "hanako.suzuki@gmail.com", 2), ("postfix-greylisted-delayed.eml", "ben@example.com", 1),
       ("exim-quota-exceeded.eml", "chihiro@example.jp", 1), ("arf-abuse.eml", "mina@mailbox.example", 1),
       ("vacation-rfc3834-ja.eml", "hanako@example.jp", 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rates = []
    for number in range(1, args.repeat + 1):
        work = Path(tempfile.mkdtemp(prefix="feedpub-bounce-bench-"))
        try:
            config = _prepare(work, args.messages)
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "feedpub", "-q", "--config", str(config), "bounces", "poll"],
                                  env={**os.environ, "FEEDPUB_SECRET": SECRET}, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
            seconds = time.perf_counter() - started
            if done.returncode != 0:
                sys.exit(f"feedpub bounces poll failed ({done.returncode}): {done.stderr}")
            _check(work, config, args.messages)
            rates.append(args.messages / seconds)
            print(f"run {number}: {args.messages} messages in {seconds:.2f} s = {rates[-1]:.0f}/s", flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    median = statistics.median(rates)
    print(f"\nbounces poll, {args.messages} messages from a Maildir into SQLite: median {median:.0f}/s "
          f"(min {min(rates):.0f}, max {max(rates):.0f}) — target ≥ {TARGET:.0f}/s: "
          f"{'PASS' if median >= TARGET else 'FAIL'}")
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


def _prepare(work: Path, count: int) -> Path:
    config_path = work / "feedpub.toml"
    config_path.write_text(f'[site]\nurl = "https://blog.example.com"\n[smtp]\nreturn_path = "{RETURN_PATH}"\n'
                           f'[bounces]\nmailbox = "Maildir"\n', encoding="utf-8")
    config = load_config(config_path)
    store = open_store(config.store_url)
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        conn.execute(subscribers.insert(), [
            {"email": f"reader{i:05d}@example.com", "email_key": f"reader{i:05d}@example.com", "name": "",
             "status": "active", "categories": [], "created_at": now, "confirmed_at": now} for i in range(count)])
    issue = store.create_issue(period="2025-12-15-0900", slot=now, starts=now - timedelta(days=7), ends=now,
                               variants=[StoredVariant("", "今週", "<p>本文</p>", "本文")],
                               recipients=dict.fromkeys(store.active_recipients(), ""))
    with store.engine.begin() as conn:
        conn.execute(deliveries.update().values(status="sent"))
        rows = conn.execute(sa.select(deliveries.c.id, subscribers.c.email)
                            .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                            .where(deliveries.c.issue_id == issue.id).order_by(deliveries.c.id)).all()
    store.engine.dispose()
    templates = [(FIXTURES / name).read_bytes().replace(reader.encode(), b"%(reader)s")
                 .replace(RETURN_PATH.encode(), b"%(envelope)s") for name, reader, share in MIX for _ in range(share)]
    box = mailbox.Maildir(work / "Maildir", create=True)
    for index, (delivery_id, email) in enumerate(rows):
        raw = templates[index % len(templates)]
        envelope = verp.return_path(RETURN_PATH, SECRET, delivery_id)
        raw = raw.replace(b"%(reader)s", email.encode()).replace(b"%(envelope)s", envelope.encode())
        raw = b"Message-ID: <bench-%d@mx.example>\n" % index + b"\n".join(
            line for line in raw.split(b"\n") if not line.lower().startswith(b"message-id:"))
        box.add(raw)
    return config_path


def _check(work: Path, config_path: Path, count: int) -> None:
    store = open_store(load_config(config_path).store_url)
    with store.engine.connect() as conn:
        recorded = conn.scalar(sa.text("SELECT count(*) FROM bounces"))
    suppressed = len(store.suppressed())
    store.engine.dispose()
    box = mailbox.Maildir(work / "Maildir", create=False)
    expected = sum(share for _, _, share in MIX[:2] + MIX[4:5]) / sum(share for *_, share in MIX)
    assert recorded == count, f"{recorded} recorded, expected {count}"
    assert len(box) == 0 and len(box.get_folder("feedpub-processed")) == count, "every message moved"
    assert abs(suppressed - count * expected) <= len(MIX) * 2, f"{suppressed} suppressed"


if __name__ == "__main__":
    main()
