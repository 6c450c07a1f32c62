"""VERP return paths and Feedback-ID: what the relay sees in MAIL FROM and what the reader's mail carries."""

from __future__ import annotations

import sqlite3

import pytest

from feedpub.config_file import load_config
from feedpub.errors import ConfigError
from feedpub.send import verp
from tests.send.sites import READERS, SECRET, feedpub, write_config, write_site


def delivery_ids(config) -> dict[str, int]:
    with sqlite3.connect(config.parent / ".feedpub" / "feedpub.db") as db:
        rows = db.execute("SELECT s.email, d.id FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id")
        return dict(rows.fetchall())


def issue_period(config) -> str:
    with sqlite3.connect(config.parent / ".feedpub" / "feedpub.db") as db:
        return db.execute("SELECT period FROM issues").fetchone()[0]


def test_each_delivery_goes_out_from_its_own_signed_return_path(tmp_path, smtp_server):
    config = write_site(tmp_path, smtp_server.port, return_path="Bounces@Blog.Example.com")
    result = feedpub(config, "digest", "send")
    assert result.exit_code == 0, result.output

    ids = delivery_ids(config)
    period = issue_period(config)
    assert sorted(smtp_server.recipients()) == sorted(READERS)
    senders = set()
    for received in smtp_server.received:
        (rcpt,) = received.rcpt_tos
        local, domain = received.mail_from.split("@")
        assert domain == "Blog.Example.com" and local.startswith("Bounces+")
        assert len(local) <= 64
        tag = local.removeprefix("Bounces+")
        assert verp.read_tag(SECRET, tag) == ids[rcpt]
        assert verp.read_tag(SECRET, tag.upper()) == ids[rcpt]      # an MTA that changes case changes nothing
        assert received.message()["Feedback-ID"] == f"{period}:digest:blog.example.com"
        senders.add(received.mail_from)
    assert len(senders) == len(READERS)


def test_a_tag_under_another_key_or_altered_names_no_delivery():
    tag = verp.tag(SECRET, 1234)
    assert verp.read_tag(SECRET, tag) == 1234
    assert verp.read_tag("another-secret", tag) is None
    assert verp.read_tag(SECRET, tag.replace("1234", "1235", 1)) is None
    assert verp.read_tag(SECRET, "1234") is None
    assert verp.tags_in("bounces@example.org", f"To: <BOUNCES+{tag.upper()}@example.org>\r\n") == [tag.upper()]


def test_without_a_return_path_every_message_goes_out_from_the_digest_sender(tmp_path, smtp_server):
    config = write_site(tmp_path, smtp_server.port)
    assert feedpub(config, "digest", "send").exit_code == 0
    assert {received.mail_from for received in smtp_server.received} == {"news@blog.example.com"}
    assert all(received.message()["Feedback-ID"] for received in smtp_server.received)


@pytest.mark.parametrize("value", ["bounces+x@example.org", "not an address",
                                   "a-very-long-local-part-that-leaves-no-room-for-a-tag@example.org"])
def test_a_return_path_that_cannot_carry_a_tag_is_refused_naming_the_key(tmp_path, value):
    config = write_config(tmp_path, 25, return_path=value)
    with pytest.raises(ConfigError, match=r"feedpub.toml:\d+: 'smtp.return_path'"):
        load_config(config)
