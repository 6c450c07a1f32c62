from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from feedpub.site.markup import render_posts
from feedpub.site.posts import collect
from feedpub.site.reader import load_body

JST = timezone(timedelta(hours=9))
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def one(site, name: str, text: str | bytes, **options):
    site.post(name, text)
    collection = collect(site.config, now=NOW, **options)
    return collection


def only_post(site, name: str, text: str | bytes):
    collection = one(site, name, text)
    assert [str(p) for p in collection.problems if not p.warning] == []
    assert len(collection.posts) == 1
    return collection.posts[0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-12-16 04:49:25 +0000", datetime(2025, 12, 16, 4, 49, 25, tzinfo=UTC)),
        ("2025-12-16 13:49:25 +09:00", datetime(2025, 12, 16, 13, 49, 25, tzinfo=JST)),
        ("2025-12-16T04:49:25Z", datetime(2025, 12, 16, 4, 49, 25, tzinfo=UTC)),
        ('"2025-12-16T13:49:25+09:00"', datetime(2025, 12, 16, 13, 49, 25, tzinfo=JST)),
        ("2025-12-16 13:49:25", datetime(2025, 12, 16, 13, 49, 25, tzinfo=JST)),  # naive → Asia/Tokyo
        ("2025-12-16", datetime(2025, 12, 16, tzinfo=JST)),
        ("2025-12-16 13:49", datetime(2025, 12, 16, 13, 49, tzinfo=JST)),
        ("2025-12-16 13:49 -0800", datetime(2025, 12, 16, 13, 49, tzinfo=timezone(timedelta(hours=-8)))),
    ],
)
def test_every_date_form_becomes_an_aware_datetime(site, value: str, expected: datetime) -> None:
    post = only_post(site, "2025-12-16-p.md", f"---\ntitle: t\ndate: {value}\n---\nbody\n")
    assert post.date == expected
    assert post.date.utcoffset() == expected.utcoffset()  # the post's own offset is kept


def test_date_from_file_name_when_front_matter_has_none(site) -> None:
    post = only_post(site, "2025-11-20-release.md", "---\ntitle: Release\n---\nbody\n")
    assert post.date == datetime(2025, 11, 20, tzinfo=JST)
    assert post.path == "/2025/11/20/release.html"


def test_front_matter_date_on_another_day_wins_with_a_warning(site) -> None:
    collection = one(site, "2025-11-20-x.md", "---\ntitle: X\ndate: 2025-11-22 10:00:00 +0900\n---\nbody\n")
    assert collection.posts[0].date.day == 22
    [warning] = collection.problems
    assert warning.warning and warning.line == 3
    assert "differs from the file name's 2025-11-20" in str(warning)


@pytest.mark.parametrize(
    ("front", "categories"),
    [
        ('categories: ["AI導入戦略", news]', ("AI導入戦略", "news")),
        ("categories: news analysis", ("news", "analysis")),
        ("category: Machine Learning", ("Machine Learning",)),
        ("categories: [2025, release]", ("2025", "release")),
        ("category: 2025", ("2025",)),
        ("categories: [false, 日本語, null]\ncategory: [x, [y]]", ("false", "日本語", "x", "y")),
        ("categories:\n  - 法務\n  - 法務", ("法務",)),
    ],
)
def test_category_forms(site, front: str, categories: tuple[str, ...]) -> None:
    post = only_post(site, "2025-01-02-c.md", f"---\ntitle: c\n{front}\n---\nbody\n")
    assert post.categories == categories


def test_tags_forms_and_folder_categories(site) -> None:
    post = only_post(site, "news/_posts/2025-01-02-t.md", "---\ntitle: t\ntags: python ai\n---\nb\n")
    assert post.tags == ("python", "ai")

    assert post.categories == ("news",)  # Jekyll: folders above _posts are categories
    post2 = collect(site.config, now=NOW)
    assert post2.posts[0].path == "/news/2025/01/02/t.html"


def test_unpublished_and_future_posts(site) -> None:
    site.post("2025-01-01-hidden.md", "---\ntitle: h\npublished: false\n---\nb\n")
    site.post("2030-01-01-later.md", "---\ntitle: later\n---\nb\n")
    site.post("2025-01-02-shown.md", "---\ntitle: shown\n---\nb\n")
    assert [p.title for p in collect(site.config, now=NOW).posts] == ["shown"]
    assert [p.title for p in collect(site.config, now=NOW, future=True).posts] == ["later", "shown"]


def test_drafts_only_when_asked(site) -> None:
    site.post("_drafts/idea.md", "---\ntitle: idea\n---\nb\n")
    site.post("2025-01-02-shown.md", "---\ntitle: shown\n---\nb\n")
    assert [p.title for p in collect(site.config, now=NOW).posts] == ["shown"]
    drafts = collect(site.config, now=datetime.now(UTC) + timedelta(days=1), drafts=True).posts
    assert {p.title for p in drafts} == {"idea", "shown"}


def test_posts_sorted_newest_first_and_recursive(site) -> None:
    site.post("2025-01-01-a.md", "---\ntitle: a\n---\nb\n")
    site.post("deep/er/2025-03-01-c.markdown", "---\ntitle: c\n---\nb\n")
    site.post("2025-02-01-b.md", "---\ntitle: b\ndate: 2025-02-01 12:00 +0000\n---\nb\n")
    site.post("notes.txt", "not a post")
    assert [p.title for p in collect(site.config, now=NOW).posts] == ["c", "b", "a"]


def test_missing_title_comes_from_the_file_name_and_author_falls_back(site) -> None:
    site.post("2025-01-01-my-untitled-post.md", "---\ndate: 2025-01-01\n---\nb\n")
    site.post("2025-01-02-ok.md", "---\ntitle: ok\n---\nb\n")
    collection = collect(site.config, now=NOW)
    assert [(p.title, p.author) for p in collection.posts] == [("ok", "編集部"), ("My Untitled Post", "編集部")]
    assert collection.problems == ()


def test_a_file_in_posts_without_a_date_in_its_name_is_not_a_post_as_in_jekyll(site) -> None:
    site.post("_posts/about.md", "---\ntitle: About\ndate: 2025-01-01\n---\nb\n")
    site.post("_posts/2025-01-02-日記.md", "---\ntitle: 日記\n---\nb\n")
    collection = collect(site.config, now=NOW)
    assert [p.title for p in collection.posts] == ["日記"]
    assert [str(p) for p in collection.problems] == [
        "posts/_posts/about.md: warning: not published: Jekyll reads a file in _posts/ as a post only when its name "
        "starts with its date (expected a file name YYYY-MM-DD-slug.md)"]


def test_tag_wins_over_tags_and_is_one_name(site) -> None:
    """As Jekyll's Utils.pluralized_array_from_hash reads them."""
    assert only_post(site, "2025-01-03-u.md", "---\ntitle: u\ntags: [a]\ntag: two words\n---\nb\n").tags == (
        "two words",)


def test_author_forms(site) -> None:
    assert only_post(site, "2025-01-02-a.md", "---\ntitle: a\nauthor:\n  name: Sam\n---\nb\n").author == "Sam"


def test_excerpt_sources(site) -> None:
    site.post("2025-01-01-front.md", "---\ntitle: f\nexcerpt: \"**要約**です\"\n---\n最初の段落。\n\n次。\n")
    site.post("2025-01-02-more.md", "---\ntitle: m\n---\n# Heading\n\nOne.\n\nTwo.\n<!--more-->\nThree.\n")
    site.post("2025-01-03-sep.md", "---\ntitle: s\nexcerpt_separator: <!--cut-->\n---\nA\n\nB<!--cut-->C\n")
    site.post("2025-01-04-first.md", "---\ntitle: p\n---\n## Title\n\nFirst paragraph\nwraps.\n\nSecond.\n")
    excerpts = {p.title: p.excerpt for p in collect(site.config, now=NOW).posts}
    assert excerpts == {"f": "**要約**です", "m": "# Heading\n\nOne.\n\nTwo.", "s": "A\n\nB",
                        "p": "First paragraph\nwraps."}


def test_reading_time_is_cjk_aware_and_skips_code(site) -> None:
    japanese = "あ" * 1000  # 2 minutes at 500 characters a minute
    english = " ".join(["word"] * 400)  # 2 minutes at 200 words a minute
    code = "```\n" + "x = 1\n" * 5000 + "```\n"
    post = only_post(site, "2025-01-01-r.md", f"---\ntitle: r\n---\n{japanese}\n\n{english}\n\n{code}")
    assert post.reading_time is None  # computed when rendered: the collector does not keep bodies
    [rendered], _ = render_posts(site.config, [post])
    assert rendered.reading_time == 4


def test_reading_time_from_front_matter(site) -> None:
    post = only_post(site, "2025-01-02-s.md", "---\ntitle: s\nreading_time: 8\n---\nshort\n")
    [rendered], _ = render_posts(site.config, [post])
    assert post.reading_time == rendered.reading_time == 8


def test_permalink_id_image_and_updated(site) -> None:
    post = only_post(site, "2025-12-16-llama.md", """
        ---
        title: Llama
        date: 2025-12-16 04:49:25 +0000
        categories: [AI導入戦略]
        permalink: /:categories/:title/
        guid: tag:blog.example.com,2025:llama
        image: /img/a b.png
        last_modified_at: 2025-12-20 00:00:00 +0000
        ---
        body
        """)
    assert post.path == "/ai導入戦略/llama/"
    assert post.url == "https://blog.example.com/ai%E5%B0%8E%E5%85%A5%E6%88%A6%E7%95%A5/llama/"
    assert post.id == "tag:blog.example.com,2025:llama"
    assert post.image == "https://blog.example.com/img/a%20b.png"
    assert post.updated == datetime(2025, 12, 20, tzinfo=UTC)


def test_id_defaults_to_the_absolute_permalink(site) -> None:
    post = only_post(site, "2025-12-16-x.md", "---\ntitle: x\n---\nb\n")
    assert post.id == post.url == "https://blog.example.com/2025/12/16/x.html"


def test_bom_and_crlf_are_read(site) -> None:
    text = "---\r\ntitle: BOM付き\r\ncategories: [news]\r\n---\r\n本文\r\n"
    post = only_post(site, "2025-01-01-bom.md", b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert post.title == "BOM付き" and post.categories == ("news",)
    assert "\r" not in load_body(post)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("---\ntitle: x\nbody without closing\n", "posts/2025-01-01-bad.md:1: front matter is not closed"),
        ("---\ntitle: x\n\tdate: 2025-01-01\n---\nb\n", "posts/2025-01-01-bad.md:3: invalid YAML front matter"),
        ("---\ntitle: a: b\n---\nb\n", "posts/2025-01-01-bad.md:2: invalid YAML front matter"),
        ("", "posts/2025-01-01-bad.md:1: empty file"),
        ("just text\n", "posts/2025-01-01-bad.md:1: no front matter"),
        ("---\ntitle: x\ndate: 2025-13-45\n---\nb\n", "posts/2025-01-01-bad.md:3: '2025-13-45' is not a date"),
        ("---\ntitle: ok\n---\nline\nbell\x07\n", "posts/2025-01-01-bad.md:5: control character U+0007"),
        ("---\ntitle: [a, b]\n---\nb\n", "posts/2025-01-01-bad.md:2: title is [a, b], not text"),
        ("---\ntitle: c\ncategories: 2025\n---\nb\n", "posts/2025-01-01-bad.md:3: categories is 2025; Jekyll cannot "
                                                   "read the file (no implicit conversion of Integer into Array)"),
        ("---\n- a\n- b\n---\nb\n", "posts/2025-01-01-bad.md:2: front matter is not a mapping"),
    ],
)
def test_broken_file_gives_one_clear_problem_and_others_still_collected(site, content: str, message: str) -> None:
    site.post("2025-01-01-bad.md", content)
    site.post("2025-01-02-good.md", "---\ntitle: good\n---\nb\n")
    collection = collect(site.config, now=NOW)
    assert [p.title for p in collection.posts] == ["good"]
    [problem] = collection.problems
    assert str(problem).startswith(message), str(problem)
    assert "(expected " in str(problem)


def test_non_utf8_and_binary_files(site) -> None:
    site.post("2025-01-01-sjis.md", "---\ntitle: x\n---\n日本語\n".encode("shift_jis"))
    site.post("2025-01-03-bin.md", b"\x89PNG\r\n\x1a\n\x00\x00")
    site.post("2025-01-02-good.md", "---\ntitle: good\n---\nb\n")
    collection = collect(site.config, now=NOW)
    assert [p.title for p in collection.posts] == ["good"]
    assert sorted(str(p) for p in collection.problems) == [
        "posts/2025-01-01-sjis.md:4: not UTF-8 (byte 0x93) (expected UTF-8 text; re-save the file as UTF-8)",
        "posts/2025-01-03-bin.md:3: binary data (NUL byte) (expected a UTF-8 text file)",
    ]


def test_two_posts_with_one_url_is_an_error_naming_both(site) -> None:
    site.post("2025-01-01-same.md", "---\ntitle: first\n---\nb\n")
    site.post("2025-01-01-other.md", "---\ntitle: second\npermalink: /2025/01/01/same.html\n---\nb\n")
    collection = collect(site.config, now=NOW)
    assert len(collection.posts) == 1
    [problem] = collection.problems
    assert "already used by posts/2025-01-01-" in str(problem)


def test_symlink_out_of_the_posts_folder_is_refused(site, tmp_path) -> None:
    outside = tmp_path / "secret.md"
    outside.write_text("---\ntitle: secret\n---\nb\n", encoding="utf-8")
    (site.posts / "2025-01-01-link.md").symlink_to(outside)
    collection = collect(site.config, now=NOW)
    assert collection.posts == ()
    assert "symbolic link pointing outside" in str(collection.problems[0])
