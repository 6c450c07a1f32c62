"""Feed documents, checked by parsing the bytes a reader would get."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import feedparser
import pytest
from lxml import etree

from feedpub.errors import Problem
from feedpub.site.build import build_site
from feedpub.site.feeds import plan_feeds
from feedpub.site.output import MANIFEST
from feedpub.site.posts import collect

ATOM = "{http://www.w3.org/2005/Atom}"
NS = {"a": "http://www.w3.org/2005/Atom", "media": "http://search.yahoo.com/mrss/",
      "dc": "http://purl.org/dc/elements/1.1/"}
INFERENCE = "https://blog.example.com/ai%E5%B0%8E%E5%85%A5%E6%88%A6%E7%95%A5/2025/12/16/llm-inference-gains.html"

JAPANESE = """
    ---
    title: "推論性能35%向上は何を変えるのか"
    date: 2025-12-16 04:49:25 +0000
    categories: ["AI導入戦略"]
    tags: ["推論"]
    author: "編集部"
    excerpt: "**新モデルの推論性能35%向上**について。"
    image: /assets/images/inference.png
    ---

    新しいモデルで**推論性能35%**向上。[解説]({{ site.baseurl }}/2025/12/01/benchmarks.html)と
    ![図](img/chart.png)を参照。
    """
ENGLISH = """
    ---
    title: "Weekly roundup"
    date: 2025-12-10 18:30:00 +09:00
    categories: [news, AI導入戦略]
    author: Dana Reyes
    ---

    Three releases stood out. See [the comparison](../compare/) and {% raw %}{{ not liquid }}{% endraw %}.
    """
CUSTOM_ID = """
    ---
    title: "Old post with a guid"
    date: 2025-11-01 09:00:00 +0000
    categories: news
    guid: "tag:blog.example.com,2025:old-post"
    ---

    Hello.
    """
FEEDS = '[feeds]\nwebsub_hub = "https://hub.example.com/"\n[feeds.slugs]\n"AI導入戦略" = "ai-strategy"\n'


@dataclass(frozen=True)
class Published:
    files: dict[str, bytes]          # every file in the output folder but feedpub's manifest, by path
    problems: tuple[Problem, ...]
    rewritten: tuple[str, ...]       # the files whose bytes this build changed


def publish(site) -> Published:
    """A build of the site as `feedpub build` makes it, without the build cache: what a reader gets."""
    config = site.config
    report = build_site(config, use_cache=False)
    output = config.output_dir
    files = {path.relative_to(output).as_posix(): path.read_bytes()
             for path in sorted(output.rglob("*")) if path.is_file() and path.name != MANIFEST}
    return Published(files, report.problems, report.written.written)


def build(site, extra: str = "") -> Published:
    site.configure(extra)
    return publish(site)


@pytest.fixture
def built(site) -> Published:
    site.post("2025-12-16-llm-inference-gains.md", JAPANESE)
    site.post("2025-12-10-weekly-roundup.md", ENGLISH)
    site.post("2025-11-01-old-post.md", CUSTOM_ID)
    return build(site, FEEDS)


def test_layout_has_site_and_category_feeds_in_every_format(built):
    for folder in ("", "categories/ai-strategy/", "categories/news/"):
        for name in ("feed.xml", "rss.xml", "feed.json"):
            assert folder + name in built.files
    assert {"feeds.opml", "feeds/index.html", "feed.xsl"} <= set(built.files)
    assert not any(path.startswith("tags/") or path.startswith("authors/") for path in built.files)


@pytest.mark.parametrize("path", ["feed.xml", "rss.xml"])
def test_feedparser_reads_entries_newest_first_with_utc_correct_dates(built, path):
    parsed = feedparser.parse(built.files[path])
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert [e.title for e in parsed.entries] == ["推論性能35%向上は何を変えるのか", "Weekly roundup",
                                                 "Old post with a guid"]
    published = [datetime(*e.published_parsed[:6], tzinfo=UTC) for e in parsed.entries]
    assert published[0] == datetime(2025, 12, 16, 4, 49, 25, tzinfo=UTC)   # +0000
    assert published[1] == datetime(2025, 12, 10, 9, 30, tzinfo=UTC)       # 18:30 +09:00
    assert [t.term for t in parsed.entries[0].tags] == ["AI導入戦略", "推論"]
    assert parsed.entries[0].link == INFERENCE


def test_every_configured_hub_is_advertised(site):
    site.post("2025-12-16-llm-inference-gains.md", JAPANESE)
    hubs = '[feeds]\nwebsub_hub = ["https://hub.example.com/", "https://pubsubhubbub.appspot.com/"]\n'
    published = build(site, hubs)
    expected = ["https://hub.example.com/", "https://pubsubhubbub.appspot.com/"]
    for path in ("feed.xml", "rss.xml"):
        root = etree.fromstring(published.files[path])
        assert [link.get("href") for link in root.iter(ATOM + "link") if link.get("rel") == "hub"] == expected
    assert [hub["url"] for hub in json.loads(published.files["feed.json"])["hubs"]] == expected


def test_category_feed_holds_only_its_posts(built):
    parsed = feedparser.parse(built.files["categories/ai-strategy/feed.xml"])
    assert not parsed.bozo
    assert parsed.feed.title == "Test blog | AI導入戦略"
    assert [e.title for e in parsed.entries] == ["推論性能35%向上は何を変えるのか", "Weekly roundup"]


def test_atom_has_rfc4287_required_elements(built):
    root = etree.fromstring(built.files["feed.xml"])
    assert root.tag == ATOM + "feed"
    for name in ("id", "title", "updated"):
        assert root.findtext(f"a:{name}", namespaces=NS)
    assert root.findtext("a:author/a:name", namespaces=NS) == "編集部"
    # The feed's updated is the newest entry's: an unchanged site gives identical bytes.
    assert root.findtext("a:updated", namespaces=NS) == "2025-12-16T04:49:25+00:00"
    links = root.findall("a:link", namespaces=NS)
    assert [link.get("rel") for link in links] == ["self", "hub", "alternate"]
    assert links[0].get("href") == "https://blog.example.com/feed.xml"
    entries = root.findall("a:entry", namespaces=NS)
    assert len(entries) == 3
    for entry in entries:
        for name in ("id", "title", "updated", "published", "author/a:name"):
            assert entry.findtext(f"a:{name}", namespaces=NS), name
        alternates = [link for link in entry.findall("a:link", namespaces=NS)
                      if link.get("rel", "alternate") == "alternate"]
        assert len(alternates) == 1
        assert entry.find("a:content", namespaces=NS).get("type") == "html"
        assert entry.find("a:summary", namespaces=NS).get("type") == "html"
    assert entries[0].findtext("a:published", namespaces=NS) == "2025-12-16T04:49:25+00:00"
    assert entries[1].findtext("a:published", namespaces=NS) == "2025-12-10T18:30:00+09:00"
    assert entries[0].find("media:thumbnail", namespaces=NS).get("url") == \
        "https://blog.example.com/assets/images/inference.png"
    assert entries[2].findtext("a:id", namespaces=NS) == "tag:blog.example.com,2025:old-post"
    assert b'type="CDATA"' not in built.files["feed.xml"] and b"<![CDATA[" not in built.files["feed.xml"]


def test_rss_channel_and_items(built):
    root = etree.fromstring(built.files["rss.xml"])
    channel = root.find("channel")
    assert root.get("version") == "2.0"
    assert channel.findtext("title") == "Test blog"
    assert channel.findtext("link") == "https://blog.example.com/"  # the site, not the feed
    assert channel.findtext("description")
    assert parsedate_to_datetime(channel.findtext("lastBuildDate")) == datetime(2025, 12, 16, 4, 49, 25, tzinfo=UTC)
    self_links = channel.findall("a:link", namespaces=NS)
    assert [(link.get("rel"), link.get("href")) for link in self_links] == [
        ("self", "https://blog.example.com/rss.xml"), ("hub", "https://hub.example.com/")]
    items = channel.findall("item")
    rfc822 = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$")
    for item in items:
        assert rfc822.match(item.findtext("pubDate"))
        assert item.findtext("title") and item.findtext("link") and item.findtext("guid")
        assert item.findtext("dc:creator", namespaces=NS)
        assert item.find("author") is None  # RSS <author> must be an e-mail address
    assert items[1].findtext("pubDate") == "Wed, 10 Dec 2025 18:30:00 +0900"
    guids = [(item.findtext("guid"), item.find("guid").get("isPermaLink")) for item in items]
    assert guids[0] == (INFERENCE, "true")
    assert guids[2] == ("tag:blog.example.com,2025:old-post", "false")


def test_json_feed_follows_version_1_1(built):
    document = json.loads(built.files["feed.json"])
    assert document["version"] == "https://jsonfeed.org/version/1.1"
    assert document["title"] == "Test blog"
    assert document["home_page_url"] == "https://blog.example.com/"
    assert document["feed_url"] == "https://blog.example.com/feed.json"
    assert document["hubs"] == [{"type": "WebSub", "url": "https://hub.example.com/"}]
    assert document["language"] == "en"
    items = document["items"]
    assert [item["title"] for item in items] == ["推論性能35%向上は何を変えるのか", "Weekly roundup",
                                                 "Old post with a guid"]
    for item in items:
        assert isinstance(item["id"], str) and item["id"]
        assert "content_html" in item or "content_text" in item
        assert datetime.fromisoformat(item["date_published"]).tzinfo is not None
        assert item["authors"][0]["name"]
    assert items[0]["image"] == "https://blog.example.com/assets/images/inference.png"
    assert items[0]["tags"] == ["AI導入戦略", "推論"]
    assert items[1]["date_published"] == "2025-12-10T18:30:00+09:00"
    assert items[2]["id"] == "tag:blog.example.com,2025:old-post"
    assert items[2]["url"].startswith("https://blog.example.com/news/")


def test_no_liquid_no_relative_urls_no_control_characters(built):
    for path, data in built.files.items():
        text = data.decode("utf-8")
        assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", text), path
        if path.endswith((".xml", ".json")):
            assert "{%" not in text and "{{ site" not in text, path
            urls = re.findall(r'(?:href|src)=(?:\\?"|&quot;)([^"&\\]*)', text)
            assert urls and all(url.startswith("https://") for url in urls), (path, urls)
    content = json.loads(built.files["feed.json"])["items"][0]["content_html"]
    assert 'src="https://blog.example.com/ai%E5%B0%8E%E5%85%A5%E6%88%A6%E7%95%A5/2025/12/16/img/chart.png"' in content
    assert "not liquid }}" in json.loads(built.files["feed.json"])["items"][1]["content_html"]  # {% raw %} kept as text


def test_building_twice_gives_identical_bytes(site, built):
    again = build(site, FEEDS)
    assert again.files == built.files and again.rewritten == ()


def test_limit_keeps_the_newest_and_renders_only_shown_posts(site):
    unsupported = "{{ 'x' | no_such_filter }}"   # a warning from each post that is rendered
    for day in range(1, 6):
        site.post(f"2025-10-0{day}-post-{day}.md", f"---\ntitle: Post {day}\ncategories: [a]\n---\n{unsupported}\n")
    site.post("2025-09-01-other.md", f"---\ntitle: Other\ncategories: [b]\n---\n{unsupported}\n")
    result = build(site, "[feeds]\nlimit = 2\n")
    assert [e.title for e in feedparser.parse(result.files["feed.xml"]).entries] == ["Post 5", "Post 4"]
    assert [e.title for e in feedparser.parse(result.files["categories/b/rss.xml"]).entries] == ["Other"]
    # post 5, post 4 and other: posts 1–3 appear in no feed
    assert [p.path for p in result.problems] == ["posts/2025-09-01-other.md", "posts/2025-10-04-post-4.md",
                                                 "posts/2025-10-05-post-5.md"]


def test_excerpt_mode_leaves_content_out(site):
    site.post("2025-12-16-llm-inference-gains.md", JAPANESE)
    result = build(site, '[feeds]\ncontent = "excerpt"\n')
    root = etree.fromstring(result.files["feed.xml"])
    assert root.find("a:entry/a:content", namespaces=NS) is None
    assert "新モデルの推論性能35%向上" in root.findtext("a:entry/a:summary", namespaces=NS)
    item = json.loads(result.files["feed.json"])["items"][0]
    assert item["content_html"] == "<p><strong>新モデルの推論性能35%向上</strong>について。</p>"


def test_tag_and_author_feeds_when_enabled_and_formats_chosen(site):
    site.post("2025-12-16-llm-inference-gains.md", JAPANESE)
    result = build(site, '[feeds]\ntags = true\nauthors = true\ncategories = false\nformats = ["json"]\n')
    assert set(result.files) == {"feed.json", "tags/推論/feed.json", "authors/編集部/feed.json",
                                 "feeds.opml", "feeds/index.html", "feed.xsl"}
    document = json.loads(result.files["tags/推論/feed.json"])
    assert document["feed_url"] == "https://blog.example.com/tags/%E6%8E%A8%E8%AB%96/feed.json"


def test_colliding_slugs_are_a_warning_naming_both_sources_and_both_feeds_are_kept(site):
    site.post("2025-12-01-a.md", "---\ntitle: A\ncategories: [news]\n---\nA.\n")
    site.post("2025-12-02-b.md", "---\ntitle: B\ncategories: [News]\n---\nB.\n")
    site.post("2025-12-03-c.md", "---\ntitle: C\ncategories: [news]\n---\nC.\n")
    result = build(site)
    assert len(result.problems) == 1 and result.problems[0].warning
    message = str(result.problems[0])
    assert "'News' (from posts/2025-12-02-b.md) and 'news' (from posts/2025-12-01-a.md)" in message
    # the name whose first post is older keeps the slug, whichever is newer or sorts first
    assert [e.title for e in feedparser.parse(result.files["categories/news/feed.xml"]).entries] == ["C", "A"]
    assert [e.title for e in feedparser.parse(result.files["categories/news-2/feed.xml"]).entries] == ["B"]


def test_empty_site_still_has_valid_feeds(site):
    result = build(site, "[feeds]\nstylesheet = false\n")
    parsed = feedparser.parse(result.files["feed.xml"])
    assert not parsed.bozo and parsed.entries == []
    assert "feed.xsl" not in result.files and b"xml-stylesheet" not in result.files["feed.xml"]


def test_stylesheet_instruction_precedes_the_root(built):
    head = built.files["feed.xml"].split(b"<feed", 1)[0]
    assert b'<?xml-stylesheet type="text/xsl" href="https://blog.example.com/feed.xsl"?>' in head
    assert etree.fromstring(built.files["feed.xsl"]).tag == "{http://www.w3.org/1999/XSL/Transform}stylesheet"


def test_opml_lists_every_feed(built):
    root = etree.fromstring(built.files["feeds.opml"])
    assert root.get("version") == "2.0"
    outlines = root.findall("body/outline")
    assert [o.get("xmlUrl") for o in outlines] == [
        "https://blog.example.com/feed.xml",
        "https://blog.example.com/categories/ai-strategy/feed.xml",
        "https://blog.example.com/categories/news/feed.xml"]
    assert outlines[1].get("text") == "Test blog | AI導入戦略"


def test_index_page_lists_feeds_and_link_tags_escaped(site):
    site.post("2025-12-01-a.md", "---\ntitle: A\ncategories: [\"Q&A <tips>\"]\n---\nA.\n")
    site.configure(title="Tom & Jerry's <blog>")
    result = publish(site)
    page = result.files["feeds/index.html"].decode("utf-8")
    assert "<blog>" not in page
    head = page.split("</head>", 1)[0]
    assert ('<link rel="alternate" type="application/atom+xml" title="Tom &amp; Jerry’s &lt;blog&gt; (Atom)" '
            'href="https://blog.example.com/feed.xml">') in head
    # Shown in the page as text to copy: escaped once more.
    assert "&lt;link rel=&#34;alternate&#34; type=&#34;application/rss+xml&#34;" in page
    assert "https://blog.example.com/categories/q-a-tips/feed.json" in page
    tree = etree.HTML(result.files["feeds/index.html"])
    assert "Tom & Jerry’s <blog> | Q&A <tips>" in "".join(tree.itertext())


def test_case_variants_on_a_case_folding_file_system_keep_one_path_and_say_so(site):
    """Where `feed/by_tag/Perl.xml` and `feed/by_tag/perl.xml` are one file, the name whose first post is older
    keeps the path, the other's Atom feed goes to its own folder, and a warning names both."""
    site.post("2025-12-01-a.md", "---\ntitle: A\ntags: [perl]\n---\nA.\n")
    site.post("2025-12-02-b.md", "---\ntitle: B\ntags: [Perl]\n---\nB.\n")
    site.configure('[feeds]\ntags = true\ntag_atom_path = "feed/by_tag/{name}.xml"\n')
    posts = collect(site.config, now=datetime(2026, 1, 1, tzinfo=UTC)).posts
    by_folder = {feed.folder: feed for feed in plan_feeds(site.config, posts)[0]}
    assert by_folder["tags/perl"].path("atom") == "feed/by_tag/perl.xml"
    assert by_folder["tags/perl-2"].path("atom") == "feed/by_tag/Perl.xml"
    feeds, problems = plan_feeds(site.config, posts, fold_case=True)
    by_folder = {feed.folder: feed for feed in feeds}
    assert by_folder["tags/perl"].path("atom") == "feed/by_tag/perl.xml"
    assert [p.title for p in by_folder["tags/perl-2"].posts] == ["B"]
    assert by_folder["tags/perl-2"].path("atom") == "tags/perl-2/feed.xml"
    assert [str(p).split(": warning: ", 1)[1] for p in problems][-1] == (
        "'perl' and 'Perl' have the same Atom feed path 'feed/by_tag/Perl.xml' on this case-insensitive file "
        "system: 'perl' keeps it (its first post is older), 'Perl' has its Atom feed at "
        "tags/perl-2/feed.xml")
