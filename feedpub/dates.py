"""Front-matter dates in every form real posts use → aware datetimes.

PyYAML hands us an aware datetime (`+09:00`), a naive one, a date, or a string (`+0000`, no
seconds, ISO `T…Z`). Naive values are in the site's time zone. dateutil is avoided on purpose: it
reads `+0000` as tzlocal on a UTC machine.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo

_DATE_TEXT = re.compile(
    r"^(?P<y>\d{4})-(?P<mo>\d{1,2})-(?P<d>\d{1,2})"
    r"(?:[ T]+(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d{1,6})\d*)?)?)?"
    # Ruby's Time.parse, which Jekyll uses, skips a repeated year: "18:30:22 2023 -0800".
    r"(?:\s+\d{4}(?=\s))?"
    r"\s*(?P<tz>Z|UTC|GMT|[+-]\d{2}:?\d{2}|[+-]\d{2})?$",
    re.I,
)


def parse_date(value: object, tz: tzinfo) -> datetime:
    """An aware datetime from a YAML value; ValueError with the expected forms otherwise."""
    stamp = _parse(value, tz)
    # Within a day of datetime's range, converting to another time zone (UTC, the site's) overflows.
    if not datetime.min.replace(tzinfo=UTC) + timedelta(days=1) < stamp < datetime.max.replace(tzinfo=UTC) - timedelta(
            days=1):
        raise ValueError(f"{value!r} is out of range (years 1 to 9999)")
    return stamp


def _parse(value: object, tz: tzinfo) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=tz)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=tz)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a date")
    match = _DATE_TEXT.match(value.strip())
    if not match:
        raise ValueError(f"{value.strip()!r} is not a date")
    g = match.groupdict()
    fraction = (g["f"] or "0").ljust(6, "0")
    try:
        stamp = datetime(int(g["y"]), int(g["mo"]), int(g["d"]), int(g["h"] or 0), int(g["mi"] or 0),
                         int(g["s"] or 0), int(fraction))
        return stamp.replace(tzinfo=_offset(g["tz"]) if g["tz"] else tz)
    except ValueError as exc:
        raise ValueError(f"{value.strip()!r} is not a date ({exc})") from None


def _offset(text: str) -> tzinfo:
    if text.upper() in ("Z", "UTC", "GMT"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "").ljust(4, "0")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 23 or minutes > 59:
        raise ValueError(f"{text!r} is not a UTC offset")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


EXPECTED = "e.g. 2025-12-16, 2025-12-16 04:49:25 +0000, 2025-12-16T13:49:25+09:00"
