"""Markdown → safe HTML with absolute URLs; excerpts; reading time.

Python-Markdown (not a CommonMark parser) because it bolds `**推論性能35%**向上`, as Jekyll's kramdown does;
`kramdown.py` brings it to kramdown's dialect as Jekyll configures it.
"""

from __future__ import annotations

import functools
import html as html_lib
import math
import os
import re
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urljoin

import lxml.etree
import lxml.html
import markdown
import nh3

from feedpub.config import Config
from feedpub.errors import Problem, message
from feedpub.site import kramdown
from feedpub.site.bounded import Stopped, map_bounded
from feedpub.site.cache import fingerprint
from feedpub.site.liquid import LiquidSite, escape_braces, liquid_site, without_liquid
from feedpub.site.reader import READS_BESIDE, Post, load_body
from feedpub.site.source import INVALID_XML

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\uff66-\uff9f]")
_FENCE = re.compile(r"^(```|~~~)")
# Closing delimiters are searched only up to the next opening one, so unclosed runs stay linear.
_HIGHLIGHT = re.compile(r"\{%-?\s*highlight(?:(?!\{%-?\s*highlight).)*?endhighlight\s*-?%\}", re.S)
_LIQUID = re.compile(r"\{%(?:(?!\{%).)*?%\}|\{\{(?:(?!\{\{).)*?\}\}", re.S)
_HTML_TAG = re.compile(r"<[^<>]+>")
_CJK_GAP = re.compile(r"(?<=[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]) "
                      r"(?=[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef])")
# Elements that end a line of plain text (a block, a line break, a table cell).
_TEXT_BLOCKS = ("address", "article", "aside", "blockquote", "br", "dd", "details", "div", "dl", "dt", "figcaption",
                "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "ol", "p", "pre",
                "section", "summary", "table", "td", "th", "tr", "ul")
_SPACES = str.maketrans("\n\r\t\f\v", "     ")
_SENTENCE_END = re.compile(r"[。！？!?]|\.(?=\s|$)")
_URL_ATTRIBUTES = {"href", "src", "poster"}
# Python-Markdown is quadratic on some inputs (thousands of unclosed `[`, `[a](`, fences) and recursive on deep
# nesting; Liquid can loop or ask for gigabytes. A post's Liquid, and then its Markdown, each stop after this
# long (the post is then published without its Liquid, or as escaped plain text)...
RENDER_SECONDS = 5.0
# ...and the child process rendering it may use this much memory more than the process that builds.
RENDER_MEMORY = 256 * 1024 * 1024
_OVER_MEMORY = message("needed_memory", megabytes=RENDER_MEMORY // 2**20)
_OVER_TIME = message("took_seconds", seconds=RENDER_SECONDS)
# A child that has not answered by then (stuck where no signal reaches: inside a C extension) is killed.
_STOP_SECONDS = 2 * RENDER_SECONDS + 2


class RenderTimeout(BaseException):
    """Rendering one post took longer than RENDER_SECONDS. Not an Exception, as KeyboardInterrupt is not: python-liquid
    turns any Exception met while parsing into a syntax error and renders on past one in lax mode."""


@dataclass(frozen=True)
class RenderedPost:
    post: Post
    html: str            # full content, sanitised, absolute URLs
    excerpt_html: str    # the excerpt, same treatment
    excerpt_text: str    # the excerpt as plain text (for e-mail and previews)
    reading_time: int    # minutes: front matter, else computed CJK-aware from the body


@dataclass(frozen=True)
class CachedRender:
    """A rendering kept in the build cache, valid while its `key` is unchanged: the post, its text as written and
    the site data its Liquid reads (`LiquidSite.inputs`)."""

    key: str
    html: str
    excerpt_html: str
    reading_time: int
    problems: tuple[Problem, ...]   # met reading the file again, running its Liquid, converting its Markdown


def render_posts(config: Config, posts: Sequence[Post], *, site_posts: Sequence[Post] | None = None,
                 cache: dict[str, CachedRender] | None = None) -> tuple[list[RenderedPost], list[Problem]]:
    """Render `posts`; Liquid's `site.posts`, `{% post_url %}` and `{% link %}` see `site_posts` (all posts).

    `cache` (post URL → CachedRender) is read and updated: a post whose key is unchanged goes through neither
    Liquid nor Markdown, nor a child process. The others are rendered in child processes (`bounded`), one per
    core at most: two hostile posts cost the others one bound, not two."""
    site_posts = posts if site_posts is None else site_posts
    site = liquid_site(config, site_posts, markdownify=lambda text: _markdown().convert(text))
    cache = {} if cache is None else cache
    tasks = []
    for post in posts:
        raw, warnings = _read_body(post)
        # The files beside a post are not watched: its key holds its Liquid's output, known once rendered.
        key = None if READS_BESIDE in post.reads else fingerprint(raw, post, site.inputs(post.reads))
        if key is None or post.url not in cache or cache[post.url].key != key:
            tasks.append(_Task(post, raw, key, tuple(warnings)))
    if tasks:
        workers = min(os.cpu_count() or 1, len(tasks))
        _prepare(site, tasks)
        done = map_bounded(functools.partial(_render, site=site, cache=cache), tasks, workers=workers,
                           seconds=_STOP_SECONDS, memory=RENDER_MEMORY)
        for task, fresh in zip(tasks, done, strict=True):
            cache[task.post.url] = _stopped(task, fresh) if isinstance(fresh, Stopped) else fresh
    rendered, problems = [], list(site.problems)
    for post in posts:
        found = cache[post.url]
        problems.extend(found.problems)
        rendered.append(RenderedPost(post, found.html, found.excerpt_html, html_to_text(found.excerpt_html),
                                     found.reading_time))
    return rendered, problems


@dataclass(frozen=True)
class _Task:
    """A post to render: its text as written, and its render cache key (None: known once its Liquid is rendered)."""

    post: Post
    raw_body: str
    key: str | None
    problems: tuple[Problem, ...]   # met reading it again


def _prepare(site: LiquidSite, tasks: Sequence[_Task]) -> None:
    """Build here, once, what every child would otherwise build for itself: the converter, the sanitiser and, when a
    post holds Liquid, python-liquid's environment (0.15-0.2 s to import: `render_liquid`)."""
    _markdown()
    _sanitize("", "")
    if any("{{" in text or "{%" in text for task in tasks for text in (task.raw_body, task.post.excerpt)):
        from feedpub.site.liquid_engine import environment  # see render_liquid

        environment(site)   # made here, inherited by the children


def _read_body(post: Post) -> tuple[str, list[Problem]]:
    try:
        return load_body(post), []
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return "", [Problem(post.source, None, message("unreadable_while_building", reason=str(exc)), warning=True)]


def _render(task: _Task, *, site: LiquidSite, cache: dict[str, CachedRender]) -> CachedRender:
    """One post's Liquid, then its Markdown (in a child process of `render_posts`)."""
    post = task.post
    body, excerpt, warnings = _apply_liquid(post, task.raw_body, site)
    key = task.key
    if key is None:
        key = fingerprint(task.raw_body, post, fingerprint(site.inputs(post.reads), (body, excerpt)))
        if post.url in cache and cache[post.url].key == key:
            return cache[post.url]
    return _convert(key, post, body, excerpt, task.raw_body, (*task.problems, *warnings))


def _apply_liquid(post: Post, raw: str, site: LiquidSite) -> tuple[str, str, list[Problem]]:
    """The body and the excerpt with their Liquid rendered, and the warnings met."""
    try:
        with _time_limit(RENDER_SECONDS):
            body, warnings = render_liquid(raw, site, post, post.body_line)
            excerpt, _ = render_liquid(post.excerpt, site, post, post.body_line)
    except (RenderTimeout, MemoryError) as exc:
        reason = _OVER_TIME if isinstance(exc, RenderTimeout) else _OVER_MEMORY
        return without_liquid(raw), without_liquid(post.excerpt), [
            Problem(post.source, post.body_line, message("liquid_over_bound", reason=reason),
                    message("expected_fewer_items"), warning=True)]
    return body, excerpt, warnings


def render_liquid(text: str, site: LiquidSite, post: Post, first_line: int) -> tuple[str, list[Problem]]:
    """`text` (from the post, starting at file line `first_line`) with its Liquid rendered, and the
    warnings met on the way."""
    if "{{" not in text and "{%" not in text:
        return text, []
    # Imported here: python-liquid and the tags and filters on it take 0.14-0.19 s to import once the rest of a
    # build is loaded (median 0.17 s of 5), which a build whose rendered posts hold no Liquid, or come from the
    # render cache, does not pay (`make bench`'s one-post edit).
    from feedpub.site.liquid_engine import render

    return render(text, site, post, first_line)


def _convert(key: str, post: Post, body: str, excerpt: str, raw_body: str,
             problems: tuple[Problem, ...]) -> CachedRender:
    """Markdown → HTML for one post, Liquid applied. A post whose Markdown cannot be rendered (too slow, too
    deeply nested, too big) comes out as escaped plain text with a warning, so one hostile file never stops a
    build."""
    minutes = post.reading_time or reading_time(raw_body)
    try:
        with _time_limit(RENDER_SECONDS):
            html = to_html(body, post.url)
            excerpt_html = to_html(excerpt, post.url)
    except (RenderTimeout, RecursionError, MemoryError) as exc:
        reason = {RenderTimeout: _OVER_TIME, RecursionError: message("nested_too_deeply"),
                  MemoryError: _OVER_MEMORY}[type(exc)]
        problem = Problem(post.source, post.body_line, message("markdown_not_rendered", reason=reason),
                          message("expected_plain_markdown"), warning=True)
        _local.markdown = None  # interrupted mid-document, the converter's state cannot be trusted
        return CachedRender(key, _plain_html(body), _plain_html(excerpt), minutes, (*problems, problem))
    return CachedRender(key, html, excerpt_html, minutes, problems)


def _stopped(task: _Task, stopped: Stopped) -> CachedRender:
    """A post whose rendering process was stopped: its text without Liquid, as escaped plain text."""
    post = task.post
    problem = Problem(post.source, post.body_line, message("rendering_stopped", reason=stopped.reason),
                      message("expected_plain_markdown_and_liquid"), warning=True)
    # An empty key never matches: a post keyed by its Liquid's output is tried again at the next build.
    return CachedRender(task.key or "", _plain_html(without_liquid(task.raw_body)),
                        _plain_html(without_liquid(post.excerpt)), post.reading_time or reading_time(task.raw_body),
                        (*task.problems, problem))


def to_html(markdown_text: str, base_url: str) -> str:
    """Markdown (Liquid already applied) → sanitised HTML fragment whose links are absolute."""
    html = _markdown().convert(markdown_text)
    # Stripped before (nh3 cannot take lone surrogates) and after (character references such as &#1;
    # come out of the HTML parser as the characters themselves).
    return escape_braces(strip_invalid_xml(_sanitize(strip_invalid_xml(html), base_url)))


def _plain_html(text: str) -> str:
    paragraphs = (html_lib.escape(strip_invalid_xml(block.strip())) for block in re.split(r"\n\s*\n", text))
    return escape_braces("".join(f"<p>{block}</p>" for block in paragraphs if block))


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise RenderTimeout in the block after `seconds`: in the main thread of a rendering child process (only a
    process's main thread receives signals)."""

    def expire(signum: int, frame: object) -> None:
        raise RenderTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def strip_invalid_xml(text: str) -> str:
    """`text` without the characters XML cannot carry: everything feedpub emits goes through here."""
    return INVALID_XML.sub("", text)


def html_to_text(html: str) -> str:
    """Plain text of a small HTML fragment (an excerpt): the text as a reader sees it, one line per block or
    line break. An inline element adds nothing at its edges (`<code>init</code>.` is `init.`,
    `<em>速く</em>なった` is `速くなった`); a line break of the source inside Japanese text adds no space."""
    if not html.strip():
        return ""
    fragment = lxml.html.fragment_fromstring(html, create_parent="div")
    lxml.etree.strip_elements(fragment, lxml.etree.Comment, lxml.etree.ProcessingInstruction, with_tail=False)
    for element in fragment.iter():
        # White space as written (a source line break included) reads as one space; blocks make the lines.
        breaks = "\n" if element.tag in _TEXT_BLOCKS else ""
        element.text = breaks + (element.text or "").translate(_SPACES)
        element.tail = breaks + (element.tail or "").translate(_SPACES)
    lines = (" ".join(line.split()) for line in "".join(fragment.itertext()).split("\n"))
    return "\n".join(_CJK_GAP.sub("", line) for line in lines if line)


def reading_time(markdown_text: str) -> int:
    """Minutes to read: CJK characters at 500 a minute plus other words at 200, code excluded."""
    text = _HIGHLIGHT.sub(" ", markdown_text)
    text = _without_fenced_code(text)
    text = _LIQUID.sub(" ", text)
    text = _HTML_TAG.sub(" ", text)
    cjk = len(_CJK.findall(text))
    words = len(_CJK.sub(" ", text).split())
    return max(1, math.ceil(cjk / 500 + words / 200))


def _without_fenced_code(text: str) -> str:
    """The lines outside ``` and ~~~ blocks (an unclosed block runs to the end, as in Markdown)."""
    kept, fence = [], None
    for line in text.split("\n"):
        opening = _FENCE.match(line)
        if fence is None and opening:
            fence = opening[1]
        elif fence is not None and line.strip() == fence:
            fence = None
        elif fence is None:
            kept.append(line)
    return "\n".join(kept)


def cut_excerpt(text: str, limit: int) -> str:
    """At most `limit` characters, ending at a sentence end (。！？.!?) where one falls in the
    second half; else cut at a word boundary (or anywhere in CJK text) with '…'."""
    text = text.strip()
    if len(text) <= limit:
        return text
    head = text[:limit]
    ends = [m.end() for m in _SENTENCE_END.finditer(head)]
    if ends and ends[-1] >= limit // 2:
        return head[: ends[-1]]
    cut = head[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2 and not _CJK.search(cut[space:]):
        cut = cut[:space]
    return cut.rstrip(" 、,;:") + "…"


def _absolute_srcset(value: str, base_url: str) -> str:
    candidates = []
    for candidate in value.split(","):
        parts = candidate.strip().split()
        if parts:
            candidates.append(" ".join([urljoin(base_url, parts[0]), *parts[1:]]))
    return ", ".join(candidates)


_local = threading.local()


def _markdown() -> markdown.Markdown:
    """One Markdown converter per thread, reset between documents (building one costs ~1 ms)."""
    converter = getattr(_local, "markdown", None)
    if converter is None:
        converter = markdown.Markdown(extensions=kramdown.extensions(), output_format="html")
        _local.markdown = converter
    return converter.reset()


def _sanitize(html: str, base_url: str) -> str:
    """nh3 (ammonia) sanitising; its attribute filter also makes every href, src, poster and srcset
    absolute against `base_url` (one pass over the HTML instead of a second parse)."""
    cleaner = getattr(_local, "cleaner", None)
    if cleaner is None:
        attributes = {tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()}
        extra = {"img": {"srcset", "sizes", "loading", "width", "height", "alt", "title"},
                 "source": {"src", "srcset", "type", "media", "sizes"},
                 "video": {"src", "poster", "controls", "width", "height"},
                 "audio": {"src", "controls"},
                 "th": {"align", "style"}, "td": {"align", "style"}, "abbr": {"title"},
                 # kramdown's header ids, IAL classes and ids, footnote markup
                 "*": {"class", "id"}, "a": {"href", "title", "rel", "role"},
                 "sup": {"role"}, "li": {"role"}, "div": {"role"}}
        for tag, names in extra.items():
            attributes.setdefault(tag, set()).update(names)
        cleaner = nh3.Cleaner(
            tags=set(nh3.ALLOWED_TAGS) | {"video", "audio", "source", "picture", "figure", "figcaption"},
            attributes=attributes,
            clean_content_tags={"script", "style"},
            attribute_filter=_absolute_url,
            # Checked after the filter: a javascript: link stays relative-looking to urljoin and is dropped here.
            url_schemes={"http", "https", "mailto", "tel"},
            filter_style_properties={"text-align"},
            link_rel=None,
        )
        _local.cleaner = cleaner
    _local.base_url = base_url   # the filter is fixed per cleaner; the base changes per post
    return cleaner.clean(html)


def _absolute_url(element: str, attribute: str, value: str) -> str:
    if attribute in _URL_ATTRIBUTES:
        return urljoin(_local.base_url, value.strip())
    if attribute == "srcset":
        return _absolute_srcset(value, _local.base_url)
    return value
