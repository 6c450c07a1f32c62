"""Jekyll's Liquid filters (jekyll/filters.rb, url_filters.rb, date_filters.rb, grouping_filters.rb), as
python-liquid filter functions. The standard Liquid filters come with python-liquid; where Jekyll
changes one (`sort`, `where`), Jekyll's version is registered over it.

Filters that need the site (`relative_url`, `markdownify`, `where_exp`) take it from the environment
(`JekyllEnvironment`, see `liquid.py`); everything else is a pure function of its arguments.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit
from xml.sax.saxutils import escape

from liquid import Undefined
from liquid.filter import with_context, with_environment

from feedpub import urls
from feedpub.site import typography

# Jekyll's "cjk" word count: Han, Hiragana, Katakana and Hangul characters each count as a word.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_SPACE = re.compile(r"\s+")


def _text(value: object) -> str:
    if value is None or isinstance(value, Undefined):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _items(value: object) -> list[Any]:
    if value is None or isinstance(value, Undefined):
        return []
    if isinstance(value, Mapping):
        return list(value.values())
    if isinstance(value, str) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def _property(item: object, name: str) -> Any:
    """`item.name`, following dots as Liquid does; None when missing."""
    for part in str(name).split("."):
        if isinstance(item, Mapping):
            item = item.get(part)
        else:
            return None
    return item


@with_environment
def relative_url(value: object, *, environment: Any) -> str:
    text = _text(value)
    if urlsplit(text).scheme:
        return text
    return "".join(part if not part or part.startswith("/") else "/" + part
                   for part in (environment.baseurl, text))


@with_environment
def absolute_url(value: object, *, environment: Any) -> str:
    text = _text(value)
    if urlsplit(text).scheme:
        return text
    return environment.url + relative_url(text, environment=environment)


def _date(value: object) -> datetime | date | None:
    if isinstance(value, datetime | date):
        return value
    try:
        return datetime.fromisoformat(_text(value).strip())
    except ValueError:
        return None


def date_to_xmlschema(value: object) -> str:
    moment = _date(value)
    return moment.isoformat() if moment else _text(value)


def date_to_rfc822(value: object) -> str:
    moment = _date(value)
    return moment.strftime("%a, %d %b %Y %H:%M:%S %z") if isinstance(moment, datetime) else _text(value)


def _date_string(value: object, month: str, style: object, kind: object) -> str:
    moment = _date(value)
    if moment is None:
        return _text(value)
    if style != "ordinal":
        return moment.strftime(f"%d {month} %Y")
    day = moment.day
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    if kind == "US":
        return moment.strftime(f"{month} ") + f"{day}{suffix}, {moment.year}"
    return f"{day}{suffix} " + moment.strftime(f"{month} %Y")


def date_to_string(value: object, style: object = None, kind: object = None) -> str:
    return _date_string(value, "%b", style, kind)


def date_to_long_string(value: object, style: object = None, kind: object = None) -> str:
    return _date_string(value, "%B", style, kind)


def xml_escape(value: object) -> str:
    return escape(_text(value), {'"': "&quot;"})


def cgi_escape(value: object) -> str:
    return quote_plus(_text(value))


def uri_escape(value: object) -> str:
    return quote(_text(value), safe="!#$&'()*+,/:;=?@[]~%-._")


def slugify(value: object, mode: object = "default") -> str:
    return urls.jekyll_slugify(_text(value), _text(mode) or "default")


@with_environment
def markdownify(value: object, *, environment: Any) -> str:
    return environment.markdownify(_text(value))


def smartify(value: object) -> str:
    # Jekyll's smartify is kramdown's SmartyPants, the same rules its Markdown applies.
    return typography.smartify(_text(value))


def jsonify(value: object) -> str:
    # Ruby's to_json: no spaces, non-ASCII kept as UTF-8.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_text)


def inspect(value: object) -> str:
    return jsonify(value)


def _matches(found: object, wanted: object) -> bool:
    if isinstance(found, list | tuple):
        return any(_text(item) == _text(wanted) for item in found)
    return _text(found) == _text(wanted)


def where(value: object, name: object, wanted: object = None) -> list[Any]:
    return [item for item in _items(value) if _matches(_property(item, _text(name)), wanted)]


@with_context
def where_exp(value: object, variable: object, expression: object, *, context: Any) -> list[Any]:
    test = context.env.condition(_text(expression))
    return [item for item in _items(value) if test(context, _text(variable), item)]


@with_context
def find_exp(value: object, variable: object, expression: object, *, context: Any) -> Any:
    found = where_exp(value, variable, expression, context=context)
    return found[0] if found else None


def _groups(items: Iterable[Any], key: Callable[[Any], object]) -> list[dict[str, Any]]:
    groups: dict[str, list[Any]] = {}
    for item in items:
        groups.setdefault(_text(key(item)), []).append(item)
    return [{"name": name, "items": members, "size": len(members)} for name, members in groups.items()]


def group_by(value: object, name: object) -> list[dict[str, Any]]:
    return _groups(_items(value), lambda item: _property(item, _text(name)))


@with_context
def group_by_exp(value: object, variable: object, expression: object, *, context: Any) -> list[dict[str, Any]]:
    evaluate = context.env.expression(_text(expression))
    return _groups(_items(value), lambda item: evaluate(context, _text(variable), item))


def sort(value: object, name: object = None, nils: object = "first") -> list[Any]:
    """Jekyll's sort: by a property when given, items without it first (or `"last"`)."""
    items = _items(value)
    if name is None or isinstance(name, Undefined):
        return sorted(items, key=_sort_key)
    present = [item for item in items if _property(item, _text(name)) is not None]
    missing = [item for item in items if _property(item, _text(name)) is None]
    present.sort(key=lambda item: _sort_key(_property(item, _text(name))))
    return present + missing if nils == "last" else missing + present


def _sort_key(value: object) -> tuple[int, Any]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value)
    if isinstance(value, datetime):
        return (1, value.timestamp())
    return (2, _text(value))


@with_environment
def sample(value: object, count: object = 1, *, environment: Any) -> Any:
    """Jekyll picks at random; here the pick is seeded by the post, so a rebuild gives the same bytes."""
    items = _items(value)
    chooser = random.Random(environment.page_seed())
    if count == 1:
        return chooser.choice(items) if items else None
    return chooser.sample(items, min(len(items), max(0, int(count))))


def number_of_words(value: object, mode: object = None) -> int:
    text = _text(value)
    if mode == "cjk" or (mode == "auto" and _CJK.search(text)):
        return len(_CJK.findall(text)) + len(_CJK.sub(" ", text).split())
    return len(text.split())


def array_to_sentence_string(value: object, connector: object = "and") -> str:
    items = [_text(item) for item in _items(value)]
    if len(items) <= 1:
        return "".join(items)
    if len(items) == 2:
        return f"{items[0]} {_text(connector)} {items[1]}"
    return f"{', '.join(items[:-1])}, {_text(connector)} {items[-1]}"


def normalize_whitespace(value: object) -> str:
    return _SPACE.sub(" ", _text(value)).strip()


def to_integer(value: object) -> int:
    try:
        return int(float(_text(value)))
    except ValueError:
        return 0


def push(value: object, item: object) -> list[Any]:
    return [*_items(value), item]


def pop(value: object, count: object = 1) -> list[Any]:
    items = _items(value)
    return items[: max(0, len(items) - int(count))]


def shift(value: object, count: object = 1) -> list[Any]:
    return _items(value)[int(count):]


def unshift(value: object, item: object) -> list[Any]:
    return [item, *_items(value)]


FILTERS: dict[str, Callable[..., Any]] = {
    function.__name__: function for function in (
        relative_url, absolute_url, date_to_xmlschema, date_to_rfc822, date_to_string, date_to_long_string,
        xml_escape, cgi_escape, uri_escape, slugify, markdownify, smartify, jsonify, inspect, where, where_exp,
        find_exp, group_by, group_by_exp, sort, sample, number_of_words, array_to_sentence_string,
        normalize_whitespace, to_integer, push, pop, shift, unshift)
}
