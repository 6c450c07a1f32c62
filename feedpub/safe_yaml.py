"""Every YAML text feedpub reads — a post's front matter, a Jekyll site's `_config.yml` (+ `_config.*.yml`) and
`_data/` files — through one loader and one guard.

The loader is libyaml's safe one (5× PyYAML's); its errors name the line of their cause. The guard bounds the
values a document expands to through aliases: nine levels of nine aliases ("billion laughs") are 387 million
values from 600 bytes, which any code walking them (a cache fingerprint, a Liquid loop, a message) would
expand until the memory runs out.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml

from feedpub.errors import Message, message

# Values a front matter may expand to (a real post has a few dozen). A data or config file may hold many more:
# as many as it has characters on top of this, which no file reaches without aliases repeated over and over.
MAX_VALUES = 10_000
_ALIAS = re.compile(r"(?<![^\s\[{,])\*[^\s,\[\]{}]+")
# Errors whose cause is where something opened (a quote, a key, a '[' or '{') rather than where the scanner
# gave up looking for its end.
_OPENED = ("while scanning a quoted scalar", "while scanning a simple key", "while parsing a flow")


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    pass


class _DatesAsText(_Loader):
    """Without YAML's timestamp type: every date arrives as text and goes through one parser (`dates.py`),
    instead of PyYAML's mix of str (`+0000`), naive, aware and date values."""


_DatesAsText.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _Loader.yaml_implicit_resolvers.items()
}


class InvalidYaml(ValueError):
    """A YAML text that cannot be read: `line` (1-based, in the text; None: not known) and what is wrong."""

    def __init__(self, line: int | None, what: str | Message) -> None:
        super().__init__(str(what))
        self.line, self.what = line, what     # libyaml's words, or feedpub's (a Message, shown in site.language)


class UnsafeYaml(InvalidYaml):
    """A YAML text read, whose value `guard` refuses."""


def load(text: str, *, dates_as_text: bool = False, max_values: int | None = None,
         check: Callable[[str], Message | None] | None = None) -> Any:
    """The value of a YAML document: InvalidYaml when it cannot be read, UnsafeYaml when `guard` refuses it
    (`max_values`: by default MAX_VALUES plus the text's length; `check`: see `guard`)."""
    try:
        value = yaml.load(text, Loader=_DatesAsText if dates_as_text else _Loader)
    except yaml.MarkedYAMLError as exc:
        raise InvalidYaml(*_cause(exc, text)) from None
    except yaml.YAMLError as exc:
        raise InvalidYaml(1, str(exc).splitlines()[0]) from None
    except RecursionError:
        raise InvalidYaml(1, message("nested_too_deeply")) from None
    limit = MAX_VALUES + len(text) if max_values is None else max_values
    unsafe = guard(value, limit, check)
    if unsafe:
        alias = _ALIAS.search(text) if unsafe.key == "yaml_expands" else None
        raise UnsafeYaml(text.count("\n", 0, alias.start()) + 1 if alias else None, unsafe)
    return value


def _cause(exc: yaml.MarkedYAMLError, text: str) -> tuple[int, str]:
    """The line where the error was caused, and what it is."""
    problem, context = exc.problem_mark, exc.context_mark
    at_end = problem is not None and not text[problem.index:].strip()
    mark = context if context and (at_end or (exc.context or "").startswith(_OPENED)) else problem
    what = ", ".join(part for part in (exc.context, exc.problem) if part) or str(exc).splitlines()[0]
    return (mark.line + 1 if mark else 1), what


def guard(value: Any, limit: int, check: Callable[[str], Message | None] | None = None) -> Message | None:
    """Why `value` must not be used — it expands to more than `limit` values (aliases repeated or recursive), or
    `check` finds a string wrong — or None. Walks at most `limit` values, an aliased one each time it appears."""
    pending: list[Any] = [value]
    for _ in range(limit):
        if not pending:
            return None
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif check is not None and isinstance(value, str) and (wrong := check(value)):
            return wrong
    return None if not pending else message("yaml_expands", limit=limit)
