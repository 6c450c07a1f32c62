"""The overview's counts (readers, new readers) and the subscribers' CSV export, on the seeded dashboard."""

from __future__ import annotations

import csv
import io
import re

from feedpub.records import SubscriberInput
from tests.web.admin.conftest import login


def card(page: str, title: str) -> int:
    return int(re.search(rf"{title}<b>(\d+)</b>", page).group(1))


def test_readers_exclude_suppressed_addresses_and_new_ones_unconfirmed_sign_ups(dashboard) -> None:
    store = dashboard.store
    store.save_subscribers([SubscriberInput("pending@example.com")], status="pending")
    store.save_subscribers([SubscriberInput("left@example.com")], status="active")
    store.unsubscribe("left@example.com", "unsubscribed", cause="unsubscribe")
    store.suppress("bob@example.com", "hard bounce")       # still "active", but never mailed again
    login(dashboard.client)
    page = dashboard.client.get("/admin").text
    # alice, taro, carol; not bob (suppressed), left (gone), pending (never confirmed)
    assert card(page, "購読者数") == 3
    # confirmed this week: the four seeded readers and left@; not pending@
    assert card(page, "今週の新規購読") == 5
    assert card(page, "今週の購読解除") == 1 and card(page, "今週の配信停止") == 2


def test_the_csv_export_has_no_formula_cells_and_filters_categories_in_any_case(dashboard) -> None:
    store = dashboard.store
    store.save_subscribers([SubscriberInput("eve@example.com", '=HYPERLINK("https://evil.example/")',
                                            ("categories/News",))], status="active")
    login(dashboard.client)
    answer = dashboard.client.get("/admin/subscribers.csv", params={"topic": "categories/NEWS"})
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [(r["email"], r["name"]) for r in rows] == [
        ("bob@example.com", "Bob"), ("eve@example.com", "'=HYPERLINK(\"https://evil.example/\")")]
    listed = dashboard.client.get("/admin/subscribers", params={"topic": "categories/news"}).text
    assert "eve@example.com" in listed and "bob@example.com" in listed and "alice@example.com" not in listed
