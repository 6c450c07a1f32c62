"""Archive benchmark: what the digest archive adds to `feedpub build`, as separate processes.

    .venv/bin/python bench/archive_bench.py                      # 100 issues of 10 posts, 5 repeats
    .venv/bin/python bench/archive_bench.py --issues 300 --repeat 3

A one-post site whose SQLite store holds N archived issues (Japanese titles and excerpts). Each scenario
times `feedpub build` from spawn to exit and checks its "digest archive:" line:

    cold          no output folder, no cache: every page, the list and the feed rendered and written
    noop          nothing changed: the store's file is as the last build left it, so it is not opened
    store-write   a subscriber added since (the store's file changed): the store is read, nothing rendered
    one-page      one page deleted: that page alone is rendered and written
    no-archive    the same site with no store at all: the price of the archive step on any build

No target was set; the medians are printed for comparison between versions.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from feedpub.records import SubscriberInput  # noqa: E402
from feedpub.store import Store, open_store  # noqa: E402

CONFIG = """[site]
title = "Bench"
url = "https://blog.example.com"
language = "ja"
[web]
public_url = "https://news.example.com"
"""


def make_site(root: Path, issues: int, with_store: bool) -> Store | None:
    (root / "posts").mkdir(parents=True)
    (root / "feedpub.toml").write_text(CONFIG, encoding="utf-8")
    (root / "posts" / "2025-01-01-a.md").write_text('---\ntitle: "最初の記事"\n---\n\n本文です。\n', encoding="utf-8")
    if not with_store:
        return None
    store = open_store(f"sqlite:///{root}/.feedpub/feedpub.db")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(issues):
        slot = start + timedelta(weeks=i)
        entries = [{"title": f"推論性能の記事 {i}-{j}", "url": f"https://blog.example.com/{i}/{j}.html",
                    "date": slot.isoformat(), "categories": ["AI導入戦略"], "author": "編集部",
                    "excerpt_html": "<p>新しいモデルで推論性能が35%向上した。</p>",
                    "excerpt_text": "新しいモデルで推論性能が35%向上した。", "reading_minutes": 3, "picture": None}
                   for j in range(10)]
        store.create_issue(period=f"{slot:%Y-%m-%d-%H%M}", slot=slot, starts=slot - timedelta(weeks=1), ends=slot,
                           variants=[], recipients={}, archived=entries)
    return store


def build(root: Path) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "feedpub", "build"], cwd=root, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"feedpub build failed ({done.returncode}):\n{done.stderr}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("digest archive:")]
    return elapsed, lines[0] if lines else "(no archive line)"


def scenario(root: Path, repeat: int, before: Callable[[], object]) -> tuple[float, float, str]:
    runs = []
    for _ in range(repeat):
        before()
        runs.append(build(root))
    times = [elapsed for elapsed, _ in runs]
    return statistics.median(times), min(times), runs[-1][1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--issues", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="feedpub-archive-bench-") as work:
        root, bare = Path(work) / "site", Path(work) / "bare"
        store = make_site(root, args.issues, with_store=True)
        make_site(bare, args.issues, with_store=False)
        assert store is not None
        newest = root / "public" / "digests" / store.archived_issues()[-1].period

        def fresh() -> None:
            shutil.rmtree(root / "public", ignore_errors=True)
            shutil.rmtree(root / ".feedpub" / "cache", ignore_errors=True)

        def subscriber() -> None:
            store.save_subscribers([SubscriberInput(f"reader{time.monotonic_ns()}@example.com")], status="active")

        plans: list[tuple[str, Path, Callable[[], object]]] = [
            ("cold", root, fresh), ("noop", root, lambda: None), ("store-write", root, subscriber),
            ("one-page", root, lambda: (newest / "index.html").unlink()), ("no-archive", bare, lambda: None)]
        build(root)
        build(bare)
        print(f"feedpub build, {args.issues} archived issues of 10 posts, median of {args.repeat} (min)")
        for name, folder, before in plans:
            median, fastest, line = scenario(folder, args.repeat, before)
            print(f"  {name:12s} {median:6.3f} s ({fastest:.3f})   {line}")
        store.engine.dispose()


if __name__ == "__main__":
    main()
