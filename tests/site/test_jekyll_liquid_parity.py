"""The same small Jekyll site built by Debian's Jekyll (with jekyll-feed) and by feedpub pointed at it: every
post's feed content reads the same (text with tags stripped and whitespace collapsed, similarity ≥ 0.98),
titles and links agree, and no Liquid is left. Skipped only when Jekyll is not installed."""

from __future__ import annotations

import difflib
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import lxml.html
import pytest
from lxml import etree

from feedpub.config_file import load_config
from feedpub.site.build import build_site

JEKYLL = shutil.which("jekyll")
ATOM = "{http://www.w3.org/2005/Atom}"
FILES = {
    "_config.yml": "title: Parity\nurl: https://blog.example.com\nbaseurl: /blog\ntimezone: Asia/Tokyo\n"
                   "plugins: [jekyll-feed]\nrepository: example/parity\nfeed:\n  categories: [news]\n",
    "_data/team.yml": "lead: 花子\nmembers: [alice, bob, carol]\n",
    "_data/links.csv": "name,url\nHome,/\nDocs,/docs/\n",
    "_includes/note.html": '<aside class="note">{{ include.text }} ({{ page.title }})</aside>',
    "_posts/2025-12-01-liquid.md": """\
---
title: Liquid everywhere
categories: [news]
tags: [liquid, jekyll]
---
Lead {{ site.data.team.lead }} of {{ site.repository }}, on {{ site.title }}.

{% assign n = site.data.team.members | size %}{% capture c %}{{ n }} members{% endcapture %}{{ c }}:
{% for m in site.data.team.members reversed limit:2 %}[{{ m | capitalize }}]{% endfor %}
{% if n > 2 %}big team{% else %}small team{% endif %}{% unless n == 3 %} never{% endunless %}
{% case n %}{% when 3 %}three{% else %}other{% endcase %}

{% include note.html text="注意してください" %}

{% highlight ruby linenos %}
def answer
  1 < 2
end
{% endhighlight %}

{{ page.tags | array_to_sentence_string }} · {{ page.date | date_to_long_string }} · {{ "Hello World" | slugify }}
· {{ "a & b" | xml_escape }} · {{ "/about/" | relative_url }} · {{ "/x" | absolute_url }}
· {{ site.data.links | map: "name" | join: "/" }} · {{ "  a   b " | normalize_whitespace }}
· {% raw %}{{ kept }}{% endraw %}
{% comment %}Never shown.{% endcomment %}
""",
    "_posts/2025-12-05-japanese.md": """\
---
title: 日本語の投稿
categories: [news]
---
前の記事は[こちら]({% post_url 2025-12-01-liquid %})です。{{ page.title }}の本文。

{% for post in site.posts %}{% if post.title != page.title %}* {{ post.title }} ({{ post.date | date: "%Y-%m-%d" }})
{% endif %}{% endfor %}
{{ "日本語 と English" | number_of_words }}語。
""",
    # Straight quotes, "--" and "..." in the text itself are left out: kramdown's typographic conversion of
    # them is the Markdown renderer's business (issue 14, item 3), not Liquid's.
    "_posts/2025-12-10-filters.md": """\
---
title: Filters compared
categories: [news]
tags: [b, a]
rank: 3
---
{{ site.posts | where: "title", "日本語の投稿" | map: "url" | first }}
{{ site.posts | where_exp: "p", "p.title contains 'Liquid'" | map: "title" | join: "," }}
{% assign groups = site.posts | group_by: "rank" %}{% for g in groups %}{{ g.name }}={{ g.size }};{% endfor %}
{{ site.posts | sort: "title" | map: "title" | join: " / " }} {{ page.rank | jsonify }}
{{ "Hi *there*, done" | markdownify }}
{{ 'It is "smart" -- really...' | smartify }} {{ page.date | date_to_xmlschema }}
{{ "foo, bar;baz?" | cgi_escape }} {{ "/my file/日本" | uri_escape }} {{ "日本語の文 and words" | number_of_words }}
{{ "Hello, World!" | slugify: "pretty" }} {{ page.date | date_to_string: "ordinal", "US" }} {{ page.date }}
""",
}


def entries(atom: bytes) -> dict[str, tuple[str, str]]:
    """Entry link → (title, content as text with whitespace collapsed)."""
    root = etree.fromstring(atom)
    found = {}
    for entry in root.iter(f"{ATOM}entry"):
        link = next(e.get("href") for e in entry.iter(f"{ATOM}link") if e.get("rel", "alternate") == "alternate")
        content = entry.findtext(f"{ATOM}content") or ""
        text = lxml.html.fromstring(f"<div>{content}</div>").text_content()
        found[link] = (entry.findtext(f"{ATOM}title"), re.sub(r"\s+", " ", text).strip())
    return found


@pytest.mark.skipif(JEKYLL is None, reason="Debian's jekyll is not installed")
def test_feed_content_matches_jekyll_feed(tmp_path: Path) -> None:
    blog = tmp_path / "blog"
    for name, text in FILES.items():
        (blog / name).parent.mkdir(parents=True, exist_ok=True)
        (blog / name).write_text(text, encoding="utf-8")
    built = subprocess.run([JEKYLL, "build", "--quiet", "--source", str(blog),
                            "--destination", str(tmp_path / "_site")], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (tmp_path / "feedpub.toml").write_text('[site]\njekyll_dir = "blog"\n', encoding="utf-8")
    report = build_site(load_config(tmp_path / "feedpub.toml"), now=datetime(2026, 1, 1, tzinfo=UTC))
    assert report.problems == ()

    for path in ("feed.xml", "feed/news.xml"):
        theirs = entries((tmp_path / "_site" / path).read_bytes())
        ours = entries((tmp_path / "public" / path).read_bytes())
        assert sorted(ours) == sorted(theirs) and len(ours) == 3
        for link, (title, text) in theirs.items():
            assert ours[link][0] == title
            similarity = difflib.SequenceMatcher(None, ours[link][1], text).ratio()
            assert similarity >= 0.98, f"{link}: {similarity:.3f}\njekyll:  {text}\nfeedpub: {ours[link][1]}"
            assert "{%" not in ours[link][1] and "Never shown" not in ours[link][1]
