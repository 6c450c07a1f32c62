"""Every word feedpub shows a reader, in site.language, dates included: the digest mail, its archive
pages and feed (`email_templates/strings.toml`), and the subscriber web pages
(`feedpub/web/templates/strings.toml`).

Each home's `strings.toml` has one table per language; a `strings.toml` in the operator's templates folder
(`digest.templates_dir`, `web.templates_dir`) overrides single strings or adds a language. A string missing
from a language's table is taken from [en], so an operator's new language never leaves a hole.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any

from feedpub import templates
from feedpub.errors import ConfigError

STRINGS_FILE = "strings.toml"
_FALLBACK = "en"
_LINE = re.compile(r"at line (\d+)")


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
    texts: Mapping[str, str]
    month_names: tuple[str, ...]     # empty where the home shows no dates
    sources: str                     # the files read, for messages

    def text(self, name: str, **fields: Any) -> str:
        """The string `name` with `fields` filled in."""
        try:
            return self.texts[name].format_map(_Unfilled(fields))
        except (ValueError, IndexError, AttributeError) as exc:
            raise StringsError(f"{self.sources}: [{self.language}] {name}: {exc} "
                                      "(expected text with fields such as {title} or {count})") from exc

    def all(self, **fields: Any) -> dict[str, str]:
        """Every string with the fields known for the whole issue or page filled in (the template's `t`)."""
        return {name: self.text(name, **fields) for name in self.texts}

    def date(self, day: date) -> str:
        """`7 December 2026`, `2026年12月7日`: the `date` string of the language."""
        return self.text("date", year=day.year, month=day.month, day=day.day,
                         month_name=self.month_names[day.month - 1])


def load_strings(home: templates.Home, language: str, override: Path | None) -> Strings:
    """The strings of `language` for `home`: the shipped table, overridden by `override`/strings.toml."""
    files = [templates.folder(home) / STRINGS_FILE]
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
        if not isinstance(value, str):
            raise StringsError(f"{sources}: [{chosen}] {name}: {value!r} (expected a string)")
    return Strings(chosen, MappingProxyType(merged), tuple(months), sources)


def _language(setting: str, tables: list[dict[str, Any]]) -> str:
    """`ja-JP` → `ja` (the exact tag first, then its language); no table for either → English."""
    wanted = setting.strip().lower().replace("_", "-")
    for candidate in (wanted, wanted.split("-")[0]):
        if any(candidate in table for table in tables):
            return candidate
    return _FALLBACK


def _read(path: Path) -> dict[str, Any]:
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
