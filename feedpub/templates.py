"""Every Jinja environment feedpub renders with, and where the shipped templates live.

Four homes, one loader: the digest mail (`email_templates/`, at the top of a checkout and inside the
wheel as `feedpub/email_templates`), the web pages (`feedpub/web/templates/`), the feeds index page
and stylesheet (`feedpub/site/assets/`) and the operator's dashboard (`feedpub/web/admin/templates/`).
An operator's folder, where configured, overrides the shipped files one by one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import jinja2

Home = Literal["email", "web", "site", "admin"]
_PACKAGE = Path(__file__).parent


def _shipped(name: str) -> Path:
    """A data folder that ships inside the wheel under `feedpub/` and sits at the top of a source
    checkout (editable installs): e.g. `email_templates`."""
    inside = _PACKAGE / name
    return inside if inside.exists() else _PACKAGE.parent / name


def folder(home: Home) -> Path:
    """Where the shipped templates of `home` are."""
    if home == "email":
        return _shipped("email_templates")
    if home == "admin":
        return _PACKAGE / "web" / "admin" / "templates"
    return _PACKAGE / home / ("templates" if home == "web" else "assets")


def environment(home: Home, override: Path | None = None) -> jinja2.Environment:
    """The environment for `home`'s templates, `override` (a folder) searched first."""
    search = [override] if override is not None and override.is_dir() else []
    loader = jinja2.FileSystemLoader([*search, folder(home)])
    if home == "email":
        # Mail bodies: HTML escaped, text not; a missing variable is an error, not an empty string in
        # thousands of inboxes.
        return jinja2.Environment(
            loader=loader,
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2", "html"), default_for_string=False),
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    if home == "site":
        return jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined,
                                  keep_trailing_newline=True)
    return jinja2.Environment(loader=loader, autoescape=True)
