"""Shared fixtures: a site folder with posts (`site`), a real SMTP server (`smtp_server`), a fresh
PostgreSQL database (`pg_url`), an app served by uvicorn (`serving`), and Debian's Chromium
(`require_browser`, `CHROMIUM`, `BROWSER_ARGS`)."""

from __future__ import annotations

import os
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import uvicorn
from hypothesis import settings

from feedpub.config import Config
from feedpub.config_file import load_config
from feedpub.schema import MIGRATIONS, metadata, schema_version
from feedpub.store import Store, open_store
from tests.smtp_server import SMTPTestServer

# In CI the property tests draw the same examples at every run, so a run passes or fails for the code, not
# for the draw; run locally they keep exploring. No example has a deadline: on a shared, loaded machine a slow
# example says nothing about the code (speed is the benchmarks' business).
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("local", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "local")

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking switches Chromium keeps calling hosts this closed network refuses.
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]


class Site:
    """A throwaway site: tmp/feedpub.toml + tmp/posts/."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.posts = root / "posts"
        self.posts.mkdir()
        self.toml = root / "feedpub.toml"
        self.configure()

    def configure(self, extra: str = "", **site: str) -> None:
        values = {"title": "Test blog", "url": "https://blog.example.com", "timezone": "Asia/Tokyo",
                  "author": "編集部", **site}
        lines = "\n".join(f'{key} = "{value}"' for key, value in values.items())
        self.toml.write_text(f"[site]\n{lines}\n{textwrap.dedent(extra)}", encoding="utf-8")

    def post(self, name: str, text: str | bytes) -> Path:
        path = self.posts / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, str):
            path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        else:
            path.write_bytes(text)
        return path

    @property
    def config(self) -> Config:
        return load_config(self.toml)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


@pytest.fixture
def smtp_server() -> Iterator[SMTPTestServer]:
    """A started server on 127.0.0.1 that records every message and injects faults on demand."""
    server = SMTPTestServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The URL of a fresh, empty database (psycopg 3 driver)."""
    server = os.environ.get("FEEDPUB_TEST_PG_URL")
    if not server:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but FEEDPUB_TEST_PG_URL is not set: the PostgreSQL tests must run in CI")
        pytest.skip("FEEDPUB_TEST_PG_URL is not set (e.g. postgresql+psycopg://postgres@127.0.0.1:54329/postgres)")
    name = f"feedpub_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def serving(app: Any, port: int) -> Iterator[None]:
    """`app` served by uvicorn on 127.0.0.1:`port`, as the daemon serves it, until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def store_of_version(url: str, version: int, *after: str) -> None:
    """A store at `url` as a feedpub of schema `version` left it: its first `version` migration steps, then the
    SQL statements `after` (the steps create tables as defined today: a test drops what later steps add)."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        schema_version.create(conn)
        conn.execute(schema_version.insert().values(version=version))
        for step in MIGRATIONS[:version]:
            step(conn)
        for statement in after:
            conn.execute(sa.text(statement))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty store: a SQLite file in tmp_path, then the session's PostgreSQL database (emptied)."""
    if request.param == "sqlite":
        opened = open_store(f"sqlite:///{tmp_path / 'feedpub.db'}")
    else:
        opened = emptied(open_store(request.getfixturevalue("pg_url")))
    yield opened
    opened.engine.dispose()


def emptied(store: Store) -> Store:
    """`store` with every table emptied: the PostgreSQL database of `pg_url` is shared by the session."""
    tables = ", ".join(table.name for table in metadata.sorted_tables if table.name != "schema_version")
    with store.engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return store


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the test module (1.3 s to start); each test opens its own context or pages."""
    require_browser()
    from playwright.sync_api import sync_playwright  # optional: require_browser() skips without it

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def require_browser() -> None:
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium fonts-ipafont-gothic)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install playwright; never `playwright install`)")
    if missing:
        message = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
