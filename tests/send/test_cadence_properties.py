"""Exactly once, whatever readers do: random sequences of posts (some backdated, some in bulk), edits, changes of
cadence, topics and time zone, new readers confirming (with their welcome), readers unsubscribing and coming
back, and clock steps across the DST changes of Los Angeles and Berlin, driven through the real dispatch on a
real SQLite store and aiosmtpd, as `digest send` runs it (cron) or as the daemon does (one reading of the
posts kept between runs, mail queued, then sent by the retry job as `feedpub worker` sends it).

What a reader wanted: each post of their topics published while they were subscribed (to the end of the run),
and whatever their welcome carried. Each reaches them exactly once across welcome, post mails and digests of
every cadence; nothing reaches them while unsubscribed; a welcome carries the newest posts of their topics they
did not get yet, as many as `digest.welcome_posts` allows.

The dispatch looks at the site right after each step; after the last, it runs at each stream's next slot until
nothing more goes out. One site folder, store and SMTP server serve every example (emptied in between): an
example costs its dispatches, not a new world. The plain tests after it are a clash and losses it found, kept
as regressions. No reader confirms here before the dispatch saw a new post (the last)."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from feedpub.config import Config, parse_duration
from feedpub.records import StoredVariant, SubscriberInput
from feedpub.schema import metadata
from feedpub.send import cadences
from feedpub.send.dispatch import Reading, send_due_retries
from feedpub.send.reader_mail import queue_welcome, send_due, streams_in_use
from feedpub.store import READER_UNSUBSCRIBED, LedgerClash, Store, open_store
from tests.conftest import Site
from tests.smtp_server import Received, SMTPTestServer

TOKYO = ZoneInfo("Asia/Tokyo")
START = datetime(2026, 3, 5, 12, 0, tzinfo=TOKYO)      # the week Los Angeles springs forward (02:30 is skipped)
AUTUMN = datetime(2026, 10, 22, 12, 0, tzinfo=TOKYO)    # Berlin falls back on the 25th (02:30 twice), Los Angeles
                                                        # on 1 November
READERS = ["a@example.jp", "b@example.com", "c@example.de", "d@example.jp", "e@example.com"]
FIRST = 3                # a, b and c were imported by the operator before the first post; d and e come later
CATEGORIES = ["news", "tech"]
ZONES = ["", "Asia/Tokyo", "America/Los_Angeles", "Europe/Berlin"]
TOPICS = [(), ("categories/news",), ("categories/tech",), ("categories/news", "categories/tech")]
CADENCES = ["post", "daily", "weekly", "monthly"]
URL = re.compile(r"https://blog\.example\.com/\S+?\.html")
WELCOME = "Welcome to Test blog"
BEFORE_ANY_STEP = -1

reader_index = st.integers(0, len(READERS) - 1)
choice = (st.sampled_from(CADENCES), st.sampled_from(range(len(TOPICS))), st.sampled_from(ZONES))
steps = st.lists(st.one_of(
    st.tuples(st.just("publish"), st.sampled_from(CATEGORIES), st.sampled_from([0, 0, 0, 40])),
    st.tuples(st.just("burst"), st.sampled_from(CATEGORIES), st.integers(4, 5)),
    st.tuples(st.just("edit"), st.integers(0, 20)),
    st.tuples(st.just("change"), reader_index, *choice),
    st.tuples(st.just("subscribe"), reader_index, *choice),
    st.tuples(st.just("unsubscribe"), reader_index),
    st.tuples(st.just("away"), reader_index, st.sampled_from([0.1, 26])),    # unsubscribes, comes back
    st.tuples(st.just("advance"), st.sampled_from([0.1, 0.2, 1, 5, 13, 26, 49])),
), min_size=5, max_size=30)
starts = st.lists(st.tuples(*choice), min_size=FIRST, max_size=FIRST)


@dataclass
class World:
    site: Site
    store: Store


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    site = Site(tmp_path_factory.mktemp("cadences"))
    store = open_store(site.config.store_url)
    yield World(site, store)
    store.engine.dispose()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(start=st.sampled_from([START, AUTUMN]), first=starts, script=steps, welcome_posts=st.integers(0, 3),
       daemon=st.booleans())
@example(   # Los Angeles springs forward (its 02:30 daily slot is in the gap) while readers switch cadence
    start=START,
    first=[("daily", 0, "America/Los_Angeles"), ("weekly", 1, "Europe/Berlin"), ("post", 0, "")],
    script=[("publish", "news", 0), ("advance", 49), ("publish", "tech", 0), ("change", 1, "post", 0, ""),
            ("advance", 13), ("publish", "news", 0), ("advance", 0.2),
            ("change", 0, "weekly", 3, "America/Los_Angeles"),
            ("advance", 13), ("publish", "tech", 0), ("change", 2, "daily", 2, "America/Los_Angeles"),
            ("advance", 26), ("publish", "news", 40), ("advance", 1)],
    welcome_posts=0, daemon=False)
@example(   # a new reader's welcome; they leave and come back twice: each welcome brings only what they did not get
    start=AUTUMN,
    first=[("weekly", 0, ""), ("post", 1, "Asia/Tokyo"), ("monthly", 2, "Europe/Berlin")],
    script=[("publish", "news", 0), ("publish", "tech", 0), ("publish", "news", 0), ("advance", 1),
            ("subscribe", 3, "post", 0, ""), ("publish", "tech", 0), ("advance", 1), ("edit", 3), ("advance", 1),
            ("unsubscribe", 3), ("advance", 5), ("subscribe", 3, "daily", 1, "America/Los_Angeles"),
            ("unsubscribe", 3), ("publish", "tech", 0), ("advance", 26), ("subscribe", 3, "weekly", 2, ""),
            ("subscribe", 4, "post", 3, "Europe/Berlin"), ("burst", "news", 4), ("advance", 49)],
    welcome_posts=2, daemon=True)
def test_every_post_a_reader_asked_for_arrives_once(world: World, smtp_server: SMTPTestServer, monkeypatch,
                                                    start, first, script, welcome_posts, daemon) -> None:
    monkeypatch.setenv("FEEDPUB_SECRET", "s")
    config = _emptied(world, smtp_server, welcome_posts)
    with time_machine.travel(start - timedelta(hours=1), tick=False) as traveller:   # the store's times follow
        run = Run(config, world, smtp_server, traveller, daemon, start)
        run.start([SubscriberInput(email, "", TOPICS[topics], cadence, zone)
                   for email, (cadence, topics, zone) in zip(READERS[:FIRST], first, strict=True)])
        for step in script:
            run.play(step)
        run.drain()
    run.check_every_wanted_post_arrived_once()


def test_switching_mid_week_to_a_stream_nobody_reads_brings_the_waiting_posts(
        world: World, smtp_server: SMTPTestServer, monkeypatch) -> None:
    """A weekly reader gets Monday's digest; a post appears a minute later; on Wednesday they switch to daily in
    Berlin, where no one else reads: the post waiting since Monday should come in Thursday's daily digest."""
    monkeypatch.setenv("FEEDPUB_SECRET", "s")
    config = _emptied(world, smtp_server, 0)
    with time_machine.travel(START, tick=False) as traveller:
        run = Run(config, world, smtp_server, traveller, daemon=False, start=START)
        run.start([SubscriberInput(READERS[0], "", (), "weekly", "")])
        for step in [("publish", "news", 0), ("advance", 93 + 1 / 60),    # Monday 09:01: the weekly digest
                     ("publish", "news", 0), ("advance", 48), ("change", 0, "daily", 0, "Europe/Berlin")]:
            run.play(step)
        run.drain()
    (waiting,) = [url for url, post in run.published.items() if post.step == 2]
    assert run.readers[READERS[0]].got == Counter({url: 1 for url in run.published}), f"{waiting} never came"


def test_a_mail_carrying_a_post_its_reader_got_meanwhile_is_a_ledger_clash(any_store: Store) -> None:
    """What two mails composed at once come to: the second one stored carries a post the first gave its reader."""
    ((reader, _),) = any_store.save_subscribers([SubscriberInput(READERS[0], "", (), "post", "")], status="active")
    url, moment = "https://blog.example.com/news/2026/03/05/p0.html", START.astimezone(UTC)
    for period, kind in (("first-post-mail", "post"), (f"welcome-{reader.id}", "welcome")):
        mail = {"slot": moment, "starts": moment, "ends": moment, "kind": kind, "recipients": {reader.id: ""},
                "variants": [StoredVariant("", "記事0", "<p>本文0</p>", "本文0")], "carried": [url],
                "variant_posts": {"": [url]}, "dated": {url: moment}}
        if kind == "post":
            any_store.create_issue(period=period, **mail)
        else:
            with pytest.raises(LedgerClash):
                any_store.create_issue(period=period, **mail)


def test_a_welcome_before_the_dispatch_saw_a_post_takes_it_from_no_one(world: World, smtp_server: SMTPTestServer,
                                                                         monkeypatch) -> None:
    """Reader a confirms (welcomed with p0); a post dated a minute earlier reaches the site an hour later (written
    at 12:00, deployed at 13:00), and reader b confirms before the dispatch looks: b's welcome carries it, a's
    weekly digest does not."""
    monkeypatch.setenv("FEEDPUB_SECRET", "s")
    config = _emptied(world, smtp_server, 1)
    with time_machine.travel(START, tick=False) as traveller:
        run = Run(config, world, smtp_server, traveller, daemon=False, start=START)
        run.start([])
        run.play(("publish", "news", 0))
        run.play(("subscribe", 0, "weekly", 0, ""))
        run.step += 1
        run.move(START + timedelta(hours=1))
        run.publish("news", 1, backdated=59 / 60)           # dated START: after p0, before a confirmed
        run.play(("subscribe", 1, "weekly", 0, ""))
        run.drain()
    run.check_every_wanted_post_arrived_once()


def _emptied(world: World, smtp_server: SMTPTestServer, welcome_posts: int) -> Config:
    """The shared site and store as new, configured for this example."""
    for path in world.site.posts.iterdir():
        path.unlink()
    with world.store.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            if table.name != "schema_version":
                conn.execute(table.delete())
    smtp_server.received.clear()
    world.site.configure(f"""
[digest]
cadences = ["post", "daily", "weekly", "monthly"]
schedule = "mon 09:00"
daily_at = "02:30"
monthly_on = "9 01:30"
post_delay = "10m"
post_burst = 3
welcome_posts = {welcome_posts}
[smtp]
host = "127.0.0.1"
port = {smtp_server.port}
security = "none"
rate_per_second = 10000
connections = 1
""")
    return world.site.config


@dataclass(frozen=True)
class Published:
    category: str
    date: datetime
    step: int


@dataclass
class Reader:
    """What the test knows of a reader: since which step they are subscribed (None: not), every choice of topics
    they made (step, topics), and how often each post reached them."""

    email: str
    known: bool = False
    active_from: int | None = None
    topics: list[tuple[int, tuple[str, ...]]] = field(default_factory=list)
    got: Counter[str] = field(default_factory=Counter)

    def current_topics(self) -> tuple[str, ...]:
        return self.topics[-1][1]

    def asked_for(self, post: Published) -> bool:
        """Subscribed before it was published and still, with topics that took it from then on."""
        if self.active_from is None or self.active_from >= post.step:
            return False
        held = [topics for step, topics in self.topics if step > post.step]
        held.append(next(topics for step, topics in reversed(self.topics) if step < post.step))
        return all(_takes(topics, post.category) for topics in held)


def _takes(topics: tuple[str, ...], category: str) -> bool:
    return not topics or f"categories/{category}" in topics


class Run:
    """One example: the steps played on the site, the store and the clock, each followed by a dispatch, and what
    the SMTP server received checked as it arrives."""

    def __init__(self, config: Config, world: World, smtp_server: SMTPTestServer, traveller, daemon: bool,
                 start: datetime) -> None:
        self.config, self.site, self.store, self.smtp = config, world.site, world.store, smtp_server
        self.traveller, self.daemon = traveller, daemon
        self.reading = Reading()            # the daemon's, kept between its runs
        self.start_at, self.now = start, start - timedelta(hours=1)
        self.step = BEFORE_ANY_STEP
        self.readers = {email: Reader(email) for email in READERS}
        self.published: dict[str, Published] = {}
        self.seen = 0                       # mails received and checked so far

    def start(self, first: list[SubscriberInput]) -> None:
        self.store.save_subscribers(first, status="active")
        for entry in first:
            reader = self.readers[entry.email]
            reader.known, reader.active_from = True, BEFORE_ANY_STEP
            reader.topics.append((BEFORE_ANY_STEP, tuple(entry.topics or ())))
        self.move(self.start_at)
        self.dispatch()                     # the first look: the site is empty

    def drain(self) -> None:
        """After the last step, a dispatch at every stream's next slot and when the waiting posts' mails fall due,
        round after round until one sends nothing: no slot of a stream passes undispatched, and once a round
        finds nothing for anyone, no later slot will (no post appears any more)."""
        delay = parse_duration(self.config.digest.post_delay)
        for _round in range(12):
            before = self.seen
            waiting = self.store.next_waiting_post()
            moments = {cadences.next_slot(self.config, kind, cadences.zone_of(self.config, zone), self.now)
                       for kind, zone in streams_in_use(self.config, self.store)}
            for moment in sorted(moments | ({waiting + delay} if waiting else set())):
                self.move(max(moment, self.now))
                self.dispatch()
            if self.seen == before:
                return

    def move(self, moment: datetime) -> None:
        self.now = moment
        self.traveller.move_to(moment)

    def advance(self, hours: float) -> None:
        self.move(self.now + timedelta(hours=hours))
        self.dispatch()

    def dispatch(self) -> list[Received]:
        """What `digest send` does (cron), or the daemon's cadence job then its retry job (a worker's pass)."""
        if self.daemon:
            send_due(self.config, self.store, self.now, send=False, reading=self.reading)
            send_due_retries(self.config, self.store, self.now, stop=threading.Event())
        else:
            send_due(self.config, self.store, self.now)
        arrived = self.smtp.received[self.seen:]
        self.seen = len(self.smtp.received)
        for received in arrived:
            urls = set(URL.findall(received.message().get_body(("plain",)).get_content()))
            for rcpt in received.rcpt_tos:
                reader = self.readers[rcpt]
                assert reader.active_from is not None, f"{rcpt} was mailed {sorted(urls)} while not subscribed"
                reader.got.update(urls)
        return arrived

    def play(self, step: tuple) -> None:
        self.step += 1
        kind = step[0]
        if kind == "advance":
            self.advance(step[1])
            return
        self.move(self.now + timedelta(seconds=1))     # no two things a reader or the author does at one instant
        if kind in ("publish", "burst"):
            self.publish(step[1], *((1, step[2]) if kind == "publish" else (step[2], 0)))
        elif kind == "edit" and self.published:
            path = sorted(self.site.posts.iterdir())[step[1] % len(self.published)]
            path.write_text(path.read_text(encoding="utf-8").replace("本文", "直した本文"), encoding="utf-8")
        elif kind == "change" and self.readers[READERS[step[1]]].known:
            reader = self.readers[READERS[step[1]]]
            self.store.save_subscribers([SubscriberInput(reader.email, None, TOPICS[step[3]], step[2], step[4])],
                                        status=None)
            reader.topics.append((self.step, TOPICS[step[3]]))
        elif kind == "unsubscribe" and self.readers[READERS[step[1]]].active_from is not None:
            self.unsubscribe(self.readers[READERS[step[1]]])
        elif kind == "away" and self.readers[READERS[step[1]]].active_from is not None:
            reader = self.readers[READERS[step[1]]]
            self.unsubscribe(reader)
            self.advance(step[2])
            self.subscribe(reader, SubscriberInput(reader.email, "", (), "weekly", ""))    # their own choices stay
            return
        elif kind == "subscribe" and self.readers[READERS[step[1]]].active_from is None:
            self.subscribe(self.readers[READERS[step[1]]], SubscriberInput(READERS[step[1]], "", TOPICS[step[3]],
                                                                           step[2], step[4]))
            return
        self.dispatch()

    def publish(self, category: str, count: int, backdated: float) -> None:
        for _ in range(count):
            number = len(self.published)
            date = self.now - timedelta(hours=backdated, minutes=1)
            self.site.post(f"{date:%Y-%m-%d}-p{number}.md", f"---\ntitle: 記事{number}\n"
                           f"date: {date:%Y-%m-%d %H:%M:%S %z}\ncategories: [{category}]\n---\n本文{number}。\n")
            url = f"https://blog.example.com/{category}/{date:%Y/%m/%d}/p{number}.html"
            self.published[url] = Published(category, date, self.step)

    def unsubscribe(self, reader: Reader) -> None:
        """The unsubscribe page's button (or a mail's one-click link)."""
        self.store.unsubscribe(reader.email, READER_UNSUBSCRIBED, cause="unsubscribe")
        reader.active_from = None

    def subscribe(self, reader: Reader, entry: SubscriberInput) -> None:
        """The subscribe form (`invite`: a new or returning address gets a confirmation link; a returning
        reader's choices stay theirs), then a minute later the confirmation page (`confirm`: the store confirms,
        and unless an operator's suppression stays, the daemon queues the welcome)."""
        issued = self.now.astimezone(UTC).replace(microsecond=0)
        signed_up = self.store.sign_up(entry, issued)
        if not reader.known:
            reader.known = True
            reader.topics.append((self.step, tuple(entry.topics or ())))
        self.move(self.now + timedelta(minutes=1))
        confirmed = self.store.confirm(signed_up.id, issued)
        assert confirmed is not None
        reader.active_from = self.step
        theirs = [(published.date, url) for url, published in self.published.items()
                  if url not in reader.got and _takes(reader.current_topics(), published.category)]
        if self.store.suppression(confirmed.email) is None:
            queue_welcome(self.config, self.store, confirmed, self.now)
        welcomes = [received for received in self.dispatch() if received.message()["Subject"] == WELCOME]
        self.check_welcome(reader, theirs, welcomes)

    def check_welcome(self, reader: Reader, theirs: list[tuple[datetime, str]], welcomes: list[Received]) -> None:
        """The newest posts of their topics they did not get yet, `digest.welcome_posts` at most, in one mail
        (none when there is no such post or the welcome is off)."""
        expected = min(self.config.digest.welcome_posts, len(theirs))
        if not expected:
            assert not welcomes, f"{reader.email} was welcomed though no post or no welcome was due"
            return
        assert [w.rcpt_tos for w in welcomes] == [(reader.email,)], f"{reader.email} was not welcomed once"
        carried = set(URL.findall(welcomes[0].message().get_body(("plain",)).get_content()))
        offered = {url: date for date, url in theirs}
        assert len(carried) == expected and carried <= set(offered), (
            f"{reader.email}'s welcome carried {sorted(carried)}, expected {expected} of {sorted(offered)}")
        left = [date for url, date in offered.items() if url not in carried]
        assert all(date <= min(offered[url] for url in carried) for date in left), (
            f"{reader.email}'s welcome left out a newer post than it carried")

    def check_every_wanted_post_arrived_once(self) -> None:
        for reader in self.readers.values():
            twice = [url for url, n in reader.got.items() if n > 1]
            assert not twice, f"{reader.email} got {twice} more than once"
            wanted = {url for url, post in self.published.items() if reader.asked_for(post)}
            missing = wanted - set(reader.got)
            assert not missing, f"{reader.email} ({reader.topics}) never got {sorted(missing)}"
