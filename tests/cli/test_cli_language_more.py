"""The rest of what the command line says follows site.language too: feedpub.toml's own errors (the file and line
kept, the language read from the file's [site] table), a date Jekyll refuses, a store another process keeps
locked, digest send's notes, the watcher's config reload, `subscribers` and `digest` options; an operator's
strings.toml still replaces one string, and an English site reads exactly as before."""

from __future__ import annotations

import re
import signal
import subprocess

import pytest

from tests.cli.test_cli_language import feedpub
from tests.cli.test_watch import eventually, start
from tests.site.test_watch import POST
from tests.test_store_lock import locked


@pytest.mark.parametrize(("language", "line"), [
    ("en", "feedpub: feedpub.toml:8: 'smtp.port': expected an integer, got a string\n"),
    ("ja", "feedpub: feedpub.toml:8: 'smtp.port': 整数でなければなりません（文字列です）\n"),
])
def test_a_config_error_in_the_files_own_language_keeps_file_and_line(site, language, line) -> None:
    site.configure('[smtp]\nport = "25"\n', language=language)
    result = feedpub(site.root, "check")
    assert (result.returncode, result.stderr) == (2, line)


@pytest.mark.parametrize(("language", "line"), [
    ("en", "feedpub: feedpub.toml:7: unknown section [sitex] (expected one of site, feeds, digest, smtp, store, web, "
           "bounces, activitypub)\n"),
    ("ja", "feedpub: feedpub.toml:7: 不明なセクション [sitex] です（想定: site, feeds, digest, smtp, store, web, "
           "bounces, activitypub のいずれか）\n"),
])
def test_an_unknown_section_in_the_files_language(site, language, line) -> None:
    site.configure("[sitex]\n", language=language)
    result = feedpub(site.root, "build")
    assert (result.returncode, result.stderr) == (2, line)


def test_an_operators_strings_toml_words_a_config_error(site) -> None:
    (site.root / "words").mkdir()
    (site.root / "words" / "strings.toml").write_text('[ja]\nconfig_wrong_type = "{got}ではなく{expected}を"\n',
                                                      encoding="utf-8")
    site.configure('[web]\ntemplates_dir = "words"\n[smtp]\nport = "25"\n', language="ja")
    assert feedpub(site.root, "check").stderr == "feedpub: feedpub.toml:10: 'smtp.port': 文字列ではなく整数を\n"


def test_a_config_that_is_not_toml_is_reported_in_english(site) -> None:
    site.toml.write_text('[site]\nlanguage = "ja"\n[feeds\n', encoding="utf-8")
    result = feedpub(site.root, "check")
    assert result.returncode == 2 and result.stderr.startswith("feedpub: feedpub.toml:3: invalid TOML: ")


@pytest.mark.parametrize(("language", "reason"), [
    ("en", "'2025-13-02' is not a date (month 13 is out of range); Jekyll stops the build at it (Invalid date)"),
    ("ja", "'2025-13-02' は日付ではありません（13 月は範囲外です）。Jekyll はここでビルドを止めます（Invalid date）"),
])
def test_a_date_jekyll_refuses_in_the_site_language(site, language, reason) -> None:
    site.post("2025-01-02-month.md", "---\ntitle: 月\ndate: 2025-13-02\n---\n本文\n")
    site.configure(language=language)
    result = feedpub(site.root, "check")
    assert result.returncode == 1
    assert result.stderr.startswith(f"posts/2025-01-02-month.md:3: {reason}")


@pytest.mark.parametrize(("language", "line"), [
    ("en", "feedpub: the store {path} is locked by another process (waited 5 s for its write to finish: another "
           "feedpub command, the daemon or a worker; try again when it is done)\n"),
    ("ja", "feedpub: ストア {path} は別のプロセスがロックしています（書き込みの終わりを 5 秒待ちました。別の feedpub "
           "コマンド、デーモン、ワーカーのどれかです。終わってからやり直してください）\n"),
])
def test_a_locked_store_in_the_site_language(site, language, line) -> None:
    site.configure(language=language)
    assert feedpub(site.root, "subscribers", "add", "taro@example.jp").returncode == 0
    path = site.root / ".feedpub" / "feedpub.db"
    with locked(path):
        added = feedpub(site.root, "subscribers", "add", "hanako@example.jp")
    assert (added.returncode, added.stderr) == (2, line.format(path=path))


@pytest.mark.parametrize(("language", "note"), [
    ("en", r"feedpub: issue \S+: no active subscribers; nothing composed"),
    ("ja", r"feedpub: 号 \S+: 有効な購読者がいないため、作成しませんでした"),
])
def test_digest_sends_note_in_the_site_language(site, language, note) -> None:
    site.post("2025-01-02-post.md", "---\ntitle: 記事\n---\n本文\n")
    site.configure('[smtp]\nhost = "127.0.0.1"\nport = 9\nsecurity = "none"\n', language=language)
    result = feedpub(site.root, "digest", "send")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(note, result.stderr.strip()), result.stderr


@pytest.mark.parametrize(("language", "lines"), [
    ("en", ["feedpub: --cadence daily: not offered by this site (expected one of digest.cadences: weekly, post)",
            "feedpub: --timezone 'Mars/Olympus': unknown time zone (expected an IANA name such as Asia/Tokyo or "
            "America/New_York)",
            "feedpub: subscribers restore: give --cause ISSUE|bounce:ID or --since TIME (expected at least one)",
            "feedpub: --tz: give the cadence too (expected --cadence post|daily|weekly|monthly)"]),
    ("ja", ["feedpub: --cadence daily: このサイトでは提供していません（想定: digest.cadences の weekly, post "
            "のいずれか）",
            "feedpub: --timezone 'Mars/Olympus': 不明なタイムゾーンです（想定: Asia/Tokyo や America/New_York のような "
            "IANA の名前）",
            "feedpub: subscribers restore: --cause ISSUE|bounce:ID か --since TIME を指定してください（想定: どちらか "
            "1 つ以上）",
            "feedpub: --tz: 頻度も指定してください（想定: --cadence post|daily|weekly|monthly）"]),
])
def test_subscribers_and_digest_options_in_the_site_language(site, language, lines) -> None:
    site.configure('[digest]\ncadences = ["weekly", "post"]\n', language=language)
    results = [feedpub(site.root, "subscribers", "add", "taro@example.jp", "--cadence", "daily"),
               feedpub(site.root, "subscribers", "add", "taro@example.jp", "--timezone", "Mars/Olympus"),
               feedpub(site.root, "subscribers", "restore"),
               feedpub(site.root, "digest", "preview", "--tz", "Asia/Tokyo")]
    assert [(result.returncode, result.stderr) for result in results] == [(2, line + "\n") for line in lines]


@pytest.mark.parametrize(("language", "reloaded"), [
    ("en", "feedpub: {file} reloaded\n"),
    ("ja", "feedpub: {file} を読み込み直しました\n"),
])
def test_the_watchers_config_reload_in_the_site_language(site, language, reloaded) -> None:
    site.post("2025-12-01-first.md", POST.format(title="最初の記事", day=1))
    site.configure(language=language)
    watcher, log = start(site, "build", "--watch")
    try:
        eventually(lambda: "watching" in log.read_text() or "監視" in log.read_text(), "the first build", log)
        site.configure(title="Renamed blog", language=language)
        line = reloaded.format(file=site.toml.resolve())
        eventually(lambda: line in log.read_text(), "the reload line", log)
    finally:
        watcher.send_signal(signal.SIGINT)
        try:
            watcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            watcher.kill()


@pytest.mark.parametrize(("lang", "created", "exists"), [
    ("en", "created out/feedpub.toml (from blog), out/email_templates/\n",
     "feedpub: out/feedpub.toml: already exists; init never overwrites (expected an empty folder)\n"),
    ("ja", "out/feedpub.toml（blog から）、out/email_templates/ を作りました\n",
     "feedpub: out/feedpub.toml: すでにあります。init は上書きしません（想定: 空のフォルダ）\n"),
])
def test_init_from_jekyll_speaks_the_language_of_config_yml(tmp_path, lang, created, exists) -> None:
    (tmp_path / "blog").mkdir()
    (tmp_path / "blog" / "_config.yml").write_text(f"title: Notes\nlang: {lang}\n", encoding="utf-8")
    first = feedpub(tmp_path, "init", "out", "--from-jekyll", "blog")
    assert (first.returncode, first.stdout) == (0, created)
    again = feedpub(tmp_path, "init", "out", "--from-jekyll", "blog")
    assert (again.returncode, again.stderr) == (2, exists)


def test_init_speaks_the_scaffolds_language(tmp_path) -> None:
    result = feedpub(tmp_path, "init", "site")
    assert (result.returncode, result.stdout) == (0, "created site/feedpub.toml, site/posts/, site/email_templates/\n")
    assert 'language = "en"' in (tmp_path / "site" / "feedpub.toml").read_text(encoding="utf-8")


@pytest.mark.parametrize(("language", "line"), [
    ("en", "public: is not a folder (expected feeds.output_dir or --output to name a folder)"),
    ("ja", "public: フォルダではありません（想定: feeds.output_dir か --output にフォルダを指定）"),
])
def test_an_unusable_output_folder_in_the_site_language(site, language, line) -> None:
    site.configure("", language=language)
    (site.root / "public").write_text("a file where the output folder goes\n", encoding="utf-8")
    check, build = feedpub(site.root, "check"), feedpub(site.root, "build")
    assert check.returncode == build.returncode == 2
    assert line in check.stderr and line in build.stderr
