"""`feedpub subscribers add|remove|list|import|export`.

The store (SQLAlchemy, ~250 ms), the address check (email-validator, ~45 ms) and the post reader (~80 ms)
are imported inside the commands (measured with `python -X importtime`): `feedpub --help` stays fast.
"""

from __future__ import annotations

import csv
import difflib
import functools
import itertools
import json
import sys
import unicodedata
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from feedpub.cli import OK, PARTIAL, App, fail, report
from feedpub.counts import counted
from feedpub.errors import Problem
from feedpub.records import SubscriberInput

if TYPE_CHECKING:
    from feedpub.config import Config

CSV_HELP = "a header row: email[,name][,categories as a;b]"
# Terminal columns a table cell may take; longer ones are clipped (CSV and JSON keep them whole).
CELL_WIDTH = 40


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
    address = valid_address_or_fail(email)
    chosen = _split(categories, ",") if categories is not None else None
    report(_unknown_categories("--categories", None, chosen or (), _site_categories(app.config)))
    store = open_store_or_fail(app)
    # An operator adding an address by hand overrides an earlier removal; an import never does.
    lifted = store.lift_suppression(address)
    if lifted:
        click.echo(f"feedpub: {address}: suppression lifted (was: {lifted.reason})", err=True)
    entry = SubscriberInput(address, name, chosen)
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
    entries, problems = _read_csv(file, _site_categories(app.config))
    store = open_store_or_fail(app)
    # Importing a list must never re-mail someone who unsubscribed or bounced: existing rows keep their status.
    saved = store.save_subscribers(entries, status=None)
    suppressed = store.suppressed()
    problems += [Problem(str(file), None, f"{row.email}: suppressed; kept but never mailed", warning=True)
                 for row, _ in saved if row.email.lower() in suppressed]
    report(problems)
    created = sum(new for _, new in saved)
    errors = sum(not p.warning for p in problems)
    click.echo(f"imported {counted(len(saved), 'subscriber')} ({created} new, {len(saved) - created} updated), "
               f"{counted(errors, 'bad row')}",
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


def valid_address_or_fail(email: str) -> str:
    """The normalised address; one feedpub cannot mail is exit 2 saying why."""
    from feedpub.addresses import BadAddress, mailable

    try:
        return mailable(email)
    except BadAddress as exc:
        fail(f"{exc} (expected an address such as name@example.com)")


def _site_categories(config: Config) -> Callable[[], frozenset[str]]:
    """The categories of the site's published posts, read on the first call: naming no category costs
    no reading of posts."""
    @functools.cache
    def read() -> frozenset[str]:
        from feedpub.site.posts import collect

        return frozenset(category for post in collect(config, parallel=True).posts for category in post.categories)

    return read


def _read_csv(file: Path, known: Callable[[], Collection[str]]) -> tuple[list[SubscriberInput], list[Problem]]:
    """The subscribers a CSV file lists, and what is wrong with it. Rows with a bad address or one seen
    on an earlier row are skipped (the first row of an address wins)."""
    from feedpub.addresses import BadAddress, mailable
    from feedpub.store import email_key

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
    first_lines: dict[str, int] = {}   # email key → the line that listed it first
    try:
        for row in reader:
            line = reader.line_num
            try:
                address = mailable(row.get("email") or "")
            except BadAddress as exc:
                problems.append(Problem(str(file), line, str(exc), "a valid e-mail address"))
                continue
            first = first_lines.setdefault(email_key(address), line)
            if first != line:
                problems.append(Problem(str(file), line, f"duplicate of line {first}; skipped", "each address once"))
                continue
            name = (row.get("name") or "").strip() if "name" in header else None
            cats = _split(row.get("categories") or "", ";") if "categories" in header else None
            problems += _unknown_categories(str(file), line, cats or (), known)
            entries.append(SubscriberInput(address, name, cats))
    except csv.Error as exc:
        problems.append(Problem(str(file), reader.line_num, f"unreadable CSV ({exc}); rest of the file skipped"))
    return entries, problems


def _unknown_categories(path: str, line: int | None, names: Iterable[str],
                        known: Callable[[], Collection[str]]) -> list[Problem]:
    """A warning for each category no published post has; it is kept (such posts may come later)."""
    problems = []
    for name in names:
        if name in known():
            continue
        by_lower = {category.lower(): category for category in known()}
        close = difflib.get_close_matches(name.lower(), by_lower, n=1)
        such_as = f", such as '{by_lower[close[0]]}'" if close else ""
        problems.append(Problem(path, line, f"unknown category '{name}' kept; no published post has it",
                                f"a category of the site's posts{such_as}", warning=True))
    return problems


def _split(text: str, sep: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(part.strip() for part in text.split(sep) if part.strip()))


def _table(rows: Iterable[list[str]], headings: list[str]) -> None:
    rows = [headings, *([_clip(cell) for cell in row] for row in rows)]
    widths = [max(_width(row[i]) for row in rows) for i in range(len(headings))]
    for row in rows:
        click.echo("  ".join(cell + " " * (w - _width(cell)) for cell, w in zip(row, widths, strict=True)).rstrip())


def _clip(cell: str) -> str:
    """At most CELL_WIDTH columns, ending in "…" when cut: one long name must not widen every row."""
    if _width(cell) <= CELL_WIDTH:
        return cell
    kept = sum(1 for used in itertools.accumulate(map(_width, cell)) if used < CELL_WIDTH)   # room for "…"
    return cell[:kept] + "…"


def _width(text: str) -> int:
    """Terminal columns: East Asian wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
