"""Watching what a build reads — the posts folder, the config file, the site's `_includes/`, `_data/` and
`_config*.yml`, and the operator's digest templates — for `feedpub run` and `feedpub build --watch`:
`changes` yields batches of changed paths, one batch per burst of saves.

A burst (an editor's save, a `git pull` of 200 posts) ends when nothing changed for `QUIET_MS`, or
after `LONGEST_MS` of continuous changes (watchfiles' step and debounce); what changes while the caller
is busy with one batch is in the next. The feeds index and stylesheet ship inside the package and the web
pages reload changed templates on their own (Jinja's auto_reload); the digest templates (`digest.templates_dir`)
are watched because every build renders the digest archive's pages with them.

The config file is watched through its folder, not by itself: an editor saves by writing a new file
and renaming it over the old one, and a watch on the old file sees nothing after that. That folder and the
templates folder are watched without their subfolders (the first often holds .git/ and .venv/), the posts
folder, `_includes/` and `_data/` with them. Files beside the posts (what `include_relative` reads) are in the
posts folder.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import watchfiles

from feedpub.config import Config
from feedpub.config_file import load_config
from feedpub.errors import ConfigError, message, reason
from feedpub.site.build import CACHE_FOLDER

log = logging.getLogger(__name__)
# Its "1 change detected" at every save says less than the build's own line that follows.
logging.getLogger("watchfiles").setLevel(logging.WARNING)

# The site's folders Liquid reads besides the posts (feedpub.jekyll.site_file_stats).
SITE_FOLDERS = ("_includes", "_data")
QUIET_MS = 100
LONGEST_MS = 1600
# How often the merging loop looks at the caller's stop event while no change arrives.
_POLL_S = 0.2


@dataclass(frozen=True)
class Watched:
    """What one build depends on that a person edits."""

    posts: Path                   # watched with its subfolders
    config: Path | None           # None: built-in defaults, no file
    ignored: tuple[Path, ...]     # what the build writes itself (output folder, cache), in case it is below posts
    templates: Path | None = None  # digest.templates_dir, when set
    site: Path | None = None      # the site folder (site.jekyll_dir, else the config's), for its SITE_FOLDERS

    def wanted(self, path: Path) -> bool:
        """A change to `path` can change what the build makes."""
        if path == self.config:
            return True
        if path.parent == self.templates:
            return not path.name.startswith(".") and not path.name.endswith("~")
        if any(path.is_relative_to(folder) for folder in self.ignored):
            return False
        if self.site is not None and (any(path.is_relative_to(self.site / name) for name in SITE_FOLDERS) or (
                path.parent == self.site and _is_jekyll_config(path.name))):
            below = self.site
        elif path.is_relative_to(self.posts):
            below = self.posts
        else:
            return False
        # Editors' swap, lock and backup files (.post.md.swp, .#post.md, post.md~) never hold a post.
        return not any(part.startswith(".") for part in path.relative_to(below).parts) and \
            not path.name.endswith("~")


class LiveConfig:
    """The config in force while watching: read again when its file or its Jekyll site's `_config*.yml` changes.
    A file that does not load is reported and the last good config stays in force; the next change of anything
    tries again."""

    def __init__(self, config: Config, file: Path | None) -> None:
        self.current = config
        self.file = file.resolve() if file else None
        self.broken = False

    def watched(self) -> Watched:
        config = self.current
        templates = config.digest.templates_dir
        return Watched(config.posts_dir, self.file, (config.output_dir, config.path(CACHE_FOLDER)),
                       config.path(templates) if templates else None, (config.jekyll_root or config.root).resolve())

    def refresh(self, batch: frozenset[Path]) -> None:
        sources = sorted(str(path) for path in batch if self._is_site_config(path))
        if self.file is None or not (self.broken or self.file in batch or sources):
            return
        try:
            self.current = load_config(self.file)
        except ConfigError as exc:
            log.error("%s", message("watch_config_broken", error=reason(exc)))
            self.broken = True
            return
        self.broken = False
        log.info("%s", message("watch_reloaded_because", file=str(self.file), changed=", ".join(sources)) if sources
                 else message("watch_reloaded", file=str(self.file)))

    def _is_site_config(self, path: Path) -> bool:
        """`path` is a `_config*.yml` of the config's Jekyll site, which fills the keys the file leaves unset."""
        root = self.current.jekyll_root
        return root is not None and path.parent == root.resolve() and _is_jekyll_config(path.name)


def _is_jekyll_config(name: str) -> bool:
    return name == "_config.yml" or fnmatch(name, "_config.*.yml")


def follow(live: LiveConfig, stop: threading.Event) -> Iterator[frozenset[Path]]:
    """Batches of changes as `changes` yields them, `live` refreshed before each; when a new config
    names another posts folder, that one is watched from then on."""
    while not stop.is_set():
        what = live.watched()
        for batch in changes(what, stop):
            live.refresh(batch)
            yield batch
            if live.watched() != what:
                break


def changes(what: Watched, stop: threading.Event) -> Iterator[frozenset[Path]]:
    """Batches of changed paths that `what.wanted`, until `stop` is set. A folder that cannot be watched
    (missing, or the system's watch limit reached) is logged and left out; the other ones go on."""
    found: queue.Queue[frozenset[Path]] = queue.Queue()
    done = threading.Event()     # ends the watchers when the caller stops or stops iterating
    folders = [(what.posts, True)]
    if what.config is not None:
        folders.append((what.config.parent, False))
    if what.templates is not None and what.templates.is_dir() and (what.templates, False) not in folders:
        folders.append((what.templates, False))
    if what.site is not None and not what.site.is_relative_to(what.posts):
        folders += [(folder, True) for folder in (what.site / name for name in SITE_FOLDERS) if folder.is_dir()]
        if (what.site, False) not in folders:   # its _config*.yml
            folders.append((what.site, False))
    watchers = [threading.Thread(target=_watch, args=(folder, recursive, what.wanted, done, found),
                                 name=f"watch {folder}", daemon=True) for folder, recursive in folders]
    for watcher in watchers:
        watcher.start()
    try:
        while not stop.is_set():
            try:
                batch = set(found.get(timeout=_POLL_S))
            except queue.Empty:
                continue
            while not found.empty():        # the other folder's batch of the same burst
                batch |= found.get_nowait()
            yield frozenset(batch)
    finally:
        done.set()
        for watcher in watchers:
            watcher.join()


def _watch(folder: Path, recursive: bool, wanted: Callable[[Path], bool], done: threading.Event,
           found: queue.Queue[frozenset[Path]]) -> None:
    try:
        for batch in watchfiles.watch(folder, watch_filter=lambda _change, path: wanted(Path(path)),
                                      debounce=LONGEST_MS, step=QUIET_MS, stop_event=done, recursive=recursive,
                                      raise_interrupt=False):
            found.put(frozenset(Path(path) for _change, path in batch))
    except Exception as exc:  # noqa: BLE001 - a missing folder, the inotify watch limit, a watcher error: never fatal
        log.error("%s", message("watch_cannot_watch", folder=str(folder), reason=str(exc)))
