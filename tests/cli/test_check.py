"""`feedpub check` from the real command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def feedpub(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "feedpub", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def test_check_on_the_sample_posts_is_clean() -> None:
    result = feedpub("check", cwd=REPO)
    assert result.returncode == 0, result.stderr
    # The sample site is Japanese (site.language = "ja"): so is its summary.
    assert result.stdout == "記事 6 件、問題 0 件、警告 0 件、スキップ 2 件（未来の日付 1 件、下書き 1 件）\n"


def test_check_reports_each_problem_and_exits_1_writing_nothing(site) -> None:
    site.post("2025-01-01-good.md", "---\ntitle: good\n---\n{{ 'x' | no_such_filter }}\n")
    site.post("2025-01-02-bad.md", "---\ntitle: [unclosed\n---\nb\n")
    before = sorted(p.relative_to(site.root) for p in site.root.rglob("*"))
    result = feedpub("check", cwd=site.root)
    assert result.returncode == 1
    assert result.stdout == "1 post, 1 problem, 1 warning\n"
    lines = result.stderr.splitlines()
    assert lines[0].startswith("posts/2025-01-01-good.md:4: warning: Liquid filter 'no_such_filter' is unknown")
    assert lines[1].startswith("posts/2025-01-02-bad.md:")
    assert sorted(p.relative_to(site.root) for p in site.root.rglob("*")) == before


def test_check_counts_the_posts_skipped_as_future_or_draft(site) -> None:
    site.post("2025-01-01-shown.md", "---\ntitle: shown\n---\nb\n")
    site.post("2999-01-01-later.md", "---\ntitle: later\n---\nb\n")
    site.post("2025-01-02-hidden.md", "---\ntitle: hidden\npublished: false\n---\nb\n")
    site.post("_drafts/idea.md", "---\ntitle: idea\n---\nb\n")
    result = feedpub("check", cwd=site.root)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1 post, 0 problems, 0 warnings, 3 skipped (1 future, 2 draft)\n"
    # `--drafts` takes in _drafts/, not posts marked `published: false`
    result = feedpub("check", "--future", "--drafts", cwd=site.root)
    assert result.stdout == "3 posts, 0 problems, 0 warnings, 1 skipped (0 future, 1 draft)\n"


def test_check_with_future_includes_future_posts(site) -> None:
    site.post("2999-01-01-later.md", "---\ntitle: later\n---\nb\n")
    assert feedpub("check", cwd=site.root).stdout.startswith("0 posts")
    assert feedpub("check", "--future", cwd=site.root).stdout.startswith("1 post,")


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = feedpub("--config", "nope.toml", "check", cwd=tmp_path)
    assert result.returncode == 2
    assert "nope.toml: config file not found" in result.stderr
