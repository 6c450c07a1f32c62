"""`feedpub subscribers …` through the real CLI against a real SQLite store and a site with posts."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from feedpub.cli import main
from feedpub.store import open_store


@pytest.fixture
def run(site, monkeypatch):
    site.configure('[store]\nurl = "sqlite:///data/feedpub.db"\n')
    categories = "[AI, LLM, Python, AI導入戦略, 生成AI, engineering]"
    site.post("2025-12-01-tools.md", f"---\ntitle: Tools\ncategories: {categories}\n---\nbody\n")
    monkeypatch.chdir(site.root)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, ["subscribers", *args], catch_exceptions=False)

    return invoke


def import_csv(run, text: str):
    """`subscribers import list.csv` of a file holding `text`."""
    Path("list.csv").write_text(text, encoding="utf-8")
    return run("import", "list.csv")


def listing(run) -> list[dict]:
    result = run("list", "--format", "json")
    assert result.exit_code == 0
    return json.loads(result.stdout)


def test_add_list_remove(run, tmp_path):
    result = run("add", "Taro@Example.JP", "--name", "山田 太郎", "--categories", "AI導入戦略, Python")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data/feedpub.db").is_file()
    assert run("add", "hanako@example.jp", "--pending").exit_code == 0
    rows = listing(run)
    assert [(r["email"], r["name"], r["status"], r["topics"]) for r in rows] == [
        ("Taro@example.jp", "山田 太郎", "active", ["categories/AI導入戦略", "categories/Python"]),
        ("hanako@example.jp", "", "pending", []),
    ]
    table = run("list").stdout
    assert "山田 太郎" in table and "pending" in table

    assert run("remove", "TARO@example.jp").exit_code == 0
    (taro,) = [r for r in listing(run) if r["email"].lower() == "taro@example.jp"]
    assert taro["status"] == "unsubscribed" and taro["suppressed"]
    assert "taro" not in run("export").stdout.lower()


def test_add_twice_updates_instead_of_duplicating(run):
    run("add", "a@example.com", "--name", "A")
    run("add", "A@EXAMPLE.com", "--categories", "AI")
    assert [(r["name"], r["topics"]) for r in listing(run)] == [("A", ["categories/AI"])]


def test_add_bad_address_exits_2(run):
    result = run("add", "not-an-address")
    assert result.exit_code == 2
    assert "not a valid e-mail address" in result.stderr


def test_import_reports_bad_rows_by_line_and_keeps_the_good_ones(run):
    run("add", "old@example.com", "--name", "Old")
    run("remove", "gone@example.com")
    result = import_csv(run, "\ufeffemail,name,categories\n"
                             "hanako@example.jp,花子,AI;LLM\n"
                             "bad@@example.jp,壊れた,\n"
                             "OLD@example.com,Old Renamed,AI\n"
                             ",no address,\n"
                             "gone@example.com,Gone,\n")
    assert result.exit_code == 1
    assert "list.csv:3: 'bad@@example.jp' is not a valid e-mail address" in result.stderr
    assert "list.csv:5: empty e-mail address" in result.stderr
    assert "gone@example.com: suppressed" in result.stderr
    rows = {r["email"].lower(): r for r in listing(run)}
    assert set(rows) == {"old@example.com", "hanako@example.jp", "gone@example.com"}
    assert rows["hanako@example.jp"]["topics"] == ["categories/AI", "categories/LLM"]
    assert rows["old@example.com"]["name"] == "Old Renamed"
    # an import never re-subscribes a removed address
    assert "gone@example.com" not in run("export").stdout


def test_import_without_email_column_exits_2(run, tmp_path):
    (tmp_path / "x.csv").write_text("name\nTaro\n", encoding="utf-8")
    result = run("import", "x.csv")
    assert result.exit_code == 2 and "x.csv:1: no 'email' column" in result.stderr


def test_export_round_trips_through_import(run, tmp_path):
    run("add", "a@example.com", "--name", "Ａ, \"quoted\"", "--categories", "AI,生成AI")
    run("add", "b@example.com")
    exported = run("export").stdout
    assert list(csv.DictReader(io.StringIO(exported))) == [
        {"email": "a@example.com", "name": "Ａ, \"quoted\"", "topics": "categories/AI;categories/生成AI",
         "cadence": "weekly", "timezone": ""},
        {"email": "b@example.com", "name": "", "topics": "", "cadence": "weekly", "timezone": ""},
    ]
    (tmp_path / "again.csv").write_text(exported, encoding="utf-8")
    assert run("import", "again.csv").exit_code == 0
    assert len(listing(run)) == 2


def test_list_csv(run):
    run("add", "a@example.com", "--name", "A")
    rows = list(csv.DictReader(io.StringIO(run("list", "--format", "csv").stdout)))
    assert rows[0]["email"] == "a@example.com" and rows[0]["status"] == "active"


def test_unreadable_store_exits_2_naming_the_file(run, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/feedpub.db").write_bytes(b"garbage" * 500)
    result = run("list")
    assert result.exit_code == 2
    assert f"{tmp_path / 'data/feedpub.db'}: cannot use the store" in result.stderr


def test_import_skips_a_later_duplicate_address_and_keeps_the_first(run):
    result = import_csv(run, "email,name,categories\n"
                             "bob@example.com,Bob,engineering\n"
                             "carol@example.com,Carol,\n"
                             " BOB@EXAMPLE.COM ,Bob dup,\n")
    assert result.exit_code == 1
    assert "list.csv:4: duplicate of line 2; skipped (expected each address once)" in result.stderr
    assert "imported 2 subscribers (2 new, 0 updated), 1 bad row" in result.stderr
    assert [(r["email"], r["name"], r["topics"]) for r in listing(run)] == [
        ("bob@example.com", "Bob", ["categories/engineering"]), ("carol@example.com", "Carol", [])]


def test_unknown_categories_are_warnings_naming_the_line(run, site):
    site.post("2999-01-01-later.md", "---\ntitle: Later\ncategories: [someday]\n---\nbody\n")
    result = import_csv(run, "email,name,categories\n"
                             "bob@example.com,Bob,engineering\n"
                             "carol@example.com,Carol,enginering;someday\n")
    assert result.exit_code == 0
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [
        "list.csv:3: warning: unknown category 'enginering' kept; no published post has it "
        "(expected a category of the site's posts, such as 'engineering')",
        "list.csv:3: warning: unknown category 'someday' kept; no published post has it "
        "(expected a category of the site's posts)"]
    assert listing(run)[1]["topics"] == ["categories/enginering", "categories/someday"]

    added = run("add", "dave@example.com", "--categories", "Python, pyhton")
    assert added.exit_code == 0
    assert added.stderr.splitlines()[0] == ("--categories: warning: unknown category 'pyhton' kept; no published "
                                            "post has it (expected a category of the site's posts, such as 'Python')")
    assert "unknown category 'Python'" not in added.stderr


def test_list_table_clips_long_cells_and_csv_json_keep_them_whole(run):
    run("add", "long@example.com", "--name", "N" * 200)
    run("add", "wide@example.com", "--name", "山" * 30)
    lines = run("list").stdout.splitlines()
    assert max(len(line) for line in lines) < 120
    assert "N" * 39 + "…  active" in lines[1] and "N" * 40 not in lines[1]
    assert "山" * 19 + "…" in lines[2] and "山" * 20 not in lines[2]
    assert [r["name"] for r in listing(run)] == ["N" * 200, "山" * 30]
    assert "N" * 200 in run("list", "--format", "csv").stdout


def test_the_local_part_holds_at_most_64_characters(run):
    result = run("add", "a" * 65 + "@example.com")
    assert result.exit_code == 2 and "more than the 64 that RFC 5321 allows" in result.stderr
    imported = import_csv(run, f"email\n{'b' * 65}@example.com\n{'c' * 64}@example.com\n")
    assert imported.exit_code == 1 and "list.csv:2: " in imported.stderr
    assert [r["email"] for r in listing(run)] == [f"{'c' * 64}@example.com"]


def test_export_all_and_import_move_every_address_as_it_was(run, site):
    run("add", "taro@example.jp", "--name", "山田 太郎", "--categories", "AI導入戦略,Python")
    run("add", "hanako@example.jp", "--pending")
    run("add", "--name", '=HYPERLINK("https://evil.example/","click")', "--", "-dev@example.com")
    run("add", "left@example.org")
    run("remove", "left@example.org")
    run("remove", "never-a-reader@example.net")
    store = open_store("sqlite:///data/feedpub.db")
    run("add", "bounced@example.net")
    store.suppress("bounced@example.net", "@hard bounce: 550 5.1.1 no such user")
    store.engine.dispose()

    exported = run("export", "--all")
    assert exported.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [(r["email"], r["status"], r["suppression_reason"]) for r in rows] == [
        ("taro@example.jp", "active", ""), ("hanako@example.jp", "pending", ""), ("'-dev@example.com", "active", ""),
        ("left@example.org", "unsubscribed", "removed by operator"), ("bounced@example.net", "active",
                                                                      "'@hard bounce: 550 5.1.1 no such user"),
        ("never-a-reader@example.net", "", "removed by operator")]
    assert rows[2]["name"] == "'=HYPERLINK(\"https://evil.example/\",\"click\")"    # text in a spreadsheet
    assert rows[0]["topics"] == "categories/AI導入戦略;categories/Python" and rows[0]["cadence"] == "weekly"
    assert rows[0]["created_at"].endswith("+00:00")

    Path("all.csv").write_text(exported.stdout, encoding="utf-8")
    site.configure('[store]\nurl = "sqlite:///moved/feedpub.db"\n')
    imported = run("import", "all.csv")
    assert imported.exit_code == 0, imported.output
    assert "restored 5 subscribers and 3 suppressions from 6 rows" in imported.stderr
    assert run("export", "--all").stdout == exported.stdout          # every column, as it was
    assert "-dev@example.com" not in run("export").stdout.replace("'-dev", "")
    again = run("import", "all.csv")                                 # a second time: nothing changes
    assert again.exit_code == 0 and "restored 0 subscribers and 0 suppressions" in again.stderr


def test_an_export_all_row_that_is_wrong_is_named_by_line(run):
    result = import_csv(run, "email,name,categories,status,created_at,confirmed_at,unsubscribed_at,"
                             "suppression_reason,suppression_created_at\n"
                             "a@example.com,A,,active,2025-12-01T00:00:00+00:00,,,,\n"
                             "b@example.com,B,,gone,2025-12-01T00:00:00+00:00,,,,\n"
                             "c@example.com,C,,active,2025-12-01 09:00,,,,\n")
    assert result.exit_code == 1
    assert "list.csv:3: status 'gone' is not one of pending, active, unsubscribed" in result.stderr
    assert "list.csv:4: created_at: '2025-12-01 09:00' has no UTC offset" in result.stderr
    assert [r["email"] for r in listing(run)] == ["a@example.com"]


def test_no_csv_cell_is_a_formula_and_import_reads_them_back(run):
    names = ["=1+2", "+SUM(A1)", "-3", "@cmd", "\tindented", "\rreturn", "'quoted", "plain"]
    for i, name in enumerate(names):
        run("add", f"r{i}@example.com", "--name", name)
    listed = list(csv.reader(io.StringIO(run("list", "--format", "csv").stdout)))
    exported = run("export").stdout
    cells = [row[1] for row in listed[1:]]
    assert cells == ["'=1+2", "'+SUM(A1)", "'-3", "'@cmd", "'\tindented", "'\rreturn", "'quoted", "plain"]
    assert [row["name"] for row in csv.DictReader(io.StringIO(exported))] == cells
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in listed for cell in row)
    Path("again.csv").write_text(exported.replace("r0@", "s0@"), encoding="utf-8")
    assert run("import", "again.csv").exit_code == 0
    assert [r["name"] for r in listing(run) if r["email"] == "s0@example.com"] == ["=1+2"]


def test_categories_match_the_site_case_insensitively(run):
    added = run("add", "taro@example.jp", "--categories", "python,ai導入戦略")
    assert added.exit_code == 0 and "unknown category" not in added.stderr
    imported = import_csv(run, "email,categories\nhanako@example.jp,ENGINEERING;Someday\n")
    assert "unknown category 'Someday'" in imported.stderr and "ENGINEERING" not in imported.stderr
    assert [r["topics"] for r in listing(run)] == [["categories/Python", "categories/AI導入戦略"],
                                                   ["categories/engineering", "categories/Someday"]]
