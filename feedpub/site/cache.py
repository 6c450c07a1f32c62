"""The build cache in `.feedpub/cache/`: what the last build learnt, so the next one redoes only what
changed. Never trusted blindly: every file starts with a header naming the format and the inputs it
is valid for (feedpub version, renderer versions, config); anything else — missing, corrupt, another
version — is discarded with a log line and the build does the work itself. Output is byte-identical
with and without the cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import operator
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from feedpub.errors import message
from feedpub.files import write_atomic

log = logging.getLogger(__name__)
T = TypeVar("T")

# Bump when a cached type changes its fields: pickles of the old shape would load without error.
FORMAT = b"feedpub-cache 7\n"
# What this process saved last, by file: (size, mtime_ns) of the file as written, the key, the value. A
# long-running process (`feedpub run`, `build --watch`) loads it from here while the file is still the one it
# wrote, skipping the unpickling: 1.2 s of a 10,000-post one-post-added build (bench/publish_bench.py).
_SAVED: dict[Path, tuple[tuple[int, int], bytes, Any]] = {}


class Cache:
    """Named pickled values valid for one `key` (a fingerprint of everything they depend on)."""

    def __init__(self, folder: Path | None, key: str) -> None:
        self.folder = folder          # None: caching off (`build --no-cache`): load nothing, save nothing
        self.key = key.encode("ascii")

    def load(self, name: str) -> Any:
        """The saved value, or None (logged when a file was there but unusable)."""
        if self.folder is None:
            return None
        path = self.folder / f"{name}.pickle"
        kept = _SAVED.get(path)
        if kept is not None and kept[1] == self.key and kept[0] == file_stamp(path):
            return kept[2]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.info("%s", message("cache_unreadable", path=str(path), reason=exc.strerror or ""))
            return None
        header = FORMAT + self.key + b"\n"
        if not data.startswith(header):
            log.info("%s", message("cache_other_version", path=str(path)))
            return None
        try:
            return pickle.loads(data[len(header):])
        except Exception as exc:  # noqa: BLE001 - a damaged cache is never fatal
            log.info("%s", message("cache_damaged", path=str(path), reason=type(exc).__name__))
            return None

    def save(self, name: str, value: Any) -> None:
        """A cache that cannot be written only costs speed next time."""
        if self.folder is None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            payload = FORMAT + self.key + b"\n" + pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            path = self.folder / f"{name}.pickle"
            write_atomic(path, payload)
            _SAVED[path] = (file_stamp(path), self.key, value)
        except OSError as exc:
            log.info("%s", message("cache_not_saved", folder=str(self.folder), reason=exc.strerror or ""))


def forget_saved() -> None:
    """Drop what this process saved, for a process that builds once and exits: the 10,000 posts it holds cost
    0.2-0.3 s CPU more freed by the interpreter's exit than here (`make bench`'s one-post edit build)."""
    _SAVED.clear()


def pickled_as_tuple(cls: type[T]) -> type[T]:
    """Make a frozen slots dataclass pickle as the tuple of its field values. Python 3.11's own pickling of slots
    dataclasses calls `dataclasses.fields()` for every object: 0.08 s of the 0.44 s CPU that saving and loading
    10,000 posts costs every build that changed something (the state is the same: cache files stay readable)."""
    names = tuple(f.name for f in dataclasses.fields(cls))
    values = operator.attrgetter(*names)

    def __getstate__(self: T) -> tuple[object, ...]:
        return values(self)

    def __setstate__(self: T, state: tuple[object, ...]) -> None:
        for name, value in zip(names, state, strict=True):
            object.__setattr__(self, name, value)

    cls.__getstate__ = __getstate__  # type: ignore[method-assign]
    cls.__setstate__ = __setstate__  # type: ignore[attr-defined]
    return cls


def file_stamp(path: Path) -> tuple[int, int] | None:
    """A file's (size, mtime_ns), None when it cannot be read: equal stamps mean the file is untouched since."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def intact(folder: Path, stamps: Mapping[str, tuple[int, int] | None]) -> bool:
    """Every file (a path relative to `folder`) is still as its stamp says."""
    return all(file_stamp(folder / path) == stamp for path, stamp in stamps.items())


def fingerprint(*parts: object) -> str:
    """A stable hex hash of the parts' reprs: equal for equal inputs, in any process (cache keys)."""
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(repr(part).encode("utf-8", "surrogatepass"))
        hasher.update(b"\x00")
    return hasher.hexdigest()
