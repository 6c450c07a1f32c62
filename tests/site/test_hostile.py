"""A site full of hostile posts (tests/site/fixtures/hostile plus huge ones made here) through the real CLI.

`feedpub check` and `feedpub build` must finish within a time and memory bound, name every bad file with
its problem, publish every good (or nasty but legitimate) post with nothing executable in it, and write
nothing outside the output folder. What a post costs to render is bounded, not the wording of one Markdown
version: a post that no renderer finishes within the bound is named and published as plain text; one that a
newer Python-Markdown may render (or not) is either rendered or named, and never leaks markup.
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from lxml import etree

FIXTURES = Path(__file__).parent / "fixtures" / "hostile"
MEMORY_LIMIT = 1536 * 1024 * 1024   # address space of each feedpub process
SECONDS = 90                          # per command; a hostile post renders within markup.RENDER_SECONDS

# file name → what its problem line must say (the post is not published)
REFUSED = {
    "2025-01-02-encoding-shift-jis.md": ":2: not UTF-8",
    "2025-01-03-encoding-latin-1.md": ":2: not UTF-8",
    "2025-01-04-encoding-nul-bytes.md": ":4: binary data (NUL byte)",
    "2025-01-05-encoding-utf-16.md": "binary data (NUL byte)",
    "2025-01-06-yaml-lone-surrogate-escape.md": "invalid YAML front matter",
    "2025-01-08-front-matter-unclosed.md": "front matter is not closed",
    "2025-01-09-front-matter-tab-indent.md": ":4: invalid YAML front matter",
    "2025-01-11-yaml-billion-laughs.md": "front matter expands to more than 10,000 values",
    "2025-01-12-yaml-python-object-tag.md": "could not determine a constructor for the tag",
    "2025-01-13-yaml-recursive-alias.md": "front matter expands to more than 10,000 values",
    "2025-01-15-title-is-a-list.md": ":2: title is [one, two], not text",
    "2025-01-16-categories-is-a-mapping.md": ":3: categories is {ai: true}; Jekyll cannot read the file",
    "2025-01-17-no-front-matter.md": "no front matter",
    "2025-01-18-front-matter-is-a-list.md": "front matter is not a mapping",
    "2025-01-19-yaml-control-character-escape.md": "contains control character U+0007",
    "2025-01-20-empty-file.md": "empty file",
    "2025-01-22-yaml-binary-title.md": ":2: title is binary data (5 bytes), not text",
    "2025-01-24-date-year-zero.md": "is not a date (year 0 is out of range)",
    "2025-01-25-date-far-future-overflow.md": "is out of range (years 1 to 9999)",
    "2025-01-27-date-garbage.md": "'next tuesday-ish' is not a date",
    "0000-01-01-date-year-zero-in-file-name.md": "file name date 0000-01-01: '0000-01-01' is not a date (year 0",
    "2025-02-09-control-characters-in-body.md": ":4: control character U+0007 in the text",
    "2025-02-15-category-with-nul.md": "contains control character U+0000",
    "2025-02-20-excerpt-is-a-list.md": "excerpt is [a, b]",
    "2025-02-23-permalink-is-a-number.md": "permalink is 42",
    # Jekyll's build stops at an include it cannot find: the post is left out
    "2025-02-03-liquid-include-and-loops.md": ":4: Could not locate the included file 'evil.html'",
    # made by make_site()
    "2025-03-10-huge-20-mb-post.md": "over the 1,000,000-byte limit",
    "2025-03-11-yaml-huge-scalar-title.md": "over the 1,000,000-byte limit",
    "2025-03-12-symlink-out-of-posts.md": "symbolic link pointing outside the posts folder",
}
# made by make_site(): past every bound (Python-Markdown is quadratic on `[a](`: 20,000 of them take minutes;
# the join asks for gigabytes): published with a warning naming the file and line → what the post still shows
STOPPED = {
    "2025-03-16-markdown-20000-unclosed-links.md": "[a]([a](",
    "2025-03-17-liquid-join-150-million.md": "<p>Before  after</p>",
    # python-liquid's lexer takes minutes on it, partly inside regular expressions no signal interrupts
    "2025-03-18-liquid-20000-unclosed-outputs.md": "<p>After</p>",
}
# made by make_site(): Python-Markdown versions differ on these (3.11 renders them, older ones gave up): either
# rendered, or published as plain text with a warning naming the file → a text the content shows either way
STRESSED = {
    "2025-03-13-markdown-10000-nested-lists.md": "bottom",
    "2025-03-14-markdown-20000-unclosed-brackets.md": "[[[[x",
}
# file name → (warning it must get or "", a text its content must still show)
PUBLISHED = {
    "2025-01-01-encoding-utf8-bom.md": ("", "本文はBOMの後でも読めます。"),
    "2025-01-07-encoding-crlf-line-endings.md": ("", "Second paragraph."),
    "2025-01-10-yaml-duplicate-keys.md": (":3: warning: key 'title' appears twice", "Same key twice"),
    # as Jekyll publishes them: the title from the file name; 30 February as 2 March; nested tags flattened
    "2025-01-14-title-no-is-boolean.md": (":2: warning: title is the YAML boolean false", "Norway"),
    "2025-01-21-no-title.md": ("", "body"),
    "2025-02-30-date-impossible-in-file-name.md": ("warning: date '2025-02-30' does not exist; Jekyll publishes it on "
                                                   "2025-03-02", "body"),
    "2025-01-23-date-impossible.md": (":3: warning: date '2025-02-30 10:00:00 +0900' does not exist", "body"),
    "2025-02-21-tags-with-nested-lists.md": ("", "body"),
    "2025-01-26-date-mixed-offsets.md": ("warning: front-matter date 2025-01-27 differs", "Offsets differ"),
    "2025-01-28-liquid-unterminated-tag.md": ("warning: Liquid cannot be parsed", "Before"),
    "2025-02-01-liquid-nested-raw.md": ("warning: Liquid tag {% endraw %} is unknown", "Done."),
    "2025-02-02-liquid-unclosed-raw.md": ("warning: {% raw %} is never closed", "never closed"),
    "2025-02-04-html-script-tag.md": ("", "world."),
    "2025-02-05-javascript-links.md": ("", "mixed case"),
    "2025-02-06-html-event-attributes.md": ("", "hover"),
    "2025-02-07-markdown-nested-blockquotes.md": ("", "<blockquote>"),  # the innermost text is cut off
    "2025-02-08-cdata-end-marker.md": ("", "Text with ]]&gt; and"),
    "2025-02-10-html-iframe-style-object-form.md": ("", "Visible text."),
    "2025-02-11-data-and-vbscript-uris.md": ("", ">d</a>"),
    "2025-02-12-front-matter-image-javascript.md": ("", "body"),
    "2025-02-13-permalink-traversal.md": ("", "Tries to climb out."),
    "2025-02-14-category-with-slash-and-dots.md": ("", "body"),
    "2025-02-16-category-dot-dot.md": ("'..' (from posts/2025-02-16-category-dot-dot.md) has no usable URL slug",
                                       "body"),
    "2025-02-17-permalink-absolute-url.md": ("", "body"),
    "2025-02-18-permalink-spaces-query-backslash.md": ("", "body"),
    "2025-02-19-title-with-html-and-newlines.md": ("", "body"),
    "2025-02-22-yaml-merge-key-and-anchor.md": ("", "A single alias is ordinary YAML."),
    "2025-03-01-good-japanese-post.md": ("", "<strong>推論性能35%</strong>向上"),
    "2025-03-02-good-english-post.md": ("", "print('&lt;script&gt;')"),
    "2025-03-03-good-post-with-raw-liquid.md": ("", "&#123;{ site.title }}"),
    # made by make_site(): thousands of unclosed fences, {::comment}s and ~~ render as Markdown, not plain text
    "2025-03-15-kramdown-unclosed-marks.md": ("", "<strong>End.</strong>"),
}
NOT_PUBLISHED_SILENTLY = {"9999-12-30-date-far-future-file-name.md"}  # future posts wait, as in Jekyll
DANGEROUS = ("<script", "javascript:", "vbscript:", "data:", " onerror", " onload", " onmouseover", " onclick",
             "<iframe", "<style", "<object", "<form", "<meta", "<svg")


def make_site(root: Path) -> Path:
    """The corpus in root/posts, plus the files too big (or too odd) to commit."""
    site = root / "site"
    posts = site / "posts"
    shutil.copytree(FIXTURES, posts)
    (site / "feedpub.toml").write_text('[site]\ntitle = "Hostile"\nurl = "https://blog.example.com"\n'
                                       'timezone = "Asia/Tokyo"\n[feeds]\nlimit = 1000\n', encoding="utf-8")
    paragraph = "A paragraph of a post that goes on and on. 延々と続く段落です。\n\n"
    (posts / "2025-03-10-huge-20-mb-post.md").write_text(
        "---\ntitle: Huge\n---\n" + paragraph * (20_000_000 // len(paragraph.encode())), encoding="utf-8")
    (posts / "2025-03-11-yaml-huge-scalar-title.md").write_text(
        '---\ntitle: "' + "x" * 5_000_000 + '"\n---\nbody\n', encoding="utf-8")
    secret = root / "secret.md"
    secret.write_text("---\ntitle: Secret outside posts\n---\nroot password\n", encoding="utf-8")
    (posts / "2025-03-12-symlink-out-of-posts.md").symlink_to(secret)
    (posts / "2025-03-13-markdown-10000-nested-lists.md").write_text(
        "---\ntitle: Nested lists\n---\n" + "- " * 10_000 + "bottom\n", encoding="utf-8")
    (posts / "2025-03-14-markdown-20000-unclosed-brackets.md").write_text(
        "---\ntitle: Unclosed brackets\n---\n" + "[" * 20_000 + "x\n", encoding="utf-8")
    (posts / "2025-03-16-markdown-20000-unclosed-links.md").write_text(
        "---\ntitle: Unclosed links\n---\n" + "[a](" * 20_000 + "\n", encoding="utf-8")
    (posts / "2025-03-17-liquid-join-150-million.md").write_text(
        '---\ntitle: A join of 150 million\n---\nBefore {{ (1..150000000) | join: "," | size }} after\n',
        encoding="utf-8")
    (posts / "2025-03-18-liquid-20000-unclosed-outputs.md").write_text(
        "---\ntitle: Unclosed outputs\n---\nBefore\n\n" + "{{" * 20_000 + "\n\nAfter\n", encoding="utf-8")
    (posts / "2025-03-15-kramdown-unclosed-marks.md").write_text(
        "---\ntitle: Unclosed kramdown marks\n---\n" + "```x\n{::comment}\n~~a >> b \"c\n" * 5_000 + "\n**End.**\n",
        encoding="utf-8")
    return site


def limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def feedpub_at_once(site: Path, *commands: str) -> dict[str, tuple[subprocess.CompletedProcess[str], float]]:
    """Each of `commands` in its own process, all at once (`check` writes nothing, so they cannot disturb each
    other; their render bounds, mostly waits, overlap), with the seconds each took."""
    started = time.monotonic()
    # Started from this thread: preexec_fn is not safe in a process with other threads.
    processes = [subprocess.Popen([sys.executable, "-m", "feedpub", command], cwd=site, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, preexec_fn=limit_memory) for command in commands]

    def finish(process: subprocess.Popen[str]) -> tuple[subprocess.CompletedProcess[str], float]:
        stdout, stderr = process.communicate(timeout=SECONDS)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), time.monotonic() - started

    with ThreadPoolExecutor(len(processes)) as pool:   # each read to its end at once: neither stalls on a full pipe
        return dict(zip(commands, pool.map(finish, processes), strict=True))


def snapshot(root: Path, *skip: Path) -> dict[str, float]:
    """Every file outside the `skip` folders with its mtime (folders are listed without one: writing in
    `skip` changes its parent's)."""
    return {str(p): 0.0 if p.is_dir() and not p.is_symlink() else p.lstat().st_mtime
            for p in root.rglob("*") if not any(p.is_relative_to(folder) for folder in skip)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("hostile")
    site = make_site(root)
    output = site / "public"
    state = site / ".feedpub"   # feedpub's own store and build cache
    before = snapshot(root, output, state)
    (check, check_seconds), (build, build_seconds) = feedpub_at_once(site, "check", "build").values()
    return {"site": site, "output": output, "check": check, "build": build, "before": before,
            "after": snapshot(root, output, state), "seconds": (check_seconds, build_seconds)}


def test_the_corpus_has_at_least_40_different_failures() -> None:
    cases = {p.name for p in FIXTURES.iterdir()} | set(REFUSED) | set(STOPPED) | set(STRESSED) | set(PUBLISHED)
    assert len(cases) >= 40
    assert {p.name for p in FIXTURES.iterdir()} <= (set(REFUSED) | set(PUBLISHED) | NOT_PUBLISHED_SILENTLY)


@pytest.mark.parametrize("command", ["check", "build"])
def test_commands_finish_in_bounds_and_exit_1(runs, command: str) -> None:
    result = runs[command]
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert max(runs["seconds"]) < SECONDS
    # whole-run peak of the children, far below the address-space limit they ran under
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 < MEMORY_LIMIT


def lines_about(result: subprocess.CompletedProcess[str], name: str) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith(f"posts/{name}")]


@pytest.mark.parametrize("command", ["check", "build"])
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_every_bad_post_is_named_with_its_problem(runs, command: str, name: str) -> None:
    lines = lines_about(runs[command], name)
    assert any(REFUSED[name] in line and "warning:" not in line for line in lines), (REFUSED[name], lines)


@pytest.mark.parametrize("command", ["check", "build"])
@pytest.mark.parametrize("name", sorted(STOPPED))
def test_a_post_past_the_render_bounds_is_named_with_its_line_and_what_was_expected(runs, command: str,
                                                                                      name: str) -> None:
    lines = lines_about(runs[command], name)
    assert len(lines) == 1 and re.fullmatch(rf"posts/{re.escape(name)}:4: warning: .+; published .+ \(expected .+\)",
                                            lines[0]), lines


@pytest.mark.parametrize("name", sorted({**REFUSED, **STOPPED, **STRESSED, **PUBLISHED}))
def test_check_and_build_agree_on_each_post(runs, name: str) -> None:
    def about(command: str) -> list[str]:
        lines = lines_about(runs[command], name)
        # which bound a post meets first (time or memory) depends on the machine's load
        return [re.sub(r"warning: .*?;", "warning: …;", line) for line in lines] if name in STOPPED else lines

    assert about("check") == about("build")


def published_items(output: Path) -> dict[str, dict[str, str]]:
    feed = json.loads((output / "feed.json").read_text(encoding="utf-8"))
    return {item["url"]: item for item in feed["items"]}


def find_item(items: dict[str, dict[str, str]], name: str) -> dict[str, str] | None:
    slug = name[11:-3]
    return next((item for url, item in items.items() if slug in url or slug in item["content_html"]), None)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_every_good_or_nasty_post_is_published_safely(runs, name: str) -> None:
    warning, text = PUBLISHED[name]
    if warning:
        assert warning in runs["build"].stderr
    items = published_items(runs["output"])
    source = (runs["site"] / "posts" / name).read_bytes().decode("utf-8-sig")
    # a post whose permalink replaces its file name is found by its title instead
    item = find_item(items, name) or next((i for i in items.values() if i["title"] in source), None)
    assert item is not None, f"{name} not published"
    assert text in item["content_html"]
    lowered = item["content_html"].lower()
    assert not [bad for bad in DANGEROUS if bad in lowered]
    assert item["url"].startswith("https://blog.example.com/")
    assert ".." not in item["url"].split("/") and not [bad for bad in (" ", "\\", "%5C") if bad in item["url"]]


def plain_paragraphs(html: str) -> bool:
    return not re.sub(r"</?p>", "", html).count("<")


@pytest.mark.parametrize("name", sorted(STOPPED))
def test_a_post_past_the_render_bounds_is_published_as_escaped_text_without_its_liquid(runs, name: str) -> None:
    item = find_item(published_items(runs["output"]), name)
    assert item is not None and STOPPED[name] in item["content_html"]
    assert plain_paragraphs(item["content_html"]) and "{{" not in item["content_html"]


@pytest.mark.parametrize("name", sorted(STRESSED))
def test_markdown_stress_is_rendered_or_named_and_never_leaks_markup(runs, name: str) -> None:
    item = find_item(published_items(runs["output"]), name)
    assert item is not None and STRESSED[name] in item["content_html"]
    # balanced: no half element, no stray '<' (huge_tree: the lists nest past libxml2's default depth)
    etree.fromstring(f"<div>{item['content_html']}</div>", etree.XMLParser(huge_tree=True))
    lowered = item["content_html"].lower()
    assert not [bad for bad in DANGEROUS if bad in lowered]
    named = [line for line in lines_about(runs["build"], name) if "warning:" in line]
    assert not named or (len(named) == 1 and ": warning: Markdown could not be rendered" in named[0]
                         and plain_paragraphs(item["content_html"])), named


def test_refused_and_future_posts_are_not_published(runs) -> None:
    feed = (runs["output"] / "feed.json").read_text(encoding="utf-8")
    for name in [*REFUSED, *NOT_PUBLISHED_SILENTLY]:
        assert name[11:-3] not in feed, name
    assert "root password" not in feed and "Secret outside posts" not in feed


def test_every_feed_parses_as_xml_and_nothing_is_written_outside_the_output(runs) -> None:
    output: Path = runs["output"]
    for document in [*output.rglob("*.xml"), *output.rglob("*.opml")]:
        etree.fromstring(document.read_bytes())  # raises on ]]>, control characters, bad encoding
    for file in output.rglob("*"):
        assert file.resolve().is_relative_to(output.resolve())
    assert runs["before"] == runs["after"]
    assert not output.with_name("etc").exists() and not Path("/tmp/feedpub-pwned").exists()
    assert {p.name for p in (output / "categories").iterdir()} == {
        "a-b", "ai導入戦略", "encoding", "etc", "news"}  # '/' and '..' never make extra folders
