"""The time zones a reader may live in: the IANA names of the time zone database Python reads (the system's, or
the tzdata package's), the aliases browsers still report (`Asia/Calcutta`) included. The one check of a zone a
reader or an operator gives; read once per process (0.1-0.4 s: it walks the database's files)."""

from __future__ import annotations

import functools
import zoneinfo
from itertools import groupby

# Names in the database that are no place a reader lives in.
NOT_PLACES = frozenset({"Factory", "localtime", "posixrules"})


@functools.cache
def zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones() - NOT_PLACES)


def known_zone(name: str) -> bool:
    """`name` is an IANA time zone name (exactly: `asia/tokyo` and paths are not)."""
    return name in zone_names()


@functools.cache
def zone_groups() -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """Every zone as a picker lists it: by region, each as (name, what a reader reads: "Argentina/Buenos Aires"
    for "America/Argentina/Buenos_Aires" under "America"), regions and places in alphabetical order. Names with no
    region (`UTC`, `Japan`) come last, under the region "".

    A select listing cities under their region lets a keyboard user type a city's first letters."""
    def region(name: str) -> str:
        return name.split("/", 1)[0] if "/" in name else ""

    ordered = sorted(zone_names(), key=lambda name: (region(name) == "", region(name), name))
    return tuple((area, tuple((name, name.split("/", 1)[-1].replace("_", " ")) for name in names))
                 for area, names in groupby(ordered, key=region))
