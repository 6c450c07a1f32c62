"""Reader cadences, pure: which feed folders ("topics") a post is in and whether a reader's topics take it.

A topic is a feed folder as `feedpub.site.feeds.Feed.folder` names it: "categories/<slug>", "tags/<slug>",
"authors/<slug>". A reader's list of them (empty: everything) is matched case-insensitively against both the
post's names and their slugs, so a topic written with the name ("categories/AI導入戦略", as stores migrated
from category names hold them) and one written as the feed's folder take the same posts.
"""

from __future__ import annotations

from collections.abc import Iterable

from feedpub import urls
from feedpub.config import Config
from feedpub.site.reader import Post


def post_topics(config: Config, post: Post) -> frozenset[str]:
    """Every spelling of the feed folders `post` is in, case-folded."""
    groups = (("categories", post.categories), ("tags", post.tags), ("authors", (post.author,) if post.author else ()))
    found = set()
    for group, names in groups:
        for name in names:
            found.add(f"{group}/{name}".casefold())
            found.add(f"{group}/{config.feeds.slugs.get(name) or urls.slugify(name)}".casefold())
    return frozenset(found)


def wanted(topics: Iterable[str], in_topics: frozenset[str]) -> bool:
    """Whether a reader of `topics` (none: everything) takes a post in `in_topics` (`post_topics`)."""
    chosen = {topic.casefold() for topic in topics}
    return not chosen or bool(chosen & in_topics)


def topic_label(topic: str) -> str:
    """What a reader reads of a topic: its name without the group's folder."""
    return topic.split("/", 1)[-1]
