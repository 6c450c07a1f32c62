"""A store another process holds locked, an old store, and who may read the store's files: through the web
app, the real CLI and a real SQLite file locked by a second process (BEGIN IMMEDIATE)."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from starlette.testclient import TestClient

from feedpub.cli import main
from feedpub.records import SubscriberInput
from feedpub.schema import MIGRATIONS
from feedpub.store import open_store
from feedpub.store_engine import BUSY_WAIT_SECONDS, shown_url
from feedpub.web.app import create_app
from tests.conftest import emptied, store_of_version

HOLDER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
connection.rollback()
"""


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Another process holds the write lock of the SQLite file at `path` until the block ends."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


@pytest.fixture
def site_store(site, monkeypatch):
    """The site's configured store (`.feedpub/feedpub.db` below the site), created, with one reader."""
    monkeypatch.setenv("FEEDPUB_SECRET", "test-secret")
    monkeypatch.setenv("FEEDPUB_WEBHOOK_TOKEN", "hook-token")
    site.configure('[web]\npublic_url = "https://news.example.com"\n')
    monkeypatch.chdir(site.root)
    store = open_store(site.config.store_url)
    store.save_subscribers([SubscriberInput("taro@example.jp", "山田 太郎")], status="active")
    yield site, store, Path(store.shown)
    store.engine.dispose()


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_a_locked_store_answers_503_with_retry_after_to_forms_and_webhooks(site_store):
    site, store, path = site_store
    app = create_app(site.config, store, send_confirmation=lambda *mail: None, topics=lambda: [],
                     health=dict)
    with TestClient(app) as client, locked(path), ThreadPoolExecutor(2) as pool:
        # Both at once: each waits out BUSY_WAIT_SECONDS for the lock.
        form = pool.submit(client.post, "/subscribe", data={"email": "hanako@example.jp"})
        hook = pool.submit(client.post, "/webhooks/bounce",
                           json=[{"id": "e-1", "kind": "hard", "recipient": "taro@example.jp"}],
                           headers={"Authorization": "Bearer hook-token"})
        page = client.get("/subscribe")            # reading needs no lock
        form, hook = form.result(), hook.result()
    for answer in (form, hook):
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == str(BUSY_WAIT_SECONDS)
        assert "try again" in answer.text
    assert page.status_code == 200
    assert store.subscriber("hanako@example.jp") is None and store.suppression("taro@example.jp") is None


def test_reading_commands_work_on_a_locked_store_and_writing_ones_exit_2_naming_the_lock(site_store):
    _, _, path = site_store
    with locked(path):
        status = cli("digest", "status")
        listed = cli("subscribers", "list", "--format", "json")
        added = cli("subscribers", "add", "hanako@example.jp")
    assert status.exit_code == 0 and "no issues yet" in status.stdout
    assert listed.exit_code == 0 and "山田 太郎" in listed.stdout
    assert added.exit_code == 2
    assert f"feedpub: the store {path} is locked by another process (waited {BUSY_WAIT_SECONDS} s" in added.stderr
    assert cli("subscribers", "add", "hanako@example.jp").exit_code == 0   # once the lock is gone


def test_an_old_store_is_migrated_once_by_a_writing_command_and_reading_ones_say_so(site, monkeypatch, caplog):
    monkeypatch.chdir(site.root)
    path = site.root / ".feedpub" / "feedpub.db"
    path.parent.mkdir()
    store_of_version(f"sqlite:///{path}", len(MIGRATIONS) - 1)
    caplog.set_level(logging.INFO, logger="feedpub")

    status = cli("digest", "status")
    assert status.exit_code == 2
    site.post("2025-12-16-post.md", "---\ntitle: 記事\n---\n\n本文\n")
    assert cli("check").exit_code == 0                        # asks the store about late posts; migrates nothing
    assert (f"{path}: the store is at schema v{len(MIGRATIONS) - 1} and this feedpub needs v{len(MIGRATIONS)} "
            "(run `feedpub store migrate`") in status.stderr

    assert cli("subscribers", "add", "taro@example.jp").exit_code == 0
    assert cli("subscribers", "add", "hanako@example.jp").exit_code == 0
    migrated = [r.getMessage() for r in caplog.records if "store migrated" in r.getMessage()]
    assert migrated == [f"{path}: store migrated from v{len(MIGRATIONS) - 1} to v{len(MIGRATIONS)}"]
    assert cli("digest", "status").exit_code == 0


def test_store_migrate_is_the_explicit_form(site, monkeypatch):
    monkeypatch.chdir(site.root)
    path = site.root / ".feedpub" / "feedpub.db"
    path.parent.mkdir()
    store_of_version(f"sqlite:///{path}", 2)
    first = cli("store", "migrate")
    assert first.exit_code == 0 and f"{path}: migrated from v2 to v{len(MIGRATIONS)}" in first.stdout
    again = cli("store", "migrate")
    assert again.exit_code == 0 and f"{path}: up to date (v{len(MIGRATIONS)})" in again.stdout


def test_a_migration_waits_for_the_lock_and_then_exits_2_naming_it(site, monkeypatch):
    monkeypatch.chdir(site.root)
    path = site.root / ".feedpub" / "feedpub.db"
    path.parent.mkdir()
    store_of_version(f"sqlite:///{path}", 2)
    with locked(path):
        result = cli("subscribers", "add", "taro@example.jp")
    assert result.exit_code == 2 and f"the store {path} is locked by another process" in result.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_store_and_its_folder_are_private(site, monkeypatch):
    monkeypatch.chdir(site.root)
    umask = os.umask(0o022)   # the usual one, which alone would give 0755 and 0644
    try:
        assert cli("subscribers", "add", "taro@example.jp").exit_code == 0
    finally:
        os.umask(umask)
    folder = site.root / ".feedpub"
    assert mode(folder) == 0o700
    files = [folder / "feedpub.db", folder / "feedpub.db-wal", folder / "feedpub.db-shm"]
    assert [mode(f) for f in files if f.exists()] == [0o600] * len([f for f in files if f.exists()])
    assert (folder / "feedpub.db").exists()


def test_looser_modes_left_by_an_older_feedpub_are_tightened_naming_the_path(site, monkeypatch, caplog):
    monkeypatch.chdir(site.root)
    folder = site.root / ".feedpub"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    store = open_store(site.config.store_url)
    store.save_subscribers([SubscriberInput("taro@example.jp")], status="active")
    store.engine.dispose()
    db = folder / "feedpub.db"
    for each in (folder / "feedpub.db", folder / "feedpub.db-wal"):
        each.touch()
        each.chmod(0o644)
    folder.chmod(0o755)
    caplog.set_level(logging.INFO, logger="feedpub")
    assert cli("subscribers", "list").exit_code == 0
    assert (mode(folder), mode(db), mode(folder / "feedpub.db-wal")) == (0o700, 0o600, 0o600)
    lines = [r.getMessage() for r in caplog.records]
    assert f"{folder}: mode 0755 tightened to 0700 (only its owner may read the store)" in lines
    assert f"{db}: mode 0644 tightened to 0600 (only its owner may read the store)" in lines


def test_a_command_waits_for_a_postgresql_lock_then_exits_2_naming_it(site, monkeypatch, pg_url):
    site.configure(f'[store]\nurl = "{pg_url}"\n')
    monkeypatch.chdir(site.root)
    emptied(open_store(pg_url)).engine.dispose()
    holder = sa.create_engine(pg_url)
    with holder.connect() as conn:
        conn.execute(sa.text("LOCK TABLE subscribers IN SHARE ROW EXCLUSIVE MODE"))   # writes wait, reads go on
        listed = cli("subscribers", "list")
        added = cli("subscribers", "add", "taro@example.jp")
        conn.rollback()
    holder.dispose()
    assert listed.exit_code == 0
    assert added.exit_code == 2
    assert f"the store {shown_url(pg_url)} is locked by another process (waited {BUSY_WAIT_SECONDS} s" in added.stderr
