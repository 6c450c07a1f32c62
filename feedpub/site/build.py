"""One build of the site: collect posts → plan and render feeds → write the output folder.

Shared by `feedpub build` and the daemon's build job. Incremental through the build cache: nothing
changed → the files are left alone after listing the posts; otherwise only changed files are read,
only feeds whose entries changed are regenerated, and only posts whose text changed are rendered.
The bytes written are the same with and without the cache.
"""

from __future__ import annotations

import functools
import gc
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from feedpub.config import Config
from feedpub.counts import counted
from feedpub.errors import ConfigError, Problem, message
from feedpub.jekyll import site_file_stats
from feedpub.site.cache import Cache, file_stamp, fingerprint, intact
from feedpub.site.includes import IncludeScope, include_scope
from feedpub.site.listing import PostFile, post_files
from feedpub.site.output import WriteResult, folds_case, output_problem, write_files

if TYPE_CHECKING:
    from feedpub.site.feeds import Feed
    from feedpub.site.posts import Collection
    from feedpub.site.reader import Post

CACHE_FOLDER = ".feedpub/cache"
# Part of the cache key: bump when the HTML made for the same Markdown changes. Kept here rather than in
# markup.py because a no-op build must not import the renderer.
RENDER_VERSION = 1


class Topic(NamedTuple):
    """A feed a reader may follow by mail: a category's, a tag's or an author's."""

    folder: str     # the feed's folder ("categories/ai導入戦略"): what a subscription stores
    name: str       # as the posts write it ("AI導入戦略"): what a reader is shown

    @property
    def group(self) -> str:
        """"categories", "tags" or "authors"."""
        return self.folder.split("/", 1)[0]


@dataclass(frozen=True)
class BuildReport:
    output: Path
    posts: int
    feeds: int
    written: WriteResult
    problems: tuple[Problem, ...]
    categories: tuple[str, ...]      # every category of the published posts, sorted
    topics: tuple[Topic, ...]        # what a reader may follow besides the whole site: the other feeds
    next_future: datetime | None     # a rebuild is due then, even if no file changes

    @property
    def errors(self) -> int:
        return sum(not p.warning for p in self.problems)

    def summary(self) -> str:
        w = self.written
        return (f"{counted(self.posts, 'post')}, {counted(self.feeds, 'feed')}: {counted(len(w.written), 'file')} "
                f"written, {len(w.unchanged)} unchanged, {len(w.removed)} removed in {self.output}; "
                f"{counted(self.errors, 'problem')}, {counted(len(self.problems) - self.errors, 'warning')}")


@dataclass(frozen=True)
class _State:
    """What the last build made, to recognise what this one can skip."""

    sources: str                              # fingerprint of every post file's path, size and mtime
    report: BuildReport
    outputs: dict[str, tuple[int, int] | None]   # file in the output folder → (size, mtime_ns) after writing
    feeds: dict[str, str]                     # feed folder → fingerprint of what it was made from
    render_problems: dict[str, tuple[Problem, ...]]   # post URL → problems met rendering it
    beside: tuple[str, ...] = ()              # the folders of the posts that include files beside them


def build_site(config: Config, *, output: Path | None = None, future: bool = False, drafts: bool = False,
               use_cache: bool = True, parallel: bool = False, now: datetime | None = None,
               on_written: Callable[[WriteResult], object] | None = None) -> BuildReport:
    """Write every feed. ConfigError (nothing written) when the folders are unusable.

    `parallel` reads across cores (worker processes; not for threaded callers). Posts are always rendered in
    child processes, one per core at most (`markup.render_posts`).
    `on_written` is called as soon as the output folder is written, before the cache is saved (0.7 s of a
    10,000-post build that WebSub pings need not wait for); not at all when nothing changed."""
    output = (output or config.output_dir).resolve()
    check_folders(config, output)
    now = now or datetime.now(UTC)
    folder = config.path(CACHE_FOLDER) if use_cache else None
    cache = Cache(folder, _cache_key(config, output, future, drafts))
    listing = post_files(config.posts_dir, config.site.exclude)
    site_stats = site_file_stats(config.jekyll_root or config.root)
    state: _State | None = cache.load("build")
    scope = include_scope(config)
    beside = {folder: scope.files_below(folder) for folder in (state.beside if state else ())}
    sources = _sources(listing, site_stats, beside)
    if (state is not None and state.sources == sources and intact(output, state.outputs)
            and (state.report.next_future is None or now < state.report.next_future)):
        unchanged = WriteResult((), tuple(sorted(state.outputs)), ())
        return replace(state.report, written=unchanged)
    # A build allocates hundreds of thousands of objects that are garbage only at its end: cyclic
    # collection passes in between find nothing and cost ~5% of a cold build.
    gc.disable()
    try:
        return _build(config, output, cache, Cache(folder, _render_key(config)), state, listing, site_stats,
                      scope, beside, now=now, future=future, drafts=drafts, parallel=parallel, on_written=on_written)
    finally:
        gc.enable()


def render_cache(config: Config) -> dict:
    """The renderings the last build kept (post URL → `markup.CachedRender`), for what else renders the site's
    posts after a build (the fediverse's publisher): `markup.render_posts(cache=…)` reuses them."""
    return Cache(config.path(CACHE_FOLDER), _render_key(config)).load("renders") or {}


def read_posts(config: Config) -> dict:
    """The post files the last build of the published site read (path → `posts.FileEntry`), for what else reads the
    site's posts after a build (the fediverse's publisher): `posts.collect(known=…)` reuses the unchanged ones."""
    key = _cache_key(config, config.output_dir.resolve(), False, False)
    return Cache(config.path(CACHE_FOLDER), key).load("posts") or {}

def check_folders(config: Config, output: Path) -> None:
    """ConfigError when the posts or the output folder cannot be used (`feedpub check` and `build` alike):
    checked before anything is written, so a wrong posts_dir never replaces good feeds with empty ones."""
    if not config.posts_dir.is_dir():
        raise ConfigError(message("posts_folder_missing", path=str(config.posts_dir)))
    if output == config.posts_dir or config.posts_dir.is_relative_to(output):
        raise ConfigError(message("output_holds_posts", path=str(output)))
    problem = output_problem(output)
    if problem:
        raise ConfigError(problem)


def _build(config: Config, output: Path, cache: Cache, render_cache: Cache, state: _State | None,
           listing: list[PostFile], site_stats: list[tuple[str, int, int]], scope: IncludeScope,
           known_beside: dict[str, list[tuple[str, int, int]]], *, now: datetime,
           future: bool, drafts: bool, parallel: bool, on_written: Callable[[WriteResult], object] | None,
           ) -> BuildReport:
    """Collect → plan the feeds → render the posts of the changed ones → write → remember for next time."""
    # Imported here, once something changed: the no-op build must not load YAML, Markdown and feedgen
    # (0.12 s more on a 0.27 s no-op build of 2,000 posts; python -X importtime).
    from feedpub.site.feeds import feed_documents, needed_posts, plan_feeds, site_files
    from feedpub.site.markup import render_posts
    from feedpub.site.posts import collect
    from feedpub.site.reader import READS_BESIDE

    collection = collect(config, now=now, future=future, drafts=drafts, known=cache.load("posts"),
                         files=listing, parallel=parallel)
    feeds, plan_problems = plan_feeds(config, collection.posts, fold_case=folds_case(output))
    # What `include_relative` may read beside a post is part of what the post is made from; for a post left out
    # because a file it includes is missing, the file appearing is what brings it back.
    folders = {post.file: str(Path(post.file).parent) for post in (
        *(post for feed in feeds for post in feed.posts), *collection.left_out) if READS_BESIDE in post.reads}
    beside = {folder: known_beside[folder] if folder in known_beside else scope.files_below(folder)
              for folder in sorted(set(folders.values()))}
    sources = _sources(listing, site_stats, beside)
    beside_fingerprints = {folder: fingerprint(files) for folder, files in beside.items()}
    fingerprints = _fingerprints(feeds, listing, collection.posts, site_stats,
                                 {file: beside_fingerprints[folder] for file, folder in folders.items()})
    changed = _changed(config, output, feeds, fingerprints, state)
    renders = render_cache.load("renders") or {}
    to_render = needed_posts(changed)
    rendered, render_problems = render_posts(config, to_render, site_posts=collection.posts, cache=renders)
    by_url = {r.post.url: r for r in rendered}
    files = {path: data for feed in changed for path, data in feed_documents(config, feed, by_url).items()}
    files.update(site_files(config, feeds))
    kept = [path for feed in feeds if feed not in changed for path in _paths(config, feed)]
    written = _write(output, files, kept)
    if on_written is not None:
        on_written(written)

    shown = {post.url for post in needed_posts(feeds)}
    problems_by_url = _render_problems(state, shown, to_render, render_problems)
    # Met reading the site's own files (`_data/`, `_config.yml`) rather than a post.
    sources = {post.source for post in to_render}
    site_problems = [p for p in render_problems if p.path not in sources]
    problems = [*collection.problems, *plan_problems, *site_problems,
                *(p for ps in problems_by_url.values() for p in ps)]
    report = _report(output, collection, feeds, written, problems)
    cache.save("posts", collection.entries)
    render_cache.save("renders", {url: render for url, render in renders.items() if url in shown})
    outputs = {path: file_stamp(output / path) for path in [*files, *kept]}
    cache.save("build", _State(sources, report, outputs, fingerprints, problems_by_url, tuple(beside)))
    return report


def _sources(listing: list[PostFile], site_stats: list[tuple[str, int, int]],
             beside: dict[str, list[tuple[str, int, int]]]) -> str:
    """Fingerprint of every file a build reads: the posts, the site files and the files beside the posts that
    include them (`beside`: folder → files)."""
    return fingerprint([(f.relative, f.size, f.mtime_ns) for f in listing], site_stats, beside)


def _fingerprints(feeds: list[Feed], listing: list[PostFile], posts: tuple[Post, ...],
                  site_stats: list[tuple[str, int, int]], beside: dict[str, str]) -> dict[str, str]:
    """Feed folder → fingerprint of what the feed is made from: its title, its Atom path and its posts, each
    with its file's size and mtime and what its Liquid reads besides: the site files' sizes and mtimes
    (`reads_site`), every post (`reads_posts`), and the files beside it (`beside`: post file → fingerprint of
    the files `include_relative` may read from it)."""
    stats = {f.path: (f.size, f.mtime_ns) for f in listing}
    shown = [post for feed in feeds for post in feed.posts]
    files = fingerprint(site_stats) if any(post.reads_site for post in shown) else ""
    everything = fingerprint(posts, site_stats) if any(post.reads_posts for post in shown) else ""

    def reads(post: Post) -> str:
        return everything if post.reads_posts else files if post.reads_site else ""

    return {feed.folder: fingerprint(feed.title, feed.atom_path, [
        (post, stats[post.file], reads(post), beside.get(post.file, "")) for post in feed.posts]) for feed in feeds}


def _changed(config: Config, output: Path, feeds: list[Feed], fingerprints: dict[str, str],
             state: _State | None) -> list[Feed]:
    """The feeds made from something else than last time, or whose files are not as the last build left them."""
    old = state.feeds if state else {}
    old_outputs = state.outputs if state else {}
    return [feed for feed in feeds
            if old.get(feed.folder) != fingerprints[feed.folder]
            or not intact(output, {p: old_outputs.get(p, (-1, -1)) for p in _paths(config, feed)})]


def _write(output: Path, files: dict[str, bytes], kept: list[str]) -> WriteResult:
    try:
        return write_files(output, files, keep=kept)
    except OSError as exc:
        raise ConfigError(f"{exc.filename or output}: cannot write ({exc.strerror})") from exc


def _render_problems(state: _State | None, shown: set[str], rendered: list[Post],
                     problems: list[Problem]) -> dict[str, tuple[Problem, ...]]:
    """Post URL → problems met rendering it, for every post a feed shows: this build's for the posts it
    rendered, the last build's for the others."""
    by_url = {url: found for url, found in (state.render_problems if state else {}).items() if url in shown}
    by_source = defaultdict(list)
    for problem in problems:
        by_source[problem.path].append(problem)
    for post in rendered:
        by_url[post.url] = tuple(by_source.get(post.source, ()))
    return by_url


def _report(output: Path, collection: Collection, feeds: list[Feed], written: WriteResult,
            problems: list[Problem]) -> BuildReport:
    return BuildReport(output, len(collection.posts), len(feeds), written,
                       tuple(sorted(problems, key=lambda p: (p.path, p.line or 0))),
                       tuple(sorted({c for post in collection.posts for c in post.categories})),
                       topics(feeds),
                       collection.next_future)


def topics(feeds: Sequence[Feed]) -> tuple[Topic, ...]:
    """The feeds of a plan a reader may follow besides the whole site, in the plan's order."""
    return tuple(Topic(feed.folder, feed.name) for feed in feeds if feed.folder)


def site_topics(config: Config) -> tuple[Topic, ...]:
    """The topics the site's next build will have (posts read, feeds planned, nothing rendered or written): for a
    command that checks a topic a reader is given without building."""
    from feedpub.site.feeds import plan_feeds
    from feedpub.site.posts import collect

    return topics(plan_feeds(config, collect(config, parallel=True).posts)[0])


def _paths(config: Config, feed: Feed) -> list[str]:
    return [feed.path(fmt) for fmt in config.feeds.formats]


def _cache_key(config: Config, output: Path, future: bool, drafts: bool) -> str:
    """Everything cached results depend on besides the post files themselves."""
    return fingerprint(_libraries(), RENDER_VERSION, config.site, config.feeds, config.front_matter_defaults,
                       config.jekyll_collections, config.root, output, future, drafts, sys.version)


def _render_key(config: Config) -> str:
    """What every rendering depends on besides what its own key holds (the post, its text, the site data its
    Liquid reads): so a new site title, say, renders again only the posts that show it. The address is here for
    `relative_url` and `absolute_url`, the time zone for Liquid's dates, the site folder for its includes."""
    return fingerprint(_libraries(), RENDER_VERSION, config.site.url, config.site.baseurl, config.site.timezone,
                       config.jekyll_root or config.root, sys.version)


@functools.cache
def _libraries() -> tuple[str, ...]:
    """The versions of what makes the bytes (5 ms to look up: once per process)."""
    return tuple(version(name) for name in ("feedpub", "markdown", "nh3", "feedgen", "pyyaml", "python-liquid"))
