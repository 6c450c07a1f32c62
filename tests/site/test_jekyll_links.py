"""`{% post_url %}` and `{% link %}` resolve as Jekyll 4.3 resolves them, and `_config.yml`'s front matter `defaults:`
apply to posts as Jekyll applies them: a small English and Japanese site (en/_posts and ja/_posts holding the same
slug) built by Debian's `jekyll` with jekyll-feed and by feedpub gives the same entry URLs, authors, categories and
link targets. Where Jekyll's build stops (a target it cannot find, a name it cannot parse), feedpub names the post,
the line and Jekyll's message, leaves that post out and publishes the others, never with a guessed URL.
Skipped without Jekyll, except under CI=true."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urljoin

import lxml.html
import pytest
from lxml import etree

from feedpub.config_file import load_config
from feedpub.site.build import build_site
from feedpub.site.watch import LiveConfig

ATOM = "{http://www.w3.org/2005/Atom}"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
SITE_URL = "https://blog.example.com"
CONFIG = f"""\
title: Links
url: {SITE_URL}
baseurl: /blog
timezone: Asia/Tokyo
plugins: [jekyll-feed]
defaults:
  - scope: {{path: "ja", type: posts}}
    values: {{permalink: "/ja/:year/:title/", author: 花子, categories: [日本語]}}
  - scope: {{path: "", type: posts}}
    values: {{categories: [blog], tags: [既定], author: Default Author}}
  - scope: {{path: "en/_posts/*-hidden.md"}}
    values: {{published: false}}
  - scope: {{path: "en", type: post}}
    values: {{permalink: "/en/:categories/:title.html"}}
  - scope: {{path: "guides", type: pages}}
    values: {{permalink: "/g/:basename/"}}
  - scope: {{path: "/ja", type: posts}}
    values: {{permalink: "/a-leading-slash-never-applies/"}}
"""
FILES = {
    "_config.yml": CONFIG,
    "about.md": "---\ntitle: About\n---\nAbout us.\n",
    "docs/index.md": "---\ntitle: Docs\n---\nDocs.\n",
    "img/logo.png": "not really a picture\n",
    "company.md": "---\ntitle: 会社\npermalink: /company/概要/\n---\n会社概要。\n",
    "guides/intro.md": "---\ntitle: Intro\n---\nIntro.\n",
    "en/_posts/2025-01-01-hello.md": """\
---
title: Hello
related: about.md
---
Read [the Japanese one]({% post_url ja/2025-01-01-hello %}), [by path]({% link ja/_posts/2025-01-01-hello.md %}),
[about]({% link about.md %}), [the logo]({% link img/logo.png %}), [docs]({% link docs/index.md %}),
[related]({% link {{ page.related }} %}) and [the root post]({% post_url /2025-01-03-root %}),
[会社]({% link company.md %}), [a guide]({% link guides/intro.md %}).

{% raw %}{% link not-rendered.md %}{% endraw %}
""",
    "ja/_posts/2025-01-01-hello.md": """\
---
title: こんにちは
categories: [挨拶]
author: 太郎
---
[英語版]({% post_url en/2025-01-01-hello %})と[日付と名前だけ]({% post_url 2025-01-01-hello %})。
""",
    "en/_posts/2025-01-05-hidden.md": "---\ntitle: Hidden by a default\n---\nNever published.\n",
    "_posts/2025-01-03-root.md": ("---\ntitle: Root post\nslug: custom-slug\n---\n"
                                  "At the root: [me]({% post_url 2025-01-03-root %}), "
                                  "[a folder of no post]({% post_url fr/2025-01-01-hello %}).\n"),
}


def needs_jekyll() -> None:
    if shutil.which("jekyll") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("jekyll is missing: .ci/run installs jekyll and ruby-jekyll-feed")
        pytest.skip("jekyll is not installed (apt-get install jekyll ruby-jekyll-feed)")


def make_site(root: Path, files: dict[str, str]) -> Path:
    site = root / "site"
    for name, text in files.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text, encoding="utf-8")
    (root / "feedpub.toml").write_text('[site]\njekyll_dir = "site"\n[feeds]\nformats = ["atom"]\n', encoding="utf-8")
    return site


def jekyll_build(site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["jekyll", "build", "--source", str(site), "--destination", str(site.parent / "_site")],
                          capture_output=True, text=True, timeout=300)


def entries(atom: bytes) -> dict[str, tuple[str, str, frozenset[str], list[str]]]:
    """Entry link → (title, author, categories, the absolute targets of the links in its content)."""
    found = {}
    for entry in etree.fromstring(atom).iter(f"{ATOM}entry"):
        link = next(e.get("href") for e in entry.iter(f"{ATOM}link") if e.get("rel", "alternate") == "alternate")
        content = entry.findtext(f"{ATOM}content") or "<p></p>"
        hrefs = [urljoin(SITE_URL, a.get("href")) for a in lxml.html.fromstring(content).iter("a")]
        found[link] = (entry.findtext(f"{ATOM}title"), entry.findtext(f"{ATOM}author/{ATOM}name") or "",
                       frozenset(c.get("term") for c in entry.iter(f"{ATOM}category")), hrefs)
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    needs_jekyll()
    root = tmp_path_factory.mktemp("links")
    site = make_site(root, FILES)
    run = jekyll_build(site)
    assert run.returncode == 0, run.stdout + run.stderr
    report = build_site(load_config(root / "feedpub.toml"), now=NOW)
    return root, run, report


def test_every_link_and_every_default_gives_what_jekyll_gives(built) -> None:
    root, _, report = built
    jekyll = entries((root / "_site" / "feed.xml").read_bytes())
    ours = entries((root / "public" / "feed.xml").read_bytes())
    assert sorted(ours) == sorted(jekyll)
    assert sorted(jekyll) == [f"{SITE_URL}/blog/blog/2025/01/03/custom-slug.html",
                              f"{SITE_URL}/blog/en/en/blog/hello.html", f"{SITE_URL}/blog/ja/2025/hello/"]
    for link, (title, author, categories, hrefs) in jekyll.items():
        assert ours[link][0] == title
        assert ours[link][1] == author, link   # 花子 from ja's default loses to the post's own 太郎
        assert ours[link][2] == categories, link
        assert ours[link][3] == hrefs, link
    assert [str(p) for p in report.problems if not p.warning] == []


def test_the_cases_that_matter_resolve_to_jekylls_urls(built) -> None:
    root, _, _ = built
    ours = entries((root / "public" / "feed.xml").read_bytes())
    assert ours[f"{SITE_URL}/blog/en/en/blog/hello.html"][3] == [
        f"{SITE_URL}/blog/ja/2025/hello/", f"{SITE_URL}/blog/ja/2025/hello/", f"{SITE_URL}/blog/about.html",
        f"{SITE_URL}/blog/img/logo.png", f"{SITE_URL}/blog/docs/", f"{SITE_URL}/blog/about.html",
        f"{SITE_URL}/blog/blog/2025/01/03/custom-slug.html", f"{SITE_URL}/blog/company/%E6%A6%82%E8%A6%81/",
        f"{SITE_URL}/blog/g/intro/"]
    # The date and slug alone match the first post in Jekyll's order (en/ before ja/), which Jekyll deprecates.
    assert ours[f"{SITE_URL}/blog/ja/2025/hello/"][3] == [f"{SITE_URL}/blog/en/en/blog/hello.html"] * 2
    # The folder's, the defaults' and the post's own categories are kept, as Jekyll merges them; the longer scope
    # path's categories win over the site-wide ones (no "blog"), whose tags still apply (jekyll-feed shows both).
    assert ours[f"{SITE_URL}/blog/ja/2025/hello/"][2] == {"ja", "日本語", "挨拶", "既定"}


def test_a_match_jekyll_deprecates_is_a_warning_naming_the_line(built) -> None:
    root, run, report = built
    for name in ("2025-01-01-hello", "fr/2025-01-01-hello"):
        assert f"Deprecation: A call to '{{% post_url {name} %}}' did not match" in run.stdout + run.stderr
    warnings = [str(p) for p in report.problems if p.warning and "deprecates" in str(p)]
    assert warnings == [
        "site/_posts/2025-01-03-root.md:5: warning: Jekyll deprecates this: A call to '{% post_url "
        "fr/2025-01-01-hello %}' did not match a post using the new matching method of checking name (path-date-slug) "
        "equality. Please make sure that you change this tag to match the post's name exactly. (expected the post's "
        "path below the site without its extension, e.g. en/2025-01-01-slug)",
        "site/ja/_posts/2025-01-01-hello.md:6: warning: Jekyll deprecates this: A call to '{% post_url "
        "2025-01-01-hello %}' did not match a post using the new matching method of checking name (path-date-slug) "
        "equality. Please make sure that you change this tag to match the post's name exactly. (expected the post's "
        "path below the site without its extension, e.g. en/2025-01-01-slug)"]


GOOD = "---\ntitle: Still published\n---\nFine.\n"


@pytest.mark.parametrize(("tag", "message"), [
    # The case: the English post is not there, a Japanese one of the same name is.
    ("{% link en/_posts/2025-02-01-same.md %}",
     "Could not find document 'en/_posts/2025-02-01-same.md' in tag 'link'. Make sure the document exists and the "
     "path is correct."),
    ("{% link about.html %}",   # a made-up .html URL for about.md
     "Could not find document 'about.html' in tag 'link'. Make sure the document exists and the path is correct."),
    ('{% link "about.md" %}',
     "Could not find document '\"about.md\"' in tag 'link'. Make sure the document exists and the path is correct."),
    ("{% link {{ page.gone }} %}",
     "Could not find document '' in tag 'link'. Make sure the document exists and the path is correct."),
    ("{% post_url ja/2025-02-09-same %}",
     'Could not find post "ja/2025-02-09-same" in tag \'post_url\'. Make sure the post exists and the name is '
     "correct."),
    ("{% post_url 2025-02-02-same %}",
     'Could not find post "2025-02-02-same" in tag \'post_url\'. Make sure the post exists and the name is correct.'),
    ("{% post_url same %}",
     'Could not parse name of post "same" in tag \'post_url\'. Make sure the post exists and the name is correct.'),
    ("{% include missing.html %}",
     "Could not locate the included file 'missing.html' in any of [\"_includes\"]. Ensure it exists in one of those "
     "directories and, if it is a symlink, does not point outside your site source."),
    ("{% include_relative note.md %}",
     "Could not locate the included file 'note.md' in any of [\"en/_posts\"]. Ensure it exists in one of those "
     "directories and, if it is a symlink, does not point outside your site source."),
])
def test_a_target_jekyll_cannot_find_names_the_post_and_line_and_leaves_only_that_post_out(
        tmp_path: Path, tag: str, message: str) -> None:
    needs_jekyll()
    site = make_site(tmp_path, {
        "_config.yml": f"title: Links\nurl: {SITE_URL}\nplugins: [jekyll-feed]\n",
        "about.md": "---\ntitle: About\n---\nAbout.\n",
        "ja/_posts/2025-02-01-same.md": "---\ntitle: 同じ名前\n---\n日本語の記事。\n",
        "en/_posts/2025-02-02-broken.md": f"---\ntitle: Broken link\n---\nFirst line.\n\nSee [this]({tag}).\n",
        "en/_posts/2025-02-03-good.md": GOOD,
    })
    run = jekyll_build(site)
    assert run.returncode != 0
    # Jekyll names its includes folder by its absolute path
    assert re.split(r"\. | in any of", message)[0] in " ".join((run.stdout + run.stderr).split())

    report = build_site(load_config(tmp_path / "feedpub.toml"), now=NOW)
    errors = [str(p) for p in report.problems if not p.warning]
    assert len(errors) == 1 and errors[0].startswith(f"site/en/_posts/2025-02-02-broken.md:6: {message}")
    assert "; the post is left out, as Jekyll's build stops at it (expected " in errors[0]
    feed = (tmp_path / "public" / "feed.xml").read_bytes()
    assert sorted(entries(feed)) == [f"{SITE_URL}/en/2025/02/03/good.html", f"{SITE_URL}/ja/2025/02/01/same.html"]
    assert b"broken" not in feed.lower()


def test_a_link_target_from_site_data_is_checked_as_it_renders_and_never_guessed(site) -> None:
    """A target only rendering can give (here from the site's title) is an error at the post's line; the link is
    rendered as nothing, never as a guessed URL."""
    site.configure(title="missing.md")
    site.post("2025-03-01-dynamic.md", "---\ntitle: Dynamic\n---\nSee [this]({% link {{ site.title }} %}).\n")
    report = build_site(site.config, now=NOW)
    assert [str(p) for p in report.problems] == [
        "posts/2025-03-01-dynamic.md:4: Could not find document 'missing.md' in tag 'link'. Make sure the document "
        "exists and the path is correct.; rendered as nothing (expected the path of a post, page or file below the "
        "site, e.g. en/_posts/2025-01-01-slug.md)"]
    assert b"missing.html" not in (site.root / "public" / "feed.xml").read_bytes()


def test_changed_defaults_in_config_yml_are_reloaded_and_change_the_urls(tmp_path: Path) -> None:
    """Watch mode reloads the config when _config.yml changes; the build (cache and all) then uses the new
    defaults."""
    site = make_site(tmp_path, {
        "_config.yml": f"url: {SITE_URL}\ndefaults:\n  - scope: {{path: ja}}\n"
                       "    values: {permalink: /old/:title/}\n",
        "ja/_posts/2025-04-01-post.md": "---\ntitle: 投稿\n---\n本文。\n",
    })
    live = LiveConfig(load_config(tmp_path / "feedpub.toml"), tmp_path / "feedpub.toml")
    build_site(live.current, now=NOW)
    feed = tmp_path / "public" / "feed.xml"
    assert list(entries(feed.read_bytes())) == [f"{SITE_URL}/old/post/"]

    config_yml = site / "_config.yml"
    config_yml.write_text(config_yml.read_text(encoding="utf-8").replace("/old/", "/new/"), encoding="utf-8")
    live.refresh(frozenset({config_yml.resolve()}))
    build_site(live.current, now=NOW)
    assert list(entries(feed.read_bytes())) == [f"{SITE_URL}/new/post/"]
    assert re.search(rb"/old/", feed.read_bytes()) is None


def test_pretty_permalinks_and_a_collections_dir_resolve_as_in_jekyll(tmp_path: Path) -> None:
    needs_jekyll()
    site = make_site(tmp_path, {
        "_config.yml": f"url: {SITE_URL}\npermalink: pretty\ncollections_dir: coll\nplugins: [jekyll-feed]\n"
                       # the same scope path: the set naming the type wins, whichever comes first
                       "defaults:\n  - scope: {path: coll/_posts, type: posts}\n    values: {author: 編集部}\n"
                       "  - scope: {path: coll/_posts}\n    values: {author: 誰か, tags: [既定]}\n",
        "about.md": "---\ntitle: About\n---\nAbout.\n",
        "coll/_posts/2025-05-01-first.md": "---\ntitle: 最初\n---\n最初の記事。\n",
        "coll/_posts/2025-05-02-second.md": "---\ntitle: Second\n---\n[about]({% link about.md %}), "
                                            "[first]({% link _posts/2025-05-01-first.md %}), "
                                            "[again]({% post_url 2025-05-01-first %}).\n",
    })
    run = jekyll_build(site)
    assert run.returncode == 0, run.stdout + run.stderr
    report = build_site(load_config(tmp_path / "feedpub.toml"), now=NOW)
    assert [str(p) for p in report.problems] == []
    jekyll = entries((tmp_path / "_site" / "feed.xml").read_bytes())
    ours = entries((tmp_path / "public" / "feed.xml").read_bytes())
    assert ours == jekyll
    assert ours[f"{SITE_URL}/2025/05/02/second/"] == ("Second", "編集部", frozenset({"既定"}), [
        f"{SITE_URL}/about/", f"{SITE_URL}/2025/05/01/first/", f"{SITE_URL}/2025/05/01/first/"])


def test_a_post_left_out_for_a_missing_file_beside_it_comes_back_when_the_file_appears(tmp_path: Path) -> None:
    site = make_site(tmp_path, {
        "_config.yml": f"url: {SITE_URL}\n",
        "ja/_posts/2025-06-01-note.md": "---\ntitle: 注記つき\n---\n本文。\n\n{% include_relative 注記.txt %}\n",
    })
    config = load_config(tmp_path / "feedpub.toml")
    report = build_site(config, now=NOW)
    assert [p.line for p in report.problems] == [6] and report.posts == 0
    (site / "ja" / "_posts" / "注記.txt").write_text("注記の本文。\n", encoding="utf-8")
    report = build_site(config, now=NOW)   # the same config and cache: only the new file changed
    assert report.problems == () and report.posts == 1
    assert "注記の本文。" in (tmp_path / "public" / "feed.xml").read_text(encoding="utf-8")


def test_a_target_missing_in_an_include_names_the_post_the_include_and_its_line(tmp_path: Path) -> None:
    """…and a post naming a post left out is left out too (its link would lead to no post of the feeds)."""
    needs_jekyll()
    site = make_site(tmp_path, {
        "_config.yml": f"url: {SITE_URL}\nplugins: [jekyll-feed]\n",
        "about.md": "---\ntitle: About\n---\nAbout.\n",
        "_includes/card.html": "<p>カード</p>\n<a href=\"{% link {{ page.target }} %}\">{{ include.label }}</a>\n",
        "ja/_posts/2025-07-01-card.md": "---\ntitle: カード\ntarget: ja/_posts/2025-07-09-gone.md\n---\n"
                                        "{% include card.html label=\"次へ\" %}\n",
        "ja/_posts/2025-07-02-fine.md": "---\ntitle: 問題なし\ntarget: about.md\n---\n"
                                        "{% include card.html label=\"会社\" %}\n",
        "ja/_posts/2025-07-03-follows.md": "---\ntitle: 続き\n---\n[前]({% post_url ja/2025-07-01-card %})\n",
    })
    run = jekyll_build(site)
    assert run.returncode != 0
    assert "Could not find document 'ja/_posts/2025-07-09-gone.md' in tag 'link'" in run.stdout + run.stderr
    report = build_site(load_config(tmp_path / "feedpub.toml"), now=NOW)
    assert [str(p) for p in report.problems] == [
        "site/ja/_posts/2025-07-01-card.md:5: Could not find document 'ja/_posts/2025-07-09-gone.md' in tag 'link'. "
        "Make sure the document exists and the path is correct. (in _includes/card.html:2); the post is left out, as "
        "Jekyll's build stops at it (expected the path of a post, page or file below the site, e.g. "
        "en/_posts/2025-01-01-slug.md)",
        "site/ja/_posts/2025-07-03-follows.md:4: post_url 'ja/2025-07-01-card' names a post that is left out for a "
        "problem of its own; this post is left out too, as its link would lead to no post of the feeds (expected the "
        "post's path below the site without its extension, e.g. en/2025-01-01-slug)"]
    published = entries((tmp_path / "public" / "feed.xml").read_bytes())
    assert published == {
        f"{SITE_URL}/ja/2025/07/02/fine.html": ("問題なし", "My blog", frozenset({"ja"}), [f"{SITE_URL}/about.html"])}


def test_a_posts_folder_named_posts_is_one_of_the_sites_so_links_name_it(site) -> None:
    # posts_dir = "_posts" (a Jekyll site's posts folder named directly): `{% link _posts/… %}` finds the post.
    site.configure(posts_dir="_posts")
    (site.root / "_posts").mkdir()
    (site.root / "_posts" / "2025-01-01-first.md").write_text("---\ntitle: First\n---\n\n最初\n", encoding="utf-8")
    (site.root / "_posts" / "2025-01-02-second.md").write_text(
        "---\ntitle: Second\n---\n\n[前の記事]({% link _posts/2025-01-01-first.md %})\n", encoding="utf-8")
    report = build_site(site.config)
    assert not report.problems, report.problems
    feed = (site.root / "public" / "feed.xml").read_text(encoding="utf-8")
    assert 'href="https://blog.example.com/2025/01/01/first.html"' in feed
