"""`feedpub fediverse followers|deliveries|block DOMAIN`: the accounts' followers, the deliveries per instance,
and blocking an instance (its activities refused, nothing more delivered to it)."""

from __future__ import annotations

import ipaddress
import json
import re
import sys

import click

from feedpub.cli import App, fail, say, words
from feedpub.cli.subscribers import _table, open_store_or_fail

# A host name as blocks name them: labels of letters, digits and hyphens (IDNA-encoded); one label will do (an
# instance on a private network, with activitypub.allow_private_addresses).
_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def published_line(t, published) -> str:  # noqa: ANN001 - Strings and feedpub.fediverse.publish.Published, lazily
    """What a build queued for the fediverse accounts, in the language of `t`."""
    return t.text("fediverse_published", created=published.created, updated=published.updated,
                  deleted=published.deleted, announced=published.announced, recorded=published.recorded,
                  deliveries=t.count("fediverse_deliveries", published.queued))


def sending_line(t, summary) -> str:  # noqa: ANN001 - Strings and feedpub.fediverse.delivery.Summary, lazily
    """A fediverse sending run: `fediverse: 2 deliveries sent; mastodon.example paused`, in the language of `t`."""
    return t.text("fediverse_sending", counts=summary.line(t))


@click.group()
def fediverse() -> None:
    """The fediverse accounts (activitypub.enabled): followers, deliveries, blocked instances."""


@fediverse.command()
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.pass_obj
def followers(app: App, fmt: str) -> None:
    """List each account's followers (actor, the instance it is delivered on, since when)."""
    from feedpub import spreadsheet  # lazy: with the store below
    from feedpub.fediverse.reports import followers as listed

    rows = listed(open_store_or_fail(app, migrate=False))
    records = [{"account": r.account, "actor": r.actor, "instance": r.instance, "since": r.since.isoformat()}
               for r in rows]
    t = words()
    if fmt == "json":
        click.echo(json.dumps(records, ensure_ascii=False, indent=2))
    elif fmt == "csv":
        writer = spreadsheet.Writer(sys.stdout)
        writer.writerow(["account", "actor", "instance", "since"])
        for record in records:
            writer.writerow(list(record.values()))
    elif not records:
        click.echo(t.text("fediverse_no_followers"))
    else:
        tz = app.config.site.tz
        _table([[r.account, r.actor, r.instance, f"{r.since.astimezone(tz):%Y-%m-%d}"] for r in rows],
               ["ACCOUNT", "ACTOR", "INSTANCE", "SINCE"])
        # Below the table, on stderr: scripts read the rows.
        per_account: dict[str, int] = {}
        for row in rows:
            per_account[row.account] = per_account.get(row.account, 0) + 1
        for account, count in per_account.items():
            say(t.text("fediverse_account_followers", account=account,
                       followers=t.count("fediverse_followers", count)), err=True)


@fediverse.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_obj
def deliveries(app: App, fmt: str) -> None:
    """Deliveries per instance by status, with instances paused by the circuit breaker or blocked."""
    from feedpub.fediverse.queue import STATUSES
    from feedpub.fediverse.reports import instances

    rows = instances(open_store_or_fail(app, migrate=False))
    t = words()
    tz = app.config.site.tz

    def state(row) -> str:  # noqa: ANN001 - reports.InstanceRow, imported lazily
        if row.blocked:
            return "blocked"
        if row.paused_until:
            return t.text("fediverse_paused", until=f"{row.paused_until.astimezone(tz):%Y-%m-%d %H:%M}")
        if row.failing_since:
            return t.text("fediverse_failing", since=f"{row.failing_since.astimezone(tz):%Y-%m-%d %H:%M}")
        return "-"

    if fmt == "json":
        click.echo(json.dumps([{"instance": r.instance, **r.counts, "blocked": r.blocked,
                                "paused_until": r.paused_until.isoformat() if r.paused_until else None,
                                "failing_since": r.failing_since.isoformat() if r.failing_since else None,
                                "last_error": r.last_error} for r in rows], ensure_ascii=False, indent=2))
    elif not rows:
        click.echo(t.text("fediverse_no_deliveries"))
    else:
        # The counts keep the order of the statuses, where scripts read them; STATE and the last error after.
        _table([[r.instance, *(str(r.counts[s]) for s in STATUSES), state(r), r.last_error] for r in rows],
               ["INSTANCE", *(s.upper() for s in STATUSES), "STATE", "LAST ERROR"])


@fediverse.command()
@click.argument("domain")
@click.pass_obj
def block(app: App, domain: str) -> None:
    """Block DOMAIN (e.g. spam.example): its activities are refused and the deliveries to it not yet sent are
    cancelled; nothing more is queued for it."""
    from feedpub.fediverse.ledger import Ledger
    from feedpub.fediverse.queue import cancel_host

    host = _host(domain)
    store = open_store_or_fail(app)
    new = Ledger(store).block(host)
    cancelled = cancel_host(store, host, "instance blocked by the operator")
    t = words()
    say(t.text("fediverse_blocked" if new else "fediverse_already_blocked", host=host,
               deliveries=t.count("fediverse_deliveries", cancelled)))


def _host(domain: str) -> str:
    """The host DOMAIN names as the inbox and the queue compare it: an IP address (IPv6 without its brackets,
    `[::1]` → `::1`), else a host name (lower-case, IDNA for a non-ASCII one); exit 2 when it names none."""
    text = domain.strip().rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(text[1:-1] if text[:1] + text[-1:] == "[]" else text))
    except ValueError:
        pass
    try:
        host = text.encode("idna").decode("ascii")
    except UnicodeError:
        host = ""
    if not _HOST.match(host):
        fail(words().text("fediverse_bad_domain", domain=domain))
    return host
