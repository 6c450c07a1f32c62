"""`make bench-jekyll`: the feed content feedpub publishes, compared post by post with what Jekyll publishes.

    .venv/bin/python bench/jekyll_compare.py tests/site/fixtures/jekyll_parity
    .venv/bin/python bench/jekyll_compare.py /work/shared/corpora/jekyll-docs --url https://jekyllrb.com \\
        --timezone America/Los_Angeles --permalink '/news/:year/:month/:day/:title/'

SITE is a folder with the posts in `SITE/_posts/` (left untouched: both builds happen in a temporary
folder). Jekyll is Debian's `jekyll` with `ruby-jekyll-feed`, configured only with the options given here
(so both tools see the same url, time zone and permalink style). Pages that posts reach with `{% link %}`
and snippets they `{% include %}` are not posts; they are stubbed as empty files so that Jekyll builds.

Each post's Atom `<content>` is reduced to normalised text (every tag replaced by a space, comments
dropped, whitespace collapsed) and the two texts are compared with difflib's ratio. Prints each post's
similarity, the share of posts at or above --threshold, the posts where Liquid leaked or where a paragraph of
Jekyll's is not found verbatim (lost, or changed), and the worst --worst posts with their differences.
"""

from __future__ import annotations

import argparse
import difflib
import itertools
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lxml import etree, html

ATOM = "{http://www.w3.org/2005/Atom}"
_STUBBED = re.compile(r"\{%-?\s*(link|include)\s+([^\s%}]+)")
_LIQUID = re.compile(r"\{[{%]")
_BLOCKS = ("address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "figure",
           "h1", "h2", "h3", "h4", "h5", "h6", "hr", "li", "ol", "p", "pre", "section", "table", "td", "th", "tr",
           "ul")
# The elements whose nesting makes a post's outline: what a reader sees as headers, paragraphs and lists.
_OUTLINE = ("blockquote", "dd", "dl", "dt", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "li", "ol", "p", "pre", "table",
            "td", "th", "tr", "ul")


@dataclass(frozen=True)
class Entry:
    url: str
    title: str
    content: str    # the HTML of <content>


@dataclass(frozen=True)
class Comparison:
    url: str
    ratio: float
    jekyll_text: str
    feedpub_text: str
    liquid_leaked: bool       # `{{` or `{%` in feedpub's text but not in Jekyll's
    paragraphs_missing: int   # Jekyll's paragraphs whose text is not in feedpub's verbatim (lost or changed)
    outline_difference: str   # where the nesting of headers, paragraphs, lists… first differs; "" if it does not


@dataclass(frozen=True)
class Report:
    comparisons: list[Comparison]
    only_jekyll: list[str]    # posts (urls) one tool published and the other did not
    only_feedpub: list[str]

    def share_at_least(self, threshold: float) -> float:
        return sum(c.ratio >= threshold for c in self.comparisons) / max(1, len(self.comparisons))

    def share_same_outline(self) -> float:
        return sum(not c.outline_difference for c in self.comparisons) / max(1, len(self.comparisons))


def compare_site(site: Path, *, url: str = "https://example.com", timezone: str = "UTC",
                 permalink: str = "date") -> Report:
    """Build `site` with Jekyll and with feedpub; compare each post's feed content."""
    with tempfile.TemporaryDirectory(prefix="jekyll-compare-") as work:
        jekyll = jekyll_entries(site, Path(work) / "jekyll", url=url, timezone=timezone, permalink=permalink)
        # feedpub reads the folder Jekyll built, stubs included: both resolve the same links and includes.
        feedpub = feedpub_entries(Path(work) / "jekyll", Path(work) / "feedpub", url=url, timezone=timezone,
                                  permalink=permalink)
    comparisons = [compare_entry(jekyll[key], feedpub[key]) for key in sorted(jekyll.keys() & feedpub.keys())]
    return Report(comparisons, sorted(jekyll.keys() - feedpub.keys()), sorted(feedpub.keys() - jekyll.keys()))


def jekyll_entries(site: Path, work: Path, *, url: str, timezone: str, permalink: str) -> dict[str, Entry]:
    shutil.copytree(site / "_posts", work / "_posts")
    collections = set()
    for post in (work / "_posts").rglob("*"):
        if post.is_file():
            collections |= _stub_targets(post.read_text(encoding="utf-8-sig", errors="replace"), work)
    config = [f"url: {url}", "title: Comparison", f"timezone: {timezone}", f"permalink: {permalink}",
              "plugins: [jekyll-feed]", "feed:", "  posts_limit: 1000000", "disable_disk_cache: true"]
    if collections:
        config += ["collections:", *(f"  {name}:\n    output: true" for name in sorted(collections))]
    (work / "_config.yml").write_text("\n".join(config) + "\n", encoding="utf-8")
    result = subprocess.run(["jekyll", "build", "--source", str(work), "--destination", str(work / "_site")],
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"jekyll build failed:\n{result.stdout}\n{result.stderr}")
    return read_atom(work / "_site" / "feed.xml")


def _stub_targets(text: str, work: Path) -> set[str]:
    """Write an empty file for each page `text` links to and each snippet it includes; the names of the
    collections (`_docs/…` → docs) those pages belong to."""
    collections = set()
    for kind, target in _STUBBED.findall(text):
        stub = work / "_includes" / target if kind == "include" else work / target
        if ".." in Path(target).parts:
            continue
        stub.parent.mkdir(parents=True, exist_ok=True)
        if not stub.exists():
            stub.write_text("" if kind == "include" else "---\n---\n", encoding="utf-8")
        folder = Path(target).parts[0]
        if kind == "link" and folder.startswith("_") and folder not in ("_posts", "_drafts"):
            collections.add(folder[1:])
    return collections


def feedpub_entries(source: Path, work: Path, *, url: str, timezone: str, permalink: str) -> dict[str, Entry]:
    """feedpub's feed of the posts in `source/_posts`, `source` being the Jekyll site its links are below (its
    `_config.yml` read as Jekyll's, so that `{% link %}` finds the documents of its collections)."""
    work.mkdir(parents=True)
    (source / "feedpub.toml").write_text(
        f'[site]\nurl = "{url}"\ntitle = "Comparison"\ntimezone = "{timezone}"\npermalink = "{permalink}"\n'
        'posts_dir = "_posts"\njekyll_dir = "."\n'
        f'[feeds]\noutput_dir = "{(work / "public").as_posix()}"\nformats = ["atom"]\nlimit = 1000000\n'
        'categories = false\nstylesheet = false\n', encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "feedpub", "--config", str(source / "feedpub.toml"), "build"],
                            cwd=work, capture_output=True, text=True, timeout=600)
    feed = work / "public" / "feed.xml"
    if result.returncode not in (0, 1) or not feed.exists():
        raise RuntimeError(f"feedpub build failed (exit {result.returncode}):\n{result.stderr}")
    return read_atom(feed)


def read_atom(path: Path) -> dict[str, Entry]:
    entries = {}
    for entry in etree.parse(str(path)).getroot().iter(f"{ATOM}entry"):
        link = next(link.get("href") for link in entry.iter(f"{ATOM}link")
                    if link.get("rel", "alternate") == "alternate")
        entries[link] = Entry(link, entry.findtext(f"{ATOM}title") or "", entry.findtext(f"{ATOM}content") or "")
    return entries


def normalised_text(content: str) -> str:
    """The text a reader sees: tags stripped (a block's edges count as a space, an inline element's do
    not: rouge's highlighting spans must not split words), comments dropped, whitespace runs collapsed."""
    if not content.strip():
        return ""
    fragment = html.fragment_fromstring(content, create_parent="div")
    etree.strip_elements(fragment, etree.Comment, with_tail=False)
    for element in fragment.iter(_BLOCKS):
        element.text = " " + (element.text or "")
        element.tail = " " + (element.tail or "")
    return " ".join("".join(fragment.itertext()).split())


def compare_entry(jekyll: Entry, feedpub: Entry) -> Comparison:
    jekyll_text, feedpub_text = normalised_text(jekyll.content), normalised_text(feedpub.content)
    ratio = difflib.SequenceMatcher(None, jekyll_text, feedpub_text, autojunk=False).ratio()
    leaked = bool(_LIQUID.search(feedpub_text)) and not _LIQUID.search(jekyll_text)
    missing = sum(text not in feedpub_text for text in _paragraphs(jekyll.content))
    return Comparison(jekyll.url, ratio, jekyll_text, feedpub_text, leaked, missing,
                      outline_difference(jekyll.content, feedpub.content))


def outline(content: str) -> list[str]:
    """Each header, paragraph, list, item, quote, table cell… as `ul>li>p`, with the first words of its
    text, in document order (nothing inside <pre>)."""
    if not content.strip():
        return []
    fragment = html.fragment_fromstring(content, create_parent="div")
    lines = []
    for element in fragment.iter(_OUTLINE):
        path = [element.tag, *(a.tag for a in element.iterancestors(_OUTLINE))]
        if "pre" in path[1:]:
            continue
        words = " ".join(normalised_text(etree.tostring(element, encoding="unicode", with_tail=False)).split()[:4])
        lines.append(f"{'>'.join(reversed(path))} {words[:24]}")
    return lines


def outline_difference(jekyll: str, feedpub: str) -> str:
    """The first place the outlines of the two contents differ, as `Jekyll's | feedpub's`."""
    pairs = itertools.zip_longest(outline(jekyll), outline(feedpub), fillvalue="(end)")
    return next((f"#{index}: {a} | {b}" for index, (a, b) in enumerate(pairs) if a != b), "")


def _paragraphs(content: str) -> list[str]:
    """The normalised text of each non-empty <p>."""
    if not content.strip():
        return []
    fragment = html.fragment_fromstring(content, create_parent="div")
    texts = (normalised_text(etree.tostring(p, encoding="unicode", with_tail=False)) for p in fragment.iter("p"))
    return [text for text in texts if text]


def differences(a: str, b: str, context: int = 30, limit: int = 8) -> list[str]:
    """`… context [-Jekyll's-]{+feedpub's+} context …` for each place the texts differ."""
    lines = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            lines.append(f"    …{a[max(0, i1 - context):i1]}[-{a[i1:i2]}-]{{+{b[j1:j2]}+}}{a[i2:i2 + context]}…")
    return lines[:limit] + ([f"    (and {len(lines) - limit} more)"] if len(lines) > limit else [])


def print_report(report: Report, *, threshold: float, worst: int) -> None:
    comparisons = report.comparisons
    for c in comparisons:
        print(f"{c.ratio:.4f}  {c.url}")
    print(f"\nposts compared: {len(comparisons)} (only in Jekyll's feed: {len(report.only_jekyll)}, "
          f"only in feedpub's: {len(report.only_feedpub)})")
    for url in report.only_jekyll:
        print(f"  only Jekyll: {url}")
    for url in report.only_feedpub:
        print(f"  only feedpub: {url}")
    at_least = sum(c.ratio >= threshold for c in comparisons)
    print(f"similarity ≥ {threshold}: {at_least}/{len(comparisons)} = {report.share_at_least(threshold):.1%}")
    if comparisons:
        ratios = sorted(c.ratio for c in comparisons)
        print(f"median similarity {ratios[len(ratios) // 2]:.4f}, lowest {ratios[0]:.4f}")
    same = sum(not c.outline_difference for c in comparisons)
    print(f"same outline (headers, paragraphs, lists, quotes, tables nested alike): {same}/{len(comparisons)} "
          f"= {report.share_same_outline():.1%}")
    leaked = [c.url for c in comparisons if c.liquid_leaked]
    missing = [(c.url, c.paragraphs_missing) for c in comparisons if c.paragraphs_missing]
    print(f"Liquid leaked into feedpub's text: {len(leaked)} post(s) {' '.join(leaked)}")
    print(f"posts with paragraphs of Jekyll's not found verbatim: {len(missing)} "
          + " ".join(f"{url} ({n})" for url, n in missing))
    print(f"\nworst {min(worst, len(comparisons))}:")
    for c in sorted(comparisons, key=lambda c: c.ratio)[:worst]:
        print(f"\n{c.ratio:.4f}  {c.url}")
        print("\n".join(differences(c.jekyll_text, c.feedpub_text)) or "    (identical text)")
    different = [c for c in comparisons if c.outline_difference]
    print(f"\noutlines that differ ({len(different)}; first place, Jekyll's | feedpub's):")
    for c in different:
        print(f"  {c.url}\n    {c.outline_difference}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="a folder with the posts in _posts/")
    parser.add_argument("--url", default="https://example.com")
    parser.add_argument("--timezone", default="UTC")
    parser.add_argument("--permalink", default="date")
    parser.add_argument("--threshold", type=float, default=0.98)
    parser.add_argument("--worst", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("jekyll") is None:
        print("jekyll is not installed (Debian: apt-get install jekyll ruby-jekyll-feed)", file=sys.stderr)
        return 2
    report = compare_site(args.site, url=args.url, timezone=args.timezone, permalink=args.permalink)
    print_report(report, threshold=args.threshold, worst=args.worst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
