"""When the daemon builds feeds, sends digests and retries deferred deliveries (APScheduler 3.x, jobs
defined in code).

The scheduler only decides *when*; whether a digest is due, whether it already went out and which
deliveries are due is decided from the store by the jobs themselves, so a restart, a second daemon or a
cron `digest send` beside the daemon never sends a message twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from feedpub.config import Config, parse_duration

if TYPE_CHECKING:
    from feedpub.strings import Strings

log = logging.getLogger(__name__)

BUILD_JOB = "build-feeds"
DIGEST_JOB = "send-digest"
RETRY_JOB = "retry-deliveries"
BOUNCES_JOB = "read-bounces"
RETRY_NAME = "retry deferred deliveries"
CADENCE_JOB = "send-due-mail"
CADENCE_NAME = "send the mail of every cadence"
# The cadence job looks at least this often for what it was not told about: a reader who chose a time zone
# or cadence no one had, a post another process saw first. Between looks it sleeps until the next slot.
CADENCE_LOOK_EVERY = timedelta(minutes=15)
# The retry job looks at least this often (and at least every smtp.retry_base) for deferred rows it was not
# told about: those another process, or the daemon's digest job, deferred since its last run.
RETRY_LOOK_EVERY = timedelta(minutes=1)


class Scheduler(BackgroundScheduler):
    """APScheduler's BackgroundScheduler, whose thread the daemon watches (`feedpub run` exits when it ends)."""

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def digest_trigger(config: Config) -> OrTrigger:
    """One cron trigger per `digest.schedule` entry, in the site's zone."""
    return OrTrigger([CronTrigger(day_of_week=entry.day_names, hour=entry.at.hour, minute=entry.at.minute,
                                  timezone=config.site.tz) for entry in config.digest.schedule])


def make_scheduler(config: Config, *, build: Callable[[], object], digest: Callable[[], datetime | None],
                   retry: Callable[[], datetime | None], now: datetime | None = None,
                   read_bounces: Callable[[], object] | None = None) -> Scheduler:
    """A scheduler with the build job (every `feeds.rebuild_every`, and at start), the digest job (on
    `digest.schedule`, and at start so a slot missed while the daemon was down is caught up within
    `digest.misfire_grace`), when the daemon sends (`digest.send_in_daemon`), the retry job: `retry`
    sends the due deferred rows and returns the next retry time, when it runs again; and when a bounce
    mailbox or IMAP folder is configured, `read_bounces` every `bounces.poll_every` (and at start). `digest`
    sends whatever is due of every cadence and returns when something falls due next (the next slot of a
    stream in use, the next post mail): the cadence job runs it then, and at the latest CADENCE_LOOK_EVERY
    later, so the daemon sleeps between slots."""
    start = now or datetime.now(config.site.tz)
    grace = int(parse_duration(config.digest.misfire_grace).total_seconds())
    scheduler = Scheduler(timezone=config.site.tz)
    scheduler.add_job(build, IntervalTrigger(seconds=int(parse_duration(config.feeds.rebuild_every).total_seconds()),
                                             timezone=config.site.tz),
                      id=BUILD_JOB, name="build feeds", replace_existing=True, coalesce=True,
                      max_instances=1, next_run_time=start)
    scheduler.add_job(digest, digest_trigger(config), id=DIGEST_JOB, name="send digest",
                      replace_existing=True, coalesce=True, max_instances=1, misfire_grace_time=grace,
                      next_run_time=start)
    if read_bounces is not None and (config.bounces.mailbox or config.bounces.imap_url):
        scheduler.add_job(read_bounces, IntervalTrigger(
                              seconds=int(parse_duration(config.bounces.poll_every).total_seconds()),
                              timezone=config.site.tz),
                          id=BOUNCES_JOB, name="read bounces", replace_existing=True, coalesce=True,
                          max_instances=1, next_run_time=start)
    _add_waking_job(scheduler, digest, start, CADENCE_LOOK_EVERY, CADENCE_JOB, CADENCE_NAME)
    if config.digest.send_in_daemon:
        _add_waking_job(scheduler, retry, start, min(RETRY_LOOK_EVERY, parse_duration(config.smtp.retry_base)),
                        RETRY_JOB, RETRY_NAME)
    return scheduler


def _add_waking_job(scheduler: BackgroundScheduler, work: Callable[[], datetime | None], start: datetime,
                    look_every: timedelta, job_id: str, name: str) -> None:
    """A one-off job that adds itself again after each run, for the time `work` returned (at the latest
    `look_every` later): it wakes when something falls due, and never overlaps itself however long a run
    takes."""
    def run() -> None:
        wake = None
        try:
            wake = work()
        finally:
            now = datetime.now(UTC)
            # A retry time already past means others hold those rows under a lease: look again later.
            at = min(wake, now + look_every) if wake is not None and wake > now else now + look_every
            # Shutting down (it waits for this run under the job store's lock): no next run to add.
            if scheduler.state != STATE_STOPPED:
                scheduler.add_job(run, DateTrigger(at), **options)

    # However late the scheduler gets to it, the job runs: a one-off job that missed its time is dropped.
    options = {"id": job_id, "name": name, "replace_existing": True, "misfire_grace_time": None}
    scheduler.add_job(run, DateTrigger(start), **options)


def wake_now(scheduler: BackgroundScheduler, job_id: str) -> None:
    """Run a waking job now instead of at its time (a running one, not in the store meanwhile, finds what
    woke it at its end or its next look)."""
    try:
        scheduler.modify_job(job_id, next_run_time=datetime.now(UTC))
    except JobLookupError:
        pass


def describe_jobs(scheduler: BackgroundScheduler, config: Config, t: Strings) -> list[str]:
    """One line per job with its next run after the start-up run, in the site's time zone, in the words of `t`
    (the command line's strings)."""
    lines = []
    for job in scheduler.get_jobs():
        name = t.text(f"job_{job.id}")
        if job.id == RETRY_JOB:
            lines.append(t.text("job_on_retries", job=name))
            continue
        if job.id == CADENCE_JOB:
            lines.append(t.text("job_on_cadences", job=name))
            continue
        upcoming = job.trigger.get_next_fire_time(None, datetime.now(config.site.tz))
        when = upcoming.astimezone(config.site.tz).strftime("%Y-%m-%d %H:%M %Z") if upcoming else t.text("job_never")
        lines.append(t.text("job_next", job=name, when=when))
    return lines
