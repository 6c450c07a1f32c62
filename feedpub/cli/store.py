"""`feedpub store migrate|copy|backup`: the store as a whole (its schema, moving it, copying it while it runs).

The store (SQLAlchemy, ~250 ms) is imported inside the commands: `feedpub --help` stays fast.
"""

from __future__ import annotations

import click

from feedpub.cli import App, fail


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
        fail(str(exc))
    if was == 0:
        click.echo(f"{shown}: created (v{found})")
    elif was < found:
        click.echo(f"{shown}: migrated from v{was} to v{found}")
    else:
        click.echo(f"{shown}: up to date (v{found})")
