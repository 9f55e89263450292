"""Findings -> per-user impact and suggested credits under a policy (DESIGN.md section 4).

One row per user and currency. ``impact.sql`` sums the findings per user and
currency (each charge's excess is attributed to exactly one cause there, so
nothing is counted twice); this module applies the policy to each row:
``credit_amount`` is the sum of the components the policy enables, rounded
half-up once per row to the currency's unit; ``topup_reimbursement`` likewise.
The policy itself is read in ``policy.py``.
"""

from __future__ import annotations

import collections
import hashlib
from dataclasses import replace
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from warroom.detect import compute_findings
from warroom.errors import QueryError
from warroom.impact.policy import (
    COMPONENTS,
    Policy,
    PolicyError,
    load_policy,
    round_credit,
    round_owed,
)
from warroom.incident import incident_id
from warroom.pack import Pack, prepare

__all__ = [
    "COMPONENTS",
    "COUNT_COLUMNS",
    "EXPORT_COLUMNS",
    "IMPACT_COLUMNS",
    "MONEY_COLUMNS",
    "MONEY_TYPE",
    "Policy",
    "PolicyError",
    "affected_users",
    "credit_id",
    "impact",
    "load_policy",
    "round_credit",
    "totals",
]

IMPACT_COLUMNS = (
    "user_id",
    "plan",
    "currency",
    "duplicate_excess",
    "failed_request_charges",
    "abuse_penalty_excess",
    "overbilled",
    "credit_amount",
    "balance_credit",
    "topup_reimbursement",
    "compensation",
    "banked_resets",
    "wrongful_429s",
    "restricted_minutes",
    "action",
    "review",
    "credit_id",
    "reasons",
)

EXPORT_COLUMNS = (
    "user_id",
    "plan",
    "currency",
    "action",
    "credit_amount",
    "balance_credit",
    "topup_reimbursement",
    "compensation",
    "banked_resets",
    "wrongful_429s",
    "restricted_minutes",
    "review",
    "credit_id",
    "reasons",
)

#: what each row asks of the people acting on it (DESIGN.md section 4), first that applies
ACTIONS = ("credit", "review", "notify")


def credit_id(incident_id: str, user_id: str, currency: str | None) -> str:
    """A stable id for one credit: applying the same credit file twice is detectable."""
    digest = hashlib.sha256(
        "\x1f".join([incident_id, user_id, currency or ""]).encode()
    ).hexdigest()
    return "cr_" + digest[:24]


_MONEY = pa.decimal128(38, 6)
_TYPES: dict[str, pa.DataType] = {
    "user_id": pa.string(),
    "plan": pa.string(),
    "currency": pa.string(),
    "banked_resets": pa.int64(),
    "wrongful_429s": pa.int64(),
    "restricted_minutes": pa.int64(),
    "action": pa.string(),
    "review": pa.bool_(),
    "credit_id": pa.string(),
    "reasons": pa.string(),
}
_SCHEMA = pa.schema([(c, _TYPES.get(c, _MONEY)) for c in IMPACT_COLUMNS])
#: the money columns of an impact row, in its order (summed per group: ``groups``)
MONEY_COLUMNS = tuple(c for c in IMPACT_COLUMNS if _SCHEMA.field(c).type == _MONEY)
#: the count columns of an impact row, in its order
COUNT_COLUMNS = tuple(c for c in IMPACT_COLUMNS if pa.types.is_integer(_SCHEMA.field(c).type))
#: the type of every amount: exact, 6 places
MONEY_TYPE = _MONEY


def impact(
    con: duckdb.DuckDBPyConnection, pack: Pack, policy: Policy, *, stored_findings: bool = False
) -> pa.Table:
    """Per-user impact under ``policy``.

    By default the findings are computed afresh from the data on ``con`` (so the
    answer can never be stale); ``stored_findings`` uses the ``findings`` table
    and shared relations that ``detect`` has just left on this connection.

    A policy window (``[incident] start/end``) selects the faults to remediate;
    their effects count wherever they fall: the findings are then computed with a
    counterfactual that undoes only those faults (DESIGN.md section 7.4), and the
    connection is left with the findings of every fault, as before.
    """
    windowed = policy.start is not None or policy.end is not None
    if windowed:
        prepare(con, pack, fault_window=(policy.start, policy.end))
        compute_findings(con, pack, table="findings", temp=True)
    else:
        _findings(con, pack, stored=stored_findings)
    if policy.incident_id is None:
        policy = replace(policy, incident_id=incident_id(con, pack, None))
    sql = resources.files("warroom.impact").joinpath("impact.sql").read_text(encoding="utf-8")
    try:
        rel = con.sql(sql, params={"start": policy.start, "end": policy.end})
        names, raw = rel.columns, rel.fetchall()
    except duckdb.Error as exc:
        raise QueryError(f"impact: {str(exc).splitlines()[0]}") from None
    if windowed:  # what later readers of this connection expect: every fault's findings
        prepare(con, pack)
        _findings(con, pack, stored=stored_findings)
    return policy_rows(names, raw, policy)


def policy_rows(names: list[str], raw: list[tuple[Any, ...]], policy: Policy) -> pa.Table:
    """The impact table: ``policy`` applied to each row of impact.sql (``names`` its
    columns); the Spark engine hands in the rows it computed."""
    out: dict[str, list[Any]] = {c: [] for c in IMPACT_COLUMNS}
    for values in raw:
        row = _policy_row(dict(zip(names, values, strict=True)), policy)
        if row is not None:
            for c in IMPACT_COLUMNS:
                out[c].append(row[c])
    return pa.table(out, schema=_SCHEMA)


def _findings(con: duckdb.DuckDBPyConnection, pack: Pack, *, stored: bool) -> None:
    """temp.findings (and the shared relations) of every fault: computed afresh, or
    the ones ``detect`` stored on this connection."""
    if stored:
        current = con.execute("SELECT current_database()").fetchone()
        catalog = str(current[0]) if current else "main"
        con.execute(
            f'CREATE OR REPLACE TEMP TABLE findings AS SELECT * FROM "{catalog}".main.findings'
        )
    else:
        prepare(con, pack)
        compute_findings(con, pack, table="findings", temp=True)


def _policy_row(sums: dict[str, Any], policy: Policy) -> dict[str, Any] | None:
    """One impact row from one row of impact.sql, or None when nothing is owed or to report."""
    restricted_minutes = int(
        (Decimal(sums["restricted_micros"]) / 60_000_000).quantize(
            Decimal(1), rounding=ROUND_HALF_UP
        )
    )
    comp = {c: Decimal(sums[c] or 0) for c in COMPONENTS}
    harmed = (
        any(comp[c] > 0 for c in COMPONENTS)
        or sums["wrongful_429s"] > 0
        or restricted_minutes > 0
        or sums["spent_banked_resets"] > 0
    )
    if not harmed and not sums["review"]:
        return None
    plan = (sums["plan"] or "").lower()
    currency = sums["currency"]
    excluded = plan in policy.exclude_plans
    money = _money(sums, comp, policy) if not excluded else _NOTHING
    banked = granted = 0
    if not excluded and harmed:
        granted = policy.grant_banked_resets if sums["quota_currency"] else 0
        banked = int(sums["spent_banked_resets"]) + granted
    if money["credit_amount"] > 0 or money["compensation"] > 0 or banked > 0:
        action = "credit"
    else:
        action = "review" if sums["review"] else "notify"
    reasons = _reasons(sums, restricted_minutes)
    if granted:
        reasons.append(
            _plural(
                granted, "banked reset granted by the policy", "banked resets granted by the policy"
            )
        )
    if excluded:
        reasons.append(f"plan excluded ({plan})")
    return {
        "user_id": sums["user_id"],
        "plan": sums["plan"],
        "currency": currency,
        **{c: comp[c] for c in COMPONENTS[:4]},
        **money,
        "banked_resets": banked,
        "wrongful_429s": int(sums["wrongful_429s"]),
        "restricted_minutes": restricted_minutes,
        "action": action,
        "review": bool(sums["review"]),
        "credit_id": credit_id(policy.incident_id or "", sums["user_id"], currency),
        "reasons": "; ".join(reasons),
    }


_NOTHING = {
    "credit_amount": Decimal(0),
    "balance_credit": Decimal(0),
    "topup_reimbursement": Decimal(0),
    "compensation": Decimal(0),
}


def _money(sums: dict[str, Any], comp: dict[str, Decimal], policy: Policy) -> dict[str, Decimal]:
    """What one row is paid (DESIGN.md section 7.5): the credit once, split between the
    card (reimbursed top-ups, capped at the credit) and the balance; compensation apart."""
    currency = sums["currency"]
    places = policy.places(currency)
    owed = sum((comp[c] for c in COMPONENTS[:4] if policy.components[c]), Decimal(0))
    credit = Decimal(0)
    if owed > 0:
        credit = owed * (1 + policy.goodwill_percent / 100)
        credit = max(credit, policy.minimum_credit.get((currency or "").lower(), Decimal(0)))
        credit = round_owed(credit, places)
    reimbursable = comp["topup_reimbursement"] if policy.components["topup_reimbursement"] else 0
    to_card = min(round_owed(Decimal(reimbursable), places), credit)
    code = (currency or "").lower()
    hours = Decimal(sums["refused_service_micros"]) / 3_600_000_000
    compensation = policy.per_wrongful_429.get(code, Decimal(0)) * sums["wrongful_429s"]
    compensation += policy.per_restricted_hour.get(code, Decimal(0)) * hours
    return {
        "credit_amount": credit,
        "balance_credit": credit - to_card,
        "topup_reimbursement": to_card,
        "compensation": round_owed(compensation, places),
    }


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _reasons(sums: dict[str, Any], restricted_minutes: int) -> list[str]:
    """Why the row is there, in plain words, one clause per kind of finding."""
    clauses = (
        (sums["n_duplicates"], _plural(sums["n_duplicates"], "duplicate charge")),
        (
            sums["n_failed"],
            _plural(sums["n_failed"], "failed request charged", "failed requests charged"),
        ),
        (
            sums["n_penalty"],
            _plural(
                sums["n_penalty"],
                "charge under a false-positive penalty",
                "charges under a false-positive penalty",
            ),
        ),
        (sums["n_overbilled"], _plural(sums["n_overbilled"], "overbilled charge")),
        (
            sums["n_topups"],
            _plural(
                sums["n_topups"],
                "top-up to cure a wrong negative balance",
                "top-ups to cure a wrong negative balance",
            ),
        ),
        (sums["wrongful_429s"], _plural(sums["wrongful_429s"], "wrongful 429")),
        (
            sums["spent_banked_resets"],
            _plural(
                sums["spent_banked_resets"],
                "banked reset spent after a wrongful 429",
                "banked resets spent after a wrongful 429",
            ),
        ),
        (restricted_minutes, f"{restricted_minutes} min wrongly restricted"),
        (sums["n_orphans"], _plural(sums["n_orphans"], "orphan charge") + " (review)"),
        (
            sums["n_unreviewed"],
            _plural(sums["n_unreviewed"], "restriction of a new user", "restrictions of a new user")
            + " (review)",
        ),
    )
    return [text for n, text in clauses if n]


def affected_users(impact_rows: pa.Table, action: str | None = None) -> pa.Table:
    """The refund job's and the support team's list: every impact row (or those with
    ``action``), with the export columns."""
    if action is not None:
        impact_rows = impact_rows.filter(pc.equal(impact_rows.column("action"), action))
    return impact_rows.select(list(EXPORT_COLUMNS))


def totals(rows: pa.Table) -> list[str]:
    """Human summary lines: per currency, the users with something to be paid and how each
    amount is paid (to the balance, to the card, compensation, banked resets)."""
    by: dict[str, dict[str, Decimal]] = {}
    for r in rows.to_pylist():
        if r["action"] != "credit":
            continue
        acc = by.setdefault(r["currency"] or "(none)", collections.defaultdict(Decimal))
        acc["users"] += 1
        for c in ("credit_amount", "balance_credit", "topup_reimbursement", "compensation"):
            acc[c] += r[c]
        acc["banked_resets"] += r["banked_resets"]
    lines = [
        f"{a['users']} user(s) in {c}: credits {a['credit_amount']} "
        f"(to the balance {a['balance_credit']}, to the card {a['topup_reimbursement']})"
        + (f", compensation {a['compensation']}" if a["compensation"] else "")
        + (f", banked resets {a['banked_resets']}" if a["banked_resets"] else "")
        for c, a in sorted(by.items())
    ]
    return lines or ["no user is owed anything"]
