"""`feedpub digest send --dry-run` and `--to EMAIL --cadence K --tz Z` for readers of every cadence in several time
zones, through the real CLI on a real store (SQLite, and PostgreSQL for the dry run), with a real SMTP server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import time_machine
from click.testing import CliRunner, Result

from feedpub.cli import main
from feedpub.config_file import load_config
from feedpub.records import SubscriberInput
from feedpub.send.reader_mail import FIRST_LOOK, queue_welcome
from feedpub.site.posts import collect
from feedpub.store import Store, open_store
from tests.send.sites import SECRET, write_config

# Monday 2026-12-07 21:00 UTC: Tuesday 06:00 in Tokyo (the site's zone), Monday 13:00 in Los Angeles, 16:00 in New
# York, 22:00 in Paris. The latest slots: the weekly "mon 09:00" in Tokyo (Monday 00:00 UTC) and in New York
# (14:00 UTC), the daily 09:00 in Tokyo (Monday 00:00 UTC) and in Los Angeles (17:00 UTC), the monthly "1 09:00" in
# Paris (December 1st, 08:00 UTC).
NOW = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
TOKYO = ZoneInfo("Asia/Tokyo")
POSTS = {  # slug: (title, date); the first is in the category AI, the others in none
    "copyright": ("生成AIと著作権の現在地", NOW - timedelta(hours=25)),      # Sunday 20:00 UTC: in the week, the days
    "python": ("Deploying with Python", datetime(2026, 11, 20, 3, 0, tzinfo=UTC)),   # in November: the month only
    "nlp": ("日本語NLPの前処理", NOW - timedelta(minutes=30)),                 # its post mail is due (delay 10 min)
    # Not seen yet: a real run records it as waiting for its post mail (due in 10 minutes), so the weekly digest of
    # a `post` reader leaves it out, and the weekly digest of the others carries it.
    "fresh": ("Fresh off the press", NOW - timedelta(hours=22)),
}
# email: (cadence, time zone, topics)
READERS = {
    "ayumi@example.jp": ("weekly", "", ()),
    "ben@example.com": ("daily", "America/Los_Angeles", ()),
    "chihiro@example.jp": ("daily", "Asia/Tokyo", ()),
    "dan@example.com": ("monthly", "Europe/Paris", ()),
    "emi@example.jp": ("post", "Asia/Tokyo", ()),
    "gardener@example.jp": ("daily", "America/Los_Angeles", ("categories/園芸",)),
    "fumi@example.com": ("weekly", "America/New_York", ("categories/AI",)),
}


def feedpub(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], env={"FEEDPUB_SECRET": SECRET},
                              catch_exceptions=False)


def write_site(root: Path, port: int, *, language: str = "en", store_url: str = "") -> Path:
    config = write_config(root, port, store_url=store_url,
                          digest={"cadences": ["post", "daily", "weekly", "monthly"], "welcome_posts": 3})
    text = config.read_text(encoding="utf-8").replace("[site]\n", f'[site]\nlanguage = "{language}"\n')
    config.write_text(text, encoding="utf-8")
    posts = root / "posts"
    posts.mkdir()
    for slug, (title, date) in POSTS.items():
        category = "categories: [AI]\n" if slug == "copyright" else ""
        (posts / f"{date.astimezone(TOKYO):%Y-%m-%d}-{slug}.md").write_text(
            f'---\ntitle: "{title}"\ndate: {date:%Y-%m-%d %H:%M:%S %z}\n{category}---\n\n{title}の本文です。\n',
            encoding="utf-8")
    return config


def add_readers(config: Path, store: Store) -> None:
    """The readers; every post but the fresh one seen before (the one due for its post mail seen 30 minutes ago);
    fumi's welcome (the one post of their topic then) queued yesterday and not sent yet."""
    site = load_config(config)
    store.save_subscribers([SubscriberInput(email, email.split("@")[0], topics, cadence, zone)
                            for email, (cadence, zone, topics) in READERS.items()], status="active")
    urls = {p.title: p.url for p in collect(site, now=NOW).posts}
    seen = {FIRST_LOOK: ("look", NOW - timedelta(days=60)),
            urls["生成AIと著作権の現在地"]: ("digest", POSTS["copyright"][1]),
            urls["Deploying with Python"]: ("digest", POSTS["python"][1]),
            urls["日本語NLPの前処理"]: ("waiting", POSTS["nlp"][1])}
    store.sight_posts(seen)
    fumi = store.subscriber("fumi@example.com")
    assert fumi is not None and queue_welcome(site, store, fumi, NOW - timedelta(hours=23)) is not None


def rows(store: Store) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every table, as text, sorted."""
    tables = sa.MetaData()
    tables.reflect(store.engine)
    with store.engine.connect() as conn:
        return {name: sorted(tuple(map(str, row)) for row in conn.execute(sa.select(table)))
                for name, table in tables.tables.items()}


# A stream's issue composed and fully sent, in each language.
PENDING_NONE = {"en": "already composed; 0 deliveries due; nothing sent", "ja": "送信予定 0 件。何も送信していません"}


def subject(received) -> str:
    return str(make_header(decode_header(received.message()["Subject"])))


@pytest.mark.parametrize(("language", "headings", "said"), [
    ("en", ["daily mail, Asia/Tokyo: issue 2026-12-07-0900-daily",
            "daily mail, America/Los_Angeles: issue 2026-12-07-0900-daily-America.Los_Angeles",
            "monthly mail, Europe/Paris: issue 2026-12-01-0900-monthly-Europe.Paris",
            "weekly mail, Asia/Tokyo: issue 2026-12-07-0900",
            "weekly mail, America/New_York: issue 2026-12-07-0900-weekly-America.New_York",
            'post mail of "日本語NLPの前処理": issue 2026-12-07-2040-post-',
            "welcome mail, America/New_York: issue 2026-12-06-220000-welcome-"],
     ["gardener@example.jp: nothing (no new post in categories/園芸)",
      "dry run: 2 recipients, 2 variants; nothing sent or recorded",
      "issue 2026-12-07-0900-weekly-America.New_York: no new posts; nothing would be sent"]),
    ("ja", ["Asia/Tokyo の daily メール：号 2026-12-07-0900-daily",
            "America/Los_Angeles の daily メール：号 2026-12-07-0900-daily-America.Los_Angeles",
            "Europe/Paris の monthly メール：号 2026-12-01-0900-monthly-Europe.Paris",
            "Asia/Tokyo の weekly メール：号 2026-12-07-0900",
            "America/New_York の weekly メール：号 2026-12-07-0900-weekly-America.New_York",
            "記事「日本語NLPの前処理」のメール：号 2026-12-07-2040-post-",
            "America/New_York の welcome メール：号 2026-12-06-220000-welcome-"],
     ["gardener@example.jp: なし（categories/園芸 に新しい記事がありません）",
      "ドライラン：宛先 2 件、内容 2 種類。何も送信・記録していません",
      "号 2026-12-07-0900-weekly-America.New_York: 新しい記事がないため、送るものはありません"]),
])
def test_dry_run_shows_every_stream_due_the_post_mails_and_the_pending_welcome_and_records_nothing(
        tmp_path, smtp_server, caplog, language, headings, said) -> None:
    config = write_site(tmp_path, smtp_server.port, language=language)
    with time_machine.travel(NOW, tick=False):
        store = open_store(f"sqlite:///{tmp_path / '.feedpub' / 'feedpub.db'}")
        add_readers(config, store)
        before = rows(store)
        with caplog.at_level("INFO"):
            dry = feedpub(config, "digest", "send", "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert rows(store) == before          # no issue, delivery, ledger row or sighting
        assert smtp_server.received == []
        # Each stream's heading (stderr) comes before its recipients (stdout), in the order a real run goes.
        lines = dry.output.splitlines()
        found = [next(i for i, line in enumerate(lines) if line.startswith(heading)) for heading in headings]
        assert found == sorted(found), dry.output
        planned = [tuple(line.split("\t")) for line in dry.stdout.splitlines()]
        assert [email for email, _ in planned] == [
            "chihiro@example.jp", "ben@example.com", "dan@example.com", "ayumi@example.jp", "emi@example.jp",
            "emi@example.jp", "fumi@example.com"]
        assert lines[found[1] + 1].startswith("ben@example.com\t")            # under its stream's heading
        assert lines[found[5] + 1] == "emi@example.jp\t日本語NLPの前処理"   # the post mail's subject: its title
        for line in said:
            assert line in dry.stderr + caplog.text

        # What a real run sends now is what the dry run listed, no more, no less.
        sent = feedpub(config, "digest", "send")
        assert sent.exit_code == 0, sent.output
        assert sorted((r.rcpt_tos[0], subject(r)) for r in smtp_server.received) == sorted(planned)
        assert rows(store) != before
        # Then nothing is left: each stream's issue is composed with no row due, the post mail and welcome sent.
        again = feedpub(config, "digest", "send", "--dry-run")
    assert again.exit_code == 0 and again.stdout == ""
    assert again.stderr.count(PENDING_NONE[language]) == 4, again.stderr     # New York's weekly: nothing new


def test_dry_run_records_nothing_on_sqlite_and_postgresql(tmp_path, smtp_server, any_store) -> None:
    url = any_store.engine.url.render_as_string(hide_password=False)
    config = write_site(tmp_path, smtp_server.port, store_url=url)
    with time_machine.travel(NOW, tick=False):
        add_readers(config, any_store)
        before = rows(any_store)
        dry = feedpub(config, "digest", "send", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert rows(any_store) == before
    assert sorted(line.split("\t")[0] for line in dry.stdout.splitlines()) == [
        "ayumi@example.jp", "ben@example.com", "chihiro@example.jp", "dan@example.com", "emi@example.jp",
        "emi@example.jp", "fumi@example.com"]
    assert "monthly mail, Europe/Paris: issue 2026-12-01-0900-monthly-Europe.Paris" in dry.stderr
    assert smtp_server.received == []


@pytest.mark.parametrize(("args", "subject", "body"), [
    # Los Angeles: Monday 13:00, the next daily digest is Tuesday's, covering the posts since Monday 09:00 there;
    # in Auckland (Tuesday 10:00) Wednesday's.
    (("--cadence", "daily", "--tz", "America/Los_Angeles"), "[TEST] ALLFORCES daily — 8 December 2026",
     ["You get a daily digest at 09:00 (America/Los_Angeles)", "1 new posts", "日本語NLPの前処理"]),
    (("--cadence", "daily", "--tz", "Pacific/Auckland"), "[TEST] ALLFORCES daily — 9 December 2026",
     ["Pacific/Auckland", "日本語NLPの前処理"]),
    (("--cadence", "monthly", "--tz", "Europe/Paris"), "[TEST] ALLFORCES monthly — 1 January 2027",
     ["Europe/Paris", "生成AIと著作権の現在地", "Fresh off the press", "日本語NLPの前処理"]),
    # The post waiting longest for its post mail.
    (("--cadence", "post", "--tz", "Asia/Tokyo"), "[TEST] 日本語NLPの前処理", ["日本語NLPの前処理の本文です。"]),
    # No cadence: the weekly issue that is due in the site's zone, as before.
    ((), "[TEST] ALLFORCES weekly — 7 December 2026", ["生成AIと著作権の現在地"]),
])
def test_a_test_copy_of_a_readers_next_mail_for_a_cadence_and_zone_records_nothing(
        tmp_path, smtp_server, args, subject, body) -> None:
    config = write_site(tmp_path, smtp_server.port)
    with time_machine.travel(NOW, tick=False):
        store = open_store(f"sqlite:///{tmp_path / '.feedpub' / 'feedpub.db'}")
        add_readers(config, store)
        before = rows(store)
        result = feedpub(config, "digest", "send", "--to", "editor@example.org", *args)
    assert result.exit_code == 0, result.output
    (received,) = smtp_server.received
    assert received.rcpt_tos == ("editor@example.org",)
    message = received.message()
    assert str(make_header(decode_header(message["Subject"]))) == subject
    text = message.get_body(("plain",)).get_content()
    for shown in body:
        assert shown in text, text
    assert "Deploying with Python" not in text           # November's post went out in no mail of these
    assert message["List-Unsubscribe"] == "<https://news.blog.example.com/unsubscribe>"   # not a subscriber
    assert rows(store) == before


@pytest.mark.parametrize(("cadences", "args", "said"), [
    (["weekly"], ("--to", "editor@example.org", "--cadence", "daily"),
     "--cadence daily: not offered by this site (expected one of digest.cadences: weekly)"),
    (["weekly", "daily"], ("--to", "editor@example.org", "--cadence", "daily", "--tz", "Mars/Base"),
     "--tz 'Mars/Base': unknown time zone"),
    (["weekly"], ("--to", "editor@example.org", "--tz", "Asia/Tokyo"), "--tz: give the cadence too"),
    (["weekly"], ("--cadence", "weekly"), "--cadence, --tz: only with --to"),
    (["weekly"], ("--dry-run", "--tz", "Asia/Tokyo"), "--cadence, --tz: only with --to"),
])
def test_a_test_copy_refuses_what_no_reader_could_get(tmp_path, smtp_server, cadences, args, said) -> None:
    config = write_config(tmp_path, smtp_server.port, digest={"cadences": cadences})
    result = feedpub(config, "digest", "send", *args)
    assert result.exit_code == 2, result.output
    assert said in " ".join(result.stderr.split())
    assert smtp_server.received == []
    assert not (tmp_path / ".feedpub").exists()         # not even a store created


def test_dry_run_shows_the_catch_up_of_a_reader_who_switched_to_each_post_and_the_real_run_sends_it(
        tmp_path, smtp_server) -> None:
    config = write_site(tmp_path, smtp_server.port)
    mid = NOW - timedelta(hours=5)
    (tmp_path / "posts" / f"{mid.astimezone(TOKYO):%Y-%m-%d}-mid.md").write_text(
        f'---\ntitle: "昼の記事"\ndate: {mid:%Y-%m-%d %H:%M:%S %z}\n---\n\n昼の記事の本文です。\n', encoding="utf-8")
    store = open_store(f"sqlite:///{tmp_path / '.feedpub' / 'feedpub.db'}")
    with time_machine.travel(datetime(2026, 12, 7, 0, 1, tzinfo=UTC), tick=False):    # Monday 09:01 in Tokyo
        store.save_subscribers([SubscriberInput("gina@example.jp", "gina", (), "weekly", "")], status="active")
        assert feedpub(config, "digest", "send").exit_code == 0
    assert [subject(r) for r in smtp_server.received] == ["ALLFORCES weekly — 7 December 2026"]
    site = load_config(config)
    url = next(p.url for p in collect(site, now=NOW).posts if p.title == "昼の記事")
    store.sight_posts({url: ("mailed", mid)})              # its post mail went out, to `post` readers only
    with time_machine.travel(NOW - timedelta(minutes=15), tick=False):
        store.save_subscribers([SubscriberInput("gina@example.jp", None, None, "post")], status=None)
    with time_machine.travel(NOW, tick=False):
        before = rows(store)
        dry = feedpub(config, "digest", "send", "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert rows(store) == before
        assert "post mail, Asia/Tokyo: issue 2026-12-07-205500-post-catch-up-1" in dry.stderr
        assert dry.stdout == "gina@example.jp\t昼の記事\n"          # one waiting post: its own title
        assert feedpub(config, "digest", "send").exit_code == 0
    assert [(r.rcpt_tos[0], subject(r)) for r in smtp_server.received[1:]] == [("gina@example.jp", "昼の記事")]
