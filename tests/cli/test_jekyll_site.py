"""Pointing feedpub at an existing Jekyll site from the command line: `feedpub init --from-jekyll DIR`, then
`feedpub check -v` (every `_config.yml` key read or ignored) and `feedpub build` (the feed URLs jekyll-feed
gave)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml

from feedpub.jekyll import settings
from tests.cli.test_watch import eventually

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


def atom(folder: Path, path: str = "feed.xml") -> str:
    return (folder / "public" / path).read_text(encoding="utf-8")


def test_init_from_jekyll_writes_a_config_that_builds_the_jekyll_feed_urls(tmp_path: Path) -> None:
    jekyll_site(tmp_path)
    result = feedpub("init", "feeds", "--from-jekyll", "blog", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = tomllib.loads((tmp_path / "feeds" / "feedpub.toml").read_text(encoding="utf-8"))
    assert written == {"site": {"jekyll_dir": "../blog"}, "feeds": {"slugs": {}}, "digest": {},
                       "smtp": {"dkim": {}}, "store": {}, "web": {}, "bounces": {}, "activitypub": {}}
    assert (tmp_path / "feeds" / "email_templates").is_dir() and not (tmp_path / "feeds" / "posts").exists()

    result = feedpub("build", cwd=tmp_path / "feeds")
    assert result.returncode == 0, result.stderr
    news = atom(tmp_path / "feeds", "feed/news.xml")
    assert "Read by 1200 people, &lt;strong&gt;人気&lt;/strong&gt;." in news and "<title>技術ブログ" in news
    assert (tmp_path / "feeds" / "public" / "feed.xml").is_file()

    again = feedpub("init", "feeds", "--from-jekyll", "blog", cwd=tmp_path)
    assert again.returncode == 2 and "すでにあります。init は上書きしません" in again.stderr


EDITS = {
    "ja": ("title: 技術ブログ\nurl: https://blog.example.com\ntimezone: Asia/Tokyo\nlang: ja\n"
           "permalink: /:year/:month/:title/\n",
           "title: 開発日誌\nurl: https://nikki.example.jp\ntimezone: Asia/Tokyo\nlang: ja\n"
           "permalink: /articles/:title.html\nfeed:\n  path: /atom.xml\n"),
    "en": ("title: Engineering notes\nurl: https://blog.example.com\nbaseurl: /notes\ntimezone: Europe/London\n"
           "permalink: pretty\n",
           "title: Field notes\nurl: https://field.example.org\nbaseurl: /notes\ntimezone: Europe/London\n"
           "permalink: /:categories/:title/\nfeed:\n  path: feeds/all.xml\n"),
}
LINKS = {"ja": ("https://blog.example.com/2025/12/liquid/", "https://nikki.example.jp/articles/liquid.html"),
         "en": ("https://blog.example.com/notes/news/2025/12/01/liquid/", "https://field.example.org/notes/news/liquid/")}


@pytest.mark.parametrize("language", ["ja", "en"])
def test_config_yml_stays_the_source_its_edits_reach_the_next_build(tmp_path: Path, language: str) -> None:
    blog = jekyll_site(tmp_path)
    before, after = EDITS[language]
    (blog / "_config.yml").write_text(before, encoding="utf-8")
    assert feedpub("init", "feeds", "--from-jekyll", "blog", cwd=tmp_path).returncode == 0
    feeds = tmp_path / "feeds"
    assert feedpub("build", cwd=feeds).returncode == 0
    title = yaml.safe_load(before)["title"]
    first = atom(feeds)
    assert f"<title>{title}</title>" in first and f'<link href="{LINKS[language][0]}"/>' in first

    (blog / "_config.yml").write_text(after, encoding="utf-8")
    built = feedpub("build", cwd=feeds)
    assert built.returncode == 0, built.stderr
    path = yaml.safe_load(after)["feed"]["path"].lstrip("/")
    second = atom(feeds, path)
    base = yaml.safe_load(after)["url"] + "/notes" * (language == "en")
    assert f"<title>{yaml.safe_load(after)['title']}</title>" in second
    assert f'<link href="{base}/{path}" rel="self" type="application/atom+xml"/>' in second
    assert f'<link href="{LINKS[language][1]}"/>' in second
    assert not (feeds / "public" / "feed.xml").exists()       # the old feed path went with the edit

    check = feedpub("check", "-v", cwd=feeds)
    read = {"ja": "読み込み", "en": "read"}[language]
    assert check.returncode == 0 and "it wins" not in check.stderr and "優先" not in check.stderr
    assert f"_config.yml: feed.path: {read} → feeds.atom_path" in check.stderr.splitlines()


def test_init_leaves_every_key_config_yml_can_set_to_it(tmp_path: Path) -> None:
    blog = jekyll_site(tmp_path)
    (blog / "_config.yml").write_text(EVERY_KEY, encoding="utf-8")
    assert feedpub("init", "feeds", "--from-jekyll", "blog", cwd=tmp_path).returncode == 0
    text = (tmp_path / "feeds" / "feedpub.toml").read_text(encoding="utf-8")
    mentioned, section = set(), ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line.split("]")[0].strip("[")
        elif match := re.match(r"(?:# )?(\w+) = ", line):
            mentioned.add(f"{section}.{match[1]}")
    filled = {f"{section}.{key}" for section, table in settings(yaml.safe_load(EVERY_KEY)).values.items()
              for key in table}
    assert not filled & mentioned            # not even as a commented default that differs from Jekyll's
    assert {"site.icon", "digest.schedule", "smtp.host", "web.listen", "feeds.output_dir"} <= mentioned
    check = feedpub("check", "-v", cwd=tmp_path / "feeds")
    assert check.returncode == 0, check.stderr
    lines = check.stderr.splitlines()
    assert len(lines) == 13 + 5 and all(": 読み込み → " in line and "優先" not in line for line in lines), lines


EVERY_KEY = """\
title: Every key
url: https://blog.example.com
baseurl: /b
description: d
author: {name: 編集部}
timezone: Asia/Tokyo
permalink: pretty
lang: ja
excerpt_separator: <!--more-->
future: false
show_drafts: false
exclude: [README.md]
collections_dir: .
feed:
  path: atom.xml
  posts_limit: 5
  excerpt_only: true
  categories: [news]
  tags: {path: /t/}
"""


def test_a_key_feedpub_toml_sets_wins_and_check_v_names_the_file_of_each_value(tmp_path: Path) -> None:
    blog = jekyll_site(tmp_path)
    (blog / "_config.yml").write_text("title: Notes\nurl: https://blog.example.com\nfeed:\n  path: atom.xml\n",
                                      encoding="utf-8")
    (blog / "_config.production.yml").write_text("title: 本番のブログ\n", encoding="utf-8")
    assert feedpub("init", "feeds", "--from-jekyll", "blog", cwd=tmp_path).returncode == 0
    toml = tmp_path / "feeds" / "feedpub.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace("[feeds]\n", '[feeds]\natom_path = "feed.xml"\n'),
                    encoding="utf-8")
    check = feedpub("check", "-v", cwd=tmp_path / "feeds")
    assert check.returncode == 0, check.stderr
    assert check.stderr.splitlines() == [
        "_config.production.yml: title: read → site.title",
        "_config.yml: url: read → site.url",
        "_config.yml: feed.path: read → feeds.atom_path (feedpub.toml sets feeds.atom_path; it wins)",
    ]
    assert feedpub("build", cwd=tmp_path / "feeds").returncode == 0
    assert "<title>本番のブログ</title>" in atom(tmp_path / "feeds")
    assert not (tmp_path / "feeds" / "public" / "atom.xml").exists()


def test_build_watch_applies_an_edit_of_config_yml(tmp_path: Path) -> None:
    blog = jekyll_site(tmp_path)
    assert feedpub("init", "feeds", "--from-jekyll", "blog", cwd=tmp_path).returncode == 0
    feeds = tmp_path / "feeds"
    log = feeds / "watch.log"
    watcher = subprocess.Popen([sys.executable, "-m", "feedpub", "build", "--watch"], cwd=feeds,
                               stdout=log.open("ab"), stderr=subprocess.STDOUT)
    try:
        eventually(lambda: "を監視しています" in log.read_text(), "the first build", log)   # lang: ja
        assert "<title>技術ブログ</title>" in atom(feeds)
        time.sleep(0.5)
        edited = CONFIG.replace("技術ブログ", "週刊・技術ブログ") + "feed:\n  path: atom.xml\n  categories: [news]\n"
        edited = edited.replace("feed:\n  categories: [news]\n  collections: [docs]\n", "")
        (blog / "_config.yml.tmp").write_text(edited, encoding="utf-8")
        (blog / "_config.yml.tmp").replace(blog / "_config.yml")      # as an editor saves
        eventually(lambda: (feeds / "public" / "atom.xml").is_file() and
                   "<title>週刊・技術ブログ</title>" in atom(feeds, "atom.xml"), "the edited _config.yml applied", log)
        assert f"を読み込み直しました（{blog.resolve() / '_config.yml'} が変わりました）" in log.read_text()
        assert not (feeds / "public" / "feed.xml").exists()
        assert "<title>週刊・技術ブログ" in atom(feeds, "feed/news.xml")

        (blog / "_config.yml").write_text("title: [unclosed\n", encoding="utf-8")
        eventually(lambda: f"{blog.resolve() / '_config.yml'}:1: invalid YAML" in log.read_text(),
                   "the broken _config.yml reported", log)
        assert "<title>週刊・技術ブログ</title>" in atom(feeds, "atom.xml")
        (blog / "_config.yml").unlink()
        eventually(lambda: "holds no _config.yml" in log.read_text(), "the missing _config.yml reported", log)
        assert "<title>週刊・技術ブログ</title>" in atom(feeds, "atom.xml")

        (blog / "_config.yml").write_text(CONFIG.replace("技術ブログ", "Tech blog, again"), encoding="utf-8")
        eventually(lambda: (feeds / "public" / "feed.xml").is_file() and
                   "<title>Tech blog, again</title>" in atom(feeds), "the restored _config.yml applied", log)
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=30) == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()


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
    assert result.stdout == "記事 1 件、問題 0 件、警告 0 件\n"       # _config.yml says lang: ja
    lines = result.stderr.splitlines()
    assert lines == [
        "_config.yml: title: 読み込み → site.title",
        "_config.yml: url: 読み込み → site.url",
        "_config.yml: description: 読み込み → site.description（feedpub.toml の site.description が優先されます）",
        "_config.yml: timezone: 読み込み → site.timezone",
        "_config.yml: lang: 読み込み → site.language",
        "_config.yml: feed.categories: 読み込み → feeds.categories, feeds.category_atom_path"
        "（カテゴリごとにフィードを作ります）",
        "_config.yml: twitter_username: 無視（サイト独自のキーです。Liquid では site.twitter_username として読めます）",
        "_config.yml: feed.collections: 無視（feedpub は記事のフィードだけを作ります。docs のフィードは作りません）",
    ]
    quiet = feedpub("check", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == ""
