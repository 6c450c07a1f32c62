"""Exactly once, whatever readers change: random sequences of posts (some backdated, some in bulk), edits,
changes of cadence, topics and time zone, and clock steps across the DST changes of Los Angeles and Berlin,
driven through the real dispatch (`digest send`'s `send_due`) on a real SQLite store and aiosmtpd. Every
post a reader asked for throughout arrives once; no post ever arrives twice."""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import time_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedpub.records import SubscriberInput
from feedpub.send.reader_mail import send_due
from feedpub.store import open_store
from tests.conftest import Site
from tests.smtp_server import SMTPTestServer

TOKYO = ZoneInfo("Asia/Tokyo")
START = datetime(2026, 3, 5, 12, 0, tzinfo=TOKYO)      # the week Los Angeles springs forward; Berlin weeks later
READERS = ["a@example.jp", "b@example.com", "c@example.de"]
CATEGORIES = ["news", "tech"]
ZONES = ["", "Asia/Tokyo", "America/Los_Angeles", "Europe/Berlin"]
TOPICS = [(), ("categories/news",), ("categories/tech",), ("categories/news", "categories/tech")]
CADENCES = ["post", "daily", "weekly", "monthly"]
URL = re.compile(r"https://blog\.example\.com/\S+?\.html")

steps = st.lists(st.one_of(
    st.tuples(st.just("publish"), st.sampled_from(CATEGORIES), st.sampled_from([0, 0, 0, 40])),
    st.tuples(st.just("burst"), st.sampled_from(CATEGORIES), st.integers(4, 5)),
    st.tuples(st.just("edit"), st.integers(0, 20)),
    st.tuples(st.just("change"), st.integers(0, 2), st.sampled_from(CADENCES), st.sampled_from(range(len(TOPICS))),
              st.sampled_from(ZONES)),
    st.tuples(st.just("advance"), st.sampled_from([0.1, 0.2, 1, 5, 13, 26, 49])),
), min_size=5, max_size=30)
starts = st.lists(st.tuples(st.sampled_from(CADENCES), st.sampled_from(range(len(TOPICS))), st.sampled_from(ZONES)),
                  min_size=3, max_size=3)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(first=starts, script=steps)
def test_every_post_a_reader_asked_for_arrives_once(smtp_server: SMTPTestServer, monkeypatch, first, script) -> None:
    monkeypatch.setenv("FEEDPUB_SECRET", "s")
    smtp_server.received.clear()
    with tempfile.TemporaryDirectory() as folder:
        site = Site(Path(folder))
        site.configure(f"""
[digest]
cadences = ["post", "daily", "weekly", "monthly"]
schedule = "mon 09:00"
daily_at = "02:30"
monthly_on = "9 01:30"
post_delay = "10m"
post_burst = 3
welcome_posts = 0
[smtp]
host = "127.0.0.1"
port = {smtp_server.port}
security = "none"
""")
        config = site.config
        store = open_store(config.store_url)
        clock = time_machine.travel(START - timedelta(hours=1), tick=False)   # the store's times follow
        traveller = clock.start()
        try:
            store.save_subscribers([SubscriberInput(email, "", TOPICS[topics], cadence, zone)
                                    for email, (cadence, topics, zone) in zip(READERS, first, strict=True)],
                                   status="active")
            held = {email: [TOPICS[topics]] for email, (_, topics, _) in zip(READERS, first, strict=True)}
            now, published = START, {}
            traveller.move_to(now)
            send_due(config, store, now)        # the first look: the site is empty
            for step in script:
                now = _play(site, store, step, now, published, held)
                traveller.move_to(now)
                send_due(config, store, now)
            for _day in range(40):              # long enough for every cadence's next mail
                now += timedelta(hours=23)
                traveller.move_to(now)
                send_due(config, store, now)
        finally:
            clock.stop()
            store.engine.dispose()
    got = {email: Counter() for email in READERS}
    for received in smtp_server.received:
        text = received.message().get_body(("plain",)).get_content()
        for rcpt in received.rcpt_tos:
            got[rcpt].update(set(URL.findall(text)))
    for email in READERS:
        twice = [url for url, n in got[email].items() if n > 1]
        assert not twice, f"{email} got {twice} more than once"
        wanted = {url for url, category in published.items()
                  if all(not topics or f"categories/{category}" in topics for topics in held[email])}
        missing = wanted - set(got[email])
        assert not missing, f"{email} ({held[email]}) never got {sorted(missing)}"


def _play(site: Site, store, step: tuple, now: datetime, published: dict[str, str],
          held: dict[str, list[tuple[str, ...]]]) -> datetime:
    kind = step[0]
    if kind in ("publish", "burst"):
        count, backdated = (1, step[2]) if kind == "publish" else (step[2], 0)
        for _ in range(count):
            number = len(published)
            date = now - timedelta(hours=backdated, minutes=1)
            site.post(f"{date:%Y-%m-%d}-p{number}.md", f"---\ntitle: 記事{number}\ndate: {date:%Y-%m-%d %H:%M:%S %z}\n"
                      f"categories: [{step[1]}]\n---\n本文{number}。\n")
            published[f"https://blog.example.com/{step[1]}/{date:%Y/%m/%d}/p{number}.html"] = step[1]
    elif kind == "edit" and published:
        path = sorted(site.posts.iterdir())[step[1] % len(published)]
        path.write_text(path.read_text(encoding="utf-8").replace("本文", "直した本文"), encoding="utf-8")
    elif kind == "change":
        email = READERS[step[1]]
        store.save_subscribers([SubscriberInput(email, None, TOPICS[step[3]], step[2], step[4])], status=None)
        held[email].append(TOPICS[step[3]])
    elif kind == "advance":
        now += timedelta(hours=step[1])
    return now
