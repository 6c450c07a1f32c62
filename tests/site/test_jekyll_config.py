"""Reading a Jekyll site as it is: `_config.yml` (and `_config.*.yml` over it) fills what feedpub.toml leaves
unset, and jekyll-feed's `feed:` settings keep the feed URLs subscribers already have."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from feedpub.config_file import load_config
from feedpub.errors import ConfigError
from feedpub.jekyll import settings
from feedpub.site.build import build_site

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG = """\
title: ALLFORCES
url: "https://blog.example.com"
baseurl: /news
description: AI news and analysis
author:
  name: ALLFORCES編集部
timezone: Asia/Tokyo
permalink: /:categories/:year/:month/:day/:title:output_ext
lang: ja
excerpt_separator: <!--cut-->
future: true
github_username: allforces
plugins: [jekyll-feed]
feed:
  path: atom.xml
  posts_limit: 3
  excerpt_only: true
  categories: [ai, 半導体]
  collections: [docs]
"""


def test_settings_map_jekyll_keys_and_account_for_every_other_one() -> None:
    found = settings(yaml.safe_load(CONFIG))
    assert found.values == {
        "site": {"title": "ALLFORCES", "url": "https://blog.example.com", "baseurl": "/news",
                 "description": "AI news and analysis", "author": "ALLFORCES編集部", "timezone": "Asia/Tokyo",
                 "permalink": "/:categories/:year/:month/:day/:title:output_ext", "language": "ja",
                 "excerpt_separator": "<!--cut-->", "future": True, "posts_dir": "."},
        "feeds": {"atom_path": "atom.xml", "limit": 3, "content": "excerpt", "categories": True,
                  "category_atom_path": "feed/{name}.xml"},
    }
    assert found.used["lang"] == "site.language" and found.used["feed.posts_limit"] == "feeds.limit"
    assert {key: str(why) for key, why in found.ignored.items()} == {
        "github_username": "the site's own key; Liquid reads it as site.github_username",
        "plugins": "feedpub has its own feeds; Liquid reads it as site.plugins",
        "feed.collections": "feedpub makes feeds of posts only, not of docs"}


def test_jekyll_feed_paths_are_read_as_jekyll_feed_reads_them() -> None:
    """generator.rb: `tags: {}` is on (a Hash), the tag path is joined as written, `collections.posts` wins."""
    found = settings({"feed": {"path": "/feed.xml", "tags": {}, "collections": {
        "posts": {"path": "/blog/atom.xml", "categories": ["news"]}, "docs": {}}}})
    assert found.values["feeds"] == {"atom_path": "blog/atom.xml", "tags": True,
                                     "tag_atom_path": "feed/by_tag/{name}.xml", "categories": True,
                                     "category_atom_path": "feed/{name}.xml", "limit": 10}
    assert {key: str(why) for key, why in found.ignored.items()} == {
        "feed.path": "feed.collections.posts.path wins",
        "feed.collections": "feedpub makes feeds of posts only, not of docs"}
    assert settings({"feed": {"tags": {"path": "/t/by-"}}}).values["feeds"]["tag_atom_path"] == "t/by-{name}.xml"
    assert "tags" not in settings({"feed": {"tags": False}}).values["feeds"]


def test_jekyll_feed_defaults_when_feed_is_not_configured() -> None:
    found = settings({"title": "x", "collections_dir": "content"})
    assert found.values["feeds"] == {"atom_path": "feed.xml", "limit": 10}
    assert found.values["site"]["posts_dir"] == "content"


def write_site(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_feedpub_toml_wins_and_config_overrides_apply_in_name_order(tmp_path: Path) -> None:
    write_site(tmp_path / "blog", {"_config.yml": CONFIG,
                                   "_config.production.yml": "url: https://prod.example.com\nfeed: {posts_limit: 5}\n",
                                   "_config.staging.yml": "description: staging wins over production\n"})
    (tmp_path / "feedpub.toml").write_text('[site]\njekyll_dir = "blog"\ntitle = "From TOML"\n'
                                           '[feeds]\nformats = ["atom"]\n', encoding="utf-8")
    config = load_config(tmp_path / "feedpub.toml")
    assert config.site.title == "From TOML"
    assert config.site.url == "https://prod.example.com"
    assert config.site.description == "staging wins over production"
    assert config.feeds.limit == 5 and config.feeds.content == "excerpt" and config.feeds.atom_path == "atom.xml"
    assert config.posts_dir == (tmp_path / "blog").resolve()
    assert config.site.future is True and config.site.language == "ja"
    assert "site.title" in config.given and "site.url" not in config.given


def test_a_bad_value_in_config_yml_is_refused_with_its_file_and_line(tmp_path: Path) -> None:
    write_site(tmp_path / "blog", {"_config.yml": "title: ok\nurl: [not, a, string\n"})
    (tmp_path / "feedpub.toml").write_text('[site]\njekyll_dir = "blog"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"blog/_config.yml:2: invalid YAML: while parsing a flow sequence"):
        load_config(tmp_path / "feedpub.toml")
    write_site(tmp_path / "blog", {"_config.yml": "title: ok\ntimezone: Mars/Olympus\n"})
    with pytest.raises(ConfigError, match=r"blog/_config.yml: 'site.timezone': unknown time zone 'Mars/Olympus'"):
        load_config(tmp_path / "feedpub.toml")
    (tmp_path / "feedpub.toml").write_text('[site]\njekyll_dir = "nowhere"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"feedpub.toml:2: 'site.jekyll_dir': .*nowhere is not a folder"):
        load_config(tmp_path / "feedpub.toml")


def test_feeds_keep_jekyll_feed_urls(tmp_path: Path) -> None:
    """/feed.xml and /feed/<category>.xml stay where jekyll-feed put them; the other formats keep feedpub's."""
    write_site(tmp_path / "blog", {
        "_config.yml": "title: Blog\nurl: https://blog.example.com\ntimezone: Asia/Tokyo\n"
                       "feed:\n  categories: [news]\n  tags: true\n",
        "_posts/2025-12-01-one.md": "---\ntitle: One\ncategories: [news]\ntags: [llm]\n---\n本文 one.\n",
        "_posts/2025-12-02-two.md": "---\ntitle: Two\ncategory: 半導体\n---\nBody <!--more--> two.\n",
    })
    (tmp_path / "feedpub.toml").write_text('[site]\njekyll_dir = "blog"\n', encoding="utf-8")
    report = build_site(load_config(tmp_path / "feedpub.toml"), now=NOW)
    public = tmp_path / "public"
    files = sorted(p.relative_to(public).as_posix() for p in public.rglob("*.xml"))
    assert {"feed.xml", "feed/news.xml", "feed/半導体.xml", "feed/by_tag/llm.xml", "rss.xml",
            "categories/news/rss.xml"} <= set(files)
    assert "categories/news/feed.xml" not in files
    atom = (public / "feed/news.xml").read_text(encoding="utf-8")
    assert 'href="https://blog.example.com/feed/news.xml"' in atom and "<title>One</title>" in atom
    assert "feed/news.xml" in (public / "feeds.opml").read_text(encoding="utf-8")
    assert report.errors == 0


def test_posts_are_read_as_jekyll_reads_them(tmp_path: Path) -> None:
    """Only _posts/ (and _drafts/ with show_drafts) folders hold posts; folders above _posts are categories;
    `exclude` and Jekyll's default exclusions are never entered; pages beside them are not posts."""
    post = "---\ntitle: {}\n---\nbody\n"
    write_site(tmp_path / "blog", {
        "_config.yml": "title: Blog\nshow_drafts: true\nexclude: [archive, 'old-*']\n",
        "_posts/2025-12-01-one.md": post.format("One"),
        "news/_posts/2025-12-02-two.md": post.format("Two"),
        "_drafts/idea.md": post.format("Draft idea"),
        "about.md": post.format("About page"),
        "archive/_posts/2020-01-01-old.md": post.format("Archived"),
        "node_modules/pkg/_posts/2025-01-01-x.md": post.format("Vendored"),
        "notes/_posts/2025-12-03-three.md": post.format("Three"),
        "old-notes/_posts/2025-12-04-four.md": post.format("Excluded by a glob"),
    })
    (tmp_path / "feedpub.toml").write_text('[site]\njekyll_dir = "blog"\n[feeds]\nformats = ["json"]\n',
                                           encoding="utf-8")
    config = load_config(tmp_path / "feedpub.toml")
    report = build_site(config)   # now: a draft is dated by its file's mtime
    assert report.problems == ()
    items = json.loads((tmp_path / "public" / "feed.json").read_text(encoding="utf-8"))["items"]
    assert sorted(item["title"] for item in items) == ["Draft idea", "One", "Three", "Two"]
    assert report.categories == ("news", "notes")
