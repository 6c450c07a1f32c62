"""What the last build published, read back from the output folder: every feed `feeds.opml` lists, with
its entry count and the time its file last changed (the build rewrites only files whose bytes change)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from lxml import etree

from feedpub.config import Config


@dataclass(frozen=True)
class PublishedFeed:
    title: str
    url: str
    entries: int | None           # None: the file is missing or unreadable
    changed: datetime | None


def published_feeds(config: Config) -> list[PublishedFeed]:
    """The feeds of `feeds.opml` in the output folder; empty before the first build."""
    opml = config.output_dir / "feeds.opml"
    try:
        outlines = etree.parse(str(opml)).getroot().iter("outline")
    except (OSError, etree.XMLSyntaxError):
        return []
    root = urlsplit(config.site.root_url).path.rstrip("/")
    feeds = []
    for outline in outlines:
        url = outline.get("xmlUrl", "")
        path = unquote(urlsplit(url).path)
        local = config.output_dir / path[len(root):].lstrip("/") if path.startswith(root) else None
        feeds.append(PublishedFeed(outline.get("title", url), url, *_entries(local)))
    return feeds


def _entries(path: Path | None) -> tuple[int | None, datetime | None]:
    if path is None or not path.is_file():
        return None, None
    changed = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    try:
        if path.suffix == ".json":
            return len(json.loads(path.read_bytes()).get("items", [])), changed
        document = etree.parse(str(path)).getroot()
    except (OSError, ValueError, etree.XMLSyntaxError):
        return None, changed
    return len(document.xpath("//*[local-name()='entry' or local-name()='item']")), changed
