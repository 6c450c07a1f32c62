"""The running daemon, told by the preferences page that a weekly reader switched to each post's mail, sends them
the posts that were waiting for their digest `digest.post_delay` later, without waiting for its next slot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta
from email.header import decode_header, make_header
from pathlib import Path

import httpx

from feedpub.tokens import make_token
from tests.cli import test_daemon_e2e as e2e
from tests.cli.test_daemon_e2e import TOKYO, DaemonProcess, free_port
from tests.smtp_server import SMTPTestServer

SECRET = "e2e-secret"      # DaemonProcess's


def write_site(root: Path, smtp: SMTPTestServer, web_port: int) -> None:
    """The end-to-end site (two posts of the past two days), offering each post and weekly; no digest falls due
    while the test runs (its slot three days away)."""
    e2e.write_site(root, smtp, web_port)
    day = (datetime.now(TOKYO) + timedelta(days=3)).strftime("%a").lower()
    config = root / "feedpub.toml"
    config.write_text(re.sub(r'schedule = ".*"', f'cadences = ["post", "weekly"]\nschedule = "{day} 09:00"\n'
                                                 'post_delay = "2s"', config.read_text(encoding="utf-8")),
                      encoding="utf-8")


def test_the_daemon_sends_the_catch_up_of_a_switch_to_each_post_after_the_delay(
        tmp_path: Path, smtp_server: SMTPTestServer) -> None:
    web_port = free_port()
    write_site(tmp_path, smtp_server, web_port)
    added = subprocess.run([sys.executable, "-m", "feedpub", "subscribers", "add", "yomi@example.jp",
                            "--cadence", "weekly"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                           env={**os.environ, "FEEDPUB_SECRET": SECRET})
    assert added.returncode == 0, added.stderr
    daemon = DaemonProcess(tmp_path, web_port)
    try:
        time.sleep(2)                                   # the start-up jobs: nothing is due for a weekly reader
        assert smtp_server.received == []
        page = f"{daemon.base}/preferences/{make_token(SECRET, 'preferences', 1)}"
        saved = httpx.post(page, data={"cadence": "post", "timezone": "Asia/Tokyo"})
        assert saved.status_code == 200, saved.text
        smtp_server.wait_for(1, timeout=20)
        time.sleep(2)                                   # and nothing after it
    finally:
        assert daemon.stop() == 0
    (mail,) = [received.message() for received in smtp_server.received]
    assert mail["To"] == "yomi@example.jp"
    assert str(make_header(decode_header(mail["Subject"]))) == "ALLFORCES：前回のメール以降の記事 2 件"
    text = mail.get_body(("plain",)).get_content()
    assert "推論性能35%向上は何を変えるのか" in text and "Weekly roundup" in text
    assert "新しい記事を1件ずつメールでお届けします。" in text
