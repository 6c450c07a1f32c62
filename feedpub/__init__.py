"""feedpub: Jekyll-style Markdown posts → RSS, Atom and JSON feeds and a weekly e-mail digest."""

from __future__ import annotations

from pathlib import Path


def shipped(name: str) -> Path:
    """A data folder that ships inside the wheel under `feedpub/` and sits at the top of a source
    checkout (editable installs): e.g. `email_templates`."""
    inside = Path(__file__).parent / name
    return inside if inside.exists() else Path(__file__).parent.parent / name
