"""`feedpub fediverse followers|deliveries|block DOMAIN` through the real CLI, in English and Japanese, on a
real SQLite store: what the operator reads, the exit codes, and a block that cancels what was queued."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from click.testing import CliRunner

from feedpub.cli import main
from feedpub.errors import Problem, message
from feedpub.fediverse import queue
from feedpub.fediverse.ledger import Ledger
from feedpub.schema import fediverse_deliveries, fediverse_hosts
from feedpub.store import Store, open_store
from feedpub.strings import load_strings, problem_line
from tests.conftest import Site

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def configure(site: Site, language: str) -> Store:
    site.configure(f'[store]\nurl = "sqlite:///{site.root / "feedpub.db"}"\n'
                   '[web]\npublic_url = "https://news.example.org"\n[activitypub]\nenabled = true\n',
                   language=language)
    return open_store(f"sqlite:///{site.root / 'feedpub.db'}")


def run(site: Site, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--config", str(site.toml), "fediverse", *args])
    return result.exit_code, result.stdout, result.stderr


def note(number: int) -> dict:
    return {"id": f"https://news.example.org/ap/objects/{number}#create", "type": "Create",
            "actor": "https://news.example.org/ap/accounts/blog",
            "object": {"id": f"https://news.example.org/ap/objects/{number}", "type": "Article"}}


def test_followers_listed_per_account(site: Site) -> None:
    store = configure(site, "en")
    assert run(site, "followers") == (0, "no followers yet\n", "")
    ledger = Ledger(store)
    ledger.add_follower("blog", "https://m.example/users/ann", "https://m.example/users/ann/inbox",
                        "https://m.example/inbox", "m.example")
    ledger.add_follower("blog", "https://solo.example/users/bob", "https://solo.example/users/bob/inbox", "",
                        "solo.example")
    ledger.add_follower("ai", "https://m.example/users/ann", "https://m.example/users/ann/inbox",
                        "https://m.example/inbox", "m.example")
    code, out, err = run(site, "followers")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["ACCOUNT", "ACTOR", "INSTANCE", "SINCE"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["ai", "https://m.example/users/ann", "m.example"], ["blog", "https://m.example/users/ann", "m.example"],
        ["blog", "https://solo.example/users/bob", "solo.example"]]
    assert err.splitlines() == ["ai: 1 follower", "blog: 2 followers"]
    code, out, _ = run(site, "followers", "--format", "json")
    assert [(r["account"], r["instance"]) for r in json.loads(out)] == [
        ("ai", "m.example"), ("blog", "m.example"), ("blog", "solo.example")]


def test_deliveries_per_instance_with_paused_and_blocked(site: Site) -> None:
    store = configure(site, "ja")
    assert run(site, "deliveries") == (0, "キューにも配信済みにもまだ何もありません\n", "")
    queue.enqueue(store, account="blog", activity=note(1), inboxes=[
        "https://a.example/inbox", "https://b.example/inbox", "https://c.example:8443/inbox"])
    with store.writing() as conn:
        conn.execute(fediverse_deliveries.update().where(fediverse_deliveries.c.host == "a.example")
                     .values(status="sent"))
        conn.execute(fediverse_deliveries.update().where(fediverse_deliveries.c.host == "b.example")
                     .values(status="deferred", last_error="503 Service Unavailable"))
        conn.execute(fediverse_hosts.insert().values(host="b.example", failures=3, failing_since=NOW,
                                                     paused_until=NOW + timedelta(minutes=5),
                                                     last_error="503 Service Unavailable"))
    code, out, _ = run(site, "deliveries")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["INSTANCE", "QUEUED", "SENDING", "DEFERRED", "SENT", "FAILED", "GONE", "CANCELLED",
                                "DROPPED", "STATE", "LAST", "ERROR"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["a.example"].split()[1:9] == ["0", "0", "0", "1", "0", "0", "0", "0"]
    assert "2026-03-02 18:05 まで一時停止中" in rows["b.example"] and "503 Service Unavailable" in rows["b.example"]
    assert rows["c.example:8443"].split()[1] == "1"
    data = {r["instance"]: r for r in json.loads(run(site, "deliveries", "--format", "json")[1])}
    assert data["b.example"]["deferred"] == 1 and data["b.example"]["paused_until"].startswith("2026-03-02T09:05")


def test_block_cancels_queued_deliveries_and_refuses_bad_domains(site: Site) -> None:
    store = configure(site, "ja")
    queue.enqueue(store, account="blog", activity=note(1), inboxes=[
        "https://spam.example/inbox", "https://spam.example:8443/users/x/inbox", "https://ok.example/inbox"])
    code, out, err = run(site, "block", "Spam.Example")
    assert code == 0 and err == ""
    assert out == ("spam.example をブロックしました。このホストからのアクティビティを拒否し、"
                   "未送信の配信 2 件を取り消しました\n")
    assert Ledger(store).blocked("spam.example")
    assert queue.enqueue(store, account="blog", activity=note(2),
                         inboxes=["https://spam.example/inbox", "https://ok.example/inbox"]) == 1
    assert run(site, "block", "spam.example")[1] == (
        "spam.example はすでにブロックしています。未送信の配信 0 件を取り消しました\n")
    with store.engine.connect() as conn:
        assert sorted(conn.execute(sa.select(fediverse_deliveries.c.host, fediverse_deliveries.c.status))) == [
            ("ok.example", "queued"), ("ok.example", "queued"), ("spam.example", "cancelled"),
            ("spam.example:8443", "cancelled")]
    # Instances reached by address or by a one-label name (private networks): as the inbox compares hosts.
    for named, host in (("127.0.0.1", "127.0.0.1"), ("[::1]", "::1"), ("LocalHost", "localhost")):
        assert run(site, "block", named)[0] == 0 and Ledger(store).blocked(host)
    for bad in ("https://spam.example/", "spam.example:8443", "spam example.org", "spam-.example", "[::1", ""):
        code, out, err = run(site, "block", bad)
        assert code == 2 and out == ""
        assert err.startswith(f"feedpub: {bad}：ホスト名ではありません"), err
    site.configure(f'[store]\nurl = "sqlite:///{site.root / "feedpub.db"}"\n', language="en")
    code, out, _ = run(site, "block", "bücher.example")
    assert (code, out) == (0, "xn--bcher-kva.example blocked: its activities are refused; 0 deliveries not yet sent "
                              "cancelled\n")


def test_a_username_mastodon_cannot_follow_is_refused_naming_its_line(site: Site) -> None:
    site.configure('[activitypub]\nenabled = true\nusername = "Blog!"\n', language="ja")
    result = CliRunner().invoke(main, ["--config", str(site.toml), "check"])
    assert result.exit_code == 2
    refused = f"{site.toml}:9: 'activitypub.username': 'Blog!' は Mastodon からフォローできるアカウント名ではありません"
    assert refused in result.stderr, result.stderr
    # Its words in problems.toml, per language (shown in site.language where config errors are).
    problem = Problem(str(site.toml), 9, message("config_activitypub_username", value="'Blog!'"))
    assert problem_line(problem, load_strings("problems", "ja", None)) == (
        f"{site.toml}:9: 'Blog!' は Mastodon からフォローできるアカウント名ではありません"
        "（想定: 英小文字 a-z、数字、'_'。'.' と '-' は途中のみ。例: 'blog'）")
