"""One verdict: `feedpub check` prints the problems `feedpub build` prints, and exits with the same code, for a
site whose names share a slug (Perl and perl), with a broken post, and with an unusable folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CONFIG = '[site]\ntitle = "判定"\nurl = "https://blog.example.com"\ntimezone = "Asia/Tokyo"\n[feeds]\ntags = true\n'


def feedpub(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "feedpub", *args], cwd=site, capture_output=True, text=True,
                          timeout=120)


def make_site(root: Path, posts: dict[str, str], config: str = CONFIG) -> Path:
    (root / "posts").mkdir(parents=True)
    (root / "feedpub.toml").write_text(config, encoding="utf-8")
    for name, text in posts.items():
        (root / "posts" / name).write_text(text, encoding="utf-8")
    return root


CASE_VARIANTS = {
    "2025-01-01-perl-upper.md": "---\ntitle: Perl の話\ntags: [Perl]\ncategories: [Perl]\n---\n本文。\n",
    "2025-01-02-perl-lower.md": "---\ntitle: perl one-liners\ntags: [perl]\ncategories: [perl]\n---\nBody.\n",
    "2025-01-03-liquid.md": "---\ntitle: Liquid\n---\n{{ 'x' | no_such_filter }}\n",
}
BROKEN = {**CASE_VARIANTS, "2025-01-04-broken.md": "---\ntitle: Broken\ndate: next tuesday-ish\n---\nBody.\n"}


@pytest.mark.parametrize(("posts", "code"), [(CASE_VARIANTS, 0), (BROKEN, 1)])
def test_check_and_build_report_the_same_problems_and_exit_alike(tmp_path: Path, posts: dict[str, str],
                                                                 code: int) -> None:
    site = make_site(tmp_path, posts)
    check, build = feedpub(site, "check"), feedpub(site, "build")
    assert (check.returncode, build.returncode) == (code, code), (check.stderr, build.stderr)
    assert check.stderr.splitlines() == build.stderr.splitlines()
    # the case variants share slugs: a warning each for the categories and the tags, both feeds kept
    assert check.stderr.count("'perl' (from posts/2025-01-02-perl-lower.md) and 'Perl' (from "
                              "posts/2025-01-01-perl-upper.md) both have the URL slug 'perl'") == 2
    assert (site / "public/categories/perl-2/feed.xml").exists() and (site / "public/tags/perl-2/feed.xml").exists()
    assert "posts/2025-01-03-liquid.md:4: warning: Liquid filter 'no_such_filter' is unknown" in check.stderr
    assert check.stdout == ("3 posts, 0 problems, 3 warnings\n", "3 posts, 1 problem, 3 warnings\n")[code]


@pytest.mark.parametrize("what", ["posts folder", "output folder"])
def test_an_unusable_folder_stops_check_and_build_alike(tmp_path: Path, what: str) -> None:
    site = make_site(tmp_path, CASE_VARIANTS)
    if what == "posts folder":
        (site / "feedpub.toml").write_text(CONFIG.replace("[site]\n", '[site]\nposts_dir = "nowhere"\n'),
                                           encoding="utf-8")
        message = "nowhere: posts folder does not exist (expected site.posts_dir to name a folder)"
    else:
        (site / "public").write_text("a file where the output folder goes\n", encoding="utf-8")
        message = "public: is not a folder (expected feeds.output_dir or --output to name a folder)"
    check, build = feedpub(site, "check"), feedpub(site, "build")
    assert check.returncode == build.returncode == 2
    assert message in check.stderr and message in build.stderr
    assert check.stdout == ""


def test_one_of_a_count_is_singular(tmp_path: Path) -> None:
    site = make_site(tmp_path, {"2025-01-01-only.md": "---\ntitle: Only\n---\nBody.\n",
                                "2025-01-02-bad.md": "---\ntitle: Bad\ndate: nope\n---\nBody.\n",
                                "2025-01-03-warned.md": "---\ntitle: 警告\ntags: 7\n---\n本文。\n"})
    check = feedpub(site, "check")
    assert check.stdout == "2 posts, 1 problem, 1 warning\n"
    assert check.returncode == 1
