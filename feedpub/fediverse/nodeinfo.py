"""NodeInfo 2.1: the discovery document at /.well-known/nodeinfo and the document it links. Pure."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from feedpub.config import Config
from feedpub.fediverse import urls

SCHEMA = "http://nodeinfo.diaspora.software/ns/schema/2.1"
PATH = "/nodeinfo/2.1"
MEDIA_TYPE = f'application/json; profile="{SCHEMA}#"'


def discovery(config: Config) -> dict[str, Any]:
    return {"links": [{"rel": SCHEMA, "href": urls.base(config) + PATH}]}


def document(config: Config, *, accounts: int, posts: int) -> dict[str, Any]:
    """Every account is active (a blog's accounts post when the blog does); nobody can register."""
    return {
        "version": "2.1",
        "software": {"name": "feedpub", "version": _version()},
        "protocols": ["activitypub"],
        "services": {"inbound": [], "outbound": ["atom1.0", "rss2.0"]},
        "openRegistrations": False,
        "usage": {"users": {"total": accounts, "activeHalfyear": accounts, "activeMonth": accounts},
                  "localPosts": posts},
        "metadata": {"nodeName": config.site.title, "nodeDescription": config.site.description},
    }


def _version() -> str:
    try:
        return version("feedpub")
    except PackageNotFoundError:
        return "0"
