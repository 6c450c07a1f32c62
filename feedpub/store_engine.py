"""The database under the store: an engine for a `store.url` (the driver, how long a lock is waited for,
SQLite's pragmas), the SQLite file kept private, and a lock held by another process told from other errors.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from feedpub.errors import FeedpubError, Message, message

log = logging.getLogger("feedpub.store")

# How long a command waits for another process's write to finish before it gives up (SQLite's busy
# timeout, PostgreSQL's lock_timeout): feedpub's own writes take milliseconds, queueing an issue of 100,000
# readers about a second; a store locked longer is one an operator should hear about.
BUSY_WAIT_SECONDS = 5


class StoreError(FeedpubError):
    """The store cannot be opened or used (unreadable, corrupt, from a newer feedpub)."""


class StoreBusy(StoreError):
    """Another process held the store's write lock for longer than BUSY_WAIT_SECONDS."""


def busy(exc: BaseException | None) -> bool:
    """`exc`, or the error under it (SQLAlchemy's `orig`, a StoreBusy's cause), says another process holds
    the lock this one waited BUSY_WAIT_SECONDS for: SQLite's SQLITE_BUSY or SQLITE_LOCKED, PostgreSQL's
    lock_not_available."""
    while exc is not None:
        if isinstance(exc, sqlite3.Error):
            return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
        if getattr(exc, "sqlstate", None) == "55P03":
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__
    return False


def busy_message(shown: str) -> Message:
    return message("store_locked", store=shown, seconds=BUSY_WAIT_SECONDS)


def shown_url(url: str) -> str:
    """How messages name the store at `url`: the file of a SQLite store, else the URL without its password."""
    if url.startswith("sqlite:///") and url != "sqlite://":
        return url[len("sqlite:///"):]
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


def make_engine(url: str, *, create: bool = True) -> tuple[Engine, str]:
    """An engine on `url` that waits BUSY_WAIT_SECONDS for a lock, and how messages name the store. Without
    `create`, a SQLite file that does not exist is a StoreError (instead of a new, empty store)."""
    shown = shown_url(url)
    if url.startswith("postgresql://"):   # the driver feedpub ships with is psycopg 3, not SQLAlchemy's default
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("sqlite:///") and url != "sqlite://":
        if not create and not Path(shown).is_file():
            raise StoreError(message("store_no_such_file", store=shown))
        keep_private(Path(shown))
    try:
        engine = sa.create_engine(url, connect_args={"options": f"-c lock_timeout={BUSY_WAIT_SECONDS}s"}
                                  if url.startswith("postgresql") else {})
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise StoreError(message("store_bad_url", url=repr(url), reason=str(exc))) from exc
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine, shown


def keep_private(path: Path) -> None:
    """The SQLite store at `path` readable by its owner only: it holds addresses, password hashes and raw
    bounces. A folder made for it is 0700, as is feedpub's own `.feedpub/`; the file (created empty, which
    SQLite takes for a new database) and its -wal and -shm, which SQLite gives the file's mode, are 0600.
    Looser ones made by an older feedpub are tightened, saying so."""
    folder = path.parent
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(message("store_cannot_create_folder", folder=str(folder), reason=exc.strerror or "")) from exc
    if folder.name == ".feedpub":
        _tighten(folder, 0o700)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreError(message("store_cannot_create", store=str(path), reason=exc.strerror or "")) from exc
    for each in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        _tighten(each, 0o600)


def _tighten(path: Path, mode: int) -> None:
    try:
        found = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if not found & 0o077:
        return
    try:
        path.chmod(mode)
    except OSError as exc:
        log.warning("%s", message("store_mode_kept", path=str(path), mode=f"{found:04o}", reason=exc.strerror or ""))
    else:
        log.info("%s", message("store_mode_tightened", path=str(path), was=f"{found:04o}", mode=f"{mode:04o}"))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer; NORMAL sync is still safe against a killed process.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_WAIT_SECONDS * 1000}")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Reads through a memory map instead of read() calls: the dashboard's aggregates over a million
    # delivery rows take a third of the time (bench/admin_bench.py).
    cursor.execute("PRAGMA mmap_size=268435456")
    cursor.close()
