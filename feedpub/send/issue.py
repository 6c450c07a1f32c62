"""The digest issue: which schedule slot is due, which posts it covers, and its HTML and text bodies.

Pure functions over Config and RenderedPost; the CLI does the I/O (store, SMTP). Bodies are rendered
once per topic set (a `Variant`) and are the same for every recipient: the per-recipient links are
the marker tokens below, which `feedpub.send.messages` replaces per message.
"""

from __future__ import annotations

import functools
import re
import traceback
from collections.abc import Collection, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import css_inline
import jinja2
from markupsafe import Markup

from feedpub import templates, urls
from feedpub.config import Config
from feedpub.errors import ConfigError, Problem
from feedpub.send.archive_paths import FOLDER
from feedpub.send.cadences import post_topics, topic_label, wanted
from feedpub.send.pictures import Picture, picture
from feedpub.site import posts as site_posts
from feedpub.site.markup import RenderedPost, cut_excerpt, render_posts
from feedpub.strings import Strings, load_strings

# Lower-case ASCII letters, digits and hyphens only: they survive css-inline, HTML attribute quoting and
# quoted-printable encoding unchanged, so `feedpub.send.messages` finds them in the encoded bodies.
UNSUBSCRIBE_MARKER = "feedpub-unsubscribe-url-5d0c9a1e"
PREFERENCES_MARKER = "feedpub-preferences-url-5d0c9a1e"

HTML_TEMPLATE = "digest.html.j2"
TEXT_TEMPLATE = "digest.txt.j2"
# Anything that could end or break a header line: C0/C1 controls, DEL, Unicode line/paragraph separators.
_HEADER_BREAKERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# What mail clients show of the preheader after the subject, about.
_PREHEADER_CHARS = 110


class DigestTemplateError(ConfigError):
    """An operator's (or the shipped) digest template cannot be loaded or rendered."""


@dataclass(frozen=True)
class Issue:
    period: str                      # the schedule slot in site.timezone, "%Y-%m-%d-%H%M"
    slot: datetime                   # that slot, aware
    starts: datetime                 # covered range: exclusive start, inclusive end; aware
    ends: datetime
    posts: tuple[RenderedPost, ...]  # newest first, at most digest.max_posts
    kind: str = "weekly"             # daily, weekly, monthly (digests), post (one post's mail), welcome
    zone: str = ""                   # the time zone of its readers ("": site.timezone)


@dataclass(frozen=True)
class Entry:
    """A post as an issue shows it, in no particular language: what the archive keeps of each issue."""

    title: str                       # one line, also where the subject template uses it
    url: str
    date: datetime                   # aware
    categories: tuple[str, ...]
    author: str
    excerpt_html: str
    excerpt_text: str
    reading_minutes: int
    picture: Picture | None


@dataclass(frozen=True)
class ArchiveLinks:
    """Where an archived issue page leads: the list of issues, its neighbours ("" at either end)."""

    index: str
    feed: str
    previous: str
    next: str


@dataclass(frozen=True)
class Variant:
    """The issue as one group of subscribers receives it (same topics), or its public copy."""

    key: str                         # variant_key(topics): "" for everyone (and the public copy)
    subject: str
    html: str                        # full HTML document, CSS inlined, with the link markers
    text: str                        # text/plain body, with the link markers


def due_slot(config: Config, now: datetime) -> tuple[str, datetime]:
    """The latest `digest.schedule` slot at or before `now`, in site.timezone: (period key, slot)."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    tz = config.site.tz
    today = now.astimezone(tz).date()
    candidates = []
    for entry in config.digest.schedule:
        for back in range(8):
            day = today - timedelta(days=back)
            slot = datetime.combine(day, entry.at, tzinfo=tz)
            if day.weekday() in entry.days and slot <= now:
                candidates.append(slot)
                break
    slot = max(candidates)
    return slot.strftime("%Y-%m-%d-%H%M"), slot


def variant_key(topics: Iterable[str]) -> str:
    """"" for everything; otherwise the sorted, distinct topics (feed folders) joined by tabs."""
    return "\t".join(sorted(set(topics)))


def compose(config: Config, rendered: Sequence[RenderedPost], *, period: str, slot: datetime,
            starts: datetime, ends: datetime, reach: datetime | None = None,
            carried: Collection[str] = ()) -> Issue:
    """The issue covering posts published in (starts, ends], newest first (none: nothing to send); with
    `reach`, also the posts dated in (reach, starts] (late: backdated, or saved after their window's
    issue went out); never a post whose URL is in `carried` (an earlier issue carried it)."""
    covered = sorted((r for r in rendered if covers(r.post.date, r.post.url, starts, ends, reach, carried)),
                     key=lambda r: r.post.date, reverse=True)
    return Issue(period, slot, starts, ends, tuple(covered[: config.digest.max_posts]))


def covers(date: datetime, url: str, starts: datetime, ends: datetime, reach: datetime | None,
           carried: Collection[str]) -> bool:
    """Whether an issue covering (starts, ends], reaching back to `reach` for late posts, takes this post."""
    return (reach if reach is not None and reach < starts else starts) < date <= ends and url not in carried


def covered_posts(config: Config, collection: site_posts.Collection, starts: datetime, ends: datetime, *,
                  reach: datetime | None = None,
                  carried: AbstractSet[str] = frozenset()) -> tuple[list[RenderedPost], list[Problem]]:
    """The posts of `collection` an issue covering (starts, ends] can hold, rendered; with the warnings met.
    Only those are rendered (a large site would otherwise render every post it has); `{% post_url %}` still
    resolves against all of them."""
    covered = sorted((p for p in collection.posts if covers(p.date, p.url, starts, ends, reach, carried)),
                     key=lambda p: p.date, reverse=True)
    return render_posts(config, covered[:config.digest.max_posts], site_posts=collection.posts)


def entries(config: Config, posts: Iterable[RenderedPost]) -> tuple[Entry, ...]:
    """The posts as the issue shows them: excerpt cut, picture chosen and sized."""
    return tuple(_entry(config, rendered) for rendered in posts)


def archive_url(config: Config, period: str = "") -> str:
    """The public copy of an issue (no period: the list of issues), as the web app serves the published
    folder at web.public_url: the one address a digest's readers are sure to reach, as they reach its
    unsubscribe links."""
    return urls.absolute(config.web.public_url, f"/{FOLDER}/{period}/" if period else f"/{FOLDER}/")


def render_variant(config: Config, issue: Issue, key: str) -> Variant | None:
    """Subject, HTML and text for subscribers whose topics are `key`; None if no post matches."""
    chosen = key.split("\t") if key else []
    posts = [r for r in issue.posts if wanted(chosen, post_topics(config, r.post))]
    if not posts:
        return None
    # A post's mail shows it whole; a catch-up of several shows their excerpts, as a digest does.
    full = ({r.post.url: r.html for r in posts}
            if issue.kind == "post" and len(posts) == 1 and config.digest.post_content == "full" else {})
    return _render(config, issue.period, issue.slot, entries(config, posts), key,
                   [topic_label(topic) for topic in chosen], links=None, archive=False, kind=issue.kind,
                   zone=issue.zone, full=full)


def public_copy(config: Config, issue: Issue) -> Variant:
    """The issue as the public archive shows it (previews too): every post, and a footer inviting the
    visitor to subscribe instead of the subscriber's own links. A template without that footer still
    gets links, to the web app's generic unsubscribe and preferences pages, never the link markers."""
    return public_page(config, issue.period, issue.slot, entries(config, issue.posts), None)


def public_page(config: Config, period: str, slot: datetime, shown: Sequence[Entry],
                links: ArchiveLinks | None) -> Variant:
    """The public copy of an issue from what the archive keeps of it, with links to its neighbours."""
    return _render(config, period, slot, shown, "", [], links=links, archive=True)


def public_subjects(config: Config, issues: Sequence[tuple[str, datetime, Sequence[Entry]]]) -> list[str]:
    """The subjects of the public copies of (period, slot, entries): the archive's titles for the issues."""
    strings, env = strings_for(config), environment(config)
    subjects = []
    for period, slot, shown in issues:
        if config.digest.subject:
            context = _context(config, strings, period, slot, shown, [], links=None, archive=True)
            subjects.append(_render_subject(config, env, strings, context))
        else:   # the language's subject needs only the date: no context of every post to build
            subjects.append(_default_subject(config, strings, strings.date(slot.astimezone(config.site.tz).date())))
    return subjects


def header_text(value: str) -> str:
    """One line of header-safe text: control characters and line breaks become single spaces."""
    return " ".join(_HEADER_BREAKERS.sub(" ", value).split())


def _render(config: Config, period: str, slot: datetime, shown: Sequence[Entry], key: str, chosen: list[str], *,
            links: ArchiveLinks | None, archive: bool, kind: str = "weekly", zone: str = "",
            full: Mapping[str, str] | None = None) -> Variant:
    env = environment(config)
    strings = strings_for(config)
    context = _context(config, strings, period, slot, shown, chosen, links=links, archive=archive,
                       tz=ZoneInfo(zone) if zone else None)
    context.update(_kind_context(config, strings, kind, zone, chosen, shown, full or {}))
    catch_up = kind == "post" and len(shown) > 1     # only a switch to each post's mail brings several
    if kind == "welcome" or catch_up:
        context["t"] = {**context["t"], "intro": strings.text("catch_up_intro" if catch_up else "welcome_intro",
                                                              title=config.site.title)}
    if catch_up:
        subject = header_text(strings.text("subject_catch_up", title=config.site.title, count=len(shown)))
    elif kind == "post":
        subject = header_text(strings.text("subject_post", post=shown[0].title, title=config.site.title))
    else:
        subject = _render_subject(config, env, strings, context, kind)
    context["subject"] = subject
    html = _inline_css(render_file(env, HTML_TEMPLATE, context))
    text = render_file(env, TEXT_TEMPLATE, context)
    return Variant(key, subject, html, text)


def _context(config: Config, strings: Strings, period: str, slot: datetime, shown: Sequence[Entry],
             chosen: list[str], *, links: ArchiveLinks | None, archive: bool,
             tz: ZoneInfo | None = None) -> dict[str, Any]:
    """What the templates get; dates in `tz`, the reader's zone (default: the site's)."""
    site = config.site
    tz = tz or site.tz
    base = config.web.public_url.rstrip("/")
    posts = [_post_context(strings, entry, tz) for entry in shown]
    issue_date = slot.astimezone(tz).date()
    date_label = strings.date(issue_date)
    return {
        "site": site,
        "issue": {"date": issue_date, "period": period, "count": len(posts), "posts": posts},
        "posts": posts,
        "chosen_topics": chosen,
        "lang": strings.language,
        "t": strings.all(title=site.title, url=site.root_url, count=len(posts), categories=", ".join(chosen),
                         date=date_label),
        "date_label": date_label,
        "preheader": _preheader(shown),
        "archive": archive,
        "view_url": archive_url(config, period),
        "links": links,
        "subscribe_url": f"{base}/subscribe",
        # A mail carries markers that become each reader's own links; the public copy has no reader.
        "unsubscribe_url": f"{base}/unsubscribe" if archive else UNSUBSCRIBE_MARKER,
        "preferences_url": f"{base}/preferences" if archive else PREFERENCES_MARKER,
    }


def _entry(config: Config, rendered: RenderedPost) -> Entry:
    post = rendered.post
    # An excerpt the author wrote (front matter, excerpt_separator) is shown whole; the automatic one
    # (the first paragraph) is cut to digest.excerpt_chars.
    if not post.excerpt_explicit:
        text = cut_excerpt(rendered.excerpt_text, config.digest.excerpt_chars)
        html = str(Markup("<p>{}</p>").format(text)) if text else ""
    else:
        text, html = rendered.excerpt_text, rendered.excerpt_html
    return Entry(title=header_text(post.title), url=post.url, date=post.date, categories=post.categories,
                 author=post.author, excerpt_html=html, excerpt_text=text, reading_minutes=rendered.reading_time,
                 picture=picture(rendered, config.digest.images))


def _post_context(strings: Strings, entry: Entry, tz: ZoneInfo) -> dict[str, Any]:
    day = entry.date.astimezone(tz)
    return {
        "title": entry.title,
        "url": entry.url,
        "date": strings.date(day.date()),
        "date_iso": day.isoformat(),
        "categories": list(entry.categories),
        "author": entry.author,
        "excerpt_html": Markup(entry.excerpt_html),   # sanitised by the site's renderer, or escaped above
        "excerpt_text": entry.excerpt_text,
        "reading_time": strings.text("min_read", minutes=entry.reading_minutes),
        "image": entry.picture,
    }


def _preheader(shown: Sequence[Entry]) -> str:
    """The line mail clients show after the subject: the first post's excerpt (its title if it has none)."""
    if not shown:
        return ""
    return cut_excerpt(" ".join(shown[0].excerpt_text.split()) or shown[0].title, _PREHEADER_CHARS)


def environment(config: Config) -> jinja2.Environment:
    """The digest templates, digest.templates_dir searched first. One environment per set of template files,
    so a template is compiled once per process, not once per page (the archive's 100 pages: 5 s of 7, cProfile);
    Jinja compiles a template again when its file changes, and a file added to the folder makes a new set."""
    override = _override(config)
    files = tuple(sorted(path.name for path in override.iterdir())) if override and override.is_dir() else ()
    return _environment(override, files)


@functools.cache
def _environment(override: Path | None, files: tuple[str, ...]) -> jinja2.Environment:
    return templates.environment("email", override)


def strings_for(config: Config) -> Strings:
    """The digest's words in site.language, digest.templates_dir's strings.toml first."""
    return load_strings("email", config.site.language, _override(config))


def _override(config: Config) -> Path | None:
    return config.path(config.digest.templates_dir) if config.digest.templates_dir else None


def render_file(env: Any, name: str, context: dict[str, Any]) -> str:
    """Template `name` rendered; any failure is a DigestTemplateError naming the template file and line."""
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise DigestTemplateError(f"{exc.filename or name}:{exc.lineno}: template error: {exc.message} "
                                  "(expected valid Jinja2)") from exc
    except jinja2.TemplateNotFound as exc:
        raise DigestTemplateError(f"{name}: template not found in {env.loader.searchpath} "
                                  "(expected digest.templates_dir to hold it, or no override)") from exc
    except jinja2.TemplateError as exc:
        where = _template_frame(exc) or name
        raise DigestTemplateError(f"{where}: template error: {exc} (expected valid Jinja2)") from exc


def _template_frame(exc: BaseException) -> str | None:
    """'file:line' of the innermost template frame: jinja2 rewrites tracebacks to point at templates."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else None


def _kind_context(config: Config, strings: Strings, kind: str, zone: str, chosen: list[str], shown: Sequence[Entry],
                  full: Mapping[str, str]) -> dict[str, Any]:
    """What a reader of this kind of mail gets, said in its footer, and for a post's mail its full text."""
    digest = config.digest
    at = {"daily": digest.daily_at, "monthly": digest.monthly_on.at}.get(kind) or digest.schedule[0].at
    days = ", ".join(strings.text("day_names").split()[day] for entry in digest.schedule for day in entry.days)
    gets = strings.text(f"gets_{kind}", time=at.strftime("%H:%M"), days=days, day=digest.monthly_on.day,
                        zone=zone or config.site.timezone)
    topics = strings.text("gets_topics", topics=", ".join(chosen)) if chosen else strings.text("gets_everything")
    public = (kind, zone) == ("weekly", "")    # the archive keeps only the site zone's weekly issues
    return {"kind": kind, "gets": f"{gets} {topics}", **({} if public else {"view_url": ""}),
            "full_html": {entry.url: Markup(full[entry.url]) for entry in shown if entry.url in full}}


def _render_subject(config: Config, env: Any, strings: Strings, context: dict[str, Any], kind: str = "weekly") -> str:
    if kind != "weekly" and (kind == "welcome" or not config.digest.subject):
        return header_text(strings.text(f"subject_{kind}", title=config.site.title, date=context["date_label"]))
    if not config.digest.subject:
        return _default_subject(config, strings, context["date_label"])
    try:
        subject = env.from_string(config.digest.subject).render(context)
    except jinja2.TemplateError as exc:
        raise DigestTemplateError(f"{config.source}: 'digest.subject': template error: {exc} "
                                  "(expected e.g. '{{ site.title }} weekly — {{ date_label }}')") from exc
    return header_text(subject)


def _default_subject(config: Config, strings: Strings, date_label: str) -> str:
    return header_text(strings.text("subject", title=config.site.title, date=date_label))


def _inline_css(html: str) -> str:
    inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
    return inliner.inline(html)
