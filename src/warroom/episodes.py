"""The episodes of each fault, ranked, with their money and their bracketed window.

``queries/incident_episodes.sql`` splits each fault's erroneous rows where two
consecutive rows lie more than ``gap_hours`` apart; this module adds what a
reader needs of each episode and ranks them as DESIGN.md section 7.1 reads:
most users affected, then most rows, then money per currency (compared currency
by currency in name order, a missing currency as 0), then the earliest start.

The *brackets* bound an episode's true window: the last *clean comparable* row
before its first erroneous row and the first one after its last. A comparable
row is one the same fault could have hit:

* for charge faults (duplicates, charged failed requests, overbilling, penalty
  charges): a ledger ``charge`` in a currency and of a plan (its request's; for a
  charge without one, the user's latest, as impact reads it) among those of the
  episode's erroneous rows; for ``billing_mismatch:overbilled`` (a price fault) also
  of one of their models;
* for false-positive abuse actions: an abuse action (not a ``clear``) on a user
  of one of those plans.

It is *clean* when the fault never flagged it: neither the row itself nor (for
charges) any row of its request is an erroneous row of the same fault (the
original charge of a duplicated request is not clean). The window is known to
begin between the clean row before and the first erroneous row, and to end
between the last erroneous row and the clean row after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa

from warroom.errors import QueryError
from warroom.pack import Pack, bind, prepare, run

#: the default gap (hours) between two erroneous rows that starts a new episode
DEFAULT_GAP_HOURS = 2


@dataclass(frozen=True)
class Episode:
    """One episode of one fault: its window, brackets, users, rows and money."""

    fault: str
    number: int
    first: datetime
    last: datetime
    users: int
    rows: int
    first_row_key: str
    amounts: dict[str, Decimal] = field(default_factory=dict)
    plans: tuple[str, ...] = ()
    clean_before: datetime | None = None
    clean_after: datetime | None = None

    @property
    def detector(self) -> str:
        return self.fault.split(":", 1)[0]


def _rank_key(e: Episode, currencies: list[str]) -> tuple[Any, ...]:
    money = tuple(-e.amounts.get(c, Decimal(0)) for c in currencies)
    return (-e.users, -e.rows, money, e.first, e.fault, e.number)


def rank(episodes: list[Episode]) -> list[Episode]:
    """Largest first (DESIGN.md 7.1): users, then rows, then money per currency."""
    currencies = sorted({c for e in episodes for c in e.amounts})
    return sorted(episodes, key=lambda e: _rank_key(e, currencies))


def _sql(con: duckdb.DuckDBPyConnection, what: str, sql: str) -> list[dict[str, Any]]:
    try:
        rows: list[dict[str, Any]] = con.sql(sql).to_arrow_table().to_pylist()
    except duckdb.Error as exc:
        raise QueryError(f"episodes ({what}): {str(exc).strip().splitlines()[0]}") from None
    return rows


def _faults(columns: str) -> str:
    """The CTE ``faults``: the findings that have a time, each named by its fault
    (a billing mismatch or an abuse false positive by its kind too), with
    ``columns`` of the finding."""
    return f"""faults AS (
    SELECT
        CASE WHEN detector IN ('billing_mismatch', 'abuse_false_positives')
             THEN detector || ':' || detail ELSE detector END AS fault,
        {columns}
    FROM findings
    WHERE ts IS NOT NULL
)"""


# the findings of each episode: its fault's rows inside its window (episodes of a
# fault never overlap, so the window alone places a row)
_IN_EPISODE = (
    """
WITH episodes AS (
    SELECT fault, episode, episode_start, episode_end FROM warroom_episode_input
),
"""
    + _faults("currency, ts, amount")
    + """
SELECT episodes.fault, episodes.episode, faults.currency,
       sum(CAST(faults.amount AS DECIMAL(38, 6))) AS amount
FROM episodes
INNER JOIN faults
    ON faults.fault = episodes.fault
    AND faults.ts BETWEEN episodes.episode_start AND episodes.episode_end
GROUP BY episodes.fault, episodes.episode, faults.currency
ORDER BY 1, 2, 3 NULLS FIRST
"""
)

#: each user's plan, that of their latest request naming one (ties: the highest
#: request_id): the pack's shared relation ``user_plan``, as impact reads it
_LATEST_PLAN = """latest_plan AS (
    SELECT user_id, plan FROM user_plan
)"""

# the plans of each episode's users (each user's latest plan, as impact reads it)
_PLANS = (
    """
WITH episodes AS (
    SELECT fault, episode, episode_start, episode_end FROM warroom_episode_input
),
"""
    + _faults("user_id, ts")
    + """,
episode_users AS (
    SELECT DISTINCT episodes.fault, episodes.episode, faults.user_id
    FROM episodes
    INNER JOIN faults
        ON faults.fault = episodes.fault
        AND faults.ts BETWEEN episodes.episode_start AND episodes.episode_end
),
"""
    + _LATEST_PLAN
    + """
SELECT DISTINCT episode_users.fault, episode_users.episode, latest_plan.plan
FROM episode_users
INNER JOIN latest_plan ON latest_plan.user_id = episode_users.user_id
ORDER BY 1, 2, 3
"""
)

# the clean comparable row before and after each episode (see the module's text),
# looked for within $reach minutes of it (episodes left without one are asked again
# with a longer reach: a few minutes of charges is all most episodes need to read)
_BRACKETS = (
    """
WITH episodes AS (
    SELECT fault, episode, episode_start, episode_end, need_before, need_after
    FROM warroom_episode_input
),
"""
    + _faults("user_id, currency, ts, entry_id, request_id")
    + """,
erroneous AS (
    SELECT episodes.fault, episodes.episode, faults.entry_id, faults.user_id
    FROM episodes
    INNER JOIN faults
        ON faults.fault = episodes.fault
        AND faults.ts BETWEEN episodes.episode_start AND episodes.episode_end
),
reaches AS (
    SELECT fault, episode, episode_start - CAST($reach AS INTEGER) * INTERVAL '1' MINUTE AS lo,
           episode_start AS hi, 'before' AS side
    FROM episodes
    WHERE need_before
    UNION ALL
    SELECT fault, episode, episode_end AS lo,
           episode_end + CAST($reach AS INTEGER) * INTERVAL '1' MINUTE AS hi, 'after' AS side
    FROM episodes
    WHERE need_after
),
charge_reaches AS (
    SELECT * FROM reaches
    WHERE fault IN (
        'duplicate_charges', 'abuse_penalty_charges',
        'billing_mismatch:charged_failed_request', 'billing_mismatch:overbilled'
    )
),
-- the ledger's charges near an episode, and those of its erroneous rows
near AS (
    SELECT charge_reaches.fault, charge_reaches.episode, charge_reaches.side, ledger.entry_id,
           ledger.request_id, ledger.ts, ledger.user_id, ledger.currency
    FROM charge_reaches
    @REACH_JOIN@
    WHERE ledger.kind = 'charge'
    UNION ALL
    SELECT erroneous.fault, erroneous.episode, 'erroneous' AS side, ledger.entry_id,
           ledger.request_id, ledger.ts, ledger.user_id, ledger.currency
    FROM erroneous
    INNER JOIN ledger ON ledger.entry_id = erroneous.entry_id
    WHERE ledger.kind = 'charge'
),
near_requests AS (
    SELECT requests.request_id, requests.plan, requests.model
    FROM requests
    WHERE requests.request_id IN (SELECT near.request_id FROM near)
),
-- the plan of a charge is its request's; a charge without one (an orphan) takes its
-- user's latest plan, as impact reads it
"""
    + _LATEST_PLAN
    + """,
keyed AS (
    SELECT near.fault, near.episode, near.side, near.entry_id, near.request_id, near.ts,
           near.currency, coalesce(near_requests.plan, latest_plan.plan) AS plan,
           CASE
               WHEN near.fault = 'billing_mismatch:overbilled' THEN near_requests.model
           END AS model,
           near.fault = 'billing_mismatch:overbilled' AS by_model
    FROM near
    LEFT JOIN near_requests ON near_requests.request_id = near.request_id
    LEFT JOIN latest_plan ON latest_plan.user_id = near.user_id
),
charge_keys AS (
    SELECT DISTINCT fault, episode, plan, currency, model, by_model
    FROM keyed
    WHERE side = 'erroneous'
),
flagged_requests AS (
    SELECT DISTINCT fault, request_id FROM faults WHERE request_id IS NOT NULL
),
flagged_entries AS (
    SELECT DISTINCT fault, entry_id FROM faults WHERE entry_id IS NOT NULL
),
clean_charges AS (
    SELECT keyed.fault, keyed.episode, keyed.side, keyed.ts
    FROM keyed
    INNER JOIN charge_keys
        ON charge_keys.fault = keyed.fault AND charge_keys.episode = keyed.episode
        AND charge_keys.plan IS NOT DISTINCT FROM keyed.plan
        AND charge_keys.currency IS NOT DISTINCT FROM keyed.currency
        AND (NOT charge_keys.by_model OR charge_keys.model = keyed.model)
    LEFT JOIN flagged_entries
        ON flagged_entries.fault = keyed.fault AND flagged_entries.entry_id = keyed.entry_id
    LEFT JOIN flagged_requests
        ON flagged_requests.fault = keyed.fault
        AND flagged_requests.request_id = keyed.request_id
    WHERE keyed.side <> 'erroneous'
        AND flagged_entries.entry_id IS NULL AND flagged_requests.request_id IS NULL
),
abuse_plans AS (
    SELECT DISTINCT erroneous.fault, erroneous.episode, latest_plan.plan
    FROM erroneous
    LEFT JOIN latest_plan ON latest_plan.user_id = erroneous.user_id
    WHERE erroneous.fault NOT IN (
        'duplicate_charges', 'abuse_penalty_charges',
        'billing_mismatch:charged_failed_request', 'billing_mismatch:overbilled'
    )
),
action_plans AS (
    SELECT abuse_events.user_id, abuse_events.ts, latest_plan.plan
    FROM abuse_events
    LEFT JOIN latest_plan ON latest_plan.user_id = abuse_events.user_id
    WHERE abuse_events.action <> 'clear'
),
clean_actions AS (
    SELECT reaches.fault, reaches.episode, reaches.side, action_plans.ts
    FROM reaches
    INNER JOIN abuse_plans
        ON abuse_plans.fault = reaches.fault AND abuse_plans.episode = reaches.episode
    INNER JOIN action_plans
        ON action_plans.plan IS NOT DISTINCT FROM abuse_plans.plan
        AND action_plans.ts > reaches.lo AND action_plans.ts < reaches.hi
    LEFT JOIN faults
        ON faults.fault = reaches.fault AND faults.user_id = action_plans.user_id
        AND faults.ts = action_plans.ts
    WHERE faults.fault IS NULL
),
clean AS (
    SELECT * FROM clean_charges
    UNION ALL
    SELECT * FROM clean_actions
)
SELECT fault, episode,
       max(CASE WHEN side = 'before' THEN ts END) AS clean_before,
       min(CASE WHEN side = 'after' THEN ts END) AS clean_after
FROM clean
GROUP BY fault, episode
ORDER BY fault, episode
"""
)

#: minutes around an episode the brackets are looked for in (5 min, 1 h, 1 day, all),
#: widening while one is missing
_REACHES = (5, 60, 24 * 60, 24 * 60 * 366 * 200)
#: up to this reach, charges meet their reach by clock hour (a hash join), beyond it by
#: the range alone (few episodes are still missing a bracket by then)
_HOURLY_UP_TO = 24 * 60

# constant SQL text chosen by the reach (never data): how the ledger meets the reaches
_RANGE_JOIN = """INNER JOIN ledger
        ON ledger.ts > charge_reaches.lo AND ledger.ts < charge_reaches.hi"""
_HOURLY_JOIN = """INNER JOIN (
        SELECT charge_reaches.fault, charge_reaches.episode, charge_reaches.side,
               unnest(range(date_trunc('hour', charge_reaches.lo), charge_reaches.hi,
                            INTERVAL '1' HOUR)) AS hour
        FROM charge_reaches
    ) AS reach_hours
        ON reach_hours.fault = charge_reaches.fault
        AND reach_hours.episode = charge_reaches.episode
        AND reach_hours.side = charge_reaches.side
    INNER JOIN ledger
        ON date_trunc('hour', ledger.ts) = reach_hours.hour
        AND ledger.ts > charge_reaches.lo AND ledger.ts < charge_reaches.hi"""


def _brackets(con: duckdb.DuckDBPyConnection, base: pa.Table) -> dict[tuple[str, int], Any]:
    """(fault, episode) -> {clean_before, clean_after}, the reach widening for the
    sides still missing (one found within a reach is the nearest there is)."""
    found: dict[tuple[str, int], dict[str, Any]] = {
        (f, int(n)): {"clean_before": None, "clean_after": None}
        for f, n in zip(
            base.column("fault").to_pylist(), base.column("episode").to_pylist(), strict=True
        )
    }
    for reach in _REACHES:
        todo = [(k, v) for k, v in found.items() if None in v.values()]
        if not todo:
            break
        episodes_in = base.filter(
            pa.array(
                [
                    (f, int(n)) in dict(todo)
                    for f, n in zip(
                        base.column("fault").to_pylist(),
                        base.column("episode").to_pylist(),
                        strict=True,
                    )
                ]
            )
        )
        need = [
            found[(f, int(n))]
            for f, n in zip(
                episodes_in.column("fault").to_pylist(),
                episodes_in.column("episode").to_pylist(),
                strict=True,
            )
        ]
        episodes_in = episodes_in.append_column(
            "need_before", pa.array([v["clean_before"] is None for v in need])
        ).append_column("need_after", pa.array([v["clean_after"] is None for v in need]))
        con.register("warroom_episode_input", episodes_in)
        try:
            join = _HOURLY_JOIN if reach <= _HOURLY_UP_TO else _RANGE_JOIN
            sql = _BRACKETS.replace("@REACH_JOIN@", join)
            rows = con.sql(sql, params={"reach": reach}).to_arrow_table().to_pylist()
        except duckdb.Error as exc:
            raise QueryError(f"episodes (brackets): {str(exc).strip().splitlines()[0]}") from None
        finally:
            con.unregister("warroom_episode_input")
        for r in rows:
            got = found[(r["fault"], int(r["episode"]))]
            for side in ("clean_before", "clean_after"):
                if got[side] is None:
                    got[side] = r[side]
    return found


def episodes(
    con: duckdb.DuckDBPyConnection,
    pack: Pack,
    gap_hours: int = DEFAULT_GAP_HOURS,
    *,
    brackets: bool = True,
) -> list[Episode]:
    """Every episode of every fault in ``findings`` on ``con``, ranked largest first;
    ``brackets=False`` leaves out the brackets and plans (what the incident id needs
    is the ranking alone: users, rows, money)."""
    query = pack.get("incident_episodes")
    found = run(con, query, bind(query, {"gap_hours": str(gap_hours)}))
    if found.num_rows == 0:
        return []
    base = found.select(["fault", "episode", "episode_start", "episode_end"])
    if brackets:
        _need_user_plan(con, pack)
    con.register("warroom_episode_input", base)
    try:
        money = _sql(con, "money", _IN_EPISODE)
        plan_rows = _sql(con, "plans", _PLANS) if brackets else []
    finally:
        con.unregister("warroom_episode_input")
    brackets_of = _brackets(con, base) if brackets else {}
    amounts: dict[tuple[str, int], dict[str, Decimal]] = {}
    plans: dict[tuple[str, int], set[str]] = {}
    for m in money:
        key = (m["fault"], int(m["episode"]))
        if m["amount"] is not None:
            amounts.setdefault(key, {})[m["currency"] or ""] = m["amount"]
    for p in plan_rows:
        plans.setdefault((p["fault"], int(p["episode"])), set()).add(p["plan"])
    out = []
    for r in found.to_pylist():
        key = (r["fault"], int(r["episode"]))
        b = brackets_of.get(key, {})
        out.append(
            Episode(
                fault=r["fault"],
                number=int(r["episode"]),
                first=r["episode_start"],
                last=r["episode_end"],
                users=int(r["users_affected"]),
                rows=int(r["row_count"]),
                first_row_key=str(r["first_row_key"]),
                amounts=dict(sorted(amounts.get(key, {}).items())),
                plans=tuple(sorted(plans.get(key, set()))),
                clean_before=b.get("clean_before"),
                clean_after=b.get("clean_after"),
            )
        )
    return rank(out)


def _need_user_plan(con: duckdb.DuckDBPyConnection, pack: Pack) -> None:
    """Build the shared relation ``user_plan`` on ``con`` unless it is there (the
    report's impact has built it, or handed it over from Spark)."""
    there = con.execute(
        "SELECT 1 FROM duckdb_tables() WHERE temporary AND table_name = 'user_plan'"
    ).fetchall()
    if not there:
        prepare(con, pack, only=["user_plan"])


def episodes_table(ranked: list[Episode]) -> pa.Table:
    """The ranked episodes as a table (one row per episode and currency of its money)."""
    rows = []
    for rank_no, e in enumerate(ranked, 1):
        for cur, amount in e.amounts.items() or {"": None}.items():
            rows.append(
                {
                    "rank": rank_no,
                    "fault": e.fault,
                    "episode": e.number,
                    "users": e.users,
                    "rows": e.rows,
                    "clean_before": e.clean_before,
                    "first": e.first,
                    "last": e.last,
                    "clean_after": e.clean_after,
                    "currency": cur or None,
                    "amount": amount,
                }
            )
    ts = pa.timestamp("us")
    schema = pa.schema(
        [
            ("rank", pa.int64()),
            ("fault", pa.string()),
            ("episode", pa.int64()),
            ("users", pa.int64()),
            ("rows", pa.int64()),
            ("clean_before", ts),
            ("first", ts),
            ("last", ts),
            ("clean_after", ts),
            ("currency", pa.string()),
            ("amount", pa.decimal128(38, 6)),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)
