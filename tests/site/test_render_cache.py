"""The render cache is keyed by a post's text and the site data its Liquid reads: a post is run through
Liquid and Markdown again exactly when one of those changed, and the feeds are byte-identical to a cold build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from feedpub.config_file import load_config
from feedpub.site import markup
from feedpub.site.build import build_site

FILES = {
    "_config.yml": "title: 技術ブログ\nurl: https://blog.example.com\ntimezone: Asia/Tokyo\ngithub_username: hanako\n",
    "_includes/note.html": '<aside class="note">{{ include.text }}</aside>',
    "_posts/2025-12-01-title.md": "---\ntitle: Reads the title\n---\nWelcome to {{ site.title }}.\n",
    "_posts/2025-12-02-include.md": "---\ntitle: インクルード\n---\n本文。\n\n{% include note.html text=\"注意\" %}\n",
    "_posts/2025-12-03-code.md": ("---\ntitle: Code only\n---\nHow to print:\n\n"
                                  "{% highlight python %}\nprint('こんにちは')\n{% endhighlight %}\n"),
    "_posts/2025-12-04-plain.md": "---\ntitle: 普通の記事\n---\n**推論性能35%**向上。\n",
}


@pytest.fixture
def blog(tmp_path: Path) -> Path:
    for name, text in FILES.items():
        path = tmp_path / "blog" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (tmp_path / "feedpub.toml").write_text('[site]\njekyll_dir = "blog"\n[feeds]\ncategories = false\n',
                                           encoding="utf-8")
    return tmp_path


@pytest.fixture
def rendered(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A file listing the titles of the posts whose Markdown a build converts (the real conversion runs, in the
    rendering child processes: hence a file)."""
    titles = tmp_path / "converted.txt"
    convert = markup._convert

    def recording(key, post, *args):  # noqa: ANN001, ANN002, ANN202 - markup's private arguments
        with titles.open("a", encoding="utf-8") as file:
            file.write(post.title + "\n")
        return convert(key, post, *args)

    monkeypatch.setattr(markup, "_convert", recording)
    return titles


def rebuild(root: Path, rendered: Path) -> set[str]:
    """Build with the cache; check the bytes against a build without it; the posts rendered again."""
    rendered.write_text("", encoding="utf-8")
    config = load_config(root / "feedpub.toml")
    build_site(config)
    again = set(rendered.read_text(encoding="utf-8").splitlines())
    build_site(config, output=root / "cold", use_cache=False)
    assert tree(root / "public") == tree(root / "cold")
    return again


def tree(output: Path) -> dict[str, bytes]:
    return {str(p.relative_to(output)): p.read_bytes() for p in sorted(output.rglob("*")) if p.is_file()}


def edit(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")


def test_a_post_reading_site_title_renders_again_when_config_yml_changes_it_and_not_otherwise(blog, rendered) -> None:
    assert rebuild(blog, rendered) == {"Reads the title", "インクルード", "Code only", "普通の記事"}
    assert rebuild(blog, rendered) == set()
    # a key the title post does not read: only the include (which may read anything) renders again
    edit(blog / "blog/_config.yml", "hanako", "taro")
    assert rebuild(blog, rendered) == {"インクルード"}
    # another post's text below its excerpt: only that post (the include could show the excerpt, not the rest)
    edit(blog / "blog/_posts/2025-12-04-plain.md", "向上。\n", "向上。\n\n追記。\n")
    assert rebuild(blog, rendered) == {"普通の記事"}
    edit(blog / "blog/_posts/2025-12-04-plain.md", "向上。", "向上した。")
    assert rebuild(blog, rendered) == {"普通の記事", "インクルード"}
    edit(blog / "blog/_config.yml", "技術ブログ", "Tech blog")
    assert rebuild(blog, rendered) == {"Reads the title", "インクルード"}
    assert "Welcome to Tech blog." in (blog / "public/feed.xml").read_text(encoding="utf-8")


def test_a_post_reading_an_include_renders_again_when_the_include_changes(blog, rendered) -> None:
    rebuild(blog, rendered)
    edit(blog / "blog/_includes/note.html", "aside", "div")
    assert rebuild(blog, rendered) == {"インクルード"}
    assert '&lt;div class="note"&gt;注意&lt;/div&gt;' in (blog / "public/feed.xml").read_text(encoding="utf-8")


def test_a_post_reading_one_data_file_renders_again_only_when_that_file_changes(blog, rendered) -> None:
    files = {"_data/team.yml": "lead: 花子\n", "_data/links.yml": "- /docs/\n",
             "_posts/2025-12-05-data.md": "---\ntitle: Team\n---\nLead: {{ site.data.team.lead }}.\n"}
    for name, text in files.items():
        (blog / "blog" / name).parent.mkdir(exist_ok=True)
        (blog / "blog" / name).write_text(text, encoding="utf-8")
    rebuild(blog, rendered)
    edit(blog / "blog/_data/links.yml", "/docs/", "/guide/")
    assert rebuild(blog, rendered) == {"インクルード"}
    edit(blog / "blog/_data/team.yml", "花子", "Bob")
    assert rebuild(blog, rendered) == {"Team", "インクルード"}
    assert "Lead: Bob." in (blog / "public/feed.xml").read_text(encoding="utf-8")


def test_a_build_that_renders_no_liquid_does_not_import_python_liquid(blog) -> None:
    command = [sys.executable, "-X", "importtime", "-m", "feedpub", "--config", str(blog / "feedpub.toml"), "build"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    first = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    assert " liquid\n" in first.stderr   # the cold build runs the Liquid of three posts
    edit(blog / "blog/_posts/2025-12-04-plain.md", "向上。\n", "向上。\n\n追記。\n")
    again = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    assert "追記。" in (blog / "public/feed.xml").read_text(encoding="utf-8")
    assert "liquid" not in again.stderr.replace("feedpub.site.liquid", "")
