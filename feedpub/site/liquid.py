"""The Liquid in a post, rendered as Jekyll renders it, before the Markdown.

python-liquid (in lax mode, as Jekyll runs Liquid by default) with Jekyll's tags registered on it —
`highlight`, `post_url`, `link`, `include` and `include_relative` with `include.param` arguments — and
Jekyll's filters (`liquid_filters.py`). Variables: `site` (the config, the Jekyll `_config.yml` with its
custom keys, `site.data` from `_data/`, `site.posts`, `site.categories`, `site.tags`) and `page` (the front
matter and Jekyll's computed fields). What Jekyll would also render as nothing — an unknown tag, filter or
variable, a tag that cannot be parsed — is a warning naming the file and line; no `{% … %}` reaches a feed.

Sandboxed: files are read only from the site folder (`_includes/`, and the post's own folder for
`include_relative`), and each post's rendering is bounded in loop iterations, output size, include
depth and local variables; past a bound the post is published without its Liquid, with a warning.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from liquid import BoundTemplate, Environment, Mode, RenderContext, Undefined
from liquid.exceptions import LiquidError, ResourceLimitError
from liquid.token import Token

from feedpub import jekyll as jekyll_files
from feedpub import urls
from feedpub.config import Config
from feedpub.errors import Problem
from feedpub.site.liquid_filters import FILTERS
from feedpub.site.liquid_tags import TAGS, IncludeError, RenderState, current
from feedpub.site.reader import MAX_POST_BYTES, Post

# Markdown rendering is superlinear: Liquid may not make a post bigger than a post may be.
MAX_OUTPUT_CHARS = MAX_POST_BYTES
MAX_LOOP_ITERATIONS = 200_000        # a loop over 10,000 posts with a nested loop of 20 fits
MAX_LOCALS_BYTES = 4_000_000         # what `assign` and `capture` may hold (sys.getsizeof of the values)
_RAW_OPEN = re.compile(r"\{%-?\s*raw\s*-?%\}")
_RAW_CLOSE = re.compile(r"\{%-?\s*endraw\s*-?%\}")
_MARKUP = re.compile(r"\{%(?:(?!\{%).)*?%\}|\{\{(?:(?!\{\{).)*?\}\}", re.S)
_UNCLOSED = re.compile(r"\{[{%][^\n]*")
_JEKYLL_TAGS = "a Jekyll tag (raw, highlight, include, post_url, link, assign, capture, if, unless, case, for …)"


@dataclass(frozen=True)
class LiquidSite:
    """What the Liquid of every post sees; made once per build by `liquid_site`."""

    root: Path                          # the site folder: no file outside it is ever read
    url: str                            # site.url without a trailing slash
    baseurl: str                        # '' or '/blog'
    site: Mapping[str, Any]             # the `site` variable
    post_urls: Mapping[str, str]        # post file name without extension (or with its folders) → URL path
    link_paths: Mapping[str, str]       # post file name with extension → URL path
    markdownify: Callable[[str], str]   # Markdown → HTML, for the `markdownify` filter
    problems: tuple[Problem, ...] = ()  # met while reading the site's data files
    env: JekyllEnvironment = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "env", JekyllEnvironment(self))


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
    post_urls: dict[str, str] = {}
    for post in posts:
        post_urls[post.name] = post.path
        folders = post.source.replace("\\", "/").rsplit("/", 1)[0].split("/_posts", 1)
        if len(folders) == 2:   # `{% post_url news/2025-01-01-x %}` names a post under news/_posts
            post_urls[f"{folders[0].rsplit('/', 1)[-1]}/{post.name}"] = post.path
    link_paths = {p.source.replace("\\", "/").rsplit("/", 1)[-1]: p.path for p in posts}
    return LiquidSite(root.resolve(), url, baseurl, site, post_urls, link_paths, markdownify, tuple(problems))


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
                slug=_slug(post), name=file.name, author=page.get("author") or post.author)
    return page


def _slug(post: Post) -> str:
    stem = post.name
    return str(post.matter.get("slug") or (stem[11:] if re.match(r"^\d{4}-\d\d-\d\d-", stem) else stem))


def _grouped(pages: list[dict[str, Any]], key: str) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for page in pages:
        for name in page[key]:
            groups.setdefault(name, []).append(page)
    return groups


def render_liquid(text: str, site: LiquidSite, post: Post, first_line: int) -> tuple[str, list[Problem]]:
    """`text` (from the post, starting at file line `first_line`) with its Liquid rendered, and the
    warnings met on the way."""
    if "{{" not in text and "{%" not in text:
        return text, []
    state = RenderState(post, first_line, text)
    token = current.set(state)
    try:
        text = _close_raw(text, state)
        try:
            template = site.env.from_string(text)
            return template.render(page=page_variable(post, site.root)), state.problems
        except ResourceLimitError as exc:
            state.warn(exc.token, f"Liquid stopped: {exc.message}; the post is published without its Liquid",
                       "a loop, include or output of a reasonable size")
        except LiquidError as exc:
            state.warn(exc.token, f"Liquid cannot be parsed: {exc.message}; the post is published without "
                       "its Liquid", "a closing '%}' or '}}' for every '{%' and '{{'")
        return without_liquid(text), state.problems
    finally:
        current.reset(token)


def without_liquid(text: str) -> str:
    """`text` with every Liquid tag and output removed, an unclosed one up to the end of its line."""
    return _UNCLOSED.sub("", _MARKUP.sub("", text))


def escape_braces(html_text: str) -> str:
    """Show literal `{{`/`{%` (from `{% raw %}`) as text without the bytes looking like Liquid."""
    return html_text.replace("{{", "&#123;{").replace("{%", "&#123;%")


def _close_raw(text: str, state: RenderState) -> str:
    """Jekyll refuses a `{% raw %}` that is never closed; here it runs to the end of the post, with a warning."""
    last_open = None
    for opening in _RAW_OPEN.finditer(text):
        last_open = opening
    if last_open and not _RAW_CLOSE.search(text, last_open.end()):
        state.warn_at(last_open.start(), "{% raw %} is never closed; it runs to the end of the post",
                      "{% endraw %}")
        return text + "{% endraw %}"
    return text


class _Undefined(Undefined):
    """An unknown variable: nothing, as in Jekyll, and a warning when it is output."""

    __slots__ = ()

    def __str__(self) -> str:
        name = (self.hint or self.name).removesuffix(" is undefined").strip("'")
        current.get().warn(self.token, f"Liquid variable '{name}' is not defined and was rendered as nothing",
                            "a site., page., include. or assigned variable")
        return ""


class _Context(RenderContext):
    def filter(self, name: str, token: Token | None) -> Callable[..., object]:  # noqa: A003 - python-liquid's name
        if name not in self.env.filters:
            # Jekyll (strict_filters off) passes the value through an unknown filter unchanged.
            current.get().warn(token, f"Liquid filter '{name}' is unknown and was skipped",
                                "a Liquid or Jekyll filter")
            return lambda value, *args, **kwargs: value
        return super().filter(name, token)


class _Template(BoundTemplate):
    context_class = _Context


class JekyllEnvironment(Environment):
    """python-liquid as Jekyll configures Liquid: lax, Jekyll's tags and filters, the sandbox's bounds."""

    template_class = _Template
    loop_iteration_limit = MAX_LOOP_ITERATIONS
    output_stream_limit = MAX_OUTPUT_CHARS
    local_namespace_limit = MAX_LOCALS_BYTES
    context_depth_limit = 10          # includes within includes

    def __init__(self, site: LiquidSite) -> None:
        super().__init__(tolerance=Mode.LAX, undefined=_Undefined, globals={"site": site.site})
        self.site = site
        self.url, self.baseurl, self.markdownify = site.url, site.baseurl, site.markdownify
        self._includes: dict[Path, tuple[BoundTemplate, str] | LiquidError] = {}
        self._snippets: dict[str, BoundTemplate] = {}
        for tag in TAGS:
            self.add_tag(tag)
        self.tags.pop("render", None)   # Shopify's `render` reads templates Jekyll does not have
        for name, function in FILTERS.items():
            self.add_filter(name, function)

    def error(self, exc: type[LiquidError] | LiquidError, msg: str | None = None, token: Token | None = None) -> None:
        """Lax mode carries on past an error; it is reported as a warning. Past a resource bound, the
        whole post stops (rendering on would meet the bound again at every following node)."""
        if not isinstance(exc, LiquidError):
            exc = exc(msg, token=token)
        where = exc.token = exc.token or token
        if isinstance(exc, ResourceLimitError):
            raise exc
        message = str(exc.message)
        if message.startswith("unexpected tag"):
            message = f"Liquid tag {{% {where.value if where else '?'} %}} is unknown and was rendered as nothing"
            current.get().warn(where, message, _JEKYLL_TAGS)
        else:
            current.get().warn(where, f"Liquid: {message}; rendered as nothing",
                                getattr(exc, "expected", "Liquid as Jekyll accepts it"))

    def page_seed(self) -> str:
        """Seeds `sample`: the same post picks the same items on every build."""
        return current.get().post.path

    def condition(self, expression: str) -> Callable[[RenderContext, str, object], bool]:
        """`where_exp`'s test: is `expression` true with the variable bound to an item?"""
        template = self._snippet("{% if " + expression + " %}1{% endif %}")
        return lambda context, name, item: template.render(**{**context.globals, name: item}) == "1"

    def expression(self, expression: str) -> Callable[[RenderContext, str, object], str]:
        """`group_by_exp`'s key: `expression` output with the variable bound to an item."""
        template = self._snippet("{{ " + expression + " }}")
        return lambda context, name, item: template.render(**{**context.globals, name: item})

    def _snippet(self, source: str) -> BoundTemplate:
        if source not in self._snippets:
            self._snippets[source] = self.from_string(source)
        return self._snippets[source]

    def include(self, name: str, folder: Path, tag: str) -> BoundTemplate:
        """The parsed file `name` below `folder`, which must stay inside the site folder."""
        path = (folder / name).resolve()
        name = name if len(name) <= 100 else name[:99] + "…"   # as messages show it
        if not path.is_relative_to(folder.resolve()) or not path.is_relative_to(self.site.root):
            raise IncludeError(f"{{% {tag} {name} %}} names a file outside {folder.name}/, which is never read",
                              token=None)
        if path not in self._includes:
            self._includes[path] = self._load(path, name, tag)
        found = self._includes[path]
        if isinstance(found, LiquidError):
            raise found
        template, source = found
        # Tokens carry the text they come from: a warning inside the include names the include's file.
        current.get().sources[id(source)] = (str(path.relative_to(self.site.root)), 1)
        return template

    def _load(self, path: Path, name: str, tag: str) -> tuple[BoundTemplate, str] | LiquidError:
        try:
            if not path.is_file():
                return IncludeError(f"{{% {tag} {name} %}}: no such file", token=None)
            if path.stat().st_size > MAX_POST_BYTES:
                return IncludeError(f"{{% {tag} {name} %}}: file over {MAX_POST_BYTES:,} bytes", token=None)
            source = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            return IncludeError(f"{{% {tag} {name} %}}: cannot be read ({exc})", token=None)
        try:
            return self.from_string(source, name=name, path=path), source
        except LiquidError as exc:
            return exc
