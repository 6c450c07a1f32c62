"""Bounce accuracy: the real `feedpub bounces parse --format json` over a folder of returned mail, compared
with the answers in that folder's `expected.json`.

    .venv/bin/python bench/bounce_accuracy.py /path/to/corpus        # = make bench-bounce-accuracy CORPUS=…

`expected.json` maps a file name to what the message is: {"x.eml": {"kind": "hard", "recipients": [...]}}
(other keys, such as a note on how the answer was decided, are ignored). `recipients` are the addresses
the message is about *for its kind*: for a report where one recipient failed for good and another only for
now, the kind is "hard" and the recipients are the hard one(s), as `feedpub bounces parse` reports them.

Measures (issue 21's check; the corpus itself is never part of the project). "bounce" as an expected kind
means a failure whose hard or soft the reference parser could not tell: it counts for the recipient only.
- live readers suppressed: messages expected soft found hard — target ≤ 1%;
- dead addresses not taken as hard: messages expected hard found anything else — target ≤ 5%;
- recipient: the recipients found are exactly the expected ones (case-insensitive), over every message
  expected to be a bounce or a complaint — target ≥ 97%;
- complaints recognised: messages expected "complaint" found so — target ≥ 95%;
- auto-replies counted as bounces: messages expected "auto-reply" found hard or soft — target 0.
Every miss is listed with the file, what was expected and what was found. A measurement: it exits 0 even
when a target is missed, and prints FAIL on that row.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FEEDPUB = ROOT / ".venv" / "bin" / "feedpub"
BOUNCES = ("hard", "soft")
# Issue 21's targets: a share at most (the measures that count wrong answers) or at least.
_TARGETS = {"live readers suppressed": 0.01, "dead addresses not taken as hard": 0.05, "recipient": 0.97,
            "complaints recognised": 0.95, "auto-replies counted as bounces": 0.0}
_WRONG_COUNTED = ("live readers suppressed", "dead addresses not taken as hard", "auto-replies counted as bounces")
# Files per `feedpub bounces parse` call: keeps the command line well under the kernel's limit.
_CHUNK = 200


@dataclass(frozen=True)
class Miss:
    file: str
    measure: str
    expected: str
    found: str


def parse_all(files: list[Path]) -> dict[str, dict]:
    """{file name: the parse command's object}, from the real command run in an empty folder (so no
    feedpub.toml around changes what it does)."""
    found: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as empty:
        for start in range(0, len(files), _CHUNK):
            chunk = files[start:start + _CHUNK]
            done = subprocess.run([str(FEEDPUB), "bounces", "parse", "--format", "json", *map(str, chunk)],
                                  cwd=empty, capture_output=True, text=True, check=False)
            if done.returncode not in (0, 1):
                sys.exit(f"feedpub bounces parse exited {done.returncode}: {done.stderr.strip()}")
            for line in done.stdout.splitlines():
                result = json.loads(line)
                found[Path(result["file"]).name] = result
    return found


def compare(expected: dict[str, dict], found: dict[str, dict]) -> tuple[dict[str, tuple[int, int]], list[Miss]]:
    """({measure: (counted, out of)}, misses): for the first two measures and the auto-replies "counted" is
    the wrong ones, for the others the right ones."""
    tally = {measure: [0, 0] for measure in _TARGETS}
    tally["kind (all messages)"] = [0, 0]
    misses: list[Miss] = []

    def count(measure: str, name: str, hit: bool, expected_text: str, found_text: str) -> None:
        tally[measure][1] += 1
        tally[measure][0] += hit
        if hit == (measure in _WRONG_COUNTED):
            misses.append(Miss(name, measure, expected_text, found_text))

    for name, want in sorted(expected.items()):
        got = found.get(name, {"kind": "(not parsed)", "recipients": []})
        kind, recipients = got["kind"], [a.lower() for a in got["recipients"]]
        wanted = [a.lower() for a in want["recipients"]]

        if want["kind"] in (*BOUNCES, "bounce", "complaint"):
            count("recipient", name, set(recipients) == set(wanted), ", ".join(wanted) or "(none)",
                  ", ".join(recipients) or "(none)")
        if want["kind"] == "soft":
            count("live readers suppressed", name, kind == "hard", "soft", _kind_text(got))
        if want["kind"] == "hard":
            count("dead addresses not taken as hard", name, kind != "hard", "hard", _kind_text(got))
        if want["kind"] == "auto-reply":
            count("auto-replies counted as bounces", name, kind in BOUNCES, "auto-reply", _kind_text(got))
        if want["kind"] == "complaint":
            count("complaints recognised", name, kind == "complaint", "complaint", _kind_text(got))
        if want["kind"] != "bounce":
            tally["kind (all messages)"][1] += 1
            tally["kind (all messages)"][0] += kind == want["kind"]
        if kind != want["kind"] and want["kind"] not in (*BOUNCES, "bounce", "complaint", "auto-reply"):
            misses.append(Miss(name, "kind", want["kind"], _kind_text(got)))
    return {measure: (counted, total) for measure, (counted, total) in tally.items()}, misses


def _kind_text(result: dict) -> str:
    return f"{result['kind']} ({result.get('status') or 'no status'})"


def report(tally: dict[str, tuple[int, int]], misses: list[Miss], files: int, seconds: float) -> str:
    lines = [f"{files} messages parsed in {seconds:.2f} s ({files / seconds:.0f}/s, one process per "
             f"{_CHUNK} files)", ""]
    for measure, (counted, total) in tally.items():
        share = counted / total if total else 0.0
        target = _TARGETS.get(measure)
        if target is None:
            verdict = ""
        elif not total:
            verdict = "  no message of this kind: not measured"
        elif measure in _WRONG_COUNTED:
            verdict = f"  target ≤ {target:.0%}: {'PASS' if share <= target else 'FAIL'}"
        else:
            verdict = f"  target ≥ {target:.0%}: {'PASS' if share >= target else 'FAIL'}"
        lines.append(f"{measure:34} {counted:4} of {total:4} = {share:6.1%}{verdict}")
    lines += ["", f"misses ({len(misses)}):"]
    lines += [f"  {m.file}: {m.measure}: expected {m.expected}; found {m.found}" for m in misses]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path, help="a folder of messages with an expected.json")
    args = parser.parse_args()
    answers = args.corpus / "expected.json"
    if not answers.is_file():
        sys.exit(f"{answers}: no such file (expected the answers for the messages in {args.corpus})")
    expected = json.loads(answers.read_text(encoding="utf-8"))
    files = [args.corpus / name for name in sorted(expected)]
    absent = [str(file) for file in files if not file.is_file()]
    if absent:
        sys.exit(f"{answers}: names files that are not there: {', '.join(absent[:5])}")
    started = time.perf_counter()
    found = parse_all(files)
    seconds = time.perf_counter() - started
    tally, misses = compare(expected, found)
    print(report(tally, misses, len(files), seconds))


if __name__ == "__main__":
    main()
