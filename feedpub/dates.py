"""Front-matter dates → aware datetimes, read as Jekyll reads them.

Jekyll hands every date (the front matter's, the file name's) to Ruby's `Time.parse` as text
(`Utils.parse_date(value.to_s)`), which reads far more than ISO 8601: `11-9-2017` and `11/9/2017` are
11 September, `9/11/2017` is 9 November (the last number is the year, so the first is the day),
`17-9-11` is 2017, `Sep 11, 2017 10:00 PM`, `11-Sep-2017`, `20170911`, `Sep 2017` (the 1st). A day past
the month's end rolls over as Ruby's `Time` rolls it (`2017-02-30` → 2 March), an offset is read only in the
forms `Time.zone_offset` knows (`+0900`, `+09:00`, `+09`, `UTC`, `EST`…; others, such as `JST`, leave the
time in the site's zone), and text without any time information is refused, as Jekyll refuses it. What
`Time.parse` would complete from the day of the build (no year: `Sep 11`, `10:00`) is refused too: the date
would change with the build. The forms and their order are those of Ruby's `Date._parse` (date_parse.c:
`parse_eu`, `parse_us`, `parse_iso`, `parse_vms`, `parse_sla`, `parse_dot`, `parse_ddd`, and `s3e`, which
decides which number is the year); tests/test_dates.py checks each against Ruby itself.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo

from feedpub.errors import message

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH = r"\b(" + "|".join(_MONTHS) + r")[^-\d\s']*"
# Date._parse's parse_time: h:m[:s[.f]] [am|pm] [zone], or h am|pm.
_TIME = re.compile(
    r"(?:(\d+)\s*:\s*(\d+)(?:\s*:\s*(\d+)(?:[,.](\d*))?)?|(\d+)(?=\s*[ap](?:m\b|\.m\.)))"
    r"(?:\s*([ap])(?:m\b|\.m\.))?"
    r"(?:\s*((?:gmt|utc?)?[-+]\d+(?:[,.:]\d+(?::\d+)?)?|(?<![a-z])[a-z]+\b))?", re.I)
_WEEKDAY = re.compile(r"\b(sun|mon|tue|wed|thu|fri|sat)[^-/\d\s]*", re.I)
_DATES = (  # (pattern, order of the groups as (year, month, day) names for s3e)
    (re.compile(r"'?\b(\d+)[^-\d\s']*\s*" + _MONTH + r"(?:\s*,?\s*('?-?\d+))?", re.I), ("d", "mon", "y")),
    (re.compile(_MONTH + r"\s*('?\d+)[^-\d\s']*(?:\s*,?\s*('?-?\d+))?", re.I), ("mon", "d", "y")),
    (re.compile(r"('?[-+]?\d+)-(\d+)-('?-?\d+)"), ("y", "m", "d")),
    (re.compile(r"('?-?\d+)-" + _MONTH.replace(r"[^-\d\s']*", r"[^-/.]*") + r"-('?-?\d+)", re.I), ("d", "mon", "y")),
    (re.compile(r"('?-?\d+)/\s*('?\d+)(?:\D\s*('?-?\d+))?"), ("y", "m", "d")),
    (re.compile(r"('?-?\d+)\.\s*('?\d+)\.\s*('?-?\d+)"), ("y", "m", "d")),
    (re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)"), ("y4", "m", "d")),
)
# Time.zone_offset's names (time.rb ZoneOffset), in hours.
_ZONES = {"UTC": 0, "Z": 0, "UT": 0, "GMT": 0, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6,
          "PST": -8, "PDT": -7, **{c: i + 1 for i, c in enumerate("ABCDEFGHIKLM")},
          **{c: -(i + 1) for i, c in enumerate("NOPQRSTUVWXY")}}
_NUMERIC_ZONE = re.compile(r"([+-])(\d\d)(:?)(\d\d)(?:\3(\d\d))?|([+-]\d\d)")


def parse_date(value: object, tz: tzinfo) -> datetime:
    """An aware datetime from a front-matter value (any YAML scalar, as Jekyll reads its text); ValueError
    saying why otherwise. Without an offset the time is in `tz`."""
    return read_date(value, tz)[0]


def read_date(value: object, tz: tzinfo) -> tuple[datetime, bool]:
    """`parse_date`, and whether a part past its end (30 February, 24:00) rolled into the next day or month."""
    text = ruby_text(value).strip()
    stamp, rolled = _parse(text, tz)
    # Within a day of datetime's range, converting to another time zone (UTC, the site's) overflows.
    if not datetime.min.replace(tzinfo=UTC) + timedelta(days=1) < stamp < datetime.max.replace(tzinfo=UTC) - timedelta(
            days=1):
        raise ValueError(message("date_out_of_range", text=repr(text)))
    return stamp, rolled


def ruby_text(value: object) -> str:
    """The text Ruby's `to_s` makes of a YAML scalar, as Jekyll shows a title, tag or category of another type:
    `false`, `2017`, `1.5`, `1.0e+20`, "" for null."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text
    return str(value)


def _parse(text: str, tz: tzinfo) -> tuple[datetime, bool]:
    rest = _WEEKDAY.sub(" ", text)
    hour = minute = second = micro = 0
    offset: tzinfo = tz
    found_time = _TIME.search(rest)
    if found_time:
        h, mi, s, fraction, bare_hour, meridian, zone = found_time.groups()
        hour, minute, second = int(h or bare_hour), int(mi or 0), int(s or 0)
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        if meridian:
            hour = hour % 12 + (12 if meridian.lower() == "p" else 0)
        offset = _zone(zone) or tz if zone else tz
        rest = rest[: found_time.start()] + " " + rest[found_time.end():]
    year, month, day = _date(rest)
    if year is None:
        if month is None and day is None and not found_time:
            raise ValueError(message("date_no_time_information", text=repr(text)))
        raise ValueError(message("date_no_year", text=repr(text)))
    month, day = month or 1, day or 1   # Time.parse: a missing month or day is the first
    if not 1 <= month <= 12:
        raise ValueError(message("date_bad_month", text=repr(text), month=month))
    if not 1 <= day <= 31:
        raise ValueError(message("date_bad_day", text=repr(text), day=day))
    if not (0 <= hour <= 23 or (hour == 24 and minute == second == 0)) or minute > 59 or second > 60:
        raise ValueError(message("date_bad_time", text=repr(text), time=f"{hour}:{minute:02d}:{second:02d}"))
    try:
        start = datetime(year, month, 1, tzinfo=offset)
    except ValueError as exc:
        raise ValueError(message("date_not_a_date", text=repr(text), reason=str(exc))) from None
    # Ruby's Time rolls a day past the month's end (and hour 24, second 60) into the next.
    stamp = start + timedelta(days=day - 1, hours=hour, minutes=minute, seconds=second, microseconds=micro)
    return stamp, (stamp.month, stamp.day, stamp.hour) != (month, day, hour % 24) or second == 60


def _date(text: str) -> tuple[int | None, int | None, int | None]:
    """(year, month, day) of the first date form `Date._parse` finds in `text`; None for a part it lacks."""
    for pattern, names in _DATES:
        found = pattern.search(text)
        if not found:
            continue
        parts = dict(zip(names, found.groups(), strict=True))
        if "y4" in parts:
            return int(parts["y4"]), int(parts["m"]), int(parts["d"])
        month_name = parts.get("mon")
        month = str(_MONTHS.index(month_name.lower()[:3]) + 1) if month_name else parts.get("m")
        return _s3e(parts.get("y"), month, parts.get("d"), named_month=month_name is not None)
    return None, None, None


def _s3e(y: str | None, m: str | None, d: str | None, *, named_month: bool) -> tuple[int | None, int | None,
                                                                                      int | None]:
    """date_parse.c's s3e: which of three numbers is the year, the month and the day."""
    if y is not None and m is not None and d is None:
        y, m, d = None, y, m
    if y is None and d is not None and (len(d) > 2 or d.startswith("'")):
        y, d = d, None
    if m is not None and not named_month and (m.startswith("'") or len(m) > 2):
        y, m, d = m, d, y
    if d is not None and (d.startswith("'") or len(d) > 2):
        y, d = d, y
    year = None
    if y is not None:
        digits = y.lstrip("'")
        year = int(digits)
        # A year of at most two digits, without a sign, is completed (Date._parse's `comp`): 69-99 → 19xx.
        if not digits.startswith(("-", "+")) and len(digits) <= 2:
            year += 1900 if year >= 69 else 2000
    return year, int(m.lstrip("'")) if m else None, int(d.lstrip("'")) if d else None


def _zone(text: str) -> tzinfo | None:
    """Time.zone_offset: an offset for the forms it knows, else None (the time stays in the site's zone)."""
    name = text.upper()
    if name[:1].isalpha() and name[-1:].isdigit():   # Date._parse reads `UTC+9`; Time.zone_offset does not
        return None
    numeric = _NUMERIC_ZONE.fullmatch(name)
    if numeric:
        sign, hours, _, minutes, seconds, short = numeric.groups()
        if short:
            return _fixed(int(short) * 3600)
        total = (int(hours) * 60 + int(minutes)) * 60 + int(seconds or 0)
        return _fixed(-total if sign == "-" else total)
    hours = _ZONES.get(name)
    return None if hours is None else _fixed(hours * 3600)


def _fixed(seconds: int) -> tzinfo | None:
    try:
        return timezone(timedelta(seconds=seconds))
    except ValueError:   # beyond ±24 h: Ruby accepts it, a Python offset cannot hold it
        return None
