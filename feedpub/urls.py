"""Slugs and permalinks, matching what Jekyll publishes for the same post."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from itertools import groupby
from urllib.parse import quote, unquote

from feedpub.errors import Message, message

STYLES = {
    "date": "/:categories/:year/:month/:day/:title:output_ext",
    "pretty": "/:categories/:year/:month/:day/:title/",
    "ordinal": "/:categories/:year/:y_day/:title:output_ext",
    "weekdate": "/:categories/:year/W:week/:short_day/:title:output_ext",
    "none": "/:categories/:title:output_ext",
}
_PLACEHOLDER = re.compile(r":(categories|slugified_categories|year|month|day|i_month|i_day|"
                          r"short_year|short_month|long_month|y_day|w_year|week|w_day|short_day|long_day|hour|"
                          r"minute|second|title|slug|output_ext)\b")
_DEFAULT_UNSAFE = re.compile(r"(?:[^\w]|_)+")
# Jekyll's Utils.slugify modes (jekyll/utils.rb): what each keeps besides letters, marks and decimal digits
# (Ruby's [\p{L}\p{M}\p{Nd}]; Python's \w differs: it has `_`, other numbers such as ① and 〇, and no marks).
_JEKYLL_KEPT = {"default": "", "pretty": "._~!$&'()+,;=@"}
_JEKYLL_ASCII = {kept: re.compile(f"[^A-Za-z0-9{re.escape(kept)}]+") for kept in _JEKYLL_KEPT.values()}
_SLUGIFY_MODES = ("default", "pretty", "raw", "ascii", "latin")
_SPACES = re.compile(r"\s+", re.ASCII)   # Ruby's \s: ASCII white space only (an ideographic space stays)
_NOT_ALPHANUMERIC = re.compile(r"[^A-Za-z0-9]+")
# feedpub before it kept `_` in `:title` as Jekyll does: the paths it made are still the entry ids of the posts it
# published (see reader._entry_id), so this rule stays exactly as it was.
_LEGACY_PRETTY_UNSAFE = re.compile(r"(?:[^\w.~!$&'()+,;=@]|_)+")
# RFC 3986 path characters that need no escaping (Addressable's PATH class, as Jekyll uses).
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def slugify(name: str) -> str:
    """A URL slug that keeps Unicode: NFKC, lower case, runs of non-letters/digits → '-'."""
    text = unicodedata.normalize("NFKC", str(name)).lower()
    return _DEFAULT_UNSAFE.sub("-", text).strip("-")


def jekyll_slugify(text: str, mode: str = "default", *, cased: bool = False) -> str:
    """Jekyll's Utils.slugify: runs of what `mode` does not keep → one '-', one '-' off each end, lower case unless
    `cased`. Modes: default, pretty, raw (only spaces replaced), ascii, latin (accents dropped first); any other
    (e.g. 'none') leaves the text as it is."""
    if mode not in _SLUGIFY_MODES:
        return text if cased else text.lower()
    if mode == "latin":   # Jekyll transliterates; dropping the accents NFD splits off gives the same for Latin
        text = "".join(c if c.isascii() else "" if unicodedata.combining(c) else "?"
                       for c in unicodedata.normalize("NFD", text))
    if mode == "raw":
        slug = _SPACES.sub("-", text)
    elif mode == "ascii":
        slug = _NOT_ALPHANUMERIC.sub("-", text)
    else:
        slug = _hyphenated(text, _JEKYLL_KEPT.get(mode, ""))
    slug = slug.removeprefix("-").removesuffix("-")
    return slug if cased else slug.lower()


def _hyphenated(text: str, kept: str) -> str:
    """Runs of characters that are not letters, marks, decimal digits or in `kept` → '-'."""
    if text.isascii():
        return _JEKYLL_ASCII[kept].sub("-", text)
    runs = groupby(text, lambda c: c.isalpha() or c.isdecimal() or c in kept or unicodedata.category(c)[0] == "M")
    return "".join("".join(run) if keep else "-" for keep, run in runs)


def post_slug(name: str, front_matter_slug: object = None) -> str:
    """What Jekyll makes `:title` and `:slug` of: the front matter's `slug`, else the file name's (after the date,
    without the extension and without trailing dots). NFC, as Jekyll's links come out (Addressable normalises
    them): a name typed on macOS arrives decomposed."""
    slug = str(front_matter_slug) if front_matter_slug else name.rstrip(".")
    return unicodedata.normalize("NFC", slug)


def legacy_title_slug(name: str) -> str:
    """`:title` as feedpub made it before it kept `_` (and trailing dots) as Jekyll does; for entry ids only."""
    return _LEGACY_PRETTY_UNSAFE.sub("-", unicodedata.normalize("NFC", name)).strip("-")


def assign_slugs(sources: Mapping[str, str], overrides: Mapping[str, str],
                 ) -> tuple[dict[str, str], list[Message], list[Message]]:
    """Map each name to its slug; `sources` maps a name to where it was first seen (a post path), in the order of
    precedence: a name earlier there keeps a slug that later names share.

    Returns the slugs; one problem per name whose slug is empty or unusable (it gets none); and one note per name
    whose slug another name took first: it gets the slug with `-2` (`-3`…) appended, one no name has."""
    wanted = {name: overrides.get(name) or slugify(name) for name in sources}
    taken = set(wanted.values())
    slugs: dict[str, str] = {}
    owner: dict[str, str] = {}
    problems: list[Message] = []
    notes: list[Message] = []
    for name, slug in wanted.items():
        if not slug or "/" in slug or slug in (".", ".."):
            problems.append(message("no_usable_slug", name=name, source=sources[name]))
            continue
        if slug in owner:
            first = owner[slug]
            number = 2
            while f"{slug}-{number}" in taken:
                number += 1
            notes.append(message("slug_shared", name=name, source=sources[name], first=first,
                                 first_source=sources[first], slug=slug, numbered=f"{slug}-{number}"))
            slug = f"{slug}-{number}"
            taken.add(slug)
        owner[slug] = name
        slugs[name] = slug
    return slugs, problems, notes


def expand_permalink(template: str, *, date: datetime, title: str, slug: str, categories: Iterable[str],
                     output_ext: str = ".html") -> str:
    """A permalink path (not escaped) for a post: a style name or a pattern with placeholders; `title` and `slug`
    are the values of `:title` and `:slug`.

    `date` must already be in the site's time zone: Jekyll builds URLs from local time.
    """
    values = placeholder_values(date=date, title=title, slug=slug, categories=categories, output_ext=output_ext)
    path = _PLACEHOLDER.sub(lambda m: values[m[1]](), STYLES.get(template, template))
    return sanitize_path(path)


def placeholder_values(*, date: datetime, title: str, slug: str, categories: Iterable[str],
                       output_ext: str) -> dict[str, Callable[[], str]]:
    """The value of each placeholder a post's permalink can hold (Jekyll's UrlDrop), made only when asked for: this
    runs once per post on a cold build."""
    cats = list(dict.fromkeys(str(c).lower() for c in categories))
    return {
        "categories": lambda: "/".join(cats),
        "slugified_categories": lambda: "/".join(slugify(c) for c in cats),
        "year": lambda: f"{date.year:04d}",
        "month": lambda: f"{date.month:02d}",
        "day": lambda: f"{date.day:02d}",
        "i_month": lambda: str(date.month),
        "i_day": lambda: str(date.day),
        "short_year": lambda: f"{date.year % 100:02d}",
        "short_month": lambda: date.strftime("%b"),
        "long_month": lambda: date.strftime("%B"),
        "y_day": lambda: f"{date.timetuple().tm_yday:03d}",
        "week": lambda: f"{date.isocalendar().week:02d}",
        "w_year": lambda: str(date.isocalendar().year),
        "w_day": lambda: str(date.isocalendar().weekday),
        "short_day": lambda: date.strftime("%a"),
        "long_day": lambda: date.strftime("%A"),
        "hour": lambda: f"{date.hour:02d}",
        "minute": lambda: f"{date.minute:02d}",
        "second": lambda: f"{date.second:02d}",
        "title": lambda: title,
        "slug": lambda: slug,
        "output_ext": lambda: output_ext,
    }


def sanitize_path(path: str) -> str:
    """Jekyll's URL sanitising: no '..' segments, no doubled slashes, one leading slash. A backslash
    separates segments too: Windows servers and some proxies read `..\\` as a parent folder."""
    path = path.replace("\\", "/")
    # `%2e%2e` is a parent folder to every URL parser, so it goes too.
    segments = [s for s in path.split("/") if unquote(s) not in ("", ".", "..")]
    trailing = "/" if path.endswith("/") and segments else ""
    return "/" + "/".join(segments) + trailing


def escape_path(path: str) -> str:
    """Percent-encode a path for use in a URL (Unicode → UTF-8 %XX; existing %XX kept)."""
    return quote(path, safe=_PATH_SAFE + "%")


def absolute(root_url: str, path: str) -> str:
    """`root_url` (site url + baseurl) joined with an unescaped site path."""
    return root_url.rstrip("/") + escape_path(path if path.startswith("/") else "/" + path)


def titleize_slug(slug: str) -> str:
    """Jekyll's Utils.titleize_slug, the title of a post without one: `no-title` → `No Title`."""
    words = slug.split("-")
    while words and not words[-1]:   # Ruby's String#split drops trailing empty fields
        words.pop()
    return " ".join(word.capitalize() for word in words)
