"""`feedpub digest status` by kind of mail and `digest preview --cadence K --tz Z` through the real CLI, on a real
SQLite store and a site with posts on disk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import time_machine
from click.testing import CliRunner, Result

from feedpub.cli import main
from feedpub.records import StoredVariant, SubscriberInput
from feedpub.send.issue import PREFERENCES_MARKER, UNSUBSCRIBE_MARKER
from feedpub.store import open_store
from tests.send.sites import write_config

# Monday 13:00 in Los Angeles: its daily digest (digest.daily_at 09:00) next goes out tomorrow at 09:00 and,
# being the stream's first, covers the day before, from today 09:00 (17:00 UTC).
NOW = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)


def feedpub(config, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)


def site(tmp_path, cadences=("post", "daily", "weekly", "monthly")):
    """Two posts: one an hour before NOW, one at 02:00 in Los Angeles (10:00 UTC)."""
    config = write_config(tmp_path, 2525, digest={"cadences": list(cadences)})
    posts = tmp_path / "posts"
    posts.mkdir()
    for hours, slug, title in ((1, "copyright", "生成AIと著作権の現在地"), (11, "python", "Deploying with Python")):
        date = NOW - timedelta(hours=hours)
        (posts / f"{date:%Y-%m-%d}-{slug}.md").write_text(
            f'---\ntitle: "{title}"\ndate: {date:%Y-%m-%d %H:%M:%S %z}\n---\n\n{title}の本文です。\n', encoding="utf-8")
    return config


def test_status_shows_every_kind_of_mail_with_its_counts_and_filters_by_kind(tmp_path) -> None:
    config = site(tmp_path)
    store = open_store(f"sqlite:///{tmp_path / '.feedpub' / 'feedpub.db'}")
    store.save_subscribers([SubscriberInput(f"r{i}@example.com") for i in range(3)], status="active")
    readers = sorted(store.active_recipients())
    for kind, zone, period, who in (("weekly", "", "2026-11-30-0900", readers),
                                    ("daily", "America/Los_Angeles", "2026-12-01-daily-la", readers[:2]),
                                    ("post", "", "2026-12-01-post-x", readers[:1]),
                                    ("welcome", "Asia/Kolkata", "2026-12-01-welcome-1", readers[2:])):
        store.create_issue(period=period, slot=NOW, starts=NOW - timedelta(days=1), ends=NOW, kind=kind, zone=zone,
                           variants=[StoredVariant("", "件名", "<p>本文</p>", "本文")],
                           recipients=dict.fromkeys(who, ""))
    feedpub(config, "digest", "pause", "2026-12-01-daily-la")
    lines = feedpub(config, "digest", "status").stdout.splitlines()
    assert lines[0].split()[:5] == ["ISSUE", "KIND", "ZONE", "COVERS", "HOLD"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert {period: (row[1], row[2], row[-9], row[-7]) for period, row in rows.items()} == {
        "2026-11-30-0900": ("weekly", "-", "-", "3"), "2026-12-01-daily-la": ("daily", "America/Los_Angeles",
                                                                           "paused", "2"),
        "2026-12-01-post-x": ("post", "-", "-", "1"), "2026-12-01-welcome-1": ("welcome", "Asia/Kolkata", "-", "1")}
    only = feedpub(config, "digest", "status", "--kind", "daily").stdout.splitlines()
    assert [line.split()[0] for line in only[1:]] == ["2026-12-01-daily-la"]
    assert feedpub(config, "digest", "status", "--kind", "hourly").exit_code == 2


def test_preview_of_a_readers_next_digest_in_their_zone(tmp_path) -> None:
    config = site(tmp_path)
    output = tmp_path / "out" / "daily.html"
    with time_machine.travel(NOW, tick=False):
        result = feedpub(config, "digest", "preview", "--cadence", "daily", "--tz", "America/Los_Angeles",
                         "--output", str(output))
        tokyo = feedpub(config, "digest", "preview", "--cadence", "daily", "--tz", "Asia/Tokyo")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{output} (1 post, subject: ALLFORCES daily — 8 December 2026)")
    html, text = output.read_text(encoding="utf-8"), output.with_suffix(".txt").read_text(encoding="utf-8")
    assert "生成AIと著作権の現在地" in html and "Deploying with Python" not in html + text   # before its window
    assert "America/Los_Angeles" in text                  # the footer says where the reader gets it
    # The reader's own links become the generic pages' (no marker is left).
    assert "https://news.blog.example.com/preferences" in text
    assert not any(marker in html + text for marker in (UNSUBSCRIBE_MARKER, PREFERENCES_MARKER))
    # In Tokyo it is 06:00 on Tuesday: the next daily digest, at 09:00, covers both posts.
    assert tokyo.exit_code == 0 and "(2 posts, subject: ALLFORCES daily — 8 December 2026)" in tokyo.stdout


def test_preview_of_a_post_readers_next_mail(tmp_path) -> None:
    config = site(tmp_path)
    with time_machine.travel(NOW, tick=False):
        result = feedpub(config, "digest", "preview", "--cadence", "post", "--tz", "Europe/Paris")
    assert result.exit_code == 0, result.output
    assert "(1 post, subject: " in result.stdout
    html = (tmp_path / ".feedpub" / "preview" / "index.html").read_text(encoding="utf-8")
    assert "生成AIと著作権の現在地" in html and "Deploying with Python" not in html     # the newest post


def test_preview_refuses_what_no_reader_could_get(tmp_path) -> None:
    config = site(tmp_path, cadences=("weekly",))
    cases = {("--cadence", "daily"): "--cadence daily: not offered by this site (expected one of digest.cadences: "
                                     "weekly)",
             ("--cadence", "weekly", "--tz", "Mars/Base"): "--tz 'Mars/Base': unknown time zone",
             ("--tz", "Asia/Tokyo"): "--tz: give the cadence too",
             ("--cadence", "weekly", "--since", "2025-01-01"): "--since: not with --cadence"}
    for args, said in cases.items():
        result = feedpub(config, "digest", "preview", *args)
        assert result.exit_code == 2 and said in " ".join(result.stderr.split()), (args, result.output)
    assert not (tmp_path / ".feedpub" / "preview").exists()
