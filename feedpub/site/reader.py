"""One post file → a `Post` (its metadata), or the `Problem` that keeps it out.

The body is not kept: builds need it only for the few posts they render (`load_body`), and the
metadata of every post is what the build cache holds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import frontmatter
import yaml

from feedpub import urls
from feedpub.config import Config
from feedpub.dates import EXPECTED as DATE_FORMS
from feedpub.dates import parse_date
from feedpub.errors import Problem
from feedpub.site.listing import PostFile

# A post is an article, not a data dump: Markdown rendering is superlinear, so bigger files are refused
# before they are read (a 1 MB post renders in ~4 s here).
MAX_POST_BYTES = 1_000_000
# Values in the front matter after YAML aliases are expanded: a real post has a few dozen; an alias
# "billion laughs" has billions, which any code walking the values (or printing them) would expand.
MAX_FRONT_MATTER_VALUES = 10_000
_FILENAME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})-(.+)$")


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The C safe loader without YAML's timestamp type: every date arrives as text and goes through
    one parser, instead of PyYAML's mix of str (`+0000`), naive, aware and date values."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _Loader.yaml_implicit_resolvers.items()
}
_YAML = frontmatter.YAMLHandler()
# Front matter keys whose values `Post` holds in its own fields (Liquid's `page` gives those).
_FIELDS = frozenset(("title", "date", "categories", "category", "tags", "tag", "excerpt", "reading_time"))
_MORE = "<!--more-->"
# Liquid that reads other posts or the site's files: such a post is re-rendered when they change.
# Liquid that reads the site's files (config, _data/, _includes/), and Liquid that reads other posts (an
# include may: counted as reading them).
_SITE_READS = re.compile(r"\{%-?\s*include|\{\{[^}]*\bsite\b|\{%[^%]*\bsite\b")
_POSTS_READS = re.compile(r"\{%-?\s*(?:post_url|link|include)|\bsite\s*(?:\.\s*(?:posts|categories|tags)\b|\[)")
_TOP_KEY = re.compile(r"^([A-Za-z_][\w-]*)[ \t]*:(?:[ \t]|$)", re.M)
# XML 1.0 cannot carry these, and lone surrogates (which YAML escapes can make) cannot be encoded: a post
# containing them is refused here, and everything feedpub emits is stripped of them (`markup`).
INVALID_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Post:
    source: str                  # path as given to the user in messages (relative to the config)
    title: str
    date: datetime               # aware, with the post's own offset
    updated: datetime            # aware
    categories: tuple[str, ...]
    tags: tuple[str, ...]
    author: str
    file: str                    # absolute path of the file, for `load_body`
    body_line: int               # line of the file where the body starts
    excerpt: str                 # Markdown (with Liquid) of the excerpt
    excerpt_explicit: bool       # from front matter or a separator, not the first paragraph
    reading_time: int | None     # minutes, from front matter; else computed when rendered
    reads_site: bool             # its Liquid reads site files ({{ site.data.x }}, {% include %}, …)
    reads_posts: bool            # its Liquid reads other posts ({% post_url %}, site.posts, …)
    path: str                    # site path, unescaped, e.g. /ai/2025/12/16/slug.html
    url: str                     # absolute, percent-encoded
    id: str                      # stable entry id
    image: str                   # absolute URL, or ""
    image_size: tuple[int, int] | None  # (width, height) in px when the front matter gives both
    image_alt: str               # from the front matter's image.alt, or ""
    name: str                    # file name without extension, for {% post_url %}
    # The front matter's other keys, for Liquid's `page` (what the fields above hold is not kept twice: the
    # build cache holds every post).
    matter: Mapping[str, Any] = field(default_factory=dict, compare=False)


class Skip(Exception):
    """One post cannot be published; carries the Problem."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem


def read_post(file: PostFile, root: Path, shown: str, config: Config, warnings: list[Problem]) -> Post | None:
    """One file below `root` (the resolved posts folder) → a Post, None when unpublished, or `Skip`.
    `shown` names the file in messages; warnings are appended to `warnings`."""
    path = Path(file.path)
    if file.symlink and not path.resolve().is_relative_to(root):
        raise Skip(Problem(shown, None, "symbolic link pointing outside the posts folder",
                           "a post file inside site.posts_dir"))
    text = _decode(path, shown)
    _check_text(text, shown)
    meta, body, body_line = _split(text, shown, warnings)
    front = _FrontMatter(shown, text, meta, warnings)
    if meta.get("published") is False:
        return None
    stem = file.relative.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    title = _title(front)
    date, updated = _dates(front, stem, config.site.tz, file.mtime_ns / 1e9 if file.draft else None)
    categories = tuple(dict.fromkeys(_folder_categories(file.relative) + _names(front, "categories", "category")))
    tags = _names(front, "tags", "tag")
    author = _author(meta.get("author")) or config.site.author
    excerpt, explicit = _excerpt(front, body, config.site.excerpt_separator)
    minutes = _reading_time(front)
    site_path = _permalink(front, stem, date.astimezone(config.site.tz), categories, config)
    url = urls.absolute(config.site.root_url, site_path)
    return Post(source=shown, title=title, date=date, updated=updated, categories=categories, tags=tags,
                author=author, file=file.path, body_line=body_line, excerpt=excerpt, excerpt_explicit=explicit,
                reading_time=minutes, reads_site=bool(_SITE_READS.search(body)),
                reads_posts=bool(_POSTS_READS.search(body)), path=site_path, url=url,
                id=_entry_id(front, url), image=_image(meta.get("image"), url, config),
                image_size=_image_size(meta.get("image")), image_alt=_image_alt(meta.get("image")), name=stem,
                matter={key: value for key, value in meta.items() if key not in _FIELDS})


def load_body(post: Post) -> str:
    """The post's Markdown body, read again from its file (it is not kept in `Post`)."""
    text = Path(post.file).read_bytes()[: MAX_POST_BYTES + 1].decode("utf-8-sig")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _YAML.split(text)[1].lstrip("\n")


def _decode(file: Path, shown: str) -> str:
    """The text of a UTF-8 file within the size limit, with universal newlines."""
    try:
        if not file.is_file():
            raise Skip(Problem(shown, None, "not a regular file", "a Markdown text file"))
        with file.open("rb") as handle:
            raw = handle.read(MAX_POST_BYTES + 1)
    except OSError as exc:
        raise Skip(Problem(shown, None, f"cannot read file ({exc.strerror})")) from None
    if len(raw) > MAX_POST_BYTES:
        raise Skip(Problem(shown, None, f"file is over the {MAX_POST_BYTES:,}-byte limit",
                            "a smaller post; split it or move data out of it"))
    if b"\x00" in raw:
        raise Skip(Problem(shown, raw.count(b"\n", 0, raw.index(b"\x00")) + 1,
                            "binary data (NUL byte)", "a UTF-8 text file"))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise Skip(Problem(shown, line, f"not UTF-8 (byte 0x{raw[exc.start]:02X})",
                            "UTF-8 text; re-save the file as UTF-8")) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _check_text(text: str, shown: str) -> None:
    """Refuse an empty post, or one with a character XML cannot carry."""
    if not text.strip():
        raise Skip(Problem(shown, 1, "empty file", "front matter between '---' lines, then Markdown"))
    bad = INVALID_XML.search(text)
    if bad:
        raise Skip(Problem(shown, _line_of(text, bad.start()), f"control character U+{ord(bad[0]):04X} in the text",
                           "printable text; remove the character"))


def _split(text: str, shown: str, warnings: list[Problem]) -> tuple[dict[str, Any], str, int]:
    """Front matter (a dict) and body; a missing or unclosed front matter is a problem."""
    if not _YAML.detect(text):
        raise Skip(Problem(shown, 1, "no front matter", "a first line '---'"))
    try:
        fm, body = _YAML.split(text)
    except ValueError:
        raise Skip(Problem(shown, 1, "front matter is not closed",
                            "a '---' line after the front matter")) from None
    try:
        meta = yaml.load(fm, Loader=_Loader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise Skip(Problem(shown, line, f"invalid YAML front matter: {what}",
                            "'key: value' lines indented with spaces; quote values containing ': '")) from None
    if not isinstance(meta, dict):
        raise Skip(Problem(shown, 2, "front matter is not a mapping", "'key: value' lines"))
    # YAML keeps the last of two equal keys without a word; the author meant one of them.
    seen: set[str] = set()
    for key in _TOP_KEY.finditer(fm):
        if key[1] in seen:
            warnings.append(Problem(shown, fm.count("\n", 0, key.start()) + 1, f"key {key[1]!r} appears twice; "
                                    "the last one is used", "each key once", warning=True))
        seen.add(key[1])
    unsafe = _unsafe_value(meta)
    if unsafe:
        raise Skip(Problem(shown, 2, f"front matter {unsafe}", "plain values, without aliases or control characters"))
    stripped = body.lstrip("\n")
    # `fm` and `body` each begin with the rest of a '---' line: count lines from there.
    body_line = fm.count("\n") + 1 + len(body) - len(stripped)
    return meta, stripped, body_line


def _unsafe_value(meta: dict[str, Any]) -> str | None:
    """Why the parsed front matter must not be used (alias bomb, cycle, control character), or None.
    Walks at most MAX_FRONT_MATTER_VALUES values, counting shared (aliased) ones each time they appear."""
    pending: list[Any] = [meta]
    for _ in range(MAX_FRONT_MATTER_VALUES):
        if not pending:
            return None
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str) and (bad := INVALID_XML.search(value)):
            return f"value {value[:40]!r} contains control character U+{ord(bad[0]):04X}"
    return None if not pending else (f"expands to more than {MAX_FRONT_MATTER_VALUES:,} values "
                                     "(YAML aliases repeated or recursive)")


@dataclass(frozen=True)
class _FrontMatter:
    """A post's front matter, with what a message about one of its keys needs."""

    shown: str                  # the file, as named in messages
    text: str                   # the whole file, for line numbers
    values: dict[str, Any]
    warnings: list[Problem]     # a warning is appended here

    def line(self, key: str) -> int:
        match = re.search(rf"^{re.escape(key)}\s*:", self.text, re.M)
        return _line_of(self.text, match.start()) if match else 1

    def fail(self, key: str, message: str, expected: str | None = None) -> Skip:
        return Skip(Problem(self.shown, self.line(key), message, expected))

    def warn(self, key: str, message: str, expected: str | None = None) -> None:
        self.warnings.append(Problem(self.shown, self.line(key), message, expected, warning=True))


def _title(front: _FrontMatter) -> str:
    title = front.values.get("title")
    if title is None or (isinstance(title, str) and not title.strip()):
        raise front.fail("title", "no title", "a 'title:' line in the front matter")
    if isinstance(title, bool) or not isinstance(title, str | int | float):
        raise front.fail("title", f"title is {type(title).__name__} {title!r}",
                         "a string; quote it, e.g. title: \"NO\"")
    return _one_line(str(title))  # a newline in a title would split a mail header or a feed line


def _dates(front: _FrontMatter, stem: str, tz: tzinfo, mtime: float | None) -> tuple[datetime, datetime]:
    """Published and updated. Published is the front matter's `date`, else the file name's, else `mtime`
    (given for drafts, which often have neither)."""
    file_date = _file_name_date(front.shown, stem, tz)
    meta = front.values
    if "date" in meta:
        date = _parse(front, "date", tz)
        if file_date and date.astimezone(tz).date() != file_date.date():
            front.warn("date", f"front-matter date {date.astimezone(tz):%Y-%m-%d} differs from the "
                               f"file name's {file_date:%Y-%m-%d}; using the front matter")
    elif file_date:
        date = file_date
    elif mtime is not None:
        date = datetime.fromtimestamp(mtime, tz)
    else:
        raise Skip(Problem(front.shown, 1, "no date",
                           "a 'date:' in the front matter or a file name YYYY-MM-DD-slug.md"))
    key = next((key for key in ("last_modified_at", "updated") if meta.get(key) is not None), None)
    return date, (max(date, _parse(front, key, tz)) if key else date)


def _file_name_date(shown: str, stem: str, tz: tzinfo) -> datetime | None:
    named = _FILENAME.match(stem)
    if not named:
        return None
    try:
        file_date = datetime(int(named[1]), int(named[2]), int(named[3]), tzinfo=tz)
        if not 1 < file_date.year < 9999:   # converting to UTC or another zone must not overflow
            raise ValueError
    except ValueError:
        raise Skip(Problem(shown, None, f"file name date {stem[:10]} does not exist",
                           "a real date in YYYY-MM-DD-slug.md")) from None
    return file_date


def _parse(front: _FrontMatter, key: str, tz: tzinfo) -> datetime:
    try:
        return parse_date(front.values[key], tz)
    except (ValueError, OverflowError) as exc:
        raise front.fail(key, str(exc), DATE_FORMS) from None


def _reading_time(front: _FrontMatter) -> int | None:
    """Minutes from the front matter, if it gives a whole number; else computed when rendered."""
    minutes = front.values.get("reading_time")
    if isinstance(minutes, int) and not isinstance(minutes, bool) and minutes > 0:
        return minutes
    if minutes is not None:
        front.warn("reading_time", f"reading_time {minutes!r} ignored", "a whole number of minutes")
    return None


def _permalink(front: _FrontMatter, stem: str, date: datetime, categories: tuple[str, ...], config: Config) -> str:
    """The site path (unescaped) from the post's or the site's permalink style; `date` in the site's zone."""
    named = _FILENAME.match(stem)
    slug = front.values.get("slug")
    title_slug = urls.jekyll_title_slug(str(slug) if slug else named[4] if named else stem)
    template = front.values.get("permalink") or config.site.permalink
    if not isinstance(template, str):
        raise front.fail("permalink", f"permalink is {template!r}", "a path or pattern string")
    path = urls.expand_permalink(template, date=date, title_slug=title_slug, categories=categories)
    if path == "/":
        raise front.fail("permalink", f"permalink {template!r} gives an empty path",
                         "a pattern that includes :title or a file name")
    return path


def _entry_id(front: _FrontMatter, url: str) -> str:
    entry_id = front.values.get("id") or front.values.get("guid") or url
    if isinstance(entry_id, bool) or not isinstance(entry_id, str | int):
        raise front.fail("id" if "id" in front.values else "guid", f"id is {entry_id!r}", "a string")
    return str(entry_id)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _names(front: _FrontMatter, plural: str, singular: str) -> tuple[str, ...]:
    """Categories or tags: a list, a space-separated string, a singular key; ints allowed."""
    meta = front.values
    value = meta.get(plural, meta.get(singular))
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[Any] = value.split() if plural in meta else [value]
    elif isinstance(value, list):
        items = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        items = [value]
    else:
        raise front.fail(plural if plural in meta else singular,
                         f"{plural} is {value!r}", "a list or a space-separated string")
    names = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise front.fail(plural if plural in meta else singular,
                             f"{plural} entry {item!r} is not a name", "strings or numbers")
        name = _one_line(str(item))
        if name:
            names.append(name)
    return tuple(dict.fromkeys(names))


def _author(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("name") or "")
    if isinstance(value, list):
        return ", ".join(_author(v) for v in value if _author(v))
    return "" if value is None or isinstance(value, bool) else _one_line(str(value))


def _excerpt(front: _FrontMatter, body: str, site_separator: str) -> tuple[str, bool]:
    """The excerpt's Markdown, and whether the author chose it (rather than the first paragraph)."""
    value = front.values.get("excerpt") or front.values.get("description")
    if value is not None:
        if not isinstance(value, str):
            raise front.fail("excerpt", f"excerpt is {value!r}", "a string of Markdown")
        return value.strip(), True
    separator = front.values.get("excerpt_separator") or site_separator
    for marker in (separator, _MORE):
        if isinstance(marker, str) and marker and marker in body:
            return body.split(marker, 1)[0].strip(), True
    return first_paragraph(body), False


def first_paragraph(body: str) -> str:
    """The first block of prose: not a heading, a fence, a Liquid tag line or an HTML comment."""
    for block in re.split(r"\n\s*\n", body):
        text = block.strip()
        if text and not text.startswith(("#", "```", "~~~", "{%", "<!--", "[", "|", "---")):
            return text
    return ""


def _image(value: Any, url: str, config: Config) -> str:
    if isinstance(value, dict):
        value = value.get("path") or value.get("url")
    if not isinstance(value, str) or not value.strip():
        return ""
    value = value.strip()
    scheme = re.match(r"^([a-z][a-z0-9+.-]*):", value, re.I)
    if scheme:  # javascript:, data: and the like must never reach a feed reader
        return value if scheme[1].lower() in ("http", "https") else ""
    if value.startswith("/"):
        return urls.absolute(config.site.url.rstrip("/") + config.site.baseurl.rstrip("/"), value)
    return urljoin(url, urls.escape_path(value))


def _image_size(value: Any) -> tuple[int, int] | None:
    """jekyll-seo-tag's `image: {path, width, height, alt}`: the size when both are positive numbers."""
    if not isinstance(value, dict):
        return None
    size = value.get("width"), value.get("height")
    if all(isinstance(n, int | float) and not isinstance(n, bool) and n > 0 for n in size):
        return round(size[0]), round(size[1])
    return None


def _image_alt(value: Any) -> str:
    alt = value.get("alt") if isinstance(value, dict) else None
    return " ".join(str(alt).split()) if alt is not None else ""


def _folder_categories(relative: str) -> tuple[str, ...]:
    """Jekyll: folders above `_posts` are categories (`news/_posts/x.md` → news)."""
    parts = relative.split("/")[:-1]
    if "_posts" not in parts:
        return ()
    return tuple(p for p in parts[: parts.index("_posts")] if not p.startswith("_"))


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1
