"""The picture a digest shows for a post, sized for the 600 px layout without fetching anything.

`digest.images`: "image" shows the front matter's `image`; "first" falls back to the first image of the
post's body; "none" shows no pictures. The size comes from the front matter (`image: {path, width,
height, alt}`) or the body's `<img width height>`; otherwise a 16:9 box of the column's width, which the
template's `height: auto` corrects wherever a client honours CSS (Outlook on Windows keeps the box).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import lxml.html

from feedpub.site.markup import RenderedPost

# The column inside the 600 px container: digest.html.j2's `.cell` has 32 px of padding on each side.
COLUMN_WIDTH = 536
_UNKNOWN_SIZE = (COLUMN_WIDTH, round(COLUMN_WIDTH * 9 / 16))
_PIXELS = re.compile(r"^\s*(\d+)\s*(px)?\s*$")


@dataclass(frozen=True)
class Picture:
    src: str       # absolute http(s) URL
    width: int     # px as shown: at most COLUMN_WIDTH, never enlarged
    height: int
    alt: str


def picture(rendered: RenderedPost, images: str) -> Picture | None:
    """The post's picture under `digest.images`, or None."""
    post = rendered.post
    if images == "none":
        return None
    if post.image:
        return _fitted(post.image, post.image_size, post.image_alt or post.title)
    if images == "first" and "<img" in rendered.html:
        first = lxml.html.fragment_fromstring(rendered.html, create_parent="div").find(".//img")
        src = (first.get("src") or "").strip() if first is not None else ""
        if src.startswith(("https://", "http://")):
            size = _pixels(first.get("width")), _pixels(first.get("height"))
            known = (size[0], size[1]) if size[0] and size[1] else None
            return _fitted(src, known, " ".join((first.get("alt") or "").split()) or post.title)
    return None


def _fitted(src: str, size: tuple[int, int] | None, alt: str) -> Picture:
    width, height = size or _UNKNOWN_SIZE
    if width > COLUMN_WIDTH:
        width, height = COLUMN_WIDTH, max(1, round(height * COLUMN_WIDTH / width))
    return Picture(src, width, height, alt)


def _pixels(value: str | None) -> int:
    found = _PIXELS.match(value or "")
    return int(found[1]) if found else 0
