"""A site post as ActivityPub sees it: its `Article` and the activities that create, update, share and delete it.

Pure: a `RenderedPost` (and the accounts' ids) in, JSON-ready dicts out. The publisher (`publish.py`) queues
them, the object and outbox endpoints serve them.

Why an `Article` (not a `Note`): a blog post is long-form text with a title. Mastodon (4.x) shows an Article it
receives as its `name`, then its `summary` (when there is one) and a link to its `url`, never the whole
`content`; Misskey, Pleroma/Akkoma, WordPress and Ghost show the content. That is FEP-b2b8 ("Long-form Text"):
`name` is the title, `summary` a plain-text preview, `content` the whole post, `url` the page. Its optional
`preview` Note is left out: Mastodon does not read it and the summary says the same. The summary is plain text
(the post's excerpt), the content the HTML the feeds carry (`feeds.content`: the whole post or its excerpt),
already sanitised with absolute links.

One object per post, whoever shares it: its id is made from the post's stable entry id alone, on
`web.public_url`'s host, and it belongs to the site account (an object has one owner, and instances keep one
status per object id). A category account shares it with an `Announce`, so its followers see it boosted by the
category; `Update` and `Delete` come from the owner, to every instance that has it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
from datetime import UTC, datetime
from typing import Any

from feedpub import urls
from feedpub.config import Config
from feedpub.site.feeds import FORMATS
from feedpub.site.markup import RenderedPost
from feedpub.site.reader import Post
from feedpub.site.typography import smartify

CONTEXT = ["https://www.w3.org/ns/activitystreams", {"Hashtag": "as:Hashtag"}]
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
# Where the objects live below web.public_url (the object endpoint routes /ap/objects/{key}).
OBJECTS_PATH = "/ap/objects/"


def object_key(post: Post) -> str:
    """The post's part of its object id: a hash of its stable entry id (the id survives a new title, permalink
    style or category, and so does the object)."""
    digest = hashlib.sha256(post.id.encode()).digest()[:15]
    return base64.urlsafe_b64encode(digest).decode()


def object_id(config: Config, post: Post) -> str:
    return config.web.public_url.rstrip("/") + OBJECTS_PATH + object_key(post)


def article(config: Config, rendered: RenderedPost, *, owner: str, followers: str,
            edited: datetime | None = None) -> dict[str, Any]:
    """The post's `Article`, owned by the actor `owner` (the site account) whose followers collection is `followers`.
    `edited` is when an edit was published: instances apply an `Update` only when `updated` moves forward."""
    post = rendered.post
    content = rendered.html if config.feeds.content == "full" else rendered.excerpt_html
    language = config.site.language
    found: dict[str, Any] = {
        "@context": CONTEXT,
        "id": object_id(config, post),
        "type": "Article",
        "attributedTo": owner,
        "to": [PUBLIC],
        "cc": [followers],
        "name": smartify(post.title),
        "content": content,
        "contentMap": {language: content},
        "url": post.url,
        "published": _instant(post.date),
    }
    if rendered.excerpt_text:
        found["summary"] = rendered.excerpt_text
        found["summaryMap"] = {language: rendered.excerpt_text}
    updated = max(post.updated, edited) if edited else post.updated
    if updated > post.date:
        found["updated"] = _instant(updated)
    tags = [hashtag(config, name) for name in post.tags]
    if tags:
        found["tag"] = tags
    if post.image:
        found["image"] = image(post)
        found["attachment"] = [image(post)]
    return found


def hashtag(config: Config, name: str) -> dict[str, str]:
    """A tag as a Hashtag (`#` and the name without spaces, as instances link them), pointing at its feed (the first
    of feeds.formats) when the site has tag feeds."""
    tag = {"type": "Hashtag", "name": "#" + "".join(str(name).split())}
    if config.feeds.tags and config.feeds.formats:
        slug = config.feeds.slugs.get(name) or urls.slugify(name)
        tag["href"] = urls.absolute(config.site.root_url, f"tags/{slug}/{FORMATS[config.feeds.formats[0]][0]}")
    return tag


def image(post: Post) -> dict[str, Any]:
    shown: dict[str, Any] = {"type": "Image", "url": post.image}
    media_type = mimetypes.guess_type(post.image.split("?", 1)[0])[0]
    if media_type:
        shown["mediaType"] = media_type
    if post.image_alt:
        shown["name"] = post.image_alt
    if post.image_size:
        shown["width"], shown["height"] = post.image_size
    return shown


def content_hash(found: dict[str, Any]) -> str:
    """What tells an edited post from an unchanged one: the Article as sent, but for its `updated` (which an
    edit's publication moves, not its text)."""
    kept = {key: value for key, value in found.items() if key != "updated"}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def create(found: dict[str, Any]) -> dict[str, Any]:
    return _activity("Create", found["id"] + "#create", found["attributedTo"], found, found["to"], found["cc"],
                     found["published"])


def update(found: dict[str, Any]) -> dict[str, Any]:
    """One id per version (its content hash): instances drop an activity whose id they have seen."""
    return _activity("Update", found["id"] + "#update-" + content_hash(found)[:16], found["attributedTo"], found,
                     found["to"], found["cc"], found.get("updated", found["published"]))


def announce(config: Config, post: Post, *, actor: str, followers: str, now: datetime) -> dict[str, Any]:
    """A category account sharing the site account's Article (by id: instances that lack it fetch it)."""
    target = object_id(config, post)
    return _activity("Announce", f"{target}#announce-{_actor_key(actor)}", actor, target, [PUBLIC],
                     [followers], _instant(now))


def delete(config: Config, post_key: str, *, owner: str, followers: str, now: datetime) -> dict[str, Any]:
    """The removal of a post's object, by its owner: a Tombstone where the Article was. Takes the object key
    (`object_key`), since the post itself is gone."""
    target = config.web.public_url.rstrip("/") + OBJECTS_PATH + post_key
    tombstone = {"id": target, "type": "Tombstone", "formerType": "Article", "deleted": _instant(now)}
    return _activity("Delete", target + "#delete", owner, tombstone, [PUBLIC], [followers], _instant(now))


def _activity(kind: str, activity_id: str, actor: str, thing: dict[str, Any] | str, to: list[str], cc: list[str],
              published: str) -> dict[str, Any]:
    inner = {key: value for key, value in thing.items() if key != "@context"} if isinstance(thing, dict) else thing
    return {"@context": CONTEXT, "id": activity_id, "type": kind, "actor": actor, "published": published,
            "to": to, "cc": cc, "object": inner}


def _actor_key(actor: str) -> str:
    return hashlib.sha256(actor.encode()).hexdigest()[:12]


def _instant(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, seconds only, as Mastodon writes and parses them."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
