"""The war room's standing view: counts per hour (or day), beside those a day or a week before.

``queries/timeline.sql`` (a report table of the pack, ``-- findings: no``) does the
counting on the shared relations it reads (the charge attribution for the
erroneous excess, the served counterfactual for the wrongful 429s); ``Pack.needs``
builds only those. This module binds the options, and leaves out the ``*_prev``
columns when nothing is compared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from warroom.detect import run_one
from warroom.errors import UsageError
from warroom.pack import Pack

#: the name of the query in the pack
QUERY = "timeline"
EVERY = ("hour", "day")
#: the longest look back --compare takes (ten years): a period further back has no data
MAX_COMPARE_DAYS = 3660
_COMPARE = re.compile(r"^\s*(\d+)\s*d\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class TimelineOptions:
    """What to count: the period, the comparison, whose rows, and which periods."""

    every: str = "hour"
    #: put the counts this many days earlier beside each period (None: no comparison)
    compare_days: int | None = None
    user_id: str | None = None
    plan: str | None = None
    model: str | None = None
    since: str | None = None
    until: str | None = None


def parse_compare(text: str) -> int:
    """``1d`` -> 1, ``7d`` -> 7: how many days before each period to compare with."""
    m = _COMPARE.match(text)
    days = int(m.group(1)) if m else 0
    if not m or not 1 <= days <= MAX_COMPARE_DAYS:
        raise UsageError(
            f"--compare {text!r}: expected a number of days, e.g. 1d (the day before) "
            f"or 7d (the week before), at most {MAX_COMPARE_DAYS}d"
        )
    return days


def timeline(con: duckdb.DuckDBPyConnection, pack: Pack, options: TimelineOptions) -> pa.Table:
    """One row per period and currency (DESIGN.md section 5, ``warroom timeline``).

    Without ``compare_days`` the ``prev_period_start`` and ``*_prev`` columns are left out.
    """
    if options.every not in EVERY:
        raise UsageError(f"--every {options.every!r}: expected hour or day")
    given = {"every": options.every}
    for name, value in (
        ("compare_days", None if options.compare_days is None else str(options.compare_days)),
        ("user_id", options.user_id),
        ("plan", options.plan),
        ("model", options.model),
    ):
        if value is not None:
            given[name] = value
    table = run_one(con, pack, QUERY, given, options.since, options.until)
    if options.compare_days is None:
        keep = [c for c in table.column_names if not _compared(c)]
        table = table.select(keep)
    return table


def _compared(column: str) -> bool:
    return column == "prev_period_start" or column.endswith("_prev")


#: the count columns of the timeline (each has a ``_prev`` twin under --compare)
COUNTS = (
    "requests",
    "http_429",
    "http_429_insufficient_quota",
    "http_429_usage_limit_reached",
    "http_429_rate_limit_exceeded",
    "http_429_abuse_blocked",
    "http_429_other",
    "wrongful_429s",
    "charges",
    "erroneous_charges",
)
#: the money columns (exact decimals, one currency per row)
AMOUNTS = ("charged", "erroneous_excess")
