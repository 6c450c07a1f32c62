"""The Liquid subset real Jekyll posts use, applied to Markdown before it is rendered.

Supported: `{% raw %}`, `{% highlight lang %}` (→ a fenced code block), `{% comment %}`,
`{% post_url NAME %}`, `{% link PATH %}`, `{{ site.url }}`, `{{ site.baseurl }}`, `{{ site.title }}`,
`{{ page.title }}`, `{{ page.url }}` and `{{ "path" | relative_url / absolute_url }}`. Anything else is
removed with a warning naming the file and line, so no Liquid reaches a feed or an e-mail.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from feedpub.errors import Problem

# Each search for a closing delimiter stops at the next opening one ("tempered" dots): with plain `.*?`,
# thousands of unclosed tags make every match attempt scan to the end of the post (quadratic time).
_RAW = re.compile(r"\{%-?\s*raw\s*-?%\}(.*?)(?:\{%-?\s*endraw\s*-?%\}|\Z)", re.S)
_COMMENT = re.compile(r"\{%-?\s*comment\s*-?%\}(?:(?!\{%-?\s*comment\b).)*?\{%-?\s*endcomment\s*-?%\}", re.S)
_HIGHLIGHT = re.compile(
    r"\{%-?\s*highlight\s+([\w+#.-]+)[^%]*?-?%\}\n?((?:(?!\{%-?\s*highlight\b).)*?)\n?"
    r"\{%-?\s*endhighlight\s*-?%\}", re.S)
_TAG = re.compile(r"\{%-?\s*(\w+)((?:(?!\{%).)*?)-?%\}", re.S)
_OUTPUT = re.compile(r"\{\{-?\s*((?:(?!\{\{).)*?)\s*-?\}\}", re.S)
_QUOTED = re.compile(r"""^(['"])(.*)\1$""")
_PLACEHOLDER = "\x02raw{}\x03"  # control characters never occur in a post that got this far


@dataclass(frozen=True)
class LiquidContext:
    site_url: str          # scheme + host, no trailing slash
    baseurl: str           # path prefix, '' or '/blog'
    site_title: str
    page_title: str
    page_url: str          # site path of this post
    post_urls: Mapping[str, str]   # post file name (no extension) → site path
    link_paths: Mapping[str, str]  # post file name (with extension) → site path


def render_liquid(text: str, context: LiquidContext, source: str, first_line: int) -> tuple[str, list[Problem]]:
    """Apply the Liquid subset to `text`; `first_line` is the file line where `text` starts."""
    warnings: list[Problem] = []
    raws: list[str] = []

    def line_at(index: int, within: str) -> int:
        return first_line + within.count("\n", 0, index)

    def keep_raw(match: re.Match[str]) -> str:
        if "endraw" not in match[0]:
            warnings.append(Problem(source, line_at(match.start(), text), "{% raw %} is never closed",
                                    "{% endraw %}", warning=True))
        raws.append(match[1])
        return _PLACEHOLDER.format(len(raws) - 1)

    # Positions are counted on the text as it is while each step runs; the steps before the
    # warning steps keep line counts intact (placeholders and fences keep their newlines).
    text = _RAW.sub(lambda m: keep_raw(m) + "\n" * m[0].count("\n"), text)
    text = _COMMENT.sub(lambda m: "\n" * m[0].count("\n"), text)
    text = _HIGHLIGHT.sub(lambda m: f"\n```{m[1]}\n{m[2]}\n```\n", text)

    def tag(match: re.Match[str]) -> str:
        name, args = match[1], match[2].strip()
        if name == "post_url":
            path = context.post_urls.get(args.split("/")[-1])
            if path is not None:
                return context.baseurl + path
            warnings.append(Problem(source, line_at(match.start(), text),
                                    f"{{% post_url {args} %}} names no post", "the file name of a post",
                                    warning=True))
            return ""
        if name == "link":
            target = _unquote(args)
            known = context.link_paths.get(target.rsplit("/", 1)[-1])
            return context.baseurl + (known or _page_path(target))
        warnings.append(Problem(source, line_at(match.start(), text),
                                f"Liquid tag {{% {name} %}} is not supported and was removed",
                                "raw, highlight, comment, post_url or link", warning=True))
        return ""

    def output(match: re.Match[str]) -> str:
        value = _output_value(match[1], context)
        if value is None:
            warnings.append(Problem(source, line_at(match.start(), text),
                                    f"Liquid output {{{{ {match[1]} }}}} is not supported and was removed",
                                    "site.url, site.baseurl, site.title or a relative_url filter",
                                    warning=True))
            return ""
        return value

    text = _TAG.sub(tag, text)
    text = _OUTPUT.sub(output, text)
    for leftover in re.finditer(r"\{%|\{\{", text):
        warnings.append(Problem(source, line_at(leftover.start(), text), "unclosed Liquid tag or output",
                                "a closing '%}' or '}}'", warning=True))
        break
    for index, raw in enumerate(raws):
        text = text.replace(_PLACEHOLDER.format(index), raw, 1)
    return text, warnings


def escape_braces(html: str) -> str:
    """Show literal `{{`/`{%` (from `{% raw %}`) as text without the bytes looking like Liquid."""
    return html.replace("{{", "&#123;{").replace("{%", "&#123;%")


def _output_value(expression: str, context: LiquidContext) -> str | None:
    parts = [p.strip() for p in expression.split("|")]
    head, filters = parts[0], parts[1:]
    quoted = _QUOTED.match(head)
    values = {
        "site.url": context.site_url,
        "site.baseurl": context.baseurl,
        "site.title": context.site_title,
        "page.title": context.page_title,
        "page.url": context.page_url,
    }
    if quoted:
        value = quoted[2]
    elif head in values:
        value = values[head]
    else:
        return None
    for name in filters:
        if name == "relative_url":
            value = context.baseurl + "/" + value.lstrip("/")
        elif name == "absolute_url":
            value = context.site_url + context.baseurl + "/" + value.lstrip("/")
        elif name not in ("escape", "xml_escape", "strip"):
            return None
    return value


def _unquote(text: str) -> str:
    quoted = _QUOTED.match(text)
    return quoted[2] if quoted else text


def _page_path(source: str) -> str:
    """Jekyll's output path for a page source: `docs/x.md` → `/docs/x.html`."""
    path = "/" + source.lstrip("/")
    return re.sub(r"\.(md|markdown)$", ".html", path)
