"""WebFinger (RFC 7033) for the accounts: `acct:blog@news.example.org` (the host being web.public_url's, as the
actor's preferredUsername and that host must round-trip for Mastodon) or the actor's URL → its JRD. Pure."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from urllib.parse import unquote

from feedpub.config import Config
from feedpub.fediverse import urls

JRD = "application/jrd+json"


def names_instance(config: Config, resource: str) -> bool:
    """Whether `resource` is the instance actor: `acct:HOST@HOST` (its preferredUsername is the host, as
    Mastodon's instance actor's is) or its URL. Mastodon checks that round trip before it trusts the key that
    signs our GETs."""
    host = urls.host(config)
    return resource.lower() == f"acct:{host}@{host}" or resource == urls.instance_actor_id(config)


def account_named(config: Config, resource: str, accounts: Collection[str]) -> str | None:
    """The account a `resource` names: `acct:NAME@HOST` (HOST ours, NAME any case) or an actor URL; None if
    none of ours."""
    if resource.lower().startswith("acct:"):
        name, at, host = unquote(resource[5:]).lstrip("@").rpartition("@")
        if not at or host.lower() != urls.host(config):
            return None
        matching = [account for account in accounts if account.lower() == name.lower()]
        return matching[0] if matching else None
    found = urls.account_of(config, resource)
    return found if found in accounts else None


def jrd(config: Config, account: str) -> dict[str, Any]:
    return _jrd(config, account, urls.actor_id(config, account))


def instance_jrd(config: Config) -> dict[str, Any]:
    return _jrd(config, urls.host(config), urls.instance_actor_id(config))


def _jrd(config: Config, name: str, actor: str) -> dict[str, Any]:
    return {
        "subject": f"acct:{name}@{urls.host(config)}",
        "aliases": [actor],
        "links": [
            {"rel": "self", "type": "application/activity+json", "href": actor},
            {"rel": "http://webfinger.net/rel/profile-page", "type": "text/html", "href": config.site.root_url + "/"},
        ],
    }
