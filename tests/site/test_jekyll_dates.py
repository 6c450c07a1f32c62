"""Front-matter dates read as Jekyll reads them: each form through Ruby's own `Time.parse` (what Jekyll's
Utils.parse_date calls, in the site's zone) and through feedpub's `parse_date` gives the same instant and
offset, or both refuse it. Skipped without ruby (it comes with Debian's jekyll), except under CI=true."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from feedpub.dates import parse_date, read_date, ruby_text

FORMS = [
    "11-9-2017", "11/9/2017", "2017/9/11", "9/11/2017", "11.9.2017", "2017.9.11", "17-9-11", "11-09-17", "99-1-1",
    "68-1-1", "69-1-1", "Sep 11 2017", "11 Sep 2017", "11th September 2017", "September 11, 2017", "Sep 2017",
    "11-Sep-2017", "Monday, September 11, 2017", "Mon, 11 Sep 2017 10:00:00 +0000", "20170911", "2017-9-1",
    "2017-09-11", "2017-09-11 10:00", "2017-09-11 10:00:00", "2017-09-11T10:00:00+09:00", "2017-09-11 10:00:00 +0900",
    "2017-09-11 10:00:00 -08:00", "2017-09-11 10:00:00 +09", "2017-09-11 10:00:00 +0930", "2017-09-11T10:00:00Z",
    "2017-09-11T10:00:00.123456Z", "2017-09-11 10:00:00.5", "2017-09-11 10:00:00 UTC", "2017-09-11 10:00:00 GMT",
    "2017-09-11 10:00:00 EST", "2017-09-11 10:00:00 PST", "2017-09-11 10:00:00 JST", "2017-09-11 10:00:00 UTC+9",
    "2017-09-11 10:00:00 +0900 (JST)", "2017-09-11 10:00 PM", "2017-09-11 12:30 AM", "2017-09-11 10pm",
    "September 12, 2017 10:00 PM", "2023-01-29 18:30:22 2023 -0800", "2017-02-30", "31-2-2017",
    "2017-02-29 10:00:00 +0900", "2017-09-11 24:00:00", "2017-09-11 23:59:60",
    # refused by both
    "next tuesday-ish", "2017", "foo", "2017-13-01", "2017-09-32", "2017-09-11 25:00", "2017年9月11日", "",
]
RUBY = """require 'time'
STDIN.each_line do |line|
  begin
    puts Time.parse(line.chomp).strftime('%Y-%m-%dT%H:%M:%S.%6N%:z')
  rescue ArgumentError
    puts 'refused'
  end
end
"""


@pytest.fixture(scope="module")
def ruby_reads() -> dict[str, str]:
    if shutil.which("ruby") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("ruby is missing: .ci/run installs jekyll, which brings it")
        pytest.skip("ruby is not installed (apt-get install jekyll)")
    result = subprocess.run(["ruby", "-e", RUBY], input="\n".join(FORMS) + "\n", capture_output=True, text=True,
                            env={**os.environ, "TZ": "Asia/Tokyo"}, timeout=60, check=True)
    return dict(zip(FORMS, result.stdout.splitlines(), strict=True))


@pytest.mark.parametrize("text", FORMS)
def test_every_form_reads_as_ruby_reads_it(ruby_reads: dict[str, str], text: str) -> None:
    try:
        ours = parse_date(text, ZoneInfo("Asia/Tokyo")).isoformat(timespec="microseconds")
    except ValueError:
        ours = "refused"
    assert ours == ruby_reads[text]


@pytest.mark.parametrize(("text", "why"), [
    ("10:00", "'10:00' has no year (Jekyll would complete it from the day it builds)"),
    ("Sep 11", "'Sep 11' has no year"),
    ("0000-01-01", "'0000-01-01' is not a date (year 0 is out of range)"),
])
def test_what_ruby_reads_but_feedpub_cannot_publish_is_refused_with_the_reason(text: str, why: str) -> None:
    """Ruby dates these by the day the build runs, or in year 0, which no feed date can hold."""
    with pytest.raises(ValueError, match=why.replace("(", r"\(").replace(")", r"\)")):
        parse_date(text, ZoneInfo("UTC"))


def test_rolled_dates_are_flagged_and_other_yaml_types_read_as_ruby_writes_them() -> None:
    utc = ZoneInfo("UTC")
    assert read_date("2017-02-30", utc) == (datetime(2017, 3, 2, tzinfo=utc), True)
    assert read_date("2017-02-28", utc) == (datetime(2017, 2, 28, tzinfo=utc), False)
    assert read_date(20170916, utc)[0] == datetime(2017, 9, 16, tzinfo=utc)
    assert [ruby_text(v) for v in (False, True, None, 2017, 1.5, 1e20, 1.5e-7, float("inf"), "日本語")] == [
        "false", "true", "", "2017", "1.5", "1.0e+20", "1.5e-07", "Infinity", "日本語"]
