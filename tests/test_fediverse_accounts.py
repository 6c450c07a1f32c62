"""The blog and its categories as accounts, over real HTTP (uvicorn): WebFinger, the actor documents and their
negotiation, NodeInfo 2.1, outbox pages, followers (a count), each post's object."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from feedpub.fediverse import publish
from feedpub.schema import fediverse_published
from feedpub.site.build import build_site
from feedpub.store import Store
from tests.cli.test_daemon_e2e import free_port
from tests.conftest import Site
from tests.fediverse_actor import served_blog

AP = "application/activity+json"
LD = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


@pytest.fixture
def blog(site: Site, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("FEEDPUB_SECRET", "fediverse-test-secret")
    with served_blog(site, free_port()) as (base, _):
        yield base


def test_webfinger_finds_each_account_by_acct_and_by_actor_url(blog: str) -> None:
    host = blog.removeprefix("http://")
    answer = httpx.get(f"{blog}/.well-known/webfinger", params={"resource": f"acct:blog@{host}"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/jrd+json"
    jrd = answer.json()
    assert jrd["subject"] == f"acct:blog@{host}"
    assert {"rel": "self", "type": AP, "href": f"{blog}/ap/accounts/blog"} in jrd["links"]
    by_url = httpx.get(f"{blog}/.well-known/webfinger", params={"resource": f"{blog}/ap/accounts/ai"}).json()
    assert by_url["subject"] == f"acct:ai@{host}"
    for unknown in (f"acct:nobody@{host}", "acct:blog@elsewhere.example", f"{blog}/ap/accounts/nobody"):
        assert httpx.get(f"{blog}/.well-known/webfinger", params={"resource": unknown}).status_code == 404
    assert httpx.get(f"{blog}/.well-known/webfinger").status_code == 400
    # The instance actor round-trips too (Mastodon checks it before trusting the key that signs our GETs).
    instance = httpx.get(f"{blog}/.well-known/webfinger", params={"resource": f"acct:{host}@{host}"}).json()
    assert {"rel": "self", "type": AP, "href": f"{blog}/ap/actor"} in instance["links"]
    assert httpx.get(f"{blog}/ap/actor", headers={"Accept": AP}).json()["preferredUsername"] == host


def test_the_actor_is_the_blogs_profile_and_round_trips_with_webfinger(blog: str) -> None:
    for accept in (AP, LD):
        answer = httpx.get(f"{blog}/ap/accounts/blog", headers={"Accept": accept})
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(AP)
    actor = answer.json()
    assert actor["type"] == "Person" and actor["id"] == f"{blog}/ap/accounts/blog"
    assert actor["preferredUsername"] == "blog" and actor["name"] == "Test blog"
    assert actor["summary"] == "<p>AIのニュースと分析</p>"
    assert actor["url"] == "https://blog.example.com/"
    assert actor["icon"] == {"type": "Image", "url": "https://blog.example.com/icon.png", "mediaType": "image/png"}
    assert actor["inbox"] == f"{blog}/ap/accounts/blog/inbox"
    assert actor["endpoints"]["sharedInbox"] == f"{blog}/ap/inbox"
    assert actor["outbox"] == f"{blog}/ap/accounts/blog/outbox"
    assert actor["followers"] == f"{blog}/ap/accounts/blog/followers"
    key = actor["publicKey"]
    assert key["id"] == f"{blog}/ap/accounts/blog#main-key" and key["owner"] == actor["id"]
    assert key["publicKeyPem"].startswith("-----BEGIN PUBLIC KEY-----")
    names = [(field["type"], field["name"]) for field in actor["attachment"]]
    assert names == [("PropertyValue", "Blog"), ("PropertyValue", "Feed")]
    assert 'href="https://blog.example.com/"' in actor["attachment"][0]["value"]
    assert 'href="https://blog.example.com/feed.xml"' in actor["attachment"][1]["value"]
    # The same key at every fetch: made once.
    again = httpx.get(f"{blog}/ap/accounts/blog", headers={"Accept": AP}).json()
    assert again["publicKey"] == key


def test_each_category_is_an_account_named_by_its_slug(blog: str) -> None:
    actor = httpx.get(f"{blog}/ap/accounts/ai", headers={"Accept": AP}).json()
    assert actor["preferredUsername"] == "ai" and actor["name"] == "Test blog | AI"
    assert actor["summary"] == "<p>Posts of Test blog in AI</p>"
    assert 'href="https://blog.example.com/categories/ai/feed.xml"' in actor["attachment"][1]["value"]
    assert httpx.get(f"{blog}/ap/accounts/nobody", headers={"Accept": AP}).status_code == 404


def test_a_browser_is_sent_to_the_blog(blog: str) -> None:
    for path in ("/ap/accounts/blog", "/ap/accounts/ai", "/ap/actor"):
        answer = httpx.get(blog + path, headers={"Accept": BROWSER})
        assert answer.status_code == 303 and answer.headers["location"] == "https://blog.example.com/"
        assert answer.headers["vary"] == "Accept"


def test_nodeinfo(blog: str) -> None:
    links = httpx.get(f"{blog}/.well-known/nodeinfo").json()["links"]
    assert links == [{"rel": "http://nodeinfo.diaspora.software/ns/schema/2.1", "href": f"{blog}/nodeinfo/2.1"}]
    document = httpx.get(links[0]["href"]).json()
    assert document["version"] == "2.1" and document["software"]["name"] == "feedpub"
    assert document["protocols"] == ["activitypub"] and document["openRegistrations"] is False
    assert document["usage"]["users"]["total"] == 4 and document["usage"]["localPosts"] == 2   # blog, ai, news, 国内


def test_the_outbox_pages_the_accounts_posts_newest_first(blog: str) -> None:
    outbox = httpx.get(f"{blog}/ap/accounts/blog/outbox", headers={"Accept": AP}).json()
    assert outbox["type"] == "OrderedCollection" and outbox["totalItems"] == 2
    assert outbox["first"] == f"{blog}/ap/accounts/blog/outbox?page=1" and outbox["last"] == outbox["first"]
    page = httpx.get(outbox["first"], headers={"Accept": AP}).json()
    assert page["type"] == "OrderedCollectionPage" and page["partOf"] == outbox["id"] and "next" not in page
    creates = page["orderedItems"]
    assert [item["type"] for item in creates] == ["Create", "Create"]
    assert [item["object"]["name"] for item in creates] == ["推論性能35%向上", "Hello fediverse"]
    article = creates[0]["object"]
    assert article["type"] == "Article" and article["attributedTo"] == f"{blog}/ap/accounts/blog"
    assert "<strong>推論性能35%</strong>向上" in article["content"]
    # The category account shares the site account's Article.
    news = httpx.get(f"{blog}/ap/accounts/news/outbox?page=1", headers={"Accept": AP}).json()["orderedItems"]
    assert [(item["type"], item["object"]) for item in news] == [("Announce", c["object"]["id"]) for c in creates]
    ai = httpx.get(f"{blog}/ap/accounts/ai/outbox", headers={"Accept": AP}).json()
    assert ai["totalItems"] == 1
    assert httpx.get(f"{blog}/ap/accounts/blog/outbox?page=2", headers={"Accept": AP}).status_code == 404
    assert httpx.get(f"{blog}/ap/accounts/blog/outbox?page=x", headers={"Accept": AP}).status_code == 404


def test_each_post_is_its_article_at_its_id(blog: str) -> None:
    page = httpx.get(f"{blog}/ap/accounts/blog/outbox?page=1", headers={"Accept": AP}).json()
    article = page["orderedItems"][1]["object"]
    answer = httpx.get(article["id"], headers={"Accept": LD})
    assert answer.status_code == 200 and answer.json()["name"] == "Hello fediverse"
    assert answer.json()["id"] == article["id"]
    shown = httpx.get(article["id"], headers={"Accept": BROWSER})
    assert shown.status_code == 303 and shown.headers["location"] == article["url"]
    assert httpx.get(f"{blog}/ap/objects/nothing", headers={"Accept": AP}).status_code == 404


def test_followers_show_a_count_only(blog: str) -> None:
    followers = httpx.get(f"{blog}/ap/accounts/blog/followers", headers={"Accept": AP}).json()
    assert followers == {"@context": "https://www.w3.org/ns/activitystreams",
                         "id": f"{blog}/ap/accounts/blog/followers", "type": "OrderedCollection", "totalItems": 0}


def test_nothing_of_it_is_there_when_activitypub_is_off(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    from feedpub.store import open_store
    from feedpub.web.app import create_app
    from tests.conftest import serving

    monkeypatch.setenv("FEEDPUB_SECRET", "fediverse-test-secret")
    port = free_port()
    app = create_app(site.config, open_store(site.config.store_url), send_confirmation=lambda *mail: None,
                     topics=lambda: [], health=dict)
    with serving(app, port):
        assert httpx.get(f"http://127.0.0.1:{port}/.well-known/webfinger?resource=acct:blog@x").status_code == 404
        assert httpx.get(f"http://127.0.0.1:{port}/ap/accounts/blog", headers={"Accept": AP}).status_code == 404


def test_the_profile_speaks_the_sites_language(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDPUB_SECRET", "fediverse-test-secret")
    with served_blog(site, free_port(), language="ja") as (blog, _):
        actor = httpx.get(f"{blog}/ap/accounts/news", headers={"Accept": AP}).json()
    assert [field["name"] for field in actor["attachment"]] == ["ブログ", "フィード"]
    assert actor["summary"] == "<p>Test blog の「news」の記事</p>"


def test_a_deleted_posts_id_answers_gone_with_a_tombstone(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    from feedpub.schema import fediverse_published

    monkeypatch.setenv("FEEDPUB_SECRET", "fediverse-test-secret")
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with served_blog(site, free_port()) as (blog, store):
        with store.engine.begin() as conn:
            conn.execute(fediverse_published.insert().values(
                account="blog", object_key="gonepost", url="https://blog.example.com/gone.html", content_hash="x",
                state="deleted", published_at=when, created_at=when, updated_at=when))
        answer = httpx.get(f"{blog}/ap/objects/gonepost", headers={"Accept": AP})
    assert answer.status_code == 410
    assert answer.json() == {"@context": "https://www.w3.org/ns/activitystreams", "id": f"{blog}/ap/objects/gonepost",
                             "type": "Tombstone", "formerType": "Article", "deleted": "2026-01-02T03:04:05Z"}


def build_and_publish(site: Site, store: Store) -> publish.PublishReport:
    build_site(site.config)
    return publish.publish(site.config, store)


def post_now(site: Site, title: str, body: str) -> None:
    date = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    site.post(f"{date:%Y-%m-%d}-fresh.md", f"---\ntitle: {title}\ndate: {date.isoformat()}\ncategories: [news]\n"
                                           f"---\n{body}\n")


def published_keys(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        return set(conn.scalars(sa.select(fediverse_published.c.object_key)))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FEEDPUB_SECRET", "fediverse-test-secret")
    return request.getfixturevalue("pg_url") if request.param == "postgresql" else ""


def test_a_post_a_build_publishes_is_its_article_at_once(site: Site, store_url: str) -> None:
    with served_blog(site, free_port(), store_url=store_url) as (blog, store):
        build_and_publish(site, store)
        # The app has read the site just now: the next post comes well within its 10 s between reads.
        assert httpx.get(f"{blog}/ap/accounts/blog/outbox", headers={"Accept": AP}).json()["totalItems"] == 2
        before = published_keys(store)
        post_now(site, "新しい記事", "ブーストされた直後に取得されます。")
        report = build_and_publish(site, store)
        assert (report.created, report.announced) == (1, 1)
        (key,) = published_keys(store) - before
        # What a boost's receiver does at once: fetch the Announce's object by its id.
        answer = httpx.get(f"{blog}/ap/objects/{key}", headers={"Accept": AP})
        assert answer.status_code == 200 and answer.json()["name"] == "新しい記事"
        assert httpx.get(f"{blog}/ap/accounts/blog/outbox", headers={"Accept": AP}).json()["totalItems"] == 3


def test_an_edited_posts_article_carries_the_time_of_its_update(site: Site, store_url: str) -> None:
    with served_blog(site, free_port(), store_url=store_url) as (blog, store):
        build_and_publish(site, store)
        before = published_keys(store)
        post_now(site, "Edited later", "First words.")
        build_and_publish(site, store)
        (key,) = published_keys(store) - before
        first = httpx.get(f"{blog}/ap/objects/{key}", headers={"Accept": AP}).json()
        assert "updated" not in first and "First words." in first["content"]
        post_now(site, "Edited later", "Second words.")
        assert build_and_publish(site, store).updated == 1
        with store.engine.connect() as conn:
            edited = conn.scalar(sa.select(fediverse_published.c.updated_at).where(
                fediverse_published.c.object_key == key, fediverse_published.c.account == "blog"))
        article = httpx.get(f"{blog}/ap/objects/{key}", headers={"Accept": AP}).json()
    # As the Update carried it: instances that fetch the object see the edit, not the older version.
    assert "Second words." in article["content"]
    assert article["updated"] == edited.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    assert article["updated"] > article["published"]
