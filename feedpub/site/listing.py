"""The post files of a site, listed with their size and mtime but not read.

This is all a no-op build looks at, so it imports nothing beyond the standard library.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

EXTENSIONS = (".md", ".markdown")
# Jekyll's folders that hold posts although their names start with '_'.
_POST_FOLDERS = ("_posts", "_drafts")
# What Jekyll excludes by default besides dot- and _-folders (Jekyll::Configuration::DEFAULTS["exclude"]).
_JEKYLL_EXCLUDED = ("gemfiles", "Gemfile", "Gemfile.lock", "node_modules", "vendor/bundle", "vendor/cache",
                    "vendor/gems", "vendor/ruby")


@dataclass(frozen=True)
class PostFile:
    path: str          # absolute
    relative: str      # to the posts folder, '/'-separated: the cache key
    size: int
    mtime_ns: int
    symlink: bool

    @property
    def draft(self) -> bool:
        """In a Jekyll `_drafts` folder: published only with `--drafts`."""
        return "_drafts" in self.relative.split("/")[:-1]


def post_files(root: Path, exclude: tuple[str, ...] = ()) -> list[PostFile]:
    """Markdown files below `root` with their size and mtime, in a stable order. Hidden and `_`-folders
    are skipped except Jekyll's `_posts` and `_drafts`; so is what `exclude` names (paths or globs relative
    to `root`, as Jekyll's `exclude`). When `root` is a Jekyll site (it has a `_posts` folder or a `_config.yml`:
    `en/_posts` and `ja/_posts` alone make one too), only files in
    `_posts` and `_drafts` folders are posts, and the folders Jekyll excludes by default are not entered."""
    found: list[PostFile] = []
    jekyll = (root / "_posts").is_dir() or (root / "_config.yml").is_file()
    skipped = tuple(pattern.strip("/") for pattern in (*exclude, *(_JEKYLL_EXCLUDED if jekyll else ())))

    def excluded(relative: str) -> bool:
        return any(fnmatch(relative, pattern) for pattern in skipped)

    def walk(folder: str, prefix: str, in_posts: bool) -> None:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda e: e.name)
        for entry in entries:
            name = entry.name
            if name.startswith(".") or (skipped and excluded(prefix + name)):
                continue
            if entry.is_dir(follow_symlinks=False):   # never into a linked folder: it may lead outside
                if not name.startswith("_") or name in _POST_FOLDERS:
                    walk(entry.path, f"{prefix}{name}/", in_posts or name in _POST_FOLDERS)
            elif name.lower().endswith(EXTENSIONS) and (in_posts or not jekyll):
                try:
                    stat = entry.stat()
                except OSError:
                    stat = entry.stat(follow_symlinks=False)
                found.append(PostFile(entry.path, prefix + name, stat.st_size, stat.st_mtime_ns,
                                      entry.is_symlink()))

    walk(str(root), "", False)
    return found
