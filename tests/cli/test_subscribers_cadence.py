"""`feedpub subscribers add --cadence --timezone --topics`, and `list`, `export` and `import` carrying them, through
the real CLI against a real SQLite store and a site whose posts have categories, tags and authors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from feedpub.cli import main

SITE = """
[store]
url = "sqlite:///data/feedpub.db"
[feeds]
tags = true
authors = true
[digest]
cadences = ["post", "daily", "weekly"]
"""


@pytest.fixture
def run(site, monkeypatch):
    site.configure(SITE)
    site.post("2025-12-01-tools.md", "---\ntitle: Tools\ncategories: [AI導入戦略, news]\ntags: [Python]\n"
                                     "author: 花子\n---\nbody\n")
    monkeypatch.chdir(site.root)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, ["subscribers", *args], catch_exceptions=False)

    return invoke


def listing(run) -> dict[str, dict]:
    result = run("list", "--format", "json")
    assert result.exit_code == 0, result.output
    return {row["email"]: row for row in json.loads(result.stdout)}


def test_add_with_cadence_zone_and_topics(run) -> None:
    result = run("add", "reader@example.com", "--cadence", "post", "--timezone", "America/Los_Angeles",
                 "--topics", "tags/python, categories/AI導入戦略,authors/花子")
    assert result.exit_code == 0, result.output
    row = listing(run)["reader@example.com"]
    # Each topic as its feed's folder, whether given so or with the name the posts write.
    assert (row["topics"], row["cadence"], row["timezone"]) == (
        ["tags/python", "categories/ai導入戦略", "authors/花子"], "post", "America/Los_Angeles")
    # Changing one choice keeps the others.
    assert run("add", "reader@example.com", "--cadence", "daily").exit_code == 0
    row = listing(run)["reader@example.com"]
    assert (row["topics"], row["cadence"], row["timezone"]) == (
        ["tags/python", "categories/ai導入戦略", "authors/花子"], "daily", "America/Los_Angeles")


def test_a_new_subscriber_without_choices_gets_weekly_in_the_site_zone(site, run) -> None:
    assert run("add", "plain@example.com").exit_code == 0
    row = listing(run)["plain@example.com"]
    assert (row["topics"], row["cadence"], row["timezone"]) == ([], "weekly", "")
    site.configure(SITE.replace('["post", "daily", "weekly"]', '["daily", "monthly"]'))
    assert run("add", "daily@example.com").exit_code == 0
    assert listing(run)["daily@example.com"]["cadence"] == "daily"       # weekly is not offered: the first is


@pytest.mark.parametrize(("args", "said"), [
    (["--cadence", "monthly"], "--cadence monthly: not offered by this site (expected one of digest.cadences: "
                               "post, daily, weekly)"),
    (["--cadence", "hourly"], "Invalid value for '--cadence': 'hourly' is not one of 'post', 'daily', 'weekly', "
                              "'monthly'"),
    (["--timezone", "Mars/Olympus_Mons"], "--timezone 'Mars/Olympus_Mons': unknown time zone (expected an IANA "
                                          "name such as Asia/Tokyo or America/New_York)"),
    (["--timezone", "asia/tokyo"], "--timezone 'asia/tokyo': unknown time zone"),
    (["--topics", "tags/pyhton"], "--topics 'tags/pyhton': no feed of this site has this topic (expected GROUP/NAME "
                                  "of one of its category, tag or author feeds, such as 'tags/python'; groups with "
                                  "feeds: categories, tags, authors)"),
    (["--topics", "python"], "--topics 'python': no feed of this site has this topic"),
])
def test_a_bad_choice_is_exit_2_and_changes_nothing(run, args, said) -> None:
    result = run("add", "reader@example.com", *args)
    assert result.exit_code == 2
    assert said in " ".join(result.stderr.split())
    assert "reader@example.com" not in listing(run)


def test_list_export_and_import_carry_cadence_topics_and_zone(run) -> None:
    run("add", "a@example.com", "--name", "花子", "--cadence", "post", "--timezone", "Asia/Kolkata",
        "--topics", "tags/python")
    run("add", "b@example.com")
    table = run("list").stdout
    assert table.splitlines()[0].split() == ["EMAIL", "NAME", "STATUS", "TOPICS", "CADENCE", "TIMEZONE", "CREATED"]
    assert "tags/python  post     Asia/Kolkata" in table
    listed = list(csv.DictReader(io.StringIO(run("list", "--format", "csv").stdout)))
    assert [(r["email"], r["topics"], r["cadence"], r["timezone"]) for r in listed] == [
        ("a@example.com", "tags/python", "post", "Asia/Kolkata"), ("b@example.com", "", "weekly", "")]
    exported = run("export").stdout
    assert exported.splitlines() == ["email,name,topics,cadence,timezone",
                                     "a@example.com,花子,tags/python,post,Asia/Kolkata",
                                     "b@example.com,,,weekly,"]
    # The exported file changed and read back: each row's choices, the bad ones refused with their line.
    Path("list.csv").write_text(exported.replace("b@example.com,,,weekly,", "b@example.com,,categories/news,daily,"
                                                 "Europe/Paris")
                                + "c@example.com,,,monthly,\nd@example.com,,,weekly,Nowhere/City\n", encoding="utf-8")
    result = run("import", "list.csv")
    assert result.exit_code == 1
    assert "list.csv:4: cadence 'monthly' is not offered (digest.cadences: post, daily, weekly)" in result.stderr
    assert "list.csv:5: time zone 'Nowhere/City' is unknown" in result.stderr
    rows = listing(run)
    assert (rows["b@example.com"]["topics"], rows["b@example.com"]["cadence"], rows["b@example.com"]["timezone"]) == (
        ["categories/news"], "daily", "Europe/Paris")
    assert rows["a@example.com"]["cadence"] == "post" and set(rows) == {"a@example.com", "b@example.com"}
