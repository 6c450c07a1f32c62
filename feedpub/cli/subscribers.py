"""`feedpub subscribers add|remove|list|import|export`."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable
from pathlib import Path

import click

from feedpub.cli import OK, PARTIAL, App, fail, report
from feedpub.errors import Problem

CSV_HELP = "a header row: email[,name][,categories as a;b]"


@click.group()
def subscribers() -> None:
    """Manage digest subscribers."""


@subscribers.command()
@click.argument("email")
@click.option("--name", default=None, help="Display name.")
@click.option("--categories", default=None, help="Only posts in these categories (comma-separated).")
@click.option("--pending", is_flag=True, help="Add unconfirmed (not mailed until confirmed).")
@click.pass_obj
def add(app: App, email: str, name: str | None, categories: str | None, pending: bool) -> None:
    """Add a subscriber, or update and reactivate an existing one."""
    from feedpub.store import SubscriberInput

    address = valid_address_or_fail(email)
    store = open_store_or_fail(app)
    # An operator adding an address by hand overrides an earlier removal; an import never does.
    lifted = store.lift_suppression(address)
    if lifted:
        click.echo(f"feedpub: {address}: suppression lifted (was: {lifted.reason})", err=True)
    entry = SubscriberInput(address, name, _split(categories, ",") if categories is not None else None)
    ((row, created),) = store.save_subscribers([entry], status="pending" if pending else "active")
    click.echo(f"{'added' if created else 'updated'} {row.email} ({row.status})")


@subscribers.command()
@click.argument("email")
@click.pass_obj
def remove(app: App, email: str) -> None:
    """Unsubscribe an address and suppress it (it is never mailed again)."""
    address = valid_address_or_fail(email)
    row = open_store_or_fail(app).unsubscribe(address, "removed by operator")
    click.echo(f"unsubscribed and suppressed {address}" if row else f"suppressed {address} (not a subscriber)")


@subscribers.command(name="list")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.pass_obj
def list_(app: App, fmt: str) -> None:
    """List all subscribers with their status."""
    store = open_store_or_fail(app)
    rows = store.subscribers()
    suppressed = store.suppressed()
    records = [{"email": r.email, "name": r.name, "status": r.status, "categories": list(r.categories),
                "suppressed": r.email.lower() in suppressed, "created": r.created_at.isoformat(),
                "confirmed": r.confirmed_at.isoformat() if r.confirmed_at else None,
                "unsubscribed": r.unsubscribed_at.isoformat() if r.unsubscribed_at else None} for r in rows]
    if fmt == "json":
        click.echo(json.dumps(records, ensure_ascii=False, indent=2))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["email", "name", "status", "categories", "suppressed", "created"])
        for r in records:
            writer.writerow([r["email"], r["name"], r["status"], ";".join(r["categories"]),
                             "yes" if r["suppressed"] else "", r["created"]])
    else:
        _table([[r["email"], r["name"], r["status"] + (" (suppressed)" if r["suppressed"] else ""),
                 ", ".join(r["categories"]), r["created"][:10]] for r in records],
               ["EMAIL", "NAME", "STATUS", "CATEGORIES", "CREATED"])


@subscribers.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def import_(app: App, file: Path) -> None:
    """Add or update subscribers from a CSV file (header row: email[,name][,categories as a;b])."""
    from feedpub.store import SubscriberInput

    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{file}: cannot read ({exc}) (expected a UTF-8 CSV file with {CSV_HELP})")
    reader = csv.DictReader(text.splitlines(keepends=True))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    if "email" not in header:
        fail(f"{file}:1: no 'email' column (expected {CSV_HELP})")
    reader.fieldnames = header
    problems = [Problem(str(file), 1, f"unknown column '{name}' ignored", "email, name, categories", warning=True)
                for name in header if name not in ("email", "name", "categories")]
    entries: list[SubscriberInput] = []
    try:
        for row in reader:
            address, error = _validate((row.get("email") or "").strip())
            if error:
                problems.append(Problem(str(file), reader.line_num, error, "a valid e-mail address"))
                continue
            name = (row.get("name") or "").strip() if "name" in header else None
            cats = _split(row.get("categories") or "", ";") if "categories" in header else None
            entries.append(SubscriberInput(address, name, cats))
    except csv.Error as exc:
        problems.append(Problem(str(file), reader.line_num, f"unreadable CSV ({exc}); rest of the file skipped"))
    store = open_store_or_fail(app)
    # Importing a list must never re-mail someone who unsubscribed or bounced: existing rows keep their status.
    saved = store.save_subscribers(entries, status=None)
    suppressed = store.suppressed()
    problems += [Problem(str(file), None, f"{row.email}: suppressed; kept but never mailed", warning=True)
                 for row, _ in saved if row.email.lower() in suppressed]
    report(problems)
    created = sum(new for _, new in saved)
    errors = sum(not p.warning for p in problems)
    click.echo(f"imported {len(saved)} subscribers ({created} new, {len(saved) - created} updated), {errors} bad rows",
               err=True)
    raise SystemExit(PARTIAL if errors else OK)


@subscribers.command()
@click.pass_obj
def export(app: App) -> None:
    """Write the active subscribers as CSV to stdout (the format `import` reads)."""
    store = open_store_or_fail(app)
    suppressed = store.suppressed()
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["email", "name", "categories"])
    for row in store.subscribers("active"):
        if row.email.lower() not in suppressed:
            writer.writerow([row.email, row.name, ";".join(row.categories)])


def open_store_or_fail(app: App):  # noqa: ANN201 - feedpub.store.Store, imported lazily
    """The configured store; an unusable store is exit 2 naming the file."""
    from feedpub.store import StoreError, open_store

    try:
        return open_store(app.config.store_url)
    except StoreError as exc:
        fail(str(exc))


def _validate(email: str) -> tuple[str, str | None]:
    """(normalised address, None) or ("", why it is not an address)."""
    from email_validator import EmailNotValidError, validate_email

    if not email:
        return "", "empty e-mail address"
    try:
        # Digest mail is plain SMTP without SMTPUTF8: only addresses with an ASCII form are usable.
        valid = validate_email(email, check_deliverability=False, allow_smtputf8=False)
        return valid.ascii_email or valid.normalized, None
    except EmailNotValidError as exc:
        return "", f"{email!r} is not a valid e-mail address: {exc}"


def valid_address_or_fail(email: str) -> str:
    address, error = _validate(email.strip())
    if error:
        fail(f"{error} (expected an address such as name@example.com)")
    return address


def _split(text: str, sep: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(part.strip() for part in text.split(sep) if part.strip()))


def _table(rows: Iterable[list[str]], headings: list[str]) -> None:
    rows = [headings, *rows]
    widths = [max(_width(row[i]) for row in rows) for i in range(len(headings))]
    for row in rows:
        click.echo("  ".join(cell + " " * (w - _width(cell)) for cell, w in zip(row, widths, strict=True)).rstrip())


def _width(text: str) -> int:
    """Terminal columns: East Asian wide characters take two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
