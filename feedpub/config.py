"""The configuration: every section and key of feedpub.toml as frozen dataclasses, with their types and
defaults (every key is optional), and the parsers of its durations and schedules. Reading and checking
the file is `feedpub.config_file`'s.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

from feedpub.errors import ConfigError, message
from feedpub.jekyll import FrontMatterDefault, JekyllCollection


@dataclass(frozen=True)
class SiteConfig:
    title: str = "My blog"
    url: str = "http://localhost:8080"
    baseurl: str = ""
    description: str = ""
    language: str = "en"
    timezone: str = "UTC"
    author: str = ""
    posts_dir: str = "posts"
    permalink: str = "date"
    icon: str = ""
    logo: str = ""
    jekyll_dir: str = ""                 # a Jekyll site: its _config.yml fills unset keys; _data/, _includes/
    excerpt_separator: str = ""          # site-wide excerpt separator (a post's own wins), as in Jekyll
    future: bool = False                 # publish posts dated in the future (as `--future`)
    show_drafts: bool = False            # publish _drafts/ (as `--drafts`)
    exclude: tuple[str, ...] = ()        # paths or globs below posts_dir that hold no posts (Jekyll's exclude)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def root_url(self) -> str:
        """The site's absolute URL including baseurl, without a trailing slash."""
        return self.url.rstrip("/") + self.baseurl.rstrip("/")


@dataclass(frozen=True)
class FeedsConfig:
    output_dir: str = "public"
    formats: tuple[str, ...] = ("atom", "rss", "json")
    limit: int = 20
    content: str = "full"
    categories: bool = True
    tags: bool = False
    authors: bool = False
    stylesheet: bool = True
    websub_hub: tuple[str, ...] = ()      # hubs to ping; the file may give one URL as a string
    rebuild_every: str = "5m"
    slugs: dict[str, str] = field(default_factory=dict)
    atom_path: str = "feed.xml"          # the site-wide Atom feed (jekyll-feed's feed.path)
    category_atom_path: str = ""         # e.g. "feed/{name}.xml"; "" → categories/<slug>/feed.xml
    tag_atom_path: str = ""              # e.g. "feed/by_tag/{name}.xml"; "" → tags/<slug>/feed.xml


DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class ScheduleEntry:
    """One `digest.schedule` entry in the site's time zone: "mon,thu 09:00" → days (0, 3) at 09:00."""

    days: tuple[int, ...]      # 0 is Monday
    at: time

    @property
    def day_names(self) -> str:
        """"mon,thu": the form cron triggers take (names, never numbers: APScheduler counts from Monday)."""
        return ",".join(DAY_NAMES[day] for day in self.days)


class MonthlySlot(NamedTuple):
    """`digest.monthly_on`: "1 09:00" → the 1st of each month at 09:00, in each reader's time zone."""

    day: int                   # 1–28: every month has it
    at: time


@dataclass(frozen=True)
class DigestConfig:
    schedule: tuple[ScheduleEntry, ...] = (ScheduleEntry((0,), time(9, 0)),)
    subject: str = ""                    # "" = the `subject` string of site.language (email_templates/strings.toml)
    from_: str = "feedpub <feedpub@localhost>"
    max_posts: int = 20
    excerpt_chars: int = 120
    templates_dir: str = ""
    first_issue_days: int = 7
    misfire_grace: str = "6h"
    send_in_daemon: bool = True          # false: `feedpub run` composes and queues; `feedpub worker`s send
    images: str = "image"                # "image": front matter `image`; "first": else the body's first; "none"
    cadences: tuple[str, ...] = ("weekly",)   # what readers may choose of post, daily, weekly, monthly
    daily_at: time = time(9, 0)          # the daily digest's local time (each reader's own zone)
    monthly_on: MonthlySlot = MonthlySlot(1, time(9, 0))
    post_delay: str = "10m"              # a post is mailed to `post` readers this long after it first appears
    post_burst: int = 5                  # more new posts than this in one build: a bulk import, left to digests
    post_content: str = "full"           # "full" | "excerpt": what a `post` mail shows
    welcome_posts: int = 3               # the newest posts a confirmed reader is welcomed with; 0: no welcome


@dataclass(frozen=True)
class DkimConfig:
    """`[smtp.dkim]`: sign every message (RFC 6376) as `domain`, with the key published at
    `selector._domainkey.domain`. All three keys set, or none (no signing)."""

    domain: str = ""
    selector: str = ""
    key_file: str = ""
    # The private key (PEM), read from key_file once, when the config is loaded; not a key of the file.
    _private_key: bytes = field(default=b"", repr=False)

    @property
    def enabled(self) -> bool:
        return bool(self._private_key)

    @property
    def private_key(self) -> bytes:
        return self._private_key


@dataclass(frozen=True)
class SmtpConfig:
    host: str = "localhost"
    port: int = 587
    security: str = "starttls"
    username: str = ""
    password_env: str = "FEEDPUB_SMTP_PASSWORD"
    connections: int = 4
    rate_per_second: float = 10.0
    timeout: float = 30.0
    max_retries: int = 5
    retry_base: str = "1m"               # first retry after a 4xx; each further one waits twice as long
    dkim: DkimConfig = field(default_factory=DkimConfig)
    return_path: str = ""                # set: VERP, each delivery's MAIL FROM is bounces+<tag>@domain

    def password(self) -> str:
        """The SMTP password from the environment; '' when no username is configured."""
        return require_env(self.password_env) if self.username else ""


@dataclass(frozen=True)
class StoreConfig:
    url: str = "sqlite:///.feedpub/feedpub.db"


@dataclass(frozen=True)
class WebConfig:
    listen: str = "127.0.0.1:8080"
    public_url: str = "http://127.0.0.1:8080"
    secret_env: str = "FEEDPUB_SECRET"
    unsubscribe_mailto: str = ""
    templates_dir: str = ""
    subscribe_limit: int = 10            # subscribe requests an hour from one client address
    admin: bool = True                   # the dashboard at /admin (its accounts: `feedpub admin add-user`)

    def secret(self) -> str:
        return require_env(self.secret_env)


@dataclass(frozen=True)
class BouncesConfig:
    soft_limit: int = 3                  # soft bounces that suppress an address…
    soft_window: str = "30d"             # …within this long, with no clean delivery in between
    mailbox: str = ""                    # a Maildir folder or an mbox file the MTA delivers bounces to
    imap_url: str = ""                   # imaps://user@host/INBOX (imap:// only to 127.0.0.1)
    imap_password_env: str = "FEEDPUB_IMAP_PASSWORD"
    processed_folder: str = "feedpub-processed"
    poll_every: str = "5m"
    raw_limit: int = 65536               # bytes of each bounce kept as evidence
    webhook_token_env: str = "FEEDPUB_WEBHOOK_TOKEN"     # bearer token of /webhooks/bounce and /webhooks/postmark
    mailgun_key_env: str = "FEEDPUB_MAILGUN_SIGNING_KEY"
    sendgrid_public_key: str = ""        # the Event Webhook's verification key (base64; not a secret)
    ses_topic_arn: str = ""              # /webhooks/ses accepts notifications of this SNS topic only
    max_complaint_rate: float = 0.003    # complaints per message sent that pause an issue (0.3%: Gmail's line)
    max_bounce_rate: float = 0.05        # hard bounces per message sent that pause an issue

    def imap_password(self) -> str:
        return require_env(self.imap_password_env)


@dataclass(frozen=True)
class ActivityPubConfig:
    """`[activitypub]`: the blog (and with `categories`, each category) as an account on web.public_url's host."""

    enabled: bool = False
    username: str = "blog"               # the site's account: acct:blog@<web.public_url's host>
    categories: bool = False             # one more account per category, named by its feed's slug
    allow_private_addresses: bool = False  # fetch keys from private, loopback addresses and plain http (tests only)
    give_up_after: str = "7d"            # an instance failing this long loses its deliveries


@dataclass(frozen=True)
class Config:
    site: SiteConfig = field(default_factory=SiteConfig)
    feeds: FeedsConfig = field(default_factory=FeedsConfig)
    digest: DigestConfig = field(default_factory=DigestConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    web: WebConfig = field(default_factory=WebConfig)
    bounces: BouncesConfig = field(default_factory=BouncesConfig)
    activitypub: ActivityPubConfig = field(default_factory=ActivityPubConfig)
    # The folder relative paths are resolved against: the config file's own folder.
    root: Path = field(default_factory=Path.cwd)
    source: str = "<defaults>"
    given: frozenset[str] = frozenset()   # the keys the file sets ("site.url"), which win over a Jekyll _config.yml
    # `defaults:` of the Jekyll _config.yml (site.jekyll_dir), applied to each post's front matter.
    front_matter_defaults: tuple[FrontMatterDefault, ...] = ()
    # Its `collections:` but posts, whose documents `{% link %}` can name.
    jekyll_collections: tuple[JekyllCollection, ...] = ()

    def path(self, relative: str) -> Path:
        return (self.root / relative).resolve()

    @property
    def posts_dir(self) -> Path:
        return self.path(self.site.posts_dir)

    @property
    def jekyll_root(self) -> Path | None:
        return self.path(self.site.jekyll_dir) if self.site.jekyll_dir else None

    @property
    def output_dir(self) -> Path:
        return self.path(self.feeds.output_dir)

    @property
    def store_url(self) -> str:
        """`store.url` with a relative SQLite path resolved against the config folder."""
        url = self.store.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite://":
            return prefix + str(self.path(url[len(prefix) :]))
        return url

    @property
    def store_file(self) -> Path | None:
        """The SQLite file of `store.url`; None for PostgreSQL and an in-memory store."""
        url = self.store_url
        return Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None


class MissingSecret(ConfigError):
    pass


def require_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise MissingSecret(f"environment variable {name} is not set (it holds a secret the command needs)")
    return value


_DURATION = re.compile(r"^(\d+)\s*([smhd])$")
_DAY = "(?:mon|tue|wed|thu|fri|sat|sun)"
_LOCAL_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_MONTHLY = re.compile(r"^(\d{1,2})\s+(\S+)$")
_SCHEDULE = re.compile(rf"^({_DAY}(?:,{_DAY})*)\s+([01]?\d|2[0-3]):([0-5]\d)$")


def parse_duration(text: str) -> timedelta:
    """'90s', '5m', '6h', '1d' → timedelta."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(message("config_not_duration", value=repr(text)))
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match[2]]
    return timedelta(**{unit: int(match[1])})


def parse_local_time(text: str) -> time:
    """'09:00' → 09:00."""
    match = _LOCAL_TIME.match(text.strip())
    if not match:
        raise ValueError(message("config_not_time_of_day", value=repr(text)))
    return time(int(match[1]), int(match[2]))


def parse_monthly_slot(text: str) -> MonthlySlot:
    """'1 09:00' → the 1st at 09:00."""
    match = _MONTHLY.match(text.strip())
    if not match or not 1 <= int(match[1]) <= 28:
        raise ValueError(message("config_not_monthly_slot", value=repr(text)))
    return MonthlySlot(int(match[1]), parse_local_time(match[2]))


def parse_schedule_entry(text: str) -> ScheduleEntry:
    """'mon,thu 09:00' → ScheduleEntry((0, 3), 09:00)."""
    match = _SCHEDULE.match(text.strip().lower())
    if not match:
        raise ValueError(message("config_not_schedule_entry", value=repr(text)))
    days = tuple(sorted({DAY_NAMES.index(day) for day in match[1].split(",")}))
    return ScheduleEntry(days, time(int(match[2]), int(match[3])))
