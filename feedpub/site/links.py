"""`{% post_url %}` and `{% link %}` resolved as Jekyll 4.3 resolves them (jekyll/tags/post_url.rb, link.rb; the URLs
of collections' documents as collection.rb, document.rb and url.rb make them), and the check that leaves out a post
naming a target (or an `{% include %}` file) Jekyll cannot find: Jekyll stops the whole build there; feedpub names
the post and its line, leaves it out, and publishes the rest.

Pure but for the look at the site folder for a page, a static file, a collection's document or an include. Without
Liquid: the check runs in every build that changed something, before any post is rendered.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from fnmatch import fnmatch
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

from feedpub import urls
from feedpub.dates import read_date
from feedpub.errors import Message, Problem, message
from feedpub.jekyll import FrontMatterDefault, JekyllCollection, defaults_for, with_defaults
from feedpub.site.includes import IncludeScope, valid_include_name
from feedpub.site.reader import Post, link_tags, post_slug, relative_path
from feedpub.site.source import MAX_POST_BYTES, Skip, split

# Jekyll::Tags::PostComparer::MATCHER (the tag's argument without a leading slash).
_POST_NAME = re.compile(r"^(.+/)*(\d+-\d+-\d+)-(.*)$")
_DATED = re.compile(r"(\d+-\d+-\d+)-")
# Includes within includes that are checked: as deep as the renderer goes (liquid_engine's context_depth_limit).
MAX_INCLUDE_DEPTH = 10
# Kramdown's Markdown extensions (Jekyll's `markdown_ext`), whose pages are written as .html.
_MARKDOWN = frozenset((".markdown", ".mkdown", ".mkdn", ".mkd", ".md"))
_FRONT_MATTER = re.compile(rb"\A---\s*\r?\n")
# `page` keys Jekyll fills itself (or feedpub keeps outside `Post.matter`): a target made of them waits for rendering.
_COMPUTED = frozenset(("title", "date", "categories", "category", "tags", "tag", "excerpt", "reading_time", "url", "id",
                       "path", "slug", "name", "author", "content", "next", "previous", "collection", "draft", "ext",
                       "output", "relative_path"))
_PAGE_VALUE = re.compile(r"\{\{-?\s*page\.([\w-]+(?:\.[\w-]+)*)\s*-?\}\}")
# Jekyll's Document::DATE_FILENAME_MATCHER, on a document's path below the collections folder.
_DATED_DOCUMENT = re.compile(r"^(?:.+/)*?(\d{2,4}-\d{1,2}-\d{1,2})-([^/]*)(\.[^.]+)$")
# A placeholder of a document's URL template (URL#generate_url_from_drop).
_DROP_PLACEHOLDER = re.compile(r":([a-z_]+)")
# EntryFilter's SPECIAL_LEADING_CHAR_REGEX: a collection's entry or file name starting so is left out.
_SPECIAL = (".", "_", "#", "~")


class LinkError(ValueError):
    """A target Jekyll cannot resolve: its build stops with this message."""


@dataclass(frozen=True)
class Resolved:
    path: str                   # the site path, unescaped (without the baseurl)
    deprecated: str = ""        # Jekyll's deprecation warning for the match, if any


class Targets:
    """What `post_url` and `link` can name: the site's posts (newest first, as a build holds them) and the files
    below the site folder."""

    def __init__(self, posts: Sequence[Post], posts_root: Path, site_root: Path, permalink_style: str,
                 exclude: Iterable[str] = (), defaults: tuple[FrontMatterDefault, ...] = (),
                 scope: IncludeScope | None = None, collections: tuple[JekyllCollection, ...] = (),
                 tz: tzinfo = UTC, hidden_after: datetime | None = None) -> None:
        self.posts, self.posts_root, self.site_root = posts, posts_root, site_root
        self.permalink_style, self.exclude, self.defaults = permalink_style, tuple(exclude), defaults
        self.scope = scope   # what includes may read: their tags are checked too (none without it)
        self.collections = collections   # the site's other collections, whose documents `link` can name
        self.tz = tz   # the site's time zone, in which Jekyll fills a document's URL with its date
        self.hidden_after = hidden_after   # a document dated later is not written (Jekyll without `future`)
        self._included: dict[Path, tuple[tuple[str, str, int], ...]] = {}

    def among(self, posts: Sequence[Post]) -> Targets:
        """The same site with only `posts`."""
        narrowed = Targets(posts, self.posts_root, self.site_root, self.permalink_style, self.exclude, self.defaults,
                           self.scope, self.collections, self.tz, self.hidden_after)
        narrowed._included = self._included
        return narrowed

    @cached_property
    def _in_jekyll_order(self) -> list[tuple[str, Post]]:
        """(path below the site, post), in the order of Jekyll's site.posts.docs: by date, then file."""
        return [(relative_path(post, self.posts_root), post)
                for post in sorted(self.posts, key=lambda post: (post.date, post.file))]

    @cached_property
    def _by_path(self) -> dict[str, Post]:
        by_path: dict[str, Post] = {}
        for path, post in self._in_jekyll_order:
            by_path.setdefault(path, post)
        return by_path

    @cached_property
    def _by_date_text(self) -> dict[str, list[tuple[str, Post]]]:
        """The date as the file name writes it (`2025-01-01`, `2025-1-1`) → (path, post), in Jekyll's order: only
        those can match a `post_url` naming that date (a site's links are checked in one pass, not one per post)."""
        found: dict[str, list[tuple[str, Post]]] = {}
        for path, post in self._in_jekyll_order:
            named = _DATED.match(path.rsplit("/", 1)[-1])
            if named:
                found.setdefault(named[1], []).append((path, post))
        return found

    @cached_property
    def _by_day(self) -> dict[date, list[Post]]:
        found: dict[date, list[Post]] = {}
        for _, post in self._in_jekyll_order:
            found.setdefault(post.date.date(), []).append(post)
        return found

    @cached_property
    def _by_file(self) -> dict[str, Post]:
        return {os.path.normpath(post.file): post for post in self.posts}

    def post_url(self, name: str) -> Resolved:
        """The post `{% post_url name %}` names, matched as Jekyll's PostComparer does: the path, date and slug
        against each post's path below the site (`_posts/<path><date>-<slug>.<ext>` or `<path>_posts/<date>-…`),
        then, with Jekyll's deprecation warning, the slug and the day alone (a post in any folder)."""
        matched = _POST_NAME.match(name.removeprefix("/"))
        if not matched:
            raise LinkError(f'Could not parse name of post "{name}" in tag \'post_url\'. Make sure the post exists '
                            "and the name is correct. Jekyll::Errors::InvalidPostNameError: "
                            f"'{name}' does not contain valid date and/or title.")
        folder, written_date, slug = matched[1] or "", matched[2], matched[3]
        for path, post in self._by_date_text.get(written_date, ()):
            # A posts folder that is not a Jekyll site (no `_posts/`) plays `_posts/`.
            if _names(path if "_posts" in path.split("/")[:-1] else f"_posts/{path}", folder,
                      f"{written_date}-{slug}."):
                return Resolved(post.path)
        try:
            day = read_date(written_date, self.posts[0].date.tzinfo)[0] if self.posts else None  # type: ignore[arg-type]
        except (ValueError, OverflowError):
            day = None   # Jekyll raises an error for it, the same as for no post found
        for post in self._by_day.get(day.date(), ()) if day else ():
            if post_slug(post) == slug:
                return Resolved(post.path, f"A call to '{{% post_url {name} %}}' did not match a post using the "
                                           "new matching method of checking name (path-date-slug) equality. Please "
                                           "make sure that you change this tag to match the post's name exactly.")
        raise LinkError(f'Could not find post "{name}" in tag \'post_url\'. Make sure the post exists and the name '
                        "is correct.")

    def link(self, target: str) -> Resolved:
        """The file `{% link target %}` names by its path below the site, as Jekyll's each_site_file finds it: a
        post, a page, a static file, or a document of a collection Jekyll writes (by its path below the collections
        folder). The target is taken as written: quotes are part of the name."""
        # Posts first: in a posts folder that is not a Jekyll site (no `_posts/`), a post would also pass for a page.
        post = (self._by_path.get(target) or self._by_path.get("/" + target)
                or self._by_file.get(os.path.normpath(self.site_root / target)))
        if post is not None:
            return Resolved(post.path)
        page = (_site_file(self.site_root, target, self.permalink_style, self.exclude, self.defaults)
                or _collection_file(self.site_root, target, self.collections, self.permalink_style, self.exclude,
                                    self.defaults, self.tz, self.hidden_after))
        if page is not None:
            return Resolved(page)
        raise LinkError(f"Could not find document '{target}' in tag 'link'. Make sure the document exists and the "
                        "path is correct.")

    def include(self, argument: str, post: Post, *, relative: bool) -> Resolved:
        """The file `{% include name … %}` reads: a file of `_includes/`, or of the post's folder for
        `include_relative` (what either may read is the include tags' business: `includes.py`)."""
        name = argument.split(maxsplit=1)[0] if argument.strip() else ""
        if not valid_include_name(name):   # refused with a warning as the post renders (`liquid_tags.py`)
            return Resolved("")   # (nothing to read)
        if relative:
            folder, shown = Path(post.file).parent, os.path.dirname(relative_path(post, self.posts_root)) or "."
        else:
            folder, shown = self.site_root / "_includes", "_includes"
        path = folder / name
        if not path.is_file():
            raise LinkError(f"Could not locate the included file '{name}' in any of [\"{shown}\"]. Ensure it "
                            "exists in one of those directories and, if it is a symlink, does not point outside your "
                            "site source.")
        return Resolved(str(path))

    def tags_included(self, path: Path) -> tuple[tuple[str, str, int], ...]:
        """The tags (`reader.link_tags`) of an include file that an include may read (`includes.IncludeScope`)."""
        if path not in self._included:
            tags: tuple[tuple[str, str, int], ...] = ()
            if self.scope is not None and not any(self.scope.refusal(p) for p in (path, path.resolve())):
                try:
                    if path.stat().st_size <= MAX_POST_BYTES:
                        tags = link_tags(path.read_text(encoding="utf-8-sig"), 1)
                except (OSError, UnicodeDecodeError):
                    pass   # the include tag reports it as the post renders
            self._included[path] = tags
        return self._included[path]

    def resolve(self, tag: str, argument: str, post: Post) -> Resolved:
        """What the tag `tag` of `post` names."""
        if tag in ("include", "include_relative"):
            return self.include(argument, post, relative=tag == "include_relative")
        return self.post_url(argument) if tag == "post_url" else self.link(argument)


def _names(path: str, folder: str, start: str) -> bool:
    """PostComparer's name regex, `^_posts/<folder><date>-<slug>\\.[^.]+|^<folder>_posts/?<date>-<slug>\\.[^.]+`,
    without compiling one per tag (`start` is `<date>-<slug>.`)."""
    for prefix in (f"_posts/{folder}", f"{folder}_posts/", f"{folder}_posts"):
        if path.startswith(prefix + start) and path[len(prefix) + len(start):][:1] not in ("", "."):
            return True
    return False


def _site_file(root: Path, target: str, permalink_style: str, exclude: Iterable[str],
               defaults: tuple[FrontMatterDefault, ...]) -> str | None:
    """The URL path of a page (a file with front matter) or a static file at `target` below `root`, which Jekyll
    would write; None for anything else (a post, a file Jekyll leaves out, no such file)."""
    relative = PurePosixPath(target)
    if (not target or target.startswith("/") or ".." in relative.parts or "\\" in target
            or any(part.startswith(("_", ".", "#")) or part.endswith("~") for part in relative.parts)
            or _excluded(target, exclude)):
        return None
    path = root / target
    try:
        if not path.is_file() or not path.resolve().is_relative_to(root.resolve()):
            return None
        with path.open("rb") as file:
            is_page = bool(_FRONT_MATTER.match(file.read(16)))
        if not is_page:
            return "/" + target
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        meta = split(text, target, [])[0]
    except Skip:
        meta = {}   # Jekyll reads a page whose front matter it cannot parse without it
    permalink = with_defaults(defaults_for(defaults, target, "pages"), meta).get("permalink")
    return _page_url(relative, permalink if isinstance(permalink, str) and permalink else None, permalink_style)


def _excluded(target: str, exclude: Iterable[str]) -> bool:
    """Whether the site's `exclude` names `target` (a path below the site): a folder above it, or a glob."""
    relative = PurePosixPath(target)
    return any(relative.is_relative_to(excluded.strip("/")) or fnmatch(target, excluded.strip("/"))
               for excluded in exclude if excluded.strip("/"))


def _collection_file(root: Path, target: str, collections: Iterable[JekyllCollection], permalink_style: str,
                     exclude: Iterable[str], defaults: tuple[FrontMatterDefault, ...], tz: tzinfo,
                     hidden_after: datetime | None) -> str | None:
    """The URL path of a document (a file with front matter) or a static file of a collection Jekyll writes
    (`output: true`), `target` being its path below the collections folder (`_docs/history.md`: Document's and
    StaticFile's relative_path); None for anything else (a collection Jekyll does not write, a file its
    Collection#filtered_entries leaves out, one `published: false` or dated after `hidden_after`, no such file)."""
    label, _, below = target.partition("/")
    collection = next((c for c in collections if c.output and f"_{c.label}" == label), None)
    relative = PurePosixPath(target)
    if (collection is None or not below or ".." in relative.parts or "\\" in target or "//" in target
            or below.startswith(_SPECIAL) or relative.name.startswith(_SPECIAL) or target.endswith((".", "~"))
            or _excluded(target, exclude)):
        return None
    path = root / collection.collections_dir / target
    try:
        if not path.is_file() or not path.resolve().is_relative_to(root.resolve()):
            return None
        with path.open("rb") as file:
            is_document = bool(_FRONT_MATTER.match(file.read(16)))
        text = path.read_text(encoding="utf-8-sig") if is_document else ""
    except (OSError, UnicodeDecodeError):
        return None
    # Both cut the extension, then trailing dots, then the collection's folder off the path (cleaned_relative_path).
    cleaned = target.removesuffix(relative.suffix).rstrip(".").replace(label, "", 1)
    template = collection.permalink or "/:collection/:path" + _permalink_suffix(permalink_style)
    if not is_document:   # StaticFile#url: the hash of placeholders, each replaced where it is written
        url = template
        for key, value in (("collection", collection.label), ("path", cleaned), ("output_ext", ""),
                           ("name", relative.name.removesuffix(relative.suffix).rstrip(".")), ("title", "")):
            if ":" not in url:
                break
            url = url.replace(f":{key}", value)
        return _sanitized(url).removesuffix("/") + relative.suffix
    try:
        matter = split(text, target, [])[0]
    except Skip:
        matter = {}   # Jekyll reads a document whose front matter it cannot parse without it
    matter = with_defaults(defaults_for(defaults, target, collection.label), matter)
    if matter.get("published") is False:
        return None
    own = matter.get("permalink")
    dated = _DATED_DOCUMENT.match(target)
    slug = str(matter.get("slug") or (dated[2] if dated else relative.stem)).rstrip(".")
    written = matter.get("date") or (dated[1] if dated else None)
    day = _document_date(written, target, tz)
    if written is not None and hidden_after is not None and day > hidden_after:   # Publisher#hidden_in_the_future?
        return None
    values = urls.placeholder_values(
        date=day,
        title=urls.jekyll_slugify(slug, "pretty", cased=True), slug=urls.jekyll_slugify(slug),
        categories=_document_categories(matter), output_ext=(
            PurePosixPath(own).suffix if isinstance(own, str) and not own.endswith("/") and PurePosixPath(own).suffix
            else ".html" if relative.suffix.lower() in _MARKDOWN else relative.suffix))
    values.update(collection=lambda: collection.label, path=lambda: cleaned,
                  name=lambda: urls.jekyll_slugify(relative.stem))

    def placeholder(match: re.Match[str]) -> str:
        name = match[1]
        key = name.removesuffix("_")   # `:title_` is `:title` then `_`, as Ruby's `chomp!` leaves it
        if key not in values:
            raise LinkError(f"The URL template doesn't have {key} keys. Check your permalink template! "
                            f"(the permalink of {target})")
        return values[key]() + name[len(key):]

    return _sanitized(_DROP_PLACEHOLDER.sub(placeholder, own if isinstance(own, str) else template))


def _document_date(value: object, target: str, tz: tzinfo) -> datetime:
    """A document's date: its front matter's, its file name's, else the build's time (Jekyll's site.time)."""
    if value is None:
        return datetime.now(tz)
    try:
        return read_date(value, tz)[0].astimezone(tz)
    except (ValueError, OverflowError):
        raise LinkError(f"Document '{target}' does not have a valid date in the YAML front matter.") from None


def _document_categories(matter: dict[str, Any]) -> list[str]:
    """Document#populate_categories: `categories` (a string split at spaces), and `category` as it is."""
    listed = matter.get("categories")
    found = listed.split() if isinstance(listed, str) else list(listed) if isinstance(listed, list) else []
    single = matter.get("category")
    found += single if isinstance(single, list) else [] if single is None else [single]
    return [str(item) for item in found if item is not None]


def _sanitized(url: str) -> str:
    """Jekyll's URL#sanitize_url."""
    return re.sub(r"/{2,}", "/", ("/" + url).replace("..", "/").replace("./", ""))


def _permalink_suffix(permalink_style: str) -> str:
    """What Utils.add_permalink_suffix appends for the site's permalink style."""
    style = {"date": ":output_ext", "ordinal": ":output_ext", "none": ":output_ext", "pretty": "/"}.get(
        permalink_style, "")
    if not style:
        style = "/" if permalink_style.endswith("/") else ":output_ext" if permalink_style.endswith(
            ":output_ext") else ""
    return style


def _page_url(relative: PurePosixPath, permalink: str | None, permalink_style: str) -> str:
    """Jekyll's Page#template and URL: the page's own permalink, else the site's style."""
    output_ext = ".html" if relative.suffix.lower() in _MARKDOWN else relative.suffix
    folder = "/" + relative.parent.as_posix().removeprefix(".").strip("/")
    if permalink:
        template = permalink
    elif output_ext != ".html":
        template = "/:path/:basename:output_ext"
    elif relative.stem == "index":
        template = "/:path/"
    else:
        template = f"/:path/:basename{_permalink_suffix(permalink_style)}"
    url = re.sub(r":(path|basename|output_ext)\b", lambda match: {
        "path": folder, "basename": relative.stem, "output_ext": output_ext}[match[1]], template)
    return "/" + re.sub(r"/{2,}", "/", url).lstrip("/")


def unresolved(posts: Sequence[Post], targets: Targets) -> tuple[list[Post], list[Post], list[Problem]]:
    """The posts whose every `post_url`, `link`, `include` and `include_relative` Jekyll resolves, the others, and
    their problems: a target Jekyll cannot find is an error naming the post and the line (the post is left out:
    Jekyll's build stops at it); a match Jekyll deprecates is a warning. A target made of the post's own front matter
    (`{% link {{ page.other }} %}`) is checked here too; one made of other Liquid, when the post renders."""
    kept = list(posts)
    left_out: list[Post] = []
    problems: list[Problem] = []
    current = targets
    while True:   # a post naming one left out is left out too: the URL it names is in no feed
        warnings: list[Problem] = []
        dropped: dict[int, list[Problem]] = {}
        for post in kept:
            errors: list[Problem] = []
            for tag, written, line in post.links:
                _check(current, targets, post, tag, written, line, "", errors, warnings, depth=0)
            if errors:
                dropped[id(post)] = errors
        if not dropped:
            return kept, left_out, [*problems, *warnings]
        for post in kept:
            problems.extend(dropped.get(id(post), ()))
        left_out.extend(post for post in kept if id(post) in dropped)
        kept = [post for post in kept if id(post) not in dropped]
        current = targets.among(kept)


def _check(targets: Targets, every: Targets, post: Post, tag: str, written: str, line: int, within: Message | str,
           errors: list[Problem], warnings: list[Problem], *, depth: int) -> None:
    """One tag of `post` at `line` (`within`: the include files it comes from, for messages); an include's own tags
    too, to the include tags' depth."""
    argument = _with_page_values(written, post)
    if argument is None:
        return
    try:
        found = targets.resolve(tag, argument, post)
    except LinkError as exc:
        what = message("link_not_found", reason=str(exc), within=within)
        if targets is not every and tag in ("post_url", "link"):
            with contextlib.suppress(LinkError):
                every.resolve(tag, argument, post)
                what = message("link_to_left_out", tag=tag, argument=argument, within=within)
        errors.append(Problem(post.source, line, what, EXPECTED[tag]))
        return
    if found.deprecated:
        warnings.append(Problem(post.source, line, message("jekyll_deprecates", within=within, reason=found.deprecated),
                                EXPECTED[tag], warning=True))
    if found.path and tag in ("include", "include_relative") and depth < MAX_INCLUDE_DEPTH:
        path = Path(found.path)
        shown = os.path.relpath(path, targets.site_root).replace(os.sep, "/")
        for inner_tag, inner_written, inner_line in targets.tags_included(path):
            _check(targets, every, post, inner_tag, inner_written, line,
                   message("within", place=f"{shown}:{inner_line}", outer=within),
                   errors, warnings, depth=depth + 1)


def _with_page_values(argument: str, post: Post) -> str | None:
    """The argument with each `{{ page.key }}` replaced by the post's front-matter text (nothing when the key is
    not there, as Liquid outputs nil); None when other Liquid is left."""
    def value(match: re.Match[str]) -> str:
        if match[1].split(".")[0] in _COMPUTED:
            raise LookupError(match[1])
        found: Any = post.matter
        for key in match[1].split("."):
            found = found.get(key) if isinstance(found, dict) else None
        if found is not None and not isinstance(found, str | int | float) or isinstance(found, bool):
            raise LookupError(match[1])
        return "" if found is None else str(found)

    try:
        text = _PAGE_VALUE.sub(value, argument)
    except LookupError:
        return None
    return None if "{{" in text or "{%" in text else text


EXPECTED = {tag: message(f"expected_{tag}") for tag in ("include", "include_relative", "post_url", "link")}
