"""The actor documents: each account's, and the instance actor's. Pure.

An account is a `Person`: Mastodon labels `Service` and `Application` actors "Automated" (bots, which some people
filter out), and a blog's posts are written by people; `Group` would make Mastodon treat mentions as posts to
share. The instance actor, which only signs the server's own key fetches, is an `Application`, as Mastodon's own
instance actor is. The profile is the site's: its title (the account's feed title), description, icon, and two
`PropertyValue` links (the blog, the account's feed) that Mastodon shows as a table on the profile.
"""

from __future__ import annotations

import html
import mimetypes
import re
from typing import Any

from feedpub import urls as site_urls
from feedpub.config import Config
from feedpub.fediverse import urls
from feedpub.fediverse.accounts import Account
from feedpub.strings import Strings

CONTEXT: list[Any] = [
    "https://www.w3.org/ns/activitystreams",
    "https://w3id.org/security/v1",
    {
        "manuallyApprovesFollowers": "as:manuallyApprovesFollowers",
        "toot": "http://joinmastodon.org/ns#",
        "discoverable": "toot:discoverable",
        "indexable": "toot:indexable",
        "schema": "http://schema.org#",
        "PropertyValue": "schema:PropertyValue",
        "value": "schema:value",
    },
]


def actor(config: Config, account: Account, public_pem: str, strings: Strings) -> dict[str, Any]:
    name = account.name
    summary = (strings.text("fediverse_category", title=config.site.title, category=account.category)
               if account.category else config.site.description)
    document: dict[str, Any] = {
        "@context": CONTEXT,
        "id": urls.actor_id(config, name),
        "type": "Person",
        "preferredUsername": name,
        "name": account.title,
        "summary": f"<p>{html.escape(summary)}</p>" if summary else "",
        "url": config.site.root_url + "/",
        "inbox": urls.inbox_id(config, name),
        "outbox": urls.outbox_id(config, name),
        "followers": urls.followers_id(config, name),
        "endpoints": {"sharedInbox": urls.shared_inbox_id(config)},
        "manuallyApprovesFollowers": False,
        "discoverable": True,
        "indexable": True,
        "publicKey": {"id": urls.key_id(config, name), "owner": urls.actor_id(config, name),
                      "publicKeyPem": public_pem},
        "attachment": [_link(strings.text("fediverse_blog"), config.site.root_url + "/"),
                       _link(strings.text("fediverse_feed"), account.feed)],
    }
    if config.site.icon:
        document["icon"] = _image(_absolute(config, config.site.icon))
    if config.site.logo:
        document["image"] = _image(_absolute(config, config.site.logo))
    return document


def instance_actor(config: Config, public_pem: str) -> dict[str, Any]:
    """The server itself: it signs the GETs of remote actors' keys (instances in "authorized fetch" mode answer
    only signed GETs)."""
    actor_id = urls.instance_actor_id(config)
    return {
        "@context": CONTEXT,
        "id": actor_id,
        "type": "Application",
        "preferredUsername": urls.host(config),
        "inbox": urls.shared_inbox_id(config),
        "outbox": actor_id + "/outbox",
        "manuallyApprovesFollowers": True,
        "url": config.site.root_url + "/",
        "publicKey": {"id": urls.instance_key_id(config), "owner": actor_id, "publicKeyPem": public_pem},
    }


def _link(label: str, href: str) -> dict[str, str]:
    shown = re.sub(r"^https?://", "", href).rstrip("/")
    value = (f'<a href="{html.escape(href)}" rel="me nofollow noopener noreferrer" target="_blank">'
             f"{html.escape(shown)}</a>")
    return {"type": "PropertyValue", "name": label, "value": value}


def _image(url: str) -> dict[str, str]:
    found = {"type": "Image", "url": url}
    media_type = mimetypes.guess_type(url.split("?", 1)[0])[0]
    if media_type:
        found["mediaType"] = media_type
    return found


def _absolute(config: Config, value: str) -> str:
    """A configured URL or site path (icon, logo) made absolute, as the feeds make it."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", value, re.I):
        return value
    return site_urls.absolute(config.site.root_url, value)
