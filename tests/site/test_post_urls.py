"""Post links as Jekyll publishes them (`:title` keeps `_`, case, dots and Japanese; `:slug` is lower-case
letters and digits; a front matter `slug:` wins; a file name's trailing dots go), checked against Debian's
Jekyll for every permalink style; and the entry ids of posts feedpub published before stay what they were."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from lxml import etree

from feedpub.site.build import build_site
from feedpub.urls import STYLES

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import jekyll_compare  # noqa: E402 - bench/jekyll_compare.py builds a folder of posts with Jekyll and with feedpub

ATOM = "{http://www.w3.org/2005/Atom}"
# File name → front matter besides the title.
POSTS = {
    "2024-03-01-my_first_post.md": "categories: [AI_news]\n",
    "2024-03-02-My Post With Spaces.md": "",
    "2024-03-03-version.1.2.md": "",
    "2024-03-04-trailing-dot..md": "",
    "2024-03-05-日本語_の記事.md": "categories: [技術]\n",
    "2024-03-06-UPPER_Case.md": "",
    "2024-03-07-front-matter-slug.md": "slug: Custom_Slug Here\n",
    "2024-03-08-丸数字①と〇.md": "",
    "2024-03-09-it's (fun)!.md": "",
    "2024-03-10-__double__under__.md": "",
    "2024-03-11-C++ + C#.md": "",
    "2024-03-12-plain-name.md": "",
}


def write_posts(folder: Path) -> None:
    folder.mkdir(parents=True)
    for number, (name, front) in enumerate(POSTS.items(), 1):
        (folder / name).write_text(f"---\ntitle: Post {number}\n{front}---\n本文 {number}. Text {number}.\n",
                                   encoding="utf-8")


@pytest.fixture(scope="module")
def jekyll_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("jekyll") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("jekyll is missing: .ci/run installs jekyll and ruby-jekyll-feed")
        pytest.skip("jekyll is not installed (apt-get install jekyll ruby-jekyll-feed)")
    site = tmp_path_factory.mktemp("names")
    write_posts(site / "_posts")
    return site


@pytest.mark.parametrize("permalink", [*STYLES, "/:categories/:year/:slug/:title:output_ext", "/blog/:title/"])
def test_every_link_is_the_one_jekyll_publishes(jekyll_site: Path, permalink: str) -> None:
    report = jekyll_compare.compare_site(jekyll_site, url="https://example.com", permalink=permalink)
    assert (report.only_jekyll, report.only_feedpub) == ([], [])
    assert len(report.comparisons) == len(POSTS)


# The ids feedpub gave these posts before its links followed Jekyll (its build at commit 2773b53, the
# `site` fixture's config): published, they must never change.
EARLIER_IDS = {
    "Post 1": "https://blog.example.com/ai_news/2024/03/01/my-first-post.html",
    "Post 2": "https://blog.example.com/2024/03/02/My-Post-With-Spaces.html",
    "Post 3": "https://blog.example.com/2024/03/03/version.1.2.html",
    "Post 4": "https://blog.example.com/2024/03/04/trailing-dot..html",
    "Post 5": "https://blog.example.com/%E6%8A%80%E8%A1%93/"
              "2024/03/05/%E6%97%A5%E6%9C%AC%E8%AA%9E-%E3%81%AE%E8%A8%98%E4%BA%8B.html",
    "Post 6": "https://blog.example.com/2024/03/06/UPPER-Case.html",
    "Post 7": "https://blog.example.com/2024/03/07/Custom-Slug-Here.html",
    "Post 8": "https://blog.example.com/2024/03/08/%E4%B8%B8%E6%95%B0%E5%AD%97%E2%91%A0%E3%81%A8%E3%80%87.html",
    "Post 9": "https://blog.example.com/2024/03/09/it's-(fun)!.html",
    "Post 10": "https://blog.example.com/2024/03/10/double-under.html",
    "Post 11": "https://blog.example.com/2024/03/11/C++-+-C.html",
    "Post 12": "https://blog.example.com/2024/03/12/plain-name.html",
}


def test_entries_published_before_keep_their_ids(site) -> None:
    write_posts(site.posts / "_posts")
    site.configure(extra='[feeds]\ncategories = false\nlimit = 100\n')
    build_site(site.config)
    atom = etree.parse(str(site.config.output_dir / "feed.xml")).getroot()
    entries = {e.findtext(f"{ATOM}title"): (e.findtext(f"{ATOM}id"), e.find(f"{ATOM}link").get("href"))
               for e in atom.iter(f"{ATOM}entry")}
    assert {title: entries[title][0] for title in EARLIER_IDS} == EARLIER_IDS
    assert entries["Post 1"][1] == "https://blog.example.com/ai_news/2024/03/01/my_first_post.html"
    assert entries["Post 12"][0] == entries["Post 12"][1]   # where the two rules agree, the id is the link
    assert entries["Post 4"][1] == "https://blog.example.com/2024/03/04/trailing-dot.html"
    feed = json.loads((site.config.output_dir / "feed.json").read_text(encoding="utf-8"))
    assert {item["title"]: item["id"] for item in feed["items"] if item["title"] in EARLIER_IDS} == EARLIER_IDS
    rss = etree.parse(str(site.config.output_dir / "rss.xml")).getroot()
    guids = {item.findtext("title"): item.find("guid") for item in rss.iter("item")}
    assert guids["Post 1"].text == EARLIER_IDS["Post 1"] and guids["Post 1"].get("isPermaLink") == "false"
