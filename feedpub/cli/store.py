"""`feedpub store migrate|copy|backup`: the store as a whole (its schema, moving it, copying it while it runs).

The store (SQLAlchemy, ~250 ms) is imported inside the commands: `feedpub --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from feedpub.cli import App, error_text, fail, say

if TYPE_CHECKING:
    from feedpub.store_copy import Copied
    from feedpub.strings import Strings


@click.group()
def store() -> None:
    """Migrate, copy or back up the store."""


@store.command()
@click.argument("url", required=False)
@click.pass_obj
def migrate(app: App, url: str | None) -> None:
    """Bring the store (store.url, or URL) to this feedpub's schema. Any command that writes does it too;
    this is the explicit form, for a deployment script or before read-only commands."""
    from feedpub.store import StoreError, migrate_store

    try:
        shown, was, found = migrate_store(url or app.config.store_url)
    except StoreError as exc:
        fail(error_text(exc))
    t = app.strings
    if was == 0:
        say(t.text("store_created", store=shown, version=found))
    elif was < found:
        say(t.text("store_migrated", store=shown, was=was, version=found))
    else:
        say(t.text("store_up_to_date", store=shown, version=found))


@store.command()
@click.argument("source_url", metavar="SRC_URL")
@click.argument("destination_url", metavar="DST_URL")
def copy(source_url: str, destination_url: str) -> None:
    """Copy a whole store into an empty one, SQLite to PostgreSQL or back: subscribers, suppressions, issues,
    deliveries, bounces, accounts, the audit log; then check it row by row. The source may be in use."""
    from feedpub.store import StoreError, open_store
    from feedpub.store_copy import copy_store

    try:
        source = open_store(source_url, migrate=False, create=False)
        target = open_store(destination_url)
        copied = copy_store(source, target)
    except StoreError as exc:
        fail(error_text(exc))
    # No config needed to copy: its words are in site.language when there is one that loads.
    t = click.get_current_context().find_object(App).strings_without_config()
    _summary(t, copied, t.text("store_copied", source=source.shown, target=target.shown))


@store.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def backup(app: App, file: Path) -> None:
    """Back up the store, while it runs, to the new SQLite file FILE (readable by its owner only)."""
    from feedpub.store import StoreError, open_store
    from feedpub.store_copy import backup as back_up

    try:
        store_ = open_store(app.config.store_url, migrate=False, create=False)
        copied = back_up(store_, file)
    except StoreError as exc:
        fail(error_text(exc))
    _summary(app.strings, copied, app.strings.text("store_backed_up", source=store_.shown, target=file))


def _summary(t: Strings, copied: list[Copied], done: str) -> None:
    for each in copied:
        say(t.text("store_table_rows", table=each.table, rows=t.count("rows", each.rows)), err=True)
    say(t.text("store_summary", done=done, rows=t.count("rows", sum(each.rows for each in copied)),
               tables=t.count("tables", len(copied))))
