"""Schedules in the site's time zone, and the jobs the daemon defines (no sleeping: triggers are asked
for their next fire time from fixed instants, and the retry job is run by hand)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from feedpub.scheduler import (
    BUILD_JOB,
    CADENCE_JOB,
    DIGEST_JOB,
    RETRY_JOB,
    describe_jobs,
    digest_trigger,
    make_scheduler,
)
from feedpub.strings import english

TOKYO = ZoneInfo("Asia/Tokyo")


def config_with(site, schedule: str, digest: str = "", smtp: str = ""):
    site.configure(f'[digest]\nschedule = {schedule}\nmisfire_grace = "6h"\n{digest}\n'
                   f'[feeds]\nrebuild_every = "2m"\n[smtp]\n{smtp}\n')
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
    scheduler = make_scheduler(config, build=lambda: None, digest=lambda: None, retry=lambda: None, now=start)
    scheduler.start(paused=True)
    try:
        jobs = {job.id: job for job in scheduler.get_jobs()}
        assert set(jobs) == {BUILD_JOB, DIGEST_JOB, RETRY_JOB, CADENCE_JOB}
        assert jobs[CADENCE_JOB].next_run_time == start  # every cadence's due mail, then at the next slot
        assert jobs[BUILD_JOB].next_run_time == start  # a build at start
        assert jobs[DIGEST_JOB].next_run_time == start  # a digest check at start (catch-up within grace)
        assert jobs[RETRY_JOB].next_run_time == start   # deferred rows left by an earlier run
        assert jobs[DIGEST_JOB].misfire_grace_time == 6 * 3600
        assert jobs[DIGEST_JOB].coalesce and jobs[DIGEST_JOB].max_instances == 1
        assert jobs[BUILD_JOB].trigger.interval.total_seconds() == 120
        build, retry, digest, cadences = sorted(describe_jobs(scheduler, config, english("cli")))
        assert cadences.startswith("job 'send the mail of every cadence': runs now, then at every slot")
        assert build.startswith("job 'build feeds': runs now, then next at ")
        assert retry == "job 'retry deferred deliveries': runs now, then whenever a deferred delivery falls due"
        assert digest.startswith("job 'send digest': runs now, then next at ") and digest.endswith("JST")
    finally:
        scheduler.shutdown(wait=False)


def test_workers_retry_when_the_daemon_does_not_send(site) -> None:
    config = config_with(site, '"mon 09:00"', digest="send_in_daemon = false")
    scheduler = make_scheduler(config, build=lambda: None, digest=lambda: None, retry=lambda: None)
    assert RETRY_JOB not in {job.id for job in scheduler.get_jobs()}


def soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


@pytest.mark.parametrize(("returned", "wakes_in"), [
    (lambda: soon(10), 10),        # the next retry time
    (lambda: soon(3600), 20),      # far off: still looks every smtp.retry_base, for rows others defer
    (lambda: None, 20),            # nothing deferred
    (lambda: soon(-5), 20),        # due but held by another process: not again at once
])
def test_the_retry_job_wakes_when_the_next_retry_falls_due(site, returned, wakes_in) -> None:
    config = config_with(site, '"mon 09:00"', smtp='retry_base = "20s"')
    runs: list[datetime] = []

    def retry() -> datetime | None:
        runs.append(datetime.now(UTC))
        return returned()

    scheduler = make_scheduler(config, build=lambda: None, digest=lambda: None, retry=retry)
    scheduler.start(paused=True)
    try:
        scheduler.get_job(RETRY_JOB).func()
        assert len(runs) == 1
        wake = scheduler.get_job(RETRY_JOB).next_run_time
        assert abs((wake - runs[0]).total_seconds() - wakes_in) < 2, wake
    finally:
        scheduler.shutdown(wait=False)


def test_the_retry_job_survives_a_failed_run(site) -> None:
    config = config_with(site, '"mon 09:00"')

    def retry() -> datetime | None:
        raise OSError("database went away")

    scheduler = make_scheduler(config, build=lambda: None, digest=lambda: None, retry=retry)
    scheduler.start(paused=True)
    try:
        with pytest.raises(OSError):
            scheduler.get_job(RETRY_JOB).func()
        assert scheduler.get_job(RETRY_JOB).next_run_time > datetime.now(UTC)   # looks again after a minute
    finally:
        scheduler.shutdown(wait=False)


@pytest.mark.parametrize(("returned", "wakes_in"), [
    (lambda: soon(90), 90),        # the next slot of a cadence in use, or a post's mail
    (lambda: soon(7 * 24 * 3600), 15 * 60),   # far off: still looks every CADENCE_LOOK_EVERY for new zones
    (lambda: None, 15 * 60),
])
def test_the_cadence_job_sleeps_until_the_next_slot(site, returned, wakes_in) -> None:
    config = config_with(site, '"mon 09:00"')
    runs: list[datetime] = []

    def digest() -> datetime | None:
        runs.append(datetime.now(UTC))
        return returned()

    scheduler = make_scheduler(config, build=lambda: None, digest=digest, retry=lambda: None)
    scheduler.start(paused=True)
    try:
        scheduler.get_job(CADENCE_JOB).func()
        wake = scheduler.get_job(CADENCE_JOB).next_run_time
        assert len(runs) == 1 and abs((wake - runs[0]).total_seconds() - wakes_in) < 2, wake
    finally:
        scheduler.shutdown(wait=False)
