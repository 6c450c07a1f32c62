"""`make bench-hostile`: what hostile posts cost a running `feedpub run` (watch mode) on a small site.

    .venv/bin/python bench/hostile_bench.py                 # 50 posts, 5 normal saves, then 5 hostile rounds
    .venv/bin/python bench/hostile_bench.py --repeat 3

First the usual latency: a normal post saved (`generate.py --add-one`) until `public/feed.xml` on disk holds it.
Then each hostile round saves two new hostile posts — 20,000 unclosed links `[a](` (80 KB; Python-Markdown is
quadratic on it: minutes) and `{{ (1..150000000) | join: "," | size }}` (gigabytes) — and, 3 s later, a normal
post, timed the same way. The resident memory of the daemon and all its children (summed, sampled every 50 ms
from /proc) is watched throughout. Targets: the normal post's median latency during a hostile round at most the
usual median plus the render bound (`markup.RENDER_SECONDS`), and the peak under 1 GB. Everything on 127.0.0.1;
every wait is bounded. Always exits 0 when the measurements ran: a missed target is a result, printed as FAIL.
"""

from __future__ import annotations

import argparse
import html
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import generate
import httpx
import yaml
from run import machine

from feedpub.site.markup import RENDER_SECONDS

BENCH = Path(__file__).resolve().parent
FEEDPUB = Path(sys.executable).parent / "feedpub"
MEMORY_TARGET = 1024 ** 3
POLL_S = 0.02
LINKS = "---\ntitle: Unclosed links {n}\ndate: 2020-01-{n:02d} 09:00:00 +0900\ncategories: [hostile]\n---\n" \
        + "[a](" * 20_000 + "\n"
JOIN = ("---\ntitle: A join of 150 million {n}\ndate: 2020-02-{n:02d} 09:00:00 +0900\ncategories: [hostile]\n---\n"
        'Before {{{{ (1..150000000) | join: "," | size }}}} after\n')


class TreeMemory:
    """The peak of the summed resident memory of a process and all its descendants, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, tree_rss(self.pid))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def tree_rss(pid: int) -> int:
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            # children are listed under the thread that forked them (the daemon's build thread)
            children = [pid for task in Path(f"/proc/{current}/task").iterdir()
                        for pid in (task / "children").read_text().split()]
        except OSError:
            continue
        total += next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        pending.extend(int(child) for child in children)
    return total


class Daemon:
    def __init__(self, corpus: Path, port: int) -> None:
        self.log = corpus / "daemon.log"
        self.process = subprocess.Popen([str(FEEDPUB), "--config", str(corpus / "feedpub.toml"), "run"],
                                        cwd=corpus, stdout=subprocess.DEVNULL, stderr=self.log.open("wb"),
                                        env={**os.environ, "FEEDPUB_SECRET": "bench-secret"})
        self.memory = TreeMemory(self.process.pid)
        until(lambda: self._ready(port), 120, "feedpub run did not come up", self)

    def _ready(self, port: int) -> bool:
        try:
            built = httpx.get(f"http://127.0.0.1:{port}/healthz").json()["last_build"]
        except httpx.HTTPError:
            return False
        return bool(built) and "watching" in self.log.read_text()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.memory.stop()


def until(check: Callable[[], bool], timeout: float, what: str, daemon: Daemon | None = None) -> float:
    """Seconds until `check()` holds; stops the bench past `timeout`."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            log = daemon.log.read_text()[-3000:] if daemon else ""
            raise SystemExit(f"{what}: not within {timeout:g} s\n{log}")
        time.sleep(POLL_S)
    return time.monotonic() - began


def feed_holds(corpus: Path, text: str, feed: str = "feed.xml") -> Callable[[], bool]:
    marker = html.escape(text, quote=False).encode("utf-8")

    def check() -> bool:
        try:
            return marker in (corpus / "public" / feed).read_bytes()
        except FileNotFoundError:
            return False

    return check


def save_normal(corpus: Path, daemon: Daemon) -> float:
    """Seconds from saving a new newest post until feed.xml on disk holds it."""
    began = time.monotonic()
    path = generate.add_one(corpus)
    title = str(yaml.safe_load(path.read_text(encoding="utf-8").split("---\n")[1])["title"])
    until(feed_holds(corpus, title), 120, "the normal post in feed.xml", daemon)
    return time.monotonic() - began


def hostile_round(corpus: Path, daemon: Daemon, n: int) -> tuple[float, float]:
    """(the normal post's latency, seconds until both hostile posts were published)."""
    began = time.monotonic()
    (corpus / "posts" / f"2020-01-{n:02d}-links-{n}.md").write_text(LINKS.format(n=n), encoding="utf-8")
    (corpus / "posts" / f"2020-02-{n:02d}-join-{n}.md").write_text(JOIN.format(n=n), encoding="utf-8")
    time.sleep(3)
    normal = save_normal(corpus, daemon)
    hostile = [feed_holds(corpus, f"Unclosed links {n}", "categories/hostile/feed.xml"),
               feed_holds(corpus, f"A join of 150 million {n}", "categories/hostile/feed.xml")]
    until(lambda: all(check() for check in hostile), 120, "the hostile posts published", daemon)
    return normal, time.monotonic() - began


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5, help="normal saves, then hostile rounds (at most 28)")
    args = parser.parse_args(argv)
    repeat = min(args.repeat, 28)

    corpus = BENCH / "work" / f"hostile-{args.posts}"
    generate.generate(corpus, posts=args.posts, categories=5, tags=20, size_kb=6.0, seed=1)
    port = free_port()
    with (corpus / "feedpub.toml").open("a", encoding="utf-8") as config:
        config.write(f'rebuild_every = "1h"\n[web]\nlisten = "127.0.0.1:{port}"\n'
                     f'public_url = "http://127.0.0.1:{port}"\n')
    facts = machine()
    print(f"machine: {facts['usable_cores']} cores, {facts['cpu']}, Python {facts['python']}, "
          f"feedpub {facts['feedpub']}\nfeedpub run on {args.posts} posts in {corpus}", flush=True)
    daemon = Daemon(corpus, port)
    try:
        usual = []
        for number in range(repeat):
            usual.append(save_normal(corpus, daemon))
            print(f"  normal save {number + 1}/{repeat}: {usual[-1]:.2f} s", flush=True)
            time.sleep(1.0)
        quiet_peak = daemon.memory.peak
        rounds = []
        for number in range(1, repeat + 1):
            rounds.append(hostile_round(corpus, daemon, number))
            print(f"  hostile round {number}/{repeat}: normal post {rounds[-1][0]:.2f} s, hostile posts published "
                  f"{rounds[-1][1]:.2f} s after their save", flush=True)
            time.sleep(1.0)
    finally:
        peak = daemon.stop()
    named = daemon.log.read_text(encoding="utf-8")
    usual_median = statistics.median(usual)
    during = statistics.median(latency for latency, _ in rounds)
    target = usual_median + RENDER_SECONDS
    print(f"\nnormal post, median of {repeat}: usual {usual_median:.2f} s; saved 3 s after hostile posts "
          f"{during:.2f} s "
          f"(target ≤ {usual_median:.2f} + {RENDER_SECONDS:g} = {target:.2f} s) "
          f"{'PASS' if during <= target else 'FAIL  <<<'}")
    print(f"hostile posts published, median {statistics.median(h for _, h in rounds):.2f} s after their save; "
          f"named in the log: {named.count('links-1.md:6: warning:') + named.count('join-1.md:6: warning:')} of 2 "
          "(round 1)")
    print(f"peak RSS, daemon and children: {quiet_peak / 2**20:.0f} MB before the hostile posts, {peak / 2**20:.0f} MB "
          f"with them (target < {MEMORY_TARGET / 2**20:.0f} MB) {'PASS' if peak < MEMORY_TARGET else 'FAIL  <<<'}")


if __name__ == "__main__":
    main()
