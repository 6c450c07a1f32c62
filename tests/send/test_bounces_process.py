"""Bounces and complaints recorded and acted on: a digest goes out with VERP, bounces come back on stdin
(`feedpub bounces process -`), readers are suppressed or unsubscribed, the evidence is listed and shown.
Store-level rules (soft bounce counting, idempotency) run on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import mailbox
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import time_machine
from click.testing import CliRunner

from feedpub.cli import main
from feedpub.config_file import load_config
from feedpub.records import StoredVariant, SubscriberInput
from feedpub.schema import deliveries
from feedpub.send.bounces import evidence
from feedpub.send.bounces.process import Replayed, process_message, record_all
from feedpub.store import Store, open_store
from tests.conftest import emptied, store_of_version
from tests.send.sites import READERS, SECRET, feedpub, write_config, write_site
from tests.test_store_lock import locked

FIXTURES = Path(__file__).parent / "fixtures" / "bounces"
RETURN_PATH = "bounces@blog.example.com"


def bounce_for(fixture: str, reader: str, envelope: str, *, fixture_reader: str, message_id: str = "") -> bytes:
    """A fixture re-addressed: about `reader`, sent back to `envelope` (a VERP address or the plain one)."""
    raw = (FIXTURES / fixture).read_bytes().replace(fixture_reader.encode(), reader.encode())
    raw = raw.replace(RETURN_PATH.encode(), envelope.encode())
    if message_id:
        raw = b"Message-ID: <" + message_id.encode() + b">\n" + b"\n".join(
            line for line in raw.split(b"\n") if not line.lower().startswith(b"message-id:"))
    return raw


@pytest.fixture
def sent(tmp_path, smtp_server):
    """A digest sent with VERP to READERS: (config path, reader → the MAIL FROM of their message)."""
    config = write_site(tmp_path, smtp_server.port, return_path=RETURN_PATH)
    assert feedpub(config, "digest", "send").exit_code == 0
    return config, {received.rcpt_tos[0]: received.mail_from for received in smtp_server.received}


def process(config: Path, raw: bytes):
    """`feedpub bounces process -` with `raw` on stdin, as a Postfix alias runs it."""
    return CliRunner().invoke(main, ["--config", str(config), "bounces", "process", "-"], input=raw,
                              env={"FEEDPUB_SECRET": SECRET}, catch_exceptions=False)


def subscribers(config: Path) -> dict[str, dict]:
    listed = json.loads(feedpub(config, "subscribers", "list", "--format", "json").stdout)
    return {row["email"]: row for row in listed}


def test_a_hard_bounce_suppresses_exactly_its_reader_once(sent):
    config, senders = sent
    reader = READERS[1]
    raw = bounce_for("postfix-user-unknown.eml", reader, senders[reader], fixture_reader="taro.yamada@example.jp")
    first = process(config, raw)
    assert first.exit_code == 0, first.output
    assert first.stdout == f"-: {reader}: hard: suppressed\n"
    again = process(config, raw)
    assert again.stdout == f"-: {reader}: hard: recorded before; nothing done again\n"

    suppressed = {email for email, row in subscribers(config).items() if row["suppressed"]}
    assert suppressed == {reader}
    (row,) = json.loads(feedpub(config, "bounces", "list", "--format", "json").stdout)
    assert (row["recipient"], row["kind"], row["status"], row["effect"]) == (reader, "hard", "5.1.1", "suppressed")
    assert row["delivery"] is not None and row["issue"] and row["source"] == "stdin"
    shown = feedpub(config, "bounces", "show", str(row["id"])).stdout
    assert "why:        delivery status notification: failed, status 5.1.1" in shown
    assert shown.endswith(raw.decode() if raw.endswith(b"\n") else raw.decode() + "\n")
    header, line = feedpub(config, "digest", "status").stdout.splitlines()
    assert header.split()[-2:] == ["BOUNCED", "COMPLAINED"] and line.split()[-2:] == ["1", "0"]


def test_a_complaint_unsubscribes_and_an_auto_reply_changes_nothing(sent):
    config, senders = sent
    complainer, away = READERS[0], READERS[2]
    complaint = bounce_for("arf-abuse.eml", complainer, senders[complainer], fixture_reader="mina@mailbox.example")
    vacation = bounce_for("vacation-rfc3834-ja.eml", away, senders[away], fixture_reader="hanako@example.jp")
    assert process(config, complaint).stdout == f"-: {complainer}: complaint: unsubscribed and suppressed (complaint)\n"
    assert process(config, vacation).stdout == f"-: {away}: auto-reply: none (auto-reply)\n"

    rows = subscribers(config)
    assert rows[complainer]["status"] == "unsubscribed" and rows[complainer]["suppressed"]
    assert rows[away]["status"] == "active" and not rows[away]["suppressed"]
    assert [r["kind"] for r in json.loads(feedpub(config, "bounces", "list", "--kind", "complaint",
                                                  "--format", "json").stdout)] == ["complaint"]
    assert feedpub(config, "digest", "status").stdout.splitlines()[1].split()[-2:] == ["0", "1"]


def test_forged_tags_and_strangers_are_recorded_but_change_nothing(sent):
    config, senders = sent
    forged = bounce_for("postfix-user-unknown.eml", READERS[3], "bounces+1-abcdefgh@blog.example.com",
                        fixture_reader="taro.yamada@example.jp")
    stranger = bounce_for("exim-user-unknown.eml", "never@example.net", RETURN_PATH, fixture_reader="dan@example.com")
    assert process(config, forged).stdout.endswith("hard: none: unverified: its VERP tag is not signed with this "
                                                   "site's key\n")
    assert process(config, stranger).stdout.startswith("-: never@example.net: hard: none: unverified: ")
    assert not any(row["suppressed"] for row in subscribers(config).values())
    assert len(json.loads(feedpub(config, "bounces", "list", "--format", "json").stdout)) == 2


@pytest.fixture
def sent_ids(tmp_path, smtp_server):
    """A digest sent with VERP to READERS: (config path, reader → the Message-ID of their message)."""
    config = write_site(tmp_path, smtp_server.port, return_path=RETURN_PATH)
    assert feedpub(config, "digest", "send").exit_code == 0
    return config, {received.rcpt_tos[0]: received.message()["Message-ID"] for received in smtp_server.received}


def test_with_return_path_a_dsn_without_a_tag_is_recorded_unverified_and_changes_nobody(sent_ids, tmp_path):
    """Every real bounce comes back to a VERP address: one mailed to the plain return path naming a reader
    is what anyone can write."""
    config, _ = sent_ids
    reader = READERS[1]
    forged = tmp_path / "forged.eml"
    forged.write_bytes(bounce_for("postfix-user-unknown.eml", reader, RETURN_PATH,
                                  fixture_reader="taro.yamada@example.jp"))
    (parsed,) = [json.loads(line) for line in feedpub(config, "bounces", "parse", str(forged)).stdout.splitlines()]
    assert (parsed["kind"], parsed["recipients"], parsed["delivery"], parsed["verified"]) == (
        "hard", [reader], None, False)

    processed = feedpub(config, "bounces", "process", str(forged))
    assert processed.exit_code == 0, processed.output
    assert processed.stdout == (f"{forged}: {reader}: hard: none: unverified: neither a VERP tag of this site nor the "
                                "Message-ID of a message feedpub sent this address\n")
    assert not any(row["suppressed"] for row in subscribers(config).values())
    (row,) = json.loads(feedpub(config, "bounces", "list", "--format", "json").stdout)
    assert (row["recipient"], row["kind"], row["delivery"], row["unverified"]) == (reader, "hard", None, True)
    assert "none: unverified:" in feedpub(config, "bounces", "list").stdout
    assert feedpub(config, "digest", "status").stdout.splitlines()[1].split()[-2:] == ["0", "0"]


def test_a_complaint_quoting_a_message_id_of_ours_acts_only_for_the_reader_it_was_sent_to(sent_ids):
    """A feedback loop's report carries the message, not its envelope: the delivery's Message-ID, signed for
    its reader, vouches for it, and only for that reader (a reader cannot use theirs against another)."""
    config, message_ids = sent_ids
    complainer, other = READERS[0], READERS[2]

    def complaint(about: str, message_id: str) -> bytes:
        raw = bounce_for("arf-abuse.eml", about, RETURN_PATH, fixture_reader="mina@mailbox.example")
        return raw.replace(b"<2025-12-15-0900.77aa@blog.example.com>", message_id.encode()).replace(
            b"fbl-20251215-0001", f"fbl-{about}".encode())

    own = process(config, complaint(complainer, message_ids[complainer]))
    assert own.stdout == f"-: {complainer}: complaint: unsubscribed and suppressed (complaint)\n"
    borrowed = process(config, complaint(other, message_ids[complainer]))
    assert borrowed.stdout.startswith(f"-: {other}: complaint: none: unverified: ")
    rows = subscribers(config)
    assert rows[complainer]["status"] == "unsubscribed" and rows[other]["status"] == "active"
    assert not rows[other]["suppressed"]
    listed = json.loads(feedpub(config, "bounces", "list", "--format", "json").stdout)
    assert [(r["recipient"], r["unverified"]) for r in listed] == [(complainer, False), (other, True)]


def test_polling_a_maildir_records_a_forged_dsn_as_unverified(sent_ids, tmp_path):
    config, _ = sent_ids
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    key = box.add(bounce_for("exim-user-unknown.eml", READERS[3], RETURN_PATH, fixture_reader="dan@example.com"))
    config.write_text(config.read_text(encoding="utf-8") + '[bounces]\nmailbox = "Maildir"\n', encoding="utf-8")
    polled = feedpub(config, "bounces", "poll")
    assert polled.exit_code == 0, polled.output
    assert polled.stdout.startswith(f"mailbox:{tmp_path / 'Maildir'}#{key}: {READERS[3]}: hard: none: unverified: ")
    assert not subscribers(config)[READERS[3]]["suppressed"]
    (row,) = json.loads(feedpub(config, "bounces", "list", "--format", "json").stdout)
    assert row["unverified"] is True


STRANGER_DSN = """\
From: MAILER-DAEMON@mx.stranger.example
To: news@blog.example.com
Subject: Undelivered Mail Returned to Sender
Message-ID: <{key}@mx.stranger.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

Your message could not be delivered.

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.stranger.example

Final-Recipient: rfc822; {first}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 user unknown

Final-Recipient: rfc822; {second}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 user unknown

--b
Content-Type: text/rfc822-headers

From: ALLFORCES <news@blog.example.com>
Subject: ALLFORCES weekly
Message-ID: {message_id}

--b--
"""


@pytest.fixture
def sent_plain(tmp_path, smtp_server):
    """A digest sent without smtp.return_path (the default): bounces come back to the digest.from address,
    which anyone can write to. (config path, reader → the Message-ID of their message)."""
    config = write_site(tmp_path, smtp_server.port)
    assert feedpub(config, "digest", "send").exit_code == 0
    return config, {received.rcpt_tos[0]: received.message()["Message-ID"] for received in smtp_server.received}


def test_without_return_path_a_stranger_s_dsn_or_complaint_naming_readers_changes_nobody(sent_plain, tmp_path):
    """The From: address is public: a hand-written DSN listing two readers, one quoting a Message-ID of ours
    sent to someone else, and a made-up ARF report are kept as evidence and suppress no one."""
    config, message_ids = sent_plain
    dsn = tmp_path / "stranger.eml"
    dsn.write_text(STRANGER_DSN.format(key="two", first=READERS[1], second=READERS[2],
                                       message_id="<2025-12-15-0900.5f3e2a@blog.example.com>"), encoding="utf-8")
    borrowed = STRANGER_DSN.format(key="borrowed", first=READERS[3], second=READERS[3],
                                   message_id=message_ids[READERS[0]]).encode()
    complaint = bounce_for("arf-abuse.eml", READERS[0], RETURN_PATH, fixture_reader="mina@mailbox.example")

    (parsed,) = [json.loads(line) for line in feedpub(config, "bounces", "parse", str(dsn)).stdout.splitlines()]
    assert (parsed["kind"], parsed["recipients"], parsed["verified"]) == ("hard", [READERS[1], READERS[2]], False)
    unverified = ("none: unverified: neither a VERP tag of this site nor the Message-ID of a message feedpub "
                  "sent this address")
    processed = feedpub(config, "bounces", "process", str(dsn))
    assert (processed.exit_code, processed.stdout) == (0, f"{dsn}: {READERS[1]}: hard: {unverified}\n"
                                                          f"{dsn}: {READERS[2]}: hard: {unverified}\n")
    assert process(config, borrowed).stdout == f"-: {READERS[3]}: hard: {unverified}\n"
    assert process(config, complaint).stdout == f"-: {READERS[0]}: complaint: {unverified}\n"

    rows = subscribers(config)
    assert all(row["status"] == "active" and not row["suppressed"] for row in rows.values())
    listed = json.loads(feedpub(config, "bounces", "list", "--format", "json").stdout)
    assert [(r["recipient"], r["kind"], r["unverified"]) for r in listed] == [
        (READERS[1], "hard", True), (READERS[2], "hard", True), (READERS[3], "hard", True),
        (READERS[0], "complaint", True)]
    assert feedpub(config, "digest", "status").stdout.splitlines()[1].split()[-2:] == ["0", "0"]


def test_without_return_path_a_bounce_quoting_its_message_finds_its_delivery(sent_plain):
    config, message_ids = sent_plain
    raw = bounce_for("qmail-no-mailbox.eml", READERS[0], RETURN_PATH, fixture_reader="fumiko@example.net")
    forged = bounce_for("qmail-no-mailbox.eml", READERS[0], RETURN_PATH, fixture_reader="fumiko@example.net",
                        message_id="forged@mx.example")
    assert process(config, forged).stdout.endswith(": hard: none: unverified: neither a VERP tag of this site nor the "
                                                "Message-ID of a message feedpub sent this address\n")
    quoting = raw.replace(b"Subject: ALLFORCES", f"Message-ID: {message_ids[READERS[0]]}\nSubject: ALLFORCES".encode())
    assert quoting != raw
    assert process(config, quoting).stdout == f"-: {READERS[0]}: hard: suppressed\n"
    verified = [row for row in json.loads(feedpub(config, "bounces", "list", "--format", "json").stdout)
                if not row["unverified"]]
    assert [(row["recipient"], row["issue"] is not None, row["delivery"] is not None) for row in verified] == [
        (READERS[0], True, True)]


_QUOTED_ID = re.compile(rb"^([ \t>]*)Message-I[dD]:[ \t]*<[^>]*@blog\.example\.com>", re.M)
_QUOTED_FROM = re.compile(rb"^([ \t>]*)From:[ \t]*ALLFORCES <news@blog\.example\.com>", re.M)


def quoting_our_message(raw: bytes, message_id: str) -> bytes | None:
    """`raw` with the message it returns quoting `message_id`: in place of the quoted Message-ID, or after
    the quoted From: where the fixture kept no Message-ID; None if it quotes no header of ours."""
    if _QUOTED_ID.search(raw):
        return _QUOTED_ID.sub(lambda m: m[1] + b"Message-ID: " + message_id.encode(), raw, count=1)
    if _QUOTED_FROM.search(raw):
        return _QUOTED_FROM.sub(lambda m: m[0] + b"\n" + m[1] + b"Message-ID: " + message_id.encode(), raw, count=1)
    return None


EFFECTS = {"hard": "suppressed", "soft": "counted: soft bounce 1 of 3 within 30d",
           "complaint": "unsubscribed and suppressed (complaint)"}


def test_without_return_path_the_real_returned_mail_of_the_fixtures_acts_when_it_quotes_the_message(tmp_path,
                                                                                                    smtp_server):
    """Every fixture that returns our message's headers, about one address: re-addressed to a reader of its
    own and quoting the Message-ID of the digest that reader got, it acts as its kind says."""
    parsed = {}
    for path in sorted(FIXTURES.glob("*.eml")):
        (result,) = [json.loads(line) for line in
                     feedpub(write_config(tmp_path, 25), "bounces", "parse", str(path)).stdout.splitlines()]
        if result["kind"] in EFFECTS and len(result["recipients"]) == 1 and quoting_our_message(
                path.read_bytes(), "<x>") is not None:
            parsed[path.name] = result
    assert len(parsed) >= 35, sorted(parsed)
    readers = [f"reader{n}@example.jp" for n in range(len(parsed))]
    config = write_site(tmp_path, smtp_server.port, readers=readers)
    assert feedpub(config, "digest", "send").exit_code == 0
    message_ids = {received.rcpt_tos[0]: received.message()["Message-ID"] for received in smtp_server.received}

    for reader, (name, result) in zip(readers, parsed.items(), strict=True):
        raw = bounce_for(name, reader, RETURN_PATH, fixture_reader=result["recipients"][0])
        unverified = process(config, b"Message-ID: <copy@mx.example>\n" + raw)   # another message
        assert unverified.stdout.startswith(f"-: {reader}: {result['kind']}: none: unverified: "), name
        quoting = quoting_our_message(raw, message_ids[reader])
        acted = process(config, quoting)
        assert acted.stdout == f"-: {reader}: {result['kind']}: {EFFECTS[result['kind']]}\n", name


def test_list_filters_and_formats(sent):
    config, senders = sent
    for index, fixture, reader in ((0, "postfix-greylisted-delayed.eml", "ben@example.com"),
                                   (1, "postfix-user-unknown.eml", "taro.yamada@example.jp")):
        process(config, bounce_for(fixture, READERS[index], senders[READERS[index]], fixture_reader=reader))
    table = feedpub(config, "bounces", "list").stdout.splitlines()
    assert table[0].split()[:4] == ["ID", "RECEIVED", "(UTC)", "RECIPIENT"] and len(table) == 3
    csv_lines = feedpub(config, "bounces", "list", "--kind", "soft", "--format", "csv").stdout.splitlines()
    assert csv_lines[0].startswith("id,received,source,recipient,kind") and len(csv_lines) == 2
    assert "counted: soft bounce 1 of 3 within 30d" in csv_lines[1]
    future = feedpub(config, "bounces", "list", "--since", "2999-01-01", "--format", "json").stdout
    assert json.loads(future) == []
    assert feedpub(config, "bounces", "list", "--since", "yesterday").exit_code == 2
    assert feedpub(config, "bounces", "show", "999").exit_code == 2


# -- the store's rules, on SQLite and PostgreSQL -------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def store_config(request, tmp_path) -> Iterator[tuple[Store, object]]:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    config = load_config(write_config(tmp_path, 25, store_url=url, return_path=RETURN_PATH))
    store = open_store(config.store_url)
    if request.param == "postgresql":
        emptied(store)
    yield store, config
    store.engine.dispose()


def mailed(store: Store, reader: str, period: str, at: datetime) -> int:
    """An issue `period` whose one delivery to `reader` was sent at `at`; the delivery id."""
    ((subscriber, _),) = store.save_subscribers([SubscriberInput(reader)], status="active")
    issue = store.create_issue(period=period, slot=at, starts=at - timedelta(days=7), ends=at,
                               variants=[StoredVariant("", "今週", "<p>本文</p>", "本文")],
                               recipients={subscriber.id: ""})
    with store.engine.begin() as conn:
        conn.execute(deliveries.update().where(deliveries.c.issue_id == issue.id).values(status="sent", updated_at=at))
        return conn.scalar(sa.select(deliveries.c.id).where(deliveries.c.issue_id == issue.id))


def soft_bounce(config, store: Store, reader: str, delivery_id: int | None, message_id: str, at: datetime) -> str:
    from feedpub.send import verp

    envelope = verp.return_path(RETURN_PATH, SECRET, delivery_id) if delivery_id else RETURN_PATH
    raw = bounce_for("postfix-greylisted-delayed.eml", reader, envelope, fixture_reader="ben@example.com",
                     message_id=message_id)
    with time_machine.travel(at, tick=False):
        (outcome,) = process_message(config, store, raw, "test")
    return outcome.effect


START = datetime(2025, 12, 1, 0, 0, tzinfo=UTC)


def test_three_soft_bounces_in_a_row_suppress_and_a_clean_delivery_resets_the_count(store_config, monkeypatch):
    store, config = store_config
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    reader, other = "ayumi@example.jp", "ben@example.com"
    effects = []
    for week in range(3):
        at = START + timedelta(days=7 * week)
        delivery = mailed(store, reader, f"2025-12-{1 + 7 * week:02d}-0900", at)
        mailed(store, other, f"2025-12-{1 + 7 * week:02d}-0900-b", at)
        effects.append(soft_bounce(config, store, reader, delivery, f"soft-{week}@mx", at + timedelta(hours=1)))
    assert effects == ["counted: soft bounce 1 of 3 within 30d", "counted: soft bounce 2 of 3 within 30d",
                       "suppressed: soft bounce 3 of 3 within 30d"]
    assert store.suppression(reader) is not None and "3 soft bounces" in store.suppression(reader).reason

    # The other reader: bounced in weeks 0 and 2, but week 1's delivery went through.
    weeks = {0: None, 2: None}
    rows = {}
    with store.engine.connect() as conn:
        for delivery_id, period in conn.execute(sa.text(
                "SELECT d.id, i.period FROM deliveries d JOIN issues i ON i.id = d.issue_id "
                "JOIN subscribers s ON s.id = d.subscriber_id WHERE s.email_key = :key"), {"key": other}):
            rows[period] = delivery_id
    for week in weeks:
        period = f"2025-12-{1 + 7 * week:02d}-0900-b"
        weeks[week] = soft_bounce(config, store, other, rows[period], f"other-{week}@mx",
                                  START + timedelta(days=7 * week, hours=2))
    assert weeks == {0: "counted: soft bounce 1 of 3 within 30d", 2: "counted: soft bounce 1 of 3 within 30d"}
    assert store.suppression(other) is None


def test_a_delay_warning_and_the_failure_of_one_delivery_count_once_and_old_ones_expire(store_config,
                                                                                        monkeypatch):
    store, config = store_config
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    reader = "chihiro@example.jp"
    first = mailed(store, reader, "2025-10-01-0900", START - timedelta(days=60))
    assert soft_bounce(config, store, reader, first, "old@mx", START - timedelta(days=59)) == \
        "counted: soft bounce 1 of 3 within 30d"              # 59 days before the next ones: outside the window
    delivery = mailed(store, reader, "2025-12-01-0900", START)
    assert soft_bounce(config, store, reader, delivery, "delay@mx", START + timedelta(hours=4)) == \
        "counted: soft bounce 1 of 3 within 30d"
    assert soft_bounce(config, store, reader, delivery, "failed@mx", START + timedelta(days=5)) == \
        "counted: soft bounce 1 of 3 within 30d"
    assert store.suppression(reader) is None


def test_the_same_message_is_recorded_once_and_counted_per_issue(store_config, monkeypatch):
    store, config = store_config
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    reader = "dan@example.com"
    delivery = mailed(store, reader, "2025-12-01-0900", START)
    from feedpub.send import verp

    raw = bounce_for("postfix-user-unknown.eml", reader, verp.return_path(RETURN_PATH, SECRET, delivery),
                     fixture_reader="taro.yamada@example.jp")
    assert [o.effect for o in process_message(config, store, raw, "a")] == ["suppressed"]
    assert [o.evidence_id for o in process_message(config, store, raw, "b")] == [None]
    assert [(e.recipient, e.delivery_id, e.issue, e.source) for e in evidence.listing(store)] == [
        (reader, delivery, "2025-12-01-0900", "a")]
    issue_id = store.issue("2025-12-01-0900").id
    assert evidence.per_issue(store) == {issue_id: (1, 0)}


def test_process_files_keeps_going_past_an_unreadable_one_and_caps_the_evidence(sent, tmp_path):
    config, senders = sent
    reader = READERS[0]
    big = tmp_path / "big.eml"
    raw = bounce_for("postfix-user-unknown.eml", reader, senders[reader], fixture_reader="taro.yamada@example.jp")
    big.write_bytes(raw.replace(b"--8F2A41C0E3.1765756812/mx1.blog.example.com--",
                                b"\n" + b"x" * 200_000 + b"\n--8F2A41C0E3.1765756812/mx1.blog.example.com--"))
    result = feedpub(config, "bounces", "process", str(tmp_path / "missing.eml"), str(big))
    assert result.exit_code == 1
    assert "missing.eml: cannot read" in result.stderr
    assert result.stdout == f"{big}: {reader}: hard: suppressed\n"
    (row,) = json.loads(feedpub(config, "bounces", "list", "--format", "json").stdout)
    assert row["source"] == f"file:{big}"
    shown = feedpub(config, "bounces", "show", str(row["id"])).stdout
    assert f"--- evidence ({big.stat().st_size} bytes, first 65536 kept) ---" in shown


def test_signed_request_tokens_are_refused_a_second_time_until_they_expire(store_config):
    store, config = store_config
    token = evidence.Token("mailgun", "7f3e" * 12, START + timedelta(minutes=15))
    with store.writing() as conn:
        assert evidence.remember(conn, token, START)
    with store.writing() as conn:
        assert not evidence.remember(conn, token, START + timedelta(minutes=14))
        assert evidence.remember(conn, evidence.Token("other", token.token, token.expires_at), START)
    with time_machine.travel(START + timedelta(minutes=1)), pytest.raises(Replayed):
        record_all(config, store, [], token=token)
    with store.writing() as conn:     # expired: forgotten, and accepted (the signature's age refuses it first)
        assert evidence.remember(conn, token, START + timedelta(minutes=16))


def test_a_store_made_before_gains_the_unverified_flag_and_the_token_table(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store_of_version(url, 5, "ALTER TABLE bounces DROP COLUMN unverified",   # as version 5 made it
                     "INSERT INTO bounces (received_at, source, message_key, recipient, kind, why, effect, raw, "
                     "raw_size) VALUES ('2025-12-01 00:00:00', 'stdin', 'mid:1', 'a@example.jp', 'hard', 'dsn', "
                     "'suppressed', x'00', 1)")
    store = open_store(url)
    (row,) = evidence.listing(store)
    assert (row.effect, row.unverified) == ("suppressed", False)
    with store.writing() as conn:
        assert evidence.remember(conn, evidence.Token("mailgun", "t", START), START)


def test_unverified_soft_bounces_count_for_nothing(store_config, monkeypatch):
    store, config = store_config
    monkeypatch.setenv("FEEDPUB_SECRET", SECRET)
    reader = "ayumi@example.jp"
    delivery = mailed(store, reader, "2025-12-01-0900", START)
    made_up = [soft_bounce(config, store, reader, None, f"made-up-{n}@mx", START + timedelta(hours=1 + n))
               for n in range(2)]
    assert all(effect.startswith("none: unverified: ") for effect in made_up)
    assert soft_bounce(config, store, reader, delivery, "real@mx", START + timedelta(hours=5)) == \
        "counted: soft bounce 1 of 3 within 30d"
    assert store.suppression(reader) is None


def test_hostile_mail_on_stdin_is_recorded_as_unreadable_and_the_next_bounce_still_acts(sent, tmp_path):
    """On stdin (a Postfix alias) the unreadable message is recorded: exit 0, as any other exit would make
    Postfix bounce it to the postmaster; the same message given as a file is exit 1, skipped."""
    config, senders = sent
    nested = b"From: MAILER-DAEMON@mx.example.net\nSubject: Undelivered Mail\nMessage-ID: <deep@mx.example.net>\n" + \
        b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(3000))
    first = process(config, nested)
    assert first.exit_code == 0
    assert first.stdout == "-: -: unreadable: none: no recipient found in the message\n"
    assert first.stderr == "-: unreadable: 3000 multipart or message/* parts (at most 50 are read)\n"
    assert process(config, nested).stdout == "-: -: unreadable: recorded before; nothing done again\n"
    named = tmp_path / "nested.eml"
    named.write_bytes(nested)
    as_file = feedpub(config, "bounces", "process", str(named))
    assert (as_file.exit_code, as_file.stderr) == (1, f"{named}: unreadable: 3000 multipart or message/* parts "
                                                      "(at most 50 are read)\n")

    reader = READERS[1]
    raw = bounce_for("postfix-user-unknown.eml", reader, senders[reader], fixture_reader="taro.yamada@example.jp")
    second = process(config, raw)
    assert (second.exit_code, second.stdout) == (0, f"-: {reader}: hard: suppressed\n")
    rows = json.loads(feedpub(config, "bounces", "list", "--format", "json").stdout)
    assert [(row["kind"], row["source"]) for row in rows] == [("unreadable", "stdin"), ("hard", "stdin")]


def test_a_locked_store_is_exit_75_so_the_mta_keeps_the_bounce_and_delivers_it_again(sent):
    """Postfix answers EX_TEMPFAIL (75) from a pipe alias by queueing the message and trying again; exit 2
    would bounce it to the postmaster, and the bounce would be lost."""
    config, senders = sent
    reader = READERS[1]
    raw = bounce_for("postfix-user-unknown.eml", reader, senders[reader], fixture_reader="taro.yamada@example.jp")
    path = config.parent / ".feedpub" / "feedpub.db"
    with locked(path):
        busy = process(config, raw)
    assert busy.exit_code == 75, busy.output
    assert busy.stderr.startswith(f"feedpub: the store {path} is locked by another process (waited ")
    assert not subscribers(config)[reader]["suppressed"]
    again = process(config, raw)                      # the MTA's next try
    assert (again.exit_code, again.stdout) == (0, f"-: {reader}: hard: suppressed\n")
