"""The build cache: same bytes with and without it, only changed feeds regenerated, a damaged or
foreign cache discarded with a log line, never trusted."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from feedpub.site.build import CACHE_FOLDER, build_site

POSTS = {
    "2025-12-16-llm.md": "---\ntitle: 推論性能\ndate: 2025-12-16 04:49:25 +0000\ncategories: [AI導入戦略]\n---\n"
                         "**推論性能35%**向上。\n\n関連: {% post_url 2025-12-10-roundup %}\n",
    "2025-12-10-roundup.md": "---\ntitle: Weekly roundup\ndate: 2025-12-10 18:30:00 +09:00\ncategories: news\n---\n"
                             "Three releases stood out.\n",
    "2025-12-05-deploy.md": "---\ntitle: Deploying\ncategory: engineering\n---\nYou do not need a framework.\n",
}


def make(site) -> None:
    for name, text in POSTS.items():
        site.post(name, text)


def tree(output: Path) -> dict[str, bytes]:
    return {str(p.relative_to(output)): p.read_bytes() for p in sorted(output.rglob("*")) if p.is_file()}


def mtimes(output: Path) -> dict[str, int]:
    return {str(p.relative_to(output)): p.stat().st_mtime_ns for p in output.rglob("*") if p.is_file()}


def test_bytes_equal_with_and_without_cache_across_edits(site, tmp_path) -> None:
    make(site)
    config = site.config
    cached, uncached = tmp_path / "cached", tmp_path / "uncached"
    for step in range(3):
        build_site(config, output=cached)
        build_site(config, output=uncached, use_cache=False)
        assert tree(cached) == tree(uncached), f"differs after step {step}"
        if step == 0:   # edit one post
            site.post("2025-12-05-deploy.md", POSTS["2025-12-05-deploy.md"] + "\nA new paragraph.\n")
        if step == 1:   # add one, and change the URL a post_url points at
            site.post("2025-12-20-new.md", "---\ntitle: 新しい記事\ncategories: [news]\n---\n本文。\n")
            site.post("2025-12-10-roundup.md", POSTS["2025-12-10-roundup.md"].replace("news", "news analysis"))


def test_noop_rebuild_writes_nothing(site) -> None:
    make(site)
    first = build_site(site.config)
    before = mtimes(site.config.output_dir)
    again = build_site(site.config)
    assert again.written.written == () and len(again.written.unchanged) == len(first.written.written)
    assert mtimes(site.config.output_dir) == before
    assert again.summary() == first.summary().replace(f"{len(first.written.written)} files written, 0 unchanged",
                                                      f"0 files written, {len(first.written.written)} unchanged")


def test_an_edit_regenerates_only_the_feeds_that_show_the_post(site) -> None:
    make(site)
    build_site(site.config)
    site.post("2025-12-05-deploy.md", POSTS["2025-12-05-deploy.md"] + "\nEdited.\n")
    report = build_site(site.config)
    assert set(report.written.written) == {"feed.xml", "rss.xml", "feed.json", "categories/engineering/feed.xml",
                                           "categories/engineering/rss.xml", "categories/engineering/feed.json"}
    assert "Edited." in (site.config.output_dir / "categories/engineering/feed.json").read_text(encoding="utf-8")


def test_a_deleted_output_file_is_rebuilt(site) -> None:
    make(site)
    build_site(site.config)
    (site.config.output_dir / "categories" / "news" / "rss.xml").unlink()
    report = build_site(site.config)
    assert report.written.written == ("categories/news/rss.xml",)


def test_a_future_post_appears_when_its_time_comes_without_any_file_change(site) -> None:
    make(site)
    site.post("2026-06-01-later.md", "---\ntitle: Later\ndate: 2026-06-01 00:00:00 +0000\n---\nSoon.\n")
    early = build_site(site.config, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert early.posts == 3 and early.next_future == datetime(2026, 6, 1, tzinfo=UTC)
    due = build_site(site.config, now=datetime(2026, 6, 2, tzinfo=UTC))
    assert due.posts == 4
    assert "Later" in (site.config.output_dir / "feed.json").read_text(encoding="utf-8")


def test_damaged_or_foreign_cache_is_discarded_with_a_log_line(site, caplog) -> None:
    make(site)
    reference = build_site(site.config, use_cache=False)
    folder = site.config.path(CACHE_FOLDER)
    build_site(site.config)
    (folder / "posts.pickle").write_bytes(b"feedpub-cache 1\n" + b"not the key\n" + b"junk")
    (folder / "renders.pickle").write_bytes(b"\x00garbage")
    build = (folder / "build.pickle").read_bytes()
    (folder / "build.pickle").write_bytes(build[: len(build) // 2])   # truncated by a crash
    (site.config.output_dir / "feed.xml").unlink()
    with caplog.at_level(logging.INFO, logger="feedpub.site.cache"):
        report = build_site(site.config)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "posts.pickle is from another version or config" in messages
    assert "renders.pickle is from another version or config" in messages
    assert "build.pickle is damaged" in messages
    assert report.posts == reference.posts
    assert tree(site.config.output_dir)["feed.xml"].startswith(b"<?xml")


def test_no_cache_option_from_the_cli(site) -> None:
    import subprocess
    import sys

    make(site)
    result = subprocess.run([sys.executable, "-m", "feedpub", "build", "--no-cache"], cwd=site.root,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("3 posts, ")
