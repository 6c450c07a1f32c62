"""The bytes of the digest's public archive, in the published folder beside the feeds:

    digests/<period>/index.html   each composed issue, linking to the list and to its older and newer issue
    digests/index.html            every issue, newest first: title, date, posts
    digests/feed.xml              an Atom 1.0 feed of the issues, for readers who want the digest in their reader

The store keeps what each issue showed of its posts (`record`), so every page is rendered again from the
store, with the same posts, whenever its inputs change; which files those are, and writing them, is
`feedpub.send.archive_sync`'s job.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from feedgen.feed import FeedGenerator
from markupsafe import Markup

from feedpub.config import Config
from feedpub.records import ArchivedIssue
from feedpub.send.archive_paths import FEED, INDEX, page_path
from feedpub.send.issue import (
    ArchiveLinks,
    Entry,
    archive_url,
    environment,
    public_page,
    public_subjects,
    render_file,
    strings_for,
)
from feedpub.send.pictures import Picture
from feedpub.site.source import INVALID_XML

INDEX_TEMPLATE = "digests_index.html.j2"
ENTRY_TEMPLATE = "digests_entry.html.j2"


@dataclass(frozen=True)
class Shown:
    """An archived issue, its subject as the public copy shows it, and its page's URL."""

    period: str
    slot: datetime
    entries: tuple[Entry, ...]
    subject: str
    url: str


def record(entry: Entry) -> dict[str, Any]:
    """What the store keeps of one post of an issue (JSON)."""
    data = asdict(entry)
    data["date"] = entry.date.isoformat()
    data["categories"] = list(entry.categories)
    return data


def documents(config: Config, archived: Sequence[ArchivedIssue], wanted: Collection[str]) -> dict[str, bytes]:
    """The bytes of each archive file in `wanted` (paths relative to the output folder, `archive_sync.layout`)."""
    shown = _shown(config, archived)
    made = {}
    for i, issue in enumerate(shown):
        path = page_path(issue.period)
        if path in wanted:
            links = ArchiveLinks(index="../", feed="../feed.xml",
                                 previous=f"../{shown[i - 1].period}/" if i else "",
                                 next=f"../{shown[i + 1].period}/" if i + 1 < len(shown) else "")
            made[path] = public_page(config, issue.period, issue.slot, issue.entries, links).html.encode("utf-8")
    if shown and INDEX in wanted:
        made[INDEX] = index_bytes(config, shown)
    if shown and FEED in wanted:
        made[FEED] = feed_bytes(config, shown)
    return made


def index_bytes(config: Config, shown: Sequence[Shown]) -> bytes:
    """digests/index.html: every issue, newest first, with its date and posts."""
    strings = strings_for(config)
    env = environment(config)
    issues = [{"title": issue.subject, "url": f"{issue.period}/",
               "date": strings.date(issue.slot.astimezone(config.site.tz).date()),
               "date_iso": issue.slot.astimezone(config.site.tz).isoformat(),
               "count": strings.text("posts_count", count=len(issue.entries)),
               "posts": issue.entries} for issue in reversed(shown)]
    context = {"site": config.site, "lang": strings.language, "issues": issues, "feed_url": "feed.xml",
               "subscribe_url": config.web.public_url.rstrip("/") + "/subscribe",
               "t": strings.all(title=config.site.title, url=config.site.root_url, count=len(issues))}
    return render_file(env, INDEX_TEMPLATE, context).encode("utf-8")


def feed_bytes(config: Config, shown: Sequence[Shown]) -> bytes:
    """digests/feed.xml: the newest `feeds.limit` issues as Atom 1.0, each entry holding the issue's posts.
    Dated by the issues' slots, so the bytes change only when an issue is added."""
    strings = strings_for(config)
    env = environment(config)
    index = archive_url(config)
    newest = list(reversed(shown))[: config.feeds.limit]
    feed = FeedGenerator()
    feed.id(index)
    feed.title(_xml(strings.text("archive_title", title=config.site.title)))
    feed.author({"name": _xml(config.site.author or config.site.title)})
    feed.link(href=index + "feed.xml", rel="self", type="application/atom+xml")
    feed.link(href=index, rel="alternate", type="text/html")
    feed.language(strings.language)
    feed.updated(newest[0].slot)
    for issue in newest:
        entry = feed.add_entry(order="append")
        entry.id(issue.url)
        entry.title(_xml(issue.subject))
        entry.link(href=issue.url)   # feedgen 1.0 drops an entry link's attributes (#135): rel is alternate
        entry.published(issue.slot)
        entry.updated(issue.slot)
        posts = [{"title": e.title, "url": e.url, "excerpt_html": Markup(e.excerpt_html), "image": e.picture,
                  "date": strings.date(e.date.astimezone(config.site.tz).date())} for e in issue.entries]
        entry.content(_xml(render_file(env, ENTRY_TEMPLATE, {"posts": posts, "t": strings.all()})), type="html")
    return feed.atom_str(pretty=True)


def _shown(config: Config, archived: Sequence[ArchivedIssue]) -> list[Shown]:
    # The store gives UTC; pages and the feed show the site's time.
    issues = [(issue.period, issue.slot.astimezone(config.site.tz), tuple(_entry(data) for data in issue.entries))
              for issue in archived]
    return [Shown(period, slot, entries, subject, archive_url(config, period))
            for (period, slot, entries), subject in zip(issues, public_subjects(config, issues), strict=True)]


def _entry(data: Mapping[str, Any]) -> Entry:
    picture = data.get("picture")
    return Entry(**{**data, "date": datetime.fromisoformat(data["date"]), "categories": tuple(data["categories"]),
                    "picture": Picture(**picture) if picture else None})


def _xml(text: str) -> str:
    return INVALID_XML.sub("", text)
