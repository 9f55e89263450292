"""How the report writes values as text: timestamps, durations, counts and amounts.

Money is written from its exact decimal, never through a float. Both documents
and the terminal summary use these, so a figure reads the same everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from warroom.escape import visible
from warroom.impact import round_credit


def timestamp_text(ts: datetime | None) -> str:
    """``2025-06-01T16:00:00Z`` (UTC), with microseconds only when there are some."""
    if ts is None:
        return ""
    text = ts.replace(tzinfo=None).isoformat(timespec="microseconds")
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    return f"{whole}.{frac}Z" if frac else f"{whole}Z"


def second_text(ts: datetime | None) -> str:
    """``2025-06-01T16:02:34Z``: whole seconds, *truncated* (never rounded up), so
    the CLI, the Markdown and the HTML show one value and a time shown is never later
    than the row it stands for."""
    if ts is None:
        return ""
    return ts.replace(tzinfo=None, microsecond=0).isoformat() + "Z"


def parse_timestamp_text(text: str) -> datetime:
    """The naive UTC datetime that ``timestamp_text`` wrote."""
    return datetime.fromisoformat(text.rstrip("Z"))


def hour_text(ts: datetime) -> str:
    """The clock hour of ``ts``: ``2025-06-01T16:00Z``."""
    return ts.strftime("%Y-%m-%dT%H:00Z")


def duration_text(delta: timedelta) -> str:
    """Whole minutes as ``2 d 3 h 5 min``, leaving out the zero parts."""
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [
        f"{days} d" if days else "",
        f"{hours} h" if hours else "",
        f"{mins} min" if mins or not (days or hours) else "",
    ]
    return " ".join(p for p in parts if p)


def count_text(n: int) -> str:
    """A count with thousands separators: ``12,345``."""
    return f"{n:,}"


def decimal_text(d: Decimal | None) -> str:
    """A decimal with every digit it has, never in exponent form; empty for None."""
    return "" if d is None else format(d, "f")


def credit_text(amount: Decimal | None, currency: str | None) -> str:
    """A credit in its currency's unit (cents for usd): exact, never rounded here.

    Credits are rounded once per row by impact; a sum of them is already in the
    unit, so trimming the stored 6 decimals loses nothing. A value that is not
    (e.g. a goodwill policy's) keeps all its decimals.
    """
    if amount is None:
        return ""
    unit_value = round_credit(amount, currency)
    return format(unit_value if unit_value == amount else amount, "f")


def amounts_text(pairs: Iterable[tuple[str, Decimal | None]]) -> str:
    """Amounts per currency: ``12.5 usd; 3 eur`` (None amounts left out)."""
    shown = [f"{decimal_text(a)} {c}".strip() for c, a in pairs if a is not None]
    return "; ".join(shown)


def value_text(value: Any) -> str:
    """Any value of a findings row: decimals exact, times as ``timestamp_text``."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, datetime):
        return timestamp_text(value)
    return str(value)


def one_line(text: str) -> str:
    """``text`` on one line for a chart label: line breaks and tabs as spaces, every
    other control or bidi character as a visible escape (``warroom.escape.visible``)."""
    return visible(
        text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ").replace("\t", " ")
    )
