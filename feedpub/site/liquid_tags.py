"""Jekyll's Liquid tags, registered on python-liquid by `liquid.JekyllEnvironment`: `highlight`, `post_url`,
`link`, `include` and `include_relative` (with Jekyll's `key="value"` / `key=variable` parameters, read as
`include.key`); and the state of one post's rendering that they, and the environment, report warnings to.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO

from liquid import RenderContext
from liquid.ast import BlockNode, Node
from liquid.builtin.expressions import FilteredExpression, tokenize
from liquid.exceptions import LiquidError
from liquid.parser import get_parser
from liquid.stream import TokenStream
from liquid.tag import Tag
from liquid.token import TOKEN_EOF, TOKEN_EXPRESSION, TOKEN_TAG, Token

from feedpub import urls
from feedpub.errors import Message, Problem, message
from feedpub.site import links
from feedpub.site.includes import is_text, valid_include_name
from feedpub.site.reader import Post

if TYPE_CHECKING:
    from liquid import BoundTemplate

    from feedpub.site.liquid import LiquidSite

# Jekyll's include syntax: `name key="value" key='value' key=variable`, the name possibly with `{{ variables }}`.
_INCLUDE_NAME = re.compile(r"((?:[^\s{]*\{\{.*?\}\})+[^\s{]*|\S+)\s*(.*)", re.S)
_INCLUDE_PARAM = re.compile(r"""([\w-]+)\s*=\s*(?:"([^"\\]*(?:\\.[^"\\]*)*)"|'([^'\\]*(?:\\.[^'\\]*)*)'|(\S+))""")


class RenderState:
    """One post's rendering: where its text comes from, and the warnings met."""

    def __init__(self, post: Post, first_line: int, text: str, deadline: float) -> None:
        self.post = post
        self.deadline = deadline   # time.monotonic() past which the rendering stops
        self.first_line = first_line
        self.text = text
        self.problems: list[Problem] = []
        self.sources: dict[int, tuple[str, int]] = {}   # id of an include's text → (file shown, first line)

    def warn_at(self, index: int, what: Message, expected: Message | None = None) -> None:
        line = self.first_line + self.text.count("\n", 0, index)
        self.problems.append(Problem(self.post.source, line, what, expected, warning=True))

    def warn(self, token: Token | None, what: Message, expected: Message | None = None, *, warning: bool = True,
             ) -> None:
        """A warning (or an error) at `token`: in the post, or in the include file it comes from."""
        if token is None or token.start_index < 0:
            self.problems.append(Problem(self.post.source, self.first_line, what, expected, warning=warning))
            return
        shown, first = self.sources.get(id(token.source), (self.post.source, self.first_line))
        line = first + token.source.count("\n", 0, token.start_index)
        problem = Problem(shown, line, what, expected, warning=warning)
        if problem not in self.problems:
            self.problems.append(problem)


current: ContextVar[RenderState] = ContextVar("feedpub_liquid_render")


class Including(Protocol):
    """What the tags need of the environment they are registered on (`liquid_engine.JekyllEnvironment`)."""

    site: LiquidSite

    def include(self, name: str, folder: Path, tag: str) -> BoundTemplate: ...


class IncludeError(LiquidError):
    """A file an include cannot read, in words (`what`), and what an include may read instead."""

    def __init__(self, what: Message, expected: Message | None = None) -> None:
        super().__init__(str(what), token=None)
        self.what, self.expected = what, expected or message("expected_include_file")


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
        return _TextNode(token, lambda context: _resolved(token, site, lambda: site.targets.post_url(name)))


class _LinkTag(Tag):
    name = "link"
    block = False

    def parse(self, stream: TokenStream) -> Node:
        token, expression = _tag(stream)
        argument = self.env.from_string(expression.value.strip() if expression else "")
        site: LiquidSite = self.env.site

        def render(context: RenderContext) -> str:
            # Jekyll renders the argument as Liquid first: `{% link {{ page.other }} %}`.
            buffer = context.get_buffer()
            argument.render_with_context(context, buffer, partial=True)
            target = buffer.getvalue()
            return _resolved(token, site, lambda: site.targets.link(target))

        return _TextNode(token, render)


def _resolved(token: Token, site: LiquidSite, resolve: Callable[[], links.Resolved]) -> str:
    """The URL a `post_url` or `link` gives, with the baseurl; nothing, with an error, where Jekyll's build stops
    (the posts whose literal targets are missing were left out before rendering: `links.unresolved`)."""
    try:
        found = resolve()
    except links.LinkError as exc:
        current.get().warn(token, message("rendered_as_nothing", reason=str(exc)), links.EXPECTED[token.value],
                           warning=False)
        return ""
    # A deprecated match was told when the post's targets were checked (`links.unresolved`).
    return site.baseurl + urls.escape_path(found.path)


class _IncludeNode(Node):
    __slots__ = ("name", "params", "relative")

    def __init__(self, token: Token, name: list[str | FilteredExpression], params: dict[str, object],
                 relative: bool) -> None:
        super().__init__(token)
        self.name, self.params, self.relative = name, params, relative

    def render_to_output(self, context: RenderContext, buffer: TextIO) -> int:
        env: Including = context.env  # type: ignore[assignment]
        tag = "include_relative" if self.relative else "include"
        folder = Path(current.get().post.file).parent if self.relative else env.site.root / "_includes"
        name = "".join(part if isinstance(part, str) else str(part.evaluate(context)) for part in self.name)
        try:
            _check_include(env.site, folder, name, tag)
            template = env.include(name, folder, tag)
        except LiquidError as exc:
            exc.token = self.token
            raise
        params = {key: value.evaluate(context) if isinstance(value, FilteredExpression) else value
                  for key, value in self.params.items()}
        with context.extend({"include": params}, template=template):
            template.render_with_context(context, buffer, partial=True)
        return True


def _check_include(site: LiquidSite, folder: Path, name: str, tag: str) -> None:
    """Raise IncludeError unless `name` below `folder` is a text file of the site's own sources that the tag
    may read (`includes.IncludeScope`), with the refusals of Jekyll's include tags."""
    shown = f"{{% {tag} {name if len(name) <= 100 else name[:99] + '…'} %}}"
    if not valid_include_name(name):
        raise IncludeError(message("include_invalid_name", tag=shown), message("expected_include_name"))
    named = folder / name
    path = named.resolve()
    where = message("the_post_folder") if tag == "include_relative" else "_includes/"
    if not path.is_relative_to(folder.resolve()):
        raise IncludeError(message("include_outside", tag=shown, where=where))
    for candidate in dict.fromkeys((named, path)):
        refusal = site.includes.refusal(candidate)
        if refusal:
            raise IncludeError(message("include_refused", tag=shown, name=Path(name).name, refusal=refusal),
                               message("expected_site_text_file"))
    if path.is_file() and not is_text(path):
        raise IncludeError(message("include_binary", tag=shown, name=Path(name).name),
                           message("expected_utf8_text_file"))


class _IncludeTag(Tag):
    name = "include"
    block = False
    relative = False

    def parse(self, stream: TokenStream) -> Node:
        token, expression = _tag(stream)
        found = _INCLUDE_NAME.match(expression.value.strip() if expression else "")
        name, rest = (found[1], found[2]) if found else ("", "")

        def parsed(text: str) -> FilteredExpression:
            return FilteredExpression.parse(self.env, TokenStream(tokenize(text, parent_token=expression or token)))

        # `{% include {{ page.card }}.html %}`: the name's variables are output when the tag renders.
        parts = [parsed(part) if odd else part for odd, part in zip([0, 1] * len(name), re.split(
            r"\{\{(.*?)\}\}", name), strict=False) if odd or part]
        params: dict[str, object] = {}
        for match in _INCLUDE_PARAM.finditer(rest):
            quoted = match[2] if match[2] is not None else match[3]
            params[match[1]] = quoted if quoted is not None else parsed(match[4])
        return _IncludeNode(token, parts, params, self.relative)


class _IncludeRelativeTag(_IncludeTag):
    name = "include_relative"
    relative = True


TAGS = (_HighlightTag, _PostUrlTag, _LinkTag, _IncludeTag, _IncludeRelativeTag)
