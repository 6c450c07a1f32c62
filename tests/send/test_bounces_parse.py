"""`feedpub bounces parse`: what an operator sees for the bounces, complaints and replies of many MTAs
(fixtures written from the RFCs and each MTA's documented format), and that it touches nothing."""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner

from feedpub.cli import main
from feedpub.send import verp
from tests.send.sites import SECRET, write_config

FIXTURES = Path(__file__).parent / "fixtures" / "bounces"

# file → kind, recipients, status
EXPECTED = {
    "postfix-user-unknown.eml": ("hard", ["taro.yamada@example.jp"], "5.1.1"),
    "postfix-greylisted-delayed.eml": ("soft", ["ben@example.com"], "4.7.1"),
    "exim-user-unknown.eml": ("hard", ["dan@example.com"], "5.1.1"),
    "exim-quota-exceeded.eml": ("soft", ["chihiro@example.jp"], "5.2.2"),
    "sendmail-host-unknown.eml": ("hard", ["eve@no-such-host.example"], "5.1.2"),
    "qmail-no-mailbox.eml": ("hard", ["fumiko@example.net"], "5.1.1"),
    "exchange-recipient-not-found.eml": ("hard", ["george@contoso.example"], "5.1.10"),
    "gmail-no-such-user-ja.eml": ("hard", ["hanako.suzuki@gmail.com"], "5.1.1"),
    "gmail-rate-limited-policy.eml": ("soft", ["ichiro@gmail.com"], "5.7.1"),
    "yahoo-no-account.eml": ("hard", ["jiro@yahoo.com"], "5.0.0"),
    "ses-dsn-user-unknown.eml": ("hard", ["kenji@example.org"], "5.1.1"),
    "null-mx.eml": ("hard", ["lisa@parked.example"], "5.1.10"),
    "arf-abuse.eml": ("complaint", ["mina@mailbox.example"], None),
    "arf-abuse-redacted.eml": ("complaint", ["noriko@hotmail.example"], None),
    "vacation-rfc3834-ja.eml": ("auto-reply", [], None),
    "exchange-out-of-office.eml": ("auto-reply", [], None),
    "challenge-response.eml": ("auto-reply", [], None),
    "ordinary-reply.eml": ("not-a-bounce", [], None),
    "dsn-delivered.eml": ("not-a-bounce", ["ayumi@example.jp"], None),
    "truncated-dsn.eml": ("hard", ["taro.yamada@example.jp"], "5.1.1"),
    "garbage.eml": ("not-a-bounce", [], None),
    "dsn-generic-status-precise-diagnostic.eml": ("hard", ["saburo@example.co.jp"], "5.1.1"),
    "helpdesk-auto-acknowledgement.eml": ("auto-reply", [], None),
    "dsn-success-without-action.eml": ("not-a-bounce", ["momo@example.org"], None),
    # Shapes the real-bounce corpus (bench/bounce_accuracy.py) showed us missing:
    # a reply folded over lines is read whole ("Recipient address rejected" is on the line below the code;
    # Postfix writes it before whatever a recipient restriction says, so it counts with its words: "Access
    # denied" is the receiving site refusing this very address);
    "exim-recipient-rejected-folded.eml": ("hard", ["paul@shop.example.ch"], "5.7.1"),
    # a refusal at MAIL FROM, or one that names our own sender, is not about the recipient;
    "exim-sender-unroutable.eml": ("soft", ["quinn@university.example.edu"], "5.0.0"),
    "exim-sender-domain-invalid.eml": ("soft", ["rie.kato@hosting.example.com"], "5.2.0"),
    # a mail system's bounce that names no address: the To of the message it returns (attached, or copied
    # below its text);
    "sendmail-like-no-address-in-text.eml": ("hard", ["sato.taro@example.co.jp"], "5.1.1"),
    "qmail-copy-in-text-only.eml": ("hard", ["sam.porter@example.net"], "5.1.1"),
    # …or, without one, the "RCPT TO:" of its transcript or the one address its words name; a multipart part
    # whose boundary was lost is still read as text;
    "carrier-notice-ja-lone-address.eml": ("hard", ["kenta.mori@mobile.example.ne.jp"], None),
    "james-broken-multipart-rcpt-to.eml": ("hard", ["5550100@sms.example.com"], "5.0.0"),
    # one bounce for several recipients: each judged by the words next to its own address;
    "gmx-two-recipients-one-unknown.eml": ("hard", ["haruto.abe@example.co.jp"], "5.1.1"),
    # a failure that does not say the address is dead is counted, not suppressed at once: a bare 550
    # ("5.0.0" says only "permanent"), a report without a status, a notice with no reason at all;
    "exim-administrative-prohibition.eml": ("soft", ["olivia@example.net"], "5.0.0"),
    "dsn-no-status-quota-folded.eml": ("soft", ["jonas.weber@example.de"], None),
    "sendmail-version-numbers-no-reason.eml": ("soft", ["yui.nakamura@example.co.jp"], None),
    "smtp32-invalid-final-userid.eml": ("hard", ["lars.berg@example.se"], None),
    # a reader who also sent the returned message (a list post) is still the recipient when nothing else is
    # named.
    "list-reader-also-sender.eml": ("hard", ["shun@example.jp"], "5.1.1"),
    # a success status (a provider's delivery notification) is no bounce, unless a failure is written too;
    "ses-delivery-notification-by-email.eml": ("not-a-bounce", [], None),
    "sendmail-transcript-rcpt-ok-then-refused.eml": ("soft", ["kaho.nishimura@example.co.jp"], "5.7.1"),
    # a failure that calls itself temporary ("Host not found, try again") is soft without a status;
    "postfix-dns-try-again-no-dsn.eml": ("soft", ["yuto.ikeda@flaky-dns.example"], None),
    # a DSN is judged with its text's paragraph about the recipient, where Postfix names the SMTP stage;
    "postfix-dsn-refused-at-mail-from.eml": ("soft", ["sakura.hirano@example.org"], "5.0.0"),
    # a relay that wants authentication refuses us, not the address;
    "relay-requires-authentication.eml": ("soft", ["hina.ogawa@client.example.net"], "5.0.0"),
    # a refusal at DATA is about the message unless its words say the address does not exist;
    "postfix-refused-at-data.eml": ("soft", ["nao.fujita@example.org"], "5.0.0"),
    # Original-Recipient (the address we gave; Final- is where an alias led) unless only Final-Recipient is
    # the returned message's To;
    "dsn-forwarded-alias-original-recipient.eml": ("hard", ["takumi.ono@university.example"], "5.1.1"),
    "dsn-relayed-final-recipient-mailed.eml": ("hard", ["sora.kimura@isp.example"], "5.1.1"),
    # a mailbox whose owner refuses us, or that receives too fast for now, is alive, whatever the status;
    "gmail-receiving-rate-5-2-1.eml": ("soft", ["riku.nakano@gmail.example"], "5.2.1"),
    "dsn-refused-by-recipient-preferences.eml": ("soft", ["yuki.aoki@social.example"], "5.1.1"),
    # a subject in raw 8-bit UTF-8 is read; the one failed address a notice's words name (not a role address
    # such as postmaster@, not the copy of the returned message) comes before that copy's To;
    "carrier-raw-8bit-subject-ja.eml": ("soft", ["riko.matsuda@forward.carrier.example.ne.jp"], None),
    "notes-returned-message-role-address.eml": ("hard", ["shun.kondo@branch.example.co.jp"], None),
    # the Message-ID and sender of a copied message are no failed recipients;
    "zoho-copied-headers-message-id.eml": ("hard", ["ami.sakai@example.co.jp"], "5.1.1"),
    # a detector that matched a format it does not know (SES's JSON mailed by SNS) gives addresses, not text;
    "ses-notification-by-email-json.eml": ("hard", ["kaito.hayashi@example.jp"], "5.1.1"),
    # Microsoft's complaint reports (JMRP) are no ARF.
    "microsoft-jmrp-complaint.eml": ("complaint", ["tomoko.ito@outlook.example"], None),
    # an ARF report is one by its message/feedback-report part, whatever the wrapper says.
    "arf-abuse-in-multipart-mixed.eml": ("complaint", ["kanon.ueda@isp.example.ne.jp"], None),
    # Only evidence about the address suppresses (issue 21): words naming another cause (a rate, a block
    # list) outweigh a 5.1.x status, a loop (5.4.6) and a DNS answer without data are no dead address…
    "cox-rate-limit-status-5-1-0.eml": ("soft", ["mio.tanaka@cox.example.net"], "5.1.0"),
    "postfix-blocklist-status-5-1-0.eml": ("soft", ["ren.suzuki@strict.example.com"], "5.1.0"),
    "postfix-hop-count-exceeded.eml": ("soft", ["aoi.yamamoto@loop.example.org"], "5.4.6"),
    "postfix-name-service-error-no-data.eml": ("soft", ["yuna.kobayashi@nodata.example.jp"], None),
    # …a status that is no address status is hard only by its words ("Addressee unknown"), and a quoted
    # Message-Id's dotted numbers ("<5.0.2.1.0.2025…>") are no status;
    "smtp32-addressee-unknown-5-3-0.eml": ("hard", ["sho.inoue@isp.example.net"], "5.3.0"),
    # …and words that say the user does not exist outweigh a 5.7.x status.
    "postfix-nonexistent-user-5-7-1.eml": ("hard", ["itsuki.kimura@inbox.example.lv"], "5.7.1"),
    # a message whose boundary was lost is read as text; OpenSMTPD's copy starts "Below is a copy of the
    # original message:";
    "carrier-boundary-lost-no-such-user.eml": ("hard", ["5550123@vtext.example.com"], "5.0.0"),
    "opensmtpd-domain-does-not-exist.eml": ("hard", ["takeshi.mori@gone.example.jp"], None),
    # text in ISO-2022-JP or Shift_JIS is decoded (by its escapes, or by trying the legacy charsets) before it
    # is judged, even when no charset is declared.
    "notes-iso-2022-jp-undeclared.eml": ("hard", ["daichi.ishii@notes.example.co.jp"], "5.0.0"),
    "carrier-shift-jis-mailbox-full.eml": ("soft", ["hinata.sato@carrier.example.ne.jp"], "5.0.0"),
    "dsn-diagnostic-raw-shift-jis.eml": ("hard", ["yuzuki.honda@carrier.example.ne.jp"], "5.0.0"),
    # OpenSMTPD's older "Action: error" is a failure; its only words are the line naming the address.
    "opensmtpd-dsn-action-error.eml": ("hard", ["haruto.kato@closed-isp.example.jp"], "5.0.0"),
    # No DSN part, but DSN fields in the bounce's own header; the full mailbox stays soft.
    "hosting-dsn-fields-in-header-full-mailbox.eml": ("soft", ["lena.keller@hosting.example.ch"], None),
    # Dovecot refuses at delivery with a disposition notification ("deleted"): a failure about that reader;
    # a read receipt ("displayed") is none.
    "dovecot-quota-rejection-mdn.eml": ("soft", ["mei.fujita@mail.example.net"], None),
    "read-receipt-mdn.eml": ("not-a-bounce", [], None),
}


def parse(config: Path | None, *files: Path, env: dict[str, str] | None = None):
    args = (["--config", str(config)] if config else []) + ["bounces", "parse", "--format", "json", *map(str, files)]
    result = CliRunner().invoke(main, args, env=env or {}, catch_exceptions=False)
    return result, [json.loads(line) for line in result.stdout.splitlines()]


def test_every_sample_is_classified_with_its_recipient_status_and_words(tmp_path):
    files = sorted(FIXTURES.glob("*.eml"))
    assert {f.name for f in files} == set(EXPECTED)
    result, found = parse(None, *files)
    assert result.exit_code == 0, result.output
    assert [r["file"] for r in found] == [str(f) for f in files]    # one object per file, in order
    for record in found:
        kind, recipients, status = EXPECTED[Path(record["file"]).name]
        assert (record["kind"], record["recipients"], record["status"]) == (kind, recipients, status), record
        assert set(record) == {"file", "kind", "recipients", "status", "diagnostic", "delivery", "verified", "why"}
        assert record["delivery"] is None
    by_name = {Path(r["file"]).name: r for r in found}
    assert "User unknown" in by_name["postfix-user-unknown.eml"]["diagnostic"]
    assert "does not exist" in by_name["gmail-no-such-user-ja.eml"]["diagnostic"]
    assert by_name["exchange-out-of-office.eml"]["diagnostic"] is None
    notes = by_name["notes-iso-2022-jp-undeclared.eml"]["diagnostic"]
    assert "宛先のユーザ daichi.ishii@notes.example.co.jp は存在しません" in notes
    assert "552 メールボックスの容量を超えています" in by_name["carrier-shift-jis-mailbox-full.eml"]["diagnostic"]
    assert by_name["dsn-diagnostic-raw-shift-jis.eml"]["diagnostic"] == "550 このメールアドレスは存在しません"
    assert by_name["opensmtpd-dsn-action-error.eml"]["diagnostic"] == \
        "haruto.kato@closed-isp.example.jp: Domain does not exist"


def test_parse_writes_nothing_and_needs_no_store(tmp_path):
    config = write_config(tmp_path, 25)
    result, found = parse(config, FIXTURES / "postfix-user-unknown.eml")
    assert result.exit_code == 0 and found[0]["kind"] == "hard"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feedpub.toml"]


def test_a_verp_tag_names_the_delivery_and_a_forged_one_names_none(tmp_path):
    config = write_config(tmp_path, 25, return_path="bounces@blog.example.com")
    good, forged = tmp_path / "good.eml", tmp_path / "forged.eml"
    text = (FIXTURES / "postfix-user-unknown.eml").read_bytes()
    good.write_bytes(text.replace(b"bounces@blog.example.com", verp.return_path(
        "BOUNCES@blog.example.com", SECRET, 4711).encode()))
    forged.write_bytes(text.replace(b"bounces@blog.example.com", b"bounces+4711-aaaaaaaa@blog.example.com"))
    result, found = parse(config, good, forged, env={"FEEDPUB_SECRET": SECRET})
    assert result.exit_code == 0, result.output
    assert [r["delivery"] for r in found] == [4711, None]
    assert [r["kind"] for r in found] == ["hard", "hard"]


def test_a_big_attachment_a_missing_file_and_an_empty_file_are_no_crash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)     # no feedpub.toml: English
    def returned(megabytes: int) -> bytes:
        message = EmailMessage()
        message["From"] = "MAILER-DAEMON@mx.example.org"
        message["To"] = "bounces@blog.example.com"
        message["Subject"] = "Undelivered Mail Returned to Sender"
        message.set_content("<olga@example.org>: host mx.example.org said: 552 5.2.2 Mailbox full\n")
        message.add_attachment(b"\x00" * (megabytes * 1024 * 1024), maintype="application",
                               subtype="octet-stream", filename="huge.bin")
        return message.as_bytes()

    big, huge, empty = tmp_path / "big.eml", tmp_path / "huge.eml", tmp_path / "empty.eml"
    big.write_bytes(returned(5))          # read from its first megabyte
    huge.write_bytes(returned(20))        # no returned mail is that big
    empty.write_bytes(b"")
    result, found = parse(None, big, huge, tmp_path / "missing.eml", empty)
    assert result.exit_code == 1                            # two files were skipped; the others were read
    assert result.stderr.splitlines() == [
        f"{huge}: unreadable: larger than 10 MiB (expected returned mail, which is never that big)",
        f"{tmp_path / 'missing.eml'}: cannot read (No such file or directory) (expected a message file)"]
    assert [(r["kind"], r["recipients"], r["status"]) for r in found] == [
        ("soft", ["olga@example.org"], "5.2.2"), ("unreadable", [], None), ("not-a-bounce", [], None)]


def test_a_message_on_stdin_and_hostile_ones_are_read_within_bounds(tmp_path):
    deep = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(3000))
    rfc822 = b"Content-Type: message/rfc822\n\n" * 3000          # each level a message/rfc822 part
    old_mac = deep.replace(b"\n", b"\r")                          # "\r" alone ends a line too
    report = b"Content-Type: multipart/report; report-type=delivery-status; boundary=r\n\n--r\n" \
             b"Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx\n\n" + \
             b"Final-Recipient: rfc822; a@example.org\nAction: failed\nStatus: 5.1.1\n\n" * 5000 + b"--r--\n"
    files = []
    for name, body in (("deep", deep), ("rfc822", rfc822), ("old-mac", old_mac), ("report", report)):
        files.append(tmp_path / f"{name}.eml")
        files[-1].write_bytes(b"From: MAILER-DAEMON@mx.example.org\nSubject: Undelivered\n" + body)
    stdin = (FIXTURES / "postfix-user-unknown.eml").read_bytes()
    result = CliRunner().invoke(main, ["bounces", "parse", *map(str, files), "-"], input=stdin,
                                catch_exceptions=False)
    assert result.exit_code == 1
    found = [json.loads(line) for line in result.stdout.splitlines()]
    whys = ["unreadable: 3000 multipart or message/* parts (at most 50 are read)"] * 3 + \
        ["unreadable: 5001 header blocks in its message/delivery-status part (at most 200 are read)"]
    assert [(r["kind"], r["why"]) for r in found[:4]] == [("unreadable", why) for why in whys]
    assert result.stderr.splitlines() == [f"{file}: {why}" for file, why in zip(files, whys, strict=True)]
    assert (found[4]["file"], found[4]["kind"], found[4]["recipients"]) == ("-", "hard", ["taro.yamada@example.jp"])


@pytest.mark.parametrize("name", ["vacation-rfc3834-ja.eml", "exchange-out-of-office.eml", "challenge-response.eml"])
def test_an_automatic_reply_is_never_a_bounce_even_from_a_null_sender(tmp_path, name):
    text = (FIXTURES / name).read_bytes()
    null_sender = tmp_path / name
    null_sender.write_bytes(b"Return-Path: <>\r\n" + text)
    _, (record,) = parse(None, null_sender)
    assert record["kind"] == "auto-reply"


def test_the_table_shows_the_end_of_each_long_file_name_that_tells_them_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)     # no feedpub.toml: English
    maildir = tmp_path / "var" / "mail" / "bounces.blog.example.com" / "Maildir" / "new"
    maildir.mkdir(parents=True)
    names = {maildir / "1733581234.M17P4242.mx1,S=2048:2,": ("postfix-user-unknown.eml", "hard"),
             maildir / "1733581299.M91P4243.mx1,S=4096:2,": ("exim-quota-exceeded.eml", "soft"),
             maildir / "1733581300.M3P44.返送メール,S=9:2,": ("vacation-rfc3834-ja.eml", "auto-reply"),
             tmp_path.parent / "返送.eml": ("gmail-no-such-user-ja.eml", "hard")}
    for target, (fixture, _) in names.items():
        target.write_bytes((FIXTURES / fixture).read_bytes())
    result = CliRunner().invoke(main, ["bounces", "parse", "--format", "table", *map(str, names)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    heading, *rows = result.stdout.splitlines()
    assert heading.split() == ["FILE", "KIND", "RECIPIENTS", "STATUS", "DIAGNOSTIC", "OR", "WHY"]
    cells = [row.split("  ")[0] for row in rows]
    kinds = [row.split()[1] for row in rows]
    assert kinds == [kind for _, kind in names.values()]
    for cell, path in zip(cells, list(names)[:3], strict=False):
        # cut at the start, so the distinguishing file name shows whole; 40 columns ("メ" takes two)
        assert cell.startswith("…") and str(path).endswith(cell[1:]) and cell.endswith(path.name), cell
        assert 38 <= len(cell) + sum(ch in "返送メール" for ch in cell) <= 40
    assert cells[3].endswith("/返送.eml")
