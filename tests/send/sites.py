"""Sites that mail through the test SMTP server, for the sending tests: the feedpub.toml writer, posts
in the issue that is due, a site with posts and readers, the command run on it, and its delivery rows as
the store file holds them."""

from __future__ import annotations

import csv
import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner, Result

from feedpub.cli import main
from feedpub.config_file import load_config
from feedpub.send.issue import due_slot

SECRET = "fault-matrix-secret"
PASSWORD = "correct horse battery staple"
READERS = ["ayumi@example.jp", "ben@example.com", "chihiro@example.jp", "dan@example.com"]
SENDER = "ALLFORCES編集部 <news@blog.example.com>"


def write_config(root: Path, port: int, *, digest: dict[str, object] | None = None, store_url: str = "",
                 **smtp: object) -> Path:
    """feedpub.toml for a site that mails through 127.0.0.1:`port` in plain SMTP, with the store at its
    default place (or `store_url`); `digest` and `smtp` add or override keys. Returns its path."""
    sections: dict[str, dict[str, object]] = {
        "site": {"title": "ALLFORCES", "url": "https://blog.example.com", "timezone": "Asia/Tokyo"},
        "digest": {"from": SENDER, **(digest or {})},
        "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "rate_per_second": 1000, "timeout": 5,
                 "max_retries": 3, **smtp},
        "store": {"url": store_url} if store_url else {},
        "web": {"public_url": "https://news.blog.example.com"},
    }
    lines = []
    for name, values in sections.items():
        if values:
            lines.append(f"[{name}]")
            lines += [f"{key} = {json.dumps(value, ensure_ascii=False)}" for key, value in values.items()]
    config = root / "feedpub.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


def write_site(root: Path, port: int, readers: list[str] = READERS, **smtp: object) -> Path:
    """feedpub.toml, two posts from the last days and the readers as active subscribers; the config path.
    smtp.timeout is 2 s and smtp.retry_base 1 s, so waits for faults and retries stay short."""
    smtp = {"connections": 1, "timeout": 2, "retry_base": "1s", **smtp}
    config = write_config(root, port, **smtp)
    for days, title in ((1, "生成AIと著作権の現在地"), (2, "Deploying with Python")):
        write_post(config, f"post-{days}", title, days_before_slot=days)
    with (root / "readers.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name"])
        writer.writerows([email, f"読者 {email.split('@')[0]}"] for email in readers)
    assert feedpub(config, "subscribers", "import", str(root / "readers.csv")).exit_code == 0
    return config


def write_post(config: Path, slug: str, title: str, *, days_before_slot: float) -> None:
    """A post in the issue that `digest send` composes now: dated that long before the slot now due."""
    site = load_config(config)
    _, slot = due_slot(site, datetime.now(UTC))
    date = slot - timedelta(days=days_before_slot)
    posts = config.parent / "posts"
    posts.mkdir(exist_ok=True)
    (posts / f"{date:%Y-%m-%d}-{slug}.md").write_text(
        f'---\ntitle: "{title}"\ndate: {date:%Y-%m-%d %H:%M:%S %z}\n---\n\n{title}の本文です。\n', encoding="utf-8")


def feedpub(config: Path, *args: str, password: str = PASSWORD, **env: str) -> Result:
    environment = {"FEEDPUB_SECRET": SECRET, "FEEDPUB_SMTP_PASSWORD": password, **env}
    return CliRunner().invoke(main, ["--config", str(config), *args], env=environment, catch_exceptions=False)


@dataclass(frozen=True)
class Row:
    status: str
    attempts: int
    next_attempt_at: datetime | None
    updated_at: datetime
    reply: str


def deliveries(config: Path) -> dict[str, Row]:
    """Every delivery row in the site's default store file, by reader address, in the order queued."""
    with sqlite3.connect(config.parent / ".feedpub" / "feedpub.db") as db:
        found = db.execute("SELECT s.email, d.status, d.attempts, d.next_attempt_at, d.updated_at, d.last_reply "
                           "FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id ORDER BY d.id").fetchall()
    return {email: Row(status, attempts, _time(retry), _time(updated), reply)
            for email, status, attempts, retry, updated, reply in found}


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value).replace(tzinfo=UTC) if value else None
