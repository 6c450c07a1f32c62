"""Schedules in the site's time zone, and the jobs the daemon defines (no sleeping: triggers are asked
for their next fire time from fixed instants)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from feedpub.scheduler import BUILD_JOB, DIGEST_JOB, describe_jobs, digest_trigger, make_scheduler

TOKYO = ZoneInfo("Asia/Tokyo")


def config_with(site, schedule: str, **extra: str):
    site.configure(f"[digest]\nschedule = {schedule}\nmisfire_grace = \"6h\"\n[feeds]\nrebuild_every = \"2m\"\n")
    return site.config


def test_monday_means_monday_in_tokyo(site) -> None:
    config = config_with(site, '"mon 09:00"')
    sunday_night_utc = datetime(2025, 12, 14, 23, 59, tzinfo=ZoneInfo("UTC"))  # Monday 08:59 in Tokyo
    fire = digest_trigger(config).get_next_fire_time(None, sunday_night_utc)
    assert fire == datetime(2025, 12, 15, 9, 0, tzinfo=TOKYO)
    assert fire.strftime("%a") == "Mon"


def test_two_schedules_fire_twice_a_week(site) -> None:
    config = config_with(site, '["mon 09:00", "thu 18:30"]')
    trigger = digest_trigger(config)
    fires, now = [], datetime(2025, 12, 15, 9, 0, 1, tzinfo=TOKYO)
    for _ in range(4):
        now = trigger.get_next_fire_time(None, now)
        fires.append(now.strftime("%a %H:%M"))
        now = now.replace(second=1)
    assert fires == ["Thu 18:30", "Mon 09:00", "Thu 18:30", "Mon 09:00"]


def test_comma_separated_days(site) -> None:
    config = config_with(site, '"mon,fri 07:05"')
    fire = digest_trigger(config).get_next_fire_time(None, datetime(2025, 12, 16, tzinfo=TOKYO))
    assert fire == datetime(2025, 12, 19, 7, 5, tzinfo=TOKYO)


def test_jobs_run_at_start_then_on_schedule(site) -> None:
    config = config_with(site, '"mon 09:00"')
    start = datetime(2025, 12, 15, 10, 0, tzinfo=TOKYO)
    scheduler = make_scheduler(config, build=lambda: None, digest=lambda: None, now=start)
    scheduler.start(paused=True)
    try:
        jobs = {job.id: job for job in scheduler.get_jobs()}
        assert set(jobs) == {BUILD_JOB, DIGEST_JOB}
        assert jobs[BUILD_JOB].next_run_time == start  # a build at start
        assert jobs[DIGEST_JOB].next_run_time == start  # a digest check at start (catch-up within grace)
        assert jobs[DIGEST_JOB].misfire_grace_time == 6 * 3600
        assert jobs[DIGEST_JOB].coalesce and jobs[DIGEST_JOB].max_instances == 1
        assert jobs[BUILD_JOB].trigger.interval.total_seconds() == 120
        lines = describe_jobs(scheduler, config)
        assert lines[0].startswith("job 'build feeds': runs now, then next at ")
        assert lines[1].startswith("job 'send digest': runs now, then next at ") and lines[1].endswith("JST")
    finally:
        scheduler.shutdown(wait=False)
