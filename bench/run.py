"""`make bench`: time the real `feedpub build` on a generated corpus, as separate processes.

    .venv/bin/python bench/run.py                       # 10,000 posts, every scenario, 5 repetitions
    .venv/bin/python bench/run.py --posts 100000 --scenarios cold,noop
    .venv/bin/python bench/run.py --posts 1000 --repeat 2 --command check

Scenarios (see bench/README.md): cold (fresh output folder and fresh .feedpub/ cache before every
repetition), noop (nothing changed since the last build), edit (the newest post's body changed), add
(one new newest post). Each repetition is one `feedpub --config … build` process; its wall time runs
from spawn to exit (interpreter start included) and its peak RSS is the child's own ru_maxrss from
os.wait4. Prints a table and writes bench/results.json. Always exits 0 when the measurements ran:
a missed target is a result, printed as FAIL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import generate

BENCH = Path(__file__).resolve().parent
WORK = BENCH / "work"
RESULTS = BENCH / "results.json"
# The feedpub console script next to the interpreter running us: `.venv/bin/python bench/run.py`
# measures `.venv/bin/feedpub`.
FEEDPUB = Path(sys.executable).parent / "feedpub"
SCENARIOS = ("cold", "noop", "edit", "add")
# From issue 6: (wall seconds, peak RSS MB or None) per corpus size and scenario.
TARGETS: dict[int, dict[str, tuple[float, float | None]]] = {
    10_000: {"cold": (5.0, 300.0), "noop": (0.5, None), "edit": (1.0, None), "add": (1.0, None)},
    100_000: {"cold": (60.0, None), "noop": (3.0, None)},
}


@dataclass(frozen=True)
class Run:
    wall_s: float
    peak_rss_mb: float
    exit_code: int


@dataclass(frozen=True)
class Summary:
    scenario: str
    runs: list[Run]
    median_s: float
    min_s: float
    max_s: float
    median_rss_mb: float
    target_s: float | None
    target_rss_mb: float | None
    passed: bool | None     # None: no target for this corpus size


def measure(command: list[str]) -> Run:
    """Run `command` to completion; its wall time and its own peak RSS (not the max over all our
    children, which is what getrusage(RUSAGE_CHILDREN) would give)."""
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=log, stderr=log)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = code = os.waitstatus_to_exitcode(status)
        if code not in (0, 1):
            log.seek(0)
            tail = log.read().decode(errors="replace").splitlines()[-15:]
            print(f"  ! exit {code}: {' '.join(command)}\n    " + "\n    ".join(tail), file=sys.stderr)
    return Run(wall_s=wall, peak_rss_mb=usage.ru_maxrss / 1024, exit_code=code)  # ru_maxrss is in KiB on Linux


def preparations(corpus: Path) -> dict[str, Callable[[], object]]:
    """What happens before every repetition of each scenario (not timed)."""

    def fresh() -> None:
        for folder in ("public", ".feedpub"):
            shutil.rmtree(corpus / folder, ignore_errors=True)

    return {
        "cold": fresh,
        "noop": lambda: None,
        "edit": lambda: generate.touch_one(corpus),
        "add": lambda: generate.add_one(corpus),
    }


def summarise(name: str, runs: list[Run], target: tuple[float, float | None] | None) -> Summary:
    walls = [r.wall_s for r in runs]
    median = statistics.median(walls)
    rss = statistics.median(r.peak_rss_mb for r in runs)
    target_s, target_rss = target if target else (None, None)
    passed = None
    if target_s is not None:
        passed = (median <= target_s and (target_rss is None or rss <= target_rss)
                  and all(r.exit_code == 0 for r in runs))
    return Summary(name, runs, median, min(walls), max(walls), rss, target_s, target_rss, passed)


def machine() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        version = metadata.version("feedpub")
    except metadata.PackageNotFoundError:
        version = "not installed"
    return {"cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)), "cpu": cpu,
            "python": platform.python_version(), "implementation": platform.python_implementation(),
            "system": f"{platform.system()} {platform.release()}", "feedpub": version}


def print_table(summaries: list[Summary]) -> None:
    header = f"{'scenario':<10}{'median s':>10}{'min s':>9}{'max s':>9}{'peak RSS MB':>13}  {'target':<18}result"
    print(header)
    print("-" * len(header))
    for s in summaries:
        target = "—" if s.target_s is None else f"≤ {s.target_s:g} s"
        if s.target_rss_mb is not None:
            target += f", ≤ {s.target_rss_mb:g} MB"
        result = {None: "-", True: "PASS", False: "FAIL  <<<"}[s.passed]
        if any(r.exit_code for r in s.runs):
            result += f"  (exit codes {sorted({r.exit_code for r in s.runs})})"
        print(f"{s.scenario:<10}{s.median_s:>10.3f}{s.min_s:>9.3f}{s.max_s:>9.3f}{s.median_rss_mb:>13.1f}  "
              f"{target:<18}{result}")


def save(posts: int, facts: dict[str, object], command: str, summaries: list[Summary]) -> None:
    """Results per corpus size, so a 100,000-post run does not erase the 10,000-post figures."""
    try:
        results = json.loads(RESULTS.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        results = {}
    corpora = results.get("corpora", {})
    corpora[str(posts)] = {"command": command, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                           "scenarios": {s.scenario: asdict(s) for s in summaries}}
    RESULTS.write_text(json.dumps({"machine": facts, "corpora": corpora}, ensure_ascii=False, indent=2) + "\n",
                       encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--categories", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated, in this order: {','.join(SCENARIOS)}")
    parser.add_argument("--command", choices=("build", "check"), default="build",
                        help="the feedpub command to time (check: before `build` exists)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown or not chosen:
        parser.error(f"unknown scenario {', '.join(sorted(unknown))}; expected some of {','.join(SCENARIOS)}")
    if not FEEDPUB.exists():
        parser.error(f"{FEEDPUB} not found; run `make bench` (or `pip install -e .` in this interpreter's venv)")

    facts = machine()
    print(f"machine: {facts['cores']} cores ({facts['usable_cores']} usable), {facts['cpu']}, "
          f"Python {facts['python']}, {facts['system']}, feedpub {facts['feedpub']}")
    corpus = WORK / f"corpus-{args.posts}"
    started = time.perf_counter()
    generate.generate(corpus, posts=args.posts, categories=args.categories, tags=200, size_kb=6.0, seed=1)
    prepare = preparations(corpus)
    prepare["cold"]()
    print(f"corpus: {args.posts} posts, {args.categories} categories in {corpus} "
          f"(generated in {time.perf_counter() - started:.1f} s)")

    command = [str(FEEDPUB), "--config", str(corpus / "feedpub.toml"), args.command]
    targets = TARGETS.get(args.posts, {})
    summaries = []
    for name in (s for s in SCENARIOS if s in chosen):
        if name != "cold" and not summaries:
            measure(command)  # these scenarios start from a finished build (any earlier scenario ends with one)
        runs = []
        for _ in range(args.repeat):
            prepare[name]()
            runs.append(measure(command))
        summary = summarise(name, runs, targets.get(name))
        print(f"  {name}: " + " ".join(f"{r.wall_s:.2f}s" for r in runs), flush=True)
        summaries.append(summary)
    print()
    print(f"feedpub {args.command}, {args.posts} posts, {args.repeat} repetitions each")
    print_table(summaries)
    save(args.posts, facts, args.command, summaries)
    print(f"\nwrote {RESULTS.relative_to(BENCH.parent)}")


if __name__ == "__main__":
    main()
