"""`feedpub run` and `feedpub worker` as systemd sees them, with real processes: readiness, watchdog and stopping
over a real AF_UNIX datagram socket set as NOTIFY_SOCKET; an address already in use; a part of the daemon that
dies; and the crontab line of docs/OPERATIONS.md run by `sh` with its env file."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from feedpub.tokens import read_token
from tests.cli.test_daemon_e2e import free_port, write_site
from tests.send.sites import READERS
from tests.send.sites import write_site as write_mailing_site
from tests.smtp_server import SMTPTestServer

ENV = {**os.environ, "FEEDPUB_SECRET": "service-secret"}


class NotifySocket:
    """What systemd listens on for a Type=notify service: each datagram a list of NAME=value lines."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.address = address

    def until(self, line: str, timeout: float = 30) -> list[list[str]]:
        """The messages received up to the first holding `line`."""
        got: list[list[str]] = []
        deadline = time.monotonic() + timeout
        while not got or line not in got[-1]:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                got.append(self.sock.recv(4096).decode("utf-8").split("\n"))
            except TimeoutError:
                raise AssertionError(f"no {line} within {timeout} s; got {got}") from None
        return got

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request, tmp_path: Path):
    listener = NotifySocket(str(tmp_path / "notify") if request.param == "path" else f"@feedpub-{uuid.uuid4().hex}")
    yield listener
    listener.close()


def start(root: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "feedpub", *args], cwd=root, env={**ENV, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_run_says_ready_once_it_serves_pings_the_watchdog_and_says_when_it_stops(
        tmp_path: Path, smtp_server: SMTPTestServer, notify_socket: NotifySocket) -> None:
    port = free_port()
    write_site(tmp_path, smtp_server, port)
    # WatchdogSec=0.4s: a WATCHDOG=1 every 0.2 s.
    daemon = start(tmp_path, "run", NOTIFY_SOCKET=notify_socket.address, WATCHDOG_USEC="400000")
    try:
        ready = notify_socket.until("READY=1")[-1]
        # write_site's site is Japanese: so is what the daemon tells systemd.
        assert f"STATUS=http://127.0.0.1:{port} で配信中、公開 URL は http://127.0.0.1:{port}" in ready
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200   # ready means serving
        notify_socket.until("WATCHDOG=1", timeout=2)
        notify_socket.until("WATCHDOG=1", timeout=2)
        daemon.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in notify_socket.until("STOPPING=1", timeout=15)[-1]
        assert daemon.wait(timeout=15) == 0
    finally:
        daemon.kill()
        daemon.communicate()


def test_run_exits_2_naming_the_address_when_another_program_holds_it(tmp_path: Path,
                                                                       smtp_server: SMTPTestServer) -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        write_site(tmp_path, smtp_server, port)
        result = subprocess.run([sys.executable, "-m", "feedpub", "run"], cwd=tmp_path, env=ENV,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"'web.listen': 127.0.0.1:{port} で待ち受けできません（Address already in use）" in result.stderr
    assert not (tmp_path / "public" / "feed.xml").exists()      # it neither built nor started anything


# No outside event makes a thread of a healthy daemon end, so these wrap the real code to end one: the web
# server's loop a second after it started serving, or the scheduler's loop at its first look at the jobs.
DEATHS = {
    "Web サーバー": """
import asyncio, uvicorn
async def main_loop(self):
    await asyncio.sleep(1)
    raise RuntimeError("the web server's loop ended")
uvicorn.Server.main_loop = main_loop
""",
    "スケジューラー": """
from apscheduler.schedulers.base import BaseScheduler
def process_jobs(self):
    raise RuntimeError("the scheduler's loop ended")
BaseScheduler._process_jobs = process_jobs
""",
}


@pytest.mark.parametrize("part", DEATHS)
def test_run_exits_1_when_a_part_of_it_dies(tmp_path: Path, smtp_server: SMTPTestServer, part: str) -> None:
    port = free_port()
    write_site(tmp_path, smtp_server, port)
    code = DEATHS[part] + "\nfrom feedpub.cli import main\nmain(['run'], prog_name='feedpub')\n"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1, result.stderr
    assert re.search(rf"feedpub: (http://127\.0\.0\.1:{port} の )?{part}が単独で停止しました: サービスマネージャーが"
                     r"再起動できるよう feedpub は終了します（ステータス 1）", result.stderr), result.stderr
    assert result.stderr.splitlines()[-1] == "feedpub: 停止しました"       # after the others were stopped in order


def test_worker_says_ready_and_stopping(tmp_path: Path, smtp_server: SMTPTestServer,
                                        notify_socket: NotifySocket) -> None:
    write_site(tmp_path, smtp_server, free_port())
    worker = start(tmp_path, "worker", "--idle", "1s", NOTIFY_SOCKET=notify_socket.address)
    try:
        assert "へ送信中" in " ".join(notify_socket.until("READY=1")[-1])
        worker.send_signal(signal.SIGTERM)
        notify_socket.until("STOPPING=1", timeout=15)
        assert worker.wait(timeout=15) == 0
    finally:
        worker.kill()
        worker.communicate()


def test_worker_that_cannot_open_its_store_exits_2_and_never_says_ready(tmp_path: Path, smtp_server: SMTPTestServer,
                                                                         notify_socket: NotifySocket) -> None:
    write_site(tmp_path, smtp_server, free_port())
    (tmp_path / ".feedpub").mkdir()
    (tmp_path / ".feedpub" / "feedpub.db").write_bytes(b"not a database" * 100)
    result = subprocess.run([sys.executable, "-m", "feedpub", "worker"], cwd=tmp_path, timeout=60, capture_output=True,
                            text=True, env={**ENV, "NOTIFY_SOCKET": notify_socket.address})
    assert result.returncode == 2, result.stderr
    assert "feedpub.db" in result.stderr
    notify_socket.sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        notify_socket.sock.recv(4096)


def test_healthz_of_a_running_daemon_answers_503_for_problems_only(tmp_path: Path,
                                                                    smtp_server: SMTPTestServer) -> None:
    port = free_port()
    write_site(tmp_path, smtp_server, port)
    (tmp_path / "posts" / "2025-01-01-twice.md").write_text(
        "---\ntitle: 一回目\ntitle: 二回目\n---\n\n本文です。\n", encoding="utf-8")
    daemon = start(tmp_path, "run")

    def health(until) -> httpx.Response:    # noqa: ANN001 - a predicate on the answer
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/healthz")
                if until(answer):
                    return answer
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and daemon.poll() is None, "no such answer from /healthz"
            time.sleep(0.2)

    try:
        warned = health(lambda answer: answer.json()["last_build"]).json()
        assert warned["status"] == "ok" and warned["problems"] == []
        twice = ("posts/2025-01-01-twice.md:3: warning: key 'title' appears twice; the last one is used "
                 "(expected each key once)")
        assert twice in warned["warnings"]
        assert (warned["last_build_posts"], warned["last_build_problems"]) == (3, 0)
        assert warned["last_build_warnings"] == len(warned["warnings"])

        broken = tmp_path / "posts" / "2025-01-02-broken.md"
        broken.write_text("---\ntitle: 壊れた記事\n\n本文\n", encoding="utf-8")
        failing = health(lambda answer: answer.status_code == 503).json()     # the watcher rebuilt
        assert failing["status"] == "problems"
        assert failing["problems"] == ["posts/2025-01-02-broken.md:1: front matter is not closed (expected a '---' "
                                       "line after the front matter)"]
        assert twice in failing["warnings"]

        broken.unlink()
        assert health(lambda answer: answer.status_code == 200).json()["problems"] == []
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=15)


def documented(heading: str) -> str:
    """The first code block of docs/OPERATIONS.md below `heading`."""
    text = (Path(__file__).parents[2] / "docs" / "OPERATIONS.md").read_text(encoding="utf-8")
    section = text[text.index(heading):]
    start = section.index("\n", section.index("```")) + 1
    return section[start:section.index("```", start)]


def test_the_documented_crontab_lines_run_by_sh_with_the_documented_env_file(tmp_path: Path,
                                                                             smtp_server: SMTPTestServer) -> None:
    root = tmp_path / "blog"
    root.mkdir()
    write_mailing_site(root, smtp_server.port)
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "feedpub").write_text(f'#!/bin/sh\nexec {sys.executable} -m feedpub "$@"\n')
    (root / ".venv" / "bin" / "feedpub").chmod(0o755)
    # The secret as the documented file holds it; `$`, spaces and `#` stay as written, for sh as for systemd.
    secret = "k9$HOME x #y"
    env_file = tmp_path / "env"
    env_file.write_text(documented("## systemd").replace("FEEDPUB_SECRET='…'",
                                                                               f"FEEDPUB_SECRET='{secret}'")
                        .replace("FEEDPUB_SMTP_PASSWORD='…'", "FEEDPUB_SMTP_PASSWORD='unused here'"))
    env_file.chmod(0o600)
    crontab = documented("## cron instead of a daemon")
    commands = {}
    for line in crontab.splitlines()[1:]:
        command = line.split(None, 5)[5].replace("/srv/blog", str(root)).replace("/etc/feedpub/env", str(env_file))
        commands["digest send" if "digest send" in command else "build"] = command
    environment = {name: value for name, value in os.environ.items() if not name.startswith("FEEDPUB_")}

    for name in ("build", "digest send"):
        ran = subprocess.run(["sh", "-c", commands[name]], env=environment, capture_output=True, text=True,
                             timeout=120)
        assert (ran.returncode, ran.stdout, ran.stderr) == (0, "", ""), (commands[name], ran.stderr)
    assert sorted(smtp_server.recipients()) == sorted(READERS)
    unsubscribe = smtp_server.received[0].message()["List-Unsubscribe"].split(">")[0].rsplit("/", 1)[1]
    assert read_token(secret, "unsubscribe", unsubscribe)      # signed with the secret exactly as written
    assert (root / "public" / "feed.xml").is_file()
