"""`feedpub bounces parse|process|poll|list|show`: classify returned mail, record it with its effect, and
show the evidence.

The bounce modules (the store, flufl.bounce, imapclient) are imported inside the commands: with
SQLAlchemy they cost ~0.3 s that `feedpub --help` does not need.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click

from feedpub import spreadsheet
from feedpub.cli import FAILED, OK, PARTIAL, App, error_text, fail, say, words
from feedpub.cli.subscribers import _table, _width, open_store_or_fail
from feedpub.errors import ConfigError

TEMPFAIL = 75      # sysexits.h EX_TEMPFAIL
KINDS = ("hard", "soft", "complaint", "auto-reply", "not-a-bounce", "unreadable")


@click.group()
def bounces() -> None:
    """Bounces, complaints and automatic replies: classify, record, show."""


@bounces.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--format", "fmt", type=click.Choice(["json", "table"]), default="json", show_default=True)
@click.pass_obj
def parse(app: App, files: tuple[str, ...], fmt: str) -> None:
    """Classify messages (FILE…, or - for one on stdin) and print why; records nothing, changes nothing."""
    from feedpub.send.bounces.classify import classify
    from feedpub.send.bounces.process import Returned, named_delivery, verified

    config = app.config
    results, skipped = [], 0
    for name in files:
        raw = _read(name)
        if raw is None:
            skipped += 1
            continue
        bounce = classify(raw)
        if bounce.kind == "unreadable":
            skipped += 1
            click.echo(f"{name}: {bounce.why}", err=True)
        try:
            item = Returned(bounce, named_delivery(config, raw), raw, name)
            trusted = all(verified(config, item, recipient) for recipient in bounce.recipients or ("",))
        except ConfigError as exc:
            fail(error_text(exc))
        results.append({"file": name, "kind": bounce.kind, "recipients": list(bounce.recipients),
                        "status": bounce.status, "diagnostic": bounce.diagnostic,
                        "delivery": item.named.delivery_id, "verified": trusted, "why": bounce.why})
    if fmt == "json":
        for result in results:
            click.echo(json.dumps(result, ensure_ascii=False))
    else:
        t = app.strings
        _table([[r["file"], r["kind"], ", ".join(r["recipients"]), r["status"] or "", r["diagnostic"] or r["why"]]
                for r in results], [t.text(f"column_{name}") for name in ("file", "kind", "recipients", "status",
                                                                          "diagnostic_or_why")], paths=[0])
    raise SystemExit(PARTIAL if skipped else OK)


@bounces.command()
@click.argument("files", nargs=-1, required=True)
@click.pass_obj
def process(app: App, files: tuple[str, ...]) -> None:
    """Record messages (FILE…, or - for one on stdin, as from a Postfix alias "|feedpub bounces process -")
    and suppress or unsubscribe as they say. A store locked by another process is exit 75 (EX_TEMPFAIL:
    the MTA keeps the message and tries again); an unreadable message on stdin is recorded, so exit 0."""
    from feedpub.send.bounces.process import read_message, record_all
    from feedpub.store import open_store

    config = app.config
    skipped = 0
    with _tempfail_when_busy(app):
        store = open_store(config.store_url)
        for name in files:
            raw = _read(name)
            if raw is None:
                skipped += 1
                continue
            try:
                item = read_message(config, raw, "stdin" if name == "-" else f"file:{Path(name).resolve()}")
            except ConfigError as exc:
                fail(error_text(exc))
            for outcome in record_all(config, store, [item])[0]:
                say(f"{name}: {outcome.recipient or '-'}: {outcome.kind}: {outcome.effect}")
            if item.bounce.kind == "unreadable":
                # Recorded either way; a non-zero exit would make the MTA piping it in bounce it to the
                # postmaster, so only a file given by name counts as skipped.
                if name != "-":
                    skipped += 1
                click.echo(f"{name}: {item.bounce.why}", err=True)
    raise SystemExit(PARTIAL if skipped else OK)


@contextmanager
def _tempfail_when_busy(app: App) -> Iterator[None]:
    """A store another process keeps locked is exit 75, sysexits' EX_TEMPFAIL, which an MTA delivering to a
    pipe (Postfix, Exim, sendmail) answers by keeping the message and trying again later; exit 2, for any
    other unusable store, makes it bounce the message to the postmaster."""
    from feedpub.store_engine import StoreError, busy, busy_message, shown_url

    try:
        yield
    except Exception as exc:
        if busy(exc):
            click.echo(f"feedpub: {app.problems.message(busy_message(shown_url(app.config.store_url)))}", err=True)
            raise SystemExit(TEMPFAIL) from exc
        if isinstance(exc, StoreError):
            fail(error_text(exc))
        raise


@bounces.command()
@click.pass_obj
def poll(app: App) -> None:
    """Read bounces.mailbox and bounces.imap_url once (what `feedpub run` does every bounces.poll_every)."""
    from feedpub.send.bounces.sources import SourceError
    from feedpub.send.bounces.sources import poll as poll_sources

    config = app.config
    if not config.bounces.mailbox and not config.bounces.imap_url:
        fail(app.strings.text("no_bounce_source", config=config.source))
    store = open_store_or_fail(app)

    unreadable = []

    def show(read) -> None:  # noqa: ANN001 - feedpub.send.bounces.sources.Read, imported lazily
        for outcome in read.outcomes:
            moved = app.strings.text("bounce_moved") if read.moved else ""
            say(f"{read.where}: {outcome.recipient or '-'}: {outcome.kind}: {outcome.effect}{moved}")
        if read.unreadable and any(outcome.evidence_id for outcome in read.outcomes):
            unreadable.append(read)
            click.echo(f"{read.where}: {read.unreadable}", err=True)

    try:
        poll_sources(config, store, show)
    except SourceError as exc:
        click.echo(f"feedpub: {error_text(exc)}", err=True)
        raise SystemExit(FAILED) from exc
    except ConfigError as exc:
        fail(error_text(exc))
    raise SystemExit(PARTIAL if unreadable else OK)


@bounces.command(name="list")
@click.option("--since", help="Only these: an ISO date or time (UTC), or a duration back from now ('7d', '12h').")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(KINDS), help="Only this kind (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.pass_obj
def list_(app: App, since: str | None, kinds: tuple[str, ...], fmt: str) -> None:
    """List the recorded bounces, complaints and replies, oldest first."""
    from feedpub.send.bounces import evidence

    store = open_store_or_fail(app, migrate=False)
    rows = evidence.listing(store, since=_since(since) if since else None, kinds=kinds)
    records = [{"id": r.id, "received": r.received_at.isoformat(), "source": r.source, "recipient": r.recipient,
                "kind": r.kind, "status": r.status, "diagnostic": r.diagnostic, "delivery": r.delivery_id,
                "issue": r.issue, "effect": r.effect, "unverified": r.unverified} for r in rows]
    if fmt == "json":
        click.echo(json.dumps(records, ensure_ascii=False, indent=2))
    elif fmt == "csv":
        writer = spreadsheet.Writer(sys.stdout)
        writer.writerow(list(records[0]) if records else ["id"])
        for record in records:
            writer.writerow(record.values())
    else:
        t = app.strings
        _table([[str(r["id"]), r["received"][:16].replace("T", " "), r["recipient"] or "-", r["kind"],
                 r["status"] or "", r["issue"] or "", r["effect"]] for r in records],
               [t.text(f"column_{name}") for name in ("id", "received_utc", "recipient", "kind", "status", "issue",
                                                      "effect")])


@bounces.command()
@click.argument("evidence_id", metavar="ID", type=int)
@click.pass_obj
def show(app: App, evidence_id: int) -> None:
    """Show one recorded bounce: what it was classified as, why, what was done, and the message itself."""
    from feedpub.send.bounces import evidence

    t = app.strings
    found = evidence.one(open_store_or_fail(app, migrate=False), evidence_id)
    if found is None:
        fail(t.text("no_bounce", id=evidence_id))
    delivery = t.text("bounce_delivery", delivery=found.delivery_id, issue=found.issue) if found.delivery_id else "-"
    shown = [(t.text(f"label_{name}"), value) for name, value in (
        ("received", found.received_at.isoformat()), ("source", found.source), ("message", found.message_key),
        ("recipient", found.recipient or "-"), ("delivery", delivery), ("kind", found.kind),
        ("status", found.status or "-"), ("diagnostic", found.diagnostic or "-"), ("why", found.why),
        ("effect", found.effect))]
    width = max(_width(label) for label, _ in shown) + 2
    for label, value in shown:
        click.echo(f"{label}:{' ' * (width - _width(label) - 1)}{value}")
    cut = t.count("evidence_cut", len(found.raw)) if len(found.raw) < found.raw_size else ""
    click.echo("\n" + t.text("evidence_heading", size=t.count("bytes", found.raw_size), cut=cut))
    sys.stdout.flush()
    sys.stdout.buffer.write(found.raw if found.raw.endswith(b"\n") else found.raw + b"\n")


def _read(name: str) -> bytes | None:
    """The message in file `name` (or on stdin for "-"), read up to one byte past what is ever read of a
    message: past it, it is unreadable, and a runaway pipe cannot fill memory."""
    from feedpub.send.bounces.classify import SIZE_LIMIT

    if name == "-":
        raw = sys.stdin.buffer.read(SIZE_LIMIT + 1)
        while sys.stdin.buffer.read(1 << 20):   # the rest, unkept: an MTA piping it in sees it all taken
            pass
        return raw
    try:
        with open(name, "rb") as handle:
            return handle.read(SIZE_LIMIT + 1)
    except OSError as exc:
        click.echo(words().text("message_unreadable", file=name, reason=exc.strerror), err=True)
        return None


def _since(text: str) -> datetime:
    from feedpub.config import parse_duration

    if re.fullmatch(r"\d+\s*[smhd]", text.strip()):
        return datetime.now(UTC) - parse_duration(text)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        fail(words().text("bad_since", since=text))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
