"""What `feedpub` prints to its operator follows site.language, counts in the plural form of the language,
and one string of an operator's strings.toml replaces the shipped one; problems keep `path:line: …`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from feedpub.store import open_store
from tests.web.admin.conftest import PERIOD, seed


def feedpub(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "feedpub", *args], cwd=root, capture_output=True, text=True,
                          timeout=120)


def posts(site, number: int) -> None:
    for day in range(1, number + 1):
        site.post(f"2025-01-0{day}-p{day}.md", f"---\ntitle: 記事{day}\ncategories: [news]\n---\n本文。\n")


@pytest.mark.parametrize(("language", "number", "expected"), [
    ("en", 1, "1 post, 0 problems, 0 warnings\n"),
    ("en", 2, "2 posts, 0 problems, 0 warnings\n"),
    ("ja", 1, "記事 1 件、問題 0 件、警告 0 件\n"),
    ("ja-JP", 2, "記事 2 件、問題 0 件、警告 0 件\n"),
])
def test_check_summary_in_the_site_language(site, language, number, expected) -> None:
    posts(site, number)
    site.configure(language=language)
    result = feedpub(site.root, "check")
    assert (result.returncode, result.stdout) == (0, expected), result.stderr


@pytest.mark.parametrize(("language", "expected"), [
    ("en", "1 post, 1 problem, 1 warning\n"),
    ("ja", "記事 1 件、問題 1 件、警告 1 件\n"),
])
def test_problems_keep_their_path_line_form_in_japanese(site, language, expected) -> None:
    site.post("2025-01-01-good.md", "---\ntitle: good\n---\n{{ page.nope }}\n")   # a warning: published
    site.post("2025-01-02-bad.md", "---\ntitle: [unclosed\n---\nb\n")
    site.configure(language=language)
    result = feedpub(site.root, "check")
    assert (result.returncode, result.stdout) == (1, expected)
    assert all(re.match(r"posts/[^:]+\.md:\d+: ", line) for line in result.stderr.splitlines()), result.stderr


@pytest.mark.parametrize(("language", "number", "expected"), [
    ("en", 1, r"1 post, 2 feeds: 8 files written, 0 unchanged, 0 removed in .*public; 0 problems, 0 warnings"),
    ("en", 2, r"2 posts, 2 feeds: 8 files written, 0 unchanged, 0 removed in .*public; 0 problems, 0 warnings"),
    ("ja", 1, r"記事 1 件、フィード 2 件：.*public にファイル 8 件を書き込み、0 件は変更なし、0 件を削除。"
               r"問題 0 件、警告 0 件"),
    ("ja", 2, r"記事 2 件、フィード 2 件：.*public にファイル 8 件を書き込み、0 件は変更なし、0 件を削除。"
               r"問題 0 件、警告 0 件"),
])
def test_build_summary_in_the_site_language(site, language, number, expected) -> None:
    posts(site, number)
    site.configure('[feeds]\nformats = ["atom", "rss", "json"]\nstylesheet = false\n', language=language)
    result = feedpub(site.root, "build")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(expected, result.stdout.splitlines()[0]), result.stdout


@pytest.mark.parametrize(("language", "first", "again", "removed"), [
    ("en", "added taro@example.jp (active)", "updated taro@example.jp (active)",
     "unsubscribed and suppressed taro@example.jp"),
    ("ja", "taro@example.jp を追加しました（active）", "taro@example.jp を更新しました（active）",
     "taro@example.jp の購読を解除し、配信停止にしました"),
])
def test_subscriber_messages_in_the_site_language(site, language, first, again, removed) -> None:
    site.configure(language=language)
    assert feedpub(site.root, "subscribers", "add", "taro@example.jp").stdout == first + "\n"
    assert feedpub(site.root, "subscribers", "add", "taro@example.jp").stdout == again + "\n"
    assert feedpub(site.root, "subscribers", "remove", "taro@example.jp").stdout == removed + "\n"


@pytest.mark.parametrize(("language", "rows", "expected"), [
    ("en", 1, "imported 1 subscriber (1 new, 0 updated), 0 bad rows"),
    ("en", 2, "imported 2 subscribers (2 new, 0 updated), 0 bad rows"),
    ("ja", 1, "購読者 1 件を読み込みました（新規 1 件、更新 0 件）。不正な行 0 件"),
    ("ja", 2, "購読者 2 件を読み込みました（新規 2 件、更新 0 件）。不正な行 0 件"),
])
def test_import_summary_counts_in_the_site_language(site, language, rows, expected) -> None:
    site.configure(language=language)
    csv = site.root / "list.csv"
    csv.write_text("email\n" + "".join(f"r{n}@example.org\n" for n in range(rows)), encoding="utf-8")
    result = feedpub(site.root, "subscribers", "import", str(csv))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == expected


def test_digest_status_without_issues_in_japanese(site) -> None:
    site.configure(language="ja")
    assert feedpub(site.root, "digest", "status").stdout == "まだ号はありません\n"


def test_an_operator_overrides_one_string(site) -> None:
    posts(site, 2)
    words = site.root / "web_templates"
    words.mkdir()
    (words / "strings.toml").write_text('[ja]\nposts = "投稿 {count} 本"\n', encoding="utf-8")
    site.configure('[web]\ntemplates_dir = "web_templates"\n', language="ja")
    assert feedpub(site.root, "check").stdout == "投稿 2 本、問題 0 件、警告 0 件\n"


def test_a_broken_override_names_its_file_and_line(site) -> None:
    words = site.root / "web_templates"
    words.mkdir()
    (words / "strings.toml").write_text('[ja]\nposts = "記事\n', encoding="utf-8")
    site.configure('[web]\ntemplates_dir = "web_templates"\n', language="ja")
    result = feedpub(site.root, "check")
    assert result.returncode == 2
    assert re.match(r"feedpub: .*web_templates/strings\.toml:2: ", result.stderr), result.stderr


def test_plural_forms_of_an_override_are_checked(site) -> None:
    words = site.root / "web_templates"
    words.mkdir()
    (words / "strings.toml").write_text('[en]\nposts = { one = "{count} article", few = "{count} articles" }\n',
                                        encoding="utf-8")
    site.configure('[web]\ntemplates_dir = "web_templates"\n', language="en")
    result = feedpub(site.root, "check")
    assert result.returncode == 2
    assert "web_templates/strings.toml: [en] posts: " in result.stderr
    assert 'expected a string, or plural forms such as { one = "{count} post", other = "{count} posts" }' in \
        result.stderr


def test_an_english_override_with_both_forms_counts_one_and_two(site) -> None:
    words = site.root / "web_templates"
    words.mkdir()
    (words / "strings.toml").write_text('[en]\nposts = { one = "{count} article", other = "{count} articles" }\n',
                                        encoding="utf-8")
    site.configure('[web]\ntemplates_dir = "web_templates"\n', language="en")
    site.post("2025-01-01-a.md", "---\ntitle: a\n---\nb\n")
    assert feedpub(site.root, "check").stdout == "1 article, 0 problems, 0 warnings\n"
    site.post("2025-01-02-b.md", "---\ntitle: b\n---\nb\n")
    assert feedpub(site.root, "check").stdout == "2 articles, 0 problems, 0 warnings\n"


@pytest.mark.parametrize(("language", "expected"), [
    ("en", ["issue {p}: paused; 2 rows wait", "issue {p}: resumed; 2 rows left to send",
            "issue {p}: cancelled; 2 unsent rows cancelled"]),
    ("ja", ["{p} 号：一時停止しました。2 件が待機しています", "{p} 号：再開しました。残り 2 件を送信します",
            "{p} 号：中止しました。未送信の 2 件を取り消しました"]),
])
def test_pause_resume_cancel_in_the_site_language(site, language, expected) -> None:
    site.configure(language=language)
    store = open_store(site.config.store_url)
    seed(store)               # four recipients: one sent, one failed, one deferred, one queued
    store.engine.dispose()
    shown = [feedpub(site.root, "digest", action, PERIOD).stdout.strip() for action in ("pause", "resume", "cancel")]
    assert shown == [line.format(p=PERIOD) for line in expected]
