"""Pointing feedpub at an existing Jekyll site from the command line: `feedpub init --from-jekyll DIR`, then
`feedpub check -v` (every `_config.yml` key read or ignored) and `feedpub build` (the feed URLs jekyll-feed
gave)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

CONFIG = """\
title: 技術ブログ
url: https://blog.example.com
description: Notes
timezone: Asia/Tokyo
lang: ja
twitter_username: example
feed:
  categories: [news]
  collections: [docs]
"""
POST = """\
---
title: Liquid everywhere
categories: [news]
---
{% assign n = site.data.stats.readers %}Read by {{ n }} people, {% include badge.html label="人気" %}.
"""


def feedpub(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "feedpub", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def jekyll_site(root: Path) -> Path:
    blog = root / "blog"
    for name, text in {"_config.yml": CONFIG, "_posts/2025-12-01-liquid.md": POST,
                       "_data/stats.json": '{"readers": 1200}',
                       "_includes/badge.html": "<strong>{{ include.label }}</strong>"}.items():
        (blog / name).parent.mkdir(parents=True, exist_ok=True)
        (blog / name).write_text(text, encoding="utf-8")
    return blog


def test_init_from_jekyll_writes_a_config_that_builds_the_jekyll_feed_urls(tmp_path: Path) -> None:
    jekyll_site(tmp_path)
    result = feedpub("init", "feeds", "--from-jekyll", "blog", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = tomllib.loads((tmp_path / "feeds" / "feedpub.toml").read_text(encoding="utf-8"))
    assert written["site"] == {"jekyll_dir": "../blog", "title": "技術ブログ", "url": "https://blog.example.com",
                               "description": "Notes", "timezone": "Asia/Tokyo", "language": "ja",
                               "posts_dir": "../blog"}
    assert written["feeds"] == {"categories": True, "category_atom_path": "feed/{name}.xml",
                                "atom_path": "feed.xml", "limit": 10}
    assert (tmp_path / "feeds" / "email_templates").is_dir() and not (tmp_path / "feeds" / "posts").exists()

    result = feedpub("build", cwd=tmp_path / "feeds")
    assert result.returncode == 0, result.stderr
    atom = (tmp_path / "feeds" / "public" / "feed" / "news.xml").read_text(encoding="utf-8")
    assert "Read by 1200 people, &lt;strong&gt;人気&lt;/strong&gt;." in atom
    assert (tmp_path / "feeds" / "public" / "feed.xml").is_file()

    again = feedpub("init", "feeds", "--from-jekyll", "blog", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_init_from_a_folder_without_config_yml_exits_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = feedpub("init", "out", "--from-jekyll", "empty", cwd=tmp_path)
    assert result.returncode == 2
    assert "empty: no _config.yml (expected the folder of a Jekyll site)" in result.stderr


def test_check_v_lists_every_config_key_read_or_ignored(tmp_path: Path) -> None:
    jekyll_site(tmp_path)
    (tmp_path / "feedpub.toml").write_text('[site]\njekyll_dir = "blog"\ndescription = "TOML wins"\n',
                                           encoding="utf-8")
    result = feedpub("check", "-v", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1 post, 0 problems, 0 warnings\n"
    lines = result.stderr.splitlines()
    assert lines == [
        "_config.yml: title: read → site.title",
        "_config.yml: url: read → site.url",
        "_config.yml: description: read → site.description (feedpub.toml sets site.description; it wins)",
        "_config.yml: timezone: read → site.timezone",
        "_config.yml: lang: read → site.language",
        "_config.yml: feed.categories: read → feeds.categories, feeds.category_atom_path (every category gets a feed)",
        "_config.yml: twitter_username: ignored (the site's own key; Liquid reads it as site.twitter_username)",
        "_config.yml: feed.collections: ignored (feedpub makes feeds of posts only, not of docs)",
    ]
    quiet = feedpub("check", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == ""
