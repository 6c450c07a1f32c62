"""One post file → a `Post` (its metadata), or the `Problem` that keeps it out.

The body is not kept: builds need it only for the few posts they render (`load_body`), and the
metadata of every post is what the build cache holds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from feedpub import urls
from feedpub.config import Config
from feedpub.dates import read_date, ruby_text
from feedpub.errors import Message, Problem, message, reason
from feedpub.jekyll import defaults_for, with_defaults
from feedpub.site.cache import pickled_as_tuple
from feedpub.site.listing import PostFile
from feedpub.site.source import MAX_POST_BYTES, YAML, Skip, check_text, decode, line_of, split

# Jekyll's Document::DATE_FILENAME_MATCHER (on the name without its extension): `2017-9-1-slug` too.
_FILENAME = re.compile(r"^(\d{2,4}-\d{1,2}-\d{1,2})-(.*)$")
# Ruby's `\s` (String#split, normalize_whitespace) is ASCII white space: an ideographic space stays in a tag or a
# title, as Jekyll keeps it. Line separators are broken too: a title goes into a mail header.
_SPACES = re.compile(r"[ \t\n\v\f\r\x1c-\x1f\x85\u2028\u2029]+")
_RUBY_SPLIT = re.compile(r"[ \t\n\v\f\r]+")


# Front matter keys whose values `Post` holds in its own fields (Liquid's `page` gives those).
_FIELDS = frozenset(("title", "date", "categories", "category", "tags", "tag", "excerpt", "reading_time"))
_MORE = "<!--more-->"
# A Liquid tag or output (closing delimiters searched only up to the next opening one: unclosed runs stay linear).
LIQUID_MARKUP = re.compile(r"\{%(?:(?!\{%).)*?%\}|\{\{(?:(?!\{\{).)*?\}\}", re.S)
_TAG_NAME = re.compile(r"\{%-?\s*(\w+)")
# `site`, `site.title`, `site.data.authors`: the variable and up to two names below it.
_SITE_VARIABLE = re.compile(r"\bsite\b(?:\s*\.\s*([\w-]+)(?:\s*\.\s*([\w-]+))?)?")
# What `Post.reads` holds besides `site` keys: everything the site has (an include may read anything, as may
# Liquid handed the whole `site`), and the files beside the post (`include_relative`: not watched).
READS_EVERYTHING = "*"
READS_BESIDE = "include_relative"
# The tags that name other posts or files (`links.py`), outside the blocks Jekyll does not render.
_NOT_RENDERED = re.compile(r"\{%-?\s*(raw|comment)\s*-?%\}.*?\{%-?\s*end\1\s*-?%\}", re.S)
_LINK_TAG = re.compile(r"\{%-?\s*(post_url|link|include|include_relative)\s(.*?)-?%\}", re.S)
# `site` keys made from every post (`time` is the newest post's date); `post_url` and `link` read as `posts`.
POSTS_VARIABLES = frozenset(("posts", "categories", "tags", "time", READS_EVERYTHING))


@pickled_as_tuple
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
    reads: tuple[str, ...]       # what its Liquid reads of the site: `site` keys ('title', 'data.authors', 'posts'),
                                 # READS_EVERYTHING, READS_BESIDE; sorted (it is part of cache keys)
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
    # Each `post_url`, `link`, `include` and `include_relative`: (tag, argument, line of the file).
    links: tuple[tuple[str, str, int], ...] = ()

    @property
    def reads_site(self) -> bool:
        """Its Liquid reads the site: config values, data, includes or other posts."""
        return bool(self.reads)

    @property
    def reads_posts(self) -> bool:
        """Its Liquid reads other posts (`site.posts`, `{% post_url %}`, an include…)."""
        return not POSTS_VARIABLES.isdisjoint(self.reads)


def read_post(file: PostFile, root: Path, shown: str, config: Config, warnings: list[Problem]) -> Post | None:
    """One file below `root` (the resolved posts folder) → a Post, None when unpublished, or `Skip`.
    `shown` names the file in messages; warnings are appended to `warnings`."""
    path = Path(file.path)
    if file.symlink and not path.resolve().is_relative_to(root):
        raise Skip(Problem(shown, None, message("symlink_outside_posts"),
                           message("expected_post_inside_posts_dir")))
    stem = file.relative.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    if not file.draft and "_posts" in file.relative.split("/")[:-1] and not _FILENAME.match(stem):
        warnings.append(Problem(shown, None, message("not_published_undated_name"),
                                message("expected_dated_file_name"), warning=True))
        return None
    text = decode(path, shown)
    check_text(text, shown)
    meta, body, body_line = split(text, shown, warnings)
    if config.front_matter_defaults:   # Jekyll 4 reads drafts into the posts collection: their type is `posts`
        meta = with_defaults(defaults_for(config.front_matter_defaults, file.relative, "posts"), meta)
    front = _FrontMatter(shown, text, meta, warnings)
    if meta.get("published") is False:
        return None
    named = _FILENAME.match(stem)
    title = _title(front, urls.post_slug(named[2] if named else stem))
    date, updated = _dates(front, stem, config.site.tz, file.mtime_ns / 1e9 if file.draft else None)
    categories = _categories(front, _folder_categories(file.relative))
    tags = _tags(front)
    author = _author(meta.get("author")) or config.site.author
    excerpt, explicit = _excerpt(front, body, config.site.excerpt_separator)
    minutes = _reading_time(front)
    site_path, id_path = _permalinks(front, stem, date.astimezone(config.site.tz), categories, config)
    url = urls.absolute(config.site.root_url, site_path)
    entry_id = _entry_id(front, urls.absolute(config.site.root_url, id_path))
    return Post(source=shown, title=title, date=date, updated=updated, categories=categories, tags=tags,
                author=author, file=file.path, body_line=body_line, excerpt=excerpt, excerpt_explicit=explicit,
                reading_time=minutes, reads=liquid_reads(body, excerpt), path=site_path, url=url,
                id=entry_id, image=_image(meta.get("image"), url, config),
                image_size=_image_size(meta.get("image")), image_alt=_image_alt(meta.get("image")), name=stem,
                matter={key: value for key, value in meta.items() if key not in _FIELDS},
                links=link_tags(body, body_line))


def liquid_reads(*texts: str) -> tuple[str, ...]:
    """What the Liquid in `texts` reads of the site (`Post.reads`): a post is rendered again when that changes."""
    reads = set()
    # Most posts hold no Liquid: searching a long body costs ~50 µs (a second of a 10,000-post cold build).
    for text in texts:
        if "{{" not in text and "{%" not in text:
            continue
        for markup in LIQUID_MARKUP.findall(text):
            tag = _TAG_NAME.match(markup)
            if tag and tag[1] == READS_BESIDE:
                reads.update((READS_EVERYTHING, READS_BESIDE))
            elif tag and tag[1] == "include":
                reads.add(READS_EVERYTHING)
            elif tag and tag[1] in ("post_url", "link"):
                reads.add("posts")
            for name, key in _SITE_VARIABLE.findall(markup):
                reads.add(f"data.{key}" if name == "data" and key else name or READS_EVERYTHING)
    return tuple(sorted(reads))


def link_tags(text: str, first_line: int) -> tuple[tuple[str, str, int], ...]:
    """Each `{% post_url %}`, `{% link %}`, `{% include %}` and `{% include_relative %}` Jekyll renders in `text`
    (not inside raw or comment): the tag, its argument and its line (`text` starts at line `first_line`)."""
    if "{%" not in text or ("post_url" not in text and "link" not in text and "include" not in text):
        return ()
    hidden = _NOT_RENDERED.sub(lambda match: "\n" * match[0].count("\n"), text)
    return tuple((tag[1], tag[2].strip(), first_line + hidden.count("\n", 0, tag.start()))
                 for tag in _LINK_TAG.finditer(hidden))


def post_slug(post: Post) -> str:
    """Jekyll's `page.slug`: the front matter's, else the file name's after its date, without trailing dots."""
    stem = post.name
    named = _FILENAME.match(stem)
    return str(post.matter.get("slug") or (named[2] if named else stem).rstrip("."))


def relative_path(post: Post, posts_root: Path) -> str:
    """The post's path below the site (Jekyll's `relative_path`: `en/_posts/2025-01-01-slug.md`)."""
    root = os.path.join(posts_root, "")   # string work: ~10x faster than pathlib's for a site's every post
    return post.file[len(root):].replace(os.sep, "/") if post.file.startswith(root) else Path(post.file).name


def load_body(post: Post) -> str:
    """The post's Markdown body, read again from its file (it is not kept in `Post`)."""
    text = Path(post.file).read_bytes()[: MAX_POST_BYTES + 1].decode("utf-8-sig")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return YAML.split(text)[1].lstrip("\n")


@dataclass(frozen=True)
class _FrontMatter:
    """A post's front matter, with what a message about one of its keys needs."""

    shown: str                  # the file, as named in messages
    text: str                   # the whole file, for line numbers
    values: dict[str, Any]
    warnings: list[Problem]     # a warning is appended here

    def line(self, key: str) -> int:
        match = re.search(rf"^{re.escape(key)}\s*:", self.text, re.M)
        return line_of(self.text, match.start()) if match else 1

    def fail(self, key: str, what: Message, expected: Message | None = None) -> Skip:
        return Skip(Problem(self.shown, self.line(key), what, expected))

    def warn(self, key: str, what: Message, expected: Message | None = None) -> None:
        self.warnings.append(Problem(self.shown, self.line(key), what, expected, warning=True))


def _title(front: _FrontMatter, slug: str) -> str:
    """Jekyll's title: the front matter's, as text (`2017`, `true`); without one (or `false`), the file name's
    slug titleized (`no-title` → `No Title`)."""
    title = front.values.get("title")
    from_name = _one_line(urls.titleize_slug(slug))
    if title is not None and title is not False and not isinstance(title, str | int | float):
        raise front.fail("title", message("title_not_text", value=_ruby_inspect(title)), message("expected_string"))
    text = "" if title is None or title is False else _one_line(ruby_text(title))  # one line: it goes into mail headers
    if text:
        return text
    if not from_name:   # `2025-01-01-.md`: Jekyll publishes an empty title, which a feed entry cannot have
        raise front.fail("title", message("no_title"), message("expected_title_or_name"))
    if title is False:
        front.warn("title", message("title_false", title=from_name), message("expected_quoted_title"))
    elif title is not None:   # Jekyll keeps an empty title; a feed entry must have one
        front.warn("title", message("title_empty", title=from_name), message("expected_title_or_none"))
    return from_name


def _dates(front: _FrontMatter, stem: str, tz: tzinfo, mtime: float | None) -> tuple[datetime, datetime]:
    """Published and updated. Published is the front matter's `date`, else the file name's, else `mtime`
    (given for drafts, which often have neither)."""
    file_date = _file_name_date(front, stem, tz)
    meta = front.values
    if "date" in meta:   # Jekyll reads a `date:` that is there even when empty (and stops at it)
        date = _parse(front, "date", tz)
        if file_date and date.astimezone(tz).date() != file_date.date():
            front.warn("date", message("date_differs", date=f"{date.astimezone(tz):%Y-%m-%d}",
                                               file_date=f"{file_date:%Y-%m-%d}"))
    elif file_date:
        date = file_date
    elif mtime is not None:
        date = datetime.fromtimestamp(mtime, tz)
    else:
        raise Skip(Problem(front.shown, 1, message("no_date"), message("expected_date_or_dated_name")))
    key = next((key for key in ("last_modified_at", "updated") if meta.get(key) is not None), None)
    return date, (max(date, _parse(front, key, tz)) if key else date)


def _file_name_date(front: _FrontMatter, stem: str, tz: tzinfo) -> datetime | None:
    named = _FILENAME.match(stem)
    if not named:
        return None
    try:
        file_date, rolled = read_date(named[1], tz)
        if not 1 < file_date.year < 9999:   # converting to UTC or another zone must not overflow
            raise ValueError(f"year {file_date.year} is out of range")
    except (ValueError, OverflowError) as exc:
        raise Skip(Problem(front.shown, None, message("file_name_date", date=named[1], reason=reason(exc)),
                           message("expected_real_date_in_name"))) from None
    _note_rollover(front, None, named[1], file_date, rolled)
    return file_date


def _parse(front: _FrontMatter, key: str, tz: tzinfo) -> datetime:
    try:
        date, rolled = read_date(front.values[key], tz)
    except (ValueError, OverflowError) as exc:
        raise front.fail(key, message("invalid_date", reason=reason(exc)), message("expected_date_forms")) from None
    _note_rollover(front, key, ruby_text(front.values[key]), date, rolled)
    return date


def _note_rollover(front: _FrontMatter, key: str | None, text: str, date: datetime, rolled: bool) -> None:
    """A warning for a date past its end (30 February), which Ruby's Time, so Jekyll, moves forward."""
    if rolled:
        what = message("date_rolled", text=text, date=f"{date:%Y-%m-%d %H:%M:%S}")
        if key is None:
            front.warnings.append(Problem(front.shown, None, what, message("expected_real_date"), warning=True))
        else:
            front.warn(key, what, message("expected_real_date"))


def _reading_time(front: _FrontMatter) -> int | None:
    """Minutes from the front matter, if it gives a whole number; else computed when rendered."""
    minutes = front.values.get("reading_time")
    if isinstance(minutes, int) and not isinstance(minutes, bool) and minutes > 0:
        return minutes
    if minutes is not None:
        front.warn("reading_time", message("reading_time_ignored", value=_ruby_inspect(minutes)),
                   message("expected_minutes"))
    return None


def _permalinks(front: _FrontMatter, stem: str, date: datetime, categories: tuple[str, ...],
                config: Config) -> tuple[str, str]:
    """The site path (unescaped) from the post's or the site's permalink style, as Jekyll makes it; and the path
    for the default entry id. `date` is in the site's zone.

    Until feedpub followed Jekyll's `:title` (which keeps `_`, and drops a file name's trailing dots), it wrote
    `my_first_post` as `my-first-post`; the links it published then were also the ids of their entries, and a
    reader shows an entry whose id changes again, as new. So the id keeps coming from that old rule: it is the
    link for every post the two rules agree on, and for the others the id every earlier build gave. Derived
    from the file alone, it needs no record of what was published."""
    named = _FILENAME.match(stem)
    name = named[2] if named else stem
    front_slug = front.values.get("slug")
    template = front.values.get("permalink") or config.site.permalink
    if not isinstance(template, str):
        raise front.fail("permalink", message("permalink_not_text", value=_ruby_inspect(template)),
                         message("expected_permalink"))
    slug = urls.post_slug(name, front_slug)
    title = urls.jekyll_slugify(slug, "pretty", cased=True)
    path = urls.expand_permalink(template, date=date, title=title, slug=urls.jekyll_slugify(slug),
                                 categories=categories)
    if path == "/":
        raise front.fail("permalink", message("permalink_empty", permalink=template),
                         message("expected_permalink_title"))
    old_title = urls.legacy_title_slug(str(front_slug) if front_slug else name)
    if old_title == title and urls.slugify(old_title) == urls.jekyll_slugify(slug):
        return path, path
    return path, urls.expand_permalink(template, date=date, title=old_title, slug=urls.slugify(old_title),
                                       categories=categories)


def _entry_id(front: _FrontMatter, url: str) -> str:
    entry_id = front.values.get("id") or front.values.get("guid") or url
    if isinstance(entry_id, bool) or not isinstance(entry_id, str | int):
        raise front.fail("id" if "id" in front.values else "guid",
                         message("id_not_text", value=_ruby_inspect(entry_id)), message("expected_string"))
    return str(entry_id)


def _one_line(text: str) -> str:
    return " ".join(_SPACES.split(text)).strip()


def _categories(front: _FrontMatter, folders: tuple[str, ...]) -> tuple[str, ...]:
    """Jekyll's categories (Document#populate_categories): the folders above `_posts`, then `categories` (a list,
    or a string of names split at white space), then `category` (one name, or a list), each as text."""
    meta = front.values
    value = meta.get("categories")
    if value is not None and not isinstance(value, str | list):
        # Jekyll merges the value into the folders' list: Array#| refuses anything else, and the file is not read.
        raise front.fail("categories", message("categories_unreadable", value=_ruby_inspect(value),
                                                         ruby_class=_ruby_class(value)),
                         message("expected_list_or_words"))
    listed = _RUBY_SPLIT.split(value) if isinstance(value, str) else value or []
    singular = meta.get("category")
    # The singular key's value is flattened before the names are made text; a list inside `categories` is not.
    more = _flattened([singular]) if singular is not None and singular is not False else listed
    return _as_names(front, "categories", [*folders, *listed, *more], flatten=False)


def _tags(front: _FrontMatter) -> tuple[str, ...]:
    """Jekyll's tags (Utils.pluralized_array_from_hash): `tag` (one name, or a list) when set, else `tags` (a list,
    or a string of names split at white space; any other value gives no tags)."""
    meta = front.values
    singular = meta.get("tag")
    if singular is not None and singular is not False:
        return _as_names(front, "tag", [singular])
    value = meta.get("tags")
    if isinstance(value, str):
        return _as_names(front, "tags", _RUBY_SPLIT.split(value))
    if isinstance(value, list):
        return _as_names(front, "tags", value)
    if value is not None:
        front.warn("tags", message("tags_ignored", value=_ruby_inspect(value)), message("expected_list_or_words"))
    return ()


def _as_names(front: _FrontMatter, key: str, items: list[Any], *, flatten: bool = True) -> tuple[str, ...]:
    """Each item as the text Jekyll shows (`false`, `2017`), once; lists inside are flattened as Ruby's
    Array#flatten does (categories are made text first: a list there is refused), null and empty names left out."""
    names = []
    for item in _flattened(items) if flatten else items:
        if item is None:
            continue
        if isinstance(item, str | int | float):
            name = _one_line(ruby_text(item))
            if name:
                names.append(name)
        else:
            raise front.fail(key, message("entry_not_name", key=key, value=_ruby_inspect(item),
                                                ruby_class=_ruby_class(item)), message("expected_strings_or_numbers"))
    return tuple(dict.fromkeys(names))


def _flattened(items: list[Any]) -> list[Any]:
    """Ruby's Array#flatten (without recursion: YAML aliases can nest deeply)."""
    flat = []
    stack = list(reversed(items))
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            flat.append(item)
    return flat


def _ruby_class(value: Any) -> str:
    return {dict: "Hash", list: "Array", bool: "true" if value else "false", int: "Integer", float: "Float",
            bytes: "String"}.get(type(value), type(value).__name__)


def _ruby_inspect(value: Any, depth: int = 0) -> str:
    """A front-matter value as YAML would write it (`false`, `{ai: true}`, `[one, two]`, `'text'`), not as Python's
    repr; text inside a list or a mapping is not quoted; short (a message, not a dump)."""
    if isinstance(value, bytes):
        return f"binary data ({len(value)} bytes)"
    if isinstance(value, str):
        return value if depth else "'" + value.replace("'", "''") + "'"
    if isinstance(value, dict | list) and depth == 3:
        return "…"
    more = ", …" if isinstance(value, dict | list) and len(value) > 20 else ""
    if isinstance(value, dict):
        text = "{" + ", ".join(f"{_ruby_inspect(k, depth + 1)}: {_ruby_inspect(v, depth + 1)}"
                               for k, v in list(value.items())[:20]) + more + "}"
    elif isinstance(value, list):
        text = "[" + ", ".join(_ruby_inspect(v, depth + 1) for v in value[:20]) + more + "]"
    else:
        text = "null" if value is None else ruby_text(value)
    return text if depth or len(text) <= 200 else text[:199] + "…"


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
            raise front.fail("excerpt", message("excerpt_not_text", value=_ruby_inspect(value)),
                             message("expected_markdown_string"))
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
