"""kramdown as Jekyll runs it, on top of Python-Markdown: what a feed reader would see differ between
jekyll-feed's content and ours.

Jekyll's defaults are kramdown with `input: GFM`, `hard_wrap: false`, `auto_ids: true`,
`smart_quotes: lsquo,rsquo,ldquo,rdquo` and rouge (`default_lang: plaintext`). Each rule below is
transcribed from kramdown 2.4.0 / kramdown-parser-gfm 1.1.0 as Debian ships them, and
bench/jekyll_compare.py measures the whole against Debian's jekyll.
"""

from __future__ import annotations

import bisect
import html
import itertools
import re
import xml.etree.ElementTree as etree
from collections import Counter
from pathlib import Path

from markdown import Markdown
from markdown.blockparser import BlockParser
from markdown.blockprocessors import BlockProcessor, BlockQuoteProcessor, HashHeaderProcessor, ListIndentProcessor
from markdown.extensions import Extension
from markdown.extensions.footnotes import NBSP_PLACEHOLDER, FootnoteExtension
from markdown.extensions.sane_lists import SaneOListProcessor, SaneUListProcessor
from markdown.extensions.toc import unescape
from markdown.inlinepatterns import BACKTICK_RE, BacktickInlineProcessor, InlineProcessor
from markdown.postprocessors import Postprocessor
from markdown.preprocessors import Preprocessor
from markdown.treeprocessors import Treeprocessor
from markdown.util import HTML_PLACEHOLDER_RE, AtomicString, code_escape

from feedpub.site.typography import smartify

# kramdown-parser-gfm's FENCED_CODEBLOCK_MATCH, line by line, with any indentation: inside list items
# kramdown sees the fence after removing the item's indentation; the code loses as much as the fence had.
_OPENING = re.compile(r"(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*?((?P<lang>\S+?)(?:\?\S*)?)?\s*$")
_CLOSING = re.compile(r" *(`{3,}|~{3,})\s*$")
_LIST_ITEM = re.compile(r"(?:[*+-]|\d+\.)[ \t]")
# kramdown's LIST_START with the item's text: the marker's indentation, the marker, the spaces after it.
_LIST_MARKER = re.compile(r"(?P<indent> *)(?P<marker>[*+-]|\d+\.)(?P<gap>[ \t]+|$)")
_FENCE_LINE = re.compile(r" *(?:`{3,}|~{3,})")
# kramdown's table lines: a code span keeps its pipes; an unescaped pipe elsewhere makes a cell boundary.
_CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)")
_CELL_PIPE = re.compile(r"(?<!\\)\|")
_NOSCRIPT = re.compile(r"<noscript\b[^>]*>(.*?)</noscript\s*>", re.S | re.I)
_TABLE_SEPARATOR = re.compile(r"[+|: \t-]*?-[+|: \t-]*?[ \t]*$")
_ROUGE_LEXERS = frozenset(word for line in (Path(__file__).parent / "assets" / "rouge_lexers.txt")
                          .read_text(encoding="utf-8").splitlines() if not line.startswith("#")
                          for word in line.split())
# {::comment}…{:/comment}, {::nomarkdown}…{:/}, {::options … /}: kramdown's extensions.
_EXTENSION = re.compile(r"\{::(?P<name>comment|nomarkdown|options)(?:\s(?:\\\}|[^}])*?)?"
                        r"(?:/\}|\}(?P<body>(?:(?!\{::).)*?)\{:/(?P=name)?\})", re.S)
# A strikethrough's text may not hold another ~~, so an unclosed run is not rescanned.
# `<<` before what could open a tag (`<<tag>>`): kramdown's guillemet wins; others are smartify's.
_GFM_SPANS = r"(?s)~~(?P<struck>(?!\s|~)(?:(?!~~).)*?[^\s~])~~|(?P<guillemet><<)(?=[A-Za-z/!])|\\\n"
_OPTION = re.compile(r"""(\w+)=(["'])(.*?)\2""")
_ALD = re.compile(r"^ {0,3}\{:\w[\w-]*:(?:\\\}|[^}])+\}\s*$")
_IAL = re.compile(r"^ {0,3}\{:(?![:/])(?P<attrs>(?:\\\}|[^}])+)\}\s*$")
_IAL_LINE = re.compile(r"^ {0,3}\{:(?![:/])(?P<attrs>(?:\\\}|[^}\n])+)\}[ \t]*$", re.M)
# kramdown-parser-gfm's paragraph_end quirk: a list, an ATX header or a quote ends a paragraph.
_INTERRUPT = re.compile(r" {0,3}(?:[+*-]|\d+\.)[\t ]|#{1,6}[\t ]| {0,3}>")
# kramdown takes an HTML block whose start tag is indented by up to 3 spaces; Python-Markdown's md_in_html
# only an unindented one.
_INDENTED_HTML_BLOCK = re.compile(r" {1,3}(?=<[A-Za-z][^>]*\bmarkdown=)")
_BLOCK_START = re.compile(r" {0,3}(?:[+*-]|\d+\.)[\t ]|#|\s| {0,3}>|\||<|\x02|:")
_NON_WORD = re.compile(r"[^\w\- \t]")
_TASK = re.compile(r"\A\s*\[[ xX]\]\s+")
_TAG = re.compile(r"<[^>]*>")
# kramdown-parser-gfm's ESCAPED_CHARS_GFM, beyond Python-Markdown's own (`\\<Esc>` is the text `<Esc>`).
_GFM_ESCAPED = ("<", ":", '"', "'", "$", "=", "~", "|")
_MARKDOWN_STARTS = {"em": "*", "strong": "**", "code": "`", "a": "[", "img": "!", "del": "~~", "sup": "[", "br": " "}
_HEADERS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_LISTS = ("ul", "ol")
_BLOCKS = frozenset({"ul", "ol", "p", "div", "pre", "blockquote", "table", "dl", "hr", "h1", "h2", "h3", "h4", "h5",
                     "h6"})
# Set while parsing on an item whose first paragraph a blank line follows; removed when the tree is walked.
_BLANK_AFTER = "data-kramdown-blank-after"

def extensions() -> list[Extension | str]:
    """The Python-Markdown extensions that make up kramdown's dialect (Python-Markdown's `extra` minus its
    fenced code, which is GFM's here)."""
    return ["abbr", "attr_list", "def_list", "md_in_html", "tables", "sane_lists",
            # kramdown numbers footnotes in the order they are referenced.
            FootnoteExtension(USE_DEFINITION_ORDER=False, BACKLINK_TEXT="\u21a9"), KramdownExtension()]


class KramdownExtension(Extension):
    """What Python-Markdown and its bundled extensions do not do as kramdown does."""

    def extendMarkdown(self, md: Markdown) -> None:  # noqa: N802 - Python-Markdown's name
        md.ESCAPED_CHARS.extend(char for char in _GFM_ESCAPED if char not in md.ESCAPED_CHARS)
        # Before raw HTML blocks are stashed (20), as Python-Markdown's own fenced code is.
        md.preprocessors.register(_ListIndentation(), "kramdown_list_indentation", 26)
        md.preprocessors.register(_FencedCode(md), "gfm_fenced_code", 25)
        extensions = _Extensions(md)
        md.preprocessors.register(extensions, "kramdown_extensions", 24)
        md.preprocessors.register(_IndentedHtmlBlocks(md), "kramdown_html_blocks", 21)
        md.preprocessors.register(_BlockBoundaries(md), "kramdown_blocks", 19)
        md.parser.blockprocessors.register(_BlockIal(md.parser), "kramdown_ial", 95)
        md.parser.blockprocessors.register(_AtxHeader(md.parser), "hashheader", 70)
        md.parser.blockprocessors.register(_ListIndent(md.parser), "indent", 90)
        md.parser.blockprocessors.register(_OList(md.parser), "olist", 40)
        md.parser.blockprocessors.register(_UList(md.parser), "ulist", 30)
        md.parser.blockprocessors.register(_BlockQuote(md.parser), "quote", 20)
        # After lists, quotes and headers, as kramdown tries its table parser after those.
        md.parser.blockprocessors.register(_PipeRows(md.parser), "kramdown_pipe_rows", 19)
        md.inlinePatterns.register(_CodeSpan(BACKTICK_RE), "backtick", 190)
        # Before escapes (180) take the backslash of a line break, and HTML (90) takes `<<tag>>`.
        md.inlinePatterns.register(_GfmSpans(_GFM_SPANS), "kramdown_spans", 185)
        # After attr_list (8) set explicit ids, footnotes (15) and abbreviations (7) their markup.
        md.treeprocessors.register(_KramdownTree(md, extensions), "kramdown", 6)
        # After raw HTML is put back (30).
        md.postprocessors.register(_NoScript(md), "kramdown_noscript", 25)


def _code_block(code: str, lang: str | None) -> str:
    """A code block as Jekyll writes it: rouge's wrapper when rouge knows the language (no language:
    plaintext), a bare `<pre><code class="language-X">` when it does not."""
    escaped = html.escape(code, quote=False)
    if lang is None or lang in _ROUGE_LEXERS:
        return (f'<div class="language-{lang or "plaintext"} highlighter-rouge"><div class="highlight">'
                f'<pre class="highlight"><code>{escaped}</code></pre></div></div>')
    return f'<pre><code class="language-{html.escape(lang)}">{escaped}</code></pre>'


class _ListIndentation(Preprocessor):
    """List items indented as kramdown reads them, written as Python-Markdown reads them. kramdown continues
    an item (and nests a list in it) at the column its text starts (2 after `- `, 3 after `1. `);
    Python-Markdown at multiples of 4. Each line inside an item is moved from the item's text column to
    4 × its depth, keeping any deeper indentation, except the lines that continue the item's first
    paragraph, which kramdown joins without that indentation; lines outside lists are left alone."""

    def run(self, lines: list[str]) -> list[str]:
        if not any(_LIST_ITEM.match(line.lstrip(" ")) for line in lines):
            return lines
        out: list[str] = []
        items: list[tuple[int, int]] = []   # open items: (text column as written, text column written out)
        in_fence = after_text = item_text = False
        block_indent = None   # the indentation written out of the first line since the last blank line
        for line in lines:
            if not line.strip():
                out.append(line)
                after_text = item_text = False
                block_indent = None
                continue
            if "\t" in line[:len(line) - len(line.lstrip())]:
                line = line[:len(line) - len(line.lstrip())].expandtabs(4) + line.lstrip()
            indent = len(line) - len(line.lstrip(" "))
            marker = None if in_fence else _LIST_MARKER.match(line)
            if marker and (items or indent <= 3):
                while items and indent < items[-1][0]:
                    items.pop()
                column = items[-1][1] if items else 0
                if block_indent is not None and column < block_indent:
                    # Python-Markdown reads a block that starts indented as one piece of the item above.
                    out.append("")
                    block_indent = column
                text = line[marker.end():]
                # kramdown: the text column is after all the spaces following the marker.
                items.append((marker.end() if text else indent + len(marker["marker"]) + 1,
                              column + 4))
                out.append(" " * column + marker["marker"] + " " + text)
                item_text = bool(text.strip())
            elif items and (indent >= items[-1][0] or in_fence or after_text):
                # Deeper lines move with their item; an unindented line right after text is a lazy continuation.
                if indent >= items[-1][0]:
                    continues_text = item_text and not (_FENCE_LINE.match(line) or _IAL.match(line))
                    line = " " * (items[-1][1] - 4 * continues_text) + line[items[-1][0]:]
                out.append(line)
            else:
                while items and indent < items[-1][0]:
                    items.pop()
                out.append(" " * items[-1][1] + line[items[-1][0]:] if items else line)
            if _FENCE_LINE.match(line):
                in_fence = not in_fence
                item_text = False
            after_text = not in_fence
            if block_indent is None:
                block_indent = len(out[-1]) - len(out[-1].lstrip(" "))
        return out


class _FencedCode(Preprocessor):
    """kramdown-parser-gfm's fenced code blocks: an opening fence (three or more ` or ~, an optional
    language) closed by the next line of at least as many of the same character. Only lines that start
    with a fence are looked at, and each once, so unclosed fences cost no rescanning."""

    def run(self, lines: list[str]) -> list[str]:
        fences = [number for number, line in enumerate(lines) if line.lstrip(" ")[:3] in ("```", "~~~")]
        closings: dict[str, list[tuple[int, int]]] = {"`": [], "~": []}   # char → (line, fence length)
        for number in fences:
            if closing := _CLOSING.match(lines[number]):
                closings[closing[1][0]].append((number, len(closing[1])))
        out: list[str] = []
        done = scanned = 0
        in_list = False
        for number in fences:
            opening = number >= done and _OPENING.match(lines[number])
            end = opening and self._closing_line(closings[opening["fence"][0]], number, len(opening["fence"]))
            if not end:
                continue
            indent = len(opening["indent"])
            if indent:   # inside a list item? The nearest line above that starts at the margin says.
                top = next((line for line in reversed(lines[scanned:number]) if line[:1].strip()), None)
                in_list = bool(_LIST_ITEM.match(top)) if top is not None else in_list
                scanned = number
            code = "".join(f"{body[min(indent, len(body) - len(body.lstrip(' '))):]}\n"
                           for body in lines[number + 1:end])
            placeholder = self.md.htmlStash.store(_code_block(code, opening["lang"]))
            # An indented fence inside a list item stays in it: Python-Markdown continues items at 4 columns.
            margin = " " * (-(-indent // 4) * 4) if indent and in_list else ""
            out += [*lines[done:number], "", margin + placeholder, ""]
            done = end + 1
        return out + lines[done:] if out else lines

    @staticmethod
    def _closing_line(candidates: list[tuple[int, int]], opening: int, length: int) -> int | None:
        for line, fence in candidates[bisect.bisect_right(candidates, (opening, 1 << 30)):]:
            if fence >= length:
                return line
        return None


class _Extensions(Preprocessor):
    """`{::comment}` vanishes; `{::nomarkdown}` is passed through as raw HTML; `{::options}` vanishes, and
    the header id options it sets (`auto_ids`, `auto_id_prefix`) hold for the document."""

    def run(self, lines: list[str]) -> list[str]:
        self.options: dict[str, str] = {}
        text = "\n".join(lines)
        if "{::" not in text:
            return lines

        def replace(match: re.Match[str]) -> str:
            if match["name"] == "nomarkdown" and match["body"]:
                return self.md.htmlStash.store(match["body"].strip("\n"))
            if match["name"] == "options":
                self.options.update((key, value) for key, _, value in _OPTION.findall(match[0]))
            return ""

        return _EXTENSION.sub(replace, text).split("\n")


class _IndentedHtmlBlocks(Preprocessor):
    """A `markdown="1"` HTML block whose start tag is indented by up to 3 spaces, as kramdown takes it."""

    def run(self, lines: list[str]) -> list[str]:
        return [line.lstrip(" ") if _INDENTED_HTML_BLOCK.match(line) else line for line in lines]


class _BlockBoundaries(Preprocessor):
    """Blocks where kramdown's GFM parser sees them: a list, header or quote line ends the paragraph above
    it, and so does an IAL line; an ALD line (`{:name: …}`) goes, as does an IAL indented under a list
    item (kramdown gives it to the item's text, which has no tag to show it)."""

    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        in_paragraph = False
        for line in lines:
            if _ALD.match(line):
                continue
            if _IAL.match(line):
                in_paragraph = False
                if line[0] == " " and out and (out[-1][:1] == " " or _LIST_ITEM.match(out[-1])):
                    continue
                if out and out[-1].strip():
                    # A block of its own (so a post of many stays linear); _BlockIal gives it to the block above.
                    out += ["", line, ""]
                    continue
            elif not line.strip():
                in_paragraph = False
            elif in_paragraph and _INTERRUPT.match(line):
                out.append("")
                in_paragraph = False
            elif not out or not out[-1].strip():
                in_paragraph = not _BLOCK_START.match(line)
            out.append(line)
        return out


class _AtxHeader(HashHeaderProcessor):
    """kramdown-parser-gfm's ATX header: one to six `#` at the start of a line, then at least one space or
    tab, then some text (`#見出し`, `##─ 見出し`, `#######` and a lone `#` are paragraph text). Closing
    hashes go only after a space or tab: `## C#` keeps its `#`."""

    RE = re.compile(r"(?:^|\n)(?P<level>#{1,6})[\t ]+(?P<header>[^\n]*?[^\t \n][^\n]*?)(?:[\t ]+#+)?[\t ]*(?:\n|$)")

    def test(self, parent: etree.Element, block: str) -> bool:
        return (block.startswith("#") or "\n#" in block) and bool(self.RE.search(block))


class _BlockQuote(BlockQuoteProcessor):
    """kramdown's quote ends at a blank line: `> 旧: …`, a blank line, `> 新: …` are two quotes (Python-Markdown
    would continue the first; a `>` line between keeps one quote of two paragraphs in both)."""

    def lastChild(self, parent: etree.Element) -> etree.Element | None:  # noqa: N802 - Python-Markdown's name
        return None


class _PipeRows(BlockProcessor):
    """kramdown's table without a header: a block whose every line has an unescaped pipe outside code
    spans is a table body, one row a line (`Open : 129 | Closed : 116`), rows padded to the widest. Tables
    with a separator line under their first row are the tables extension's."""

    def test(self, parent: etree.Element, block: str) -> bool:
        if "|" not in block:
            return False
        lines = block.split("\n")
        return (not (len(lines) > 1 and _TABLE_SEPARATOR.match(lines[1]))
                and all(_CELL_PIPE.search(_CODE_SPAN.sub("", line)) for line in lines))

    def run(self, parent: etree.Element, blocks: list[str]) -> None:
        lines = blocks.pop(0).split("\n")
        leading_pipe = lines[0].lstrip().startswith("|")
        rows = [self._cells(line, leading_pipe) for line in lines]
        body = etree.SubElement(etree.SubElement(parent, "table"), "tbody")
        for cells in rows:
            row = etree.SubElement(body, "tr")
            for text in cells + [""] * (max(map(len, rows)) - len(cells)):
                etree.SubElement(row, "td").text = text

    @staticmethod
    def _cells(line: str, leading_pipe: bool) -> list[str]:
        cells, start = [""], 0
        for span in [*_CODE_SPAN.finditer(line), None]:
            outside = line[start:span.start() if span else len(line)]
            first, *more = (piece.replace("\\|", "|") for piece in _CELL_PIPE.split(outside))
            cells[-1] += first
            cells += more
            if span:
                cells[-1] += span[0]
                start = span.end()
        if leading_pipe and not cells[0].strip():
            cells.pop(0)
        if cells and not cells[-1].strip():
            cells.pop()
        return [cell.strip() for cell in cells]


def _mark_blank_after(item: etree.Element) -> None:
    """A blank line follows `item`'s text (kramdown: its first paragraph is a <p>)."""
    if item.tag == "li":
        blocks = [child for child in item if child.tag in _BLOCKS]
        # Only when nothing but its first paragraph precedes the blank line (not a nested list, say).
        if not blocks or (len(blocks) == 1 and blocks[0] is item[0] and blocks[0].tag == "p"):
            item.set(_BLANK_AFTER, "")


class _OList(SaneOListProcessor):
    """sane_lists' list, noting which items a blank line follows (for _loose_as_kramdown)."""

    def run(self, parent: etree.Element, blocks: list[str]) -> None:
        sibling = self.lastChild(parent)
        if sibling is not None and sibling.tag in self.SIBLING_TAGS and len(sibling):
            _mark_blank_after(sibling[-1])
        super().run(parent, blocks)


class _UList(SaneUListProcessor):
    """sane_lists' list, noting which items a blank line follows (for _loose_as_kramdown)."""

    def run(self, parent: etree.Element, blocks: list[str]) -> None:
        sibling = self.lastChild(parent)
        if sibling is not None and sibling.tag in self.SIBLING_TAGS and len(sibling):
            _mark_blank_after(sibling[-1])
        super().run(parent, blocks)


class _ListIndent(ListIndentProcessor):
    """Python-Markdown's indented block inside a list item, noting that a blank line follows the item's
    first paragraph."""

    def run(self, parent: etree.Element, blocks: list[str]) -> None:
        if parent.tag not in self.ITEM_TYPES:
            _, sibling = self.get_level(parent, blocks[0])
            # The list whose last item the block goes to, or (a block indented deeper) that item itself.
            if sibling.tag in self.LIST_TYPES and len(sibling):
                _mark_blank_after(sibling[-1])
            elif sibling.tag in self.ITEM_TYPES:
                _mark_blank_after(sibling)
        super().run(parent, blocks)


def _loose_as_kramdown(items: etree.Element) -> None:
    """Which items' text is a paragraph, by kramdown's rule (list.rb) instead of Python-Markdown's: an item's
    text is a <p> when a blank line follows it in the item (the blank line before the next item counts);
    the last item's text is a <p> only when every item before it has one. Python-Markdown also makes one
    of the item a blank line precedes."""
    paragraphs = []   # kramdown's answer for each item so far
    for index, item in enumerate(items):
        blank_after = item.attrib.pop(_BLANK_AFTER, None) is not None
        inline = bool((item.text or "").strip()) or (len(item) and item[0].tag not in _BLOCKS)
        first = item[0] if not inline and len(item) else None
        if not inline and (first is None or first.tag != "p" or first.get("class")):
            paragraphs.append(False)   # empty, or opening with a header, code…: kramdown leaves it as it is
            continue
        last = index == len(items) - 1
        paragraph = blank_after or (last and len(items) > 1 and all(paragraphs))
        paragraphs.append(paragraph)
        if first is not None and not paragraph:
            item.text = first.text
            item.remove(first)
            for position, child in enumerate(first):
                item.insert(position, child)
            moved = len(first)
            if len(item) > moved:   # kramdown ends the text with a line break before a nested list
                text_end = item[moved - 1].tail if moved else item.text
                if not (text_end or "").endswith("\n"):
                    _append_text(item, moved, "\n")
        elif inline and paragraph:
            wrapper = etree.Element("p")
            wrapper.text, item.text = item.text, ""
            inline = list(itertools.takewhile(lambda child: child.tag not in _BLOCKS, item))
            for child in inline:
                item.remove(child)
                wrapper.append(child)
            if inline:
                wrapper[-1].tail = (wrapper[-1].tail or "").rstrip("\n") or None
            else:
                wrapper.text = wrapper.text.rstrip("\n")
            wrapper.tail = "\n"
            item.insert(0, wrapper)


def _strip_end(paragraph: etree.Element) -> None:
    """kramdown's paragraph text ends at its last non-space character."""
    if len(paragraph):
        if paragraph[-1].tail:
            paragraph[-1].tail = paragraph[-1].tail.rstrip()
    elif paragraph.text:
        paragraph.text = paragraph.text.rstrip()


def _append_text(parent: etree.Element, count: int, text: str) -> None:
    """`text` after the first `count` children of `parent` (or after its text when `count` is 0)."""
    if count:
        parent[count - 1].tail = (parent[count - 1].tail or "") + text
    else:
        parent.text = (parent.text or "") + text


class _NoScript(Postprocessor):
    """`<noscript>` content as a reader without scripts sees it (a feed reader runs none): the sanitiser would
    otherwise drop the element and print its markup as text."""

    def run(self, text: str) -> str:
        return _NOSCRIPT.sub(r"\1", text) if "<noscript" in text.lower() else text


class _BlockIal(BlockProcessor):
    """A block IAL (`{: .class #id key="value"}` on a line of its own) applied to the block it closes, or,
    on a line of its own after a blank line, to the block it opens; never printed."""

    def __init__(self, parser: BlockParser) -> None:
        super().__init__(parser)
        self.md = parser.md

    def test(self, parent: etree.Element, block: str) -> bool:
        return "{:" in block and bool(_IAL_LINE.search(block))

    def run(self, parent: etree.Element, blocks: list[str]) -> None:
        block = blocks.pop(0)
        ial = _IAL_LINE.search(block)
        above, below = block[:ial.start()].rstrip("\n"), block[ial.end():].lstrip("\n")
        count = len(parent)
        if above.strip():
            self.parser.parseChunk(parent, above)
            target = parent[-1] if len(parent) > count else None
            if below.strip():
                blocks.insert(0, below)
        elif below.strip():
            self.parser.parseChunk(parent, below)
            target = parent[count] if len(parent) > count else None
        else:
            target = parent[-1] if count else None
        # A stashed block (code, raw HTML) is a placeholder paragraph until the end: it keeps its own markup.
        if target is not None and not HTML_PLACEHOLDER_RE.fullmatch((target.text or "").strip()):
            self.md.treeprocessors["attr_list"].assign_attrs(target, ial["attrs"])


def _task_list(items: etree.Element) -> None:
    """GFM task lists: an item opening with `[ ]` or `[x]` loses the marker (kramdown puts a disabled
    checkbox there, which the sanitiser removes) and the list and items get kramdown's classes."""
    is_task_list = False
    for item in items:
        holder = item[0] if len(item) and item[0].tag == "p" and not (item.text or "").strip() else item
        if holder.text and _TASK.match(holder.text):
            holder.text = _TASK.sub("", holder.text, count=1)
            is_task_list = True
        # kramdown's own quirk: once one item is a task, every later item gets the class.
        if is_task_list:
            item.set("class", "task-list-item")
    if is_task_list:
        items.set("class", "task-list")


def _markdown_start(element: etree.Element) -> str:
    """How the Markdown of an inline element begins, as kramdown's quote rules see it."""
    if element.tag == "abbr":
        return element.text or ""
    return _MARKDOWN_STARTS.get(element.tag, "")


def _inner_text(element: etree.Element) -> str:
    """The text of `element` and its descendants, footnote markers left out."""
    parts = [element.text or ""]
    for child in element:
        if not (child.tag == "sup" and child.get("id", "").startswith("fnref")):
            parts.append(_inner_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


class _CodeSpan(BacktickInlineProcessor):
    """kramdown's code span (codespan.rb): a lone backtick with white space on both sides is text; a span
    in single backticks keeps its spaces (`` `Ctrl+\\ ` ``), one in longer runs loses one on each side."""

    def handleMatch(self, m: re.Match[str], data: str  # noqa: N802 - Python-Markdown's name
                    ) -> tuple[etree.Element | str | None, int | None, int | None]:
        if m.group(1):
            return super().handleMatch(m, data)
        begin = m.start(0)
        start, end = self.find_code_spans(begin, data)
        if start - begin == 1 and (begin == 0 or data[begin - 1].isspace()) and data[start:start + 1].isspace():
            return None, begin, start
        if end is None:
            return None, begin, start
        code = data[start:end]
        if start - begin > 1:
            code = code.removeprefix(" ").removesuffix(" ")
        element = etree.Element("code")
        element.text = AtomicString(code_escape(code))
        return element, begin, end + (start - begin)


class _GfmSpans(InlineProcessor):
    """GFM's ~~strikethrough~~ and backslash line break, and kramdown's `<<` where it reads a guillemet
    before what could otherwise open a tag: one pattern, as each pattern costs a pass over every text."""

    def handleMatch(self, m: re.Match[str], data: str  # noqa: N802 - Python-Markdown's name
                    ) -> tuple[etree.Element | str, int, int]:
        if m["struck"]:
            element = etree.Element("del")
            element.text = m["struck"]
            return element, m.start(), m.end()
        if m["guillemet"]:
            return "«", m.start(), m.end()
        return etree.Element("br"), m.start(), m.end()


class _KramdownTree(Treeprocessor):
    """Smart quotes, code classes, automatic header ids and footnote markup, in one walk of the tree."""

    def __init__(self, md: Markdown, extensions: _Extensions) -> None:
        super().__init__(md)
        self.extensions = extensions

    def run(self, root: etree.Element) -> None:
        self.ids: Counter[str] = Counter()
        options = self.extensions.options
        self.auto_ids = options.get("auto_ids", "true") != "false"
        self.id_prefix = options.get("auto_id_prefix", "")
        self._walk(root)
        for notes in root.iter("div"):
            if notes.get("class") == "footnote":
                self._footnotes(notes)

    def _walk(self, parent: etree.Element) -> None:
        if parent.text and not isinstance(parent.text, AtomicString):
            parent.text = smartify(parent.text, _markdown_start(parent[0]) if len(parent) else "")
        for index, child in enumerate(parent):
            if child.tag == "code" and parent.tag != "pre":
                child.set("class", "language-plaintext highlighter-rouge")
            elif child.tag == "pre" and len(child) and child[0].tag == "code":
                parent[index] = self._highlighted(child)
            elif child.tag not in ("code", "pre"):
                if child.tag in _LISTS:
                    if parent.get("class") != "footnote":   # kramdown's notes are always paragraphs
                        _loose_as_kramdown(child)
                    _task_list(child)
                self._walk(child)
                if child.tag == "p":
                    _strip_end(child)
                if child.tag in _HEADERS and "id" not in child.attrib and self.auto_ids:
                    child.set("id", self._header_id(child))
                elif child.tag == "sup" and child.get("id", "").startswith("fnref"):
                    child.set("role", "doc-noteref")
                    child[0].attrib = {"href": child[0].get("href"), "class": "footnote", "rel": "footnote"}
            if child.tail and not isinstance(child.tail, AtomicString):
                child.tail = smartify(child.tail, _markdown_start(parent[index + 1]) if index + 1 < len(parent) else "")

    @staticmethod
    def _highlighted(pre: etree.Element) -> etree.Element:
        """An indented code block in rouge's plaintext wrapper, as Jekyll writes it."""
        wrapper = etree.Element("div", {"class": "language-plaintext highlighter-rouge"})
        wrapper.tail = pre.tail
        pre.tail = None
        pre.set("class", "highlight")
        etree.SubElement(wrapper, "div", {"class": "highlight"}).append(pre)
        return wrapper

    def _header_id(self, header: etree.Element) -> str:
        """kramdown-parser-gfm's header id: the text lower-cased, all but word characters, '-', spaces and
        tabs removed, spaces and tabs → '-'; a repeated id gets -1, -2…. Japanese stays as it is."""
        slug = _NON_WORD.sub("", self._raw_text(header).lower()).replace(" ", "-").replace("\t", "-")
        count = self.ids[slug]
        self.ids[slug] += 1
        return self.id_prefix + (f"{slug}-{count}" if count else slug)

    def _raw_text(self, header: etree.Element) -> str:
        """The text kramdown makes a header's id from: text and code, the text of inline HTML, no footnote
        markers, no image alt text."""
        text = HTML_PLACEHOLDER_RE.sub(lambda m: self._stashed_text(int(m[1])), _inner_text(header))
        return unescape(text)

    def _stashed_text(self, index: int) -> str:
        stashed = self.md.htmlStash.rawHtmlBlocks[index]
        # md_in_html stashes elements (a `markdown="1"` block), the rest stash HTML source.
        if isinstance(stashed, etree.Element):
            return "".join(stashed.itertext())
        return html.unescape(_TAG.sub("", stashed))

    @staticmethod
    def _footnotes(notes: etree.Element) -> None:
        """Python-Markdown's footnotes in kramdown's markup."""
        notes.attrib = {"class": "footnotes", "role": "doc-endnotes"}
        for rule in notes.findall("hr"):
            notes.remove(rule)
        for item in notes.iter("li"):
            item.set("role", "doc-endnote")
        for paragraph in notes.iter("p"):
            if paragraph.text:
                paragraph.text = paragraph.text.replace(NBSP_PLACEHOLDER, " ")
            for child in paragraph:
                if child.tail:
                    child.tail = child.tail.replace(NBSP_PLACEHOLDER, " ")
        for link in notes.iter("a"):
            if link.get("class") == "footnote-backref":
                link.attrib = {"href": link.get("href"), "class": "reversefootnote", "role": "doc-backlink"}
