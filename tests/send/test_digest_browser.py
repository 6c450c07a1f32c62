"""The digest e-mail in real Chromium: a clean layout at most 600 px wide on a desktop, no sideways
scrolling on a phone, Japanese text rendered. Set FEEDPUB_UPDATE_SCREENSHOTS=1 to refresh
docs/digest-desktop.png and docs/digest-phone.png."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import BROWSER_ARGS, CHROMIUM, require_browser

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"


def test_digest_layout_in_chromium(tmp_path: Path) -> None:
    require_browser()
    from playwright.sync_api import sync_playwright  # optional: require_browser() skips without it

    shutil.copytree(REPO / "posts", tmp_path / "posts")
    (tmp_path / "feedpub.toml").write_text('[site]\ntitle = "ALLFORCES"\nurl = "https://blog.example.com"\n'
                                           'language = "ja"\ntimezone = "Asia/Tokyo"\n', encoding="utf-8")
    preview = subprocess.run([sys.executable, "-m", "feedpub", "digest", "preview", "--since", "2025-01-01"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert preview.returncode == 0, preview.stderr
    page_file = tmp_path / ".feedpub" / "preview" / "index.html"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        for name, width in (("desktop", 1024), ("phone", 375)):
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(page_file.as_uri())
            # The outer table only paints the background; the content sits in the container table.
            content = page.evaluate("document.querySelector('table.container').getBoundingClientRect().width")
            assert content == min(600, width) or (width < 600 and content <= width)
            assert page.evaluate("document.documentElement.scrollWidth") <= width   # no sideways scrolling
            text = page.inner_text("body")
            assert "推論性能35%向上は何を変えるのか" in text and "ダイジェストをメールで受け取る" in text
            if os.environ.get("FEEDPUB_UPDATE_SCREENSHOTS") == "1":
                page.screenshot(path=str(DOCS / f"digest-{name}.png"), full_page=True)
        browser.close()
