"""The digest issue: schedule slots, covered posts, category variants, the HTML and text bodies."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from feedpub.send.issue import (
    PREFERENCES_MARKER,
    UNSUBSCRIBE_MARKER,
    DigestTemplateError,
    compose,
    due_slot,
    public_copy,
    render_variant,
    variant_key,
)
from feedpub.site.markup import RenderedPost, render_posts
from feedpub.site.posts import collect
from feedpub.strings import StringsError

NOW = datetime(2025, 12, 22, 1, 0, tzinfo=UTC)  # Monday 10:00 in Tokyo


def config_for(site, schedule: str = '"mon 09:00"', language: str = "ja", extra: str = ""):
    site.configure(f"""
        [digest]
        schedule = {schedule}
        from = "ALLFORCES編集部 <news@blog.example.com>"
        excerpt_chars = 40
        {extra}
        [web]
        public_url = "https://news.blog.example.com"
        """, language=language, title="ALLFORCES")
    return site.config


def add_posts(site) -> None:
    site.post("2025-12-16-inference.md", """
        ---
        title: "推論性能35%向上は何を変えるのか"
        date: 2025-12-16 04:49:25 +0000
        categories: ["AI導入戦略"]
        excerpt: "**新モデルの推論性能35%向上**について読み解きます。この抜粋は四十文字を超えても切られません。"
        reading_time: 8
        ---

        新しいモデルの発表で、推論性能35%向上という数字が話題になっている。
        """)
    site.post("2025-12-18-copyright.md", """
        ---
        title: "生成AIと著作権"
        date: 2025-12-18 09:00:00 +09:00
        categories: [法務]
        ---

        生成AIを業務に使う企業が増えている。著作権の扱いはまだ手探りの状態だ。本稿では三つの点を整理する。

        ## 一つ目
        """)
    site.post("2025-12-14-python.md", """
        ---
        title: "Deploying with <Python> & friends"
        date: 2025-12-14 20:00:00 +0000
        categories: [engineering]
        ---

        You do not need a framework to put a model behind HTTP. Here is the whole server, in twenty lines.
        """)


def rendered_posts(site, config) -> list[RenderedPost]:
    rendered, _ = render_posts(config, collect(config, now=NOW).posts)
    return rendered


def issue_for(site, config):
    period, slot = due_slot(config, NOW)
    return compose(config, rendered_posts(site, config), period=period, slot=slot,
                   starts=slot - timedelta(days=14), ends=NOW)


# --- schedule ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("schedule", "now", "expected"), [
    ('"mon 09:00"', datetime(2025, 12, 15, 0, 30, tzinfo=UTC), "2025-12-15-0900"),    # Mon 09:30 JST
    ('"mon 09:00"', datetime(2025, 12, 15, 0, 0, tzinfo=UTC), "2025-12-15-0900"),     # exactly at the slot
    ('"mon 09:00"', datetime(2025, 12, 14, 23, 59, tzinfo=UTC), "2025-12-08-0900"),   # Mon 08:59 JST
    ('"mon 09:00"', datetime(2025, 12, 14, 16, 0, tzinfo=UTC), "2025-12-08-0900"),    # Mon 01:00 JST, Sun in UTC
    ('"Mon 09:00"', datetime(2025, 12, 21, 14, 0, tzinfo=UTC), "2025-12-15-0900"),    # Sun 23:00 JST
    ('["mon 09:00", "thu 18:30"]', datetime(2025, 12, 18, 9, 29, tzinfo=UTC), "2025-12-15-0900"),
    ('["mon 09:00", "thu 18:30"]', datetime(2025, 12, 18, 9, 30, tzinfo=UTC), "2025-12-18-1830"),
    ('"mon,thu 07:00"', datetime(2025, 12, 20, 0, 0, tzinfo=UTC), "2025-12-18-0700"),
    ('"sun 00:00"', datetime(2025, 12, 20, 15, 0, tzinfo=UTC), "2025-12-21-0000"),    # Sun 00:00 JST = Sat UTC
])
def test_due_slot_is_the_latest_slot_at_or_before_now_in_site_timezone(site, schedule, now, expected):
    config = config_for(site, schedule)
    period, slot = due_slot(config, now)
    assert period == expected
    assert slot <= now and slot.utcoffset() == timedelta(hours=9)
    assert slot.strftime("%Y-%m-%d-%H%M") == period


def test_due_slot_follows_the_configured_timezone(site):
    site.configure('[digest]\nschedule = "mon 00:00"\n', timezone="UTC")
    assert due_slot(site.config, datetime(2025, 12, 15, 0, 0, tzinfo=UTC))[0] == "2025-12-15-0000"
    assert due_slot(site.config, datetime(2025, 12, 14, 23, 59, tzinfo=UTC))[0] == "2025-12-08-0000"


def test_variant_key():
    assert variant_key([]) == ""
    assert variant_key(["法務", "AI導入戦略", "法務"]) == "AI導入戦略\t法務"


# --- composition ------------------------------------------------------------------------------------

def test_compose_covers_starts_exclusive_to_ends_inclusive_newest_first(site):
    config = config_for(site)
    add_posts(site)
    rendered = rendered_posts(site, config)
    dates = {r.post.title: r.post.date for r in rendered}
    starts = dates["Deploying with <Python> & friends"]
    ends = dates["生成AIと著作権"]
    issue = compose(config, rendered, period="p", slot=NOW, starts=starts, ends=ends)
    assert [r.post.title for r in issue.posts] == ["生成AIと著作権", "推論性能35%向上は何を変えるのか"]
    assert compose(config, rendered, period="p", slot=NOW, starts=ends, ends=NOW).posts == ()


def test_compose_keeps_at_most_max_posts(site):
    config = config_for(site, extra="max_posts = 2")
    for day in range(1, 6):
        site.post(f"2025-12-{day:02d}-post-{day}.md", f"---\ntitle: Post {day}\n---\n\nText {day}.\n")
    issue = compose(config, rendered_posts(site, config), period="p", slot=NOW,
                    starts=NOW - timedelta(days=60), ends=NOW)
    assert [r.post.title for r in issue.posts] == ["Post 5", "Post 4"]


def test_subscriber_with_preferences_gets_only_matching_posts(site):
    config = config_for(site)
    add_posts(site)
    issue = issue_for(site, config)
    legal = render_variant(config, issue, variant_key(["categories/法務"]))
    assert "生成AIと著作権" in legal.html and "生成AIと著作権" in legal.text
    assert "推論性能35%向上" not in legal.html and "推論性能35%向上" not in legal.text
    assert "毎週 月曜 09:00（Asia/Tokyo）にダイジェストをお届けします。 対象: 法務" in legal.text   # the footer
    everyone = render_variant(config, issue, "")
    assert "対象: すべての記事" in everyone.text and "対象: すべての記事" in everyone.html
    assert "推論性能35%向上" in everyone.html and "生成AIと著作権" in everyone.html
    assert render_variant(config, issue, variant_key(["categories/料理"])) is None


# --- templates --------------------------------------------------------------------------------------

def test_html_is_a_600px_inlined_table_layout_with_preheader_and_dark_mode(site):
    config = config_for(site)
    add_posts(site)
    html = render_variant(config, issue_for(site, config), "").html
    assert '<html lang="ja"' in html
    assert '<meta name="color-scheme" content="light dark">' in html
    assert '<meta name="supported-color-schemes" content="light dark">' in html
    assert 'width="600"' in html and "max-width: 600px" in html
    # The preheader is the first (newest) post's excerpt, as the mail shows it.
    preheader = (r'<div class="preheader" style="display: none;[^"]*">'
                 r"生成AIを業務に使う企業が増えている。著作権の扱いはまだ手探りの状態だ。(&#847;|\u034f)")
    assert re.search(preheader, html)
    # Inlined: the only CSS left in <style> is the @media rules.
    style = re.search(r"<style>(.*?)</style>", html, re.S)[1]
    assert "@media only screen and (max-width: 620px)" in style and "prefers-color-scheme: dark" in style
    assert not re.sub(r"@media[^{]*\{([^{}]*\{[^}]*\})*\s*\}", "", style).strip()
    assert 'class="title" style="' in html
    assert "{{" not in html and "{%" not in html


def test_html_links_are_absolute_and_posts_show_date_categories_reading_time(site):
    config = config_for(site)
    add_posts(site)
    html = render_variant(config, issue_for(site, config), "").html
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert hrefs and all(h.startswith("https://") or h.startswith("feedpub-") for h in hrefs), hrefs
    assert [h for h in hrefs if h.startswith("feedpub-")] == [UNSUBSCRIBE_MARKER, PREFERENCES_MARKER]
    # 2025-12-14 20:00 UTC is 12月15日 in Tokyo.
    assert "2025年12月15日 · engineering · 1分で読めます" in html
    assert "2025年12月16日 · AI導入戦略 · 8分で読めます" in html
    assert "Deploying with &lt;Python&gt; &amp; friends" in html
    assert "続きを読む" in html and "配信停止" in html
    assert "ダイジェスト配信に登録されているため" in html


def test_excerpt_front_matter_whole_first_paragraph_cut(site):
    config = config_for(site)
    add_posts(site)
    variant = render_variant(config, issue_for(site, config), "")
    # Front-matter excerpt: rendered Markdown, not cut although longer than excerpt_chars (40).
    assert "<strong>新モデルの推論性能35%向上</strong>" in variant.html
    assert "この抜粋は四十文字を超えても切られません。" in variant.text
    # First paragraph: cut at a sentence end within 40 characters.
    assert "生成AIを業務に使う企業が増えている。著作権の扱いはまだ手探りの状態だ。\n" in variant.text
    assert "本稿では" not in variant.text


def test_english_site_has_english_strings(site):
    config = config_for(site, language="en")
    add_posts(site)
    variant = render_variant(config, issue_for(site, config), "")
    assert '<html lang="en"' in variant.html
    assert "15 December 2025 · engineering · 1 min read" in variant.text
    assert "16 December 2025 · AI導入戦略 · 8 min read" in variant.text
    assert "Read more: https://blog.example.com/engineering/2025/12/15/python.html" in variant.text
    assert "Unsubscribe: " + UNSUBSCRIBE_MARKER in variant.text


def test_text_part_comes_from_the_text_template(site):
    config = config_for(site)
    add_posts(site)
    text = render_variant(config, issue_for(site, config), "").text
    assert text.startswith("ALLFORCES — 2025年12月22日\nALLFORCES の新着記事 3 件\n")
    assert "■ Deploying with <Python> & friends\n" in text
    assert "<p" not in text and "&amp;" not in text and "{{" not in text


def test_twenty_posts_stay_under_100_kb(site):
    config = config_for(site)
    paragraph = "生成AIの導入で現場の仕事はどう変わるのか。" * 6
    for n in range(25):
        site.post(f"2025-12-{n % 20 + 1:02d}-post-{n}.md", f"""
            ---
            title: "第{n}回 推論性能と導入戦略についての長めの見出しタイトル"
            categories: [AI導入戦略, 法務, engineering]
            excerpt: "{paragraph}"
            ---

            {paragraph}
            """)
    issue = compose(config, rendered_posts(site, config), period="p", slot=NOW,
                    starts=NOW - timedelta(days=60), ends=NOW)
    variant = render_variant(config, issue, "")
    assert len(issue.posts) == 20
    assert len(variant.html.encode("utf-8")) < 100_000
    assert variant.html.count('class="post"') == 20


def test_subject_is_rendered_from_config_on_one_line(site):
    config = config_for(site, extra='subject = "{{ site.title }} — {{ issue.date }}: {{ issue.posts[0].title }}"')
    site.post("2025-12-20-evil.md", '---\ntitle: "Hello\\r\\nBcc: victim@example.com\\u2028X"\n---\n\nBody.\n')
    variant = render_variant(config, issue_for(site, config), "")
    assert variant.subject == "ALLFORCES — 2025-12-22: Hello Bcc: victim@example.com X"


def test_operator_template_overrides_and_errors_name_file_and_line(site):
    config = config_for(site, extra='templates_dir = "email_templates"')
    add_posts(site)
    issue = issue_for(site, config)
    folder = site.root / "email_templates"
    folder.mkdir()
    (folder / "digest.txt.j2").write_text("Only {{ posts | length }} posts\n", encoding="utf-8")
    variant = render_variant(config, issue, "")
    assert variant.text == "Only 3 posts\n"
    assert "ALLFORCES" in variant.html  # the HTML template still comes from the shipped copy

    (folder / "digest.html.j2").write_text("<html>\n<body>\n{% for post in posts %}\n{{ post.title }\n</body>\n",
                                           encoding="utf-8")
    with pytest.raises(DigestTemplateError) as error:
        render_variant(config, issue, "")
    assert str(error.value).startswith(f"{folder / 'digest.html.j2'}:4: template error: ")

    (folder / "digest.html.j2").write_text("<html>\n{{ post.nonexistent.deeper }}\n", encoding="utf-8")
    with pytest.raises(DigestTemplateError) as error:
        render_variant(config, issue, "")
    assert str(error.value).startswith(f"{folder / 'digest.html.j2'}:2: template error: ")


def test_english_archive_and_its_text_have_the_subscribe_footer(site):
    config = config_for(site, language="en")
    add_posts(site)
    copy = public_copy(config, issue_for(site, config))
    assert "An issue of the ALLFORCES e-mail digest (https://blog.example.com)." in copy.html
    assert "Get the digest by e-mail: https://news.blog.example.com/subscribe\n" in copy.text
    for personal in ("You are receiving this", "Unsubscribe", "preferences"):
        assert personal not in copy.html and personal not in copy.text


def test_an_operator_template_without_the_archive_footer_links_generic_pages(site):
    config = config_for(site, extra='templates_dir = "email_templates"')
    add_posts(site)
    folder = site.root / "email_templates"
    folder.mkdir()
    (folder / "digest.html.j2").write_text('<a href="{{ unsubscribe_url }}">stop</a>\n', encoding="utf-8")
    html = public_copy(config, issue_for(site, config)).html
    assert 'href="https://news.blog.example.com/unsubscribe"' in html and "feedpub-" not in html


# --- pictures ---------------------------------------------------------------------------------------

def picture_posts(site) -> None:
    site.post("2025-12-19-cover.md", """
        ---
        title: "GPUクラスタの見取り図"
        date: 2025-12-19 09:00:00 +09:00
        image:
          path: /assets/images/cluster.png
          width: 1200
          height: 800
          alt: "GPUラックが並ぶデータセンター"
        ---

        大規模な推論基盤の構成を図で説明する。
        """)
    site.post("2025-12-20-plain.md", """
        ---
        title: "A plain cover"
        date: 2025-12-20 09:00:00 +09:00
        image: /assets/images/plain.jpg
        ---

        A cover without a size.
        """)
    site.post("2025-12-21-body.md", """
        ---
        title: "Charts only in the body"
        date: 2025-12-21 09:00:00 +09:00
        ---

        The chart says it all.

        <img src="/assets/images/chart.png" width="320" height="200" alt="Bar chart of model sizes">
        """)


def img_tags(html: str) -> list[dict[str, str]]:
    return [dict(re.findall(r'(\w+)="([^"]*)"', tag)) for tag in re.findall(r"<img [^>]*>", html)]


def test_front_matter_images_are_absolute_and_sized_for_the_600px_layout(site):
    config = config_for(site)
    picture_posts(site)
    variant = render_variant(config, issue_for(site, config), "")
    images = img_tags(variant.html)
    assert [(i["src"], i["width"], i["height"], i["alt"]) for i in images] == [
        # no size given: the column's width in 16:9, corrected by height:auto where CSS applies
        ("https://blog.example.com/assets/images/plain.jpg", "536", "302", "A plain cover"),
        # 1200×800 scaled to the 536 px column
        ("https://blog.example.com/assets/images/cluster.png", "536", "357", "GPUラックが並ぶデータセンター"),
    ]
    # Never wider than its box, whatever the client does with the attributes (images off: the alt text).
    assert all("max-width: 536px" in i["style"] and "height: auto" in i["style"] for i in images)
    # The text part lists the posts, and no picture.
    assert "■ GPUクラスタの見取り図" in variant.text and "■ Charts only in the body" in variant.text
    assert ".png" not in variant.text and ".jpg" not in variant.text and "<img" not in variant.text


def test_images_first_takes_the_body_image_and_none_shows_no_picture(site):
    config = config_for(site, extra='images = "first"')
    picture_posts(site)
    images = img_tags(render_variant(config, issue_for(site, config), "").html)
    assert (images[0]["src"], images[0]["width"], images[0]["height"], images[0]["alt"]) == (
        "https://blog.example.com/assets/images/chart.png", "320", "200", "Bar chart of model sizes")
    assert len(images) == 3
    config = config_for(site, extra='images = "none"')
    assert img_tags(render_variant(config, issue_for(site, config), "").html) == []


def test_twenty_posts_with_pictures_stay_under_the_gmail_clip(site):
    config = config_for(site, extra='images = "first"')
    paragraph = "生成AIの導入で現場の仕事はどう変わるのか。" * 6
    for n in range(20):
        site.post(f"2025-12-{n + 1:02d}-post-{n}.md", f"""
            ---
            title: "第{n}回 推論性能と導入戦略についての長めの見出しタイトル"
            categories: [AI導入戦略, 法務]
            image: {{path: /assets/images/cover-{n}.png, width: 1600, height: 900, alt: "第{n}回の図"}}
            excerpt: "{paragraph}"
            ---

            {paragraph}
            """)
    variant = render_variant(config, compose(config, rendered_posts(site, config), period="p", slot=NOW,
                                             starts=NOW - timedelta(days=60), ends=NOW), "")
    assert len(img_tags(variant.html)) == 20
    assert len(variant.html.encode("utf-8")) < 100_000   # Gmail clips at about 102 KB


# --- view in browser, preheader, language -----------------------------------------------------------

def test_the_mail_links_to_the_archived_issue_and_previews_its_first_excerpt(site):
    config = config_for(site)
    add_posts(site)
    variant = render_variant(config, issue_for(site, config), "")
    view = re.search(r'<td class="topline"[^>]*><a href="([^"]*)"[^>]*>([^<]*)</a>', variant.html)
    assert view.groups() == ("https://news.blog.example.com/digests/2025-12-22-0900/", "ブラウザで表示")
    assert "ブラウザで表示: https://news.blog.example.com/digests/2025-12-22-0900/\n" in variant.text
    assert variant.subject == "ALLFORCES 週刊ダイジェスト — 2025年12月22日"


def test_operator_strings_override_one_string_and_a_broken_file_names_its_line(site):
    config = config_for(site, extra='templates_dir = "email_templates"')
    add_posts(site)
    issue = issue_for(site, config)
    folder = site.root / "email_templates"
    folder.mkdir()
    (folder / "strings.toml").write_text('[ja]\nread_more = "全文を読む"\nsubject = "{title} 通信 {date}"\n',
                                         encoding="utf-8")
    variant = render_variant(config, issue, "")
    assert "全文を読む →" in variant.html and "続きを読む" not in variant.html
    assert "ブラウザで表示" in variant.html          # the rest still comes from the shipped strings
    assert variant.subject == "ALLFORCES 通信 2025年12月22日"
    (folder / "strings.toml").write_text('[ja]\nread_more = "全文を読む"\nsubject = \n', encoding="utf-8")
    with pytest.raises(StringsError) as error:
        render_variant(config, issue, "")
    assert str(error.value).startswith(f"{folder / 'strings.toml'}:3: ")


def test_a_language_without_strings_falls_back_to_english(site):
    config = config_for(site, language="fr")
    add_posts(site)
    variant = render_variant(config, issue_for(site, config), "")
    assert '<html lang="en"' in variant.html and "View this e-mail in your browser" in variant.html
    assert variant.subject == "ALLFORCES weekly — 22 December 2025"
