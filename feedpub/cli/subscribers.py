"""`feedpub subscribers add|remove|list|import|export|restore`.

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
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, get_args

import click

from feedpub import spreadsheet
from feedpub.cli import OK, PARTIAL, App, error_text, fail, report, say, words
from feedpub.errors import Message, Problem, message
from feedpub.records import CADENCES, SubscriberInput, SubscriberStatus, default_cadence

if TYPE_CHECKING:
    from feedpub.config import Config
    from feedpub.store import Store

STATUSES: tuple[str, ...] = get_args(SubscriberStatus)
# The columns `import` reads (categories: a file written before topics).
_CSV_COLUMNS = ("email", "name", "topics", "cadence", "timezone", "categories")
# Terminal columns a table cell may take; longer ones are clipped (CSV and JSON keep them whole).
CELL_WIDTH = 40


@click.group()
def subscribers() -> None:
    """Manage digest subscribers."""


@subscribers.command()
@click.argument("email")
@click.option("--name", default=None, help="Display name.")
@click.option("--topics", default=None, metavar="GROUP/NAME,…",
              help="Only the posts of these feeds (comma-separated: categories/NAME, tags/NAME, authors/NAME, as the "
                   "feed's folder or the name the posts give).")
@click.option("--categories", default=None, help="Only posts in these categories (comma-separated).")
@click.option("--cadence", type=click.Choice(CADENCES), default=None,
              help="How often: each post, daily, weekly or monthly (one of digest.cadences; a new subscriber "
                   "without it gets weekly when offered).")
@click.option("--timezone", "zone", default=None, metavar="ZONE",
              help="The reader's IANA time zone, such as Asia/Tokyo (default: site.timezone).")
@click.option("--pending", is_flag=True, help="Add unconfirmed (not mailed until confirmed).")
@click.pass_obj
def add(app: App, email: str, name: str | None, topics: str | None, categories: str | None, cadence: str | None,
        zone: str | None, pending: bool) -> None:
    """Add a subscriber, or update and reactivate an existing one."""
    from feedpub.zones import known_zone  # lazy: reads the time zone database's names, 0.1-0.4 s

    address = valid_address_or_fail(email)
    config = app.config
    if cadence is not None and cadence not in config.digest.cadences:
        fail(words().text("option_cadence_not_offered", cadence=cadence, offered=", ".join(config.digest.cadences)))
    if zone is not None and not known_zone(zone):
        fail(words().text("option_unknown_zone", option="--timezone", zone=repr(zone)))
    chosen = _split(categories, ",") if categories is not None else None
    known = _site_categories(config)
    report(_unknown_categories("--categories", None, chosen or (), known))
    folders = _category_topics(_site_spelling(chosen, known))
    if topics is not None:
        folders = tuple(dict.fromkeys((*(folders or ()), *_site_topics_or_fail(config, _split(topics, ",")))))
    store = open_store_or_fail(app)
    if cadence is None and store.subscriber(address) is None:
        cadence = default_cadence(config.digest.cadences)
    # An operator adding an address by hand overrides an earlier removal; an import never does.
    lifted = store.lift_suppression(address)
    if lifted:
        say(words().text("suppression_lifted", email=address, reason=lifted.reason), err=True)
    entry = SubscriberInput(address, name, folders, cadence, zone)
    ((row, created),) = store.save_subscribers([entry], status="pending" if pending else "active")
    say(words().text("subscriber_added" if created else "subscriber_updated", email=row.email, status=row.status))


@subscribers.command()
@click.argument("email")
@click.pass_obj
def remove(app: App, email: str) -> None:
    """Unsubscribe an address and suppress it (it is never mailed again)."""
    address = valid_address_or_fail(email)
    row = open_store_or_fail(app).unsubscribe(address, "removed by operator", cause="operator", cause_ref="cli")
    say(words().text("subscriber_removed" if row else "subscriber_not_found", email=address))


@subscribers.command(name="list")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.pass_obj
def list_(app: App, fmt: str) -> None:
    """List all subscribers with their status."""
    store = open_store_or_fail(app, migrate=False)
    rows = store.subscribers()
    suppressed = store.suppressed()
    records = [{"email": r.email, "name": r.name, "status": r.status, "topics": list(r.topics),
                "cadence": r.cadence, "timezone": r.timezone,
                "suppressed": r.email.lower() in suppressed, "created": r.created_at.isoformat(),
                "confirmed": r.confirmed_at.isoformat() if r.confirmed_at else None,
                "unsubscribed": r.unsubscribed_at.isoformat() if r.unsubscribed_at else None} for r in rows]
    if fmt == "json":
        click.echo(json.dumps(records, ensure_ascii=False, indent=2))
    elif fmt == "csv":
        writer = spreadsheet.Writer(sys.stdout)
        writer.writerow(["email", "name", "status", "topics", "cadence", "timezone", "suppressed", "created"])
        for r in records:
            writer.writerow([r["email"], r["name"], r["status"], ";".join(r["topics"]), r["cadence"], r["timezone"],
                             "yes" if r["suppressed"] else "", r["created"]])
    else:
        t = app.strings
        _table([[r["email"], r["name"], r["status"] + (t.text("suppressed_mark") if r["suppressed"] else ""),
                 ", ".join(r["topics"]), r["cadence"], r["timezone"], r["created"][:10]] for r in records],
               [t.text(f"column_{name}") for name in ("email", "name", "status", "topics", "cadence", "timezone",
                                                      "created")])


@subscribers.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def import_(app: App, file: Path) -> None:
    """Add or update subscribers from a CSV file (header row: email[,name][,topics][,cadence][,timezone]; an
    older file's categories column as a;b is read as those categories' topics), or put
    back the addresses of `export --all` as they were (a header with a status column)."""
    header, rows, problems = _csv_rows(file)
    if "status" in header:
        _import_all(app, file, header, rows, problems)
    entries, found = _subscriber_inputs(file, header, rows, _site_categories(app.config), app.config.digest.cadences)
    problems = found + problems
    store = open_store_or_fail(app)
    # Importing a list must never re-mail someone who unsubscribed or bounced: existing rows keep their status.
    saved = store.save_subscribers(entries, status=None)
    suppressed = store.suppressed()
    problems += [Problem(str(file), None, message("suppressed_kept", email=row.email), warning=True)
                 for row, _ in saved if row.email.lower() in suppressed]
    report(problems)
    created = sum(new for _, new in saved)
    errors = sum(not p.warning for p in problems)
    t = words()
    say(t.text("import_summary", subscribers=t.count("subscribers", len(saved)), new=created,
               updated=len(saved) - created, bad_rows=t.count("bad_rows", errors)), err=True)
    raise SystemExit(PARTIAL if errors else OK)


@subscribers.command()
@click.option("--all", "everything", is_flag=True,
              help="Every address with all the store knows of it: pending, unsubscribed and suppressed ones "
                   "too, with their status, times and suppression (for moving a list; `import` restores it).")
@click.pass_obj
def export(app: App, everything: bool) -> None:
    """Write the active subscribers as CSV to stdout (the format `import` reads)."""
    store = open_store_or_fail(app, migrate=False)
    if everything:
        _export_all(store)
        return
    suppressed = store.suppressed()
    writer = spreadsheet.Writer(sys.stdout)
    writer.writerow(["email", "name", "topics", "cadence", "timezone"])
    for row in store.subscribers("active"):
        if row.email.lower() not in suppressed:
            writer.writerow([row.email, row.name, ";".join(row.topics), row.cadence, row.timezone])


@subscribers.command()
@click.option("--cause", metavar="ISSUE|bounce:ID",
              help="Whose suppressions: an issue's period (refused while sending it) or a bounce's evidence id "
                   "(`feedpub bounces list`).")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]),
              help="Only suppressions made at or after this time (site.timezone); alone: those of every issue "
                   "and bounce since then.")
@click.option("--dry-run", is_flag=True, help="List what would be lifted; lift nothing.")
@click.pass_obj
def restore(app: App, cause: str | None, since: datetime | None, dry_run: bool) -> None:
    """Lift the suppressions one cause made (an issue's refusals, a bounce), audited. Unsubscribes and
    complaints are the readers' own and are never lifted."""
    from feedpub import accounts  # lazy: sqlalchemy, see the module docstring

    if cause is None and since is None:
        fail(words().text("restore_needs_cause"))
    store = open_store_or_fail(app)
    causes, cause_ref = ("issue", "bounce"), None
    if cause is not None and cause.startswith("bounce:"):
        causes, cause_ref = ("bounce",), cause.removeprefix("bounce:")
        if not cause_ref.isdigit():
            fail(words().text("restore_not_bounce_id", cause=repr(cause)))
    elif cause is not None:
        issue = store.issue(cause)
        if issue is None:
            fail(words().text("restore_no_such_issue", cause=repr(cause)))
        causes, cause_ref = ("issue",), str(issue.id)
    starts = since.replace(tzinfo=app.config.site.tz) if since else None
    lifted = store.restore(causes=causes, cause_ref=cause_ref, since=starts, dry_run=dry_run)
    for suppression in lifted:
        click.echo(f"{suppression.email_key}\t{suppression.reason}")
    chosen = " ".join(part for part in (f"--cause {cause}" if cause else "",
                                        f"--since {starts.isoformat()}" if starts else "") if part)
    if dry_run:
        say(words().count("restore_dry_run", len(lifted), chosen=chosen), err=True)
        return
    accounts.audit(store, user="cli", address="cli", action="suppressions.restore",
                   detail=f"{chosen}: {len(lifted)} lifted: {', '.join(s.email_key for s in lifted)}")
    say(words().count("restore_done", len(lifted), chosen=chosen), err=True)


def open_store_or_fail(app: App, *, migrate: bool = True):  # noqa: ANN201 - feedpub.store.Store, imported lazily
    """The configured store, migrated if it is older than this feedpub (a command that only reads passes
    `migrate=False` and never needs the write lock); an unusable or locked store is exit 2 naming the file."""
    from feedpub.store import StoreError, open_store

    try:
        return open_store(app.config.store_url, migrate=migrate)
    except StoreError as exc:
        fail(error_text(exc))


def valid_address_or_fail(email: str) -> str:
    """The normalised address; one feedpub cannot mail is exit 2 saying why."""
    from feedpub.addresses import BadAddress, mailable

    try:
        return mailable(email)
    except BadAddress as exc:
        fail(words().text("address_not_mailable", reason=str(exc)))


def _site_categories(config: Config) -> Callable[[], frozenset[str]]:
    """The categories of the site's published posts, read on the first call: naming no category costs
    no reading of posts."""
    @functools.cache
    def read() -> frozenset[str]:
        from feedpub.site.posts import collect

        return frozenset(category for post in collect(config, parallel=True).posts for category in post.categories)

    return read


def _site_topics_or_fail(config: Config, names: Iterable[str]) -> tuple[str, ...]:
    """The feed folders `--topics` names, each given as its folder (`categories/ai導入戦略`) or as its group and
    the name the posts write (`categories/AI導入戦略`), in any case; exit 2 naming one no feed of the site has."""
    from feedpub.site.build import site_topics  # lazy: reads the posts

    known = site_topics(config)
    folders = {}
    for topic in known:
        folders[topic.folder.casefold()] = topic.folder
        folders.setdefault(f"{topic.group}/{topic.name}".casefold(), topic.folder)
    found = []
    for name in names:
        folder = folders.get(name.casefold())
        if folder is None:
            close = difflib.get_close_matches(name.casefold(), folders, n=1)
            such_as = words().text("topic_such_as", topic=folders[close[0]]) if close else ""
            groups = ", ".join(dict.fromkeys(topic.group for topic in known)) or words().text("no_groups")
            fail(words().text("unknown_topic", topic=repr(name), such_as=such_as, groups=groups))
        found.append(folder)
    return tuple(dict.fromkeys(found))


def _csv_rows(file: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]], list[Problem]]:
    """A CSV file's header (lower-case), its rows by line (each cell as `spreadsheet.cell` was given it)
    and the problem that stopped the reading, if any; exit 2 when it cannot be read or has no email column."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        fail(words().text("csv_unreadable", file=file, reason=str(exc)))
    reader = csv.DictReader(text.splitlines(keepends=True))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    if "email" not in header:
        fail(words().text("csv_no_email_column", file=file))
    reader.fieldnames = header
    rows: list[tuple[int, dict[str, str]]] = []
    problems = []
    try:
        for row in reader:
            rows.append((reader.line_num, {name: spreadsheet.read_cell(value or "") for name, value in row.items()
                                           if isinstance(value, str | None) and name is not None}))
    except csv.Error as exc:
        problems.append(Problem(str(file), reader.line_num, message("unreadable_csv", reason=str(exc))))
    return header, rows, problems


def _subscriber_inputs(file: Path, header: list[str], rows: list[tuple[int, dict[str, str]]],
                       known: Callable[[], Collection[str]],
                       offered: Collection[str]) -> tuple[list[SubscriberInput], list[Problem]]:
    """The subscribers a CSV file lists, and what is wrong with it. Rows with a bad address or one seen
    on an earlier row are skipped (the first row of an address wins)."""
    from feedpub.addresses import BadAddress, mailable
    from feedpub.store import email_key

    problems = [Problem(str(file), 1, message("unknown_column", name=name), message("expected_import_columns"),
                        warning=True)
                for name in header if name not in _CSV_COLUMNS]
    entries: list[SubscriberInput] = []
    first_lines: dict[str, int] = {}   # email key → the line that listed it first
    for line, row in rows:
        try:
            address = mailable(row.get("email") or "")
        except BadAddress as exc:
            problems.append(Problem(str(file), line, message("bad_address", reason=str(exc)),
                                    message("expected_address")))
            continue
        first = first_lines.setdefault(email_key(address), line)
        if first != line:
            problems.append(Problem(str(file), line, message("duplicate_row", first=first),
                                    message("expected_address_once")))
            continue
        name = (row.get("name") or "").strip() if "name" in header else None
        topics = _split(row.get("topics") or "", ";") if "topics" in header else None
        if "categories" in header:   # a file of a feedpub before topics: its categories are those topics
            cats = _split(row.get("categories") or "", ";")
            problems += _unknown_categories(str(file), line, cats, known)
            topics = tuple(dict.fromkeys((*(topics or ()), *(_category_topics(_site_spelling(cats, known)) or ()))))
        try:
            cadence, timezone = _choices_cells(header, row, offered)
        except _BadChoice as exc:
            problems.append(Problem(str(file), line, exc.words, message("expected_import_choice",
                                                                        offered=", ".join(offered))))
            continue
        entries.append(SubscriberInput(address, name, topics, cadence, timezone))
    return entries, problems


def _unknown_categories(path: str, line: int | None, names: Iterable[str],
                        known: Callable[[], Collection[str]]) -> list[Problem]:
    """A warning for each category no published post has; it is kept (such posts may come later)."""
    problems = []
    for name in names:
        if name.casefold() in {category.casefold() for category in known()}:
            continue
        by_lower = {category.lower(): category for category in known()}
        close = difflib.get_close_matches(name.lower(), by_lower, n=1)
        expected = message("expected_category_like", such_as=by_lower[close[0]]) if close else message(
            "expected_category")
        problems.append(Problem(path, line, message("unknown_category", name=name), expected, warning=True))
    return problems


def _category_topics(names: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """Category names as the topics (feed folders) that hold their posts."""
    return None if names is None else tuple(f"categories/{name}" for name in names)


class _BadChoice(ValueError):
    def __init__(self, words: Message) -> None:
        super().__init__(str(words))
        self.words = words


def _choices_cells(header: list[str], row: dict[str, str], offered: Collection[str]) -> tuple[str | None, str | None]:
    """A CSV row's cadence and time zone (None: the column is absent or the cell empty, so the stored
    choice stays); _BadChoice naming a bad one."""
    from feedpub.zones import known_zone  # lazy: reads the time zone database's names, 0.1-0.4 s

    cadence = (row.get("cadence") or "").strip().lower() or None if "cadence" in header else None
    if cadence is not None and cadence not in offered:
        raise _BadChoice(message("cadence_not_offered", cadence=cadence, offered=", ".join(offered)))
    timezone = (row.get("timezone") or "").strip() or None if "timezone" in header else None
    if timezone is not None and not known_zone(timezone):
        raise _BadChoice(message("unknown_zone", zone=timezone))
    return cadence, timezone


def _site_spelling(names: tuple[str, ...] | None,
                   known: Callable[[], Collection[str]]) -> tuple[str, ...] | None:
    """Category names as the site's posts write them: `releases` is the site's `Releases` (digests match
    categories case-insensitively; this keeps one spelling in the store and on the dashboard)."""
    if not names:
        return names
    spelled = {category.casefold(): category for category in sorted(known())}
    return tuple(dict.fromkeys(spelled.get(name.casefold(), name) for name in names))


def _export_all(store: Store) -> None:
    """`export --all`: every address with a column for each column the store keeps of it (a column a
    migration adds comes along); `import` reads it back with `_import_all`."""
    from feedpub.store_copy import address_columns, addresses

    columns = address_columns()
    writer = spreadsheet.Writer(sys.stdout)
    writer.writerow(columns)
    for address in addresses(store):
        writer.writerow(_as_text(name, address[name]) for name in columns)


def _import_all(app: App, file: Path, header: list[str], rows: list[tuple[int, dict[str, str]]],
                problems: list[Problem]) -> NoReturn:
    """`import` of an `export --all` file: each address back as it was (`store_copy.restore_addresses`)."""
    from feedpub.addresses import BadAddress, mailable
    from feedpub.store import email_key
    from feedpub.store_copy import address_columns, restore_addresses

    columns = address_columns()
    if "categories" in header and "topics" not in header:   # written before topics: its categories are those
        header = [("topics" if name == "categories" else name) for name in header]
        rows = [(line, {**row, "topics": ";".join(_category_topics(_split(row.get("categories") or "", ";")) or ())})
                for line, row in rows]
    problems = problems + [Problem(str(file), 1, message("unknown_column", name=name),
                                   message("expected_export_columns"), warning=True)
                           for name in header if name not in columns]
    required = [name for name, column in columns.items()
                if column.table.name == "subscribers" and not column.nullable and column.default is None
                and column.server_default is None]
    restored: list[dict[str, Any]] = []
    seen: set[str] = set()
    for line, row in rows:
        try:
            values = {name: _from_text(name, columns[name], row.get(name) or "") for name in header if name in columns}
            if values.get("status"):
                values["email"] = mailable(values.get("email") or "")
                if values["status"] not in STATUSES:
                    raise ValueError(f"status {values['status']!r} is not one of {', '.join(STATUSES)}")
                missing = [name for name in required if values.get(name) is None]
                if missing:
                    raise ValueError(f"{', '.join(missing)} empty")
            elif "@" not in (values.get("email") or ""):
                raise ValueError(f"{values.get('email')!r} is not an address")
        except (ValueError, BadAddress) as exc:
            problems.append(Problem(str(file), line, message("bad_row", reason=str(exc)),
                                    message("expected_export_row")))
            continue
        if email_key(values["email"]) in seen:
            problems.append(Problem(str(file), line, message("later_row"), message("expected_address_once")))
            continue
        seen.add(email_key(values["email"]))
        restored.append(values)
    added, suppressed = restore_addresses(open_store_or_fail(app), restored)
    report(problems)
    errors = sum(not p.warning for p in problems)
    t = words()
    say(t.text("restore_from_summary", subscribers=t.count("subscribers", added), suppressions=suppressed,
               rows=len(restored), bad_rows=t.count("bad_rows", errors)), err=True)
    raise SystemExit(PARTIAL if errors else OK)


def _as_text(name: str, value: Any) -> str:
    """A stored value as `export --all` writes it (and `_from_text` reads it)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if name == "topics":
        return ";".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _from_text(name: str, column: Any, text: str) -> Any:
    """A cell of `export --all` as the store keeps it in `column`; ValueError saying what is wrong."""
    if name == "topics":
        return list(_split(text, ";"))
    kind = getattr(column.type, "impl", column.type).python_type   # UTCDateTime's is its impl's; JSON's is dict
    if text == "" and (column.nullable or kind is not str):
        return None
    if kind is datetime:
        found = datetime.fromisoformat(text)
        if found.tzinfo is None:
            raise ValueError(f"{name}: {text!r} has no UTC offset")
        return found
    if kind is dict:
        return json.loads(text)
    if kind is bool:
        return text == "true"
    return kind(text)


def _split(text: str, sep: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(part.strip() for part in text.split(sep) if part.strip()))


def _table(rows: Iterable[list[str]], headings: list[str], *, paths: Collection[int] = ()) -> None:
    """Aligned columns; the columns numbered in `paths` hold file paths, cut at their start when too long, as
    their end is what tells one file from the next."""
    rows = [headings, *([_clip(cell, keep_end=i in paths) for i, cell in enumerate(row)] for row in rows)]
    widths = [max(_width(row[i]) for row in rows) for i in range(len(headings))]
    for row in rows:
        click.echo("  ".join(cell + " " * (w - _width(cell)) for cell, w in zip(row, widths, strict=True)).rstrip())


def _clip(cell: str, *, keep_end: bool = False) -> str:
    """At most CELL_WIDTH columns, "…" where cut (the end, or with `keep_end` the start): one long name must not
    widen every row."""
    if _width(cell) <= CELL_WIDTH:
        return cell
    ordered = cell[::-1] if keep_end else cell
    kept = sum(1 for used in itertools.accumulate(map(_width, ordered)) if used < CELL_WIDTH)   # room for "…"
    return "…" + cell[len(cell) - kept:] if keep_end else cell[:kept] + "…"


def _width(text: str) -> int:
    """Terminal columns: East Asian wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
