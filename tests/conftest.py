"""Shared fixtures: a site folder with a feedpub.toml and a way to add posts to it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from feedpub.config import Config, load_config


class Site:
    """A throwaway site: tmp/feedpub.toml + tmp/posts/."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.posts = root / "posts"
        self.posts.mkdir()
        self.toml = root / "feedpub.toml"
        self.configure()

    def configure(self, extra: str = "", **site: str) -> None:
        values = {"title": "Test blog", "url": "https://blog.example.com", "timezone": "Asia/Tokyo",
                  "author": "編集部", **site}
        lines = "\n".join(f'{key} = "{value}"' for key, value in values.items())
        self.toml.write_text(f"[site]\n{lines}\n{textwrap.dedent(extra)}", encoding="utf-8")

    def post(self, name: str, text: str | bytes) -> Path:
        path = self.posts / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, str):
            path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        else:
            path.write_bytes(text)
        return path

    @property
    def config(self) -> Config:
        return load_config(self.toml)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)
