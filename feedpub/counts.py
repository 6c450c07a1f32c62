"""Which plural form a count takes in a language, and the counts of feedpub's English log lines ("1 post",
"2 posts", "1 row waits", "2 rows wait").

What an operator or a reader sees in site.language (the command line's summaries, the dashboard, the mail)
counts through `feedpub.strings` (`Strings.count`, the forms in strings.toml), with the same rule. No imports:
the command line loads this before it knows whether it needs Jinja.
"""

from __future__ import annotations

from typing import Literal

PluralForm = Literal["one", "other"]
# CLDR's cardinal rules for whole numbers: Japanese (Chinese, Korean) has one form; English says "1 post",
# "2 posts", and so does every other language until it needs a rule of its own.
_NO_PLURAL = ("ja", "zh", "ko")


def plural_form(language: str, count: int) -> PluralForm:
    """Which plural form `count` takes in `language` (`ja`: always `other`; English: `one` for 1)."""
    if language.split("-")[0].lower() in _NO_PLURAL:
        return "other"
    return "one" if count == 1 else "other"


def counted(number: int, noun: str, plural: str = "") -> str:
    """`number` and `noun` in English, plural unless the number is one (`plural`, else `noun` + "s"); "1 row
    waits": `counted(n, "row waits", "rows wait")`."""
    return f"{number} {noun if plural_form('en', number) == 'one' else plural or noun + 's'}"
