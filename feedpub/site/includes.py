"""What Jekyll's `include` and `include_relative` may read: text files of the site's own sources. Never
feedpub's config file, the DKIM key or any `*.key` / `*.pem`, the SQLite store (and its journals),
`.feedpub/`, the output folder, `_site/`, a dot-file or dot-folder, or anything outside the site folder
(after symbolic links and `..`); binary files neither.

One rule for the tags that read the files (`liquid_tags.py`) and for what a build and the watcher look at
for changes (`build.py`, `watch.py`): a post that includes the files beside it is built again when one of
them changes, and a file no include may read never counts as a change. Standard library only: a no-op
build uses it.
"""

from __future__ import annotations

import codecs
import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from feedpub.config import Config
from feedpub.errors import Message, message

# The file names Jekyll's include tags accept (Jekyll::Tags::IncludeTag's VALID_FILENAME_CHARS and
# INVALID_SEQUENCES: no `..`, `./`, `/.` or `//`); letters beyond ASCII too, which Jekyll's Ruby refuses.
_INCLUDE_FILE_NAME = re.compile(r"[\w/.\-()+~#@]+")
_INVALID_SEQUENCE = re.compile(r"[./]{2,}")
_KEY_SUFFIXES = (".key", ".pem")
_SQLITE_JOURNALS = ("-journal", "-wal", "-shm")
_JEKYLL_OUTPUT = "_site"
# Bytes looked at to tell a binary file: as git and grep, a NUL (or bytes that are not UTF-8) in the first 8 KiB.
_PROBE_BYTES = 8192


@dataclass(frozen=True)
class IncludeScope:
    """The site folder and the files in it that no include reads."""

    root: Path                      # the site folder, resolved: `site.jekyll_dir`, else the config's folder
    private: Mapping[Path, Message]     # resolved file or folder → what it is, as messages say it

    def refusal(self, path: Path) -> Message | None:
        """Why no include reads `path` (absolute: as the tag names it, or resolved), or None when one may."""
        if not path.is_relative_to(self.root):
            return message("refused_outside_site")
        for private, what in self.private.items():
            if path.is_relative_to(private):
                return what
        parts = path.relative_to(self.root).parts
        if any(part.startswith(".") for part in parts):
            return message("refused_dot_file")
        if parts and parts[0] == _JEKYLL_OUTPUT:
            return message("refused_jekyll_output")
        if path.suffix.lower() in _KEY_SUFFIXES:
            return message("refused_key_file")
        return None

    def files_below(self, folder: str) -> list[tuple[str, int, int]]:
        """(path, size, mtime_ns) of every file below `folder` that `include_relative` may read from a post in it
        (binary files too: telling them costs a read): what such a post depends on besides its own text."""
        found: list[tuple[str, int, int]] = []
        private = {str(path) for path in self.private}

        def walk(folder: str) -> None:
            try:
                with os.scandir(folder) as scan:
                    entries = sorted(scan, key=lambda e: e.name)
            except OSError:     # gone since the last build
                return
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if self.refusal(Path(entry.path)) is None:
                        walk(entry.path)
                elif not (entry.name.startswith(".") or entry.path in private
                          or entry.name.lower().endswith(_KEY_SUFFIXES)
                          or (entry.is_symlink() and self.refusal(Path(entry.path).resolve()) is not None)):
                    try:
                        stat = entry.stat()
                    except OSError:     # a dangling link, or gone since listed: no include reads it
                        continue
                    found.append((entry.path, stat.st_size, stat.st_mtime_ns))

        walk(folder)
        return found


def include_scope(config: Config) -> IncludeScope:
    """What includes may read in the site of `config`."""
    private: dict[Path, Message] = {}
    if config.source != "<defaults>":
        private[(config.root / Path(config.source).name).resolve()] = message("refused_config")
    if config.smtp.dkim.key_file:
        private[config.path(config.smtp.dkim.key_file)] = message("refused_dkim_key")
    if config.store_file is not None:
        store = config.store_file.resolve()
        for journal in ("", *_SQLITE_JOURNALS):
            private[store.with_name(store.name + journal)] = message("refused_store")
    private[config.path(".feedpub")] = message("refused_feedpub_folder")
    private[config.output_dir] = message("refused_output")
    return IncludeScope((config.jekyll_root or config.root).resolve(), private)


def is_text(path: Path) -> bool:
    """`path` (an existing file) holds text, not binary data."""
    stat = path.stat()
    return _is_text(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1024)
def _is_text(path: Path, size: int, mtime_ns: int) -> bool:   # the stat in the key: an edited file is read again
    with path.open("rb") as file:
        head = file.read(_PROBE_BYTES)
    if b"\0" in head:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)   # a character cut at the end is fine
    except UnicodeDecodeError:
        return False
    return True


def valid_include_name(name: str) -> bool:
    """A file name the include tags accept (`_INCLUDE_FILE_NAME`, without `_INVALID_SEQUENCE`)."""
    return bool(_INCLUDE_FILE_NAME.fullmatch(name)) and not _INVALID_SEQUENCE.search(name)
