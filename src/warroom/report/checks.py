"""Did the fix work? Mass resets found in the ledger and markers the user gives
(deploys, fixes), each with the erroneous charges in the 24 hours before and after.

A *mass reset* is a clock-independent hour in which the system (``initiated_by``
``system``) reset the quota of at least half of a quota currency's users (a quota
currency is one with ``reset`` rows, DESIGN.md 7.7; its users are those with any
ledger row in it): it starts at the first reset of such an hour, and the next one
starts after that hour. A *marker* is ``T`` or ``T=LABEL`` (``--marker``).

For each, the *erroneous charges* (the charge findings whose excess is credited:
duplicates, charged failed requests, charges under a false-positive penalty,
overbilling) in ``[T - 24 h, T)`` and ``[T, T + 24 h)``, per hour and in total, in
the reset's currency (a marker: every currency). The verdict says whether they
went on after ``T``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb

from warroom.errors import QueryError, UsageError
from warroom.pack import parse_timestamp

#: the share of a quota currency's users a system reset must reach within an hour
MASS_SHARE = Decimal("0.5")
WINDOW = timedelta(hours=24)
HOUR = timedelta(hours=1)

_SYSTEM_RESETS = """
WITH users_per_currency AS (
    SELECT currency, count(DISTINCT user_id) AS users FROM ledger GROUP BY currency
)
SELECT ledger.currency, ledger.user_id, ledger.ts, users_per_currency.users
FROM ledger
INNER JOIN users_per_currency ON users_per_currency.currency = ledger.currency
WHERE ledger.kind = 'reset' AND ledger.initiated_by = 'system'
ORDER BY ledger.currency, ledger.ts, ledger.user_id
"""

_ERRONEOUS_CHARGES = """
SELECT ts, coalesce(currency, '') AS currency, CAST(amount AS DECIMAL(38, 6)) AS amount
FROM findings
WHERE ts IS NOT NULL AND ts >= $lo AND ts < $hi
  AND (detector IN ('duplicate_charges', 'abuse_penalty_charges')
       OR (detector = 'billing_mismatch' AND detail IN ('charged_failed_request', 'overbilled')))
ORDER BY ts
"""


@dataclass(frozen=True)
class Marker:
    """A moment to judge: a deploy or fix given with ``--marker``."""

    ts: datetime
    label: str


@dataclass(frozen=True)
class Check:
    """A mass reset or a marker, and the erroneous charges around it."""

    kind: str  # "mass reset" or "marker"
    ts: datetime
    label: str
    currency: str | None  # a reset's quota currency; None: every currency
    users: int = 0  # a reset: users reset within the hour
    of_users: int = 0  # a reset: the currency's users
    before: int = 0
    after: int = 0
    before_amounts: dict[str, Decimal] = field(default_factory=dict)
    after_amounts: dict[str, Decimal] = field(default_factory=dict)
    #: hour offset from ts (-24 .. 23) -> erroneous charges in that hour
    hourly: dict[int, int] = field(default_factory=dict)

    @property
    def went_on(self) -> bool:
        return self.after > 0


def parse_marker(text: str) -> Marker:
    """``T`` or ``T=LABEL``; UsageError for a bad time."""
    when, _, label = text.partition("=")
    try:
        ts = parse_timestamp(when.strip())
    except QueryError as exc:
        raise UsageError(f"--marker {text!r}: {exc}") from None
    return Marker(ts, label.strip() or "marker")


def mass_resets(con: duckdb.DuckDBPyConnection) -> list[tuple[str, datetime, int, int]]:
    """(currency, start, users reset within the hour, the currency's users) of each mass reset."""
    try:
        rows = con.sql(_SYSTEM_RESETS).fetchall()
    except duckdb.Error as exc:
        raise QueryError(f"report (mass resets): {str(exc).strip().splitlines()[0]}") from None
    per: dict[str, list[tuple[datetime, str]]] = {}
    of: dict[str, int] = {}
    for cur, user, ts, users in rows:
        per.setdefault(cur, []).append((ts, user))
        of[cur] = int(users)
    found = []
    for cur, resets in sorted(per.items()):
        i = 0
        while i < len(resets):
            start = resets[i][0]
            j = i
            while j < len(resets) and resets[j][0] < start + HOUR:
                j += 1
            users = len({u for _, u in resets[i:j]})
            if Decimal(users) >= MASS_SHARE * of[cur]:
                found.append((cur, start, users, of[cur]))
                i = j
            else:
                i += 1
    return found


def _around(con: duckdb.DuckDBPyConnection, ts: datetime, currency: str | None) -> dict[str, Any]:
    try:
        rows = con.sql(_ERRONEOUS_CHARGES, params={"lo": ts - WINDOW, "hi": ts + WINDOW}).fetchall()
    except duckdb.Error as exc:
        raise QueryError(f"report (checks): {str(exc).strip().splitlines()[0]}") from None
    out: dict[str, Any] = {
        "before": 0,
        "after": 0,
        "before_amounts": {},
        "after_amounts": {},
        "hourly": {},
    }
    for when, cur, amount in rows:
        if currency is not None and cur != currency:
            continue
        side = "after" if when >= ts else "before"
        out[side] += 1
        amounts = out[f"{side}_amounts"]
        amounts[cur] = amounts.get(cur, Decimal(0)) + (amount or Decimal(0))
        offset = (when - ts) // HOUR
        out["hourly"][offset] = out["hourly"].get(offset, 0) + 1
    for side in ("before_amounts", "after_amounts"):
        out[side] = dict(sorted(out[side].items()))
    return out


def checks(con: duckdb.DuckDBPyConnection, markers: list[Marker]) -> list[Check]:
    """Every mass reset and every marker, in time order, with the charges around it."""
    found = [
        Check(
            "mass reset",
            start,
            f"system reset of {users:,} of {of:,} {cur} users",
            cur,
            users,
            of,
            **_around(con, start, cur),
        )
        for cur, start, users, of in mass_resets(con)
    ]
    found += [Check("marker", m.ts, m.label, None, **_around(con, m.ts, None)) for m in markers]
    return sorted(found, key=lambda c: (c.ts, c.kind, c.label))
