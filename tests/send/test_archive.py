"""The public archive as a visitor and a feed reader meet it: three weekly issues sent through a real SMTP
server, then the pages in public/digests/, their previous/next links, the list of issues and the Atom feed
of the issues."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import feedparser
import lxml.etree
import lxml.html
import pytest

from feedpub.records import SubscriberInput
from feedpub.send.dispatch import send_due_issue
from feedpub.store import open_store
from tests.smtp_server import SMTPTestServer

TOKYO = ZoneInfo("Asia/Tokyo")
SLOT = datetime(2025, 12, 15, 9, 0, tzinfo=TOKYO)   # a Monday
WEEKS = ["2025-12-01-0900", "2025-12-08-0900", "2025-12-15-0900"]
ATOM = "{http://www.w3.org/2005/Atom}"
POSTS = {
    "2025-11-28-copyright.md": "生成AIと著作権：三つの確認事項",
    "2025-12-05-python.md": "Serving a model from Python",
    "2025-12-12-inference.md": "推論性能35%向上は何を変えるのか",
}


def send_three_weeks(site, smtp_server: SMTPTestServer, monkeypatch, language: str):
    monkeypatch.setenv("FEEDPUB_SECRET", "s")
    site.configure(f"""
[digest]
schedule = "mon 09:00"
[smtp]
host = "127.0.0.1"
port = {smtp_server.port}
security = "none"
[web]
public_url = "https://news.blog.example.com"
""", language=language, title="ALLFORCES")
    for name, title in POSTS.items():
        site.post(name, f"---\ntitle: \"{title}\"\ndate: {name[:10]} 10:00:00 +09:00\n---\n\n{title}の本文です。\n")
    config = site.config
    store = open_store(config.store_url)
    store.save_subscribers([SubscriberInput("reader@example.com")], status="active")
    for weeks_back in (2, 1, 0):
        sent = send_due_issue(config, store, SLOT - timedelta(weeks=weeks_back) + timedelta(minutes=1))
        assert sent.summary.sent == 1
    return config


@pytest.fixture
def japanese(site, smtp_server, monkeypatch):
    return send_three_weeks(site, smtp_server, monkeypatch, "ja"), smtp_server


def page(config, period: str):
    return lxml.html.fromstring((config.output_dir / "digests" / period / "index.html").read_bytes())


def test_each_issue_page_links_to_the_list_and_its_older_and_newer_issue(japanese):
    config, _ = japanese
    links = {}
    for period in WEEKS:
        html = page(config, period)
        links[period] = ([a.get("href") for a in html.xpath(".//a[@rel='prev']")],
                         [a.get("href") for a in html.xpath(".//a[@rel='next']")])
        assert html.xpath(".//a[@href='../']")[0].text_content() == "バックナンバー一覧"
        assert html.xpath(".//link[@type='application/atom+xml']")[0].get("href") == "../feed.xml"
    assert links == {
        "2025-12-01-0900": ([], ["../2025-12-08-0900/"]),
        # Written when it was the newest issue, rewritten when the next one was composed.
        "2025-12-08-0900": (["../2025-12-01-0900/"], ["../2025-12-15-0900/"]),
        "2025-12-15-0900": (["../2025-12-08-0900/"], []),
    }
    newest = page(config, WEEKS[-1])
    assert newest.xpath(".//a[@rel='prev']")[0].text_content() == "← 前の号"
    assert "推論性能35%向上は何を変えるのか" in newest.text_content()
    # No temporary files left beside what was written atomically.
    assert sorted(p.name for p in (config.output_dir / "digests").iterdir()) == sorted([*WEEKS, "feed.xml",
                                                                                        "index.html"])


def test_the_mail_links_to_its_archived_page(japanese):
    config, smtp = japanese
    message = smtp.received[-1].message()
    html = lxml.html.fromstring(message.get_body(("html",)).get_content())
    view = html.xpath(".//*[@class='topline']//a")[0]
    assert view.text_content() == "ブラウザで表示"
    assert view.get("href") == "https://news.blog.example.com/digests/2025-12-15-0900/"
    assert "ブラウザで表示: https://news.blog.example.com/digests/2025-12-15-0900/\r\n" in \
        message.get_body(("plain",)).get_content()
    assert (config.output_dir / "digests" / "2025-12-15-0900" / "index.html").is_file()
    # The archived page is for visitors: nothing points back at itself as "view in browser".
    assert not page(config, "2025-12-15-0900").xpath(".//*[@class='topline']")


def test_the_list_shows_every_issue_newest_first_with_date_and_posts(japanese):
    config, _ = japanese
    html = lxml.html.fromstring((config.output_dir / "digests" / "index.html").read_bytes())
    assert html.get("lang") == "ja"
    issues = html.xpath(".//section[@class='issue']")
    assert [s.xpath(".//h2//a")[0].get("href") for s in issues] == [f"{p}/" for p in reversed(WEEKS)]
    newest = issues[0]
    assert newest.xpath(".//h2")[0].text_content() == "ALLFORCES 週刊ダイジェスト — 2025年12月15日"
    assert newest.xpath(".//*[@class='meta']")[0].text_content() == "2025年12月15日 · 1 件の記事"
    assert [a.text_content() for a in newest.xpath(".//li//a")] == ["推論性能35%向上は何を変えるのか"]
    assert [a.text_content() for a in issues[2].xpath(".//li//a")] == ["生成AIと著作権：三つの確認事項"]
    assert html.xpath(".//a[@href='https://news.blog.example.com/subscribe']")


def test_the_atom_feed_of_the_issues_is_valid_and_complete(japanese):
    config, _ = japanese
    data = (config.output_dir / "digests" / "feed.xml").read_bytes()
    parsed = feedparser.parse(data)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert parsed.feed.title == "ALLFORCES ダイジェスト バックナンバー"
    assert [e.title for e in parsed.entries] == [f"ALLFORCES 週刊ダイジェスト — 2025年12月{d}日" for d in (15, 8, 1)]
    # What the W3C validator requires of the document itself.
    root = lxml.etree.fromstring(data)
    assert root.tag == f"{ATOM}feed"
    assert root.findtext(f"{ATOM}id") == "https://news.blog.example.com/digests/"
    assert root.findtext(f"{ATOM}updated") == "2025-12-15T09:00:00+09:00"
    assert root.findtext(f"{ATOM}author/{ATOM}name") == "編集部"
    self_link = root.find(f"{ATOM}link[@rel='self']")
    assert self_link.get("href") == "https://news.blog.example.com/digests/feed.xml"
    entries = root.findall(f"{ATOM}entry")
    assert len(entries) == 3
    for entry, period, post in zip(entries, reversed(WEEKS), reversed(list(POSTS.values())), strict=True):
        url = f"https://news.blog.example.com/digests/{period}/"
        assert entry.findtext(f"{ATOM}id") == url
        link = entry.find(f"{ATOM}link")     # feedgen 1.0 drops entry link attributes; rel defaults to alternate
        assert link.get("href") == url and link.get("rel", "alternate") == "alternate"
        assert entry.findtext(f"{ATOM}updated")
        content = entry.find(f"{ATOM}content")
        assert content.get("type") == "html"
        body = lxml.html.fragment_fromstring(content.text, create_parent="div")
        assert body.xpath(".//h2//a")[0].text_content() == post
        hrefs = [a.get("href") for a in body.xpath(".//a")]
        assert hrefs and all(h.startswith("https://blog.example.com/") for h in hrefs)
    # Nothing in it depends on when it was written: the next issue's publish leaves it as it is until then.
    assert b"<updated>2025-12-15T09:00:00+09:00</updated>" in data


def test_an_english_site_gets_an_english_archive(site, smtp_server, monkeypatch):
    config = send_three_weeks(site, smtp_server, monkeypatch, "en-GB")
    html = lxml.html.fromstring((config.output_dir / "digests" / "index.html").read_bytes())
    assert html.get("lang") == "en"
    assert html.xpath(".//h1")[0].text_content() == "ALLFORCES digest: all issues"
    assert html.xpath(".//*[@class='meta']")[0].text_content() == "15 December 2025 · 1 posts"
    issue = page(config, WEEKS[1])
    assert issue.xpath(".//a[@rel='next']")[0].text_content() == "Next issue →"
    assert "An issue of the ALLFORCES e-mail digest" in issue.text_content()
    mail = smtp_server.received[-1].message()
    assert mail["Subject"] == "ALLFORCES weekly — 15 December 2025"
