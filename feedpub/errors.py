"""Errors and problems, in the one format every message uses: `path:line: what (expected …)`."""

from __future__ import annotations

from dataclasses import dataclass


class FeedpubError(Exception):
    """A failure that stops a command; its message is already user-facing."""


class ConfigError(FeedpubError):
    """Bad configuration or arguments: the command does nothing (exit 2)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with one input. An error skips that input; a warning keeps it."""

    path: str
    line: int | None
    message: str
    expected: str | None = None
    warning: bool = False

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        kind = "warning: " if self.warning else ""
        tail = f" (expected {self.expected})" if self.expected else ""
        return f"{where}: {kind}{self.message}{tail}"
