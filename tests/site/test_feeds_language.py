"""The feeds index (feeds/index.html), feeds.opml's title and the page a browser makes of a feed (feed.xsl)
speak site.language: their bytes in Japanese and English, and an operator's own word for one string."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from lxml import etree

from feedpub.site.build import build_site

EXPECTED = Path(__file__).parent / "golden" / "language"
# feed.xsl as shipped before it was written per language: an English site gets the same bytes as before.
ENGLISH_XSL_SHA256 = "1725023dfd95667e25660fb6cf12b1a178e7c30e9844a4a966b71ad65347cc51"
POST = "---\ntitle: 推論性能35%向上\ndate: 2025-12-16 04:49:25 +0000\ncategories: [AI]\n---\n本文。\n"


def published(site, language: str, extra: str = "") -> dict[str, bytes]:
    site.post("2025-12-16-a.md", POST)
    site.configure(extra, language=language)
    report = build_site(site.config, use_cache=False)
    output = report.output
    return {name: (output / name).read_bytes() for name in ("feeds/index.html", "feed.xsl", "feeds.opml")}


@pytest.mark.parametrize("language", ["ja", "en"])
def test_index_and_stylesheet_bytes_in_the_site_language(site, language):
    files = published(site, language)
    for name in ("feeds/index.html", "feed.xsl"):
        expected = EXPECTED / f"{language}.{Path(name).name}"
        if os.environ.get("FEEDPUB_GOLDEN_UPDATE"):
            expected.write_bytes(files[name])
        assert files[name] == expected.read_bytes(), name
    title = etree.fromstring(files["feeds.opml"]).findtext("head/title")
    assert title == {"ja": "Test blog のフィード", "en": "Test blog feeds"}[language]


def test_english_stylesheet_is_unchanged(site):
    assert hashlib.sha256(published(site, "en")["feed.xsl"]).hexdigest() == ENGLISH_XSL_SHA256


def test_japanese_index_has_no_english_words_left(site):
    page = etree.HTML(published(site, "ja-JP")["feeds/index.html"])
    assert page.findtext(".//h1") == "Test blog — フィード"
    assert [th.text for th in page.iterfind(".//th")] == ["フィード", "記事数", "形式"]
    intro = page.find(".//p")
    assert "".join(intro.itertext()) == ("フィードのアドレスをフィードリーダーに登録してください。feeds.opml を"
                                         "読み込むと、すべてのフィードをまとめて購読できます。")
    assert intro.find("a").get("href") == "https://blog.example.com/feeds.opml"


def test_stylesheet_words_are_filled_in_and_escaped(site):
    xsl = etree.fromstring(published(site, "ja")["feed.xsl"])
    notice = xsl.find(".//{*}p[@class='notice']")
    assert notice.text.strip() == "これはフィードです。購読するには、このアドレスをフィードリーダーに登録してください。"
    assert b"{{" not in etree.tostring(xsl)


def test_operator_overrides_one_string(site):
    overrides = site.root / "web_templates"
    overrides.mkdir()
    (overrides / "strings.toml").write_text('[ja]\nindex_entries = "投稿数"\nxsl_visit = "ブログへ <戻る>"\n',
                                            encoding="utf-8")
    files = published(site, "ja", '[web]\ntemplates_dir = "web_templates"\n')
    page = etree.HTML(files["feeds/index.html"])
    assert [th.text for th in page.iterfind(".//th")] == ["フィード", "投稿数", "形式"]
    assert "ブログへ &lt;戻る&gt;" in files["feed.xsl"].decode("utf-8")
    etree.fromstring(files["feed.xsl"])     # still well-formed
