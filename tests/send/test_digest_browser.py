"""The digest as readers see it, in real Chromium: the mail a subscriber received (through the test SMTP
server) on a desktop, on a phone and in dark mode, with pictures loaded and with pictures blocked (as
Outlook and Gmail do by default); the archived issue and the list of issues in public/digests/.

Set FEEDPUB_UPDATE_SCREENSHOTS=1 to refresh docs/digest-desktop.png, digest-phone.png, digest-dark.png and
digests-index.png."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from feedpub.records import SubscriberInput
from feedpub.send.dispatch import send_due_issue
from feedpub.store import open_store

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
SLOT = datetime(2025, 12, 15, 9, 0, tzinfo=ZoneInfo("Asia/Tokyo"))   # a Monday
PERIOD = "2025-12-15-0900"
POSTS = {
    "2025-12-10-copyright.md": """---
title: "生成AIと著作権：企業が今すぐ確認すべき三つのこと"
date: 2025-12-10 10:00:00 +09:00
categories: [法務]
---

生成AIを業務に使う企業が増えるなか、著作権の扱いはまだ手探りの状態だ。本稿では三つの点を整理する。
""",
    "2025-12-09-python.md": """---
title: "Serving a model from Python in twenty lines"
date: 2025-12-09 08:00:00 +00:00
categories: [engineering]
---

You do not need a framework to put a model behind HTTP. Here is the whole server, and the numbers.

<img src="/assets/images/latency.png" width="800" height="400" alt="Latency before and after">
""",
    "2025-12-12-inference.md": """---
title: "推論性能35%向上は何を変えるのか"
date: 2025-12-12 13:49:25 +0000
categories: [AI導入戦略]
image:
  path: /assets/images/inference.png
  width: 1200
  height: 630
  alt: "推論速度の比較グラフ"
excerpt: "**新モデルの推論性能35%向上**について、現場の視点で読み解きます。"
---

新しいモデルの発表で、推論性能35%向上という数字が話題になっている。
""",
}


def picture(width: int, height: int, label: str) -> bytes:
    """A stand-in for the site's images (the test has no network): a coloured box of the given size."""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
            f'<rect width="100%" height="100%" fill="#6366f1"/><text x="50%" y="50%" font-size="40" fill="#fff" '
            f'text-anchor="middle" font-family="sans-serif">{label}</text></svg>').encode()


IMAGES = {"inference.png": picture(1200, 630, "inference"), "latency.png": picture(800, 400, "latency")}


@pytest.fixture
def sent(site, smtp_server, monkeypatch) -> tuple[Path, Path]:
    """The HTML part of the mail a subscriber received, and the public folder after the issue was composed."""
    monkeypatch.setenv("FEEDPUB_SECRET", "s")
    site.configure(f"""
[digest]
schedule = "mon 09:00"
images = "first"
[smtp]
host = "127.0.0.1"
port = {smtp_server.port}
security = "none"
[web]
public_url = "https://news.blog.example.com"
""", language="ja", title="ALLFORCES")
    for name, text in POSTS.items():
        site.post(name, text)
    config = site.config
    store = open_store(config.store_url)
    store.save_subscribers([SubscriberInput("reader@example.com")], status="active")
    assert send_due_issue(config, store, SLOT + timedelta(minutes=1)).summary.sent == 1
    mail = site.root / "mail.html"
    mail.write_text(smtp_server.received[0].message().get_body(("html",)).get_content(), encoding="utf-8")
    return mail, config.output_dir


def serve_images(route) -> None:
    name = route.request.url.rsplit("/", 1)[-1]
    if name in IMAGES:
        route.fulfill(status=200, content_type="image/svg+xml", body=IMAGES[name])
    else:
        route.abort()


def layout(page, width: int) -> dict:
    return page.evaluate("""() => {
        const box = e => e.getBoundingClientRect();
        const container = box(document.querySelector('table.container'));
        return {
            container: container.width,
            scroll: document.documentElement.scrollWidth,
            images: [...document.querySelectorAll('.picture img')].map(i => ({
                left: box(i).left - container.left, right: container.right - box(i).right,
                width: box(i).width, height: box(i).height, loaded: i.naturalWidth > 0, alt: i.alt})),
            background: getComputedStyle(document.querySelector('table.container')).backgroundColor,
            title: getComputedStyle(document.querySelector('.title a')).color,
        };
    }""")


def test_the_mail_in_chromium_on_desktop_phone_and_dark_with_pictures_on_and_off(sent, browser) -> None:
    mail, _ = sent
    update = os.environ.get("FEEDPUB_UPDATE_SCREENSHOTS") == "1"
    for name, width, scheme in (("desktop", 1280, "light"), ("phone", 375, "light"), ("dark", 375, "dark")):
        for pictures in (True, False):
            page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
            page.route("https://blog.example.com/**", serve_images if pictures else lambda route: route.abort())
            page.goto(mail.as_uri(), wait_until="load")
            seen = layout(page, width)
            where = f"{name}, pictures {'on' if pictures else 'off'}"
            assert seen["container"] == min(600, width), where
            assert seen["scroll"] <= width, where                     # no sideways scrolling
            assert [i["alt"] for i in seen["images"]] == ["推論速度の比較グラフ", "Latency before and after"]
            for image in seen["images"]:
                assert image["loaded"] == pictures, where
                # Inside the column with the text's margins, and a box that keeps the layout when blocked.
                assert image["left"] >= 16 and image["right"] >= 16 and image["height"] > 50, (where, image)
            if pictures:     # shown at the size of the picture, scaled to the column
                first = seen["images"][0]
                assert abs(first["height"] - first["width"] * 630 / 1200) < 2, (where, first)
            dark = seen["background"] == "rgb(31, 41, 55)"
            assert dark == (scheme == "dark"), (where, seen["background"])
            assert (seen["title"] == "rgb(243, 244, 246)") == dark, (where, seen["title"])
            text = page.inner_text("body")
            assert "推論性能35%向上は何を変えるのか" in text and "ブラウザで表示" in text and "配信停止" in text
            if update and pictures:
                page.screenshot(path=str(DOCS / f"digest-{name}.png"), full_page=True)
            page.close()


def test_the_archive_pages_in_chromium(sent, browser) -> None:
    _, public = sent
    for width in (1280, 375):
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.route("https://blog.example.com/**", serve_images)
        page.goto((public / "digests" / PERIOD / "index.html").as_uri(), wait_until="load")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert "ダイジェストをメールで受け取る" in page.inner_text("body")
        page.click("text=バックナンバー一覧")          # the archive's own link leads to the list of issues
        assert page.url.endswith("/digests/")
        page.goto((public / "digests" / "index.html").as_uri())
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert page.inner_text("h2") == "ALLFORCES 週刊ダイジェスト — 2025年12月15日"
        assert page.locator("li a").all_inner_texts() == [
            "推論性能35%向上は何を変えるのか", "生成AIと著作権：企業が今すぐ確認すべき三つのこと",
            "Serving a model from Python in twenty lines"]
        if os.environ.get("FEEDPUB_UPDATE_SCREENSHOTS") == "1" and width == 1280:
            page.screenshot(path=str(DOCS / "digests-index.png"), full_page=True)
        page.close()
