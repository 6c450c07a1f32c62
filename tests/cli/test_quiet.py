"""`-q` as cron needs it: a run that went well (exit 0) prints nothing at all, so cron mails nobody; a run with
problems (exit 1 or 2) prints the problems and nothing else. Real processes, as cron starts them: log lines
count as output too."""

from __future__ import annotations

import mailbox
import os
import subprocess
import sys
from pathlib import Path

from tests.send.sites import PASSWORD, READERS, SECRET, write_post, write_site
from tests.send.test_bounces_process import RETURN_PATH, bounce_for
from tests.smtp_server import SMTPTestServer

ENV = {**os.environ, "FEEDPUB_SECRET": SECRET, "FEEDPUB_SMTP_PASSWORD": PASSWORD}


def feedpub(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "feedpub", "--config", str(config), *args], env=ENV,
                          capture_output=True, text=True, timeout=120)


def test_build_and_check_print_nothing_when_all_went_well_and_only_the_problems_otherwise(
        tmp_path: Path, smtp_server: SMTPTestServer) -> None:
    config = write_site(tmp_path, smtp_server.port)
    write_post(config, "twice", "見出しが二回", days_before_slot=3)
    twice = next((tmp_path / "posts").glob("*-twice.md"))
    twice.write_text(twice.read_text(encoding="utf-8").replace("---\n\n", "title: 二回目の見出し\n---\n\n", 1),
                     encoding="utf-8")
    loud = feedpub(config, "build")
    assert loud.returncode == 0, loud.stderr
    assert "3 posts" in loud.stdout and "key 'title' appears twice" in loud.stderr     # a warning only
    for command in (("build",), ("build", "--no-cache"), ("check",)):
        quiet = feedpub(config, "-q", *command)
        assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", ""), command

    (tmp_path / "posts" / "2025-01-01-broken.md").write_text("---\ntitle: 壊れた記事\n\n本文\n", encoding="utf-8")
    for command in (("build",), ("check",)):
        quiet = feedpub(config, "-q", *command)
        assert quiet.returncode == 1, command
        assert quiet.stdout == ""
        assert quiet.stderr.splitlines() == ["posts/2025-01-01-broken.md:1: front matter is not closed "
                                             "(expected a '---' line after the front matter)"]


def test_digest_send_prints_nothing_when_all_went_out_or_was_deferred_and_the_failures_otherwise(
        tmp_path: Path, smtp_server: SMTPTestServer) -> None:
    config = write_site(tmp_path, smtp_server.port)
    smtp_server.faults.defer_rcpt[READERS[0]] = 1          # tried again at the next run: not a problem
    quiet = feedpub(config, "-q", "digest", "send")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    assert len(smtp_server.received) == len(READERS) - 1

    write_post(config, "later", "次の号の記事", days_before_slot=0.01)   # nothing new is due: still silent
    quiet = feedpub(config, "-q", "digest", "send")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")

    loud_config = tmp_path / "loud" / "feedpub.toml"
    loud_config.parent.mkdir()
    write_site(loud_config.parent, smtp_server.port)
    smtp_server.faults.reject_rcpt.add(READERS[2])
    loud = feedpub(loud_config, "-q", "digest", "send")
    assert loud.returncode == 1
    assert loud.stdout == ""
    assert loud.stderr.startswith(f"{READERS[2]}: failed: 550")
    assert len(loud.stderr.splitlines()) == 1


def test_bounces_poll_prints_nothing_when_it_read_the_mailbox_and_the_problem_otherwise(
        tmp_path: Path, smtp_server: SMTPTestServer) -> None:
    config = write_site(tmp_path, smtp_server.port, return_path=RETURN_PATH)
    assert feedpub(config, "digest", "send").returncode == 0
    senders = {received.rcpt_tos[0]: received.mail_from for received in smtp_server.received}
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    box.add(bounce_for("postfix-user-unknown.eml", READERS[1], senders[READERS[1]],
                       fixture_reader="taro.yamada@example.jp"))
    config.write_text(config.read_text(encoding="utf-8") + '[bounces]\nmailbox = "Maildir"\n', encoding="utf-8")

    quiet = feedpub(config, "-q", "bounces", "poll")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    assert list(mailbox.Maildir(tmp_path / "Maildir", create=False).keys()) == []    # it was read and moved

    (tmp_path / "Maildir").rename(tmp_path / "gone")
    missing = feedpub(config, "-q", "bounces", "poll")
    assert missing.returncode == 2 and missing.stdout == ""
    assert "Maildir: bounces.mailbox does not exist" in missing.stderr


def test_store_and_subscriber_commands_print_nothing_on_success_with_q(tmp_path) -> None:
    config = tmp_path / "feedpub.toml"
    config.write_text('[site]\ntitle = "Q"\nurl = "https://blog.example.com"\n', encoding="utf-8")
    for args in (["subscribers", "add", "taro@example.jp"], ["subscribers", "remove", "taro@example.jp"],
                 ["store", "migrate"], ["store", "backup", str(tmp_path / "backup.db")]):
        done = subprocess.run([sys.executable, "-m", "feedpub", "--config", str(config), "-q", *args],
                              capture_output=True, text=True, cwd=tmp_path)
        assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), args
