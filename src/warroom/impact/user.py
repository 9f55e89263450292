"""One user's story: the timeline of ``detect.user_timeline`` in a time window, and
one summary line (requests, 429s, wrongful ones, excess, credit).

The credit is the user's impact row under the policy, for the whole incident;
the counts and the excess are those of the rows in the window.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from decimal import Decimal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from warroom.detect import user_timeline
from warroom.errors import WarroomError
from warroom.impact import impact
from warroom.impact.policy import Policy, currency_places
from warroom.pack import Pack, parse_timestamp

#: the findings whose amount is an erroneous excess (detector, detail or None for any)
EXCESS = {
    ("duplicate_charges", None),
    ("abuse_penalty_charges", None),
    ("billing_mismatch", "charged_failed_request"),
    ("billing_mismatch", "overbilled"),
}


class NoSuchUserError(WarroomError):
    """The user id is in none of the loaded requests, ledger rows or abuse events."""


@dataclass(frozen=True)
class UserStory:
    timeline: pa.Table
    summary: str


def user_story(
    con: duckdb.DuckDBPyConnection,
    pack: Pack,
    user_id: str,
    *,
    since: str | None = None,
    until: str | None = None,
    policy: Policy | None = None,
) -> UserStory:
    """The user's timeline (rows with ts in [since, until)) and its summary line.

    Raises NoSuchUserError, naming the closest ids, for a user no row mentions."""
    _check_known(con, user_id)
    start = parse_timestamp(since) if since else None
    end = parse_timestamp(until) if until else None
    owed = impact(con, pack, policy or Policy())  # leaves every fault's findings on con
    rows = user_timeline(con, pack, user_id, prepared=True)
    if start is not None:
        rows = rows.filter(
            pc.greater_equal(rows.column("ts"), pa.scalar(start, rows.schema.field("ts").type))
        )
    if end is not None:
        rows = rows.filter(pc.less(rows.column("ts"), pa.scalar(end, rows.schema.field("ts").type)))
    mine = owed.filter(pc.equal(owed.column("user_id"), user_id)).to_pylist()
    return UserStory(rows, _summary(user_id, rows.to_pylist(), mine, since, until))


def _check_known(con: duckdb.DuckDBPyConnection, user_id: str) -> None:
    ids = (
        "SELECT user_id FROM requests_all UNION SELECT user_id FROM ledger_all "
        "UNION SELECT user_id FROM abuse_events_all"
    )
    found = con.execute(f"SELECT count(*) FROM ({ids}) WHERE user_id = ?", [user_id]).fetchone()  # noqa: S608
    if found and found[0]:
        return
    known = [
        str(r[0])
        for r in con.execute(f"SELECT user_id FROM ({ids}) WHERE user_id IS NOT NULL").fetchall()
    ]  # noqa: S608
    closest = difflib.get_close_matches(user_id, known, n=3, cutoff=0)
    hint = f" (closest ids: {', '.join(closest)})" if closest else " (no user is loaded)"
    raise NoSuchUserError(f"no such user: {user_id!r}{hint}")


def _summary(
    user_id: str,
    rows: list[dict[str, object]],
    owed: list[dict[str, object]],
    since: str | None,
    until: str | None,
) -> str:
    requests = [r for r in rows if r["source"] == "request"]
    rejected = sum(1 for r in requests if str(r["what"]).startswith("429"))
    wrongful = sum(1 for r in rows if r["source"] == "finding" and r["id"] == "wrongful_rejections")
    excess: dict[str, Decimal] = {}
    for r in rows:
        if r["source"] == "finding" and r["amount"] is not None and _is_excess(r):
            currency = str(r["what"] or "")
            excess[currency] = excess.get(currency, Decimal(0)) + Decimal(str(r["amount"]))
    window = ""
    if since or until:
        window = f" from {since or 'the start'} until {until or 'the end'}"
    parts = [
        f"{user_id}{window}: {len(requests):,} requests, {rejected:,} 429s ({wrongful:,} wrongful)",
        "excess " + (_amounts(excess) or "none"),
        "credit " + (_credits(owed) or "none") + " (whole incident)",
    ]
    return "; ".join(parts)


def _is_excess(row: dict[str, object]) -> bool:
    return (row["id"], None) in EXCESS or (row["id"], row["detail"]) in EXCESS


def _amounts(by_currency: dict[str, Decimal]) -> str:
    return ", ".join(f"{_money(v, c)} {c}" for c, v in sorted(by_currency.items()) if v)


def _credits(owed: list[dict[str, object]]) -> str:
    out = []
    for row in sorted(owed, key=lambda r: str(r["currency"])):
        currency = str(row["currency"])
        text = f"{_money(row['credit_amount'], currency)} {currency}"  # type: ignore[arg-type]
        if row["compensation"]:
            text += f" + compensation {_money(row['compensation'], currency)}"  # type: ignore[arg-type]
        if row["banked_resets"]:
            text += f" + {row['banked_resets']} banked reset(s)"
        text += f" ({row['action']})"
        out.append(text)
    return ", ".join(out)


def _money(amount: Decimal, currency: str) -> str:
    """Exact, with trailing zeros dropped down to the currency's minor unit (1.20, 1.2345)."""
    places = currency_places(currency)
    text = format(amount.normalize(), "f")
    whole, _, frac = text.partition(".")
    frac = frac.ljust(places, "0") if places else frac
    return f"{whole}.{frac}" if frac else whole
