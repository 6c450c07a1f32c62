"""Liquid in posts as Jekyll renders it: every tag and filter, the site and page variables, includes, lax
unknowns (a warning naming file and line, nothing in the output) and the sandbox. What is checked is the
HTML a feed shows for the post."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from feedpub.site.build import build_site
from feedpub.site.markup import render_posts
from feedpub.site.posts import collect

NOW = datetime(2026, 1, 1, tzinfo=UTC)
OTHER = """\
---
title: "Deploy guide"
date: 2025-12-05 10:00:00 +0900
categories: [engineering]
tags: [python, ops]
rank: 2
---
Deploy body.
"""


def render(site, body: str, front: str = "") -> tuple[str, list[str]]:
    """The feed HTML of a post with `body`, beside one other post; the warnings as printed."""
    site.post("2025-12-05-deploy.md", OTHER)
    site.post("2025-12-16-post.md", f"---\ntitle: 投稿 \"quoted\"\ncategories: [ai, news]\ntags: [llm]\n{front}---\n"
                                    f"{body}")
    posts = collect(site.config, now=NOW).posts
    results, warnings = render_posts(site.config, [p for p in posts if p.title.startswith("投稿")], site_posts=posts)
    return results[0].html, [str(w) for w in warnings]


def paragraph(site, expression: str) -> str:
    html, warnings = render(site, f"{expression}\n")
    assert not warnings, warnings
    assert html.startswith("<p>") and html.endswith("</p>"), html
    return html[3:-4]


def test_control_flow_tags(site) -> None:
    body = """\
{% assign count = 2 %}{% capture greeting %}こんにちは {{ page.title | split: " " | first }}{% endcapture %}
{{ greeting }}
{% if count > 1 %}big{% else %}small{% endif %} {% unless count == 2 %}never{% endunless %}
{% case page.categories.first %}{% when "ai" %}AI post{% else %}other{% endcase %}
{% for i in (1..6) reversed limit: 3 offset: 1 %}[{{ i }}{% if forloop.last %}!{% endif %}]{% endfor %}
{% comment %}hidden {{ page.title }}{% endcomment %}{% raw %}{{ shown }} {% if %}{% endraw %}
"""
    html, warnings = render(site, body)
    assert warnings == []
    assert html == ("<p>こんにちは 投稿\nbig \nAI post\n[4][3][2!]\n&#123;{ shown }} &#123;% if %}</p>")


@pytest.mark.parametrize(("expression", "expected"), [
    ('{{ "/about/" | relative_url }}', "/blog/about/"),
    ('{{ "/about/" | absolute_url }}', "https://blog.example.com/blog/about/"),
    ('{{ "https://x.example/a" | relative_url }}', "https://x.example/a"),
    ("{{ page.date }}", "2025-12-16 00:00:00 +0900"),   # as Ruby prints a Time
    ("{{ page.date | date_to_xmlschema }}", "2025-12-16T00:00:00+09:00"),
    ("{{ page.date | date_to_rfc822 }}", "Tue, 16 Dec 2025 00:00:00 +0900"),
    ("{{ page.date | date_to_string }}", "16 Dec 2025"),
    ('{{ page.date | date_to_string: "ordinal", "US" }}', "Dec 16th, 2025"),
    ("{{ page.date | date_to_long_string }}", "16 December 2025"),
    ('{{ page.date | date: "%Y年%m月" }}', "2025年12月"),
    ('{{ "a < b & \'c\'" | xml_escape }}', "a &lt; b &amp; \u2018c\u2019"),   # then kramdown's quotes
    ('{{ "foo, bar;baz?" | cgi_escape }}', "foo%2C+bar%3Bbaz%3F"),
    ('{{ "/my file/日本" | uri_escape }}', "/my%20file/%E6%97%A5%E6%9C%AC"),
    ('{{ "The _config.yml file" | slugify }}', "the-config-yml-file"),
    ('{{ "The _config.yml file" | slugify: "pretty" }}', "the-_config.yml-file"),
    ('{{ "AI導入 戦略" | slugify }}', "ai導入-戦略"),
    ('{{ "Hi *there*" | markdownify }}', "Hi <em>there</em>"),   # Jekyll's <p>, kept as the paragraph
    ("{{ 'Use \"quotes\" -- and ...' | smartify }}", "Use \u201cquotes\u201d \u2013 and \u2026"),
    ("{{ page.tags | jsonify }}", "[\u201cllm\u201d]"),
    ('{{ site.posts | where: "title", "Deploy guide" | map: "rank" | first }}', "2"),
    ('{{ site.posts | where: "categories", "engineering" | size }}', "1"),
    ('{{ site.posts | where_exp: "p", "p.rank > 1" | map: "title" | join: "," }}', "Deploy guide"),
    ('{% assign g = site.posts | group_by: "rank" %}{{ g | map: "name" | join: "," }}', ",2"),
    ('{% assign g = site.posts | group_by: "rank" %}{{ g.last.items.first.title }}', "Deploy guide"),
    ('{{ site.posts | sort: "rank", "last" | map: "slug" | join: "," }}', "deploy,post"),
    ('{{ site.posts | sort: "rank" | map: "slug" | join: "," }}', "post,deploy"),
    ("{{ page.tags | sample }}", "llm"),
    ('{{ "one two  three" | number_of_words }}', "3"),
    ('{{ "日本語の文 and words" | number_of_words: "cjk" }}', "7"),
    ('{{ page.categories | array_to_sentence_string }}', "ai and news"),
    ('{{ "a,b,c" | split: "," | array_to_sentence_string: "or" }}', "a, b, or c"),
    ('{{ "  lots \n of   space " | normalize_whitespace }}', "lots of space"),
    ('{{ page.tags | push: "new" | join: "+" }}', "llm+new"),
    ('{{ "Hello" | append: " world" | upcase | truncate: 8 }}', "HELLO\u2026"),
])
def test_jekyll_and_standard_filters(site, expression: str, expected: str) -> None:
    site.configure(baseurl="/blog")
    assert paragraph(site, expression) == expected


def test_page_variables(site) -> None:
    # ";" between the values: a line of "|" would be a kramdown table.
    expression = ("{{ page.url }};{{ page.id }};{{ page.slug }};{{ page.path }};{{ page.categories | join: ',' }};"
                  "{{ page.tags | join: ',' }};{{ page.mood }};{{ page.date | date: '%F %H:%M %z' }};{{ page.title }}")
    html, warnings = render(site, expression, front="mood: 晴れ\n")
    assert warnings == []
    assert html == ("<p>/ai/news/2025/12/16/post.html;/ai/news/2025/12/16/post;post;posts/2025-12-16-post.md;ai,news;"
                    "llm;晴れ;2025-12-16 00:00 +0900;投稿 \u201cquoted\u201d</p>")


def test_site_posts_and_links(site) -> None:
    (site.root / "about.md").write_text("---\ntitle: About\n---\nAbout.\n", encoding="utf-8")
    body = ("{% for p in site.posts %}{{ p.title }}@{{ p.url }};{% endfor %}\n"
            "{{ site.categories.engineering.size }} {{ site.tags.python.first.title }} {{ site.time | date: '%F' }}\n"
            "{% post_url 2025-12-05-deploy %} {% link about.md %} {% link 2025-12-05-deploy.md %}\n"
            "{% link posts/2025-12-05-deploy.md %}\n")
    html, warnings = render(site, body)
    assert warnings == []
    assert html == ("<p>投稿 \u201cquoted\u201d@/ai/news/2025/12/16/post.html;"
                    "Deploy guide@/engineering/2025/12/05/deploy.html;\n"
                    "1 Deploy guide 2025-12-16\n"
                    "/engineering/2025/12/05/deploy.html /about.html /engineering/2025/12/05/deploy.html\n"
                    "/engineering/2025/12/05/deploy.html</p>")


def test_highlight_gives_jekylls_html(site) -> None:
    html, warnings = render(site, "Before\n\n{% highlight python %}\nif a < b:\n    print('{{ page.slug }}')\n"
                                  "{% endhighlight %}\n\nAfter\n")
    assert warnings == []
    assert html == ('<p>Before</p>\n<figure class="highlight"><pre><code class="language-python">if a &lt; b:\n'
                    "    print('post')</code></pre></figure>\n\n<p>After</p>")


def jekyll_site(site, files: dict[str, str]) -> Path:
    """A Jekyll site folder beside the posts, named by site.jekyll_dir."""
    root = site.root / "jekyll"
    for name, text in {"_config.yml": "title: Jekyll title\n", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    site.configure(jekyll_dir="jekyll", posts_dir="posts")
    return root


def test_config_custom_keys_and_data_files(site) -> None:
    jekyll_site(site, {
        "_config.yml": "title: Jekyll title\nrepository: jekyll/jekyll\nsocial: {mastodon: '@me'}\n",
        "_data/members.yml": "- name: 花子\n  role: editor\n- name: Bob\n  role: writer\n",
        "_data/shop/prices.json": '{"tea": 300}',
        "_data/links.csv": "name,url\nHome,/\nDocs,/docs/\n",
    })
    body = ("{{ site.title }} {{ site.repository }} {{ site.social.mastodon }}\n"
            "{% for m in site.data.members %}{{ m.name }}({{ m.role }}) {% endfor %}\n"
            "{{ site.data.shop.prices.tea }} {{ site.data.links | map: 'url' | join: ' ' }}\n")
    html, warnings = render(site, body)
    assert warnings == []
    # feedpub.toml's title wins over _config.yml's
    assert html == "<p>Test blog jekyll/jekyll @me\n花子(editor) Bob(writer) \n300 / /docs/</p>"


def test_includes_with_parameters_and_relative_includes(site) -> None:
    # Without site.jekyll_dir the site folder is the config's: _includes/ beside feedpub.toml.
    for name, text in {"note.html": '<aside class="{{ include.kind }}">{{ include.text }} — {{ page.slug }}</aside>\n',
                       "nested/wrap.md": "{% include note.html kind=include.kind text='内側' %}"}.items():
        (site.root / "_includes" / name).parent.mkdir(parents=True, exist_ok=True)
        (site.root / "_includes" / name).write_text(text, encoding="utf-8")
    site.post("snippets/table.md", "| a | b |\n|---|---|\n| {{ page.slug }} | 2 |\n")
    body = ('{% include note.html kind="tip" text=page.title %}\n\n'
            "{% assign which = 'note' %}{% include {{ which }}.html text='変数で選ぶ' kind='x' %}\n\n"
            "{% include nested/wrap.md kind='warn' %}\n\n"
            "{% include_relative snippets/table.md %}\n")
    html, warnings = render(site, body)
    assert warnings == []
    assert '<aside class="tip">投稿 "quoted" — post</aside>' in html      # an HTML block: no smart quotes
    assert '<aside class="warn">内側 — post</aside>' in html
    assert '<aside class="x">変数で選ぶ — post</aside>' in html
    assert "<td>post</td>" in html


@pytest.mark.parametrize("tag", [
    "{% include ../../../../../../etc/passwd %}",
    "{% include /etc/passwd %}",
    "{% include_relative ../../../../../../etc/passwd %}",
    "{% include_relative ../feedpub.toml %}",
    "{% include link-out.html %}",
])
def test_includes_never_read_outside_the_site(site, tag: str) -> None:
    root = jekyll_site(site, {"_includes/ok.html": "ok"})
    (site.root / "secret.txt").write_text("root:x:0:0 SECRET", encoding="utf-8")
    (root / "_includes" / "link-out.html").symlink_to(site.root / "secret.txt")
    html, warnings = render(site, f"Before\n\n{tag}\n\nAfter\n")
    assert html == "<p>Before</p>\n<p>After</p>"
    assert "root:" not in html and "SECRET" not in html and "[site]" not in html
    assert len(warnings) == 1 and "posts/2025-12-16-post.md:8: warning: Liquid: {% include" in warnings[0]


def test_lax_unknowns_warn_with_file_and_line_and_render_nothing(site) -> None:
    body = "one\n\n{% seo %}\n\n{{ page.missing }};{{ 'x' | no_such_filter }}\n\ntwo\n"
    html, warnings = render(site, body)
    assert html == "<p>one</p>\n<p>;x</p>\n<p>two</p>"
    assert warnings == [
        "posts/2025-12-16-post.md:8: warning: Liquid tag {% seo %} is unknown and was rendered as nothing "
        "(expected a Jekyll tag (raw, highlight, include, post_url, link, assign, capture, if, unless, case, for …))",
        "posts/2025-12-16-post.md:10: warning: Liquid variable 'page.missing' is not defined and was rendered as "
        "nothing (expected a site., page., include. or assigned variable)",
        "posts/2025-12-16-post.md:10: warning: Liquid filter 'no_such_filter' is unknown and was skipped "
        "(expected a Liquid or Jekyll filter)",
    ]


def test_a_warning_inside_an_include_names_the_include_file(site) -> None:
    jekyll_site(site, {"_includes/card.html": "line one\n{{ include.nope }}\n"})
    html, warnings = render(site, "Intro\n\n{% include card.html %}\n")
    assert "line one" in html
    assert warnings == ["_includes/card.html:2: warning: Liquid variable 'include.nope' is not defined and was "
                        "rendered as nothing (expected a site., page., include. or assigned variable)"]


@pytest.mark.parametrize(("body", "warning"), [
    ("{% for i in (1..100000000) %}{% for j in (1..100000000) %}x{% endfor %}{% endfor %}",
     "Liquid stopped: loop iteration limit reached"),
    ("{% for i in (1..150000) %}{{ 'many bytes of output' }}{% endfor %}", "Liquid stopped: output stream limit"),
    ("{% assign s = 'xxxxxxxxxx' %}{% for i in (1..40) %}{% assign s = s | append: s %}{% endfor %}{{ s | size }}",
     "Liquid stopped"),
    ("{% include loop.html %}", "Liquid stopped: maximum context depth reached"),   # named in the include
    ("{% for i in (1..100000) %}{{ site.posts | sort: 'title' | where_exp: 'p', 'p.title.size > 1' | size }}"
     "{% endfor %}", "Liquid stopped: render time limit of 4 s reached"),
])
def test_runaway_liquid_is_stopped_and_the_post_published_without_it(site, body: str, warning: str) -> None:
    jekyll_site(site, {"_includes/loop.html": "again {% include loop.html %}"})
    started = time.monotonic()
    html, warnings = render(site, f"Kept text.\n\n{body}\n")
    assert time.monotonic() - started < 30
    assert html.startswith("<p>Kept text.</p>") and "{" not in html and len(html) < 100
    where = "_includes/loop.html:1" if "include" in body else "posts/2025-12-16-post.md:8"
    assert len(warnings) == 1 and warnings[0].startswith(f"{where}: warning: {warning}"), warnings


def test_the_time_limit_holds_in_the_daemons_threads(site) -> None:
    """`feedpub run` builds in a worker thread: Liquid's own limit, checked at every filter, holds there too."""
    # Far more than 4 s of filters (the loop and its output stay under their own bounds): only the time limit stops it.
    body = ("{% for i in (1..150000) %}{{ site.posts | where_exp: 'p', 'p.title.size > 1' | map: 'title' "
            "| join: ',' | split: ',' | size }}{% endfor %}")
    with ThreadPoolExecutor(1) as pool:
        html, warnings = pool.submit(render, site, f"Kept text.\n\n{body}\n").result(timeout=60)
    assert html.startswith("<p>Kept text.</p>") and "{" not in html
    assert warnings == ["posts/2025-12-16-post.md:8: warning: Liquid stopped: render time limit of 4 s reached; "
                        "the post is published without its Liquid (expected a loop, include or output of a "
                        "reasonable size)"]


def test_a_post_reading_other_posts_is_rebuilt_when_they_change(site) -> None:
    site.configure(extra="[feeds]\ncategories = false\nformats = [\"json\"]\n")
    site.post("2025-12-16-index.md", "---\ntitle: Index\n---\n{% for p in site.posts %}* {{ p.title }}\n{% endfor %}")
    site.post("2025-12-01-first.md", "---\ntitle: First\n---\nFirst body.\n")
    build_site(site.config, now=NOW)
    site.post("2025-12-02-second.md", "---\ntitle: Second\n---\nSecond body.\n")
    build_site(site.config, now=NOW)
    index = [item for item in _items(site) if item["title"] == "Index"][0]
    assert "<li>Second</li>" in index["content_html"]


def test_a_post_reading_only_site_settings_is_not_rebuilt_for_another_post(site) -> None:
    site.configure(extra="[feeds]\nformats = [\"json\"]\n")
    site.post("2025-12-16-home.md",
              "---\ntitle: Home\ncategories: [home]\n---\n[Top]({{ site.baseurl }}/) of {{ site.title }}\n")
    site.post("2025-12-17-index.md", "---\ntitle: Index\ncategories: [index]\n---\n{{ site.posts | size }} posts\n")
    build_site(site.config, now=NOW)
    site.post("2025-12-18-news.md", "---\ntitle: News\ncategories: [news]\n---\nNews body.\n")
    written = build_site(site.config, now=NOW).written.written
    assert "categories/home/feed.json" not in written
    assert {"categories/index/feed.json", "categories/news/feed.json", "feed.json"} <= set(written)


def test_a_post_reading_data_is_rebuilt_when_the_data_changes(site) -> None:
    root = jekyll_site(site, {"_data/team.yml": "lead: 花子\n"})
    site.configure(jekyll_dir="jekyll", posts_dir="posts", extra="[feeds]\nformats = [\"json\"]\n")
    site.post("2025-12-16-team.md", "---\ntitle: Team\n---\nLead: {{ site.data.team.lead }}\n")
    build_site(site.config, now=NOW)
    (root / "_data" / "team.yml").write_text("lead: 太郎さん\n", encoding="utf-8")   # another size: same-tick mtimes
    build_site(site.config, now=NOW)
    assert _items(site)[0]["content_html"] == "<p>Lead: 太郎さん</p>"


def _items(site) -> list[dict]:
    return json.loads((site.root / "public" / "feed.json").read_text(encoding="utf-8"))["items"]
