"""Where the accounts live on `web.public_url` (helper fedi's module; the part publishing needs until it lands)."""

from __future__ import annotations

from urllib.parse import quote

from feedpub.config import Config

ACCOUNTS_PATH = "/ap/accounts/"


def base(config: Config) -> str:
    return config.web.public_url.rstrip("/")


def actor_id(config: Config, account: str) -> str:
    return base(config) + ACCOUNTS_PATH + quote(account, safe="")


def key_id(config: Config, account: str) -> str:
    return actor_id(config, account) + "#main-key"


def followers_id(config: Config, account: str) -> str:
    return actor_id(config, account) + "/followers"
