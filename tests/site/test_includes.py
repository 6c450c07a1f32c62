"""`include` and `include_relative` read only text files of the site's own sources: with the posts beside
feedpub.toml (`posts_dir = "."`) and in a Jekyll site, the config, the DKIM key, the store, dot-files, files
outside the site (by `..` or a symbolic link), `_site/` and binary files are refused with a warning naming the
post and the line, the rest of the post is published, and no byte of the refused file reaches a feed."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from feedpub.cli import main

DKIM_KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
CONFIG = """\
[site]
title = "秘密のないブログ"
url = "https://blog.example.com"
timezone = "Asia/Tokyo"
posts_dir = "{posts_dir}"
{jekyll}
[feeds]
categories = false

[store]
url = "sqlite:///{store}"

[smtp.dkim]
domain = "blog.example.com"
selector = "feedpub2026"
key_file = "{key}"
"""
# Each secret holds a marker that must never be in a feed.
SECRETS = {".env": "SMTP_PASSWORD=DOTENV-SECRET\n", "notes/server.pem": "-----BEGIN PEM-SECRET-----\n",
           ".feedpub/token.txt": "FEEDPUB-FOLDER-SECRET\n", "_site/draft.html": "JEKYLL-OUTPUT-SECRET\n",
           "public/private.txt": "OUTPUT-FOLDER-SECRET\n"}
MARKERS = ("hunter2", "PRIVATE KEY", "STORE-SECRET", "DOTENV-SECRET", "PEM-SECRET", "FEEDPUB-FOLDER-SECRET",
           "JEKYLL-OUTPUT-SECRET", "OUTPUT-FOLDER-SECRET", "OUTSIDE-SECRET", "BINARY-SECRET", "SQLite format")


def site_with_secrets(tmp_path: Path, posts: str) -> tuple[Path, Path]:
    """A site whose posts folder `posts` (below the site) holds a post and every kind of secret beside it: the
    site folder and the post's folder."""
    root = tmp_path / "site"
    jekyll = posts != "."
    (root / "dkim").mkdir(parents=True)
    (root / "dkim" / "feedpub2026.key").write_bytes(DKIM_KEY)     # where the README suggests
    (root / "feedpub.toml").write_text(CONFIG.format(
        posts_dir=".", jekyll='jekyll_dir = "."' if jekyll else "", store="feedpub.db",
        key="dkim/feedpub2026.key").replace("[site]", "[site]\n# password hunter2"), encoding="utf-8")
    if jekyll:
        (root / "_config.yml").write_text("title: Jekyll のブログ\n", encoding="utf-8")
    feedpub_build(root)     # makes the store, to which a secret is added
    with sqlite3.connect(root / "feedpub.db") as db:
        db.execute("CREATE TABLE notes (text TEXT)")
        db.execute("INSERT INTO notes VALUES ('STORE-SECRET')")
    db.close()
    for name, text in SECRETS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    (tmp_path / "outside.txt").write_text("OUTSIDE-SECRET\n", encoding="utf-8")
    (root / "_includes").mkdir()
    (root / "_includes" / "card.html").write_text("<aside>{{ include.text }}</aside>\n", encoding="utf-8")
    folder = root / posts
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "snippet.txt").write_text("隣のファイルから。\n", encoding="utf-8")
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR BINARY-SECRET")
    (folder / "outside-link.txt").symlink_to(tmp_path / "outside.txt")
    (folder / "config-link.txt").symlink_to(root / "feedpub.toml")
    return root, folder


def feedpub_build(root: Path) -> Result:
    """`feedpub build`, its exit code checked."""
    result = CliRunner().invoke(main, ["--config", str(root / "feedpub.toml"), "build"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result


def build(root: Path) -> tuple[list[str], list[str]]:
    """`feedpub build`: the Atom, RSS and JSON feeds, the warnings printed."""
    stderr = feedpub_build(root).stderr
    feeds = [(root / "public" / name).read_bytes().decode("utf-8") for name in ("feed.xml", "rss.xml", "feed.json")]
    return feeds, [line for line in stderr.splitlines() if ": warning: " in line]


def from_root(folder: Path, root: Path, name: str) -> str:
    """`name` (relative to the site folder) as include_relative names it from a post in `folder`."""
    return "../" * len(folder.relative_to(root).parts) + name


@pytest.mark.parametrize("posts", [".", "_posts"])
@pytest.mark.parametrize(("target", "refusal"), [
    ("feedpub.toml", "feedpub.toml is feedpub's config file"),
    ("config-link.txt", "config-link.txt is feedpub's config file"),
    ("dkim/feedpub2026.key", "feedpub2026.key is the DKIM key (smtp.dkim.key_file)"),
    ("feedpub.db", "feedpub.db is feedpub's store (store.url)"),
    (".env", ".env is a dot-file or in a dot-folder"),
    (".feedpub/token.txt", "token.txt is in feedpub's own folder .feedpub/"),
    ("notes/server.pem", "server.pem is a key file"),
    ("_site/draft.html", "draft.html is in _site/, Jekyll's output"),
    ("public/private.txt", "private.txt is in the output folder (feeds.output_dir)"),
    ("../outside.txt", "invalid syntax for include tag, the file name contains invalid characters or sequences"),
    ("outside-link.txt", "could not locate the included file in the post's folder; a file outside it, or a "
                         "symbolic link pointing outside it, is never read"),
    ("logo.png", "logo.png is a binary file"),
])
def test_include_relative_never_publishes_what_is_not_the_sites_own_text(tmp_path: Path, posts: str, target: str,
                                                                        refusal: str) -> None:
    root, folder = site_with_secrets(tmp_path, posts)
    beside = target in ("config-link.txt", "outside-link.txt", "logo.png", "../outside.txt")
    name = target if beside or posts == "." else from_root(folder, root, target)
    if posts != "." and not beside:
        refusal = "invalid syntax for include tag, the file name contains invalid characters or sequences"
    if posts != "." and target == "config-link.txt":    # _posts/config-link.txt leads out of _posts/
        refusal = "could not locate the included file in the post's folder"
    (folder / "2025-12-16-post.md").write_text(
        f"---\ntitle: 投稿\n---\nBefore.\n\n{{% include_relative {name} %}}\n\n{{% include_relative snippet.txt %}}"
        "\n\n{% include card.html text=\"注意\" %}\n\nAfter.\n", encoding="utf-8")
    feeds, warnings = build(root)
    shown = "2025-12-16-post.md" if posts == "." else "_posts/2025-12-16-post.md"
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"{shown}:6: warning: Liquid: {{% include_relative {name} %}}: {refusal}")
    assert "(expected " in warnings[0]
    assert not [marker for marker in MARKERS for feed in feeds if marker in feed]
    kept = ("Before.", "After.", "隣のファイルから。", "&lt;aside&gt;注意&lt;/aside&gt;", "<aside>注意</aside>")
    atom, rss, json = ([text for text in kept if text in feed] for feed in feeds)
    assert atom == rss == [*kept[:4]] and json == [*kept[:3], kept[4]]


@pytest.mark.parametrize("target", ["secret-config.toml", "secret-key.txt", "outside.html", "store.db", "env"])
def test_include_never_reads_through_a_link_in_includes(tmp_path: Path, target: str) -> None:
    root, _ = site_with_secrets(tmp_path, "_posts")
    links = {"secret-config.toml": root / "feedpub.toml", "secret-key.txt": root / "dkim" / "feedpub2026.key",
             "outside.html": tmp_path / "outside.txt", "store.db": root / "feedpub.db", "env": root / ".env"}
    (root / "_includes" / target).symlink_to(links[target])
    (root / "_posts" / "2025-12-16-post.md").write_text(
        f"---\ntitle: 投稿\n---\nBefore.\n\n{{% include {target} %}}\n\nAfter.\n", encoding="utf-8")
    feeds, warnings = build(root)
    assert warnings == [f"_posts/2025-12-16-post.md:6: warning: Liquid: {{% include {target} %}}: could not locate "
                        "the included file in _includes/; a file outside it, or a symbolic link pointing outside it, "
                        "is never read; rendered as nothing (expected a file in the site's _includes/ (include) or "
                        "beside the post (include_relative))"]
    assert not [marker for marker in MARKERS for feed in feeds if marker in feed]
    assert all("Before." in feed and "After." in feed for feed in feeds)


def test_a_name_from_a_variable_is_checked_as_a_written_one(tmp_path: Path) -> None:
    root, folder = site_with_secrets(tmp_path, ".")
    (folder / "2025-12-16-post.md").write_text(
        "---\ntitle: 投稿\nsnippet: feedpub\n---\n{% include_relative {{ page.snippet }}.toml %}\n\nAfter.\n",
        encoding="utf-8")
    feeds, warnings = build(root)
    assert warnings == ["2025-12-16-post.md:5: warning: Liquid: {% include_relative feedpub.toml %}: feedpub.toml is "
                        "feedpub's config file, which is never included; rendered as nothing (expected a text file "
                        "of the site's own sources)"]
    assert all("hunter2" not in feed and "After." in feed for feed in feeds)


def test_a_post_is_built_again_when_a_file_it_may_include_changes_and_only_then(tmp_path: Path) -> None:
    root, folder = site_with_secrets(tmp_path, ".")
    (folder / "2025-12-16-post.md").write_text(
        "---\ntitle: 投稿\n---\n{% include_relative snippet.txt %}\n", encoding="utf-8")
    (folder / "2025-12-17-plain.md").write_text("---\ntitle: 別の投稿\n---\n本文。\n", encoding="utf-8")
    feedpub_build(root)
    feed = root / "public" / "feed.xml"
    published = feed.read_bytes()
    # What no include reads, however it changes, leaves the feeds as they are.
    for name in (".env", "feedpub.db", "dkim/feedpub2026.key", "notes/server.pem", "_site/draft.html"):
        with (root / name).open("ab") as file:
            file.write(b"\nchanged")
        assert feedpub_build(root).stdout.startswith("2 posts, 1 feed: 0 files written"), name
    assert feed.read_bytes() == published
    (folder / "snippet.txt").write_text("書き換えた隣のファイル。\n", encoding="utf-8")
    assert feedpub_build(root).stdout.startswith("2 posts, 1 feed: 3 files written")
    assert "書き換えた隣のファイル。" in feed.read_text(encoding="utf-8")


def test_no_refused_file_reaches_the_digest(tmp_path: Path) -> None:
    root, folder = site_with_secrets(tmp_path, ".")
    (folder / "2025-12-16-post.md").write_text(
        "---\ntitle: 投稿\n---\n設定は {% include_relative feedpub.toml %} 鍵は "
        "{% include_relative dkim/feedpub2026.key %} 店は {% include_relative feedpub.db %} です。\n", encoding="utf-8")
    preview = tmp_path / "preview" / "index.html"
    result = CliRunner().invoke(main, ["--config", str(root / "feedpub.toml"), "digest", "preview", "--since",
                                       "2025-12-01", "--output", str(preview)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert [line.split(": warning: ")[0] for line in result.stderr.splitlines()] == ["2025-12-16-post.md:4"] * 3
    for mail in (preview, preview.with_suffix(".txt")):
        text = mail.read_text(encoding="utf-8")
        assert "設定は" in text and "です。" in text
        assert not [marker for marker in MARKERS if marker in text]


@pytest.mark.skipif(shutil.which("jekyll") is None, reason="Debian's Jekyll is not installed")
@pytest.mark.parametrize(("target", "jekyll_says", "feedpub_says"), [
    ("../../outside.txt", "Invalid syntax for include tag. File contains invalid characters or sequences",
     "invalid syntax for include tag, the file name contains invalid characters or sequences"),
    ("outside-link.txt", "Could not locate the included file 'outside-link.txt'",
     "could not locate the included file in the post's folder"),
])
def test_jekyll_refuses_the_same_names_and_links(tmp_path: Path, target: str, jekyll_says: str,
                                                 feedpub_says: str) -> None:
    root, folder = site_with_secrets(tmp_path, "_posts")
    (folder / "2025-12-16-post.md").write_text(f"---\ntitle: 投稿\n---\n{{% include_relative {target} %}}\n",
                                              encoding="utf-8")
    jekyll = subprocess.run(["jekyll", "build", "--safe", "--quiet", "--source", str(root), "--destination",
                             str(tmp_path / "jekyll-out")], capture_output=True, text=True, timeout=120)
    assert jekyll.returncode != 0 and jekyll_says in " ".join(jekyll.stderr.split())
    feeds, warnings = build(root)
    assert len(warnings) == 1 and f"{{% include_relative {target} %}}: {feedpub_says}" in warnings[0]
    assert not [marker for marker in MARKERS for feed in feeds if marker in feed]
