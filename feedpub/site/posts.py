"""The collector: a folder of Jekyll-style Markdown posts → `Post` values, newest first.

Every file is read on its own (`reader.read_post`); a broken file becomes a `Problem` and the others
are still collected. Files whose size and mtime are unchanged since the last build are taken from
the build cache instead of being read again; a cold run reads across all cores.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from feedpub.config import Config
from feedpub.errors import Problem, message
from feedpub.site.cache import pickled_as_tuple
from feedpub.site.includes import include_scope
from feedpub.site.links import Targets, unresolved
from feedpub.site.listing import PostFile, post_files
from feedpub.site.reader import Post, read_post
from feedpub.site.source import Skip

# Below this many files to read, starting worker processes costs more than it saves.
_PARALLEL_FROM = 400


@pickled_as_tuple
@dataclass(frozen=True, slots=True)
class FileEntry:
    """What reading one file gave, valid while its size and mtime stay the same."""

    size: int
    mtime_ns: int
    post: Post | None              # None: refused (see problems) or unpublished
    problems: tuple[Problem, ...]
    unpublished: bool = False      # `published: false` in its front matter


@dataclass(frozen=True)
class Collection:
    posts: tuple[Post, ...]
    problems: tuple[Problem, ...]
    next_future: datetime | None = None   # when the earliest post held back for its future date is due
    entries: dict[str, FileEntry] = field(default_factory=dict)   # for the build cache
    skipped_future: int = 0               # posts held back for their future date
    skipped_drafts: int = 0               # posts in _drafts/ (unless drafts are asked for) or `published: false`
    left_out: tuple[Post, ...] = ()       # posts naming a target Jekyll cannot find (`links.unresolved`)


def collect(config: Config, *, now: datetime | None = None, future: bool = False, drafts: bool = False,
            known: Mapping[str, FileEntry] | None = None, files: list[PostFile] | None = None,
            parallel: bool = False) -> Collection:
    """Read every post under `site.posts_dir` (or the `files` listed from it); `known` entries of
    unchanged files are reused."""
    now = now or datetime.now(UTC)
    future, drafts = future or config.site.future, drafts or config.site.show_drafts
    root = config.posts_dir
    if not root.is_dir():
        problem = Problem(_display(root, config.root), None, message("no_posts_folder"),
                          message("expected_posts_folder"))
        return Collection((), (problem,))
    listed = post_files(root, config.site.exclude) if files is None else files
    wanted = [file for file in listed if drafts or not file.draft]
    entries = _entries(config, root, wanted, known or {}, parallel=parallel)

    posts: list[Post] = []
    problems: list[Problem] = []
    held_future: list[datetime] = []
    unpublished = 0
    for file in wanted:
        entry = entries[file.relative]
        problems.extend(entry.problems)
        unpublished += entry.unpublished
        post = entry.post
        if post is None:
            continue
        if post.date > now and not future:
            held_future.append(post.date)
            continue
        posts.append(post)
    posts.sort(key=lambda p: (p.date, p.path), reverse=True)
    posts = _drop_duplicate_urls(posts, problems)
    # Jekyll stops its build at a post or file a tag names that it cannot find: that post is left out, the rest
    # published.
    targets = Targets(posts, root, config.jekyll_root or config.root, config.site.permalink, config.site.exclude,
                      config.front_matter_defaults, include_scope(config), config.jekyll_collections, config.site.tz,
                      None if future else now)
    posts, left_out, link_problems = unresolved(posts, targets)
    problems.extend(link_problems)
    return Collection(tuple(posts), tuple(problems), min(held_future, default=None), entries,
                      skipped_future=len(held_future), skipped_drafts=len(listed) - len(wanted) + unpublished,
                      left_out=tuple(left_out))


def _entries(config: Config, root: Path, files: Sequence[PostFile], known: Mapping[str, FileEntry], *,
             parallel: bool) -> dict[str, FileEntry]:
    """An entry for every file: the `known` one while the file's size and mtime are unchanged, else read."""
    entries: dict[str, FileEntry] = {}
    unread = []
    for file in files:
        entry = known.get(file.relative)
        if entry is not None and (entry.size, entry.mtime_ns) == (file.size, file.mtime_ns):
            entries[file.relative] = entry
        else:
            unread.append(file)
    entries.update(_read_all(config, root, unread, parallel=parallel))
    return entries


def _read_all(config: Config, root: Path, files: Sequence[PostFile], *, parallel: bool) -> dict[str, FileEntry]:
    workers = os.cpu_count() or 1
    if not parallel or workers < 2 or len(files) < _PARALLEL_FROM:
        return _read_many(config, root, files)
    chunks = [files[i::workers * 2] for i in range(workers * 2)]
    entries: dict[str, FileEntry] = {}
    # fork: the children inherit the imported modules and the config without pickling them.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        for result in pool.map(_read_many, [config] * len(chunks), [root] * len(chunks), chunks):
            entries.update(result)
    return entries


def _read_many(config: Config, root: Path, files: Sequence[PostFile]) -> dict[str, FileEntry]:
    prefix = _display(root, config.root)
    entries = {}
    for file in files:
        shown = f"{prefix}/{file.relative}" if prefix != "." else file.relative
        warnings: list[Problem] = []
        try:
            post = read_post(file, root, shown, config, warnings)
            entry = FileEntry(file.size, file.mtime_ns, post, tuple(warnings), unpublished=post is None)
        except Skip as skip:
            entry = FileEntry(file.size, file.mtime_ns, None, (skip.problem, *warnings))
        entries[file.relative] = entry
    return entries


def _drop_duplicate_urls(posts: list[Post], problems: list[Problem]) -> list[Post]:
    seen: dict[str, Post] = {}
    kept = []
    for post in reversed(posts):  # oldest first keeps its URL
        first = seen.setdefault(post.url, post)
        if first is post:
            kept.append(post)
        else:
            problems.append(Problem(post.source, None, message("url_taken", path=post.path, first=first.source),
                                    message("expected_unique_permalink")))
    return kept[::-1]


def _display(path: Path, root: Path) -> str:
    """Paths in messages: relative to the config's folder when inside it, else absolute."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
