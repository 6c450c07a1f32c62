"""feedpub publishes the posts Jekyll 4.3 publishes, with the titles, dates, categories and tags Jekyll derives from
every front-matter form (fixtures/jekyll_front_matter, English and Japanese), and writes every Atom feed jekyll-feed
writes at the same path with the same posts, case variants included (fixtures/jekyll_feed_paths). Debian's
`jekyll` with `ruby-jekyll-feed` is the oracle: skipped without it, except under CI=true."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from lxml import etree

FIXTURES = Path(__file__).parent / "fixtures"
ATOM = "{http://www.w3.org/2005/Atom}"


def needs_jekyll() -> None:
    if shutil.which("jekyll") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("jekyll is missing: .ci/run installs jekyll and ruby-jekyll-feed")
        pytest.skip("jekyll is not installed (apt-get install jekyll ruby-jekyll-feed)")


def jekyll_build(site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["jekyll", "build", "--source", str(site), "--destination", str(site / "_site")],
                          capture_output=True, text=True, timeout=300)


def feedpub(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "feedpub", *args], cwd=folder, capture_output=True, text=True,
                          timeout=300)


def entries(path: Path) -> dict[str, tuple[str, datetime, frozenset[str]]]:
    """Entry link → (title, published instant, category terms)."""
    found = {}
    for entry in etree.parse(str(path)).getroot().iter(f"{ATOM}entry"):
        link = next(link.get("href") for link in entry.iter(f"{ATOM}link")
                    if link.get("rel", "alternate") == "alternate")
        found[link] = (entry.findtext(f"{ATOM}title"), datetime.fromisoformat(entry.findtext(f"{ATOM}published")),
                       frozenset(c.get("term") for c in entry.iter(f"{ATOM}category")))
    return found


def built(tmp_path: Path, fixture: str) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    """The fixture built by Jekyll (its _site) and by feedpub's CLI (its output folder), and feedpub's run."""
    site = tmp_path / "site"
    shutil.copytree(FIXTURES / fixture, site)
    result = jekyll_build(site)
    assert result.returncode == 0, result.stdout + result.stderr
    (tmp_path / "feedpub.toml").write_text('[site]\njekyll_dir = "site"\n[feeds]\nformats = ["atom"]\n'
                                           'stylesheet = false\n', encoding="utf-8")
    return site / "_site", tmp_path / "public", feedpub(tmp_path, "build")


@pytest.fixture(scope="module")
def front_matter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    needs_jekyll()
    return built(tmp_path_factory.mktemp("front-matter"), "jekyll_front_matter")


@pytest.fixture(scope="module")
def feed_paths(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    needs_jekyll()
    return built(tmp_path_factory.mktemp("feed-paths"), "jekyll_feed_paths")


def test_every_post_jekyll_publishes_is_published_with_its_title_date_and_url(front_matter) -> None:
    jekyll_site, public, run = front_matter
    assert run.returncode == 0, run.stderr
    jekyll, ours = entries(jekyll_site / "feed.xml"), entries(public / "feed.xml")
    assert len(jekyll) == len(list((FIXTURES / "jekyll_front_matter").rglob("*.md")))
    assert sorted(ours) == sorted(jekyll)
    for link, (title, published, terms) in jekyll.items():
        assert ours[link][:2] == (title, published), link
        # jekyll-feed shows a post's `category` alone when it has one; the names themselves are the same, but for
        # the empty one a null in a list makes, which feedpub leaves out
        assert terms - {""} <= ours[link][2], link


@pytest.mark.parametrize(("link", "title", "published", "terms"), [
    ("/2017/09/01/no-title.html", "No Title", "2017-09-01T00:00:00+09:00", set()),
    ("/2017/09/02/%E6%97%A5%E6%9C%AC%E8%AA%9E%E3%81%AE%E9%A1%8C%E5%90%8D.html", "日本語の題名",
     "2017-09-02T00:00:00+09:00", set()),
    ("/2017/09/11/date-day-first.html", "Day first", "2017-09-11T00:00:00+09:00", set()),
    ("/2017/11/09/date-slashes.html", "Slashes, the last number the year", "2017-11-09T00:00:00+09:00", set()),
    ("/2017/03/02/february-30.html", "February 30", "2017-03-02T00:00:00+09:00", set()),
    ("/2017/02/03/%E6%97%A5%E4%BB%98.html", "日付は日/月/年", "2017-02-03T09:00:00+09:00", set()),
    ("/2017/01/06/tags-of-every-type.html", "Tags of every type", "2017-01-06T00:00:00+09:00",
     {"ruby", "false", "2017", "1.5", "true"}),
    ("/2017/01/07/tags-string.html", "空白で区切るタグ", "2017-01-07T00:00:00+09:00", {"vim", "日本語\u3000タグ"}),
    ("/false/%E6%97%A5%E6%9C%AC%E8%AA%9E/perl/3/2017/01/12/categories-of-every-type.html", "カテゴリ",
     "2017-01-12T00:00:00+09:00", {"false", "日本語", "Perl", "3"}),
    ("/2017/01/13/title-no.html", "Title No", "2017-01-13T00:00:00+09:00", set()),
    ("/2017/01/27/trailing-dots.html", "Trailing Dots", "2017-01-27T09:30:00+09:00", set()),
])
def test_the_forms_jekyll_reads(front_matter, link: str, title: str, published: str, terms: set[str]) -> None:
    """What the comparison above found, spelled out: a regression in the oracle shows here too."""
    _, public, _ = front_matter
    entry = entries(public / "feed.xml")["https://example.com" + link]
    assert entry == (title, datetime.fromisoformat(published), frozenset(terms))


def test_what_jekyll_reads_differently_is_told(front_matter) -> None:
    _, _, run = front_matter
    assert ":2: warning: title is the YAML boolean false (NO, no, off and false are); Jekyll titles the post " \
           "'Title No' from its file name" in run.stderr
    assert "2017-02-30-february-30.md: warning: date '2017-02-30' does not exist; Jekyll publishes it on " \
           "2017-03-02 00:00:00" in run.stderr
    assert "2017-01-09-tags-a-number.md:3: warning: tags is 2017; Jekyll gives the post no tags" in run.stderr


@pytest.mark.parametrize("fixture", ["front_matter", "feed_paths"])
def test_every_feed_jekyll_feed_writes_is_written_at_its_path_with_its_posts(request, fixture: str) -> None:
    jekyll_site, public, run = request.getfixturevalue(fixture)
    assert run.returncode == 0, run.stderr
    written = sorted(p.relative_to(jekyll_site).as_posix() for p in jekyll_site.rglob("*.xml"))
    assert written
    for path in written:
        assert (public / path).is_file(), path
        assert sorted(entries(public / path)) == sorted(entries(jekyll_site / path)), path


def test_case_variants_keep_their_own_feeds(feed_paths) -> None:
    jekyll_site, public, run = feed_paths
    assert {"feed/tags/Perl.xml", "feed/tags/perl.xml", "feed/news.xml", "feed/News.xml", "atom.xml"} <= {
        p.relative_to(jekyll_site).as_posix() for p in jekyll_site.rglob("*.xml")}
    assert [title for title, _, _ in entries(public / "feed/tags/perl.xml").values()] == ["perl again", "perl lower"]
    # feedpub's own folders: the name whose first post is older keeps the slug, the other is told where it went
    assert (public / "tags/perl/feed.xml").exists() is False and (public / "feed/tags/perl.xml").exists()
    assert "warning: 'perl' (from site/_posts/2020-01-02-perl-lower.md) and 'Perl' (from " \
           "site/_posts/2020-01-01-perl-upper.md) both have the URL slug 'perl': 'Perl' keeps it (its first post " \
           "is older), 'perl' gets 'perl-2'" in run.stderr


def test_a_date_jekyll_refuses_is_named_with_its_line_and_jekylls_reason(tmp_path: Path) -> None:
    needs_jekyll()
    site = tmp_path / "site"
    (site / "_posts").mkdir(parents=True)
    (site / "_config.yml").write_text("title: Refused\nurl: https://example.com\n", encoding="utf-8")
    (site / "_posts/2017-01-01-good.md").write_text("---\ntitle: 良い\n---\nbody\n", encoding="utf-8")
    (site / "_posts/2017-01-02-bad.md").write_text("---\ntitle: Bad\ndate: next tuesday-ish\n---\nbody\n",
                                                   encoding="utf-8")
    jekyll = jekyll_build(site)
    assert jekyll.returncode != 0 and "does not have a valid date" in jekyll.stdout + jekyll.stderr
    (tmp_path / "feedpub.toml").write_text('[site]\njekyll_dir = "site"\n', encoding="utf-8")
    run = feedpub(tmp_path, "build")
    assert run.returncode == 1
    assert "site/_posts/2017-01-02-bad.md:3: 'next tuesday-ish' is not a date (no time information in it); " \
           "Jekyll stops the build at it (Invalid date)" in run.stderr
    assert run.stdout.startswith("1 post, 1 feed")   # the good post is still published
