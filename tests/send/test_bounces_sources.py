"""Where bounces are read: a Maildir, an mbox and a real IMAP server (Debian's Dovecot). Recognised mail
is processed and moved to bounces.processed_folder; everything else stays exactly as it was."""

from __future__ import annotations

import json
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
from tests.send.test_bounces_process import FIXTURES, RETURN_PATH, bounce_for, quoting_our_message, subscribers

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


def test_without_return_path_polling_acts_only_on_mail_quoting_a_message_of_ours(tmp_path, smtp_server):
    """The bounce address is then the public From: address: a stranger's DSN naming a reader is kept, marked
    unverified, and suppresses no one; a real one quoting the Message-ID its reader got acts."""
    config = write_site(tmp_path, smtp_server.port)
    assert feedpub(config, "digest", "send").exit_code == 0
    message_ids = {received.rcpt_tos[0]: received.message()["Message-ID"] for received in smtp_server.received}
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    stranger = box.add(bounce_for("exim-user-unknown.eml", READERS[3], RETURN_PATH, fixture_reader="dan@example.com"))
    real = box.add(quoting_our_message(bounce_for("postfix-user-unknown.eml", READERS[1], RETURN_PATH,
                                                  fixture_reader="taro.yamada@example.jp"), message_ids[READERS[1]]))
    configure(config, mailbox="Maildir")

    result = feedpub(config, "bounces", "poll")
    assert result.exit_code == 0, result.output
    where = f"mailbox:{tmp_path / 'Maildir'}#"
    assert f"{where}{stranger}: {READERS[3]}: hard: none: unverified: " in result.stdout
    assert f"{where}{real}: {READERS[1]}: hard: suppressed (moved)\n" in result.stdout
    assert {email for email, row in subscribers(config).items() if row["suppressed"]} == {READERS[1]}
    listed = json.loads(feedpub(config, "bounces", "list", "--format", "json").stdout)
    assert sorted((row["recipient"], row["unverified"]) for row in listed) == [(READERS[1], False), (READERS[3], True)]


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


def hostile() -> dict[str, bytes]:
    """Messages that no parser may be let loose on: the issue's 3,000 nested multiparts (~170 KB), 100,000
    one-line parts in one multipart, and a message larger than any returned mail."""
    head = b"From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail Returned to Sender\r\n" \
           b"Message-ID: <%s@mx.example.net>\r\nMIME-Version: 1.0\r\n"
    nested = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(3000))
    closed = b"".join(b"--b%d--\r\n" % i for i in reversed(range(3000)))
    parts = b"Content-Type: multipart/mixed; boundary=p\r\n\r\n" + b"--p\r\n\r\nx\r\n" * 100_000 + b"--p--\r\n"
    return {
        "nested": head % b"nested" + nested + b"Content-Type: text/plain\r\n\r\n550 5.1.1 no\r\n" + closed,
        "parts": head % b"parts" + parts,
        "oversized": head % b"oversized" + b"Content-Type: text/plain\r\n\r\n" + (b"x" * 78 + b"\r\n") * 140_000,
    }


HOSTILE_WHY = {
    "nested": "unreadable: 3000 multipart or message/* parts (at most 50 are read)",
    "parts": "unreadable: 100001 MIME boundary lines (at most 500 are read)",
    "oversized": "unreadable: larger than 10 MiB (expected returned mail, which is never that big)",
}


def test_hostile_mail_before_a_bounce_in_a_maildir_is_recorded_once_and_moved(sent, tmp_path):
    config, senders = sent
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    keys = {name: box.add(raw) for name, raw in hostile().items()}      # read first: Maildir keys sort by time
    keys["hard"] = box.add(returned_mail(senders)["hard"])
    configure(config, mailbox="Maildir")

    result = feedpub(config, "bounces", "poll")
    assert result.exit_code == 1, result.output
    where = f"mailbox:{tmp_path / 'Maildir'}#"
    unreadable = ": -: unreadable: none: no recipient found in the message (moved)"
    # Maildir names order by their microseconds as text: the order of reading is not the order of delivery.
    assert sorted(result.stdout.splitlines()) == sorted([
        *(f"{where}{keys[name]}{unreadable}" for name in HOSTILE_WHY),
        f"{where}{keys['hard']}: {READERS[1]}: hard: suppressed (moved)"])
    assert sorted(result.stderr.splitlines()) == sorted(f"{where}{keys[name]}: {why}"
                                                        for name, why in HOSTILE_WHY.items())
    assert subscribers(config)[READERS[1]]["suppressed"]
    assert list(mailbox.Maildir(tmp_path / "Maildir", create=False).keys()) == []

    recorded = json.loads(feedpub(config, "bounces", "list", "--kind", "unreadable", "--format", "json").stdout)
    assert [row["kind"] for row in recorded] == ["unreadable"] * 3
    assert [feedpub(config, "bounces", "show", str(row["id"])).stdout.splitlines()[8] for row in recorded] == \
        [f"why:        {why}" for why in HOSTILE_WHY.values()]
    again = feedpub(config, "bounces", "poll")
    assert (again.exit_code, again.stdout, again.stderr) == (0, "", "")


def test_hostile_mail_before_a_bounce_in_an_mbox_is_recorded_once(sent, tmp_path):
    config, senders = sent
    box = mailbox.mbox(tmp_path / "bounces.mbox", create=True)
    for raw in (*hostile().values(), returned_mail(senders)["hard"]):
        box.add(raw)
    box.close()
    configure(config, mailbox="bounces.mbox")

    result = feedpub(config, "bounces", "poll")
    assert result.exit_code == 1, result.output
    assert [line.split(": ", 1)[1] for line in result.stderr.splitlines()] == list(HOSTILE_WHY.values())
    assert result.stdout.splitlines()[-1].endswith(f"#3: {READERS[1]}: hard: suppressed")
    assert subscribers(config)[READERS[1]]["suppressed"]
    again = feedpub(config, "bounces", "poll")     # an mbox is only read: the same four, nothing done again
    assert again.exit_code == 0 and again.stderr == ""
    assert [line.rsplit(": ", 1)[1] for line in again.stdout.splitlines()] == \
        ["recorded before; nothing done again"] * 4


def test_hostile_mail_before_a_bounce_in_imap_is_recorded_once_and_moved(sent, imap_server):
    config, senders = sent
    for raw in hostile().values():
        imap_server.deliver(raw)
    imap_server.deliver(returned_mail(senders)["hard"])
    configure(config, imap_url=imap_server.url, imap_password_env="TEST_IMAP_PASSWORD")

    result = feedpub(config, "bounces", "poll", TEST_IMAP_PASSWORD=PASSWORD)
    assert result.exit_code == 1, result.output
    where = f"imap:{imap_server.url}#"
    assert result.stderr.splitlines() == [f"{where}{uid}: {why}" for uid, why in enumerate(HOSTILE_WHY.values(), 1)]
    assert result.stdout.splitlines()[-1] == f"{where}4: {READERS[1]}: hard: suppressed (moved)"
    assert subscribers(config)[READERS[1]]["suppressed"]

    client = imap_server.client()
    assert client.select_folder("INBOX")[b"EXISTS"] == 0
    assert client.select_folder("feedpub-processed")[b"EXISTS"] == 4
    client.logout()
    again = feedpub(config, "bounces", "poll", TEST_IMAP_PASSWORD=PASSWORD)
    assert (again.exit_code, again.stdout, again.stderr) == (0, "", "")


def test_the_daemon_reads_past_hostile_mail_and_logs_why(sent, tmp_path, monkeypatch, caplog):
    config_path, senders = sent
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    box.add(hostile()["nested"])
    box.add(returned_mail(senders)["hard"])
    configure(config_path, mailbox="Maildir")
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    config = load_config(config_path)
    daemon = Daemon(config, open_store(config.store_url), None, Publisher())

    daemon.read_bounces()
    assert subscribers(config_path)[READERS[1]]["suppressed"]
    assert HOSTILE_WHY["nested"] in caplog.text and "reading bounces failed" not in caplog.text
    caplog.clear()
    daemon.read_bounces()                  # both were moved: the next poll finds nothing
    assert caplog.text == ""
