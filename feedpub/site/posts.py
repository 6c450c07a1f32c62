"""The collector: a folder of Jekyll-style Markdown posts → `Post` values, newest first.

Every file is read on its own (`reader.read_post`); a broken file becomes a `Problem` and the others
are still collected. Files whose size and mtime are unchanged since the last build are taken from
the build cache instead of being read again; a cold run reads across all cores.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feedpub.config import Config
from feedpub.errors import Problem

if TYPE_CHECKING:
    from feedpub.site.reader import Post

def __getattr__(name: str) -> Any:
    """`Post`, `load_body` and `first_paragraph` live in `reader`, imported on first use: listing the
    posts of an unchanged site must not pay for loading YAML."""
    if name in ("Post", "load_body", "first_paragraph"):
        from feedpub.site import reader

        return getattr(reader, name)
    raise AttributeError(name)

EXTENSIONS = (".md", ".markdown")
# Below this many files to read, starting worker processes costs more than it saves.
_PARALLEL_FROM = 400


@dataclass(frozen=True)
class PostFile:
    path: str          # absolute
    relative: str      # to the posts folder, '/'-separated: the cache key
    size: int
    mtime_ns: int
    symlink: bool


@dataclass(frozen=True, slots=True)
class FileEntry:
    """What reading one file gave, valid while its size and mtime stay the same."""

    size: int
    mtime_ns: int
    post: Post | None              # None: unpublished or refused
    problems: tuple[Problem, ...]


@dataclass(frozen=True)
class Collection:
    posts: tuple[Post, ...]
    problems: tuple[Problem, ...]
    next_future: datetime | None = None   # when the earliest post held back for its future date is due
    entries: dict[str, FileEntry] = field(default_factory=dict)   # for the build cache


def collect(config: Config, *, now: datetime | None = None, future: bool = False, drafts: bool = False,
            known: Mapping[str, FileEntry] | None = None, files: list[PostFile] | None = None,
            parallel: bool = False) -> Collection:
    """Read every post under `site.posts_dir` (or the `files` listed from it); `known` entries of
    unchanged files are reused."""
    now = now or datetime.now(UTC)
    root = config.posts_dir
    if not root.is_dir():
        problem = Problem(_display(root, config.root), None, "posts folder does not exist",
                          "a folder of Markdown posts (site.posts_dir)")
        return Collection((), (problem,))
    known = known or {}
    files = post_files(root, drafts=drafts) if files is None else files
    entries: dict[str, FileEntry] = {}
    unread = []
    for file in files:
        entry = known.get(file.relative)
        if entry is not None and (entry.size, entry.mtime_ns) == (file.size, file.mtime_ns):
            entries[file.relative] = entry
        else:
            unread.append(file)
    entries.update(_read_all(config, root, unread, parallel=parallel))

    posts: list[Post] = []
    problems: list[Problem] = []
    next_future: datetime | None = None
    for file in files:
        entry = entries[file.relative]
        problems.extend(entry.problems)
        post = entry.post
        if post is None:
            continue
        if post.date > now and not future:
            next_future = min(next_future or post.date, post.date)
            continue
        posts.append(post)
    posts.sort(key=lambda p: (p.date, p.path), reverse=True)
    return Collection(tuple(_drop_duplicate_urls(posts, problems)), tuple(problems), next_future, entries)


def post_files(root: Path, *, drafts: bool) -> list[PostFile]:
    """Markdown files below `root` with their size and mtime, in a stable order. Hidden and `_`-folders
    are skipped except Jekyll's `_posts` (and `_drafts` when asked)."""
    allowed = {"_posts", "_drafts"} if drafts else {"_posts"}
    found: list[PostFile] = []

    def walk(folder: str, prefix: str) -> None:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda e: e.name)
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):   # never into a linked folder: it may lead outside
                if not name.startswith("_") or name in allowed:
                    walk(entry.path, f"{prefix}{name}/")
            elif name.lower().endswith(EXTENSIONS):
                try:
                    stat = entry.stat()
                except OSError:
                    stat = entry.stat(follow_symlinks=False)
                found.append(PostFile(entry.path, prefix + name, stat.st_size, stat.st_mtime_ns,
                                      entry.is_symlink()))

    walk(str(root), "")
    return found


def _read_all(config: Config, root: Path, files: Sequence[PostFile], *, parallel: bool) -> dict[str, FileEntry]:
    workers = os.cpu_count() or 1
    if not parallel or workers < 2 or len(files) < _PARALLEL_FROM:
        return _read_many(config, root, files)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from feedpub.site import reader  # noqa: F401 - imported once here, inherited by the forked readers

    chunks = [files[i::workers * 2] for i in range(workers * 2)]
    entries: dict[str, FileEntry] = {}
    # fork: the children inherit the imported modules and the config without pickling them.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        for result in pool.map(_read_many, [config] * len(chunks), [root] * len(chunks), chunks):
            entries.update(result)
    return entries


def _read_many(config: Config, root: Path, files: Sequence[PostFile]) -> dict[str, FileEntry]:
    from feedpub.site.reader import Skip, read_post

    prefix = _display(root, config.root)
    entries = {}
    for file in files:
        shown = f"{prefix}/{file.relative}" if prefix != "." else file.relative
        warnings: list[Problem] = []
        try:
            post = read_post(Path(file.path), shown, config, warnings, root=root, relative=file.relative,
                             symlink=file.symlink,
                             mtime=file.mtime_ns / 1e9, draft="_drafts" in file.relative.split("/"))
            problems = tuple(warnings)
        except Skip as skip:
            post, problems = None, (skip.problem, *warnings)
        entries[file.relative] = FileEntry(file.size, file.mtime_ns, post, problems)
    return entries


def _drop_duplicate_urls(posts: list[Post], problems: list[Problem]) -> list[Post]:
    seen: dict[str, Post] = {}
    kept = []
    for post in reversed(posts):  # oldest first keeps its URL
        first = seen.setdefault(post.url, post)
        if first is post:
            kept.append(post)
        else:
            problems.append(Problem(post.source, None, f"URL {post.path} is already used by {first.source}",
                                    "a unique permalink or file name"))
    return kept[::-1]


def _display(path: Path, root: Path) -> str:
    """Paths in messages: relative to the config's folder when inside it, else absolute."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
