"""The generator's units: time is integer microseconds since the Unix epoch,
money is Decimal; and how both are written into the files.

Integers keep the simulation exact and fast; the text forms are fixed (six
fractional digits, ``Z``; no exponent, never ``-0``) so that the same seed gives
the same bytes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

SEC = 1_000_000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DATE = date(1970, 1, 1)

Q6 = Decimal("0.000001")
ZERO = Decimal(0)
MILLION = Decimal(1_000_000)
TOLERANCE = Decimal("0.000001")


def us_since_epoch(dt: datetime) -> int:
    """An aware datetime as integer microseconds since the Unix epoch."""
    return (dt - _EPOCH) // timedelta(microseconds=1)


_HOUR_PREFIX: dict[int, str] = {}
_MM_SS = [f"{m:02d}:{s:02d}." for m in range(60) for s in range(60)]


def iso_us(us: int) -> str:
    """ISO-8601 in UTC with ``Z`` and exactly six fractional digits."""
    h, rest = divmod(us, HOUR)
    prefix = _HOUR_PREFIX.get(h)
    if prefix is None:
        d, hh = divmod(h, 24)
        prefix = _HOUR_PREFIX[h] = f"{(_EPOCH_DATE + timedelta(days=d)).isoformat()}T{hh:02d}:"
    s, micro = divmod(rest, SEC)
    return f"{prefix}{_MM_SS[s]}{micro:06d}Z"


def money_text(d: Decimal) -> str:
    """A decimal string with no exponent; never ``-0``."""
    if not d:
        d = abs(d)
    return format(d, "f")


def json_money(d: Decimal | None) -> str:
    """An amount as a JSON value: a quoted decimal string, or null."""
    return "null" if d is None else f'"{money_text(d)}"'


def q6(d: Decimal) -> Decimal:
    """Rounded half-up to 6 decimals."""
    return d.quantize(Q6, rounding=ROUND_HALF_UP)


def off_second(us: int) -> int:
    """Unscheduled rows never sit on a whole second (scheduled ones always do)."""
    return us + 1 if us % SEC == 0 else us
