"""`feedpub subscribers …` through the real CLI against a real SQLite store."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from feedpub.cli import main


@pytest.fixture
def run(tmp_path, monkeypatch):
    (tmp_path / "feedpub.toml").write_text('[store]\nurl = "sqlite:///data/feedpub.db"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, ["subscribers", *args], catch_exceptions=False)

    return invoke


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
    assert [(r["email"], r["name"], r["status"], r["categories"]) for r in rows] == [
        ("Taro@example.jp", "山田 太郎", "active", ["AI導入戦略", "Python"]),
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
    assert [(r["name"], r["categories"]) for r in listing(run)] == [("A", ["AI"])]


def test_add_bad_address_exits_2(run):
    result = run("add", "not-an-address")
    assert result.exit_code == 2
    assert "not a valid e-mail address" in result.stderr


def test_import_reports_bad_rows_by_line_and_keeps_the_good_ones(run, tmp_path):
    run("add", "old@example.com", "--name", "Old")
    run("remove", "gone@example.com")
    (tmp_path / "list.csv").write_text(
        "\ufeffemail,name,categories\n"
        "hanako@example.jp,花子,AI;LLM\n"
        "bad@@example.jp,壊れた,\n"
        "OLD@example.com,Old Renamed,AI\n"
        ",no address,\n"
        "gone@example.com,Gone,\n", encoding="utf-8")
    result = run("import", "list.csv")
    assert result.exit_code == 1
    assert "list.csv:3: 'bad@@example.jp' is not a valid e-mail address" in result.stderr
    assert "list.csv:5: empty e-mail address" in result.stderr
    assert "gone@example.com: suppressed" in result.stderr
    rows = {r["email"].lower(): r for r in listing(run)}
    assert set(rows) == {"old@example.com", "hanako@example.jp", "gone@example.com"}
    assert rows["hanako@example.jp"]["categories"] == ["AI", "LLM"]
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
        {"email": "a@example.com", "name": "Ａ, \"quoted\"", "categories": "AI;生成AI"},
        {"email": "b@example.com", "name": "", "categories": ""},
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
