"""CSV files as a spreadsheet opens them: the one writer of every CSV feedpub makes (`subscribers list` and
`export`, `bounces list`, the dashboard's export) and the reading of a cell that writer made.

A cell beginning with `=`, `+`, `-` or `@` is a formula to Excel, LibreOffice and Google Sheets, and so is
one beginning with a tab or carriage return that some of them skip first: a name such as `=HYPERLINK(…)`
typed into the subscribe form would run on the operator's machine. Such a cell is written with an
apostrophe before it (OWASP's advice), which the spreadsheet shows as text; reading removes exactly that
apostrophe, so `-dev@example.com` comes back as it was, and stays text in every CSV written from it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> str:
    """`value` as a CSV cell no spreadsheet runs (None: empty)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def read_cell(text: str) -> str:
    """A cell as `cell` was given it."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_STARTS) else text


class Writer:
    """csv.writer whose every cell goes through `cell`; lines end in \n."""

    def __init__(self, out: TextIO) -> None:
        self._writer = csv.writer(out, lineterminator="\n")
        # Python's writer quotes a cell holding \n (the line end) but not one holding a lone \r, which
        # every reader takes for a line end: a row with one has all its cells quoted.
        self._quoted = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def writerow(self, values: Iterable[Any]) -> None:
        cells = [cell(value) for value in values]
        (self._quoted if any("\r" in each for each in cells) else self._writer).writerow(cells)
