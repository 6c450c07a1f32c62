"""`feedpub run` end to end: a real daemon process, a real SMTP server, a reader in real Chromium.

Subscribe through the form → confirm from the mail's link → a restart inside the misfire grace sends the
digest → the digest's one-click List-Unsubscribe POST removes the reader → SIGTERM exits 0.
Needs Debian `chromium` and the `playwright` package (skipped without them, except under CI=true).
"""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.conftest import BROWSER_ARGS, CHROMIUM, require_browser
from tests.smtp_server import SMTPTestServer

TOKYO = ZoneInfo("Asia/Tokyo")
# The cadence test's daily slot comes this long after its daemon starts: time to start, send the start-up
# weekly and write the new post before it (about 5 s on a loaded 2-core machine).
SLOT_AFTER_START = 12


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_site(root: Path, smtp: SMTPTestServer, web_port: int) -> None:
    # A slot every day, 5 minutes ago in Tokyo: due now and inside the 6 h grace.
    slot = datetime.now(TOKYO) - timedelta(minutes=5)
    (root / "feedpub.toml").write_text(f"""
[site]
title = "ALLFORCES"
url = "https://blog.example.com"
timezone = "Asia/Tokyo"
language = "ja"
[digest]
schedule = "mon,tue,wed,thu,fri,sat,sun {slot:%H:%M}"
from = "ALLFORCES編集部 <news@blog.example.com>"
misfire_grace = "6h"
[smtp]
host = "127.0.0.1"
port = {smtp.port}
security = "none"
timeout = 5
[web]
listen = "127.0.0.1:{web_port}"
public_url = "http://127.0.0.1:{web_port}"
""", encoding="utf-8")
    (root / "posts").mkdir()
    for days, title, category in ((1, "推論性能35%向上は何を変えるのか", "AI導入戦略"), (2, "Weekly roundup", "news")):
        date = datetime.now(UTC) - timedelta(days=days)
        (root / "posts" / f"{date:%Y-%m-%d}-p{days}.md").write_text(
            f'---\ntitle: "{title}"\ndate: {date:%Y-%m-%d %H:%M:%S} +0000\ncategories: [{category}]\n---\n\n'
            f"{title}の本文です。\n", encoding="utf-8")


def libfaketime() -> str:
    """Debian's libfaketime (multi-threaded build), which runs a process on a clock ahead of the real one; preloaded
    into the daemon itself (the `faketime` command would stand between it and the test's SIGTERM)."""
    found = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))), None)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but faketime is not installed: .ci/run installs Debian's faketime")
        pytest.skip("faketime is not installed (apt-get install faketime)")
    return found


class DaemonProcess:
    def __init__(self, root: Path, web_port: int, *, clock_ahead: int = 0) -> None:
        """`feedpub run` in `root`; with `clock_ahead`, its clock runs that many seconds ahead (faketime)."""
        env = {**os.environ, "FEEDPUB_SECRET": "e2e-secret"}
        self.log = root / f"daemon-{time.monotonic_ns()}.log"
        if clock_ahead:
            # Only the wall clock: waits and timeouts (the monotonic clock) stay real.
            env |= {"LD_PRELOAD": libfaketime(), "FAKETIME": f"+{clock_ahead}s", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "feedpub", "run"], cwd=root, env=env,
                                        stdout=subprocess.DEVNULL, stderr=self.log.open("wb"))
        self.base = f"http://127.0.0.1:{web_port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/healthz").json()["last_build"]:
                    return
            except httpx.HTTPError:
                pass
            assert self.process.poll() is None, self.log.read_text()
            time.sleep(0.05)
        raise AssertionError(f"daemon did not come up:\n{self.log.read_text()}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=15)


def test_subscribe_confirm_receive_unsubscribe(tmp_path: Path, smtp_server: SMTPTestServer) -> None:
    require_browser()
    from playwright.sync_api import sync_playwright  # optional: require_browser() skips without it

    web_port = free_port()
    write_site(tmp_path, smtp_server, web_port)
    daemon = DaemonProcess(tmp_path, web_port)
    assert httpx.get(f"{daemon.base}/feed.xml").headers["content-type"].startswith("application/atom+xml")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page()
        page.goto(f"{daemon.base}/subscribe")
        page.get_by_label("メールアドレス").fill("reader@example.com")
        page.get_by_label("AI導入戦略").check()
        page.get_by_role("button", name="購読する").click()
        page.get_by_text("確認用のリンクをメールでお送りしました").wait_for()

        smtp_server.wait_for(1)
        confirmation = smtp_server.received[0].message()
        assert confirmation["To"] == "reader@example.com"
        link = re.search(r"http://127\.0\.0\.1:\d+/confirm/\S+", confirmation.get_content())[0]
        page.goto(link)
        page.get_by_role("button", name="購読を確定する").click()
        page.get_by_text("購読が確定しました").wait_for()
        browser.close()

    assert daemon.stop() == 0
    daemon = DaemonProcess(tmp_path, web_port)   # restarted inside the grace window: the issue goes out
    smtp_server.wait_for(2, timeout=20)
    digest = smtp_server.received[1].message()
    assert digest["To"] == "reader@example.com"
    assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = digest.get_body(("html",)).get_content()
    assert "推論性能35%向上は何を変えるのか" in html and "Weekly roundup" not in html  # only the chosen category

    unsubscribe = re.search(r"<(http[^>]+)>", digest["List-Unsubscribe"])[1]
    answer = httpx.post(unsubscribe, content="List-Unsubscribe=One-Click",
                        headers={"content-type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 200

    assert daemon.stop() == 0
    listed = subprocess.run([sys.executable, "-m", "feedpub", "subscribers", "list", "--format", "json"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=30)
    [reader] = json.loads(listed.stdout)
    assert reader["email"] == "reader@example.com" and reader["status"] == "unsubscribed"
    assert len(smtp_server.received) == 2   # the restart sent the issue once, nothing else


def test_sigterm_mid_send_finishes_the_current_message_and_exits_0(tmp_path: Path,
                                                                     smtp_server: SMTPTestServer) -> None:
    web_port = free_port()
    write_site(tmp_path, smtp_server, web_port)
    text = (tmp_path / "feedpub.toml").read_text(encoding="utf-8")
    (tmp_path / "feedpub.toml").write_text(text.replace('timeout = 5', 'timeout = 5\nrate_per_second = 4\n'
                                                        'connections = 1'), encoding="utf-8")
    readers = [f"reader{i:02d}@example.com" for i in range(30)]
    csv = tmp_path / "readers.csv"
    csv.write_text("email\n" + "\n".join(readers) + "\n", encoding="utf-8")
    imported = subprocess.run([sys.executable, "-m", "feedpub", "subscribers", "import", str(csv)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=30)
    assert imported.returncode == 0, imported.stderr

    daemon = DaemonProcess(tmp_path, web_port)
    smtp_server.wait_for(3, timeout=20)
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 5          # within smtp.timeout
    sent_before_resume = len(smtp_server.received)
    assert sent_before_resume < len(readers)

    status = subprocess.run([sys.executable, "-m", "feedpub", "digest", "status"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=30).stdout.splitlines()
    header, row = status[0].split(), status[1].split()
    counts = dict(zip(header[-7:], row[-7:], strict=True))
    # The headings of a Japanese site: SENDING, SENT.
    assert counts["送信中"] == "0"                         # the message in flight was finished and marked
    assert int(counts["送信済み"]) == sent_before_resume   # nothing marked sent that the server did not get
    # The slow rate only kept the daemon mid-send for the SIGTERM; the resume sends the rest at full speed.
    config = tmp_path / "feedpub.toml"
    config.write_text(config.read_text(encoding="utf-8").replace("rate_per_second = 4", "rate_per_second = 1000"),
                      encoding="utf-8")
    resumed = subprocess.run([sys.executable, "-m", "feedpub", "digest", "send"], cwd=tmp_path,
                             env={**os.environ, "FEEDPUB_SECRET": "e2e-secret"}, capture_output=True, text=True,
                             timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(smtp_server.recipients()) == sorted(readers)   # each exactly once, none lost


def send_with_one_reader_deferred(root: Path, smtp: SMTPTestServer, web_port: int, retry_base: str) -> None:
    """Two readers, `digest send` by hand (cron): the server answers 451 once for beta, who is deferred for
    `retry_base` (long enough that a daemon or worker started next is up before the retry falls due)."""
    write_site(root, smtp, web_port)
    text = (root / "feedpub.toml").read_text(encoding="utf-8")
    (root / "feedpub.toml").write_text(text.replace("timeout = 5", f'timeout = 5\nretry_base = "{retry_base}"'),
                                       encoding="utf-8")
    (root / "readers.csv").write_text("email\nalpha@example.com\nbeta@example.com\n", encoding="utf-8")
    imported = subprocess.run([sys.executable, "-m", "feedpub", "subscribers", "import", "readers.csv"], cwd=root,
                              capture_output=True, text=True, timeout=30)
    assert imported.returncode == 0, imported.stderr
    smtp.faults.defer_rcpt["beta@example.com"] = 1
    sent = subprocess.run([sys.executable, "-m", "feedpub", "digest", "send"], cwd=root, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "FEEDPUB_SECRET": "e2e-secret"})
    assert sent.returncode == 0, sent.stderr
    assert "送信 1 件、再送待ち 1 件、失敗 0 件" in sent.stdout
    # The retry time names its zone: the site's.
    assert re.search(r"待機中 1 件（次回の再送 \d{4}-\d\d-\d\d \d\d:\d\d JST）", sent.stdout), sent.stdout
    assert smtp.recipients() == ["alpha@example.com"]


def wait_for_recipient(smtp: SMTPTestServer, email: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while email not in smtp.recipients():
        assert time.monotonic() < deadline, f"{email} never received the retried message"
        time.sleep(0.1)


def test_the_running_daemon_retries_a_deferred_delivery_when_it_falls_due(tmp_path: Path,
                                                                          smtp_server: SMTPTestServer) -> None:
    web_port = free_port()
    send_with_one_reader_deferred(tmp_path, smtp_server, web_port, "10s")   # the daemon takes up to ~5 s to start
    daemon = DaemonProcess(tmp_path, web_port)
    health = httpx.get(f"{daemon.base}/healthz").json()
    next_retry = datetime.fromisoformat(health["next_retry"])
    assert next_retry.utcoffset() is not None
    assert health["queued_deliveries"] == 1 and next_retry > datetime.now(UTC), "started after the retry fell due"

    wait_for_recipient(smtp_server, "beta@example.com", timeout=40)   # no restart
    deadline = time.monotonic() + 10
    while (health := httpx.get(f"{daemon.base}/healthz").json())["queued_deliveries"]:
        assert time.monotonic() < deadline, health
        time.sleep(0.2)
    assert health["next_retry"] is None
    assert daemon.stop() == 0
    assert sorted(smtp_server.recipients()) == ["alpha@example.com", "beta@example.com"]   # each exactly once
    log = daemon.log.read_text(encoding="utf-8")
    assert "feedpub: 再送: 送信 1 件、再送待ち 0 件、失敗 0 件" in log      # a Japanese site's log
    assert "feedpub: 実行中: Web は" in log and "feedpub: feedpub" not in log


def test_a_worker_retries_a_deferred_delivery_when_it_falls_due(tmp_path: Path, smtp_server: SMTPTestServer) -> None:
    send_with_one_reader_deferred(tmp_path, smtp_server, free_port(), "4s")   # a worker starts within ~1 s
    worker = subprocess.Popen([sys.executable, "-m", "feedpub", "worker", "--idle", "1s"], cwd=tmp_path,
                              env={**os.environ, "FEEDPUB_SECRET": "e2e-secret"}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        wait_for_recipient(smtp_server, "beta@example.com", timeout=40)
        time.sleep(1.5)   # a second idle look finds nothing more to send
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0, worker.stderr.read()
    assert sorted(smtp_server.recipients()) == ["alpha@example.com", "beta@example.com"]


def test_the_daemon_mails_a_new_post_to_its_post_readers_after_the_delay_and_daily_readers_at_their_hour(
        tmp_path: Path, smtp_server: SMTPTestServer) -> None:
    """Watch mode sees a new post; the cadence job wakes `digest.post_delay` later and mails it to the post
    reader; a daily reader in Los Angeles whose local time comes a minute or two later gets it then; nothing is
    mailed twice."""
    web_port = free_port()
    write_site(tmp_path, smtp_server, web_port)
    # The daily slot a few minutes away in Los Angeles, reached SLOT_AFTER_START seconds after the daemon starts:
    # its clock runs ahead.
    los_angeles = ZoneInfo("America/Los_Angeles")
    la_slot = (datetime.now(los_angeles) + timedelta(minutes=3)).replace(second=0, microsecond=0)
    text = (tmp_path / "feedpub.toml").read_text(encoding="utf-8")
    (tmp_path / "feedpub.toml").write_text(text.replace("[digest]\n", f'[digest]\ncadences = ["post", "daily", '
                                                        f'"weekly"]\npost_delay = "3s"\ndaily_at = '
                                                        f'"{la_slot:%H:%M}"\n'), encoding="utf-8")
    (tmp_path / "readers.csv").write_text("email,cadence,timezone\npost@example.jp,post,\n"
                                          "daily@example.com,daily,America/Los_Angeles\n", encoding="utf-8")
    imported = subprocess.run([sys.executable, "-m", "feedpub", "subscribers", "import", "readers.csv"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert imported.returncode == 0, imported.stderr

    def mails_to(address: str) -> list[str]:
        return [r.message().get_body(("plain",)).get_content() for r in smtp_server.received
                if address in r.rcpt_tos]

    def wait(condition, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.05)

    clock_ahead = int((la_slot - datetime.now(los_angeles)).total_seconds()) - SLOT_AFTER_START
    daemon = DaemonProcess(tmp_path, web_port, clock_ahead=clock_ahead)
    try:
        # The start-up run has made its first look at the site (posts then on it get no post mail) and sent the
        # site zone's weekly (due since write_site's slot): the new post is new to both.
        smtp_server.wait_for(1)
        seen = len(mails_to("post@example.jp"))
        written = time.monotonic()
        date = datetime.now(UTC) - timedelta(minutes=1)
        (tmp_path / "posts" / f"{date:%Y-%m-%d}-new.md").write_text(
            f'---\ntitle: "出たばかりの記事"\ndate: {date:%Y-%m-%d %H:%M:%S} +0000\n---\n\n本文。\n', encoding="utf-8")
        assert datetime.now(los_angeles) + timedelta(seconds=clock_ahead) < la_slot, \
            "the post came after the daily slot: raise SLOT_AFTER_START"
        wait(lambda: len(mails_to("post@example.jp")) > seen, 30)
        assert time.monotonic() - written >= 3                     # not before digest.post_delay
        wait(lambda: any("出たばかりの記事" in text for text in mails_to("daily@example.com")), 60)
        time.sleep(3)
    finally:
        assert daemon.stop() == 0
    assert sum("出たばかりの記事" in text for text in mails_to("post@example.jp")) == 1
    assert sum("出たばかりの記事" in text for text in mails_to("daily@example.com")) == 1
