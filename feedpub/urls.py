"""Slugs and permalinks, matching what Jekyll publishes for the same post."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from urllib.parse import quote, unquote

STYLES = {
    "date": "/:categories/:year/:month/:day/:title:output_ext",
    "pretty": "/:categories/:year/:month/:day/:title/",
    "ordinal": "/:categories/:year/:y_day/:title:output_ext",
    "weekdate": "/:categories/:year/W:week/:short_day/:title:output_ext",
    "none": "/:categories/:title:output_ext",
}
_PLACEHOLDER = re.compile(r":(categories|slugified_categories|year|month|day|i_month|i_day|"
                          r"short_year|short_month|long_month|y_day|week|short_day|long_day|hour|"
                          r"minute|second|title|slug|output_ext)\b")
# Jekyll's "pretty" slugify mode keeps these besides letters, marks and digits.
_PRETTY_UNSAFE = re.compile(r"(?:[^\w.~!$&'()+,;=@]|_)+")
_DEFAULT_UNSAFE = re.compile(r"(?:[^\w]|_)+")
# RFC 3986 path characters that need no escaping (Addressable's PATH class, as Jekyll uses).
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def slugify(name: str) -> str:
    """A URL slug that keeps Unicode: NFKC, lower case, runs of non-letters/digits → '-'."""
    text = unicodedata.normalize("NFKC", str(name)).lower()
    return _DEFAULT_UNSAFE.sub("-", text).strip("-")


def jekyll_title_slug(name: str) -> str:
    """Jekyll's `:title`: slugify in 'pretty' mode, case kept."""
    return _PRETTY_UNSAFE.sub("-", unicodedata.normalize("NFC", name)).strip("-")


def assign_slugs(sources: Mapping[str, str], overrides: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Map each name to its slug; `sources` maps a name to where it was first seen (a post path).

    Returns the slugs and one message per name whose slug is empty or taken by another name; such
    names get no slug.
    """
    slugs: dict[str, str] = {}
    owner: dict[str, str] = {}
    problems: list[str] = []
    for name in sorted(sources):
        slug = overrides.get(name) or slugify(name)
        if not slug or "/" in slug or slug in (".", ".."):
            problems.append(f"{name!r} (from {sources[name]}) has no usable URL slug "
                            f"(add one under [feeds.slugs])")
        elif slug in owner:
            other = owner[slug]
            problems.append(f"{name!r} (from {sources[name]}) and {other!r} (from {sources[other]}) "
                            f"both have the URL slug {slug!r} (give one a different slug under [feeds.slugs])")
        else:
            owner[slug] = name
            slugs[name] = slug
    return slugs, problems


def expand_permalink(template: str, *, date: datetime, title_slug: str, categories: Iterable[str],
                     output_ext: str = ".html") -> str:
    """A permalink path (not escaped) for a post: a style name or a pattern with placeholders.

    `date` must already be in the site's time zone: Jekyll builds URLs from local time.
    """
    pattern = STYLES.get(template, template)
    cats = list(dict.fromkeys(str(c).lower() for c in categories))
    # Computed only for the placeholders the pattern uses: this runs once per post on a cold build.
    values: dict[str, Callable[[], str]] = {
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
        "short_day": lambda: date.strftime("%a"),
        "long_day": lambda: date.strftime("%A"),
        "hour": lambda: f"{date.hour:02d}",
        "minute": lambda: f"{date.minute:02d}",
        "second": lambda: f"{date.second:02d}",
        "title": lambda: title_slug,
        "slug": lambda: slugify(title_slug),
        "output_ext": lambda: output_ext,
    }
    path = _PLACEHOLDER.sub(lambda m: values[m[1]](), pattern)
    return sanitize_path(path)


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
