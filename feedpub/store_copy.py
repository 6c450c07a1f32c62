"""Moving a list: a whole store copied into an empty one (SQLite to PostgreSQL, or back) and checked row by
row, a running store backed up to a new SQLite file, and every address of a store with all it knows of it
(`subscribers export --all`) restored in another (`import`).

Every table of `feedpub.schema.metadata` is copied as it is, column for column, so a table or column a
migration adds comes along with no change here. The source is read in one snapshot (a read transaction on
SQLite's write-ahead log, REPEATABLE READ on PostgreSQL): a running daemon may go on writing, and the copy
is the store as it was at one moment. The destination is written in one transaction: all of it or none.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from feedpub.schema import metadata, subscribers, suppressions
from feedpub.store import Store, StoreError, email_key, open_store
from feedpub.store_engine import keep_private

# Rows per INSERT batch and per fetch: bounded memory whatever the size of the store.
BATCH = 2000
# What `addresses` gives of each address: every column of a subscriber but its id and key (the address is
# the key) and of its suppression, named with SUPPRESSION_PREFIX, whatever columns migrations add.
SUBSCRIBER_COLUMNS = tuple(c.name for c in subscribers.columns if c.name not in ("id", "email_key"))
SUPPRESSION_COLUMNS = tuple(c.name for c in suppressions.columns if c.name != "email_key")
SUPPRESSION_PREFIX = "suppression_"


@dataclass(frozen=True)
class Copied:
    table: str
    rows: int


def tables() -> list[sa.Table]:
    """Every table of the schema, each after the tables its foreign keys name; the version row is each
    store's own."""
    return [table for table in metadata.sorted_tables if table.name != "schema_version"]


def copy_store(source: Store, target: Store) -> list[Copied]:
    """Copy every row of `source` into the empty `target` and check the copy row by row. StoreError (with
    nothing copied) when `target` holds anything, or a row does not fit it; after a copy that checks
    wrong, the StoreError names the table and row."""
    refuse_nonempty(target)
    with snapshot(source) as reading:
        try:
            with target.engine.begin() as writing:
                for table in tables():
                    for chunk in _batches(reading, table):
                        writing.execute(table.insert(), [row._asdict() for row in chunk])
                if writing.dialect.name == "postgresql":
                    _reset_sequences(writing)
        except sa.exc.DBAPIError as exc:
            raise StoreError(f"{target.shown}: cannot copy into it ({getattr(exc, 'orig', exc)}); nothing was "
                             f"copied (expected an empty feedpub store this feedpub can write)") from exc
        return check(reading, target)


def refuse_nonempty(target: Store) -> None:
    with target.engine.connect() as conn:
        held = {table.name: n for table in tables()
                if (n := conn.scalar(sa.select(sa.func.count()).select_from(table)))}
    if held:
        rows = ", ".join(f"{name}: {n}" for name, n in held.items())
        raise StoreError(f"{target.shown}: the destination store is not empty ({rows} rows); nothing was copied "
                         f"(expected a new, empty database)")


def check(reading: Connection, target: Store) -> list[Copied]:
    """Each table of `target` holds the rows `reading` sees, value for value (compared by a hash of each
    row, in primary key order): the count of each, or a StoreError naming the first row that differs."""
    copied = []
    with target.engine.connect() as written:
        for table in tables():
            count = 0
            pairs = itertools.zip_longest(_rows(reading, table), _rows(written, table))
            for count, (wanted, found) in enumerate(pairs, 1):  # noqa: B007 - the count is the last index
                if wanted is None or found is None or row_hash(wanted) != row_hash(found):
                    key = {column.name: (wanted or found)._mapping[column.name] for column in table.primary_key}
                    what = ("missing from the copy" if found is None else "in the copy, not in the source"
                            if wanted is None else "different in the copy")
                    raise StoreError(f"{target.shown}: table {table.name}, row {key}: {what} "
                                     f"(expected every row as the source has it)")
            copied.append(Copied(table.name, count))
    return copied


def row_hash(row: sa.Row[Any]) -> bytes:
    """The row's values as Python reads them from either database (aware UTC times, decoded JSON, bytes)."""
    return hashlib.sha256(json.dumps([_plain(value) for value in row], ensure_ascii=False, sort_keys=True)
                          .encode()).digest()


def backup(source: Store, destination: Path) -> list[Copied]:
    """A consistent copy of the store, while it runs, in the new SQLite file `destination` (0600): SQLite's
    online backup of a SQLite store, a checked `copy_store` of a PostgreSQL one."""
    if destination.exists():
        raise StoreError(f"{destination}: already exists; nothing was written (expected a new file name)")
    if source.engine.dialect.name != "sqlite":
        target = open_store(f"sqlite:///{destination}")
        try:
            return copy_store(source, target)
        finally:
            target.engine.dispose()
    keep_private(destination)
    with source.engine.connect() as conn:
        live = conn.connection.driver_connection
        into = sqlite3.connect(destination)
        try:
            live.backup(into)   # one step: a read snapshot of the whole file; writers go on meanwhile
            verdict = into.execute("PRAGMA integrity_check").fetchone()[0]
            if verdict != "ok":
                raise StoreError(f"{destination}: the backup fails SQLite's integrity check ({verdict})")
        finally:
            into.close()
    target = open_store(f"sqlite:///{destination}", migrate=False)
    try:
        with target.engine.connect() as conn:
            return [Copied(table.name, conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)
                    for table in tables()]
    finally:
        target.engine.dispose()


def address_columns() -> dict[str, sa.Column[Any]]:
    """The columns of `addresses`, by the name it gives them."""
    return {**{name: subscribers.c[name] for name in SUBSCRIBER_COLUMNS},
            **{SUPPRESSION_PREFIX + name: suppressions.c[name] for name in SUPPRESSION_COLUMNS}}


def addresses(store: Store) -> Iterator[dict[str, Any]]:
    """Every address the store holds, a subscriber's or only suppressed, with all it knows of it: the
    columns of `address_columns` (None where there is no subscriber or no suppression); subscribers in id
    order, then the addresses only suppressed."""
    subscriber_part = [subscribers.c[name] for name in SUBSCRIBER_COLUMNS]
    suppression_part = [suppressions.c[name].label(SUPPRESSION_PREFIX + name) for name in SUPPRESSION_COLUMNS]
    joined = (sa.select(*subscriber_part, *suppression_part)
              .outerjoin(suppressions, suppressions.c.email_key == subscribers.c.email_key)
              .order_by(subscribers.c.id))
    alone = (sa.select(suppressions.c.email_key.label("email"),
                       *(sa.null().label(name) for name in SUBSCRIBER_COLUMNS if name != "email"), *suppression_part)
             .where(~sa.exists().where(subscribers.c.email_key == suppressions.c.email_key))
             .order_by(suppressions.c.email_key))
    with store.engine.connect() as conn:
        for query in (joined, alone):
            for row in conn.execution_options(yield_per=BATCH).execute(query):
                yield dict(row._mapping)


def restore_addresses(store: Store, rows: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
    """Put back addresses as `addresses` gave them (another store's, through `subscribers export --all`), in
    one transaction: a subscriber this store lacks comes back as it was, its status and times included,
    while one it has keeps its row (restoring never re-mails anyone); a suppression it lacks comes back
    with its reason and every other column. (Subscribers, suppressions) added."""
    added = suppressed = 0
    with store.writing() as conn:
        for row in rows:
            key = email_key(row["email"])
            if row.get("status") and conn.scalar(
                    sa.select(subscribers.c.id).where(subscribers.c.email_key == key)) is None:
                conn.execute(subscribers.insert().values(
                    email_key=key, **{name: row[name] for name in SUBSCRIBER_COLUMNS if name in row}))
                added += 1
            suppression = {name: row[SUPPRESSION_PREFIX + name] for name in SUPPRESSION_COLUMNS
                           if row.get(SUPPRESSION_PREFIX + name) not in (None, "")}
            if suppression and conn.scalar(
                    sa.select(suppressions.c.email_key).where(suppressions.c.email_key == key)) is None:
                conn.execute(suppressions.insert().values(email_key=key, **suppression))
                suppressed += 1
    return added, suppressed


@contextmanager
def snapshot(store: Store) -> Iterator[Connection]:
    """A connection that sees the store as it was when its first read ran, however long the reading takes."""
    with store.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN")   # the driver begins only before writes: a read transaction by hand
        else:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        try:
            yield conn
        finally:
            conn.rollback()


def _rows(conn: Connection, table: sa.Table) -> Iterator[sa.Row[Any]]:
    for chunk in _batches(conn, table):
        yield from chunk


def _batches(conn: Connection, table: sa.Table) -> Iterator[list[sa.Row[Any]]]:
    """The table's rows in primary key order, BATCH at a time. Text keys in byte order on PostgreSQL too
    (its collation would sort them otherwise), so both databases list rows alike."""
    order = [column.collate("C") if conn.dialect.name == "postgresql" and isinstance(column.type, sa.String)
             else column for column in table.primary_key]
    result = conn.execution_options(yield_per=BATCH).execute(sa.select(table).order_by(*order))
    yield from (list(chunk) for chunk in result.partitions())


def _reset_sequences(conn: Connection) -> None:
    """Rows came with their ids: each id sequence continues after the largest one copied."""
    for table in tables():
        column = table.autoincrement_column
        if column is not None:
            conn.execute(sa.select(sa.func.setval(sa.func.pg_get_serial_sequence(table.name, column.name),
                                                  sa.func.coalesce(sa.func.max(column), 0) + 1, False)))


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return value

