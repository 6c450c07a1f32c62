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

import html
import re
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from liquid import BoundTemplate, Environment, Mode, RenderContext, Undefined
from liquid.ast import BlockNode, Node
from liquid.builtin.expressions import FilteredExpression, tokenize
from liquid.exceptions import LiquidError, ResourceLimitError
from liquid.parser import get_parser
from liquid.stream import TokenStream
from liquid.tag import Tag
from liquid.token import TOKEN_EOF, TOKEN_EXPRESSION, TOKEN_TAG, Token

from feedpub import jekyll as jekyll_files
from feedpub import urls
from feedpub.config import Config
from feedpub.errors import Problem
from feedpub.site.liquid_filters import FILTERS
from feedpub.site.reader import MAX_POST_BYTES, Post

# Markdown rendering is superlinear: Liquid may not make a post bigger than a post may be.
MAX_OUTPUT_CHARS = MAX_POST_BYTES
MAX_LOOP_ITERATIONS = 200_000        # a loop over 10,000 posts with a nested loop of 20 fits
MAX_LOCALS_BYTES = 4_000_000         # what `assign` and `capture` may hold (sys.getsizeof of the values)
_RAW_OPEN = re.compile(r"\{%-?\s*raw\s*-?%\}")
_RAW_CLOSE = re.compile(r"\{%-?\s*endraw\s*-?%\}")
_MARKUP = re.compile(r"\{%(?:(?!\{%).)*?%\}|\{\{(?:(?!\{\{).)*?\}\}", re.S)
_UNCLOSED = re.compile(r"\{[{%][^\n]*")
# Jekyll's include syntax: `name key="value" key='value' key=variable`.
_INCLUDE_PARAM = re.compile(r"""([\w-]+)\s*=\s*(?:"([^"\\]*(?:\\.[^"\\]*)*)"|'([^'\\]*(?:\\.[^'\\]*)*)'|(\S+))""")
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
                time=posts[0].date if posts else None, data=data)
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


def page_variable(post: Post, root: Path) -> dict[str, Any]:
    """`page` for a post: its front matter, then Jekyll's computed fields over it."""
    page = dict(post.matter)
    file = Path(post.file)
    page.update(title=post.title, url=urls.escape_path(post.path), date=post.date, id=post.path.rsplit(".", 1)[0],
                categories=list(post.categories), tags=list(post.tags), excerpt=post.excerpt,
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
    state = _Render(post, first_line, text)
    token = _current.set(state)
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
        _current.reset(token)


def without_liquid(text: str) -> str:
    """`text` with every Liquid tag and output removed, an unclosed one up to the end of its line."""
    return _UNCLOSED.sub("", _MARKUP.sub("", text))


def escape_braces(html_text: str) -> str:
    """Show literal `{{`/`{%` (from `{% raw %}`) as text without the bytes looking like Liquid."""
    return html_text.replace("{{", "&#123;{").replace("{%", "&#123;%")


def _close_raw(text: str, state: _Render) -> str:
    """Jekyll refuses a `{% raw %}` that is never closed; here it runs to the end of the post, with a warning."""
    last_open = None
    for opening in _RAW_OPEN.finditer(text):
        last_open = opening
    if last_open and not _RAW_CLOSE.search(text, last_open.end()):
        state.warn_at(last_open.start(), "{% raw %} is never closed; it runs to the end of the post",
                      "{% endraw %}")
        return text + "{% endraw %}"
    return text


class _Render:
    """One post's rendering: where its text comes from, and the warnings met."""

    def __init__(self, post: Post, first_line: int, text: str) -> None:
        self.post = post
        self.first_line = first_line
        self.text = text
        self.problems: list[Problem] = []
        self.sources: dict[int, tuple[str, int]] = {}   # id of an include's text → (file shown, first line)

    def warn_at(self, index: int, message: str, expected: str | None = None) -> None:
        line = self.first_line + self.text.count("\n", 0, index)
        self.problems.append(Problem(self.post.source, line, message, expected, warning=True))

    def warn(self, token: Token | None, message: str, expected: str | None = None) -> None:
        """A warning at `token`: in the post, or in the include file it comes from."""
        if token is None or token.start_index < 0:
            self.problems.append(Problem(self.post.source, self.first_line, message, expected, warning=True))
            return
        shown, first = self.sources.get(id(token.source), (self.post.source, self.first_line))
        line = first + token.source.count("\n", 0, token.start_index)
        problem = Problem(shown, line, message, expected, warning=True)
        if problem not in self.problems:
            self.problems.append(problem)


_current: ContextVar[_Render] = ContextVar("feedpub_liquid_render")


class _Undefined(Undefined):
    """An unknown variable: nothing, as in Jekyll, and a warning when it is output."""

    __slots__ = ()

    def __str__(self) -> str:
        name = (self.hint or self.name).removesuffix(" is undefined").strip("'")
        _current.get().warn(self.token, f"Liquid variable '{name}' is not defined and was rendered as nothing",
                            "a site., page., include. or assigned variable")
        return ""


class _Context(RenderContext):
    def filter(self, name: str, token: Token | None) -> Callable[..., object]:  # noqa: A003 - python-liquid's name
        if name not in self.env.filters:
            # Jekyll (strict_filters off) passes the value through an unknown filter unchanged.
            _current.get().warn(token, f"Liquid filter '{name}' is unknown and was skipped",
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
        for tag in (_HighlightTag, _PostUrlTag, _LinkTag, _IncludeTag, _IncludeRelativeTag):
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
            _current.get().warn(where, message, _JEKYLL_TAGS)
        else:
            _current.get().warn(where, f"Liquid: {message}; rendered as nothing",
                                getattr(exc, "expected", "Liquid as Jekyll accepts it"))

    def page_seed(self) -> str:
        """Seeds `sample`: the same post picks the same items on every build."""
        return _current.get().post.path

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
        if not path.is_relative_to(folder.resolve()) or not path.is_relative_to(self.site.root):
            raise _IncludeError(f"{{% {tag} {name} %}} names a file outside {folder.name}/, which is never read",
                              token=None)
        if path not in self._includes:
            self._includes[path] = self._load(path, name, tag)
        found = self._includes[path]
        if isinstance(found, LiquidError):
            raise found
        template, source = found
        # Tokens carry the text they come from: a warning inside the include names the include's file.
        _current.get().sources[id(source)] = (str(path.relative_to(self.site.root)), 1)
        return template

    def _load(self, path: Path, name: str, tag: str) -> tuple[BoundTemplate, str] | LiquidError:
        try:
            if not path.is_file():
                return _IncludeError(f"{{% {tag} {name} %}}: no such file", token=None)
            if path.stat().st_size > MAX_POST_BYTES:
                return _IncludeError(f"{{% {tag} {name} %}}: file over {MAX_POST_BYTES:,} bytes", token=None)
            source = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            return _IncludeError(f"{{% {tag} {name} %}}: cannot be read ({exc})", token=None)
        try:
            return self.from_string(source, name=name, path=path), source
        except LiquidError as exc:
            return exc


class _IncludeError(LiquidError):
    expected = "a file in the site's _includes/ (include) or beside the post (include_relative)"


def _tag(stream: TokenStream) -> tuple[Token, Token | None]:
    """The tag token and its expression token, if any, leaving the stream on the last one (the parser
    steps past it)."""
    tag = stream.current
    if stream.peek.kind != TOKEN_EXPRESSION:
        return tag, None
    next(stream)
    return tag, stream.current


class _HighlightNode(Node):
    __slots__ = ("language", "line_numbers", "block")

    def __init__(self, token: Token, language: str, line_numbers: bool, block: BlockNode) -> None:
        super().__init__(token)
        self.language, self.line_numbers, self.block = language, line_numbers, block

    def render_to_output(self, context: RenderContext, buffer: TextIO) -> int:
        """The HTML Jekyll's highlight tag gives (Rouge's classes, without its colouring spans), as an HTML
        block of its own so Markdown leaves it alone."""
        inner = context.get_buffer(buffer)
        self.block.render(context, inner)
        code = html.escape(inner.getvalue().strip("\r\n"), quote=False)
        if self.line_numbers:
            numbers = "".join(f"{n}\n" for n in range(1, code.count("\n") + 2))
            code = (f'<table class="rouge-table"><tbody><tr><td class="gutter gl"><pre class="lineno">{numbers}'
                    f'</pre></td><td class="code"><pre>{code}\n</pre></td></tr></tbody></table>')
        language = html.escape(self.language)
        return buffer.write(f'\n\n<figure class="highlight"><pre><code class="language-{language.replace("+", "-")}"'
                            f' data-lang="{language}">{code}</code></pre></figure>\n\n')


class _HighlightTag(Tag):
    name = "highlight"
    end = "endhighlight"

    def parse(self, stream: TokenStream) -> Node:
        token, expression = _tag(stream)
        words = expression.value.split() if expression else []
        next(stream)
        block = get_parser(self.env).parse_block(stream, frozenset((self.end, TOKEN_EOF)))
        stream.expect(TOKEN_TAG, value=self.end)
        return _HighlightNode(token, words[0] if words else "plaintext", "linenos" in words[1:], block)


class _TextNode(Node):
    """A tag whose output depends only on its argument and the site."""

    __slots__ = ("render_text",)

    def __init__(self, token: Token, render_text: Callable[[RenderContext], str]) -> None:
        super().__init__(token)
        self.render_text = render_text

    def render_to_output(self, context: RenderContext, buffer: TextIO) -> int:
        return buffer.write(self.render_text(context))


class _PostUrlTag(Tag):
    name = "post_url"
    block = False

    def parse(self, stream: TokenStream) -> Node:
        token, expression = _tag(stream)
        name = expression.value.strip() if expression else ""
        site: LiquidSite = self.env.site

        def render(context: RenderContext) -> str:
            path = site.post_urls.get(name) or site.post_urls.get(name.rsplit("/", 1)[-1])
            if path is None:
                _current.get().warn(token, f"{{% post_url {name} %}} names no post; rendered as nothing",
                                    "the file name of a post, without its extension")
                return ""
            return site.baseurl + urls.escape_path(path)

        return _TextNode(token, render)


class _LinkTag(Tag):
    name = "link"
    block = False

    def parse(self, stream: TokenStream) -> Node:
        token, expression = _tag(stream)
        target = expression.value.strip().strip("'\"") if expression else ""
        site: LiquidSite = self.env.site
        path = site.link_paths.get(target.rsplit("/", 1)[-1]) or re.sub(r"\.(md|markdown)$", ".html",
                                                                        "/" + target.lstrip("/"))
        return _TextNode(token, lambda context: site.baseurl + urls.escape_path(path))


class _IncludeNode(Node):
    __slots__ = ("name", "params", "relative")

    def __init__(self, token: Token, name: str, params: dict[str, object], relative: bool) -> None:
        super().__init__(token)
        self.name, self.params, self.relative = name, params, relative

    def render_to_output(self, context: RenderContext, buffer: TextIO) -> int:
        env: JekyllEnvironment = context.env  # type: ignore[assignment]
        tag = "include_relative" if self.relative else "include"
        folder = Path(_current.get().post.file).parent if self.relative else env.site.root / "_includes"
        try:
            template = env.include(self.name, folder, tag)
        except LiquidError as exc:
            exc.token = self.token
            raise
        params = {key: value.evaluate(context) if isinstance(value, FilteredExpression) else value
                  for key, value in self.params.items()}
        with context.extend({"include": params}, template=template):
            template.render_with_context(context, buffer, partial=True)
        return True


class _IncludeTag(Tag):
    name = "include"
    block = False
    relative = False

    def parse(self, stream: TokenStream) -> Node:
        token, expression = _tag(stream)
        name, _, rest = expression.value.strip().partition(" ") if expression else ("", "", "")
        params: dict[str, object] = {}
        for match in _INCLUDE_PARAM.finditer(rest):
            quoted = match[2] if match[2] is not None else match[3]
            params[match[1]] = quoted if quoted is not None else FilteredExpression.parse(
                self.env, TokenStream(tokenize(match[4], parent_token=expression or token)))
        return _IncludeNode(token, name, params, self.relative)


class _IncludeRelativeTag(_IncludeTag):
    name = "include_relative"
    relative = True
