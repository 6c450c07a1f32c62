"""The slots of each cadence in a reader's own time zone: DST gaps and folds fire once per local day, and a
weekly Monday 09:00 is 17 hours apart in Tokyo and Los Angeles."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from feedpub.config_file import load_config
from feedpub.errors import ConfigError
from feedpub.send import verp
from feedpub.send.cadences import local_instant, next_slot, period_key, post_topics, previous_slot, wanted

LA, BERLIN, TOKYO = ZoneInfo("America/Los_Angeles"), ZoneInfo("Europe/Berlin"), ZoneInfo("Asia/Tokyo")


def config(tmp_path: Path, digest: str):
    path = tmp_path / "feedpub.toml"
    path.write_text(f'[site]\ntimezone = "Asia/Tokyo"\n[digest]\n{digest}\n', encoding="utf-8")
    return load_config(path)


def daily_slots(config, tz: ZoneInfo, start: datetime, days: int) -> list[datetime]:
    slots, now = [], start
    while (now := next_slot(config, "daily", tz, now)) < start + timedelta(days=days):
        slots.append(now)
    return slots


@pytest.mark.parametrize(("tz", "spring", "autumn"), [(LA, date(2026, 3, 8), date(2026, 11, 1)),
                                                      (BERLIN, date(2026, 3, 29), date(2026, 10, 25))])
def test_a_daily_slot_in_a_skipped_or_repeated_hour_fires_once_each_local_day(tmp_path, tz, spring, autumn):
    at = "02:30"    # skipped on the spring day in both zones; repeated on the autumn day
    daily = config(tmp_path, f'cadences = ["daily"]\ndaily_at = "{at}"')
    for day in (spring, autumn):
        start = datetime.combine(day - timedelta(days=2), time(12), tzinfo=tz).astimezone(UTC)
        slots = daily_slots(daily, tz, start, 4)
        assert [s.astimezone(tz).date() for s in slots] == [day - timedelta(days=1) + timedelta(days=i)
                                                             for i in range(4)]
    gap = local_instant(spring, time(2, 30), tz).astimezone(tz)
    assert (gap.hour, gap.minute) == (3, 30)                 # the hour does not exist: just after it
    fold = local_instant(autumn, time(2 if tz is BERLIN else 1, 30), tz)
    assert fold.astimezone(tz).fold == 0                     # the first of the two


def test_previous_and_next_slot_bracket_now_and_period_names_the_local_slot(tmp_path):
    weekly = config(tmp_path, 'cadences = ["weekly", "monthly"]\nschedule = "mon 09:00"\nmonthly_on = "3 07:30"')
    now = datetime(2026, 12, 9, 0, 0, tzinfo=UTC)           # a Wednesday
    tokyo, la = previous_slot(weekly, "weekly", TOKYO, now), previous_slot(weekly, "weekly", LA, now)
    assert tokyo == datetime(2026, 12, 7, 9, 0, tzinfo=TOKYO) and la == datetime(2026, 12, 7, 9, 0, tzinfo=LA)
    assert la - tokyo == timedelta(hours=17)
    assert next_slot(weekly, "weekly", TOKYO, tokyo) == tokyo + timedelta(days=7)
    assert period_key(weekly, "weekly", "", tokyo) == "2026-12-07-0900"        # the site zone: as ever
    assert period_key(weekly, "weekly", "America/Los_Angeles", la) == "2026-12-07-0900-weekly-America.Los_Angeles"
    assert period_key(weekly, "daily", "Etc/GMT+5", la) == "2026-12-07-1200-daily-Etc.GMTplus5"
    assert previous_slot(weekly, "monthly", TOKYO, now) == datetime(2026, 12, 3, 7, 30, tzinfo=TOKYO)
    assert next_slot(weekly, "monthly", TOKYO, now) == datetime(2027, 1, 3, 7, 30, tzinfo=TOKYO)


@pytest.mark.parametrize(("digest", "message"), [
    ('cadences = ["hourly"]', "'digest.cadences': 'hourly' is not one of"),
    ('monthly_on = "31 09:00"', "(expected e.g. '1 09:00': a day from 1 to 28"),
    ('daily_at = "25:00"', "'digest.daily_at': '25:00' is not a time of day"),
    ('post_delay = "soon"', "'post_delay': 'soon' is not a duration"),
])
def test_bad_cadence_keys_name_their_line(tmp_path, digest, message):
    with pytest.raises(ConfigError) as error:
        config(tmp_path, digest)
    assert "feedpub.toml:4: " in str(error.value) and message in str(error.value)


def test_topics_take_a_post_by_name_or_slug_in_any_case(tmp_path):
    site = config(tmp_path, "")
    post = SimpleNamespace(categories=("AI導入戦略",), tags=("Machine Learning",), author="Taro")
    found = post_topics(site, post)
    assert wanted((), found) and wanted(("categories/ai導入戦略",), found)
    assert wanted(("tags/machine-learning",), found) and wanted(("authors/taro", "tags/x"), found)
    assert not wanted(("categories/news",), found)


def test_a_zone_streams_message_id_is_still_read_back_from_a_complaint():
    period = "2026-12-07-0700-daily-America.Los_Angeles"
    message_id = verp.message_id("s", period, "reader@example.com", "blog.example.com")
    (found,) = verp.message_ids_in(f"Message-ID: {message_id}\r\n")
    assert found[0].startswith(period) and verp.sent_to("s", found, "reader@example.com")
    assert not verp.sent_to("s", found, "other@example.com")
