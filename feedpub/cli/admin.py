"""`feedpub admin add-user|list-users|remove-user|reset-password`: the accounts of the dashboard (`/admin`).

Passwords are asked twice on the terminal (never an argument: it would stay in the shell history and in
`ps`), or read from the first line of standard input with `--password-stdin`. The store and argon2 are
imported inside the commands, as in the other command groups.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from feedpub.cli import App, fail, words
from feedpub.cli.subscribers import open_store_or_fail


@click.group()
def admin() -> None:
    """Manage the accounts of the operator's dashboard (/admin)."""


@admin.command("add-user")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.pass_obj
def add_user(app: App, name: str, password_stdin: bool) -> None:
    """Create account NAME; it can log in to /admin at once, in a running daemon too."""
    from feedpub import accounts  # lazy: sqlalchemy and argon2

    password = _password(password_stdin)
    _change(app, "account.add", name, lambda store, user: accounts.add_user(store, user, password))
    click.echo(app.strings.text("account_added", name=name))


@admin.command("list-users")
@click.pass_obj
def list_users(app: App) -> None:
    """List the accounts (name and creation time)."""
    from feedpub import accounts  # lazy: sqlalchemy and argon2

    for user in accounts.users(open_store_or_fail(app, migrate=False)):
        click.echo(f"{user.name}\t{user.created_at.astimezone(app.config.site.tz):%Y-%m-%d %H:%M %Z}")


@admin.command("remove-user")
@click.argument("name")
@click.pass_obj
def remove_user(app: App, name: str) -> None:
    """Remove account NAME and end its sessions."""
    from feedpub import accounts  # lazy: sqlalchemy and argon2

    _change(app, "account.remove", name, accounts.remove_user)
    click.echo(app.strings.text("account_removed", name=name))


@admin.command("reset-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.pass_obj
def reset_password(app: App, name: str, password_stdin: bool) -> None:
    """Set a new password for NAME and end its sessions."""
    from feedpub import accounts  # lazy: sqlalchemy and argon2

    password = _password(password_stdin)
    _change(app, "account.reset-password", name, lambda store, user: accounts.reset_password(store, user, password))
    click.echo(app.strings.text("account_password_changed", name=name))


def _change(app: App, action: str, name: str, change: Callable[[Any, str], None]) -> None:
    """`change(store, name)` on the store, audited as done from the command line; exit 2 with the reason."""
    from feedpub import accounts  # lazy: sqlalchemy and argon2

    store = open_store_or_fail(app)
    try:
        change(store, name)
    except accounts.AccountError as exc:
        fail(app.problems.message(exc.what))
    accounts.audit(store, user="cli", address="cli", action=action, detail=name)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        fail(words().text("no_terminal"))
    return click.prompt(words().text("password_prompt"), hide_input=True,
                        confirmation_prompt=words().text("password_again"))
