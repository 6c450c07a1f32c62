"""The Liquid in a post, rendered as Jekyll renders it, before the Markdown.

python-liquid (in lax mode, as Jekyll runs Liquid by default) with Jekyll's tags registered on it —
`highlight`, `post_url`, `link`, `include` and `include_relative` with `include.param` arguments — and
Jekyll's filters (`liquid_filters.py`). Variables: `site` (the config, the Jekyll `_config.yml` with its
custom keys, `site.data` from `_data/`, `site.posts`, `site.categories`, `site.tags`) and `page` (the front
matter and Jekyll's computed fields). What Jekyll would also render as nothing — an unknown tag, filter or
variable, a tag that cannot be parsed — is a warning naming the file and line; no `{% … %}` reaches a feed.

Sandboxed: files are read only from the site folder (`_includes/`, and the post's own folder for
`include_relative`), and each post's rendering is bounded in loop iterations, output size, include
depth and local variables, and in time and memory by the child process it runs in (`markup.render_posts`);
past a bound the post is published without its Liquid, with a warning.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from functools import cached_property
from pathlib import Path
from typing import Any

from feedpub import jekyll as jekyll_files
from feedpub import urls
from feedpub.config import Config
from feedpub.errors import Problem
from feedpub.jekyll import FrontMatterDefault, JekyllCollection
from feedpub.site.cache import fingerprint
from feedpub.site.includes import IncludeScope, include_scope
from feedpub.site.links import Targets
from feedpub.site.reader import LIQUID_MARKUP, POSTS_VARIABLES, READS_EVERYTHING, Post, post_slug

_UNCLOSED = re.compile(r"\{[{%][^\n]*")


@dataclass(frozen=True)
class LiquidSite:
    """What the Liquid of every post sees; made once per build by `liquid_site`."""

    root: Path                          # the site folder: no file outside it is ever read
    url: str                            # site.url without a trailing slash
    baseurl: str                        # '' or '/blog'
    site: Mapping[str, Any]             # the `site` variable
    markdownify: Callable[[str], str]   # Markdown → HTML, for the `markdownify` filter
    posts: Sequence[Post]               # every post of the site
    includes: IncludeScope              # what `include` and `include_relative` may read
    posts_root: Path                    # the folder post paths are relative to (`links.py`)
    permalink: str                      # the site's permalink style, for the URLs of pages `link` names
    exclude: tuple[str, ...]            # what Jekyll leaves out of the site
    defaults: tuple[FrontMatterDefault, ...]   # the front matter defaults, for the URLs of pages `link` names
    problems: tuple[Problem, ...] = ()  # met while reading the site's data files
    collections: tuple[JekyllCollection, ...] = ()   # the site's other collections, whose documents `link` names
    tz: tzinfo = UTC                    # the site's time zone, for the dates in those documents' URLs

    @cached_property
    def targets(self) -> Targets:
        """What `post_url` and `link` name (a document dated in the future too: whether Jekyll writes it, the check
        before rendering has decided, with the build's `--future`)."""
        return Targets(self.posts, self.posts_root, self.root, self.permalink, self.exclude, self.defaults,
                       collections=self.collections, tz=self.tz)

    def inputs(self, reads: Sequence[str]) -> str:
        """A fingerprint of what `reads` (a post's `Post.reads`) names: the values of those `site` keys, every
        post for `site.posts` and the like, everything and the include files for READS_EVERYTHING. A post whose
        text and inputs are unchanged renders the same, so the render cache is keyed by them."""
        values = []
        for name in reads:
            if name == READS_EVERYTHING:
                values.append((self._settings, self._posts_fingerprint, self._includes_fingerprint))
            elif name in POSTS_VARIABLES and name != "time":
                values.append(self._posts_fingerprint)
            elif name.startswith("data."):
                values.append(self.site["data"].get(name.removeprefix("data.")))
            else:
                values.append(self.site.get(name))   # dict.get: never makes the `site.posts` pages
        return fingerprint(reads, values) if reads else ""

    @cached_property
    def _settings(self) -> dict[str, Any]:
        """`site` without the keys made from the posts."""
        return {key: value for key, value in self.site.items() if key not in POSTS_VARIABLES or key == "time"}

    @cached_property
    def _posts_fingerprint(self) -> str:
        """Every post, and the settings of the collections whose documents `link` names (their URLs)."""
        # ~0.25 s for 10,000 posts, once a build, only when a post reads them
        return fingerprint(self.posts, self.collections)

    @cached_property
    def _includes_fingerprint(self) -> str:
        return fingerprint(jekyll_files.include_file_stats(self.root))


def liquid_site(config: Config, posts: Sequence[Post], *, markdownify: Callable[[str], str]) -> LiquidSite:
    """The site the posts' Liquid sees: the config, every post of the site and, with `site.jekyll_dir`,
    the Jekyll site's `_config.yml` and `_data/` (read here, once per build)."""
    site_config = config.site
    url, baseurl = site_config.url.rstrip("/"), site_config.baseurl.rstrip("/")
    root = config.jekyll_root or config.root
    jekyll, problems = jekyll_files.read_config(root) if config.jekyll_root else ({}, [])
    data, data_problems = jekyll_files.read_data(root)
    problems = [*(replace(p, warning=True) for p in problems), *data_problems]
    site = _Site(jekyll, posts, root)
    site.update(title=site_config.title, url=url, baseurl=baseurl, description=site_config.description,
                lang=site_config.language, timezone=site_config.timezone, author=site_config.author,
                # The newest post's date, not the clock: an unchanged site renders byte-identical feeds.
                time=_time(posts[0].date) if posts else None, data=data)
    return LiquidSite(root.resolve(), url, baseurl, site, markdownify, posts, include_scope(config), config.posts_dir,
                      site_config.permalink, site_config.exclude, config.front_matter_defaults, tuple(problems),
                      config.jekyll_collections, site_config.tz)


class _Site(dict):
    """`site`, whose `posts`, `categories` and `tags` are made when a post first reads them: a `page` for
    every post of the site is the one costly part of the variables (~30 µs a post)."""

    def __init__(self, values: Mapping[str, Any], posts: Sequence[Post], root: Path) -> None:
        super().__init__(values)
        self._posts, self._root = posts, root

    def __missing__(self, key: str) -> Any:
        if key not in ("posts", "categories", "tags"):
            raise KeyError(key)
        pages = [page_variable(post, self._root) for post in self._posts]
        self.update(posts=pages, categories=_grouped(pages, "categories"), tags=_grouped(pages, "tags"))
        return self[key]


class _Time(datetime):
    """A date as Ruby prints it when Liquid outputs it: `2025-12-16 04:49:25 +0900`."""

    def __str__(self) -> str:
        return self.strftime("%Y-%m-%d %H:%M:%S %z")


def _time(moment: datetime) -> _Time:
    return _Time(moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second,
                 moment.microsecond, moment.tzinfo)


def page_variable(post: Post, root: Path) -> dict[str, Any]:
    """`page` for a post: its front matter, then Jekyll's computed fields over it."""
    page = dict(post.matter)
    file = Path(post.file)
    page.update(title=post.title, url=urls.escape_path(post.path), date=_time(post.date),
                id=post.path.rsplit(".", 1)[0], categories=list(post.categories), tags=list(post.tags),
                excerpt=post.excerpt,
                path=file.relative_to(root).as_posix() if file.is_relative_to(root) else post.source,
                slug=post_slug(post), name=file.name, author=page.get("author") or post.author)
    return page


def _grouped(pages: list[dict[str, Any]], key: str) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for page in pages:
        for name in page[key]:
            groups.setdefault(name, []).append(page)
    return groups


def without_liquid(text: str) -> str:
    """`text` with every Liquid tag and output removed, an unclosed one up to the end of its line."""
    return _UNCLOSED.sub("", LIQUID_MARKUP.sub("", text))


def escape_braces(html_text: str) -> str:
    """Show literal `{{`/`{%` (from `{% raw %}`) as text without the bytes looking like Liquid."""
    return html_text.replace("{{", "&#123;{").replace("{%", "&#123;%")
