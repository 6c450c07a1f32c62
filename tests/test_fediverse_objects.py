"""A post's Article and its activities, from a real small site (Japanese and English posts)."""

from __future__ import annotations

from datetime import UTC, datetime

from feedpub.fediverse import objects
from feedpub.site.markup import render_posts
from feedpub.site.posts import collect
from tests.conftest import Site

OWNER = "https://news.example.org/ap/users/blog"
FOLLOWERS = OWNER + "/followers"


def rendered(site: Site) -> dict:
    config = site.config
    posts = collect(config).posts
    found, problems = render_posts(config, posts)
    assert not [p for p in problems if not p.warning]
    return {r.post.title: r for r in found}


def write_site(site: Site, extra: str = "") -> None:
    site.configure("[feeds]\ntags = true\n[web]\npublic_url = \"https://news.example.org\"\n" + extra,
                   language="ja")
    site.post("2025-12-16-ai.md", """
        ---
        title: "AI導入戦略の基本"
        date: 2025-12-16 09:00:00 +09:00
        last_modified_at: 2025-12-18 10:00:00 +09:00
        tags: [機械学習, "Deep Learning"]
        image: /img/cover.png
        ---
        最初の段落です。**推論性能35%**向上。

        <script>alert(1)</script>[続き](/more.html)
        """)
    site.post("2025-12-17-hello.md", """
        ---
        title: Hello "world"
        date: 2025-12-17 09:00:00 +09:00
        ---
        Plain English text.
        """)


def test_article_carries_what_mastodon_and_long_form_readers_show(site: Site) -> None:
    write_site(site)
    config = site.config
    post = rendered(site)["AI導入戦略の基本"]
    found = objects.article(config, post, owner=OWNER, followers=FOLLOWERS)
    assert found["type"] == "Article"
    assert found["id"].startswith("https://news.example.org/ap/objects/")
    assert found["id"] == objects.object_id(config, post.post)
    assert found["name"] == "AI導入戦略の基本"
    assert found["url"] == post.post.url and found["url"].startswith("https://blog.example.com/")
    assert "<strong>推論性能35%</strong>" in found["content"]
    assert "<script>" not in found["content"]
    assert 'href="https://blog.example.com/more.html"' in found["content"]
    assert found["contentMap"] == {"ja": found["content"]}
    assert found["summary"].startswith("最初の段落です。")
    assert found["published"] == "2025-12-16T00:00:00Z"
    assert found["updated"] == "2025-12-18T01:00:00Z"
    assert found["to"] == [objects.PUBLIC] and found["cc"] == [FOLLOWERS]
    assert found["attributedTo"] == OWNER
    assert [t["name"] for t in found["tag"]] == ["#機械学習", "#DeepLearning"]
    assert found["tag"][0]["href"] == "https://blog.example.com/tags/%E6%A9%9F%E6%A2%B0%E5%AD%A6%E7%BF%92/feed.xml"
    assert found["image"] == {"type": "Image", "url": "https://blog.example.com/img/cover.png",
                              "mediaType": "image/png"}
    assert found["attachment"] == [found["image"]]


def test_english_post_without_edit_has_no_updated_and_smart_title(site: Site) -> None:
    write_site(site, "")
    site.configure("[web]\npublic_url = \"https://news.example.org\"\n", language="en")
    post = rendered(site)['Hello "world"']
    found = objects.article(site.config, post, owner=OWNER, followers=FOLLOWERS)
    assert found["name"] == "Hello “world”"
    assert "updated" not in found and "tag" not in found and "image" not in found
    assert found["contentMap"] == {"en": "<p>Plain English text.</p>"}


def test_activity_ids_are_stable_and_an_edit_gets_a_new_update_id(site: Site) -> None:
    write_site(site)
    config = site.config
    post = rendered(site)["AI導入戦略の基本"]
    first = objects.article(config, post, owner=OWNER, followers=FOLLOWERS)
    again = objects.article(config, rendered(site)["AI導入戦略の基本"], owner=OWNER, followers=FOLLOWERS)
    assert objects.create(first) == objects.create(again)
    assert objects.create(first)["id"] == first["id"] + "#create"
    assert objects.create(first)["object"]["id"] == first["id"]
    assert "@context" not in objects.create(first)["object"]
    edited_at = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
    edited = objects.article(config, post, owner=OWNER, followers=FOLLOWERS, edited=edited_at)
    assert edited["updated"] == "2026-01-05T03:00:00Z"
    assert objects.content_hash(edited) == objects.content_hash(first)   # only `updated` moved
    site.post("2025-12-16-ai.md", (site.posts / "2025-12-16-ai.md").read_text().replace("最初", "最新"))
    changed = objects.article(config, rendered(site)["AI導入戦略の基本"], owner=OWNER, followers=FOLLOWERS,
                              edited=edited_at)
    assert objects.content_hash(changed) != objects.content_hash(first)
    assert objects.update(changed)["id"] != objects.update(first)["id"]
    assert objects.update(changed)["type"] == "Update" and objects.update(changed)["actor"] == OWNER


def test_delete_is_a_tombstone_and_announce_shares_by_id(site: Site) -> None:
    write_site(site)
    config = site.config
    post = rendered(site)["AI導入戦略の基本"].post
    now = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
    gone = objects.delete(config, objects.object_key(post), owner=OWNER, followers=FOLLOWERS, now=now)
    assert gone["type"] == "Delete" and gone["id"] == objects.object_id(config, post) + "#delete"
    assert gone["object"] == {"id": objects.object_id(config, post), "type": "Tombstone", "formerType": "Article",
                              "deleted": "2026-01-05T03:00:00Z"}
    category = "https://news.example.org/ap/users/ai"
    shared = objects.announce(config, post, actor=category, followers=category + "/followers", now=now)
    assert shared["type"] == "Announce" and shared["object"] == objects.object_id(config, post)
    assert shared["actor"] == category and shared["id"].startswith(objects.object_id(config, post) + "#announce-")
