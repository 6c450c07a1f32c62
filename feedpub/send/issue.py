"""The digest issue: which schedule slot is due, which posts it covers, and its HTML and text bodies.

Pure functions over Config and RenderedPost; the CLI does the I/O (store, SMTP). Bodies are rendered
once per category set (a `Variant`) and are the same for every recipient: the per-recipient links are
the marker tokens below, which `feedpub.send.messages` replaces per message.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import css_inline
import jinja2
from markupsafe import Markup, escape

from feedpub import templates
from feedpub.config import Config
from feedpub.errors import ConfigError
from feedpub.files import write_atomic
from feedpub.site.markup import RenderedPost, cut_excerpt

# Lower-case ASCII letters, digits and hyphens only: they survive css-inline, HTML attribute quoting and
# quoted-printable encoding unchanged, so `feedpub.send.messages` finds them in the encoded bodies.
UNSUBSCRIBE_MARKER = "feedpub-unsubscribe-url-5d0c9a1e"
PREFERENCES_MARKER = "feedpub-preferences-url-5d0c9a1e"

HTML_TEMPLATE = "digest.html.j2"
TEXT_TEMPLATE = "digest.txt.j2"
# Anything that could end or break a header line: C0/C1 controls, DEL, Unicode line/paragraph separators.
_HEADER_BREAKERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_STRINGS = {
    "en": {
        "intro": "{count} new posts on {title}",
        "read_more": "Read more",
        "min_read": "{minutes} min read",
        "unsubscribe": "Unsubscribe",
        "preferences": "Change your preferences",
        "why": "You are receiving this e-mail because you subscribed to the {title} digest ({url}).",
        "chosen": "You chose posts in: {categories}",
        "archive": "An issue of the {title} e-mail digest ({url}).",
        "subscribe": "Get the digest by e-mail",
    },
    "ja": {
        "intro": "{title} の新着記事 {count} 件",
        "read_more": "続きを読む",
        "min_read": "{minutes}分で読めます",
        "unsubscribe": "配信停止",
        "preferences": "配信設定の変更",
        "why": "{title}（{url}）のダイジェスト配信に登録されているため、このメールをお送りしています。",
        "chosen": "選択中のカテゴリー: {categories}",
        "archive": "{title}（{url}）のメールダイジェストのバックナンバーです。",
        "subscribe": "ダイジェストをメールで受け取る",
    },
}


class DigestTemplateError(ConfigError):
    """An operator's (or the shipped) digest template cannot be loaded or rendered."""


@dataclass(frozen=True)
class Issue:
    period: str                      # the schedule slot in site.timezone, "%Y-%m-%d-%H%M"
    slot: datetime                   # that slot, aware
    starts: datetime                 # covered range: exclusive start, inclusive end; aware
    ends: datetime
    posts: tuple[RenderedPost, ...]  # newest first, at most digest.max_posts


@dataclass(frozen=True)
class Variant:
    """The issue as one group of subscribers receives it (same category preferences), or its public copy."""

    key: str                         # variant_key(categories): "" for everyone (and the public copy)
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


def variant_key(categories: Iterable[str]) -> str:
    """"" for no preferences; otherwise the sorted, distinct category names joined by tabs."""
    return "\t".join(sorted(set(categories)))


def compose(config: Config, rendered: Sequence[RenderedPost], *, period: str, slot: datetime,
            starts: datetime, ends: datetime) -> Issue:
    """The issue covering posts published in (starts, ends], newest first (none: nothing to send)."""
    covered = sorted((r for r in rendered if starts < r.post.date <= ends), key=lambda r: r.post.date, reverse=True)
    return Issue(period, slot, starts, ends, tuple(covered[: config.digest.max_posts]))


def render_variant(config: Config, issue: Issue, key: str) -> Variant | None:
    """Subject, HTML and text for subscribers whose preferences are `key`; None if no post matches."""
    chosen = set(key.split("\t")) if key else set()
    posts = [r for r in issue.posts if not chosen or chosen & set(r.post.categories)]
    if not posts:
        return None
    return _render(config, issue, key, posts, sorted(chosen), archive=False)


def public_copy(config: Config, issue: Issue) -> Variant:
    """The issue as the public archive shows it (previews too): every post, and a footer inviting the
    visitor to subscribe instead of the subscriber's own links. A template without that footer still
    gets links, to the web app's generic unsubscribe and preferences pages, never the link markers."""
    return _render(config, issue, "", list(issue.posts), [], archive=True)


def write_archive(config: Config, issue: Issue) -> Path:
    """Write `public/digests/<period>/index.html`."""
    target = config.output_dir / "digests" / issue.period / "index.html"
    write_atomic(target, public_copy(config, issue).html.encode("utf-8"))
    return target


def header_text(value: str) -> str:
    """One line of header-safe text: control characters and line breaks become single spaces."""
    return " ".join(_HEADER_BREAKERS.sub(" ", value).split())


def _render(config: Config, issue: Issue, key: str, posts: list[RenderedPost], chosen: list[str], *,
            archive: bool) -> Variant:
    env = _environment(config)
    context = _context(config, issue, posts, chosen, archive=archive)
    subject = _render_subject(config, env, context)
    context["subject"] = subject
    html = _inline_css(_render_file(env, HTML_TEMPLATE, context))
    text = _render_file(env, TEXT_TEMPLATE, context)
    return Variant(key, subject, html, text)


def _context(config: Config, issue: Issue, posts: list[RenderedPost], chosen: list[str], *,
             archive: bool) -> dict[str, Any]:
    site = config.site
    base = config.web.public_url.rstrip("/")
    language = "ja" if site.language.lower().startswith("ja") else "en"
    strings = _STRINGS[language]
    entries = [_post_entry(config, rendered, language) for rendered in posts]
    issue_date = issue.slot.astimezone(site.tz).date()
    t = {name: text.format(title=site.title, url=site.root_url, count=len(entries), categories=", ".join(chosen))
         for name, text in strings.items() if name != "min_read"}  # min_read is per post, in the entries
    return {
        "site": site,
        "issue": {"date": issue_date, "period": issue.period, "count": len(entries), "posts": entries},
        "posts": entries,
        "chosen_categories": chosen,
        "lang": language,
        "t": t,
        "date_label": _date_label(issue_date, language),
        "preheader": _preheader(entries),
        "archive": archive,
        "subscribe_url": f"{base}/subscribe",
        # A mail carries markers that become each reader's own links; the public copy has no reader.
        "unsubscribe_url": f"{base}/unsubscribe" if archive else UNSUBSCRIBE_MARKER,
        "preferences_url": f"{base}/preferences" if archive else PREFERENCES_MARKER,
    }


def _post_entry(config: Config, rendered: RenderedPost, language: str) -> dict[str, Any]:
    post = rendered.post
    # An excerpt the author wrote (front matter, excerpt_separator) is shown whole; the automatic one
    # (the first paragraph) is cut to digest.excerpt_chars.
    if not post.excerpt_explicit:
        text = cut_excerpt(rendered.excerpt_text, config.digest.excerpt_chars)
        html = Markup(f"<p>{escape(text)}</p>") if text else Markup("")
    else:
        text, html = rendered.excerpt_text, Markup(rendered.excerpt_html)
    return {
        "title": header_text(post.title),  # one line, also where the subject template uses it
        "url": post.url,
        "date": _date_label(post.date.astimezone(config.site.tz).date(), language),
        "date_iso": post.date.astimezone(config.site.tz).isoformat(),
        "categories": list(post.categories),
        "author": post.author,
        "excerpt_html": html,
        "excerpt_text": text,
        "reading_time": _STRINGS[language]["min_read"].format(minutes=rendered.reading_time),
    }


def _date_label(day: date, language: str) -> str:
    if language == "ja":
        return f"{day.year}年{day.month}月{day.day}日"
    return f"{_MONTHS[day.month - 1]} {day.day}, {day.year}"


def _preheader(entries: list[dict[str, Any]]) -> str:
    """The line mail clients show after the subject: the first titles, cut to what fits."""
    return cut_excerpt(" / ".join(entry["title"] for entry in entries[:3]), 110)


def _environment(config: Config) -> jinja2.Environment:
    override = config.path(config.digest.templates_dir) if config.digest.templates_dir else None
    return templates.environment("email", override)


def _render_file(env: Any, name: str, context: dict[str, Any]) -> str:
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


def _render_subject(config: Config, env: Any, context: dict[str, Any]) -> str:
    try:
        subject = env.from_string(config.digest.subject).render(context)
    except jinja2.TemplateError as exc:
        raise DigestTemplateError(f"{config.source}: 'digest.subject': template error: {exc} "
                                  "(expected e.g. '{{ site.title }} weekly — {{ issue.date }}')") from exc
    return header_text(subject)


def _inline_css(html: str) -> str:
    inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
    return inliner.inline(html)
