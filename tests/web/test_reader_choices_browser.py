"""The reader's choices in Debian's Chromium, served by uvicorn as the daemon serves them, on a desktop and a
phone viewport, in English and Japanese: the page picks the browser's time zone (and keeps the site's without
script), a reader chooses topics, a cadence and a zone and sees them stored; the whole form by keyboard alone;
at 200% zoom nothing needs a horizontal scroll."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from feedpub.records import SubscriberInput
from feedpub.site.build import Topic
from feedpub.store import open_store
from feedpub.tokens import make_token
from feedpub.web.app import create_app
from tests.cli.test_daemon_e2e import free_port
from tests.conftest import require_browser, serving

SECRET = "reader-choices-browser-secret"
# In the feed plan's order: categories, tags, authors.
TOPICS = [Topic("categories/ai導入戦略", "AI導入戦略"), Topic("categories/news", "news"),
          Topic("tags/python", "Python"),
          Topic("tags/a-tag-whose-name-is-long", "AVeryLongTagNameWithoutAnySpaceThatMustWrapInsteadOfScrolling"),
          Topic("authors/hanako", "花子")]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# What a page says, per language.
WORDS = {
    "en": {"email": "E-mail address", "subscribe": "Subscribe", "sent": "Check your inbox", "daily": "Daily",
           "post": "Each post, as it is published", "zone": "Your time zone", "save": "Save preferences",
           "saved": "Your preferences are saved.", "tags": "Tags"},
    "ja": {"email": "メールアドレス", "subscribe": "購読する", "sent": "確認用のリンクをメールでお送りしました",
           "daily": "毎日", "post": "記事ごと（公開時）", "zone": "お住まいのタイムゾーン", "save": "設定を保存",
           "saved": "設定を保存しました。", "tags": "タグ"},
}


@pytest.fixture
def served(site, monkeypatch, request) -> Iterator[tuple[str, object, list]]:
    require_browser()
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    port = free_port()
    language = getattr(request, "param", "en")
    site.configure(f'[web]\npublic_url = "http://127.0.0.1:{port}"\n'
                   '[digest]\ncadences = ["post", "daily", "weekly", "monthly"]\n', language=language)
    store = open_store(site.config.store_url)
    outbox: list[tuple[str, str, str]] = []
    app = create_app(site.config, store, send_confirmation=lambda *mail: outbox.append(mail),
                     topics=lambda: TOPICS, health=dict)
    with serving(app, port):
        yield f"http://127.0.0.1:{port}", store, outbox


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


@pytest.mark.parametrize("served", ["en", "ja"], indirect=True)
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_reader_chooses_topics_cadence_and_zone(served, browser, viewport, request) -> None:
    from playwright.sync_api import expect

    base, store, outbox = served
    words = WORDS["ja" if "ja" in request.node.callspec.id else "en"]
    context = browser.new_context(viewport=viewport, timezone_id="America/Los_Angeles",
                                  is_mobile=viewport is PHONE, has_touch=viewport is PHONE)
    page = context.new_page()
    page.goto(f"{base}/subscribe")
    zone = page.get_by_label(words["zone"])
    expect(zone).to_have_value("America/Los_Angeles")        # the browser's zone, picked by the page's script
    page.get_by_label(words["email"]).fill("reader@example.com")
    page.get_by_role("group", name=words["tags"]).get_by_label("Python").check()
    page.get_by_label("花子").check()
    page.get_by_label(words["daily"]).check()
    assert no_horizontal_scroll(page)
    page.get_by_role("button", name=words["subscribe"]).click()
    expect(page.get_by_role("status")).to_contain_text(words["sent"])
    stored = store.subscriber("reader@example.com")
    assert (stored.status, stored.topics, stored.cadence, stored.timezone) == (
        "pending", ("tags/python", "authors/hanako"), "daily", "America/Los_Angeles")

    page.goto(f"{base}/preferences/{make_token(SECRET, 'preferences', stored.id)}")
    expect(page.get_by_label(words["daily"])).to_be_checked()
    expect(page.get_by_label("Python")).to_be_checked()
    expect(zone).to_have_value("America/Los_Angeles")        # the stored zone, not the browser's again
    page.get_by_label("Python").uncheck()
    page.get_by_label(words["post"]).check()
    page.get_by_label(words["zone"]).select_option("Asia/Kolkata")
    page.get_by_role("button", name=words["save"]).click()
    expect(page.get_by_role("status")).to_have_text(words["saved"])
    stored = store.subscriber("reader@example.com")
    assert (stored.topics, stored.cadence, stored.timezone) == (("authors/hanako",), "post", "Asia/Kolkata")
    context.close()


def test_without_script_the_site_zone_is_chosen(served, browser) -> None:
    from playwright.sync_api import expect

    base, store, _ = served
    context = browser.new_context(java_script_enabled=False, timezone_id="Europe/Paris")
    page = context.new_page()
    page.goto(f"{base}/subscribe")
    expect(page.get_by_label("Your time zone")).to_have_value("Asia/Tokyo")
    page.get_by_label("E-mail address").fill("noscript@example.com")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("status")).to_contain_text("Check your inbox")
    stored = store.subscriber("noscript@example.com")
    assert (stored.topics, stored.cadence, stored.timezone) == ((), "weekly", "Asia/Tokyo")
    context.close()


def test_the_form_by_keyboard_alone(served, browser) -> None:
    """Tab from the top of the page: every control is reached in reading order and operated with keys."""
    from playwright.sync_api import expect

    base, store, _ = served
    context = browser.new_context(timezone_id="Asia/Tokyo")
    page = context.new_page()
    page.goto(f"{base}/subscribe")
    keyboard = page.keyboard

    def focused() -> str:
        return page.evaluate("document.activeElement.id || document.activeElement.value")

    keyboard.press("Tab")
    assert focused() == "email"
    keyboard.type("keys@example.com")
    keyboard.press("Tab")
    assert focused() == "name"
    keyboard.type("Keyboard Reader")
    reached = []
    for _ in range(len(TOPICS)):
        keyboard.press("Tab")
        reached.append(focused())
    assert reached == [topic.folder for topic in TOPICS]
    keyboard.press("Space")                     # the last topic: 花子
    keyboard.press("Tab")
    assert focused() == "weekly"                # a radio group is one stop, at its checked radio
    keyboard.press("ArrowRight")                # → monthly, checked as it is reached
    keyboard.press("Tab")
    assert focused() == "timezone"
    keyboard.type("Reykjavik")                  # a select's options are reached by typing their text
    keyboard.press("Tab")
    assert page.evaluate("document.activeElement.type") == "submit"
    keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("Check your inbox")
    stored = store.subscriber("keys@example.com")
    assert (stored.name, stored.topics, stored.cadence, stored.timezone) == (
        "Keyboard Reader", ("authors/hanako",), "monthly", "Atlantic/Reykjavik")
    context.close()


@pytest.mark.parametrize("served", ["en", "ja"], indirect=True)
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_at_200_percent_zoom_nothing_scrolls_sideways(served, browser, viewport) -> None:
    """Chromium's zoom of 200% lays a page out in half the CSS pixels: a viewport of half the width, twice the
    device pixels (WCAG 1.4.10's reflow; the phone at 200% is narrower than its 320 px)."""
    base, store, _ = served
    store.save_subscribers([SubscriberInput("zoom@example.com", topics=("tags/python",), cadence="post",
                                            timezone="America/Argentina/Buenos_Aires")], status="active")
    reader = store.subscriber("zoom@example.com")
    halved = {"width": viewport["width"] // 2, "height": viewport["height"] // 2}
    context = browser.new_context(viewport=halved, device_scale_factor=2)
    page = context.new_page()
    for path in ("/subscribe", f"/preferences/{make_token(SECRET, 'preferences', reader.id)}"):
        page.goto(base + path)
        assert no_horizontal_scroll(page), path
        box = page.locator("#timezone").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= halved["width"], path
    page.goto(base + "/subscribe")
    page.locator("#email").fill("zoomed@example.com")
    page.locator("button[type=submit]").click()
    assert re.search("Check your inbox|確認用のリンク", page.get_by_role("status").inner_text())
    assert no_horizontal_scroll(page)
    context.close()
