"""Which feeds exist, which posts each carries, and the bytes of every feed document.

Pure: `plan_feeds` takes collected posts, `feed_documents` and `site_files` return {relative path: bytes};
writing is `output.py`'s job. Feeds are planned from `Post` metadata alone, so only the posts some feed
shows get rendered.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from feedgen.ext.base import BaseExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from feedpub import templates, urls
from feedpub.config import Config
from feedpub.errors import Problem, message
from feedpub.site.markup import RenderedPost, strip_invalid_xml
from feedpub.site.reader import Post
from feedpub.site.typography import smartify
from feedpub.strings import Strings, load_strings

JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
# format → (file name, media type, label shown to people)
FORMATS = {
    "atom": ("feed.xml", "application/atom+xml", "Atom"),
    "rss": ("rss.xml", "application/rss+xml", "RSS"),
    "json": ("feed.json", "application/feed+json", "JSON Feed"),
}
# An empty site still needs a feed `updated`; a fixed instant keeps rebuilds byte-identical.
_NO_POSTS = datetime(1970, 1, 1, tzinfo=UTC)
_ATOM_NS = "http://www.w3.org/2005/Atom"
# Feeds per group of posts: (folder, names a post belongs to, the [feeds] switch that enables them).
_GROUPS: tuple[tuple[str, Callable[[Post], Sequence[str]], str], ...] = (
    ("categories", lambda post: post.categories, "categories"),
    ("tags", lambda post: post.tags, "tags"),
    ("authors", lambda post: (post.author,) if post.author else (), "authors"),
)

_GROUP_ORDER = {folder: i for i, (folder, _, _) in enumerate(_GROUPS)}

# Groups whose Atom document can live elsewhere (as jekyll-feed's feed/<category>.xml), and the key saying where.
_ATOM_PATHS = {"categories": "category_atom_path", "tags": "tag_atom_path"}
# A name jekyll-feed puts in a path as it is (`feed/Machine Learning.xml`) that would not stay one visible file of the
# folder: a separator, a leading dot (hidden: never served), `%` (read as an escape in the URL).
_UNSAFE_NAME = re.compile(r"^\.|[/\\%]")


@dataclass(frozen=True)
class Feed:
    title: str
    folder: str                 # "" for the site-wide feed, else e.g. "categories/ai導入戦略" (not escaped)
    posts: tuple[Post, ...]     # newest first, at most feeds.limit
    atom_path: str = ""         # where the Atom document goes when not in `folder` (feeds.*atom_path)
    name: str = ""              # the category, tag or author it carries ("" for the site-wide feed)

    def path(self, fmt: str) -> str:
        """The document's path inside the output folder."""
        if fmt == "atom" and self.atom_path:
            return self.atom_path
        name = FORMATS[fmt][0]
        return f"{self.folder}/{name}" if self.folder else name

    def url(self, config: Config, fmt: str) -> str:
        return urls.absolute(config.site.root_url, self.path(fmt))


def plan_feeds(config: Config, posts: Sequence[Post], *, fold_case: bool = False) -> tuple[list[Feed], list[Problem]]:
    """The site feed plus one feed per category (and tag, author when enabled), each with its newest
    `feeds.limit` posts. One pass over the posts per kind of group: never posts × categories.

    Names are told apart as Jekyll tells them, by case too: `Perl` and `perl` are two feeds, each with its own
    posts and Atom path (`feed/by_tag/Perl.xml`, `feed/by_tag/perl.xml`). `fold_case` says the output folder's
    file system does not tell such paths apart: then the name whose first post is older keeps the path."""
    limit = config.feeds.limit
    newest_first = sorted(posts, key=lambda p: (p.date, p.path), reverse=True)
    title = smartify(config.site.title)  # as jekyll-feed writes titles: `| smartify`
    feeds = [Feed(_clean(title), "", tuple(newest_first[:limit]), config.feeds.atom_path)]
    problems: list[Problem] = []
    for folder, names_of, switch in _GROUPS:
        if not getattr(config.feeds, switch):
            continue
        members: dict[str, list[Post]] = {}
        oldest: dict[str, Post] = {}
        for post in newest_first:
            for name in names_of(post):
                group = members.setdefault(name, [])
                oldest[name] = post
                if len(group) < limit:
                    group.append(post)
        # The name that had a feed first keeps a URL two names share (and on every build after, as new posts
        # are newer).
        precedence = sorted(oldest, key=lambda name: (oldest[name].date, oldest[name].path, name))
        slugs, messages, notes = urls.assign_slugs({name: oldest[name].source for name in precedence},
                                                   config.feeds.slugs)
        problems += [Problem(config.source, None, what) for what in messages]
        problems += [Problem(config.source, None, note, warning=True) for note in notes]
        pattern = getattr(config.feeds, _ATOM_PATHS[folder]) if folder in _ATOM_PATHS else ""
        atom_paths: dict[str, str] = {}   # the path as the file system tells paths apart → the name holding it
        for name in precedence:
            if name not in slugs:
                continue
            slug = slugs[name]
            # jekyll-feed puts the name itself in the path; one that could leave the folder gets its slug.
            atom_path = pattern.format(name=slug if _UNSAFE_NAME.search(name) else name, slug=slug)
            holder = atom_paths.setdefault(atom_path.casefold() if fold_case else atom_path, name) if pattern else name
            if holder != name:
                problems.append(Problem(config.source, None, message(
                    "atom_path_shared", holder=holder, name=name, atom_path=atom_path,
                    moved=f"{folder}/{slug}/{FORMATS['atom'][0]}"), warning=True))
                atom_path = ""
            feeds.append(Feed(_clean(f"{title} | {name}"), f"{folder}/{slug}", tuple(members[name]), atom_path,
                              name))
    feeds[1:] = sorted(feeds[1:], key=lambda feed: (_GROUP_ORDER[feed.folder.split("/", 1)[0]], feed.folder))
    return feeds, problems


def needed_posts(feeds: Sequence[Feed]) -> list[Post]:
    """Every post some feed shows, once, newest first."""
    union = {post.url: post for feed in feeds for post in feed.posts}
    return sorted(union.values(), key=lambda p: (p.date, p.path), reverse=True)


def feed_documents(config: Config, feed: Feed, rendered: Mapping[str, RenderedPost]) -> dict[str, bytes]:
    """One feed in every configured format."""
    makers = {"atom": atom_bytes, "rss": rss_bytes, "json": json_feed_bytes}
    entries = [rendered[post.url] for post in feed.posts]
    return {feed.path(fmt): makers[fmt](config, feed, entries) for fmt in config.feeds.formats}


def site_files(config: Config, feeds: Sequence[Feed]) -> dict[str, bytes]:
    """The files about all feeds: feeds.opml, feeds/index.html and feed.xsl."""
    t = _strings(config).all(title=config.site.title)
    files = {"feeds.opml": opml_bytes(config, feeds, t), "feeds/index.html": index_html_bytes(config, feeds, t)}
    if config.feeds.stylesheet:
        files["feed.xsl"] = _templates().get_template("feed.xsl").render(t=t).encode("utf-8")
    return files


def atom_bytes(config: Config, feed: Feed, entries: Sequence[RenderedPost]) -> bytes:
    generator = _generator(config, feed, entries)
    generator.link(_links(config, feed, "atom"), replace=True)
    return generator.atom_str(pretty=True)


def rss_bytes(config: Config, feed: Feed, entries: Sequence[RenderedPost]) -> bytes:
    generator = _generator(config, feed, entries)
    generator.link(_links(config, feed, "rss"), replace=True)
    return generator.rss_str(pretty=True)


def json_feed_bytes(config: Config, feed: Feed, entries: Sequence[RenderedPost]) -> bytes:
    """JSON Feed 1.1 (https://jsonfeed.org/version/1.1)."""
    site = config.site
    document: dict[str, Any] = {
        "version": JSON_FEED_VERSION,
        "title": feed.title,
        "home_page_url": site.root_url + "/",
        "feed_url": feed.url(config, "json"),
    }
    if site.description:
        document["description"] = _clean(site.description)
    if site.icon:
        document["icon"] = _site_url(config, site.icon)
    if site.logo or site.icon:
        document["favicon"] = _site_url(config, site.logo or site.icon)
    document["language"] = site.language
    if site.author:
        document["authors"] = [{"name": _clean(site.author)}]
    if config.feeds.websub_hub:
        document["hubs"] = [{"type": "WebSub", "url": hub} for hub in config.feeds.websub_hub]
    document["items"] = [_json_item(config, entry) for entry in entries]
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def opml_bytes(config: Config, feeds: Sequence[Feed], t: Mapping[str, str]) -> bytes:
    """OPML 2.0 listing every feed once (its first configured format), for one-click import."""
    opml = etree.Element("opml", version="2.0")
    head = etree.SubElement(opml, "head")
    etree.SubElement(head, "title").text = _clean(t["opml_title"])
    body = etree.SubElement(opml, "body")
    fmt = config.feeds.formats[0]
    for feed in feeds:
        etree.SubElement(body, "outline", type="json" if fmt == "json" else "rss", text=feed.title,
                         title=feed.title, xmlUrl=feed.url(config, fmt), htmlUrl=config.site.root_url + "/")
    return etree.tostring(opml, pretty_print=True, xml_declaration=True, encoding="UTF-8")


def index_html_bytes(config: Config, feeds: Sequence[Feed], t: Mapping[str, str]) -> bytes:
    """A page listing the feeds and the `<link rel="alternate">` tags to paste into a site's <head>, in the
    words `t` of site.language."""
    rows = [{"title": feed.title, "count": len(feed.posts),
             "documents": [_document(config, feed, fmt) for fmt in config.feeds.formats]}
            for feed in feeds]
    page = _templates().get_template("feeds_index.html").render(site=config.site, feeds=rows, t=t)
    return page.encode("utf-8")


def _document(config: Config, feed: Feed, fmt: str) -> dict[str, str]:
    _, media_type, label = FORMATS[fmt]
    url = feed.url(config, fmt)
    # The tag as HTML source; the page escapes it once more to show it in <pre>.
    tag = (f'<link rel="alternate" type="{media_type}" title="{html.escape(f"{feed.title} ({label})")}" '
           f'href="{html.escape(url)}">')
    return {"label": label, "type": media_type, "url": url, "tag": tag}


def _generator(config: Config, feed: Feed, entries: Sequence[RenderedPost]) -> FeedGenerator:
    """Everything Atom and RSS share; links are added per format."""
    site = config.site
    generator = FeedGenerator()
    generator.load_extension("media")
    generator.load_extension("dc", atom=False)  # RSS <author> must be an e-mail address: use dc:creator
    generator.register_extension("feedpub", _Extras, None)
    generator.feedpub.hubs = config.feeds.websub_hub
    generator.feedpub.stylesheet = _site_url(config, "/feed.xsl") if config.feeds.stylesheet else ""
    generator.id(feed.url(config, "atom"))
    generator.title(feed.title)
    # RSS requires a channel description (feedgen mirrors it into Atom's subtitle).
    generator.description(_clean(site.description) or feed.title)
    generator.language(site.language)
    generator.generator("feedpub", version=_version())
    generator.author(name=_clean(site.author or site.title))
    if site.icon:
        generator.icon(_site_url(config, site.icon))
    if site.logo:
        generator.logo(_site_url(config, site.logo))
    generator.updated(max((entry.post.updated for entry in entries), default=_NO_POSTS))
    for entry in entries:
        _add_entry(config, generator, entry)
    return generator


def _add_entry(config: Config, generator: FeedGenerator, rendered: RenderedPost) -> None:
    post = rendered.post
    entry = generator.add_entry(order="append")
    entry.guid(post.id, permalink=post.id == post.url)
    entry.title(smartify(post.title))
    entry.link(href=post.url)  # one alternate link: feedgen 1.0.0 drops entry link attributes (#135)
    entry.published(post.date)
    entry.updated(post.updated)
    author = post.author or config.site.author or config.site.title
    entry.author(name=author)
    entry.dc.dc_creator(author)
    for name in _labels(post):
        entry.category(term=name, label=name)
    if rendered.excerpt_html:
        entry.summary(rendered.excerpt_html, type="html")
    if config.feeds.content == "full" and rendered.html:
        entry.content(rendered.html, type="html")
    if post.image:
        entry.media.thumbnail(url=post.image, group=None)


def _links(config: Config, feed: Feed, fmt: str) -> list[dict[str, str]]:
    """Self first and alternate last: feedgen's RSS channel <link> is the last link added."""
    links = [{"href": feed.url(config, fmt), "rel": "self", "type": FORMATS[fmt][1]}]
    if fmt == "atom":
        links.extend({"href": hub, "rel": "hub"} for hub in config.feeds.websub_hub)
    links.append({"href": config.site.root_url + "/", "rel": "alternate", "type": "text/html"})
    return links


class _Extras(BaseExtension):
    """What feedgen cannot express: the `<?xml-stylesheet?>` instruction and an RSS WebSub hub link."""

    hubs: tuple[str, ...] = ()
    stylesheet = ""

    def extend_atom(self, feed: etree._Element) -> etree._Element:
        self._add_stylesheet(feed)
        return feed

    def extend_rss(self, feed: etree._Element) -> etree._Element:
        self._add_stylesheet(feed)
        for hub in self.hubs:
            etree.SubElement(feed.find("channel"), f"{{{_ATOM_NS}}}link", href=hub, rel="hub")
        return feed

    def _add_stylesheet(self, root: etree._Element) -> None:
        if self.stylesheet:
            root.addprevious(etree.ProcessingInstruction("xml-stylesheet",
                                                         f'type="text/xsl" href="{self.stylesheet}"'))


def _json_item(config: Config, rendered: RenderedPost) -> dict[str, Any]:
    post = rendered.post
    item: dict[str, Any] = {"id": post.id, "url": post.url, "title": smartify(post.title)}
    item["content_html"] = rendered.html if config.feeds.content == "full" else rendered.excerpt_html
    if rendered.excerpt_text:
        item["summary"] = rendered.excerpt_text
    if post.image:
        item["image"] = post.image
    item["date_published"] = post.date.isoformat()
    item["date_modified"] = post.updated.isoformat()
    author = post.author or config.site.author
    if author:
        item["authors"] = [{"name": author}]
    labels = _labels(post)
    if labels:
        item["tags"] = labels
    return item


def _labels(post: Post) -> list[str]:
    """Categories then tags, each once."""
    return list(dict.fromkeys(post.categories + post.tags))


def _site_url(config: Config, value: str) -> str:
    """A configured URL or site path (icon, logo) made absolute."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", value, re.I):
        return value
    return urls.absolute(config.site.root_url, value)


def _clean(text: str) -> str:
    """Config text goes into XML too; post text was checked by the collector."""
    return strip_invalid_xml(text).strip()


@cache
def _version() -> str:
    try:
        return version("feedpub")
    except PackageNotFoundError:
        return "0"


def _strings(config: Config) -> Strings:
    """The words of the feeds index, feeds.opml and feed.xsl; an operator's in web.templates_dir/strings.toml."""
    override = config.path(config.web.templates_dir) if config.web.templates_dir else None
    return load_strings("site", config.site.language, override)


@cache
def _templates() -> Any:
    return templates.environment("site")
