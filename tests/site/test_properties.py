"""Property tests: whatever the input, the collector, slugs, URLs, excerpts, HTML and feeds stay well-formed."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import feedparser
import lxml.html
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from feedpub.config import Config
from feedpub.config_file import load_config
from feedpub.site.build import build_site
from feedpub.site.markup import cut_excerpt, to_html
from feedpub.site.posts import collect
from feedpub.urls import absolute, assign_slugs, expand_permalink, slugify

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = datetime(2026, 1, 1, tzinfo=UTC)
INVALID_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30),
                    st.sampled_from(["2025-12-16 04:49:25 +0000", "2025-02-30", "0000-01-01", "9999-12-31 23:59 -1200",
                                     "NO", "../../etc/x", "a/b", "..", "javascript:alert(1)", "AI導入戦略", "\x00"]))
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12)
front_matter = st.dictionaries(
    st.sampled_from(["title", "date", "updated", "categories", "category", "tags", "author", "excerpt", "image",
                     "permalink", "slug", "id", "published", "reading_time", "description", "excerpt_separator"]),
    values, max_size=8)
# Markdown made of the pieces attacks are built from, in any order
hostile_markdown = st.lists(st.one_of(
    st.sampled_from(["<script>alert(1)</script>", "<SCRIPT>", "[x](javascript:alert(1))",
                     "<a href='JAVASCRIPT:x'>a</a>",
                     "<img src=x onerror=alert(1)>", "<div onclick='x'>", "<svg onload=x>", "\n\n", "\n- ", "\n> ",
                     "**", "`", "[", "](", "<", ">", "&", "]]>", "\x07", "\x00", "\ud800", "{{ x }}", "{% raw %}",
                     "<!--", "-->", "<style>x</style>", "<iframe src=x>", "data:text/html,x", "java\tscript:"]),
    st.text(max_size=10)), max_size=30).map("".join)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = tmp_path_factory.mktemp("properties")
    (root / "posts").mkdir()
    (root / "feedpub.toml").write_text('[site]\ntitle = "P"\nurl = "https://blog.example.com"\n'
                                       'timezone = "Asia/Tokyo"\n', encoding="utf-8")
    return load_config(root / "feedpub.toml")


@SETTINGS
@given(meta=front_matter, body=st.text(max_size=200))
def test_any_front_matter_yields_a_post_or_a_problem_and_valid_feeds(config: Config, meta: dict, body: str) -> None:
    post_file = Path(config.posts_dir, "2025-06-01-property.md")
    text = "---\n" + yaml.safe_dump(meta, allow_unicode=True) + "---\n" + body
    post_file.write_text(text, encoding="utf-8", errors="surrogatepass")
    collection = collect(config, now=NOW, future=True)
    named = [p for p in collection.problems if not p.warning and p.path.endswith(post_file.name)]
    assert len(collection.posts) == 1 or named or meta.get("published") is False
    for post in collection.posts:
        assert post.title and "\n" not in post.title
        assert post.url.startswith("https://blog.example.com/") and " " not in post.url
        assert ".." not in unquote(urlsplit(post.url).path).split("/")
    if collection.posts:
        build_site(config, future=True, use_cache=False, now=NOW)
        for path in config.output_dir.rglob("*"):
            if path.suffix in (".xml", ".opml"):
                etree.fromstring(path.read_bytes())
            if path.name in ("feed.xml", "rss.xml"):
                assert not feedparser.parse(path.read_bytes()).bozo, path


@SETTINGS
@given(name=st.text(max_size=20))
def test_slugs_never_contain_a_slash(name: str) -> None:
    slug = slugify(name)
    assert "/" not in slug and slug == slug.strip("-") and not INVALID_XML.search(slug)


@SETTINGS
@given(names=st.lists(st.text(max_size=8), max_size=12, unique=True),
       overrides=st.dictionaries(st.text(max_size=4), st.sampled_from(["x", "", "a/b", "..", "ai"]), max_size=3))
def test_slugs_never_collide_silently(names: list[str], overrides: dict[str, str]) -> None:
    sources = {name: f"posts/{i}.md" for i, name in enumerate(names)}
    slugs, problems, notes = assign_slugs(sources, overrides)
    assert len(set(slugs.values())) == len(slugs)
    assert all("/" not in slug and slug not in ("", ".", "..") for slug in slugs.values())
    for name in set(names) - set(slugs):
        assert any(repr(name) in str(message) for message in problems)
    for name, slug in slugs.items():   # a name that lost its slug to another is told so
        assert slug == (overrides.get(name) or slugify(name)) or any(repr(name) in str(note) for note in notes)


@SETTINGS
@given(template=st.one_of(st.sampled_from(["date", "pretty", "none", "ordinal"]),
                          st.lists(st.sampled_from([":categories", ":title", ":slug", ":year", "/", "..", ".", " ",
                                                    "\\", "%2e%2e", "?", "#", "%", "x"]), max_size=10).map("".join)),
       title=st.text(max_size=15), categories=st.lists(st.text(max_size=6), max_size=3),
       date=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
def test_permalinks_and_urls_never_climb_or_carry_spaces(template: str, title: str, categories: list[str],
                                                          date: datetime) -> None:
    path = expand_permalink(template, date=date, title=title, slug=title, categories=categories)
    assert path.startswith("/")
    segments = path.split("/")
    assert ".." not in segments and "." not in segments and "\\" not in path
    url = absolute("https://blog.example.com/blog", path)
    assert url.startswith("https://blog.example.com/blog/") and not re.search(r"\s", url)
    assert not {"..", "."} & {unquote(s) for s in urlsplit(url).path.split("/")}
    assert "?" not in url and "#" not in url


@SETTINGS
@given(text=st.text(max_size=300), limit=st.integers(min_value=2, max_value=200))
def test_excerpts_respect_the_limit_and_stay_encodable(text: str, limit: int) -> None:
    text = text.encode("utf-8", "ignore").decode("utf-8")  # a post's text never holds lone surrogates
    excerpt = cut_excerpt(text, limit)
    assert len(excerpt) <= limit
    excerpt.encode("utf-8")


@SETTINGS
@given(markdown=hostile_markdown)
def test_html_never_carries_script_handlers_or_invalid_xml(markdown: str) -> None:
    html = to_html(markdown, "https://blog.example.com/2025/01/01/p.html")
    assert "<script" not in html.lower() and not INVALID_XML.search(html)
    if not html.strip():
        return
    for element in lxml.html.fragment_fromstring(html, create_parent="div").iter():
        if not isinstance(element.tag, str):
            continue
        assert element.tag not in ("script", "style", "iframe", "svg")
        for name, value in element.attrib.items():
            assert not name.lower().startswith("on"), (name, html)
            if name in ("href", "src"):
                assert urlsplit(value.strip()).scheme in ("http", "https", "mailto", "tel"), (value, html)
