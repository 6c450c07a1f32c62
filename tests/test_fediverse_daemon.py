"""The real daemon (`feedpub run`) publishing to a real inbox that verifies signatures: a post saved while it runs
reaches the follower's instance as a Create within seconds, its edit as an Update, its removal as a Delete; and
a restart sends nothing again."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from feedpub.fediverse.ledger import Ledger
from feedpub.fediverse.urls import key_id
from feedpub.store import open_store
from tests.cli.test_daemon_e2e import DaemonProcess, free_port
from tests.fediverse_inboxes import Inboxes, serving_ports


def wait_for(inboxes: Inboxes, count: int, timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(inboxes.received) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return [activity["type"] for _, _, activity in inboxes.received]


def test_the_daemon_creates_updates_and_deletes_as_posts_change(tmp_path: Path) -> None:
    web_port = free_port()
    (tmp_path / "posts").mkdir()
    (tmp_path / "feedpub.toml").write_text(f"""
[site]
title = "ALLFORCES"
url = "https://blog.example.com"
timezone = "Asia/Tokyo"
language = "ja"
[web]
listen = "127.0.0.1:{web_port}"
public_url = "http://127.0.0.1:{web_port}"
admin = false
[activitypub]
enabled = true
allow_private_addresses = true
""", encoding="utf-8")
    old = datetime.now(UTC) - timedelta(days=60)
    (tmp_path / "posts" / f"{old:%Y-%m-%d}-old.md").write_text(
        f"---\ntitle: 昔の記事\ndate: {old.isoformat()}\n---\n昔の話。\n", encoding="utf-8")
    from feedpub.config_file import load_config

    config = load_config(tmp_path / "feedpub.toml")
    store = open_store(config.store_url)
    inboxes = Inboxes({key_id(config, "blog"): Ledger(store).key_pair("blog").public_pem})
    with serving_ports(inboxes.app(), 1) as (port,):
        Ledger(store).add_follower("blog", f"http://127.0.0.1:{port}/users/ann",
                                   f"http://127.0.0.1:{port}/users/ann/inbox", f"http://127.0.0.1:{port}/inbox",
                                   "127.0.0.1")
        daemon = DaemonProcess(tmp_path, web_port)
        try:
            time.sleep(1)
            assert inboxes.received == []          # the blog's past is not pushed
            now = datetime.now(UTC)
            post = tmp_path / "posts" / f"{now:%Y-%m-%d}-new.md"
            post.write_text(f"---\ntitle: 新しい記事\ndate: {now.isoformat()}\n---\n**新機能**の発表。\n",
                            encoding="utf-8")
            assert wait_for(inboxes, 1) == ["Create"]
            assert inboxes.received[0][2]["object"]["name"] == "新しい記事"
            post.write_text(post.read_text(encoding="utf-8").replace("発表", "正式発表"), encoding="utf-8")
            assert wait_for(inboxes, 2) == ["Create", "Update"]
            assert "正式発表" in inboxes.received[1][2]["object"]["content"]
            post.unlink()
            assert wait_for(inboxes, 3) == ["Create", "Update", "Delete"]
        finally:
            assert daemon.stop() == 0
        # Its sender logs in site.language, as the rest of the daemon does.
        logged = daemon.log.read_text(encoding="utf-8")
        assert "フェディバース：配信 1 件を送信" in logged, logged
        assert "deliveries sent" not in logged and "delivery sent" not in logged
        daemon = DaemonProcess(tmp_path, web_port)
        try:
            time.sleep(2)
        finally:
            assert daemon.stop() == 0
    assert len(inboxes.received) == 3 and not inboxes.refused
    assert {path for _, path, _ in inboxes.received} == {"/inbox"}
    store.engine.dispose()
