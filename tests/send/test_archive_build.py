"""The digest archive as `feedpub build` and the daemon's build write it: from the store, every stored issue
listed, an emptied output folder restored byte for byte, nothing rewritten when nothing changed, a strings
change reaching every old page, and issues composed before the store kept the archive."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lxml.html
import sqlalchemy as sa

from feedpub.cli.daemon import Daemon
from feedpub.schema import MIGRATIONS, issues, schema_version
from feedpub.site.websub import Publisher
from feedpub.store import open_store
from tests.send.test_archive import WEEKS, send_three_weeks

OLD = 1_000_000_000  # an mtime long ago: a rewritten file would get a new one


def build(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "feedpub", "build"], cwd=root, capture_output=True, text=True,
                          timeout=120)


def archive_files(output: Path) -> dict[str, bytes]:
    folder = output / "digests"
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def mtimes(output: Path) -> dict[str, int]:
    return {str(p.relative_to(output)): p.stat().st_mtime_ns for p in (output / "digests").rglob("*") if p.is_file()}


def listed(output: Path) -> list[tuple[str, list[str]]]:
    """(issue link, post titles) of digests/index.html, newest first."""
    html = lxml.html.fromstring((output / "digests" / "index.html").read_bytes())
    return [(section.xpath(".//h2//a")[0].get("href"), [a.text_content() for a in section.xpath(".//li//a")])
            for section in html.xpath(".//section[@class='issue']")]


def test_a_build_after_deleting_the_output_folder_restores_the_archive_byte_for_byte(site, smtp_server,
                                                                                      monkeypatch) -> None:
    config = send_three_weeks(site, smtp_server, monkeypatch, "ja")
    composed = archive_files(config.output_dir)
    assert sorted(composed) == sorted([*(f"{week}/index.html" for week in WEEKS), "feed.xml", "index.html"])
    shutil.rmtree(config.output_dir)

    built = build(site.root)
    assert built.returncode == 0, built.stderr
    assert "ダイジェストのアーカイブ：3 号分、ファイル 5 件を書き込み、0 件は変更なし" in built.stdout
    assert archive_files(config.output_dir) == composed
    assert (config.output_dir / "feed.xml").is_file()


def test_a_build_that_changes_nothing_rewrites_nothing(site, smtp_server, monkeypatch) -> None:
    config = send_three_weeks(site, smtp_server, monkeypatch, "en-GB")
    for path in (config.output_dir / "digests").rglob("*"):
        if path.is_file():
            os.utime(path, ns=(OLD, OLD))
    first = build(site.root)     # no record of the files yet: all rendered, none of them different
    assert first.returncode == 0, first.stderr
    assert "digest archive: 3 issues, 0 files written, 5 unchanged" in first.stdout
    assert set(mtimes(config.output_dir).values()) == {OLD}

    again = build(site.root)
    assert "digest archive: 3 issues, 0 files written, 5 unchanged" in again.stdout
    assert set(mtimes(config.output_dir).values()) == {OLD}


def test_a_changed_strings_file_reaches_every_archived_page(site, smtp_server, monkeypatch) -> None:
    config = send_three_weeks(site, smtp_server, monkeypatch, "ja")
    (site.root / "overrides").mkdir()
    site.toml.write_text(site.toml.read_text(encoding="utf-8").replace(
        'schedule = "mon 09:00"', 'schedule = "mon 09:00"\ntemplates_dir = "overrides"'), encoding="utf-8")
    assert "5 件は変更なし" in build(site.root).stdout      # an empty override folder changes no byte
    before = mtimes(config.output_dir)

    (site.root / "overrides" / "strings.toml").write_text('[ja]\nall_issues = "過去の号"\n', encoding="utf-8")
    built = build(site.root)
    # the pages, not the list
    assert "ダイジェストのアーカイブ：3 号分、ファイル 3 件を書き込み、2 件は変更なし" in built.stdout
    for week in WEEKS:
        page = lxml.html.fromstring((config.output_dir / "digests" / week / "index.html").read_bytes())
        assert page.xpath(".//a[@href='../']")[0].text_content() == "過去の号"
    after = mtimes(config.output_dir)
    assert [after[path] == before[path] for path in ("digests/index.html", "digests/feed.xml")] == [True, True]


def test_the_daemons_build_writes_the_archive_and_lists_an_issue_another_process_stored(site, smtp_server,
                                                                                       monkeypatch) -> None:
    config = send_three_weeks(site, smtp_server, monkeypatch, "ja")
    store = open_store(config.store_url)
    newest = store.archived_issues()[-1]
    slot = newest.slot + timedelta(weeks=1)
    # As `digest send` on another machine sharing the store would leave it: stored, nothing written here.
    store.create_issue(period="2025-12-22-0900", slot=slot, starts=newest.slot, ends=slot, variants=[],
                       recipients={}, archived=newest.entries)
    shutil.rmtree(config.output_dir / "digests")

    Daemon(config, store, None, Publisher()).build()
    assert [link for link, _ in listed(config.output_dir)] == ["2025-12-22-0900/", *(f"{w}/" for w in reversed(WEEKS))]
    page = lxml.html.fromstring((config.output_dir / "digests" / WEEKS[-1] / "index.html").read_bytes())
    assert page.xpath(".//a[@rel='next']")[0].get("href") == "../2025-12-22-0900/"
    store.engine.dispose()


def test_issues_composed_before_the_store_kept_the_archive_are_listed_from_their_posts(site) -> None:
    site.configure('[digest]\nschedule = "mon 09:00"\n[web]\npublic_url = "https://news.example.com"\n',
                   language="en", title="Weekly AI")
    site.post("2025-12-03-rust.md", '---\ntitle: "Rust in production"\ndate: 2025-12-03 10:00:00 +09:00\n---\n\n'
                                    "Three teams moved their inference servers to Rust.\n")
    site.post("2025-12-05-tokens.md", '---\ntitle: "トークン単価の下がり方"\ndate: 2025-12-05 10:00:00 +09:00\n---\n\n'
                                      "一年で単価は十分の一になった。\n")
    config = site.config
    _store_of_an_old_feedpub(config.store_url, [
        ("2025-12-01-0900", datetime(2025, 11, 24, 0, tzinfo=UTC), datetime(2025, 12, 1, 0, tzinfo=UTC)),
        ("2025-12-08-0900", datetime(2025, 12, 1, 0, tzinfo=UTC), datetime(2025, 12, 8, 0, tzinfo=UTC))])

    built = build(site.root)
    assert built.returncode == 0, built.stderr
    assert "digest archive: 1 issue, 3 files written" in built.stdout
    # The first one's week has no post any more: said, and left out.
    assert "issue 2025-12-01-0900: composed before the archive existed and none of its posts" in built.stderr
    assert listed(config.output_dir) == [("2025-12-08-0900/", ["トークン単価の下がり方", "Rust in production"])]
    page = (config.output_dir / "digests" / "2025-12-08-0900" / "index.html").read_text(encoding="utf-8")
    assert "Three teams moved their inference servers to Rust." in page

    # Recorded once: a post edited later no longer changes what that issue showed.
    site.post("2025-12-03-rust.md", '---\ntitle: "Rust in production, revised"\ndate: 2025-12-03 10:00:00 +09:00\n'
                                    "---\n\nEdited.\n")
    again = build(site.root)
    assert "digest archive: 1 issue, 0 files written, 3 unchanged" in again.stdout
    assert "composed before the archive" not in again.stderr


def _store_of_an_old_feedpub(url: str, stored: list[tuple[str, datetime, datetime]]) -> None:
    """A store as feedpub left it before the archive table (schema version 2), holding `stored` issues
    (period, start, slot)."""
    Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        schema_version.create(conn)
        conn.execute(schema_version.insert().values(version=2))
        for step in MIGRATIONS[:2]:
            step(conn)
        conn.execute(issues.insert(), [{"period": period, "slot": slot, "starts": starts, "ends": slot,
                                        "created_at": slot} for period, starts, slot in stored])
    engine.dispose()


def test_an_unreadable_store_is_named_and_the_feeds_are_still_written(site) -> None:
    site.post("2025-12-05-tokens.md",
              '---\ntitle: "トークン単価の下がり方"\ndate: 2025-12-05 10:00:00 +09:00\n---\n\n本文\n')
    store_file = site.root / ".feedpub" / "feedpub.db"
    store_file.parent.mkdir()
    store_file.write_bytes(b"not a database, but 100 bytes of something else entirely" * 2)

    built = build(site.root)
    assert built.returncode == 1
    assert f"feedpub: {store_file}: cannot use the store (file is not a database)" in built.stderr
    assert "トークン単価の下がり方" in (site.root / "public" / "feed.xml").read_text(encoding="utf-8")
    assert not (site.root / "public" / "digests").exists()
