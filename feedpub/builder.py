"""One build of the site: collect posts → plan and render feeds → write the output folder.

Shared by `feedpub build` and the daemon's build job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from feedpub.config import Config
from feedpub.errors import ConfigError, Problem
from feedpub.feeds import build_feeds
from feedpub.output import WriteResult, output_problem, write_files
from feedpub.posts import collect


@dataclass(frozen=True)
class BuildReport:
    output: Path
    posts: int
    feeds: int
    written: WriteResult
    problems: tuple[Problem, ...]
    categories: tuple[str, ...]      # every category of the published posts, sorted
    next_future: datetime | None     # a rebuild is due then, even if no file changes

    @property
    def errors(self) -> int:
        return sum(not p.warning for p in self.problems)

    def summary(self) -> str:
        w = self.written
        return (f"{self.posts} posts, {self.feeds} feeds: {len(w.written)} files written, {len(w.unchanged)} "
                f"unchanged, {len(w.removed)} removed in {self.output}; {self.errors} problems, "
                f"{len(self.problems) - self.errors} warnings")


def build_site(config: Config, *, output: Path | None = None, future: bool = False,
               drafts: bool = False) -> BuildReport:
    """Write every feed. ConfigError (nothing written) when the folders are unusable."""
    output = (output or config.output_dir).resolve()
    # Checked before anything is written: a wrong posts_dir must not replace good feeds with empty ones.
    if not config.posts_dir.is_dir():
        raise ConfigError(f"{config.posts_dir}: posts folder does not exist "
                          f"(expected site.posts_dir to name a folder)")
    if output == config.posts_dir or config.posts_dir.is_relative_to(output):
        raise ConfigError(f"{output}: output folder contains the posts (expected a separate feeds.output_dir)")
    problem = output_problem(output)
    if problem:
        raise ConfigError(problem)
    collection = collect(config, future=future, drafts=drafts)
    result = build_feeds(config, collection.posts)
    try:
        written = write_files(output, result.files)
    except OSError as exc:
        raise ConfigError(f"{exc.filename or output}: cannot write ({exc.strerror})") from exc
    problems = sorted([*collection.problems, *result.problems], key=lambda p: (p.path, p.line or 0))
    categories = sorted({c for post in collection.posts for c in post.categories})
    return BuildReport(output, len(collection.posts), len(result.feeds), written, tuple(problems),
                       tuple(categories), collection.next_future)


def site_fingerprint(config: Config) -> tuple[object, ...]:
    """What a build depends on, cheaply: the config file and every post file's size and mtime. The
    daemon skips a rebuild while it is unchanged."""
    from feedpub.posts import find_post_files

    sources = [Path(config.source)] if config.source != "<defaults>" else []
    if config.posts_dir.is_dir():
        sources += find_post_files(config.posts_dir, drafts=False)
    stats = []
    for path in sources:
        try:
            stat = path.stat()
        except OSError:
            continue
        stats.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(stats)
