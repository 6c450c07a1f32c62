"""`feedpub build` from the real command line: files on disk, mtimes, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import feedparser

OLD = 1_000_000_000  # an mtime long ago: a rewritten file would get a new one

JAPANESE = """\
---
title: "推論性能35%向上は何を変えるのか"
date: 2025-12-16 04:49:25 +0000
categories: ["AI導入戦略", 古い分類]
---
新しいモデルで**推論性能35%**向上。
"""
ENGLISH = """\
---
title: "Weekly roundup"
date: 2025-12-10 18:30:00 +09:00
categories: [news]
---
Three releases stood out.
"""


def feedpub(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "feedpub", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def files_of(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_build_writes_the_layout_and_a_second_build_changes_nothing(site) -> None:
    site.post("2025-12-16-gains.md", JAPANESE)
    site.post("2025-12-10-roundup.md", ENGLISH)
    result = feedpub("build", cwd=site.root)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("2 posts, 4 feeds: 15 files written, 0 unchanged, 0 removed in ")
    public = site.root / "public"
    for folder in ("", "categories/ai導入戦略/", "categories/古い分類/", "categories/news/"):
        for name in ("feed.xml", "rss.xml", "feed.json"):
            assert (public / (folder + name)).is_file()
    for name in ("feeds.opml", "feeds/index.html", "feed.xsl"):
        assert (public / name).is_file()
    parsed = feedparser.parse((public / "categories/ai導入戦略/rss.xml").read_bytes())
    assert not parsed.bozo and [e.title for e in parsed.entries] == ["推論性能35%向上は何を変えるのか"]
    assert oct((public / "feed.xml").stat().st_mode & 0o044) == oct(0o044)  # readable by a web server

    for path in public.rglob("*"):
        os.utime(path, (OLD, OLD))
    before = files_of(public)
    again = feedpub("build", cwd=site.root)
    assert again.returncode == 0
    assert "0 files written, 15 unchanged, 0 removed" in again.stdout
    assert files_of(public) == before


def test_feeds_of_a_vanished_category_are_removed_and_other_files_kept(site) -> None:
    site.post("2025-12-16-gains.md", JAPANESE)
    public = site.root / "public"
    (public / "categories").mkdir(parents=True)
    (public / "index.html").write_text("my site", encoding="utf-8")
    (public / "categories" / "notes.txt").write_text("mine", encoding="utf-8")
    assert feedpub("build", cwd=site.root).returncode == 0
    assert (public / "categories/古い分類/feed.xml").is_file()

    site.post("2025-12-16-gains.md", JAPANESE.replace(", 古い分類", ""))
    result = feedpub("build", cwd=site.root)
    assert result.returncode == 0
    assert "3 removed" in result.stdout
    assert not (public / "categories/古い分類").exists()
    assert (public / "categories/ai導入戦略/feed.xml").is_file()
    assert (public / "index.html").read_text(encoding="utf-8") == "my site"
    assert (public / "categories" / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert not [p for p in public.rglob(".feedpub-tmp-*")]


def test_a_broken_post_is_reported_and_the_rest_is_published_with_exit_1(site) -> None:
    site.post("2025-12-16-gains.md", JAPANESE)
    site.post("2025-12-01-broken.md", "---\ntitle: [unclosed\n---\nbody\n")
    result = feedpub("build", cwd=site.root)
    assert result.returncode == 1
    assert result.stderr.startswith("posts/2025-12-01-broken.md:")
    assert "invalid YAML front matter" in result.stderr
    assert "1 post, 3 feeds" in result.stdout and "1 problem," in result.stdout
    parsed = feedparser.parse((site.root / "public/feed.xml").read_bytes())
    assert [e.title for e in parsed.entries] == ["推論性能35%向上は何を変えるのか"]


def test_output_option_and_future_posts(site, tmp_path: Path) -> None:
    site.post("2999-01-01-later.md", "---\ntitle: Later\n---\nSoon.\n")
    target = tmp_path / "elsewhere"
    assert feedpub("build", "--output", str(target), cwd=site.root).returncode == 0
    assert feedparser.parse((target / "feed.xml").read_bytes()).entries == []
    assert not (site.root / "public").exists()
    assert feedpub("build", "--future", "--output", str(target), cwd=site.root).returncode == 0
    assert [e.title for e in feedparser.parse((target / "feed.xml").read_bytes()).entries] == ["Later"]


def test_bad_config_exits_2_and_writes_nothing(site) -> None:
    site.post("2025-12-16-gains.md", JAPANESE)
    site.configure("[feeds]\nlimit = 0\n")
    result = feedpub("build", cwd=site.root)
    assert result.returncode == 2
    assert "feeds.limit" in result.stderr
    assert not (site.root / "public").exists()


def test_output_folder_problems_exit_2_before_writing(site) -> None:
    site.post("2025-12-16-gains.md", JAPANESE)
    (site.root / "public").write_text("not a folder", encoding="utf-8")
    result = feedpub("build", cwd=site.root)
    assert result.returncode == 2
    assert "is not a folder" in result.stderr

    result = feedpub("build", "--output", ".", cwd=site.root)
    assert result.returncode == 2
    assert "contains the posts" in result.stderr


def test_a_missing_posts_folder_exits_2_and_keeps_the_published_feeds(site) -> None:
    site.post("2025-12-16-gains.md", JAPANESE)
    assert feedpub("build", cwd=site.root).returncode == 0
    before = files_of(site.root / "public")
    site.configure('[feeds]\n', posts_dir="moved")
    result = feedpub("build", cwd=site.root)
    assert result.returncode == 2
    assert "posts folder does not exist" in result.stderr
    assert files_of(site.root / "public") == before


def test_the_topics_a_reader_may_follow_are_the_feeds_the_build_makes(site) -> None:
    from feedpub.site.build import Topic, build_site, site_topics

    site.configure("[feeds]\ntags = true\n")
    site.post("2025-12-16-gains.md", JAPANESE.replace("categories:", "tags: [Python]\ncategories:"))
    site.post("2025-12-10-roundup.md", ENGLISH)
    report = build_site(site.config)
    assert report.topics == (Topic("categories/ai導入戦略", "AI導入戦略"), Topic("categories/news", "news"),
                             Topic("categories/古い分類", "古い分類"), Topic("tags/python", "Python"))
    assert [topic.group for topic in report.topics] == ["categories"] * 3 + ["tags"]   # authors: no feeds
    assert site_topics(site.config) == report.topics                 # the same, without building
