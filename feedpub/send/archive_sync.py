"""`digests/` in the published folder kept in step with the store: every stored issue listed, each file
rendered again only when what it is made from changed, and written only when its bytes did.

Run after every `feedpub build` (watch mode included), every build of the daemon and the dashboard's
*rebuild now*, and when an issue is composed; so a deleted output folder, an issue composed by another
process and a changed template or strings file all reach the archive at the next build.

What a file is made from is fingerprinted (the issue, its neighbours, the config, the template and strings
files, the libraries) and remembered in the build cache with each file's size and mtime. A SQLite store
whose file has not changed since is not even opened: a no-op `feedpub build` stays a listing of files.

Issues composed by a feedpub older than the archive (store schema < 3, before `issue_archive`) have no
record of what they showed. They are given one, once, from the posts their dates cover as the posts read
today; an issue none of whose posts is published any more stays out of the list (a warning says so).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

from feedpub import templates
from feedpub.config import Config
from feedpub.counts import counted
from feedpub.errors import message
from feedpub.files import write_if_changed
from feedpub.records import ArchivedIssue
from feedpub.send.archive_paths import FEED, FOLDER, INDEX, page_path
from feedpub.site.build import CACHE_FOLDER
from feedpub.site.cache import Cache, file_stamp, fingerprint, intact

if TYPE_CHECKING:
    from feedpub.store import Store

log = logging.getLogger("feedpub.send.archive")

# The build and digest threads of the daemon refresh one at a time (they share the cache file).
_TURN = threading.Lock()

Stamp = tuple[tuple[int, int] | None, ...]


@dataclass(frozen=True)
class ArchiveReport:
    issues: int                      # listed in the archive
    written: tuple[str, ...]         # paths relative to the output folder
    unchanged: int

    def summary(self) -> str:
        return (f"digest archive: {counted(self.issues, 'issue')}, {counted(len(self.written), 'file')} written, "
                f"{self.unchanged} unchanged")


@dataclass(frozen=True)
class _State:
    """What the last refresh made, to recognise what this one can skip."""

    store: Stamp | None                       # the SQLite files' (size, mtime_ns) before they were read
    issues: int
    made_from: dict[str, str]                 # file → fingerprint of what it was made from
    outputs: dict[str, tuple[int, int] | None]   # file → (size, mtime_ns) after writing


def layout(archived: Sequence[ArchivedIssue]) -> dict[str, str]:
    """Every file of the archive → a fingerprint of the stored issues it is made from: an issue's page shows
    the issue and links to its neighbours; the list and the feed show every issue."""
    periods = [issue.period for issue in archived]
    files = {page_path(issue.period): fingerprint(issue.period, issue.slot, issue.entries, periods[i - 1] if i else "",
                                                  periods[i + 1] if i + 1 < len(periods) else "")
             for i, issue in enumerate(archived)}
    if archived:
        files[INDEX] = files[FEED] = fingerprint([(issue.period, issue.slot, issue.entries) for issue in archived])
    return files


def refresh(config: Config, store: Store | None = None, *, output: Path | None = None,
            use_cache: bool = True) -> ArchiveReport:
    """Bring `digests/` in `output` (default feeds.output_dir) in step with the store. `store` None: opened
    here, and only if needed (a SQLite store that does not exist holds no issue and is not created).
    StoreError when the store cannot be read; DigestTemplateError when a template cannot be rendered."""
    output = (output or config.output_dir).resolve()
    cache = Cache(config.path(CACHE_FOLDER) if use_cache else None, _key(config, output))
    with _TURN:
        state: _State | None = cache.load("archive")
        stamp = _stamp(config.store_file)
        if stamp is not None and stamp[0] is None:
            return ArchiveReport(0, (), 0)
        if state is not None and stamp is not None and state.store == stamp and intact(output, state.outputs):
            return ArchiveReport(state.issues, (), len(state.outputs))
        with _opened(config, store) as db:
            _fill_in(config, db)
            archived = db.archived_issues()
        made_from = layout(archived)
        old = state.made_from if state else {}
        old_outputs = state.outputs if state else {}
        stale = [path for path, source in made_from.items()
                 if old.get(path) != source or not intact(output, {path: old_outputs.get(path, (-1, -1))})]
        written = []
        if stale:
            # Imported only when a file is out of date: css-inline, feedgen and the digest renderer, 0.25 s
            # (python -X importtime) that a no-op build need not pay.
            from feedpub.send.archive import documents

            for path, data in documents(config, archived, stale).items():
                if write_if_changed(output / path, data):
                    written.append(path)
        outputs = {path: file_stamp(output / path) for path in made_from}
        cache.save("archive", _State(stamp, len(archived), made_from, outputs))
    return ArchiveReport(len(archived), tuple(sorted(written)), len(made_from) - len(written))


def _fill_in(config: Config, store: Store) -> None:
    """Give each issue stored before the archive existed what its posts show today (once)."""
    missing = store.unarchived_issues()
    if not missing:
        return
    # Imported only for such issues: reading and rendering posts.
    from feedpub.send.archive import record
    from feedpub.send.issue import compose, covered_posts, entries
    from feedpub.site.posts import collect

    collection = collect(config, now=datetime.now(UTC))
    for issue in missing:
        rendered, _ = covered_posts(config, collection, issue.starts, issue.ends)
        shown = compose(config, rendered, period=issue.period, slot=issue.slot, starts=issue.starts,
                        ends=issue.ends).posts
        store.archive_issue(issue.id, [record(entry) for entry in entries(config, shown)])
        if shown:
            log.info("%s", message("archive_backfilled", period=issue.period,
                                   posts=message("count_posts", count=len(shown))))
        else:
            log.warning("%s", message("archive_not_listed", period=issue.period, folder=FOLDER))


@contextmanager
def _opened(config: Config, store: Store | None) -> Iterator[Store]:
    if store is not None:
        yield store
        return
    # Imported only when the store must be read: SQLAlchemy, 0.3 s of a no-op build.
    from feedpub.store import open_store

    opened = open_store(config.store_url)
    try:
        yield opened
    finally:
        opened.engine.dispose()


def _stamp(store_file: Path | None) -> Stamp | None:
    """The SQLite store's file and write-ahead log as (size, mtime_ns) — any write changes one of them; None
    for PostgreSQL, which is always asked."""
    if store_file is None:
        return None
    return tuple(file_stamp(path) for path in (store_file, Path(f"{store_file}-wal")))


def _key(config: Config, output: Path) -> str:
    """Everything the archive's bytes depend on besides the stored issues."""
    override = config.path(config.digest.templates_dir) if config.digest.templates_dir else None
    template_files = [(str(path), file_stamp(path)) for folder in (templates.folder("email"), override)
                      if folder is not None and folder.is_dir() for path in sorted(folder.iterdir())]
    libraries = [version(name) for name in ("feedpub", "feedgen", "css-inline", "jinja2")]
    return fingerprint(libraries, template_files, config.site, config.digest, config.feeds.limit,
                       config.web.public_url, output)
