from __future__ import annotations

from datetime import UTC, datetime

import pytest

from feedpub.site.markup import cut_excerpt, html_to_text, render_posts, to_html
from feedpub.site.posts import collect

NOW = datetime(2026, 1, 1, tzinfo=UTC)
BASE = "https://blog.example.com/2025/12/16/post.html"


def rendered(site, body: str, **site_values: str):
    if site_values:
        site.configure(**site_values)
    site.post("2025-12-05-deploy.md", "---\ntitle: Deploy\n---\nx\n")
    site.post("2025-12-16-post.md", f"---\ntitle: 投稿\n---\n{body}")
    (site.root / "about.md").write_text("---\ntitle: About\n---\nAbout.\n", encoding="utf-8")   # for {% link %}
    config = site.config
    posts = collect(config, now=NOW).posts
    results, warnings = render_posts(config, [p for p in posts if p.title == "投稿"], site_posts=posts)
    return results[0], warnings


def test_python_markdown_bolds_cjk_next_to_punctuation() -> None:
    assert to_html("**推論性能35%**向上", BASE) == "<p><strong>推論性能35%</strong>向上</p>"


def test_jekyll_liquid_in_a_post(site) -> None:
    body = """\
{% highlight ruby linenos %}
puts "{{ site.title }}"
{% endhighlight %}

Show {% raw %}{{ page.title }} and {% if x %}{% endraw %} literally.

Home: {{ site.url }}{{ site.baseurl }}/ — {{ site.title }} — [img]({{ "/a.png" | relative_url }})

See {% post_url 2025-12-05-deploy %} and {% link about.md %}.
"""
    result, warnings = rendered(site, body, baseurl="/blog")
    html = result.html
    # Jekyll's highlight HTML (Rouge's line-number table); the sanitiser keeps the code's language class.
    assert ('<figure class="highlight"><pre><code class="language-ruby"><table class="rouge-table"><tbody><tr>'
            '<td class="gutter gl"><pre class="lineno">1\n</pre></td><td class="code"><pre>puts "Test blog"\n</pre>'
            '</td></tr></tbody></table></code></pre></figure>') in html
    assert "Show &#123;{ page.title }} and &#123;% if x %} literally." in html
    assert "Home: https://blog.example.com/blog/ — Test blog" in html
    assert 'href="https://blog.example.com/blog/a.png"' in html
    assert "See /blog/2025/12/05/deploy.html and /blog/about.html." in html
    assert "{{" not in html and "{%" not in html
    assert warnings == []


def test_unknown_liquid_renders_as_nothing_with_a_warning_naming_the_line(site) -> None:
    result, warnings = rendered(site, "first\n\n{% seo %}\n\n{{ page.nothing | upcase }}\n\n{% if")
    assert "{" not in result.html.replace("&#123;", "")
    assert "first" in result.html
    assert [(w.path, w.line) for w in warnings] == [("posts/2025-12-16-post.md", 10)]
    assert "Liquid cannot be parsed" in str(warnings[0])
    result, warnings = rendered(site, "first\n\n{% seo %}\n\n{{ page.nothing | upcase }}\n\nlast")
    assert [(w.path, w.line) for w in warnings] == [("posts/2025-12-16-post.md", 6),
                                                    ("posts/2025-12-16-post.md", 8)]
    assert "Liquid tag {% seo %} is unknown and was rendered as nothing" in str(warnings[0])
    assert "Liquid variable 'page.nothing' is not defined" in str(warnings[1])
    assert "<p>first</p>\n<p>last</p>" in result.html


def test_links_become_absolute_including_srcset_and_poster() -> None:
    html = to_html('[a](../x.html) ![i](img/p.png)\n\n<img srcset="s.png 1x, /l.png 2x" src="s.png">\n\n'
                   '<video poster="v.jpg" src="v.mp4"></video>', BASE)
    assert 'href="https://blog.example.com/2025/12/x.html"' in html
    assert 'src="https://blog.example.com/2025/12/16/img/p.png"' in html
    assert 'srcset="https://blog.example.com/2025/12/16/s.png 1x, https://blog.example.com/l.png 2x"' in html
    assert 'poster="https://blog.example.com/2025/12/16/v.jpg"' in html


@pytest.mark.parametrize("attack", [
    "<script>alert(1)</script>",
    '<a href="javascript:alert(1)">x</a>',
    '<img src="x.png" onerror="alert(1)">',
    '<iframe src="https://evil.example"></iframe>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
])
def test_sanitised(attack: str) -> None:
    html = to_html(f"text\n\n{attack}\n", BASE).lower()
    assert "alert" not in html.replace("alert(1)</", "") or "<script" not in html
    assert "<script" not in html and "javascript:" not in html and "onerror" not in html and "<iframe" not in html


def test_formatting_tables_and_code_survive() -> None:
    html = to_html("| a | b |\n|---|---|\n| 1 | 2 |\n\n*em* `code`\n\n> quote\n", BASE)
    for fragment in ("<table>", "<td>1</td>", "<em>em</em>", ">code</code>", "<blockquote>"):
        assert fragment in html


def test_excerpt_rendering_and_plain_text(site) -> None:
    site.post("2025-12-01-x.md", '---\ntitle: x\nexcerpt: "**要約** [link](/a)"\n---\nbody\n')
    posts = collect(site.config, now=NOW).posts
    [result], _ = render_posts(site.config, posts)
    assert result.excerpt_html == '<p><strong>要約</strong> <a href="https://blog.example.com/a">link</a></p>'
    assert result.excerpt_text == "要約 link"



@pytest.mark.parametrize(("markdown", "expected"), [
    ("It is twice as **fast**. Run `feedpub init`. Replace it.", "It is twice as fast. Run feedpub init. Replace it."),
    ("written by `feedpub init`, then *edited*: done", "written by feedpub init, then edited: done"),
    ("*速く*なった。`feedpub init`で始めて、[リンク](/a)を押す。", "速くなった。feedpub initで始めて、リンクを押す。"),
    ("日本語の文は\n途中で改行しても\n続きます。", "日本語の文は途中で改行しても続きます。"),
    ("An English line\nwraps with a space.", "An English line wraps with a space."),
    ("一行目\\\n二行目", "一行目\n二行目"),
    ("Paragraph one.\n\n- item *one*\n- 項目二\n\n> quoted `<b>` text",
     "Paragraph one.\nitem one\n項目二\nquoted <b> text"),
])
def test_plain_text_joins_inline_elements_without_inventing_spaces(markdown: str, expected: str) -> None:
    # The JSON Feed summary and the mail's text part: as the HTML reads, not with a space per tag edge.
    assert html_to_text(to_html(markdown, BASE)) == expected


def test_plain_text_keeps_a_line_break() -> None:
    assert html_to_text("a<br>b") == "a\nb"
    assert html_to_text("<p>before<!-- note --> after &amp; more</p>") == "before after & more"
    assert html_to_text("") == ""


@pytest.mark.parametrize(("text", "limit", "expected"), [
    ("短い。", 120, "短い。"),
    ("第一文です。第二文はとても長くて、制限を越えてしまうかもしれない文章になっています。", 20,
     "第一文です。第二文はとても長くて、制限…"),
    ("前半の文はここで終わる。後半は続く続く続く続く続く", 16, "前半の文はここで終わる。"),
    ("One sentence here. Another that runs on past the limit.", 30, "One sentence here."),
    ("No sentence end within the limit at all here", 20, "No sentence end…"),
    ("Version 3.5 is out and everyone is talking", 20, "Version 3.5 is out…"),
])
def test_cut_excerpt(text: str, limit: int, expected: str) -> None:
    assert cut_excerpt(text, limit) == expected
    assert len(cut_excerpt(text, limit)) <= limit
