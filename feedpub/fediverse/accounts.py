"""Which accounts the site has: its own (`activitypub.username`, every post) and, with `activitypub.categories`,
one per category feed, named by that feed's slug (`categories/<slug>/`), with the category's posts. Pure: the
config and the site's posts in, accounts out. A category whose slug is the site account's name has no account
(the site's keeps the name)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from feedpub.config import Config
from feedpub.site.feeds import plan_feeds
from feedpub.site.reader import Post


@dataclass(frozen=True)
class Account:
    name: str                    # preferredUsername: the site's username or the category's slug
    title: str                   # the name shown: the site's title, or its feed's ("ALLFORCES | AI")
    category: str                # "" for the site account
    feed: str                    # its Atom feed (or first format's) URL, linked from the profile
    posts: tuple[Post, ...]      # newest first: its outbox


def site_accounts(config: Config, posts: Sequence[Post]) -> dict[str, Account]:
    """Every account, by name: the site's first."""
    feeds, _ = plan_feeds(config, posts)
    fmt = "atom" if "atom" in config.feeds.formats else config.feeds.formats[0]
    site = config.activitypub.username
    newest_first = tuple(sorted(posts, key=lambda p: (p.date, p.path), reverse=True))
    found = {site: Account(site, feeds[0].title, "", feeds[0].url(config, fmt), newest_first)}
    if not config.activitypub.categories:
        return found
    for feed in feeds[1:]:
        group, _, slug = feed.folder.partition("/")
        if group != "categories" or slug in found:
            continue
        category = feed.title[len(feeds[0].title) + len(" | "):]
        found[slug] = Account(slug, feed.title, category, feed.url(config, fmt),
                              tuple(post for post in newest_first if category in post.categories))
    return found


