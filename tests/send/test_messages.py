"""Digest messages, parsed back with the `email` package as a mail client would."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime, timedelta

import pytest

from feedpub import tokens
from feedpub.errors import ConfigError
from feedpub.send import messages
from feedpub.send.issue import PREFERENCES_MARKER, UNSUBSCRIBE_MARKER, Variant, compose, due_slot, render_variant
from feedpub.site.markup import render_posts
from feedpub.site.posts import collect

NOW = datetime(2025, 12, 22, 1, 0, tzinfo=UTC)
SECRET = "test-secret"
PERIOD = "2025-12-22-0900"
# Python 3.11's default folding turns this into "…生成AIと著作権日本語NLPのコツ…" (gh-92081).
LONG_SUBJECT = ("日本語NLPのコツ 生成AIと著作権 日本語NLPのコツ 日本語NLPのコツ — ALLFORCES 週刊ダイジェスト "
                "推論性能35%向上は何を変えるのか の デプロイ まとめ")
FROM_NAME = "生成AIと著作権 日本語NLPのコツ 編集部 デプロイ"  # the default folder adds a space here


@pytest.fixture
def config(site, monkeypatch):
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    site.configure(f"""
        [digest]
        from = "{FROM_NAME} <news@blog.example.com>"
        [web]
        public_url = "https://news.blog.example.com"
        unsubscribe_mailto = "unsubscribe@blog.example.com"
        """, language="ja", title="ALLFORCES")
    site.post("2025-12-16-inference.md", """
        ---
        title: "推論性能35%向上は何を変えるのか"
        categories: [AI導入戦略]
        ---

        新しいモデルの発表で、推論性能35%向上という数字が話題になっている。
        """)
    site.post("2025-12-18-evil.md", """
        ---
        title: "Hello\\r\\nBcc: victim@example.com"
        categories: [法務]
        ---

        Body.
        """)
    return site.config


def variant_of(config, subject: str | None = None) -> Variant:
    rendered, _ = render_posts(config, collect(config, now=NOW).posts)
    period, slot = due_slot(config, NOW)
    issue = compose(config, rendered, period=period, slot=slot, starts=NOW - timedelta(days=30), ends=NOW)
    variant = render_variant(config, issue, "")
    return variant if subject is None else Variant(variant.key, subject, variant.html, variant.text)


def send_to(config, template: messages.MessageTemplate, address: str, name: str = "",
            subscriber_id: int = 7) -> email.message.EmailMessage:
    raw = template.render(to_email=address, to_name=name,
                          unsubscribe_url=messages.unsubscribe_url(config, subscriber_id),
                          preferences_url=messages.preferences_url(config, subscriber_id),
                          message_id=messages.new_message_id(config, "2025-12-22-0900"))
    assert b"\n" not in raw.replace(b"\r\n", b""), "every line ends in CRLF"
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_message_structure_and_headers(config):
    variant = variant_of(config)
    message = send_to(config, messages.message_template(config, variant, period=PERIOD), "reader@example.org",
                      "読者 太郎")
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in message.iter_parts())
    assert message["Subject"] == variant.subject
    assert message["From"].addresses[0].display_name == FROM_NAME
    assert message["From"].addresses[0].addr_spec == "news@blog.example.com"
    assert [a.addr_spec for a in message["To"].addresses] == ["reader@example.org"]
    assert message["To"].addresses[0].display_name == "読者 太郎"
    assert message["List-Id"] == '"ALLFORCES" <digest.blog.example.com>'
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert re.match(r"<\d{4}-\d\d-\d\d-\d{4}\.[0-9a-f]+@blog\.example\.com>$", message["Message-ID"])
    assert message["Date"].datetime.tzinfo is not None
    assert message["MIME-Version"] == "1.0"


def test_links_are_personal_and_one_click_unsubscribe_works(config):
    message = send_to(config, messages.message_template(config, variant_of(config), period=PERIOD),
                      "Reader@Example.org")
    https, mailto = re.fullmatch(r"<([^>]+)>, <([^>]+)>", message["List-Unsubscribe"]).groups()
    assert https.startswith("https://news.blog.example.com/unsubscribe/")
    assert tokens.read_token(SECRET, "unsubscribe", https.rsplit("/", 1)[1]) == 7       # the subscriber's id
    assert "reader" not in https.lower()
    assert mailto == "mailto:unsubscribe@blog.example.com?subject=unsubscribe"
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert f'href="{https}"' in html and f"配信停止: {https}\r\n" in text
    preferences = re.search(r"配信設定の変更: (\S+)", text)[1]
    assert f'href="{preferences}"' in html
    assert tokens.read_token(SECRET, "preferences", preferences.rsplit("/", 1)[1]) == 7
    assert "feedpub-" not in html + text
    assert "推論性能35%向上は何を変えるのか" in html and "推論性能35%向上は何を変えるのか" in text


def test_bodies_decode_to_the_variant_with_the_links_filled_in(config):
    variant = variant_of(config)
    unsubscribe, preferences = "https://x.example/u/t?a=1&b=2", "https://x.example/p/t"
    raw = messages.message_template(config, variant, period=PERIOD).render(
        to_email="a@example.org", to_name="", message_id="<1@x>", unsubscribe_url=unsubscribe,
        preferences_url=preferences)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    html = message.get_body(("html",)).get_content().replace("\r\n", "\n")
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    links = {UNSUBSCRIBE_MARKER: unsubscribe, PREFERENCES_MARKER: preferences}
    expected_text = variant.text
    expected_html = variant.html
    for marker, url in links.items():
        expected_text = expected_text.replace(marker, url)
        expected_html = expected_html.replace(marker, url.replace("&", "&amp;"))
    assert text.rstrip("\n") == expected_text.rstrip("\n")
    assert html.rstrip("\n") == expected_html.rstrip("\n")


def test_long_japanese_subject_and_names_round_trip_exactly(config):
    template = messages.message_template(config, variant_of(config, LONG_SUBJECT), period=PERIOD)
    long_name = "寿限無寿限無五劫の擦り切れ海砂利水魚の水行末雲来末風来末 様"
    message = send_to(config, template, "reader@example.org", long_name)
    assert str(message["Subject"]) == LONG_SUBJECT
    assert str(message["Subject"]).encode("utf-8") == LONG_SUBJECT.encode("utf-8")
    assert message["To"].addresses[0].display_name == long_name
    assert message["From"].addresses[0].display_name == FROM_NAME


def test_test_copy_is_marked(config):
    message = send_to(config, messages.message_template(config, variant_of(config), period=PERIOD, test_copy=True),
                      "me@example.org")
    assert message["Subject"].startswith("[TEST] ")


def test_each_message_names_only_its_recipient(config):
    template = messages.message_template(config, variant_of(config), period=PERIOD)
    raws = {address: template.render(to_email=address, to_name="", unsubscribe_url="https://x/u/1",
                                     preferences_url="https://x/p/1", message_id=f"<{n}@x>")
            for n, address in enumerate(["a@example.org", "b@example.org"])}
    assert b"b@example.org" not in raws["a@example.org"] and b"a@example.org" not in raws["b@example.org"]
    message = email.message_from_bytes(raws["a@example.org"], policy=email.policy.default)
    assert message.get_all("To") == ["a@example.org"]
    assert message.get_all("Cc") is None and message.get_all("Bcc") is None


def test_header_injection_through_titles_and_names_fails_safely(config):
    variant = variant_of(config)
    assert "\n" not in variant.subject and "\r" not in variant.subject
    template = messages.message_template(config, variant_of(config, "Hi\r\nBcc: victim@example.com"), period=PERIOD)
    message = send_to(config, template, "reader@example.org", "Eve\r\nBcc: victim@example.com\n")
    assert message.get_all("Bcc") is None
    assert message["Subject"] == "Hi Bcc: victim@example.com"
    assert message["To"].addresses[0].display_name == "Eve Bcc: victim@example.com"
    assert len(message["To"].addresses) == 1
    for address in ("reader@example.org\r\nBcc: victim@example.com", "a@b.org, c@d.org", "<a@b.org>"):
        with pytest.raises(ValueError):
            template.render(to_email=address, to_name="", unsubscribe_url="https://x/u", preferences_url="https://x/p",
                            message_id="<1@x>")
    with pytest.raises(ValueError):
        template.render(to_email="a@b.org", to_name="", unsubscribe_url="https://x/u\r\nBcc: v@x.org",
                        preferences_url="https://x/p", message_id="<1@x>")


def test_bodies_are_quoted_printable_with_short_lines(config):
    raw = messages.message_template(config, variant_of(config), period=PERIOD).render(
        to_email="reader@example.org", to_name="",
        unsubscribe_url=messages.unsubscribe_url(config, 7),
        preferences_url="https://news.blog.example.com/preferences/x", message_id="<1@x>")
    head, body = raw.split(b"\r\n\r\n", 1)
    assert raw.isascii()
    assert max(len(line) for line in body.split(b"\r\n")) <= 76


def test_message_ids_are_unique(config):
    ids = {messages.new_message_id(config, "2025-12-22-0900") for _ in range(100)}
    assert len(ids) == 100


@pytest.mark.parametrize(("section", "key", "value"), [
    ("digest", "from", "ALLFORCES <news@blog.example.com>\\r\\nBcc: victim@example.com"),
    ("web", "unsubscribe_mailto", "u@example.com>\\r\\nBcc: victim@example.com"),
])
def test_bad_sender_settings_are_config_errors(site, monkeypatch, section, key, value):
    site.configure(f'[{section}]\n{key} = "{value}"\n')
    variant = Variant("", "Subject", "<p>x</p>", "x")
    with pytest.raises(ConfigError, match=f"'{section}.{key}'"):
        messages.message_template(site.config, variant, period=PERIOD)
