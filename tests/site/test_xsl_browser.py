"""feed.xsl in a real Chromium: a feed opened in a browser reads as a page.

Needs Debian `chromium` (+ `fonts-ipafont-gothic` for Japanese) and the `playwright` Python package;
skipped when they are missing, except under CI=true where that is a failure.
Set FEEDPUB_UPDATE_SCREENSHOTS=1 to refresh docs/feed-xsl.png.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "feed-xsl.png"
COVER = ('<svg xmlns="http://www.w3.org/2000/svg" width="200" height="200">'
         '<rect width="200" height="200" fill="#fdba74"/><circle cx="100" cy="100" r="60" fill="#c2410c"/></svg>')
POSTS = {
    "2025-12-16-llm-inference-gains.md": """---
title: "推論性能35%向上は何を変えるのか"
date: 2025-12-16 04:49:25 +0000
categories: ["AI導入戦略"]
tags: ["推論"]
author: "編集部"
excerpt: "**新モデルの推論性能35%向上**について、現場の視点で読み解きます。"
image: /assets/cover.svg
---
新しいモデルの発表で、**推論性能35%**向上という数字が話題になっている。
""",
    "2025-12-10-weekly-roundup.md": """---
title: "Weekly roundup: open models, smaller and faster"
date: 2025-12-10 18:30:00 +09:00
categories: [news]
author: Dana Reyes
---
Three releases stood out this week: smaller models that answer faster and cost less to run.
""",
    "2025-11-28-生成AIと著作権.md": """---
title: "生成AIと著作権：企業が今すぐ確認すべき三つのこと"
date: 2025-11-28 10:00
categories: [法務]
---
生成AIを業務に使う企業が増えるなか、著作権の扱いはまだ手探りの状態だ。
""",
}
TITLES = ["推論性能35%向上は何を変えるのか", "Weekly roundup: open models, smaller and faster",
          "生成AIと著作権：企業が今すぐ確認すべき三つのこと"]


@pytest.fixture
def served_site(tmp_path: Path) -> Iterator[str]:
    """A built site served over HTTP on 127.0.0.1; site.url is that address, so feed.xsl is same-origin."""
    public = tmp_path / "public"
    public.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(public))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    (tmp_path / "feedpub.toml").write_text(
        f'[site]\ntitle = "ALLFORCES"\nurl = "{url}"\ndescription = "AI news and analysis"\n'
        f'language = "ja"\ntimezone = "Asia/Tokyo"\nauthor = "ALLFORCES編集部"\n', encoding="utf-8")
    for name, text in POSTS.items():
        (tmp_path / "posts").mkdir(exist_ok=True)
        (tmp_path / "posts" / name).write_text(text, encoding="utf-8")
    built = subprocess.run([sys.executable, "-m", "feedpub", "build"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    (public / "assets").mkdir()
    (public / "assets" / "cover.svg").write_text(COVER, encoding="utf-8")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.mark.parametrize("document", ["feed.xml", "rss.xml"])
def test_feed_opened_in_chromium_reads_as_a_page(served_site: str, browser, document: str, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    try:
        page.goto(f"{served_site}/{document}")
        page.wait_for_selector("article")
        assert page.title() == "ALLFORCES — フィード"                     # the site's language, ja
        assert page.locator("h1").inner_text() == "ALLFORCES"
        assert page.locator("article h2").all_inner_texts() == TITLES
        body = page.locator("main").inner_text()
        assert f"{served_site}/{document}" in body          # the address to copy into a reader
        assert "これはフィードです。" in body and "サイトを見る →" in body
        assert "新モデルの推論性能35%向上について" in body      # the summary's HTML is rendered, not shown
        assert "<strong>" not in body
        assert ("2025-12-10" if document == "feed.xml" else "10 Dec 2025") in body  # the post's own date
        assert "AI導入戦略" in body
        assert page.locator("article h2 a").first.get_attribute("href").startswith(served_site)
        shot = tmp_path / f"{document}.png"
        page.screenshot(path=str(shot), full_page=True)
    finally:
        page.close()
    assert shot.stat().st_size > 10_000
    if document == "feed.xml" and os.environ.get("FEEDPUB_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)
