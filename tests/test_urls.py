from __future__ import annotations

from datetime import datetime

import pytest

from feedpub.urls import absolute, assign_slugs, expand_permalink, jekyll_slugify, slugify

DATE = datetime(2025, 12, 6, 7, 8, 9)


@pytest.mark.parametrize(("style", "expected"), [
    ("date", "/ai/news/2025/12/06/my-post.html"),
    ("pretty", "/ai/news/2025/12/06/my-post/"),
    ("ordinal", "/ai/news/2025/340/my-post.html"),
    ("none", "/ai/news/my-post.html"),
    ("/:year/:i_month/:i_day/:short_year/:hour:minute:second/:slug:output_ext", "/2025/12/6/25/070809/my-post.html"),
    ("/blog/:title/", "/blog/my-post/"),
    ("/:slugified_categories/:title", "/ai/news/my-post"),
])
def test_permalink_styles_match_jekyll(style: str, expected: str) -> None:
    assert expand_permalink(style, date=DATE, title="my-post", slug="my-post", categories=["AI", "News"]) == expected


def test_no_categories_collapse_slashes_and_dot_segments_are_dropped() -> None:
    assert expand_permalink("date", date=DATE, title="p", slug="p", categories=[]) == "/2025/12/06/p.html"
    assert expand_permalink("../../etc/:title", date=DATE, title="x", slug="x", categories=[]) == "/etc/x"


def test_unicode_slugs_and_percent_encoding() -> None:
    assert slugify("AI導入戦略") == "ai導入戦略"
    assert slugify("Ｍachine  Learning!") == "machine-learning"
    assert slugify("C++ / Rust") == "c-rust"
    assert jekyll_slugify("生成AIと著作権", "pretty", cased=True) == "生成AIと著作権"
    assert absolute("https://b.example/blog", "/ai導入戦略/x y.html") == \
        "https://b.example/blog/ai%E5%B0%8E%E5%85%A5%E6%88%A6%E7%95%A5/x%20y.html"


# What Debian's Jekyll 4.3 prints for {{ text | slugify: mode }} (none and an unknown mode: the text, lower case).
@pytest.mark.parametrize(("text", "expected"), [
    ("The _config.yml file", ["the-config-yml-file", "the-_config.yml-file", "the-_config.yml-file",
                              "the _config.yml file", "the-config-yml-file", "the-config-yml-file"]),
    ("--Café  Ünïcode--", ["café-ünïcode", "café-ünïcode", "-café-ünïcode-", "--café  ünïcode--", "caf-n-code",
                           "cafe-unicode"]),
    ("丸数字①と〇", ["丸数字-と", "丸数字-と", "丸数字①と〇", "丸数字①と〇", "", ""]),
    ("ﾊﾝｶｸ_ＦＵＬＬ", ["ﾊﾝｶｸ-ｆｕｌｌ", "ﾊﾝｶｸ_ｆｕｌｌ", "ﾊﾝｶｸ_ｆｕｌｌ", "ﾊﾝｶｸ_ｆｕｌｌ", "", ""]),
    ("C++ / C#", ["c-c", "c++-c", "c++-/-c#", "c++ / c#", "c-c", "c-c"]),
    ("  a  b  ", ["a-b", "a-b", "a-b", "  a  b  ", "a-b", "a-b"]),
    ("全角\u3000スペース", ["全角-スペース", "全角-スペース", "全角\u3000スペース", "全角\u3000スペース", "", ""]),
])
def test_jekyll_slugify_modes_as_jekyll_prints_them(text: str, expected: list[str]) -> None:
    modes = ["default", "pretty", "raw", "none", "ascii", "latin"]
    assert [jekyll_slugify(text, mode) for mode in modes] == expected
    assert jekyll_slugify(text, "bogus") == text.lower()


def test_slug_overrides_and_collisions_name_both_sources() -> None:
    slugs, problems, notes = assign_slugs({"AI導入戦略": "a.md", "AI": "b.md", "ai": "c.md", "!!!": "d.md",
                                           "ai-2": "e.md"}, {"AI導入戦略": "ai-strategy"})
    # the earlier name keeps the slug; the later gets the first numbered one no name has
    assert slugs == {"AI": "ai", "AI導入戦略": "ai-strategy", "ai": "ai-3", "ai-2": "ai-2"}
    assert list(map(str, problems)) == ["'!!!' (from d.md) has no usable URL slug (add one under [feeds.slugs])"]
    assert list(map(str, notes)) == ["'ai' (from c.md) and 'AI' (from b.md) both have the URL slug 'ai': 'AI' keeps "
                                     "it (its first post is older), 'ai' gets 'ai-3' (give one its own under "
                                     "[feeds.slugs])"]
