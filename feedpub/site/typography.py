"""kramdown's typographic quotes, dashes and ellipses (its `smart_quotes` and typographic symbols), which
Jekyll's `smartify` filter also applies: transcribed from kramdown 2.4.0's smart_quotes.rb and
typographic_symbol.rb, because their rules differ from SmartyPants' (and Python-Markdown's `smarty`)."""

from __future__ import annotations

import re

# kramdown's smart_quotes.rb and typographic_symbol.rb. Ruby's \w and \s are ASCII, its \b is not.
_SPACE = r"[ \t\r\n\f\v]"
_SQ_PUNCT = r"""[!"#$%'()*+,\-./:;<=>?@\[\\\]^_`{|}~]"""
_SQ_CLOSE = r"[^ \\\t\r\n\[{(-]"
# Ruby's /m is Python's DOTALL; `$` is always a line end in Ruby. The last two rules match whatever the
# quote alternative of _SPAN_START found, so some rule always applies.
_SQ_RULES = [(re.compile(rule, re.M | re.S), substitutions) for rule, substitutions in [
    (r"""(["'])(?=[_*]{1,2}\S)""", ["lquote1"]),
    (rf"""(["'])(?={_SQ_PUNCT}(?!\.\.)\B)""", ["rquote1"]),
    (rf"""({_SPACE}?)"'(?=[A-Za-z0-9_])""", [1, "“", "‘"]),
    (rf"""({_SPACE}?)'"(?=[A-Za-z0-9_])""", [1, "‘", "“"]),
    (rf"""({_SPACE}?)'(?=[0-9][0-9]s)""", [1, "’"]),
    (rf"""({_SPACE})(['"])(?=[A-Za-z0-9_])""", [1, "lquote2"]),
    (rf"""({_SQ_CLOSE})(['"])""", [1, "rquote2"]),
    (rf"""(["'])(?={_SPACE}|s\b|$)""", ["rquote1"]),
    (r"(.?)'", [1, "‘"]),
    (r'(.?)"', [1, "“"]),
]]
_QUOTES = {("lquote", "'"): "‘", ("lquote", '"'): "“", ("rquote", "'"): "’", ("rquote", '"'): "”"}
_SYMBOLS = {"---": "—", "--": "–", "...": "…", "\\<<": "<<", "\\>>": ">>", "<< ": "«\u00a0", " >>": "\u00a0»",
            "<<": "«", ">>": "»"}
# Where kramdown's span parser stops: a quote (with the character before it), a typographic symbol, or
# something another parser consumes whole (Python-Markdown's placeholders, an entity, an escaped character).
_SPAN_START = re.compile(r"""(?P<quote>[^\\]?["'])|(?P<symbol>---|--|\.\.\.|\\<<|\\>>|<< | >>|<<|>>)"""
                         r"""|(?P<escaped>\\[\\.*_+`<>()\[\]{}#!:|"'$=-])|\x02[^\x03]*\x03|&#?\w+;""")


def smartify(text: str, followed_by: str = "") -> str:
    """`text` with kramdown's typographic quotes, dashes and ellipses (Jekyll's `smartify`, as
    jekyll-feed applies it to titles). `followed_by`: the Markdown that comes next (`**` when a
    strong element follows), which kramdown's rules look ahead into."""
    if not ('"' in text or "'" in text or "--" in text or "..." in text or "<<" in text or ">>" in text):
        return text
    out, position, end = [], 0, len(text)
    text += followed_by
    while (match := _SPAN_START.search(text, position)) and match.end() <= end:
        out.append(text[position:match.start()])
        position = match.end()
        if match["symbol"]:
            out.append(_SYMBOLS[match["symbol"]])
        elif match["escaped"]:
            out.append(match["escaped"][1])
        elif match["quote"]:
            quoted, substitutions = next((found, substitutions) for rule, substitutions in _SQ_RULES
                                         if (found := rule.match(text, match.start())))
            for substitution in substitutions:
                if isinstance(substitution, int):
                    out.append(quoted[substitution])
                elif substitution[:-1] in ("lquote", "rquote"):
                    out.append(_QUOTES[substitution[:-1], quoted[int(substitution[-1])]])
                else:
                    out.append(substitution)
            position = quoted.end()
        else:
            out.append(match[0])
    out.append(text[position:end])
    return "".join(out)
