"""`feedpub digest send|preview|status` end to end: posts on disk, a real SQLite store, a real SMTP server."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from feedpub.cli import main
from feedpub.config_file import load_config
from feedpub.records import SubscriberInput
from feedpub.send.dispatch import compose_issue, send_due_issue
from feedpub.site import markup
from feedpub.store import open_store
from feedpub.tokens import read_token
from tests.smtp_server import SMTPTestServer

SECRET = "test-secret"
LONG_SUBJECT = ("{{ site.title }} 週刊ダイジェスト：生成AIと著作権、推論性能、"
                "日本語NLPの実践まで今週の注目記事をまとめてお届けします")


def write_site(root, server: SMTPTestServer, *, connections: int = 2, rate: int = 1000, posts_days_ago=(1, 2, 3)):
    (root / "feedpub.toml").write_text(f"""
[site]
title = "ALLFORCES"
url = "https://blog.example.com"
timezone = "Asia/Tokyo"
language = "ja"
[digest]
from = "ALLFORCES編集部 <news@blog.example.com>"
subject = "{LONG_SUBJECT}"
first_issue_days = 7
schedule = "mon,tue,wed,thu,fri,sat,sun 00:00"
[smtp]
host = "127.0.0.1"
port = {server.port}
security = "none"
connections = {connections}
rate_per_second = {rate}
timeout = 5
[store]
url = "sqlite:///.feedpub/feedpub.db"
[web]
public_url = "https://news.blog.example.com"
""", encoding="utf-8")
    posts = root / "posts"
    posts.mkdir()
    titles = [("生成AIと著作権の現在地", "AI導入戦略"), ("Deploying with Python", "engineering"),
              ("日本語NLPの前処理", "engineering")]
    for (title, category), days in zip(titles, posts_days_ago, strict=True):
        # The file name's date is the site's (Tokyo) day of the post, as an author there would name it.
        # A day or more old, it is before today's 00:00 slot: in the issue that is due.
        date = datetime.now(ZoneInfo("Asia/Tokyo")) - timedelta(days=days)
        (posts / f"{date:%Y-%m-%d}-post-{days}.md").write_text(
            f'---\ntitle: "{title}"\ndate: {date:%Y-%m-%d %H:%M:%S %z}\ncategories: [{category}]\n---\n\n'
            f"{title}についての本文です。二文目です。\n", encoding="utf-8")


def add_subscribers(root, count: int, **categories: tuple[str, ...]) -> list[str]:
    store = open_store(f"sqlite:///{root}/.feedpub/feedpub.db")
    entries = [SubscriberInput(f"reader{i:03d}@example.com", f"読者{i}") for i in range(count)]
    entries += [SubscriberInput(f"{name}@example.jp", name, tuple(f"categories/{c}" for c in cats))
                for name, cats in categories.items()]
    store.save_subscribers(entries, status="active")
    return [e.email for e in entries]


@pytest.fixture
def site(tmp_path, monkeypatch, smtp_server):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    write_site(tmp_path, smtp_server)
    return tmp_path


def feedpub(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_send_reaches_every_subscriber_once_and_a_rerun_sends_nothing(site, smtp_server):
    emails = add_subscribers(site, 20, strategist=("AI導入戦略",), gardener=("園芸",))
    result = feedpub("digest", "send")
    assert result.exit_code == 0, result.output
    assert "送信 21 件、再送待ち 0 件、失敗 0 件" in result.stdout

    expected = [e for e in emails if e != "gardener@example.jp"]    # no post matches 園芸: no mail
    assert sorted(smtp_server.recipients()) == sorted(expected)
    store = open_store(f"sqlite:///{site}/.feedpub/feedpub.db")
    (issue,) = store.issues()
    subjects = {v.key: v.subject for v in store.variants(issue.id)}
    assert subjects[""].startswith("ALLFORCES 週刊ダイジェスト：生成AIと著作権")
    for received in smtp_server.received:
        (rcpt,) = received.rcpt_tos
        message = received.message()
        assert message.get_content_type() == "multipart/alternative"
        assert message["To"].addresses[0].addr_spec == rcpt
        assert [e for e in emails if e.encode() in received.data] == [rcpt]
        assert str(make_header(decode_header(message["Subject"]))) == subjects[""]
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = message["List-Unsubscribe"].strip("<>")
        assert url.startswith("https://news.blog.example.com/unsubscribe/")
        assert read_token(SECRET, "unsubscribe", url.rsplit("/", 1)[1]) == store.subscriber(rcpt).id
        html = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content()
        if rcpt == "strategist@example.jp":
            assert "生成AIと著作権の現在地" in html and "Deploying with Python" not in text
        else:
            assert "Deploying with Python" in html and "日本語NLPの前処理" in text
    archive = (site / "public/digests" / issue.period / "index.html").read_text(encoding="utf-8")
    assert "生成AIと著作権の現在地" in archive and "https://news.blog.example.com/subscribe" in archive
    assert "/unsubscribe" not in archive and "登録されているため" not in archive

    again = feedpub("digest", "send")
    assert again.exit_code == 0 and "送信 0 件" in again.stdout
    assert len(smtp_server.received) == 21
    status = feedpub("digest", "status").stdout
    assert issue.period in status and " 21 " in status


def test_a_rejected_recipient_is_reported_suppressed_and_exits_1(site, smtp_server):
    emails = add_subscribers(site, 5)
    smtp_server.faults.reject_rcpt.add(emails[3])
    result = feedpub("digest", "send")
    assert result.exit_code == 1
    assert f"{emails[3]}: 失敗: 550 5.1.1" in result.stderr          # the site is Japanese
    assert "送信 4 件、再送待ち 0 件、失敗 1 件" in result.stdout
    assert open_store(f"sqlite:///{site}/.feedpub/feedpub.db").suppressed() == {emails[3]}


def test_a_temporary_failure_is_left_for_the_next_run(site, smtp_server):
    add_subscribers(site, 3)
    smtp_server.faults.defer_data = 1
    result = feedpub("digest", "send")
    assert result.exit_code == 0
    assert "送信 2 件、再送待ち 1 件、失敗 0 件" in result.stdout
    # In the site's zone, and saying so.
    retry = re.search(r"待機中 1 件（次回の再送 (\d{4}-\d\d-\d\d \d\d:\d\d) JST）", result.stdout)
    assert retry, result.stdout
    due = datetime.strptime(retry[1], "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo("Asia/Tokyo"))
    assert abs(due - datetime.now(UTC)) < timedelta(minutes=2)   # smtp.retry_base is 1m
    assert "再送待ち: 451 4.3.0" in result.stderr


def test_dry_run_and_test_copy_record_nothing(site, smtp_server):
    emails = add_subscribers(site, 3, gardener=("園芸", "料理"))
    dry = feedpub("digest", "send", "--dry-run")
    assert dry.exit_code == 0
    assert [line.split("\t")[0] for line in dry.stdout.splitlines()] == emails[:3]
    # Who would get nothing, and why: none of their categories has a new post.
    assert "gardener@example.jp: なし（categories/園芸, categories/料理 に新しい記事がありません）\n" in dry.stderr
    assert "ドライラン：宛先 3 件" in dry.stderr
    assert smtp_server.received == []

    test = feedpub("digest", "send", "--to", "editor@example.org")
    assert test.exit_code == 0, test.output
    (received,) = smtp_server.received
    assert received.rcpt_tos == ("editor@example.org",)
    assert str(make_header(decode_header(received.message()["Subject"]))).startswith("[TEST] ALLFORCES")
    # Not a subscriber: the links lead to the pages that say to use a subscriber's own mail.
    assert received.message()["List-Unsubscribe"] == "<https://news.blog.example.com/unsubscribe>"
    assert feedpub("digest", "status").stdout.strip() == "まだ号はありません"

    feedpub("digest", "send", "--to", emails[0])
    own = smtp_server.received[-1].message()["List-Unsubscribe"].strip("<>")
    store = open_store(f"sqlite:///{site}/.feedpub/feedpub.db")
    assert read_token(SECRET, "unsubscribe", own.rsplit("/", 1)[1]) == store.subscriber(emails[0]).id


def test_a_test_copy_to_an_unsubscribed_or_suppressed_address_needs_force(site, smtp_server):
    store = open_store(f"sqlite:///{site}/.feedpub/feedpub.db")
    store.save_subscribers([SubscriberInput("left@example.com"), SubscriberInput("bounced@example.com")],
                           status="active")
    store.unsubscribe("left@example.com", "one-click unsubscribe", cause="unsubscribe")
    store.suppress("bounced@example.com", "550 5.1.1 no such user")
    left = feedpub("digest", "send", "--to", "Left@example.com")
    assert left.exit_code == 2
    assert ("Left@example.com は購読を解除しています。テストメールは送信していません（--force を付けると送信します）"
            in left.stderr)
    bounced = feedpub("digest", "send", "--to", "bounced@example.com")
    assert bounced.exit_code == 2
    assert "bounced@example.com は配信停止中です（550 5.1.1 no such user）" in bounced.stderr
    assert smtp_server.received == []

    forced = feedpub("digest", "send", "--to", "left@example.com", "--force")
    assert forced.exit_code == 0, forced.output
    assert smtp_server.recipients() == ["left@example.com"]


def test_no_new_posts_sends_nothing_and_exits_0(tmp_path, monkeypatch, smtp_server, caplog):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    write_site(tmp_path, smtp_server, posts_days_ago=(30, 40, 50))
    add_subscribers(tmp_path, 2)
    with caplog.at_level(logging.INFO):
        result = feedpub("digest", "send")
    assert result.exit_code == 0 and smtp_server.received == []
    assert "までに公開された記事がないため、送るものはありません" in caplog.text


def test_missing_secret_exits_2_naming_the_variable(site, monkeypatch):
    monkeypatch.delenv("FEEDPUB_SECRET")
    result = feedpub("digest", "send")
    assert result.exit_code == 2 and "FEEDPUB_SECRET" in result.stderr


def test_preview_writes_html_and_text_outside_the_published_folder(site, caplog):
    result = feedpub("digest", "preview")
    assert result.exit_code == 0
    html = (site / ".feedpub/preview/index.html").read_text(encoding="utf-8")
    text = (site / ".feedpub/preview/index.txt").read_text(encoding="utf-8")
    assert "生成AIと著作権の現在地" in html and "日本語NLPの前処理" in text
    assert not (site / "public").exists()        # the daemon serves public/: a preview is no issue yet
    assert feedpub("digest", "preview", "--output", "out/p.html").exit_code == 0
    assert (site / "out/p.html").is_file() and (site / "out/p.txt").is_file()
    since = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    with caplog.at_level(logging.INFO):
        assert feedpub("digest", "preview", "--since", since).exit_code == 0
    assert "プレビューするものはありません" in caplog.text


def test_killed_mid_send_then_resumed_serves_everyone_with_at_most_one_duplicate(tmp_path, smtp_server):
    write_site(tmp_path, smtp_server, connections=1, rate=40)
    emails = add_subscribers(tmp_path, 60)
    env = {**os.environ, "FEEDPUB_SECRET": SECRET}
    command = [sys.executable, "-m", "feedpub", "digest", "send"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        smtp_server.wait_for(15, timeout=30)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed_at = len(smtp_server.received)
    assert killed_at < 60, "the first run finished before it was killed"

    time.sleep(0.2)
    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    counts = Counter(smtp_server.recipients())
    assert set(counts) == set(emails)
    assert sum(counts.values()) - len(emails) <= 1
    store = open_store(f"sqlite:///{tmp_path}/.feedpub/feedpub.db")
    assert store.counts(store.issues()[0].id)["sent"] == 60
    assert load_config(tmp_path / "feedpub.toml").smtp.connections == 1


def test_a_reader_who_unsubscribed_after_queueing_is_counted_skipped_not_failed(site, smtp_server):
    emails = add_subscribers(site, 3)
    store = open_store(f"sqlite:///{site}/.feedpub/feedpub.db")
    send_due_issue(load_config(site / "feedpub.toml"), store, datetime.now(UTC), send=False)
    store.unsubscribe(emails[1], "one-click unsubscribe", cause="unsubscribe")
    result = feedpub("digest", "send")
    assert result.exit_code == 0, result.output
    assert "送信 2 件、再送待ち 0 件、失敗 0 件、スキップ 1 件（送信中に購読解除）" in result.stdout
    assert sorted(smtp_server.recipients()) == [emails[0], emails[2]]


def test_an_issue_renders_only_its_own_posts_and_links_to_older_ones(tmp_path, monkeypatch, smtp_server):
    write_site(tmp_path, smtp_server, posts_days_ago=(1, 40, 50))
    old = sorted((tmp_path / "posts").glob("*-post-40.md"))[0]
    new = sorted((tmp_path / "posts").glob("*-post-1.md"))[0]
    new.write_text(new.read_text(encoding="utf-8") + f"\n[前回]({{% post_url {old.stem} %}})\n", encoding="utf-8")
    rendered: list[str] = []
    real = markup.render_posts

    def recording(config, posts, **options):
        rendered.extend(post.title for post in posts)
        return real(config, posts, **options)

    monkeypatch.setattr("feedpub.send.issue.render_posts", recording)
    now = datetime.now(UTC)
    issue, problems = compose_issue(load_config(tmp_path / "feedpub.toml"), now, now - timedelta(days=7), now)
    assert problems == []
    assert rendered == ["生成AIと著作権の現在地"]
    (post,) = issue.posts
    assert "https://blog.example.com/" in post.html and "post-40" in post.html


def test_cancelling_an_issue_that_went_out_says_so_changes_nothing_and_exits_1(site, smtp_server):
    add_subscribers(site, 3)
    assert feedpub("digest", "send").exit_code == 0
    (issue,) = open_store(f"sqlite:///{site}/.feedpub/feedpub.db").issues()
    before = feedpub("digest", "status").stdout

    cancelled = feedpub("digest", "cancel", issue.period)
    assert cancelled.exit_code == 1
    assert cancelled.stdout == ""
    assert f"号 {issue.period}: 取り消すものがありません。配信はすべて送信済みか失敗済みです" in cancelled.stderr
    assert feedpub("digest", "status").stdout == before          # still sent, not "cancelled"
    assert feedpub("digest", "cancel", issue.period).exit_code == 1   # and again: nothing was held
