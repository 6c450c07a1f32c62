"""Where each thing of the wing lives, all on `web.public_url` (the accounts' host: `acct:blog@news.example.org`).

    /ap/accounts/<name>            an account's actor (the site's username, or a category's slug)
    /ap/accounts/<name>#main-key   its key (the keyId its requests are signed with)
    /ap/accounts/<name>/inbox      its inbox; /outbox, /followers its collections
    /ap/inbox                      the shared inbox of every account
    /ap/actor                      the instance actor (signs the server's own GETs: remote actors' keys)
    /ap/objects/<key>              each post's Article (`objects.OBJECTS_PATH`)
"""

from __future__ import annotations

from urllib.parse import quote, unquote, urlsplit

from feedpub.config import Config

ACCOUNTS_PATH = "/ap/accounts/"
SHARED_INBOX_PATH = "/ap/inbox"
INSTANCE_ACTOR_PATH = "/ap/actor"


def base(config: Config) -> str:
    return config.web.public_url.rstrip("/")


def host(config: Config) -> str:
    """The accounts' host, as WebFinger's `acct:` names it (lower-case, with a port when public_url has one)."""
    return urlsplit(config.web.public_url).netloc.lower()


def actor_id(config: Config, account: str) -> str:
    return base(config) + ACCOUNTS_PATH + quote(account, safe="")


def key_id(config: Config, account: str) -> str:
    return actor_id(config, account) + "#main-key"


def inbox_id(config: Config, account: str) -> str:
    return actor_id(config, account) + "/inbox"


def outbox_id(config: Config, account: str) -> str:
    return actor_id(config, account) + "/outbox"


def followers_id(config: Config, account: str) -> str:
    return actor_id(config, account) + "/followers"


def shared_inbox_id(config: Config) -> str:
    return base(config) + SHARED_INBOX_PATH


def instance_actor_id(config: Config) -> str:
    return base(config) + INSTANCE_ACTOR_PATH


def instance_key_id(config: Config) -> str:
    return instance_actor_id(config) + "#main-key"


def account_of(config: Config, url: str) -> str | None:
    """The account whose actor id `url` is (without a fragment); None when it names none of ours."""
    prefix = base(config) + ACCOUNTS_PATH
    if not url.startswith(prefix):
        return None
    rest = url[len(prefix):].split("#", 1)[0]
    return unquote(rest) if rest and "/" not in rest else None
