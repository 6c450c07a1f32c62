"""`feedpub admin …` accounts and `feedpub digest pause|resume|cancel` through the real command line."""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner, Result

from feedpub import accounts
from feedpub.cli import main
from feedpub.config_file import load_config
from feedpub.send.dispatch import send_due_issue
from feedpub.store import open_store
from tests.send.sites import READERS, SECRET, write_config, write_site
from tests.send.sites import feedpub as site_feedpub
from tests.test_pg_store import queue_issue


def feedpub(config, *args: str, input: str = "") -> Result:  # noqa: A002 - CliRunner's name for stdin
    return CliRunner().invoke(main, ["--config", str(config), *args], input=input, catch_exceptions=False)


def test_accounts_from_the_command_line(tmp_path):
    config = write_config(tmp_path, 2525)
    added = feedpub(config, "admin", "add-user", "編集長", "--password-stdin", input="long enough password\n")
    assert added.exit_code == 0 and "added 編集長" in added.output
    again = feedpub(config, "admin", "add-user", "編集長", "--password-stdin", input="long enough password\n")
    assert again.exit_code == 2 and "account '編集長' exists" in again.output
    short = feedpub(config, "admin", "add-user", "ops", "--password-stdin", input="short\n")
    assert short.exit_code == 2 and "at least 10 characters" in short.output
    listed = feedpub(config, "admin", "list-users")
    assert listed.exit_code == 0 and listed.output.startswith("編集長\t")
    store = open_store(f"sqlite:///{tmp_path / '.feedpub' / 'feedpub.db'}")
    assert accounts.authenticate(store, "編集長", "long enough password") is not None
    with sqlite3.connect(tmp_path / ".feedpub" / "feedpub.db") as db:   # argon2id, never the password itself
        (stored,) = db.execute("SELECT password_hash FROM admin_users").fetchone()
    assert stored.startswith("$argon2id$") and "long enough" not in stored

    user = accounts.authenticate(store, "編集長", "long enough password")
    session_id, _ = accounts.open_session(store, user, timedelta(hours=1))
    reset = feedpub(config, "admin", "reset-password", "編集長", "--password-stdin", input="a new password!\n")
    assert reset.exit_code == 0
    assert accounts.session(store, session_id) is None                 # a reset ends the sessions
    assert accounts.authenticate(store, "編集長", "long enough password") is None
    assert accounts.authenticate(store, "編集長", "a new password!") is not None
    missing = feedpub(config, "admin", "remove-user", "nobody")
    assert missing.exit_code == 2 and "no account 'nobody'" in missing.output
    assert feedpub(config, "admin", "remove-user", "編集長").exit_code == 0
    assert not accounts.has_users(store)
    assert [e.action for e in accounts.audit_log(store, 10)] == ["account.remove", "account.reset-password",
                                                                 "account.add"]


def test_password_is_asked_on_a_terminal_only(tmp_path):
    config = write_config(tmp_path, 2525)
    answer = feedpub(config, "admin", "add-user", "ops", input="")
    assert answer.exit_code == 2 and "--password-stdin" in answer.output


def test_digest_pause_resume_cancel(tmp_path):
    config = write_config(tmp_path, 2525)
    store = open_store(f"sqlite:///{tmp_path / '.feedpub' / 'feedpub.db'}")
    issue = queue_issue(store, 3, period="2026-11-30-0900")
    paused = feedpub(config, "digest", "pause", issue.period)
    assert paused.exit_code == 0 and "paused; 3 rows wait" in paused.output
    status = feedpub(config, "digest", "status").output.splitlines()
    assert status[0].split()[:7] == ["ISSUE", "KIND", "ZONE", "COVERS", "HOLD", "CANCELLED", "QUEUED"]
    assert status[1].split()[-9:] == ["paused", "0", "3", "0", "0", "0", "0", "0", "0"]
    assert status[1].split()[1:3] == ["weekly", "-"]                 # KIND, ZONE (the site's)
    assert feedpub(config, "digest", "pause", issue.period).exit_code == 2
    assert "resumed; 3 rows left" in feedpub(config, "digest", "resume", issue.period).output
    cancelled = feedpub(config, "digest", "cancel", issue.period)
    assert cancelled.exit_code == 0 and "3 unsent rows cancelled" in cancelled.output
    unknown = feedpub(config, "digest", "resume", "1999-01-01-0900")
    assert unknown.exit_code == 2 and "no issue '1999-01-01-0900'" in unknown.output
    assert [e.action for e in accounts.audit_log(store, 10)] == ["issue.cancel", "issue.resume", "issue.pause"]


def test_digest_send_leaves_a_paused_issue_alone_and_sends_it_once_resumed(tmp_path, smtp_server, monkeypatch,
                                                                           caplog):
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    config = write_site(tmp_path, smtp_server.port)
    store = open_store(load_config(config).store_url)
    queued = send_due_issue(load_config(config), store, datetime.now(UTC), send=False)   # composed and queued
    period = queued.period
    assert feedpub(config, "digest", "pause", period).exit_code == 0
    with caplog.at_level(logging.INFO):
        paused = site_feedpub(config, "digest", "send")
    assert paused.exit_code == 0 and f"issue {period} is paused; nothing sent" in caplog.text
    assert smtp_server.received == []
    assert feedpub(config, "digest", "resume", period).exit_code == 0
    resumed = site_feedpub(config, "digest", "send")
    assert resumed.exit_code == 0, resumed.output
    assert sorted(smtp_server.recipients()) == sorted(READERS)
    store.engine.dispose()
