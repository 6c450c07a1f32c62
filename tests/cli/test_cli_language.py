"""Every line the command line and the daemon show their operator follows site.language: the problems of posts
(`path:line: what (expected …)`, the file and line kept), the bounces, dkim, admin, store and worker commands,
table headings, the daemon's log and the dashboard; an operator's strings.toml replaces one problem's words;
an English site reads as before, and /healthz stays English for monitors."""

from __future__ import annotations

import os
import re
import signal
import string
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from feedpub.cli.daemon import Daemon
from feedpub.config_file import load_config
from feedpub.site.websub import Publisher
from feedpub.store import open_store
from feedpub.strings import load_strings
from tests.cli.test_admin_daemon import csrf
from tests.cli.test_daemon_e2e import DaemonProcess, free_port, write_site
from tests.smtp_server import SMTPTestServer

ENV = {**os.environ, "FEEDPUB_SECRET": "language-secret"}
NO_FRONT_MATTER = "title: no dashes\n\nbody\n"
TWICE = "---\ntitle: one\ntitle: two\n---\nbody\n"


def feedpub(root: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "feedpub", *args], cwd=root, input=stdin, capture_output=True,
                          text=True, timeout=120, env=ENV)


@pytest.mark.parametrize(("language", "lines"), [
    ("en", ["posts/2025-01-01-twice.md:3: warning: key 'title' appears twice; the last one is used "
            "(expected each key once)",
            "posts/2025-01-02-broken.md:1: no front matter (expected a first line '---')"]),
    ("ja", ["posts/2025-01-01-twice.md:3: 警告: キー 'title' が 2 回あります。後のものを使います"
            "（想定: 各キーは 1 回だけ）",
            "posts/2025-01-02-broken.md:1: フロントマターがありません（想定: 1 行目に '---'）"]),
])
@pytest.mark.parametrize("command", ["check", "build"])
def test_problem_lines_in_the_site_language_keep_file_and_line(site, language, lines, command) -> None:
    site.post("2025-01-01-twice.md", TWICE)
    site.post("2025-01-02-broken.md", NO_FRONT_MATTER)
    site.configure(language=language)
    result = feedpub(site.root, command)
    assert result.returncode == 1
    assert result.stderr.splitlines() == lines


def test_a_liquid_warning_in_japanese_names_the_post_and_its_line(site) -> None:
    site.post("2025-01-01-liquid.md", "---\ntitle: a\n---\n本文 {{ page.nope }}\n")
    site.configure(language="ja")
    result = feedpub(site.root, "check")
    assert result.stderr == ("posts/2025-01-01-liquid.md:4: 警告: Liquid の変数 'page.nope' は定義されていないため、"
                             "何も出力しませんでした（想定: site.、page.、include. の変数、または assign した変数）\n")


def test_an_operator_overrides_the_words_of_one_problem(site) -> None:
    site.post("2025-01-02-broken.md", NO_FRONT_MATTER)
    (site.root / "words").mkdir()
    (site.root / "words" / "strings.toml").write_text('[ja]\nno_front_matter = "前付けがありません"\n',
                                                      encoding="utf-8")
    site.configure('[web]\ntemplates_dir = "words"\n', language="ja")
    result = feedpub(site.root, "check")
    assert result.stderr == "posts/2025-01-02-broken.md:1: 前付けがありません（想定: 1 行目に '---'）\n"


@pytest.mark.parametrize(("language", "heading", "absent"), [
    ("en", ["FILE", "KIND", "RECIPIENTS", "STATUS", "DIAGNOSTIC", "OR", "WHY"],
     "feedpub: no bounce with id 7 (expected an ID from `feedpub bounces list`)\n"),
    ("ja", ["ファイル", "種類", "宛先", "状態", "診断または理由"],
     "feedpub: ID 7 のバウンスはありません（想定: `feedpub bounces list` に出る ID）\n"),
])
def test_bounces_table_heading_and_messages_in_the_site_language(site, language, heading, absent) -> None:
    site.configure(language=language)
    (site.root / "reply.eml").write_text("From: someone@example.org\nTo: news@blog.example.com\nSubject: hello\n\n"
                                         "Just a note.\n", encoding="utf-8")
    parsed = feedpub(site.root, "bounces", "parse", "--format", "table", "reply.eml")
    assert parsed.returncode == 0, parsed.stderr
    assert parsed.stdout.splitlines()[0].split() == heading
    shown = feedpub(site.root, "bounces", "show", "7")
    assert (shown.returncode, shown.stderr) == (2, absent)


@pytest.mark.parametrize(("language", "written"), [
    ("en", "wrote {key} (1024-bit RSA, readable only by you). Publish the TXT record above, then add to "
           "feedpub.toml:"),
    ("ja", "{key} を書き込みました（1024 ビット RSA、あなただけが読めます）。上の TXT レコードを DNS に公開してから、"
           "feedpub.toml に次を追加してください:"),
])
def test_dkim_keygen_in_the_site_language(site, language, written) -> None:
    site.configure(language=language)
    key = site.root / "keys" / "dkim.key"
    result = feedpub(site.root, "dkim", "keygen", "--bits", "1024", "--output", str(key))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == written.format(key=key)
    again = feedpub(site.root, "dkim", "keygen", "--bits", "1024", "--output", str(key))
    assert again.returncode == 2
    assert again.stderr.startswith(f"feedpub: {key}: " + ("already exists" if language == "en" else "すでにあります"))


@pytest.mark.parametrize(("language", "added", "exists", "removed"), [
    ("en", "added ops; log in at /admin (a running `feedpub run` needs no restart)",
     "feedpub: account 'ops' exists (expected a new name; `admin reset-password` changes a password)",
     "removed ops"),
    ("ja", "ops を追加しました。/admin からログインできます（実行中の `feedpub run` の再起動は不要です）",
     "feedpub: アカウント 'ops' はすでにあります（想定: 新しい名前。パスワードの変更は `admin reset-password`）",
     "ops を削除しました"),
])
def test_admin_accounts_in_the_site_language(site, language, added, exists, removed) -> None:
    site.configure(language=language)
    add = ["admin", "add-user", "ops", "--password-stdin"]
    assert feedpub(site.root, *add, stdin="a long password\n").stdout == added + "\n"
    twice = feedpub(site.root, *add, stdin="a long password\n")
    assert (twice.returncode, twice.stderr) == (2, exists + "\n")
    assert feedpub(site.root, "admin", "remove-user", "ops").stdout == removed + "\n"


@pytest.mark.parametrize(("language", "created", "backed_up", "table"), [
    ("en", r".*feedpub\.db: created \(v\d+\)",
     r"backed up .*feedpub\.db to .*copy\.db: 1 row in \d+ tables, checked", "subscribers: 1 row"),
    ("ja", r".*feedpub\.db: 作成しました（v\d+）",
     r".*feedpub\.db を .*copy\.db にバックアップしました: テーブル \d+ 個、1 行。照合済み", "subscribers: 1 行"),
])
def test_store_commands_in_the_site_language(site, language, created, backed_up, table) -> None:
    site.configure(language=language)
    migrated = feedpub(site.root, "store", "migrate")
    assert re.fullmatch(created, migrated.stdout.strip()), migrated.stdout
    assert feedpub(site.root, "subscribers", "add", "taro@example.jp").returncode == 0
    backup = feedpub(site.root, "store", "backup", str(site.root / "copy.db"))
    assert backup.returncode == 0, backup.stderr
    assert re.fullmatch(backed_up, backup.stdout.strip()), backup.stdout
    assert table in backup.stderr.splitlines()


@pytest.mark.parametrize(("language", "heading"), [
    ("en", ["EMAIL", "NAME", "STATUS", "TOPICS", "CADENCE", "TIMEZONE", "CREATED"]),
    ("ja", ["メールアドレス", "名前", "状態", "トピック", "配信頻度", "タイムゾーン", "登録日"]),
])
def test_subscribers_list_heading_in_the_site_language(site, language, heading) -> None:
    site.configure(language=language)
    assert feedpub(site.root, "subscribers", "add", "taro@example.jp", "--name", "Taro").returncode == 0
    listed = feedpub(site.root, "subscribers", "list").stdout.splitlines()
    assert listed[0].split() == heading and listed[1].split()[:2] == ["taro@example.jp", "Taro"]


@pytest.mark.parametrize(("language", "started", "signalled", "stopped"), [
    ("en", "feedpub: worker started: sending from ", "feedpub: SIGTERM: stopping after the message in flight",
     "feedpub: stopped"),
    ("ja", "feedpub: ワーカーを開始しました: ", "feedpub: SIGTERM: 送信中のメッセージを終えてから止まります",
     "feedpub: 停止しました"),
])
def test_worker_log_in_the_site_language(site, language, started, signalled, stopped) -> None:
    site.configure('[smtp]\nhost = "127.0.0.1"\nport = 9\nsecurity = "none"\n', language=language)
    log = site.root / "worker.log"
    with log.open("wb") as stderr:
        worker = subprocess.Popen([sys.executable, "-m", "feedpub", "worker"], cwd=site.root, env=ENV,
                                  stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        while started not in log.read_text(encoding="utf-8"):
            assert time.monotonic() < deadline and worker.poll() is None, log.read_text(encoding="utf-8")
            time.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        worker.kill()
    lines = log.read_text(encoding="utf-8").splitlines()
    assert signalled in lines and lines[-1] == stopped


@pytest.mark.parametrize(("language", "running", "problem", "overview"), [
    ("en", "feedpub: running: web on http://127.0.0.1:", "no front matter (expected a first line '---')",
     "<h1>Overview</h1>"),
    ("ja", "feedpub: 実行中: Web は http://127.0.0.1:", "フロントマターがありません（想定: 1 行目に '---'）",
     "<h1>概要</h1>"),
])
def test_the_daemon_logs_and_the_dashboard_speak_the_site_language_and_healthz_english(
        tmp_path: Path, smtp_server: SMTPTestServer, language, running, problem, overview) -> None:
    port = free_port()
    write_site(tmp_path, smtp_server, port)
    config = tmp_path / "feedpub.toml"
    config.write_text(config.read_text(encoding="utf-8").replace('language = "ja"', f'language = "{language}"'),
                      encoding="utf-8")
    (tmp_path / "posts" / "2025-01-02-broken.md").write_text(NO_FRONT_MATTER, encoding="utf-8")
    assert feedpub(tmp_path, "admin", "add-user", "ops", "--password-stdin", stdin="operator password\n"
                   ).returncode == 0
    daemon = DaemonProcess(tmp_path, port)
    try:
        line = f"posts/2025-01-02-broken.md:1: {problem}"
        assert f"feedpub: {line}" in daemon.log.read_text(encoding="utf-8").splitlines()
        health = httpx.get(f"{daemon.base}/healthz").json()
        assert health["problems"] == ["posts/2025-01-02-broken.md:1: no front matter (expected a first line '---')"]
        assert "shown" not in health
        with httpx.Client(base_url=daemon.base, follow_redirects=True) as browser:
            form = browser.get("/admin/login").text
            page = browser.post("/admin/login", data={"csrf": csrf(form), "name": "ops",
                                                      "password": "operator password"}).text
        assert overview in page and f"<li>{line.replace(chr(39), '&#39;')}</li>" in page
    finally:
        assert daemon.stop() == 0
    log = daemon.log.read_text(encoding="utf-8")
    assert running in log
    assert log.splitlines()[-1] == ("feedpub: stopped" if language == "en" else "feedpub: 停止しました")


@pytest.mark.parametrize("home", ["cli", "problems"])
def test_every_string_is_in_english_and_japanese_with_the_same_fields(home) -> None:
    english, japanese = load_strings(home, "en", None), load_strings(home, "ja", None)
    assert set(english.texts) == set(japanese.texts)

    def fields(value: object) -> set[str]:
        texts = [value] if isinstance(value, str) else list(value.values())
        return {name for text in texts for _, name, _, _ in string.Formatter().parse(text) if name}

    assert {key: fields(value) for key, value in english.texts.items()} == \
        {key: fields(value) for key, value in japanese.texts.items()}


def test_no_problem_shares_its_key_with_another_word_of_the_same_override_file() -> None:
    """web.templates_dir's one strings.toml overrides every home: a problem's key must name that problem only."""
    problems = set(load_strings("problems", "en", None).texts)
    for home in ("cli", "web", "admin", "site"):
        assert not problems & set(load_strings(home, "en", None).texts), home


def test_a_daemon_whose_strings_file_is_broken_says_so_in_english_and_carries_on(site, caplog) -> None:
    site.post("2025-01-02-broken.md", NO_FRONT_MATTER)
    (site.root / "words").mkdir()
    (site.root / "words" / "strings.toml").write_text('[ja]\nno_front_matter = "前付け\n', encoding="utf-8")
    site.configure('[web]\ntemplates_dir = "words"\n', language="ja")
    config = load_config(site.toml)
    store = open_store(config.store_url)
    try:
        daemon = Daemon(config, store, None, Publisher())
        daemon.build()
        shown = daemon.health()["shown"]["problems"]
    finally:
        store.engine.dispose()
    # The feeds index reads the same file, so the build stops at it too; the job says why, and returns.
    assert len(shown) == 1 and shown[0].startswith("build failed, published files left as they were: ")
    assert "words/strings.toml:2: " in shown[0]
    assert any(record.getMessage().endswith(" read_more = \"続きを読む\")") for record in caplog.records)
