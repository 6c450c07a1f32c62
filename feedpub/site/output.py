"""Writing the output folder safely.

Each file is replaced atomically (`feedpub.files`). Files whose bytes did not change are left alone, so
their mtime stays and servers keep answering 304.
A manifest of the files feedpub wrote lets the next build remove the ones it no longer makes (feeds of
categories that disappeared) without touching anything else in the folder.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from feedpub.errors import Message, message
from feedpub.files import TEMP_PREFIX, write_if_changed

MANIFEST = ".feedpub-manifest"


@dataclass(frozen=True)
class WriteResult:
    written: tuple[str, ...]
    unchanged: tuple[str, ...]
    removed: tuple[str, ...]


def output_problem(root: Path) -> Message | None:
    """Why feeds cannot be written into `root`, or None. Checked before anything is written."""
    existing = root
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        return message("output_not_folder", path=str(existing))
    if not os.access(existing, os.W_OK | os.X_OK):
        return message("output_not_writable", path=str(existing))
    manifest = root / MANIFEST
    if manifest.exists() and not os.access(manifest, os.R_OK | os.W_OK):
        return message("output_manifest_unusable", path=str(manifest))
    return None


def folds_case(root: Path) -> bool:
    """Whether the file system holding `root` (or the folder it would be made in) takes `Feed.xml` and
    `feed.xml` for one file, as macOS and Windows do by default. Tried on a name already there: nothing is
    written."""
    existing = root
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    try:
        candidates = chain((existing,), existing.iterdir() if existing.is_dir() else ())
        path = next((p for p in candidates if p.name.swapcase() != p.name), None)
        return path is not None and os.path.samefile(path, path.with_name(path.name.swapcase()))
    except OSError:   # the other spelling does not exist: the names are told apart
        return False


def write_files(root: Path, files: Mapping[str, bytes], keep: Collection[str] = ()) -> WriteResult:
    """Make `root` hold exactly `files` (paths relative to it, '/'-separated) plus the already written
    `keep` among the files feedpub manages; files feedpub never wrote are not touched."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    targets = {relative: _inside(root, relative) for relative in files}
    for folder in {root, *(target.parent for target in targets.values())}:
        for leftover in folder.glob(f"{TEMP_PREFIX}*"):  # from a build that was killed mid-write
            leftover.unlink(missing_ok=True)
    written, unchanged = [], []
    for relative in sorted(files):
        if write_if_changed(targets[relative], files[relative]):
            written.append(relative)
        else:
            unchanged.append(relative)
    managed = set(files) | set(keep)
    removed = _remove_stale(root, _read_manifest(root) - managed)
    write_if_changed(root / MANIFEST, "".join(f"{path}\n" for path in sorted(managed)).encode("utf-8"))
    return WriteResult(tuple(written), tuple(sorted(unchanged + list(keep))), tuple(removed))


def _inside(root: Path, relative: str) -> Path:
    """The absolute path of `relative`, refusing anything that would land outside `root`."""
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or target == root:
        raise ValueError(f"{relative!r} is outside the output folder {root}")
    return target


def _read_manifest(root: Path) -> set[str]:
    try:
        lines = (root / MANIFEST).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return set()
    return {line for line in lines if line.strip()}


def _remove_stale(root: Path, stale: set[str]) -> list[str]:
    """Delete files of the last build that this build does not make, then the folders that became empty."""
    removed = []
    folders = set()
    for relative in sorted(stale):
        try:
            target = _inside(root, relative)
        except ValueError:
            continue  # a hand-edited manifest never makes feedpub delete outside its folder
        if target.is_file():
            target.unlink()
            removed.append(relative)
            folders.add(target.parent)
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
        while folder != root and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
    return removed
