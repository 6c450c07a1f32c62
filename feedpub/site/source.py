"""A post file's text: read within the size limit and decoded, checked for what feeds cannot carry, and
split into its front matter (YAML, dates left as text) and its Markdown body. A file that cannot be
published raises `Skip` with the Problem that says why.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import frontmatter

from feedpub import safe_yaml
from feedpub.errors import Message, Problem, message

# A post is an article, not a data dump: Markdown rendering is superlinear, so bigger files are refused
# before they are read (a 1 MB post renders in ~4 s here).
MAX_POST_BYTES = 1_000_000
YAML = frontmatter.YAMLHandler()
# A top-level key of the front matter, for the line of a key written twice.
_TOP_KEY = re.compile(r"^([A-Za-z_][\w-]*)[ \t]*:(?:[ \t]|$)", re.M)
# XML 1.0 cannot carry these, and lone surrogates (which YAML escapes can make) cannot be encoded: a post
# containing them is refused here, and everything feedpub emits is stripped of them (`markup`).
INVALID_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


class Skip(Exception):
    """One post cannot be published; carries the Problem."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem


def decode(file: Path, shown: str) -> str:
    """The text of a UTF-8 file within the size limit, with universal newlines."""
    try:
        if not file.is_file():
            raise Skip(Problem(shown, None, message("not_regular_file"), message("expected_markdown_file")))
        with file.open("rb") as handle:
            raw = handle.read(MAX_POST_BYTES + 1)
    except OSError as exc:
        raise Skip(Problem(shown, None, message("cannot_read_file", reason=exc.strerror or str(exc)))) from None
    if len(raw) > MAX_POST_BYTES:
        raise Skip(Problem(shown, None, message("post_too_big", limit=MAX_POST_BYTES),
                            message("expected_smaller_post")))
    if b"\x00" in raw:
        raise Skip(Problem(shown, raw.count(b"\n", 0, raw.index(b"\x00")) + 1,
                            message("binary_data"), message("expected_utf8_text_file")))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise Skip(Problem(shown, line, message("not_utf8", byte=f"0x{raw[exc.start]:02X}"),
                            message("expected_utf8_resave"))) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def check_text(text: str, shown: str) -> None:
    """Refuse an empty post, or one with a character XML cannot carry."""
    if not text.strip():
        raise Skip(Problem(shown, 1, message("empty_file"), message("expected_front_matter_then_markdown")))
    bad = INVALID_XML.search(text)
    if bad:
        raise Skip(Problem(shown, line_of(text, bad.start()),
                           message("control_character", character=f"U+{ord(bad[0]):04X}"),
                           message("expected_printable_text")))


def split(text: str, shown: str, warnings: list[Problem]) -> tuple[dict[str, Any], str, int]:
    """Front matter (a dict) and body; a missing or unclosed front matter is a problem."""
    if not YAML.detect(text):
        raise Skip(Problem(shown, 1, message("no_front_matter"), message("expected_first_line_dashes")))
    try:
        fm, body = YAML.split(text)
    except ValueError:
        raise Skip(Problem(shown, 1, message("front_matter_not_closed"),
                            message("expected_closing_dashes"))) from None
    # `fm` begins with the rest of the first '---' line: its line numbers are the file's.
    try:
        meta = safe_yaml.load(fm, dates_as_text=True, max_values=safe_yaml.MAX_VALUES, check=_control_character) or {}
    except safe_yaml.UnsafeYaml as exc:
        raise Skip(Problem(shown, exc.line or 2, message("front_matter_unsafe", reason=exc.what),
                           message("expected_plain_values"))) from None
    except safe_yaml.InvalidYaml as exc:
        raise Skip(Problem(shown, exc.line, message("invalid_front_matter", reason=exc.what),
                            message("expected_yaml_lines"))) from None
    if not isinstance(meta, dict):
        raise Skip(Problem(shown, 2, message("front_matter_not_mapping"), message("expected_key_value_lines")))
    # YAML keeps the last of two equal keys without a word; the author meant one of them.
    seen: set[str] = set()
    for key in _TOP_KEY.finditer(fm):
        if key[1] in seen:
            warnings.append(Problem(shown, fm.count("\n", 0, key.start()) + 1, message("key_twice", key=key[1]),
                                    message("expected_each_key_once"), warning=True))
        seen.add(key[1])
    stripped = body.lstrip("\n")
    # `fm` and `body` each begin with the rest of a '---' line: count lines from there.
    body_line = fm.count("\n") + 1 + len(body) - len(stripped)
    return meta, stripped, body_line


def _control_character(value: str) -> Message | None:
    bad = INVALID_XML.search(value)
    return message("value_control_character", value=value[:40], character=f"U+{ord(bad[0]):04X}") if bad else None


def line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1
