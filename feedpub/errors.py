"""Errors and problems, in the one format every message uses: `path:line: what (expected …)`.

A problem's words are a `Message`: the key of a string in `feedpub/problems.toml` and its fields, put into words
in the operator's language where the problem is shown (`feedpub.strings.problem_line`: the command line, the
daemon's log, the dashboard); `str()` gives the English line (logs of library code, `/healthz`, tests)."""

from __future__ import annotations

from dataclasses import dataclass


class FeedpubError(Exception):
    """A failure that stops a command; its message is already user-facing."""


class ConfigError(FeedpubError):
    """Bad configuration or arguments: the command does nothing (exit 2)."""


@dataclass(frozen=True, slots=True)
class Message:
    """The string `key` of `problems.toml` with its fields: text a library or Jekyll gives (a YAML parser's
    reason, Jekyll's own error) is a field, shown as it is; a field may be a Message of its own."""

    key: str
    fields: tuple[tuple[str, Field], ...] = ()

    def __str__(self) -> str:
        # Imported here: feedpub.strings imports this module (its errors are ConfigErrors).
        from feedpub.strings import english

        return english("problems").message(self)


Field = str | int | float | Message


def message(key: str, /, **fields: Field) -> Message:
    """`message("not_utf8", byte="0xFF")`: the words of `problems.toml`'s `not_utf8`, filled in where shown."""
    return Message(key, tuple(sorted(fields.items())))


def reason(exc: BaseException) -> Message:
    """The words an exception carries: its Message (`ValueError(message(...))`), else its own text as it is."""
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, Message) else message("text", text=str(exc))


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with one input. An error skips that input; a warning keeps it."""

    path: str
    line: int | None
    message: Message
    expected: Message | None = None
    warning: bool = False

    def __str__(self) -> str:
        from feedpub.strings import english, problem_line  # as in Message.__str__

        return problem_line(self, english("problems"))
