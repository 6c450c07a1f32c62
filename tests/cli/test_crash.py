"""Killed processes and damaged files: `feedpub build` and `feedpub digest send` SIGKILLed at chosen
points, then run again; a corrupt store and a corrupt build cache.

After a kill the output folder holds only complete files and the next build makes the same bytes as a
clean one; after a rerun every reader holds exactly one copy of the digest, except at most the messages
in flight at the kill (the server kept them but its 250 was never recorded).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from lxml import etree, html

from feedpub.cli import main
from tests.send.sites import PASSWORD, SECRET, deliveries, feedpub, write_site

ENV = {**os.environ, "FEEDPUB_SECRET": SECRET, "FEEDPUB_SMTP_PASSWORD": PASSWORD}
FEED_NAMES = {"feed.xml", "rss.xml", "feed.json", "feeds.opml", "feed.xsl", "index.html"}


def start(config: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "feedpub", "--config", str(config), *args], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "feedpub", "--config", str(config), *args], env=ENV,
                          capture_output=True, text=True, timeout=120)


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.002)


# -- feedpub build ---------------------------------------------------------------------------------------

def write_corpus(root: Path, posts: int = 1500, categories: int = 400) -> Path:
    """Enough posts and categories (≈2,400 feed files) that a kill lands while files are being written."""
    config = root / "feedpub.toml"
    config.write_text('[site]\ntitle = "Crash"\nurl = "https://blog.example.com"\ntimezone = "Asia/Tokyo"\n',
                      encoding="utf-8")
    (root / "posts").mkdir()
    body = "本文です。**推論性能35%**向上。 The numbers matter less than the work they speed up.\n\n" * 12
    for i in range(posts):
        name = f"{2020 + i // 336}-{1 + (i // 28) % 12:02d}-{1 + i % 28:02d}-post-{i}.md"
        (root / "posts" / name).write_text(
            f'---\ntitle: "記事 {i}: 生成AIの話"\ncategories: [分類{i % categories}, topic{i * 7 % categories}]\n'
            f"---\n\n{body}", encoding="utf-8")
    return config


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_every_visible_file_complete(output: Path) -> int:
    """Every file a reader or server could pick up parses; leftovers of a killed write are hidden temp files."""
    checked = 0
    for path in output.rglob("*"):
        if not path.is_file():
            continue
        if path.name.startswith(".feedpub-tmp-") or path.name == ".feedpub-manifest":
            continue       # never served as feeds: hidden; temp files are removed by the next build
        assert path.name in FEED_NAMES, path
        data = path.read_bytes()
        if path.suffix in (".xml", ".opml", ".xsl"):
            etree.fromstring(data)
        elif path.suffix == ".json":
            json.loads(data)
        else:
            assert data.rstrip().endswith(b"</html>"), path
            html.fromstring(data)
        checked += 1
    return checked


def kill_build_mid_write(config: Path, output: Path) -> None:
    """Start a build and SIGKILL it once it has written some feed files but not yet its manifest."""
    process = start(config, "build")
    try:
        wait_until(lambda: any(output.glob("categories/*/*")) or process.poll() is not None)
    finally:
        kill(process) if process.poll() is None else None
    assert not (output / ".feedpub-manifest").exists() or (config.parent / "edited").exists(), \
        "the build finished before it was killed"


@pytest.mark.parametrize("edited", [False, True], ids=["first build", "rebuild after an edit"])
def test_build_killed_mid_write_leaves_complete_files_and_the_next_build_repairs_everything(tmp_path, edited):
    config = write_corpus(tmp_path)
    output = tmp_path / "public"
    if edited:   # a good build with its cache, then every post changes: the kill hits a warm rebuild
        assert run(config, "build").returncode == 0
        manifest = (output / ".feedpub-manifest").read_bytes()
        for post in (tmp_path / "posts").iterdir():
            post.write_text(post.read_text(encoding="utf-8").replace("生成AIの話", "推論の話"), encoding="utf-8")
        (tmp_path / "edited").touch()
        process = start(config, "build")

        def rewritten() -> bool:
            return any("推論の話" in p.read_text(encoding="utf-8") for p in output.glob("categories/*/feed.xml"))

        wait_until(lambda: rewritten() or process.poll() is not None)
        if process.poll() is None:
            kill(process)
        assert (output / ".feedpub-manifest").read_bytes() == manifest, "the build finished before it was killed"
    else:
        kill_build_mid_write(config, output)

    assert assert_every_visible_file_complete(output) > 0
    repaired = run(config, "build")
    assert repaired.returncode == 0, repaired.stderr
    clean = run(config, "build", "--output", str(tmp_path / "clean"))
    assert clean.returncode == 0
    assert tree(output) == tree(tmp_path / "clean")
    assert not [p for p in output.rglob(".feedpub-tmp-*")]


def test_corrupt_build_cache_is_discarded_and_rebuilt(tmp_path):
    config = write_corpus(tmp_path, posts=40, categories=5)
    assert run(config, "build").returncode == 0
    caches = sorted((tmp_path / ".feedpub" / "cache").glob("*.pickle"))
    assert caches
    good = tree(tmp_path / "public")
    for number, cache in enumerate(caches):   # garbage, a truncated file, a valid header with junk after it
        data = cache.read_bytes()
        cache.write_bytes([b"\x00garbage\xff" * 50, data[: len(data) // 2], data[:60] + b"\x80\x05junk"][number % 3])
    (tmp_path / "posts" / "2020-01-01-post-0.md").write_text(
        '---\ntitle: "書き直した記事"\ncategories: [分類0]\n---\n\n新しい本文。\n', encoding="utf-8")
    rebuilt = run(config, "-v", "build")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilding it" in rebuilt.stderr
    assert run(config, "build", "--output", str(tmp_path / "clean")).returncode == 0
    assert tree(tmp_path / "public") == tree(tmp_path / "clean") != good
    again = run(config, "build")      # the rebuilt cache is good again: nothing to write
    assert again.returncode == 0 and " 0 files written" in again.stdout


# -- feedpub digest send -----------------------------------------------------------------------------------

def readers(count: int) -> list[str]:
    return [f"reader{i:03d}@example.com" for i in range(count)]


def queued_rows(config: Path) -> int:
    try:
        return len(deliveries(config))
    except sqlite3.Error:
        return 0


def test_send_killed_right_after_queueing_sends_everyone_once(tmp_path, smtp_server):
    emails = readers(12)
    config = write_site(tmp_path, smtp_server.port, emails, connections=3)
    smtp_server.faults.stall_greeting = 30.0          # connections open, no message can start
    process = start(config, "digest", "send")
    try:
        wait_until(lambda: queued_rows(config) == 12 and smtp_server.connections >= 1)
    finally:
        kill(process)
    assert smtp_server.received == []
    assert "sent" not in {row.status for row in deliveries(config).values()}
    smtp_server.faults.stall_greeting = 0.0
    rerun = run(config, "digest", "send")
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(smtp_server.recipients()) == emails
    assert {row.status for row in deliveries(config).values()} == {"sent"}


def test_send_killed_mid_batch_resends_at_most_the_messages_in_flight(tmp_path, smtp_server):
    emails = readers(60)
    config = write_site(tmp_path, smtp_server.port, emails, connections=3, rate_per_second=40)
    process = start(config, "digest", "send")
    try:
        smtp_server.wait_for(20, timeout=60)
    finally:
        kill(process)
    killed_at = len(smtp_server.received)
    assert killed_at < 60, "the first run finished before it was killed"
    marked = {email for email, row in deliveries(config).items() if row.status == "sent"}
    assert marked <= set(smtp_server.recipients())        # nothing marked sent that the server did not accept

    rerun = run(config, "digest", "send")
    assert rerun.returncode == 0, rerun.stderr
    counts = Counter(smtp_server.recipients())
    assert set(counts) == set(emails)
    duplicated = [email for email, n in counts.items() if n > 1]
    assert all(counts[email] == 2 for email in duplicated)
    assert len(duplicated) <= 3                         # one in flight per connection at most
    assert {row.status for row in deliveries(config).values()} == {"sent"}


def test_send_killed_between_the_250_and_its_mark_resends_only_that_message(tmp_path, smtp_server):
    emails = readers(8)
    config = write_site(tmp_path, smtp_server.port, emails, connections=1)
    smtp_server.faults.hold_data = True                 # the server keeps the message and holds its 250
    process = start(config, "digest", "send")
    try:
        smtp_server.wait_for(1, timeout=60)
    finally:
        kill(process)
        smtp_server.faults.hold_data = False
    (in_flight,) = smtp_server.recipients()
    rows = deliveries(config)
    assert rows[in_flight].status == "sending"          # recorded as maybe gone out
    assert "sent" not in {row.status for row in rows.values()}

    rerun = run(config, "digest", "send")
    assert rerun.returncode == 0, rerun.stderr
    counts = Counter(smtp_server.recipients())
    assert counts == {email: 2 if email == in_flight else 1 for email in emails}
    assert {row.status for row in deliveries(config).values()} == {"sent"}


def test_send_killed_repeatedly_loses_nobody(tmp_path, smtp_server):
    """Killed three times at random moments, then left to finish: everyone served, nobody lost."""
    emails = readers(40)
    config = write_site(tmp_path, smtp_server.port, emails, connections=2, rate_per_second=50)
    for kill_after in (5, 15, 25):
        process = start(config, "digest", "send")
        try:
            smtp_server.wait_for(kill_after, timeout=60)
        finally:
            kill(process)
    assert run(config, "digest", "send").returncode == 0
    counts = Counter(smtp_server.recipients())
    assert set(counts) == set(emails)
    assert sum(counts.values()) - len(emails) <= 3 * 2    # at most the in-flight messages of each kill
    assert {row.status for row in deliveries(config).values()} == {"sent"}


# -- a damaged store ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_store_is_a_clear_exit_2_naming_the_file(tmp_path, smtp_server, damage):
    config = write_site(tmp_path, smtp_server.port, readers(3))
    store = tmp_path / ".feedpub" / "feedpub.db"
    with sqlite3.connect(store) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = store.read_bytes()
    store.write_bytes(b"this is not a database\n" * 200 if damage == "garbage" else data[:100] + b"\xff" * 5000)
    for args in (("digest", "send"), ("digest", "status"), ("subscribers", "list")):
        result = CliRunner().invoke(main, ["--config", str(config), *args], env={"FEEDPUB_SECRET": SECRET})
        assert result.exit_code == 2, (args, result.output)
        assert str(store) in result.stderr and "Traceback" not in result.output
    assert smtp_server.received == []
    # The feeds do not need the store; the digest archive does: written, but not all of it (exit 1).
    built = feedpub(config, "build")
    assert built.exit_code == 1 and str(store) in built.stderr and "Traceback" not in built.output
    assert (tmp_path / "public" / "feed.xml").is_file()
