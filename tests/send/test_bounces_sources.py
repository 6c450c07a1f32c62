"""Where bounces are read: a Maildir, an mbox and a real IMAP server (Debian's Dovecot). Recognised mail
is processed and moved to bounces.processed_folder; everything else stays exactly as it was."""

from __future__ import annotations

import mailbox
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from feedpub.cli.daemon import Daemon
from feedpub.config_file import load_config
from feedpub.scheduler import BOUNCES_JOB, make_scheduler
from feedpub.send.bounces import sources
from feedpub.send.dispatch import send_due_issue
from feedpub.send.issue import due_slot
from feedpub.site.websub import Publisher
from feedpub.store import open_store
from tests.imap_server import DOVECOT, PASSWORD, DovecotServer
from tests.send.sites import READERS, SECRET, feedpub, write_post, write_site
from tests.send.test_bounces_process import FIXTURES, RETURN_PATH, bounce_for, subscribers

REPLY = (FIXTURES / "ordinary-reply.eml").read_bytes()


@pytest.fixture
def sent(tmp_path, smtp_server):
    config = write_site(tmp_path, smtp_server.port, return_path=RETURN_PATH)
    assert feedpub(config, "digest", "send").exit_code == 0
    return config, {received.rcpt_tos[0]: received.mail_from for received in smtp_server.received}


def returned_mail(senders: dict[str, str]) -> dict[str, bytes]:
    """A hard bounce for READERS[1], a complaint from READERS[2], a vacation reply from READERS[3]."""
    return {
        "hard": bounce_for("postfix-user-unknown.eml", READERS[1], senders[READERS[1]],
                           fixture_reader="taro.yamada@example.jp"),
        "complaint": bounce_for("arf-abuse.eml", READERS[2], senders[READERS[2]],
                                fixture_reader="mina@mailbox.example"),
        "vacation": bounce_for("vacation-rfc3834-ja.eml", READERS[3], senders[READERS[3]],
                               fixture_reader="hanako@example.jp"),
    }


def configure(config, **bounces: str) -> None:
    lines = "".join(f'{key} = "{value}"\n' for key, value in bounces.items())
    config.write_text(config.read_text(encoding="utf-8") + f"[bounces]\n{lines}", encoding="utf-8")


def assert_acted_on(config) -> None:
    rows = subscribers(config)
    assert rows[READERS[1]]["suppressed"] and rows[READERS[1]]["status"] == "active"
    assert rows[READERS[2]]["status"] == "unsubscribed" and rows[READERS[2]]["suppressed"]
    assert not rows[READERS[0]]["suppressed"] and not rows[READERS[3]]["suppressed"]


@pytest.mark.parametrize("in_parallel", [False, True])
def test_a_maildir_keeps_what_it_does_not_recognise_in_place(sent, tmp_path, monkeypatch, in_parallel):
    if in_parallel:                                      # as for a backlog: classified by a pool of processes
        monkeypatch.setattr(sources, "_PARALLEL_FROM", 1)
    config, senders = sent
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    keys = {name: box.add(raw) for name, raw in returned_mail(senders).items()}
    reply_key = box.add(REPLY)
    reply_file = tmp_path / "Maildir" / box._lookup(reply_key)
    reply_stat = reply_file.stat()
    configure(config, mailbox="Maildir")

    result = feedpub(config, "bounces", "poll")
    assert result.exit_code == 0, result.output
    assert f"#{keys['hard']}: {READERS[1]}: hard: suppressed (moved)" in result.stdout
    assert f"#{reply_key}: -: not-a-bounce: none (not-a-bounce)\n" in result.stdout
    assert_acted_on(config)

    box = mailbox.Maildir(tmp_path / "Maildir", create=False)
    assert list(box.keys()) == [reply_key]
    assert reply_file.read_bytes() == REPLY and reply_file.stat().st_mtime_ns == reply_stat.st_mtime_ns
    processed = box.get_folder("feedpub-processed")
    assert sorted(processed.get_bytes(key) for key in processed.keys()) == sorted(returned_mail(senders).values())

    again = feedpub(config, "bounces", "poll")
    assert again.stdout == f"mailbox:{tmp_path / 'Maildir'}#{reply_key}: -: not-a-bounce: " \
                           "recorded before; nothing done again\n"


def test_an_mbox_is_only_read(sent, tmp_path):
    config, senders = sent
    box = mailbox.mbox(tmp_path / "bounces.mbox", create=True)
    for raw in (*returned_mail(senders).values(), REPLY):
        box.add(raw)
    box.close()
    before = (tmp_path / "bounces.mbox").read_bytes()
    configure(config, mailbox="bounces.mbox")

    assert feedpub(config, "bounces", "poll").exit_code == 0
    assert_acted_on(config)
    again = feedpub(config, "bounces", "poll").stdout.splitlines()
    assert len(again) == 4 and all(line.endswith("recorded before; nothing done again") for line in again)
    assert (tmp_path / "bounces.mbox").read_bytes() == before


def test_a_missing_mailbox_is_an_error_naming_it(sent):
    config, _ = sent
    configure(config, mailbox="no-such-Maildir")
    result = feedpub(config, "bounces", "poll")
    assert result.exit_code == 2 and "no-such-Maildir: bounces.mailbox does not exist" in result.stderr


@pytest.fixture
def imap_server() -> Iterator[DovecotServer]:
    if not shutil.which("dovecot") and not os.path.exists(DOVECOT):
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but dovecot is not installed (.ci/run installs dovecot-imapd)")
        pytest.skip("needs Debian's dovecot-imapd")
    server = DovecotServer().start()
    try:
        yield server
    finally:
        server.stop()


def test_imap_moves_what_it_processed_and_leaves_the_rest_unseen(sent, imap_server):
    config, senders = sent
    for raw in returned_mail(senders).values():
        imap_server.deliver(raw)
    imap_server.deliver(REPLY)
    imap_server.deliver(b"From: friend@example.org\r\nSubject: read already\r\n\r\nhello\r\n", seen=True)
    configure(config, imap_url=imap_server.url, imap_password_env="TEST_IMAP_PASSWORD")

    result = feedpub(config, "bounces", "poll", TEST_IMAP_PASSWORD=PASSWORD)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 4          # the seen message is not read at all
    assert_acted_on(config)

    client = imap_server.client()
    assert client.folder_exists("feedpub-processed")
    client.select_folder("INBOX", readonly=True)
    left = client.fetch(client.search(["ALL"]), ["FLAGS", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    flags = {data[b"BODY[HEADER.FIELDS (SUBJECT)]"].strip().decode(): data[b"FLAGS"] for data in left.values()}
    assert flags == {"Subject: Re: ALLFORCES weekly": (), "Subject: read already": (b"\\Seen",)}
    assert client.select_folder("feedpub-processed")[b"EXISTS"] == 3
    client.logout()

    assert feedpub(config, "bounces", "poll", TEST_IMAP_PASSWORD=PASSWORD).stdout.endswith(
        "not-a-bounce: recorded before; nothing done again\n")


def test_imap_without_its_password_or_server_is_exit_2(sent, imap_server):
    config, _ = sent
    configure(config, imap_url=imap_server.url, imap_password_env="TEST_IMAP_PASSWORD")
    missing = feedpub(config, "bounces", "poll")
    assert missing.exit_code == 2 and "TEST_IMAP_PASSWORD is not set" in missing.stderr
    wrong = feedpub(config, "bounces", "poll", TEST_IMAP_PASSWORD="wrong")
    assert wrong.exit_code == 2 and imap_server.url in wrong.stderr


def test_the_daemon_reads_bounces_every_poll_every(sent):
    config, _ = sent
    configure(config, mailbox="Maildir", poll_every="90s")
    start = datetime(2025, 12, 15, 9, 0, tzinfo=UTC)
    scheduler = make_scheduler(load_config(config), build=lambda: None, digest=lambda: None, retry=lambda: None,
                               now=start, read_bounces=lambda: None)
    job = scheduler.get_job(BOUNCES_JOB)
    assert job.next_run_time == start
    assert job.trigger.interval == timedelta(seconds=90)


def test_round_trip_bounces_in_imap_suppress_readers_and_the_next_issue_skips_them(sent, imap_server, smtp_server,
                                                                                    monkeypatch):
    config_path, senders = sent
    for raw in returned_mail(senders).values():
        imap_server.deliver(raw)
    configure(config_path, imap_url=imap_server.url, imap_password_env="TEST_IMAP_PASSWORD", poll_every="1m")
    monkeypatch.setenv("TEST_IMAP_PASSWORD", PASSWORD)
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    config = load_config(config_path)
    store = open_store(config.store_url)
    Daemon(config, store, None, Publisher()).read_bounces()     # the daemon job of every bounces.poll_every
    assert_acted_on(config_path)

    first = len(smtp_server.received)
    _, slot = due_slot(config, datetime.now(UTC))
    write_post(config_path, "next-week", "来週の記事", days_before_slot=-2)
    result = send_due_issue(config, store, slot + timedelta(days=7, minutes=1))
    assert result.summary is not None and result.summary.sent == 2
    assert sorted(r.rcpt_tos[0] for r in smtp_server.received[first:]) == [READERS[0], READERS[3]]
