"""Publishing from real builds of a small site (Japanese and English posts) to real inboxes that verify every
signature: a new post's Create once per instance (a category account's Announce to its own followers), an edit's
Update, a removal's Delete (Tombstone); backdated posts and imports recorded, not pushed; the state kept in the
store across restarts; `feedpub build` queues them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import time_machine
from click.testing import CliRunner

from feedpub.cli import main
from feedpub.fediverse import delivery, publish
from feedpub.fediverse.ledger import Ledger
from feedpub.fediverse.urls import actor_id, key_id
from feedpub.schema import fediverse_activities, fediverse_deliveries, fediverse_published
from feedpub.site.build import build_site
from feedpub.store import Store, open_store
from tests.conftest import Site, emptied
from tests.fediverse_inboxes import Inboxes, serving_ports

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, site: Site) -> Iterator[Store]:
    if request.param == "sqlite":
        opened = open_store(f"sqlite:///{site.root / 'feedpub.db'}")
    else:
        opened = emptied(open_store(request.getfixturevalue("pg_url")))
    yield opened
    opened.engine.dispose()


def configure(site: Site, store_url: str) -> None:
    site.configure(f'[store]\nurl = "{store_url}"\n[web]\npublic_url = "https://news.example.org"\n'
                   '[activitypub]\nenabled = true\ncategories = true\nallow_private_addresses = true\n',
                   language="ja")


def post(site: Site, name: str, title: str, date: datetime, body: str, category: str = "AI") -> Path:
    return site.post(f"{name}.md", f"---\ntitle: \"{title}\"\ndate: {date.isoformat()}\ncategories: [{category}]\n"
                                   f"tags: [機械学習]\n---\n{body}\n")


def build_and_publish(site: Site, store: Store) -> publish.PublishReport:
    config = site.config
    build_site(config)
    return publish.publish(config, store)


def received(inboxes: Inboxes) -> list[tuple[str, str, str]]:
    """(instance, type, actor) of everything received, in order."""
    return [(where, activity["type"], activity["actor"].rsplit("/", 1)[1]) for where, _, activity in inboxes.received]


def test_create_announce_update_delete_from_real_builds(site: Site, store: Store) -> None:
    configure(site, store.engine.url.render_as_string(hide_password=False))
    config = site.config
    ledger = Ledger(store)
    inboxes = Inboxes({key_id(config, name): ledger.key_pair(name).public_pem for name in ("blog", "ai")})
    with time_machine.travel(T0, tick=True), serving_ports(inboxes.app(), 3) as ports:
        one, two, three = (f"127.0.0.1:{port}" for port in ports)
        # Two followers on one instance (one shared inbox), one on another; a category follower on a third.
        ledger.add_follower("blog", "https://one/users/ann", f"http://{one}/users/ann/inbox", f"http://{one}/inbox",
                            "one")
        ledger.add_follower("blog", "https://one/users/bob", f"http://{one}/users/bob/inbox", f"http://{one}/inbox",
                            "one")
        ledger.add_follower("blog", "https://two/users/cy", f"http://{two}/users/cy/inbox", "", "two")
        ledger.add_follower("ai", "https://three/users/di", f"http://{three}/users/di/inbox", f"http://{three}/inbox",
                            "three")
        post(site, "2026-01-10-old", "古い記事", T0 - timedelta(days=50), "昔の話。")
        post(site, "2026-01-11-older", "Old English post", T0 - timedelta(days=49), "An old story.", "News")
        first = build_and_publish(site, store)
        assert (first.created, first.recorded, first.queued) == (0, 2, 0)   # the blog's past stays quiet

        new = post(site, "2026-03-02-new", "新しい記事", T0 - timedelta(hours=1), "**新機能**を発表しました。")
        report = build_and_publish(site, store)
        assert (report.created, report.announced, report.queued) == (1, 1, 3)
        assert delivery.deliver(config, store).counts == {"sent": 3}
        assert sorted(received(inboxes)) == sorted([(one, "Create", "blog"), (two, "Create", "blog"),
                                                    (three, "Announce", "ai")])
        article = inboxes.at(one)[0]["object"]
        assert article["type"] == "Article" and article["name"] == "新しい記事"
        assert "<strong>新機能</strong>" in article["content"] and article["contentMap"].keys() == {"ja"}
        assert article["attributedTo"] == actor_id(config, "blog")
        assert inboxes.at(three)[0]["object"] == article["id"]
        assert [path for where, path, _ in inboxes.received if where == one] == ["/inbox"]

        # A build that changes nothing publishes nothing, in a new process (a store opened anew) too.
        again = publish.publish(config, open_store(str(store.engine.url.render_as_string(hide_password=False))))
        assert again.queued == 0 and again == publish.PublishReport()

        inboxes.received.clear()
        new.write_text(new.read_text(encoding="utf-8").replace("発表しました", "正式に発表しました"), encoding="utf-8")
        report = build_and_publish(site, store)
        assert (report.updated, report.queued) == (1, 3)
        delivery.deliver(config, store)
        assert sorted(received(inboxes)) == sorted([(one, "Update", "blog"), (two, "Update", "blog"),
                                                    (three, "Update", "blog")])
        updated = inboxes.at(three)[0]["object"]
        assert "正式に発表しました" in updated["content"] and updated["id"] == article["id"]
        assert updated["updated"] > article["published"]

        inboxes.received.clear()
        new.unlink()
        report = build_and_publish(site, store)
        assert (report.deleted, report.queued) == (1, 3)
        delivery.deliver(config, store)
        assert sorted(received(inboxes)) == sorted([(one, "Delete", "blog"), (two, "Delete", "blog"),
                                                    (three, "Delete", "blog")])
        tombstone = inboxes.at(two)[0]["object"]
        assert (tombstone["id"], tombstone["type"], tombstone["formerType"]) == (article["id"], "Tombstone", "Article")
        assert not inboxes.refused
    with store.engine.connect() as conn:
        states = dict(conn.execute(sa.select(fediverse_published.c.account, fediverse_published.c.state)
                                   .where(fediverse_published.c.url.like("%/2026/03/02/%"))).all())
    assert states == {"blog": "deleted", "ai": "deleted"}


def test_backdated_posts_and_imports_are_recorded_not_pushed(site: Site, store: Store) -> None:
    configure(site, store.engine.url.render_as_string(hide_password=False))
    Ledger(store).add_follower("blog", "https://one/users/ann", "https://one.example/users/ann/inbox",
                               "https://one.example/inbox", "one.example")
    with time_machine.travel(T0, tick=True):
        post(site, "2026-03-01-a", "First", T0 - timedelta(days=1), "A.")
        assert build_and_publish(site, store).created == 1
        # Dated well before the newest post the account knows: backdated.
        post(site, "2026-02-20-b", "Written last month", T0 - timedelta(days=9), "B.")
        report = build_and_publish(site, store)
        assert (report.created, report.recorded) == (0, 1)
        # Six new posts in one build: an import.
        for day in range(6):
            post(site, f"2026-03-02-import-{day}", f"取り込み {day}", T0 - timedelta(minutes=10 + day), "C.")
        report = build_and_publish(site, store)
        assert (report.created, report.recorded, report.queued) == (0, 6, 0)
        # A backdated post's later edit sends nothing (it was never pushed) but is remembered.
        edited = site.posts / "2026-02-20-b.md"
        edited.write_text(edited.read_text().replace("B.", "B, edited."))
        assert build_and_publish(site, store).queued == 0
    with store.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(fediverse_deliveries)) == 1


def test_a_bulk_import_is_more_than_digest_post_burst_new_posts(site: Site, store: Store) -> None:
    """One threshold for a bulk import, mail's and the fediverse's: `digest.post_burst`."""
    configure(site, store.engine.url.render_as_string(hide_password=False))
    site.toml.write_text(site.toml.read_text(encoding="utf-8") + "[digest]\npost_burst = 2\n", encoding="utf-8")
    Ledger(store).add_follower("blog", "https://one/users/ann", "https://one.example/users/ann/inbox",
                               "https://one.example/inbox", "one.example")
    with time_machine.travel(T0, tick=True):
        post(site, "2026-03-01-a", "First", T0 - timedelta(days=1), "A.")
        assert build_and_publish(site, store).created == 1
        for day in range(2):
            post(site, f"2026-03-02-two-{day}", f"二つ {day}", T0 - timedelta(minutes=30 + day), "B.")
        assert build_and_publish(site, store).created == 2
        for day in range(3):
            post(site, f"2026-03-02-three-{day}", f"三つ {day}", T0 - timedelta(minutes=10 + day), "C.")
        report = build_and_publish(site, store)
    assert (report.created, report.recorded, report.queued) == (0, 3, 0)


def test_feedpub_build_queues_what_it_publishes(site: Site, tmp_path: Path) -> None:
    configure(site, f"sqlite:///{tmp_path / 'store.db'}")
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    Ledger(store).add_follower("blog", "https://one/users/ann", "https://one.example/users/ann/inbox", "",
                               "one.example")
    written = datetime.now(UTC) - timedelta(hours=1)
    post(site, f"{written:%Y-%m-%d}-hello", "Hello", written, "Hello, fediverse.", "News")
    result = CliRunner().invoke(main, ["--config", str(site.toml), "build"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        "フェディバース：新規 1 件、更新 0 件、削除 0 件、カテゴリのブースト 1 件、配信せずに記録 0 件"
        "（過去の日付または一括取り込み）。配信 1 件をキューに追加しました")
    again = CliRunner().invoke(main, ["--config", str(site.toml), "build"])
    assert again.exit_code == 0 and "フェディバース" not in again.output
    with store.engine.connect() as conn:
        assert list(conn.execute(sa.select(fediverse_deliveries.c.inbox, fediverse_deliveries.c.status))) == [
            ("https://one.example/users/ann/inbox", "queued")]
    store.engine.dispose()


def test_two_processes_publishing_at_once_queue_each_activity_once(site: Site, store: Store,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    configure(site, store.engine.url.render_as_string(hide_password=False))
    # Both read what was published before either writes: each plans the same Create.
    both_read = threading.Barrier(2)
    read = publish._known

    def read_together(opened: Store) -> dict:
        found = read(opened)
        both_read.wait(timeout=30)
        return found

    monkeypatch.setattr(publish, "_known", read_together)
    config = site.config
    Ledger(store).add_follower("blog", "https://one/users/ann", "https://one.example/users/ann/inbox",
                               "https://one.example/inbox", "one.example")
    with time_machine.travel(T0, tick=True):
        post(site, "2026-03-02-race", "同時に公開", T0 - timedelta(hours=1), "競合。")
        build_site(config)
        stores = [open_store(store.engine.url.render_as_string(hide_password=False)) for _ in range(2)]
        reports: list[publish.PublishReport] = []
        racers = [threading.Thread(target=lambda s=s: reports.append(publish.publish(config, s))) for s in stores]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join()
        for opened in stores:
            opened.engine.dispose()
    assert sorted(r.created for r in reports) == [0, 1] and sum(r.queued for r in reports) == 1
    with store.engine.connect() as conn:
        assert list(conn.scalars(sa.select(fediverse_activities.c.kind))) == ["Create"]
        assert conn.scalar(sa.select(sa.func.count()).select_from(fediverse_deliveries)) == 1
