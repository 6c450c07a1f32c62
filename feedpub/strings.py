"""Every word feedpub shows a reader or an operator, in site.language, dates and counts included: the
digest mail, its archive pages and feed (`email_templates/strings.toml`), the subscriber web pages
(`feedpub/web/templates/strings.toml`), the feeds index and its stylesheet (`feedpub/site/assets/`), the
dashboard (`feedpub/web/admin/templates/`), the command line's messages (`feedpub/cli/strings.toml`) and the
problems of every input (`feedpub/problems.toml`, shown by the command line, the daemon's log and the dashboard).

Each home's `strings.toml` has one table per language; a `strings.toml` in the operator's templates folder
(`digest.templates_dir` for the mail, `web.templates_dir` for the rest) overrides single strings or adds a
language. A string missing from a language's table is taken from [en], so an operator's new language never
leaves a hole.

A count is a table of plural forms, `post = { one = "{count} post", other = "{count} posts" }`, or one string
where the language has a single form (`post = "記事 {count} 件"`); `feedpub.counts.plural_form` says which form a
number takes.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache, lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from feedpub import templates
from feedpub.counts import plural_form
from feedpub.errors import ConfigError, Message, Problem

if TYPE_CHECKING:
    from feedpub.config import Config

STRINGS_FILE = "strings.toml"
_FALLBACK = "en"
_LINE = re.compile(r"at line (\d+)")
# Not templates, so not a templates.Home: the command line's words live beside the commands, the problems' beside
# the modules that find them.
_SHIPPED = {"cli": Path(__file__).parent / "cli" / STRINGS_FILE, "problems": Path(__file__).parent / "problems.toml"}
Home = templates.Home | Literal["cli", "problems"]


class StringsError(ConfigError):
    """A strings file cannot be read, or a string cannot be filled in."""


class _Unfilled(dict[str, Any]):
    """Fields a string uses but its caller does not know stay as written, e.g. {minutes} in the issue-wide
    strings (it is filled per post)."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@dataclass(frozen=True)
class Strings:
    language: str                    # the table in use: "ja", "en" or an operator's
    texts: Mapping[str, str | Mapping[str, str]]
    month_names: tuple[str, ...]     # empty where the home shows no dates
    sources: str                     # the files read, for messages

    def text(self, name: str, /, **fields: Any) -> str:
        """The string `name` with `fields` filled in (a count's `other` form)."""
        value = self.texts[name]
        return self._fill(name, value if isinstance(value, str) else value["other"], fields)

    def count(self, name: str, count: int, /, **fields: Any) -> str:
        """The count `name` in the form `count` takes in this language: `2 posts`, `記事 2 件`."""
        value = self.texts[name]
        if isinstance(value, str):
            return self._fill(name, value, {**fields, "count": count})
        form = plural_form(self.language, count)
        return self._fill(name, value.get(form, value["other"]), {**fields, "count": count})

    def message(self, words: Message) -> str:
        """A problem's words (`feedpub.errors.Message`), its Messages within filled in first; a count by `count`."""
        fields = {name: self.message(value) if isinstance(value, Message) else value for name, value in words.fields}
        value = self.texts[words.key]
        if not isinstance(value, str):
            value = value.get(plural_form(self.language, fields["count"]), value["other"]) if "count" in fields \
                else value["other"]
        return self._fill(words.key, value, fields)

    def all(self, **fields: Any) -> dict[str, str]:
        """Every string with the fields known for the whole issue or page filled in (the template's `t`)."""
        return {name: self.text(name, **fields) for name in self.texts}

    def _fill(self, name: str, text: str, fields: dict[str, Any]) -> str:
        try:
            return text.format_map(_Unfilled(fields))
        except (ValueError, IndexError, AttributeError) as exc:
            raise StringsError(f"{self.sources}: [{self.language}] {name}: {exc} "
                               "(expected text with fields such as {title} or {count})") from exc

    def date(self, day: date) -> str:
        """`7 December 2026`, `2026年12月7日`: the `date` string of the language."""
        return self.text("date", year=day.year, month=day.month, day=day.day,
                         month_name=self.month_names[day.month - 1])


def load_strings(home: Home, language: str, override: Path | None) -> Strings:
    """The strings of `language` for `home`: the shipped table, overridden by `override`/strings.toml."""
    files = [_SHIPPED[home] if home in _SHIPPED else templates.folder(home) / STRINGS_FILE]
    if override is not None and (override / STRINGS_FILE).is_file():
        files.append(override / STRINGS_FILE)
    tables = [_read(path) for path in files]
    chosen = _language(language, tables)
    merged: dict[str, Any] = {}
    for table in tables:
        merged.update(table.get(_FALLBACK, {}))
    for table in tables:
        merged.update(table.get(chosen, {}))
    sources = ", ".join(str(path) for path in files)
    months = merged.pop("month_names", [])
    if not (isinstance(months, list) and len(months) in (0, 12) and all(isinstance(m, str) for m in months)):
        raise StringsError(f"{sources}: [{chosen}] month_names: {months!r} "
                           "(expected a list of 12 strings, January first)")
    for name, value in merged.items():
        if not (isinstance(value, str) or _is_count(value)):
            raise StringsError(f"{sources}: [{chosen}] {name}: {value!r} (expected a string, or plural forms "
                               'such as { one = "{count} post", other = "{count} posts" })')
    return Strings(chosen, MappingProxyType(merged), tuple(months), sources)


def operator_strings(config: Config, home: Home) -> Strings:
    """The strings of `home` as the operator reads them: in site.language, web.templates_dir's strings.toml over
    the shipped ones (the command line, the daemon's log, problems)."""
    web = config.web
    return load_strings(home, config.site.language, config.path(web.templates_dir) if web.templates_dir else None)


@cache
def english(home: Home) -> Strings:
    """The shipped English strings of `home`: `str(problem)`, and what machines read (`/healthz`)."""
    return load_strings(home, _FALLBACK, None)


def problem_line(problem: Problem, strings: Strings) -> str:
    """`path:line: what (expected …)` in the language of `strings` (a `load_strings("problems", …)`)."""
    where = f"{problem.path}:{problem.line}" if problem.line else problem.path
    kind = strings.text("warning") if problem.warning else ""
    tail = strings.text("expected", expected=strings.message(problem.expected)) if problem.expected else ""
    return f"{where}: {kind}{strings.message(problem.message)}{tail}"


def _is_count(value: object) -> bool:
    return (isinstance(value, dict) and "other" in value and set(value) <= {"one", "other"}
            and all(isinstance(form, str) for form in value.values()))


def _language(setting: str, tables: list[dict[str, Any]]) -> str:
    """`ja-JP` → `ja` (the exact tag first, then its language); no table for either → English."""
    wanted = setting.strip().lower().replace("_", "-")
    for candidate in (wanted, wanted.split("-")[0]):
        if any(candidate in table for table in tables):
            return candidate
    return _FALLBACK


def _read(path: Path) -> dict[str, Any]:
    """The file's tables, parsed once while it is unchanged: every mail variant and every web app asks again."""
    try:
        found = path.stat()
    except OSError as exc:
        raise StringsError(f"{path}: cannot be read: {exc} (expected a UTF-8 TOML file)") from exc
    return _parsed(path, found.st_mtime_ns, found.st_size)


@lru_cache(maxsize=64)
def _parsed(path: Path, _mtime_ns: int, _size: int) -> dict[str, Any]:
    try:
        tables = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise StringsError(f"{path}: cannot be read: {exc} (expected a UTF-8 TOML file)") from exc
    except tomllib.TOMLDecodeError as exc:
        line = _LINE.search(str(exc))
        raise StringsError(f"{path}:{line[1] if line else 1}: {exc} "
                                  '(expected TOML tables of strings, e.g. [ja] read_more = "続きを読む")') from exc
    for language, table in tables.items():
        if not isinstance(table, dict):
            raise StringsError(f"{path}: {language}: {table!r} (expected a table of strings, e.g. [{language}])")
    return tables
