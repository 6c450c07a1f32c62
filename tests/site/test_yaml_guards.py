"""Every YAML file feedpub reads — front matter, `_config.yml` (+ `_config.*.yml`), `_data/` — is read with the same
guards, through the real CLI: an alias bomb is a problem naming the file and line (the rest of the build
completes and writes its feeds, or, in the config, nothing is done: exit 2), within a time and memory bound; a
syntax error names the line of its cause."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

MEMORY_LIMIT = 1024 * 1024 * 1024   # address space of each feedpub process
# nine levels of nine aliases: 387 million values from ~600 bytes
BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{level}: &{level} [{', '.join([f'*{previous}'] * 9)}]\n"
    for previous, level in zip("abcdefgh", "bcdefghi", strict=True))
POSTS = {
    "_posts/2025-12-01-data.md": "---\ntitle: 読者数\n---\nRead by {{ site.data.stats.readers }} people.\n",
    "_posts/2025-12-02-plain.md": "---\ntitle: Plain\n---\nPlain **text**.\n",
}


def limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def feedpub(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "feedpub", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, preexec_fn=limit_memory)


def jekyll_site(root: Path, files: dict[str, str]) -> Path:
    files = {"_config.yml": "title: Blog\nurl: https://blog.example.com\ntimezone: Asia/Tokyo\n",
             "_data/stats.yml": "readers: 1200\n", **POSTS, **files}
    for name, text in files.items():
        path = root / "blog" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (root / "feedpub.toml").write_text('[site]\njekyll_dir = "blog"\n[feeds]\nformats = ["json"]\n',
                                       encoding="utf-8")
    return root


def items(root: Path) -> dict[str, str]:
    feed = json.loads((root / "public" / "feed.json").read_text(encoding="utf-8"))
    return {item["title"]: item["content_html"] for item in feed["items"]}


@pytest.mark.parametrize("command", ["build", "check"])
def test_an_alias_bomb_in_data_is_named_and_the_rest_is_published(tmp_path: Path, command: str) -> None:
    site = jekyll_site(tmp_path, {"_data/bomb.yml": BOMB})
    result = feedpub(site, command)
    assert result.returncode == 0, result.stderr   # a data file the posts do not read is a warning
    assert (f"blog/_data/bomb.yml:2: warning: expands to more than {10_000 + len(BOMB):,} values (YAML aliases "
            "repeated or recursive) (expected plain values; an alias repeated a few times at most)") in result.stderr
    assert "Traceback" not in result.stderr
    if command == "build":
        assert items(site) == {"読者数": "<p>Read by 1200 people.</p>", "Plain": "<p>Plain <strong>text</strong>.</p>"}


@pytest.mark.parametrize("name", ["_config.yml", "_config.production.yml"])
def test_an_alias_bomb_in_the_jekyll_config_is_a_config_error_naming_it(tmp_path: Path, name: str) -> None:
    bomb = "title: Blog\n" + BOMB if name == "_config.yml" else BOMB
    site = jekyll_site(tmp_path, {name: bomb})
    result = feedpub(site, "build")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"feedpub: {site / 'blog' / name}:{3 if name == '_config.yml' else 2}: "
                                    "expands to more than"), result.stderr
    assert not (site / "public").exists()


def test_yaml_syntax_errors_name_the_line_of_their_cause(tmp_path: Path) -> None:
    # an unclosed quote on line 3 of a six-line front matter; libyaml stops at its end (line 8)
    unclosed = '---\nlayout: post\ntitle: "Unclosed\ncategories: [news]\ntags: [a]\nauthor: 花子\nimage: x.png\n---\n'
    site = jekyll_site(tmp_path, {"_posts/2025-12-03-quote.md": unclosed + "Body.\n",
                                  "_data/team.yml": "members:\n  - name: 花子\n  no colon here\n  - name: 太郎\n"})
    result = feedpub(site, "build")
    assert result.returncode == 1, result.stderr
    assert ("blog/_posts/2025-12-03-quote.md:3: invalid YAML front matter: while scanning a quoted scalar, found "
            "unexpected end of stream (expected 'key: value' lines") in result.stderr
    assert "blog/_data/team.yml:3: warning: invalid YAML: while scanning a simple key" in result.stderr
    assert set(items(site)) == {"読者数", "Plain"}

    (site / "blog" / "_config.production.yml").write_text("description: 'no end\nlang: ja\n", encoding="utf-8")
    result = feedpub(site, "build")
    assert result.returncode == 2
    assert f"{site}/blog/_config.production.yml:1: invalid YAML: while scanning a quoted scalar" in result.stderr
