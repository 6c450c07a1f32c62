"""Every Atom and RSS feed of a build loads in newsboat (a real feed reader) with every entry.

Needs Debian `newsboat`; skipped without it, except under CI=true where that is a failure."""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import feedparser
import pytest

REPO = Path(__file__).resolve().parents[2]


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_every_feed_loads_in_newsboat_with_every_entry(tmp_path: Path) -> None:
    if shutil.which("newsboat") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("newsboat is missing (apt-get install newsboat)")
        pytest.skip("newsboat is missing (apt-get install newsboat)")
    public = tmp_path / "public"
    public.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(public)))
    base = f"http://127.0.0.1:{server.server_address[1]}"
    shutil.copytree(REPO / "posts", tmp_path / "posts")
    (tmp_path / "feedpub.toml").write_text(f'[site]\ntitle = "ALLFORCES"\nurl = "{base}"\ntimezone = "Asia/Tokyo"\n'
                                           f'language = "ja"\n[feeds]\ntags = true\n', encoding="utf-8")
    built = subprocess.run([sys.executable, "-m", "feedpub", "build"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        feeds = sorted(p.relative_to(public).as_posix() for p in public.rglob("*.xml"))
        assert len(feeds) > 10
        for feed in feeds:
            expected = [entry.title for entry in feedparser.parse((public / feed).read_bytes()).entries]
            cache = tmp_path / f"cache-{len(feed)}-{abs(hash(feed))}.db"   # newsboat keeps one copy per guid
            (tmp_path / "urls").write_text(f"{base}/{quote(feed)}\n", encoding="utf-8")
            subprocess.run(["newsboat", "-u", str(tmp_path / "urls"), "-c", str(cache), "-C", "/dev/null",
                            "-x", "reload"], env={**os.environ, "HOME": str(tmp_path)}, check=True, timeout=60,
                           capture_output=True)
            with sqlite3.connect(cache) as db:
                loaded = [row[0] for row in db.execute("SELECT title FROM rss_item")]
            assert sorted(loaded) == sorted(expected) and expected, feed
    finally:
        server.shutdown()
        server.server_close()
