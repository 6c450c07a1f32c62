"""python-liquid set up as Jekyll sets up Liquid — lax, Jekyll's tags and filters, `site` and `page` — with the
sandbox's bounds, and the rendering of one post's text with it. Imported only when a post holds Liquid
(see `liquid.render_liquid`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from liquid import BoundTemplate, Environment, Mode, RenderContext, Undefined
from liquid.exceptions import LiquidError, ResourceLimitError
from liquid.token import Token

from feedpub.errors import Problem, message
from feedpub.site.liquid import LiquidSite, page_variable, without_liquid
from feedpub.site.liquid_filters import FILTERS
from feedpub.site.liquid_tags import TAGS, IncludeError, RenderState, current
from feedpub.site.reader import Post
from feedpub.site.source import MAX_POST_BYTES

# Markdown rendering is superlinear: Liquid may not make a post bigger than a post may be.
MAX_OUTPUT_CHARS = MAX_POST_BYTES
MAX_LOOP_ITERATIONS = 200_000        # a loop over 10,000 posts with a nested loop of 20 fits
MAX_LOCALS_BYTES = 4_000_000         # what `assign` and `capture` may hold (sys.getsizeof of the values)
MAX_SECONDS = 4.0                    # a post's Liquid, checked at each filter (under markup.RENDER_SECONDS)
_RAW_OPEN = re.compile(r"\{%-?\s*raw\s*-?%\}")
_RAW_CLOSE = re.compile(r"\{%-?\s*endraw\s*-?%\}")
_JEKYLL_TAGS = message("expected_jekyll_tag")


def render(text: str, site: LiquidSite, post: Post, first_line: int) -> tuple[str, list[Problem]]:
    """`text` (from the post, starting at file line `first_line`) with its Liquid rendered, and the
    warnings met on the way."""
    state = RenderState(post, first_line, text, time.monotonic() + MAX_SECONDS)
    token = current.set(state)
    try:
        text = _close_raw(text, state)
        try:
            template = environment(site).from_string(text)
            return template.render(page=page_variable(post, site.root)), state.problems
        except ResourceLimitError as exc:
            state.warn(exc.token, message("liquid_stopped", reason=str(exc.message)),
                       message("expected_reasonable_size"))
        except LiquidError as exc:
            state.warn(exc.token, message("liquid_unparsed", reason=str(exc.message)),
                       message("expected_closed_liquid"))
        return without_liquid(text), state.problems
    finally:
        current.reset(token)


def _close_raw(text: str, state: RenderState) -> str:
    """Jekyll refuses a `{% raw %}` that is never closed; here it runs to the end of the post, with a warning."""
    last_open = None
    for opening in _RAW_OPEN.finditer(text):
        last_open = opening
    if last_open and not _RAW_CLOSE.search(text, last_open.end()):
        state.warn_at(last_open.start(), message("raw_not_closed"), message("expected_endraw"))
        return text + "{% endraw %}"
    return text


class _Undefined(Undefined):
    """An unknown variable: nothing, as in Jekyll, and a warning when it is output."""

    __slots__ = ()

    def __str__(self) -> str:
        name = (self.hint or self.name).removesuffix(" is undefined").strip("'")
        current.get().warn(self.token, message("undefined_variable", name=name), message("expected_variable"))
        return ""


class _TimeLimitError(ResourceLimitError):
    pass


class _Context(RenderContext):
    def filter(self, name: str, token: Token | None) -> Callable[..., object]:  # noqa: A003 - python-liquid's name
        # Loops, output and includes have bounds of their own; filters over many items are what can still take
        # long. Checked here, the time limit holds in every thread (markup's SIGALRM one only in the main one).
        if time.monotonic() > current.get().deadline:
            raise _TimeLimitError(f"render time limit of {MAX_SECONDS:g} s reached", token=token)
        if name not in self.env.filters:
            # Jekyll (strict_filters off) passes the value through an unknown filter unchanged.
            current.get().warn(token, message("unknown_filter", name=name), message("expected_filter"))
            return lambda value, *args, **kwargs: value
        return super().filter(name, token)


class _Template(BoundTemplate):
    context_class = _Context


_newest: tuple[LiquidSite, JekyllEnvironment] | None = None


def environment(site: LiquidSite) -> JekyllEnvironment:
    """The environment of `site`, made once per build: the posts rendered with it share its parsed includes.
    One is kept, the newest site's (a build makes one site; a daemon makes a new one at every build)."""
    global _newest
    newest = _newest
    if newest is None or newest[0] is not site:
        newest = _newest = (site, JekyllEnvironment(site))
    return newest[1]


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
        if isinstance(exc, IncludeError):
            current.get().warn(where, message("liquid_error", reason=exc.what), exc.expected)
        elif str(exc.message).startswith("unexpected tag"):
            current.get().warn(where, message("unknown_tag", tag=where.value if where else "?"), _JEKYLL_TAGS)
        else:
            current.get().warn(where, message("liquid_error", reason=str(exc.message)), message("expected_liquid"))

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
        """The parsed file `name` below `folder` (`liquid_tags` checked that an include may read it)."""
        path = (folder / name).resolve()
        name = name if len(name) <= 100 else name[:99] + "…"   # as messages show it
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
                return IncludeError(message("include_missing", tag=tag, name=name))
            if path.stat().st_size > MAX_POST_BYTES:
                return IncludeError(message("include_too_big", tag=tag, name=name, limit=MAX_POST_BYTES))
            source = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            return IncludeError(message("include_unreadable", tag=tag, name=name, reason=str(exc)))
        try:
            return self.from_string(source, name=name, path=path), source
        except LiquidError as exc:
            return exc
