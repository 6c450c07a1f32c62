"""`bounces list --format csv`: what a returned message carried is text in a spreadsheet, never a formula."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from click.testing import CliRunner

from feedpub.cli import main
from feedpub.schema import bounces
from feedpub.store import open_store


def test_bounce_cells_a_spreadsheet_would_run_are_text(site, monkeypatch):
    monkeypatch.chdir(site.root)
    store = open_store(site.config.store_url)
    with store.writing() as conn:
        conn.execute(bounces.insert().values(
            received_at=datetime(2025, 12, 15, tzinfo=UTC), source="webhook:generic", message_key="generic:e-1",
            recipient="-x@example.com", kind="hard", status="5.1.1", why="provider event",
            diagnostic="=cmd|' /C calc'!A0", effect="@SUM(1+1) suppressed", raw=b"{}", raw_size=2))
    store.engine.dispose()
    result = CliRunner().invoke(main, ["bounces", "list", "--format", "csv"], catch_exceptions=False)
    assert result.exit_code == 0
    (row,) = csv.DictReader(io.StringIO(result.stdout))
    assert (row["recipient"], row["diagnostic"], row["effect"]) == (
        "'-x@example.com", "'=cmd|' /C calc'!A0", "'@SUM(1+1) suppressed")
    assert row["kind"] == "hard" and row["received"].startswith("2025-12-15")
