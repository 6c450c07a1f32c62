"""`{% link %}` to a document of a collection (`collections:` in `_config.yml`) resolves to the URL Jekyll 4.3 gives
it: small English and Japanese sites built by Debian's `jekyll` with jekyll-feed and by feedpub give the same hrefs.
Where Jekyll's build stops (a collection it does not write, a document that is not there), feedpub names the post and
the line and leaves only that post out. Skipped without Jekyll, except under CI=true."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from feedpub.config_file import load_config
from feedpub.site.build import build_site
from tests.site.test_jekyll_links import SITE_URL, entries, jekyll_build, make_site, needs_jekyll

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LINKS = """\
---
title: Links
---
[history]({% link _docs/history.md %}), [履歴]({% link _docs/ja/履歴.md %}),
[own]({% link _docs/own.md %}), [by default]({% link _docs/guides/setup.md %}),
[picture]({% link _docs/ja/図.png %}), [note]({% link _notes/2024-03-05-First_Note.md %}),
[dated in front matter]({% link _notes/メモ.markdown %}), [text]({% link _notes/plain.txt %}),
[future]({% link _notes/future.md %}).
"""
SITE = {
    "_config.yml": f"""\
url: {SITE_URL}
author: 編集部
permalink: /:year/:title/
future: true
plugins: [jekyll-feed]
collections:
  docs:
    output: true
  notes:
    output: true
    permalink: /n/:year/:month/:title:output_ext
defaults:
  - scope: {{path: _docs/guides, type: docs}}
    values: {{permalink: /guide/:name/}}
""",
    "_docs/history.md": "---\ntitle: History\n---\nHistory.\n",
    "_docs/ja/履歴.md": "---\ntitle: 履歴\n---\n日本語の履歴。\n",
    "_docs/own.md": "---\ntitle: Own\npermalink: /own/:collection/:name.html\n---\nOwn.\n",
    "_docs/guides/setup.md": "---\ntitle: Setup\n---\nSetup.\n",
    "_docs/ja/図.png": "not really a picture\n",
    "_notes/2024-03-05-First_Note.md": "---\ntitle: First note\n---\nNote.\n",
    "_notes/メモ.markdown": "---\ndate: 2023-11-02\n---\nメモ。\n",
    "_notes/plain.txt": "---\ndate: 2022-07-01 10:00:00\n---\nText.\n",
    "_notes/future.md": "---\ndate: 2099-12-31\n---\nWritten with future: true.\n",
    "_posts/2025-01-01-links.md": LINKS,
    "_posts/2025-01-02-日本語.md": "---\ntitle: 日本語\n---\n[履歴]({% link _docs/ja/履歴.md %})を見てください。\n",
}


def built_alike(root: Path, files: dict[str, str]) -> dict[str, tuple[str, str, frozenset[str], list[str]]]:
    """Both builds of the site: Jekyll's entries, after checking feedpub's are the same and it had no problem."""
    site = make_site(root, files)
    run = jekyll_build(site)
    assert run.returncode == 0, run.stdout + run.stderr
    report = build_site(load_config(root / "feedpub.toml"), now=NOW)
    assert [str(p) for p in report.problems] == []
    jekyll = entries((root / "_site" / "feed.xml").read_bytes())
    assert entries((root / "public" / "feed.xml").read_bytes()) == jekyll
    return jekyll


def test_documents_of_collections_jekyll_writes_get_jekylls_urls(tmp_path: Path) -> None:
    needs_jekyll()
    jekyll = built_alike(tmp_path, SITE)
    assert jekyll[f"{SITE_URL}/2025/links/"][3] == [
        f"{SITE_URL}/docs/history/",   # /:collection/:path with the suffix of the site's style (`/`)
        f"{SITE_URL}/docs/ja/%E5%B1%A5%E6%AD%B4/",
        f"{SITE_URL}/own/docs/own.html",   # the document's own permalink
        f"{SITE_URL}/guide/setup/",        # a front matter default scoped to the collection's type and folder
        f"{SITE_URL}/docs/ja/%E5%9B%B3.png",   # a static file of the collection
        f"{SITE_URL}/n/2024/03/First_Note.html",   # the collection's permalink, the date from the file name
        f"{SITE_URL}/n/2023/11/%E3%83%A1%E3%83%A2.html",
        f"{SITE_URL}/n/2022/07/plain.txt", f"{SITE_URL}/n/2099/12/future.html"]
    assert jekyll[f"{SITE_URL}/2025/%E6%97%A5%E6%9C%AC%E8%AA%9E/"][3] == [f"{SITE_URL}/docs/ja/%E5%B1%A5%E6%AD%B4/"]


def test_documents_below_a_collections_dir_are_named_by_their_path_below_it(tmp_path: Path) -> None:
    needs_jekyll()
    jekyll = built_alike(tmp_path, {
        "_config.yml": f"url: {SITE_URL}\nauthor: 編集部\ncollections_dir: my\nplugins: [jekyll-feed]\n"
                       "collections:\n  docs:\n    output: true\n",
        "my/_docs/history.md": "---\ntitle: History\n---\nHistory.\n",
        "my/_docs/使い方.md": "---\ntitle: 使い方\n---\n使い方。\n",
        "my/_posts/2025-02-01-see.md": "---\ntitle: See\n---\n[history]({% link _docs/history.md %}), "
                                       "[使い方]({% link _docs/使い方.md %}).\n",
    })
    assert jekyll[f"{SITE_URL}/2025/02/01/see.html"][3] == [
        f"{SITE_URL}/docs/history.html", f"{SITE_URL}/docs/%E4%BD%BF%E3%81%84%E6%96%B9.html"]


GOOD = "---\ntitle: Still published\n---\nFine.\n"


@pytest.mark.parametrize(("config", "target"), [
    ("collections: [docs]", "_docs/history.md"),   # a list names collections Jekyll does not write
    ("collections:\n  docs:\n    output: false", "_docs/history.md"),
    ("collections:\n  docs:\n    output: true", "_docs/missing.md"),
    ("collections:\n  docs:\n    output: true", "_docs/unpublished.md"),
    ("collections:\n  docs:\n    output: true", "_docs/2099-01-01-later.md"),   # dated in the future
    ("collections_dir: my\ncollections:\n  docs:\n    output: true", "my/_docs/history.md"),
    ("collections:\n  docs:\n    output: true", "docs/history.md"),
])
def test_a_document_jekyll_does_not_write_names_the_post_and_line_and_leaves_only_that_post_out(
        tmp_path: Path, config: str, target: str) -> None:
    needs_jekyll()
    folder = "my/" if "collections_dir" in config else ""
    site = make_site(tmp_path, {
        "_config.yml": f"url: {SITE_URL}\nplugins: [jekyll-feed]\n{config}\n",
        f"{folder}_docs/history.md": "---\ntitle: History\n---\nHistory.\n",
        f"{folder}_docs/unpublished.md": "---\ntitle: 非公開\npublished: false\n---\n非公開。\n",
        f"{folder}_docs/2099-01-01-later.md": "---\ntitle: Later\n---\nLater.\n",
        f"{folder}_posts/2025-03-01-broken.md": ("---\ntitle: 壊れたリンク\n---\n一行目。\n\n"
                                                f"[履歴]({{% link {target} %}})\n"),
        f"{folder}_posts/2025-03-02-good.md": GOOD,
    })
    message = (f"Could not find document '{target}' in tag 'link'. Make sure the document exists and the path is "
               "correct.")
    run = jekyll_build(site)
    assert run.returncode != 0
    assert message.split(". ")[0] in run.stdout + run.stderr

    report = build_site(load_config(tmp_path / "feedpub.toml"), now=NOW)
    errors = [str(p) for p in report.problems if not p.warning]
    assert errors == [f"site/{folder}_posts/2025-03-01-broken.md:6: {message}; the post is left out, as Jekyll's "
                      "build stops at it (expected the path of a post, page or file below the site, e.g. "
                      "en/_posts/2025-01-01-slug.md)"]
    assert sorted(entries((tmp_path / "public" / "feed.xml").read_bytes())) == [f"{SITE_URL}/2025/03/02/good.html"]


def test_check_says_collections_are_read_and_a_changed_permalink_changes_the_href(tmp_path: Path) -> None:
    """`check -v` accounts for `collections:`; editing a collection's permalink in `_config.yml` gives the new
    href at the next build (the cache is keyed by the collections)."""
    site = make_site(tmp_path, {
        "_config.yml": f"url: {SITE_URL}\ncollections:\n  docs:\n    output: true\n    permalink: /old/:path/\n",
        "_docs/手引き.md": "---\ntitle: 手引き\n---\n手引き。\n",
        "_posts/2025-04-01-see.md": "---\ntitle: 参照\n---\n[手引き]({% link _docs/手引き.md %})\n",
    })
    check = subprocess.run([sys.executable, "-m", "feedpub", "check", "-v"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert ("_config.yml: collections: read → the documents of those with `output: true`, which {% link %} names "
            "(feeds are of posts only)") in check.stderr.splitlines()
    build_site(load_config(tmp_path / "feedpub.toml"), now=NOW)
    feed = tmp_path / "public" / "feed.xml"
    assert entries(feed.read_bytes())[f"{SITE_URL}/2025/04/01/see.html"][3] == [
        f"{SITE_URL}/old/%E6%89%8B%E5%BC%95%E3%81%8D/"]
    config_yml = site / "_config.yml"
    config_yml.write_text(config_yml.read_text(encoding="utf-8").replace("/old/", "/new/"), encoding="utf-8")
    build_site(load_config(tmp_path / "feedpub.toml"), now=NOW)
    assert entries(feed.read_bytes())[f"{SITE_URL}/2025/04/01/see.html"][3] == [
        f"{SITE_URL}/new/%E6%89%8B%E5%BC%95%E3%81%8D/"]
