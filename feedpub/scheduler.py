"""When the daemon builds feeds and sends digests (APScheduler 3.x, jobs defined in code).

The scheduler only decides *when*; whether a digest is due, and whether it already went out, is
decided from the store by the digest job itself, so a restart, a second daemon or a cron
`digest send` beside the daemon never sends an issue twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from feedpub.config import Config, parse_duration

log = logging.getLogger(__name__)

BUILD_JOB = "build-feeds"
DIGEST_JOB = "send-digest"


def digest_trigger(config: Config) -> OrTrigger:
    """One cron trigger per `digest.schedule` entry, in the site's zone."""
    return OrTrigger([CronTrigger(day_of_week=entry.day_names, hour=entry.at.hour, minute=entry.at.minute,
                                  timezone=config.site.tz) for entry in config.digest.schedule])


def make_scheduler(config: Config, *, build: Callable[[], object], digest: Callable[[], object],
                   now: datetime | None = None) -> BackgroundScheduler:
    """A scheduler with the build job (every `feeds.rebuild_every`, and at start) and the digest job
    (on `digest.schedule`, and at start so a slot missed while the daemon was down is caught up
    within `digest.misfire_grace`)."""
    start = now or datetime.now(config.site.tz)
    grace = int(parse_duration(config.digest.misfire_grace).total_seconds())
    scheduler = BackgroundScheduler(timezone=config.site.tz)
    scheduler.add_job(build, IntervalTrigger(seconds=int(parse_duration(config.feeds.rebuild_every).total_seconds()),
                                             timezone=config.site.tz),
                      id=BUILD_JOB, name="build feeds", replace_existing=True, coalesce=True,
                      max_instances=1, next_run_time=start)
    scheduler.add_job(digest, digest_trigger(config), id=DIGEST_JOB, name="send digest",
                      replace_existing=True, coalesce=True, max_instances=1, misfire_grace_time=grace,
                      next_run_time=start)
    return scheduler


def describe_jobs(scheduler: BackgroundScheduler, config: Config) -> list[str]:
    """One line per job with its next run after the start-up run, in the site's time zone."""
    lines = []
    for job in scheduler.get_jobs():
        upcoming = job.trigger.get_next_fire_time(None, datetime.now(config.site.tz))
        when = upcoming.astimezone(config.site.tz).strftime("%Y-%m-%d %H:%M %Z") if upcoming else "never"
        lines.append(f"job '{job.name}': runs now, then next at {when}")
    return lines
