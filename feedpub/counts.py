"""Counts in what feedpub prints: "1 post", "2 posts", "1 row waits", "2 rows wait"."""

from __future__ import annotations


def counted(number: int, noun: str, plural: str = "") -> str:
    """`number` and `noun`, plural unless the number is one (`plural`, else `noun` + "s"); "1 row waits":
    `counted(n, "row waits", "rows wait")`."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"
