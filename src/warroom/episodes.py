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
  charges): a ledger ``charge`` in a currency and of a plan (the user's latest, as
  impact reads it) among those of the episode's erroneous rows; for
  ``billing_mismatch:overbilled`` (a price fault) also of one of their models;
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
from warroom.pack import Pack, bind, run

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


# the findings of each episode: its fault's rows inside its window (episodes of a
# fault never overlap, so the window alone places a row)
_IN_EPISODE = """
WITH episodes AS (
    SELECT fault, episode, episode_start, episode_end FROM warroom_episode_input
),
faults AS (
    SELECT
        CASE WHEN detector IN ('billing_mismatch', 'abuse_false_positives')
             THEN detector || ':' || detail ELSE detector END AS fault,
        currency, ts, amount
    FROM findings
    WHERE ts IS NOT NULL
)
SELECT episodes.fault, episodes.episode, faults.currency,
       sum(CAST(faults.amount AS DECIMAL(38, 6))) AS amount
FROM episodes
INNER JOIN faults
    ON faults.fault = episodes.fault
    AND faults.ts BETWEEN episodes.episode_start AND episodes.episode_end
GROUP BY episodes.fault, episodes.episode, faults.currency
ORDER BY 1, 2, 3 NULLS FIRST
"""

# the plans of each episode's users (each user's latest plan, as impact reads it)
_PLANS = """
WITH episodes AS (
    SELECT fault, episode, episode_start, episode_end FROM warroom_episode_input
),
faults AS (
    SELECT
        CASE WHEN detector IN ('billing_mismatch', 'abuse_false_positives')
             THEN detector || ':' || detail ELSE detector END AS fault,
        user_id, ts
    FROM findings
    WHERE ts IS NOT NULL
),
latest_plan AS (
    SELECT user_id, plan
    FROM (
        SELECT user_id, plan,
               row_number() OVER (PARTITION BY user_id ORDER BY ts DESC, request_id DESC) AS recency
        FROM requests
        WHERE plan IS NOT NULL
    ) AS plans_by_recency
    WHERE recency = 1
)
SELECT DISTINCT episodes.fault, episodes.episode, latest_plan.plan
FROM episodes
INNER JOIN faults
    ON faults.fault = episodes.fault
    AND faults.ts BETWEEN episodes.episode_start AND episodes.episode_end
INNER JOIN latest_plan ON latest_plan.user_id = faults.user_id
ORDER BY 1, 2, 3
"""

# the clean comparable row before and after each episode (see the module's text)
_BRACKETS = """
WITH episodes AS (
    SELECT fault, episode, episode_start, episode_end FROM warroom_episode_input
),
faults AS (
    SELECT
        CASE WHEN detector IN ('billing_mismatch', 'abuse_false_positives')
             THEN detector || ':' || detail ELSE detector END AS fault,
        user_id, currency, ts, entry_id, request_id
    FROM findings
    WHERE ts IS NOT NULL
),
latest_plan AS (
    SELECT user_id, plan
    FROM (
        SELECT user_id, plan,
               row_number() OVER (PARTITION BY user_id ORDER BY ts DESC, request_id DESC) AS recency
        FROM requests
        WHERE plan IS NOT NULL
    ) AS plans_by_recency
    WHERE recency = 1
),
charges AS (
    SELECT ledger.entry_id, ledger.request_id, ledger.ts, ledger.user_id, ledger.currency,
           latest_plan.plan, requests.model
    FROM ledger
    LEFT JOIN latest_plan ON latest_plan.user_id = ledger.user_id
    LEFT JOIN requests ON requests.request_id = ledger.request_id
    WHERE ledger.kind = 'charge'
),
erroneous AS (
    SELECT episodes.fault, episodes.episode, faults.entry_id, faults.request_id, faults.user_id,
           faults.ts, faults.currency
    FROM episodes
    INNER JOIN faults
        ON faults.fault = episodes.fault
        AND faults.ts BETWEEN episodes.episode_start AND episodes.episode_end
),
charge_keys AS (
    SELECT DISTINCT erroneous.fault, erroneous.episode, charges.plan, charges.currency,
           CASE
               WHEN erroneous.fault = 'billing_mismatch:overbilled' THEN charges.model
           END AS model
    FROM erroneous
    INNER JOIN charges ON charges.entry_id = erroneous.entry_id
    WHERE erroneous.fault IN (
        'duplicate_charges', 'abuse_penalty_charges',
        'billing_mismatch:charged_failed_request', 'billing_mismatch:overbilled'
    )
),
flagged_requests AS (
    SELECT DISTINCT fault, request_id FROM faults WHERE request_id IS NOT NULL
),
flagged_entries AS (
    SELECT DISTINCT fault, entry_id FROM faults WHERE entry_id IS NOT NULL
),
clean_charges AS (
    SELECT episodes.fault, episodes.episode, episodes.episode_start, episodes.episode_end,
           charges.ts
    FROM episodes
    INNER JOIN charge_keys
        ON charge_keys.fault = episodes.fault AND charge_keys.episode = episodes.episode
    INNER JOIN charges
        ON charges.plan IS NOT DISTINCT FROM charge_keys.plan
        AND charges.currency IS NOT DISTINCT FROM charge_keys.currency
        AND (charge_keys.model IS NULL OR charges.model = charge_keys.model)
    LEFT JOIN flagged_entries
        ON flagged_entries.fault = episodes.fault AND flagged_entries.entry_id = charges.entry_id
    LEFT JOIN flagged_requests
        ON flagged_requests.fault = episodes.fault
        AND flagged_requests.request_id = charges.request_id
    WHERE flagged_entries.entry_id IS NULL AND flagged_requests.request_id IS NULL
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
clean_actions AS (
    SELECT episodes.fault, episodes.episode, episodes.episode_start, episodes.episode_end,
           abuse_events.ts
    FROM episodes
    INNER JOIN abuse_plans
        ON abuse_plans.fault = episodes.fault AND abuse_plans.episode = episodes.episode
    INNER JOIN abuse_events ON abuse_events.action <> 'clear'
    LEFT JOIN latest_plan ON latest_plan.user_id = abuse_events.user_id
    LEFT JOIN faults
        ON faults.fault = episodes.fault AND faults.user_id = abuse_events.user_id
        AND faults.ts = abuse_events.ts
    WHERE latest_plan.plan IS NOT DISTINCT FROM abuse_plans.plan AND faults.fault IS NULL
),
clean AS (
    SELECT * FROM clean_charges
    UNION ALL
    SELECT * FROM clean_actions
)
SELECT fault, episode,
       max(CASE WHEN ts < episode_start THEN ts END) AS clean_before,
       min(CASE WHEN ts > episode_end THEN ts END) AS clean_after
FROM clean
GROUP BY fault, episode
ORDER BY fault, episode
"""


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
    con.register("warroom_episode_input", base)
    try:
        money = _sql(con, "money", _IN_EPISODE)
        bounds = _sql(con, "brackets", _BRACKETS) if brackets else []
        plan_rows = _sql(con, "plans", _PLANS) if brackets else []
    finally:
        con.unregister("warroom_episode_input")
    amounts: dict[tuple[str, int], dict[str, Decimal]] = {}
    plans: dict[tuple[str, int], set[str]] = {}
    for m in money:
        key = (m["fault"], int(m["episode"]))
        if m["amount"] is not None:
            amounts.setdefault(key, {})[m["currency"] or ""] = m["amount"]
    for p in plan_rows:
        plans.setdefault((p["fault"], int(p["episode"])), set()).add(p["plan"])
    brackets_of = {(b["fault"], int(b["episode"])): b for b in bounds}
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
