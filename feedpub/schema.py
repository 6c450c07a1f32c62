"""The store's schema: its tables (SQLAlchemy 2 Core) and the migrations that create and evolve them.
Reading and writing rows is `feedpub.store`'s job, and `feedpub.send.claims`' while sending.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateColumn


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; stored naive UTC so SQLite and PostgreSQL agree."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = sa.MetaData()

schema_version = sa.Table("schema_version", metadata, sa.Column("version", sa.Integer, nullable=False))

subscribers = sa.Table(
    "subscribers", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False),         # as the subscriber wrote it
    sa.Column("email_key", sa.String(320), nullable=False, unique=True),  # lower-case, for comparison
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("status", sa.String(16), nullable=False),
    # Feed folders as `feedpub.site.feeds.Feed.folder` names them ("categories/<name>", "tags/<name>",
    # "authors/<name>"); empty = everything.
    sa.Column("topics", sa.JSON, nullable=False, server_default=sa.text("'[]'")),
    sa.Column("cadence", sa.String(16), nullable=False, server_default="weekly"),   # post | daily | weekly | monthly
    sa.Column("timezone", sa.String(64), nullable=False, server_default=""),      # IANA name; "": site.timezone
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("confirmed_at", UTCDateTime),
    sa.Column("unsubscribed_at", UTCDateTime),
    # When the newest confirmation link was mailed (the time inside it); NULL once used or while none is out.
    sa.Column("confirm_sent_at", UTCDateTime),
    # When an active reader switched from a digest to each post's mail: the posts that were waiting for that
    # digest come in one mail `digest.post_delay` later (`feedpub.send.reader_mail`); NULL once it is composed.
    sa.Column("post_since", UTCDateTime),
)

suppressions = sa.Table(
    "suppressions", metadata,
    sa.Column("email_key", sa.String(320), primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # What made it (`feedpub subscribers restore` lifts one cause's): "issue" (a refusal while sending issue
    # `cause_ref`, an issue id), "bounce" / "complaint" (bounce evidence `cause_ref`, a returned message or a
    # webhook event), "unsubscribe" (the reader), "operator" (`cause_ref` names who); "" before schema v6.
    sa.Column("cause", sa.String(16), nullable=False, server_default=""),
    sa.Column("cause_ref", sa.String(100), nullable=False, server_default=""),
)

issues = sa.Table(
    "issues", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("period", sa.String(200), nullable=False, unique=True),
    sa.Column("slot", UTCDateTime, nullable=False),
    sa.Column("starts", UTCDateTime, nullable=False),
    sa.Column("ends", UTCDateTime, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # What mail it is: a digest (daily, weekly, monthly) of the readers in time zone `zone` ("": the site's),
    # one post's mail (post), or a reader's welcome (welcome).
    sa.Column("kind", sa.String(16), nullable=False, server_default="weekly"),
    sa.Column("zone", sa.String(64), nullable=False, server_default=""),
    # Its readers' posts are in `reader_posts`; before schema v10 only `issue_posts` says what it carried.
    sa.Column("ledgered", sa.Boolean, nullable=False, server_default=sa.false()),
)

issue_variants = sa.Table(
    "issue_variants", metadata,
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), primary_key=True),
    sa.Column("key", sa.String(1000), primary_key=True),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("html", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
)

# One row per reader of an issue. No foreign keys (issues.id and subscribers.id, written with the issue in one
# transaction, neither ever deleted): PostgreSQL's per-row checks were two thirds of queueing 84,000 rows.
deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("issue_id", sa.Integer, nullable=False),
    sa.Column("subscriber_id", sa.Integer, nullable=False),
    sa.Column("variant_key", sa.String(1000), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", UTCDateTime),
    sa.Column("last_reply", sa.Text, nullable=False, default=""),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("claimed_by", sa.String(200)),                     # for several workers on one store
    sa.Column("claimed_until", UTCDateTime),
    sa.UniqueConstraint("issue_id", "subscriber_id"),
    sa.Index("ix_deliveries_issue_status", "issue_id", "status"),
)

workers = sa.Table(
    "workers", metadata,
    sa.Column("id", sa.String(200), primary_key=True),           # host:pid:random, as in claimed_by
    sa.Column("host", sa.String(200), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("busy", sa.Boolean, nullable=False),                # holds claimed rows: takes a rate share
    sa.Column("heartbeat_at", UTCDateTime, nullable=False),
)

# The operator's dashboard (`feedpub.accounts`): accounts, server-side sessions, the audit log.
admin_users = sa.Table(
    "admin_users", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("password_hash", sa.Text, nullable=False),          # argon2id, with its parameters
    sa.Column("created_at", UTCDateTime, nullable=False),
)

admin_sessions = sa.Table(
    "admin_sessions", metadata,
    sa.Column("id", sa.String(64), primary_key=True),             # SHA-256 of the id in the cookie
    sa.Column("user_id", sa.Integer, sa.ForeignKey("admin_users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

admin_audit = sa.Table(
    "admin_audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("user_name", sa.String(100), nullable=False),       # as typed at a failed login; kept after removal
    sa.Column("address", sa.String(64), nullable=False),          # the client's, or "cli"
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
)

# An issue on hold is claimed by no sender: "paused" until resumed, "cancelled" for good.
issue_holds = sa.Table(
    "issue_holds", metadata,
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("since", UTCDateTime, nullable=False),
    # Why the circuit breaker paused it; "": the operator did.
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
)

# The posts each issue carried (by URL): the next issue takes a post dated into a window already sent.
issue_posts = sa.Table(
    "issue_posts", metadata,
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), primary_key=True),
    sa.Column("url", sa.String(2000), primary_key=True),
)


# Every post feedpub looked at, when it was first seen (its `post` mail goes out `digest.post_delay` later; a
# backdated post is news from then), and what became of it: "waiting" for its post mail, "mailed", or
# "digest" (seen on the first look, backdated, part of a bulk import: the digests carry it). The row of URL
# "" (state "look") records the first look.
post_sightings = sa.Table(
    "post_sightings", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("url", sa.String(2000), nullable=False, unique=True),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Index("ix_post_sightings_state", "state", "first_seen"),
)

# The ledger: which post went to which reader in which mail; a reader gets a post once. Keyed by numbers and
# with no foreign keys (subscribers.id, post_sightings.id, issues.id, written with them in one transaction):
# a day of slots writes a row per reader and post, a million, and PostgreSQL would check three keys for each.
reader_posts = sa.Table(
    "reader_posts", metadata,
    sa.Column("subscriber_id", sa.Integer, primary_key=True),
    sa.Column("post_id", sa.Integer, primary_key=True),
    sa.Column("issue_id", sa.Integer, nullable=False),
    sqlite_with_rowid=False,       # one B-tree, the key's: half the writing of a row per reader and post
)


issue_archive = sa.Table(
    "issue_archive", metadata,
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), primary_key=True),
    sa.Column("entries", sa.JSON, nullable=False),              # the posts as the issue showed them
)


bounces = sa.Table(
    "bounces", metadata,                                          # evidence: every bounce, complaint, reply read
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("source", sa.String(300), nullable=False),          # stdin, file:PATH, imap:URL, webhook:ses, …
    sa.Column("message_key", sa.String(400), nullable=False),     # Message-ID, hash or provider event id
    sa.Column("recipient", sa.String(320), nullable=False),       # lower-case; "" when it names none
    sa.Column("delivery_id", sa.Integer),                         # no foreign key: evidence outlives any row
    sa.Column("kind", sa.String(16), nullable=False),             # hard | soft | complaint | auto-reply | not-a-bounce
    sa.Column("status", sa.String(16)),
    sa.Column("diagnostic", sa.Text),
    sa.Column("why", sa.Text, nullable=False),                    # which rule classified it
    sa.Column("effect", sa.Text, nullable=False),                 # what feedpub did about it
    sa.Column("raw", sa.LargeBinary, nullable=False),             # the message or JSON, cut at bounces.raw_limit
    sa.Column("raw_size", sa.Integer, nullable=False),
    # Nothing vouches for it (a forged VERP tag, or neither a good tag nor the signed Message-ID of a delivery
    # to the address): kept as evidence, and it changed no subscriber.
    sa.Column("unverified", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("message_key", "recipient"),
)

# The tokens of signed webhook requests seen (Mailgun's), until their signature's timestamp is too old to
# be accepted anyway: a request whose token was seen is a replay.
webhook_tokens = sa.Table(
    "webhook_tokens", metadata,
    sa.Column("provider", sa.String(32), primary_key=True),
    sa.Column("token", sa.String(256), primary_key=True),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Index("ix_webhook_tokens_expires", "expires_at"),
)

# The fediverse wing's accounts (`feedpub.fediverse`). Each account's RSA key pair, made once: in the store, so
# that every process signing for it (the daemon, `feedpub worker`s on other machines) signs with the same key,
# and `store backup`/`copy` carry it; the SQLite file is the owner's only (0600), PostgreSQL's rows its roles'.
fediverse_keys = sa.Table(
    "fediverse_keys", metadata,
    sa.Column("account", sa.String(200), primary_key=True),       # the username, a category's slug, "@instance"
    sa.Column("private_key", sa.Text, nullable=False),            # PKCS#8 PEM
    sa.Column("public_key", sa.Text, nullable=False),             # SubjectPublicKeyInfo PEM, as actors publish it
    sa.Column("created_at", UTCDateTime, nullable=False),
)

fediverse_followers = sa.Table(
    "fediverse_followers", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account", sa.String(200), nullable=False),
    sa.Column("actor", sa.String(2000), nullable=False),          # the follower's actor id
    sa.Column("inbox", sa.String(2000), nullable=False),
    sa.Column("shared_inbox", sa.String(2000), nullable=False, server_default=""),   # "" when it has none
    sa.Column("host", sa.String(300), nullable=False),            # the actor id's host, lower-case
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("account", "actor"),
    sa.Index("ix_fediverse_followers_host", "host"),
)

# Instances whose activities are refused and to which nothing is delivered.
fediverse_blocks = sa.Table(
    "fediverse_blocks", metadata,
    sa.Column("host", sa.String(300), primary_key=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

# Likes, boosts and replies to the posts, for the operator (a reply is never published).
fediverse_reactions = sa.Table(
    "fediverse_reactions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account", sa.String(200), nullable=False),         # the inbox's account; "" for the shared inbox
    sa.Column("object_id", sa.String(2000), nullable=False),      # our post's ActivityPub id
    sa.Column("kind", sa.String(16), nullable=False),             # like | announce | reply
    sa.Column("actor", sa.String(2000), nullable=False),
    sa.Column("activity_id", sa.String(2000), nullable=False, unique=True),   # a replayed activity counts once
    sa.Column("content", sa.Text, nullable=False, server_default=""),        # a reply's HTML, as sent
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_fediverse_reactions_object", "object_id", "kind"),
)


# The fediverse wing's publishing (`feedpub.fediverse.publish`, `queue`, `delivery`): each activity once, its
# deliveries one per inbox (a shared inbox serves every follower on its instance), claimed as mail is.
fediverse_activities = sa.Table(
    "fediverse_activities", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account", sa.String(200), nullable=False),         # the sending account's username
    sa.Column("object_id", sa.String(2000), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),              # Create, Update, Announce, Delete, Accept…
    sa.Column("body", sa.Text, nullable=False),                    # the JSON as signed and sent
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_fediverse_activities_object", "object_id"),
)

fediverse_deliveries = sa.Table(
    "fediverse_deliveries", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("activity_id", sa.Integer, sa.ForeignKey("fediverse_activities.id"), nullable=False),
    sa.Column("inbox", sa.String(2000), nullable=False),
    sa.Column("host", sa.String(300), nullable=False),             # the inbox's, lower-case
    # queued → sending → sent; deferred (retry at next_attempt_at); failed; gone (410); cancelled (blocked);
    # dropped (its instance failed longer than activitypub.give_up_after)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", UTCDateTime),
    sa.Column("last_error", sa.Text, nullable=False, default=""),
    sa.Column("claimed_by", sa.String(200)),
    sa.Column("claimed_until", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("activity_id", "inbox"),
    sa.Index("ix_fediverse_deliveries_status_id", "status", "id"),
    sa.Index("ix_fediverse_deliveries_host", "host", "status"),
    sa.Index("ix_fediverse_deliveries_claimed_by", "claimed_by"),
)

# The circuit breaker per instance: failing since when, paused until when.
fediverse_hosts = sa.Table(
    "fediverse_hosts", metadata,
    sa.Column("host", sa.String(300), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),            # in a row, since the last success
    sa.Column("failing_since", UTCDateTime, nullable=False),
    sa.Column("paused_until", UTCDateTime),
    sa.Column("last_error", sa.Text, nullable=False, default=""),
)

# What each account published of each post: the diff of the next build against it survives restarts.
fediverse_published = sa.Table(
    "fediverse_published", metadata,
    sa.Column("account", sa.String(200), primary_key=True),
    sa.Column("object_key", sa.String(64), primary_key=True),      # objects.object_key(post)
    sa.Column("url", sa.String(2000), nullable=False),            # the post's page, for people
    sa.Column("content_hash", sa.String(64), nullable=False),
    # pushed (activities queued), recorded (backdated or part of a bulk import: known, never pushed), deleted
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("published_at", UTCDateTime, nullable=False),       # the post's date
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

def _create_v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=[subscribers, suppressions, issues, issue_variants, deliveries])


def _add_workers_v2(conn: Connection) -> None:
    workers.create(conn)
    # Claims walk open rows in id order; lease renewal and release look rows up by their claimer.
    conn.execute(sa.text("CREATE INDEX ix_deliveries_status_id ON deliveries (status, id)"))
    conn.execute(sa.text("CREATE INDEX ix_deliveries_claimed_by ON deliveries (claimed_by)"))


def _add_issue_archive_v3(conn: Connection) -> None:
    # What the public archive re-renders an issue's page from when its neighbours change.
    issue_archive.create(conn)

def _add_admin_v4(conn: Connection) -> None:
    metadata.create_all(conn, tables=[admin_users, admin_sessions, admin_audit, issue_holds])
    # The dashboard's queries at 100,000 subscribers and 1,000,000 deliveries (bench/admin_bench.py): a
    # subscriber's history, the weekly chart, the status filter. None on a column the per-message marks
    # change, which would slow every send.
    for name, table, columns in (("ix_deliveries_subscriber", "deliveries", "subscriber_id"),
                                 ("ix_subscribers_status", "subscribers", "status, id"),
                                 ("ix_subscribers_created", "subscribers", "created_at"),
                                 ("ix_subscribers_confirmed", "subscribers", "confirmed_at"),
                                 ("ix_subscribers_unsubscribed", "subscribers", "unsubscribed_at"),
                                 ("ix_suppressions_created", "suppressions", "created_at")):
        conn.execute(sa.text(f"CREATE INDEX {name} ON {table} ({columns})"))


def _add_bounces_v5(conn: Connection) -> None:
    bounces.create(conn)
    # Soft bounces are counted per address over a window; digest status and the dashboard count per
    # delivery and kind.
    conn.execute(sa.text("CREATE INDEX ix_bounces_recipient_kind ON bounces (recipient, kind, received_at)"))
    conn.execute(sa.text("CREATE INDEX ix_bounces_delivery ON bounces (delivery_id, kind)"))


def _add_webhook_replays_v6(conn: Connection) -> None:
    webhook_tokens.create(conn)
    _add_missing_column(conn, bounces, "unverified")


def _add_confirmation_links_v7(conn: Connection) -> None:
    # Only the newest confirmation link of an address works, once.
    _add_missing_column(conn, subscribers, "confirm_sent_at")


def _add_missing_column(conn: Connection, table: sa.Table, name: str) -> None:
    # Earlier steps create their tables from today's definitions: a store made since has the column already.
    if name not in {column["name"] for column in sa.inspect(conn).get_columns(table.name)}:
        column = CreateColumn(table.c[name]).compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {column}"))


def _add_suppression_causes_v8(conn: Connection) -> None:
    for table, column in ((suppressions, "cause"), (suppressions, "cause_ref"), (issue_holds, "reason")):
        _add_missing_column(conn, table, column)
    conn.execute(sa.text("CREATE INDEX ix_suppressions_cause ON suppressions (cause, cause_ref)"))
    # The causes a reason named for sure: a complaint, the reader's own unsubscribe.
    conn.execute(suppressions.update().where(suppressions.c.reason == "complaint").values(cause="complaint"))
    conn.execute(suppressions.update().where(suppressions.c.reason == "unsubscribed by the reader")
                 .values(cause="unsubscribe"))
    issue_posts.create(conn)
    # What the issues so far carried is what their archive copy shows (every post of the issue).
    carried = {(row.issue_id, entry["url"]) for row in conn.execute(sa.select(issue_archive))
               for entry in row.entries if entry.get("url")}
    if carried:
        conn.execute(issue_posts.insert(), [{"issue_id": i, "url": url} for i, url in sorted(carried)])


def _add_reader_cadences_v9(conn: Connection) -> None:
    # A reader's topics are feed folders: each category name they chose becomes "categories/<name>", and the
    # old column goes (one name for one fact). Everyone keeps weekly mail in the site's time zone.
    for name in ("topics", "cadence", "timezone"):
        _add_missing_column(conn, subscribers, name)
    if "categories" in {column["name"] for column in sa.inspect(conn).get_columns("subscribers")}:
        rows = conn.execute(sa.text("SELECT id, categories FROM subscribers")).all()
        for sid, categories in rows:
            names = json.loads(categories) if isinstance(categories, str) else categories
            if names:
                conn.execute(subscribers.update().where(subscribers.c.id == sid)
                             .values(topics=[f"categories/{name}" for name in names]))
        conn.execute(sa.text("ALTER TABLE subscribers DROP COLUMN categories"))


def _add_cadence_mail_v10(conn: Connection) -> None:
    for name in ("kind", "zone", "ledgered"):
        _add_missing_column(conn, issues, name)
    if conn.dialect.name == "postgresql":    # periods name a stream's cadence and zone too (SQLite has no lengths)
        conn.execute(sa.text("ALTER TABLE issues ALTER COLUMN period TYPE VARCHAR(200)"))
    metadata.create_all(conn, tables=[post_sightings, reader_posts])
    conn.execute(sa.text("CREATE INDEX ix_issues_kind_zone ON issues (kind, zone, slot)"))


def _add_fediverse_accounts_v11(conn: Connection) -> None:
    metadata.create_all(conn, tables=[fediverse_keys, fediverse_followers, fediverse_blocks, fediverse_reactions])


def _add_fediverse_publishing_v12(conn: Connection) -> None:
    metadata.create_all(conn, tables=[fediverse_activities, fediverse_deliveries, fediverse_hosts,
                                      fediverse_published])


def _lighten_cadence_slots_v13(conn: Connection) -> None:
    # Each slot of a day of 30 zones reads its stream's readers (cadence and zone) among 100,000, and queues a
    # row for each without the foreign keys' checks (`deliveries`; SQLite keeps them: it cannot drop one).
    conn.execute(sa.text("CREATE INDEX ix_subscribers_stream ON subscribers (cadence, timezone, status)"))
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_issue_id_fkey, "
                             "DROP CONSTRAINT IF EXISTS deliveries_subscriber_id_fkey"))

def _add_catch_up_v14(conn: Connection) -> None:
    _add_missing_column(conn, subscribers, "post_since")

# Step i brings a store from version i to i + 1. Append steps; never edit a released one.
MIGRATIONS: tuple[Callable[[Connection], None], ...] = (_create_v1, _add_workers_v2, _add_issue_archive_v3,
                                                      _add_admin_v4, _add_bounces_v5, _add_webhook_replays_v6,
                                                      _add_confirmation_links_v7, _add_suppression_causes_v8,
                                                      _add_reader_cadences_v9, _add_cadence_mail_v10,
                                                      _add_fediverse_accounts_v11, _add_fediverse_publishing_v12,
                                                      _lighten_cadence_slots_v13, _add_catch_up_v14)


# Held by the transaction that migrates a PostgreSQL store (pg_advisory_xact_lock's key: "feedpub" in ASCII).
_MIGRATION_LOCK = 0x66656564707562


def version(conn: Connection) -> int | None:
    """The store's schema version, read without writing; None when it has none yet (a new, empty database)."""
    if not sa.inspect(conn).has_table("schema_version"):
        return None
    return conn.scalar(sa.select(schema_version.c.version)) or 0


def migrate(conn: Connection) -> tuple[int, int]:
    """Bring the store to the newest version in `conn`'s transaction (the caller commits): (the version it
    had, the version it has). The write lock is taken before the version is read, so of several processes
    starting together one migrates and the others find it done. A version newer than `MIGRATIONS` knows is
    left as it is (the caller refuses it)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")   # the driver would begin only at the first INSERT or UPDATE
    elif conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    found = version(conn)
    if found is None:
        schema_version.create(conn)
        conn.execute(schema_version.insert().values(version=0))
        found = 0
    if found >= len(MIGRATIONS):
        return found, found
    for step in MIGRATIONS[found:]:
        step(conn)
    conn.execute(schema_version.update().values(version=len(MIGRATIONS)))
    return found, len(MIGRATIONS)
