"""Where the digest archive's files live in the published folder: shared by what makes their bytes
(`archive.py`), what keeps them in step with the store (`archive_sync.py`) and the links to them (`issue.py`).
Standard library only: a build that finds the archive unchanged imports nothing more."""

from __future__ import annotations

FOLDER = "digests"
INDEX = f"{FOLDER}/index.html"
FEED = f"{FOLDER}/feed.xml"


def page_path(period: str) -> str:
    return f"{FOLDER}/{period}/index.html"
