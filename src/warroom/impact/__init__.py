"""Findings -> per-user impact and suggested credits under a policy (DESIGN.md section 4).

One row per user and currency. ``impact.sql`` sums the findings per user and
currency (each charge's excess is attributed to exactly one cause there, so
nothing is counted twice); this module applies the policy to each row:
``credit_amount`` is the sum of the components the policy enables, rounded
half-up once per row to the currency's unit; ``topup_reimbursement`` likewise.
The policy itself is read in ``policy.py``.
"""

from __future__ import annotations

import hashlib
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from warroom.detect import compute_findings
from warroom.errors import QueryError
from warroom.impact.policy import COMPONENTS, Policy, PolicyError, load_policy, round_credit
from warroom.pack import Pack, prepare

__all__ = [
    "COMPONENTS",
    "EXPORT_COLUMNS",
    "IMPACT_COLUMNS",
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
    "topup_reimbursement",
    "wrongful_429s",
    "restricted_minutes",
    "review",
    "credit_id",
    "reasons",
)

EXPORT_COLUMNS = (
    "user_id",
    "plan",
    "currency",
    "credit_amount",
    "topup_reimbursement",
    "credit_id",
    "reasons",
)


def credit_id(incident_id: str, user_id: str, currency: str | None) -> str:
    """A stable id for one credit: applying the same credit file twice is detectable."""
    digest = hashlib.sha256(
        "\x1f".join([incident_id, user_id, currency or ""]).encode()
    ).hexdigest()
    return "cr_" + digest[:24]


_MONEY = pa.decimal128(18, 6)
_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("plan", pa.string()),
        ("currency", pa.string()),
        ("duplicate_excess", _MONEY),
        ("failed_request_charges", _MONEY),
        ("abuse_penalty_excess", _MONEY),
        ("overbilled", _MONEY),
        ("credit_amount", _MONEY),
        ("topup_reimbursement", _MONEY),
        ("wrongful_429s", pa.int64()),
        ("restricted_minutes", pa.int64()),
        ("review", pa.bool_()),
        ("credit_id", pa.string()),
        ("reasons", pa.string()),
    ]
)


def impact(
    con: duckdb.DuckDBPyConnection, pack: Pack, policy: Policy, *, stored_findings: bool = False
) -> pa.Table:
    """Per-user impact under ``policy``.

    By default the findings are computed afresh from the data on ``con`` (so the
    answer can never be stale); ``stored_findings`` uses the ``findings`` table
    and shared relations that ``detect`` has just left on this connection.
    """
    if stored_findings:
        # one name for the findings either way: temp.findings
        current = con.execute("SELECT current_database()").fetchone()
        catalog = str(current[0]) if current else "main"
        con.execute(
            f'CREATE OR REPLACE TEMP TABLE findings AS SELECT * FROM "{catalog}".main.findings'
        )
    else:
        prepare(con, pack)
        compute_findings(con, pack, table="findings", temp=True)
    sql = resources.files("warroom.impact").joinpath("impact.sql").read_text(encoding="utf-8")
    try:
        rel = con.sql(sql, params={"start": policy.start, "end": policy.end})
        names, raw = rel.columns, rel.fetchall()
    except duckdb.Error as exc:
        raise QueryError(f"impact: {str(exc).splitlines()[0]}") from None
    out: dict[str, list[Any]] = {c: [] for c in IMPACT_COLUMNS}
    for values in raw:
        row = _policy_row(dict(zip(names, values, strict=True)), policy)
        if row is not None:
            for c in IMPACT_COLUMNS:
                out[c].append(row[c])
    return pa.table(out, schema=_SCHEMA)


def _policy_row(sums: dict[str, Any], policy: Policy) -> dict[str, Any] | None:
    """One impact row from one row of impact.sql, or None when nothing is owed or to report."""
    restricted_minutes = int(
        (Decimal(sums["restricted_micros"]) / 60_000_000).quantize(
            Decimal(1), rounding=ROUND_HALF_UP
        )
    )
    plan = (sums["plan"] or "").lower()
    excluded = plan in policy.exclude_plans
    comp = {c: Decimal(sums[c] or 0) for c in COMPONENTS}
    has_anything = (
        any(comp[c] > 0 for c in COMPONENTS)
        or sums["wrongful_429s"] > 0
        or restricted_minutes > 0
        or sums["review"]
    )
    if not has_anything:
        return None
    owed = sum((comp[c] for c in COMPONENTS[:4] if policy.components[c]), Decimal(0))
    credit = Decimal(0)
    if not excluded and owed > 0:
        credit = owed * (1 + policy.goodwill_percent / 100)
        floor = policy.minimum_credit.get((sums["currency"] or "").lower())
        if floor is not None and credit < floor:
            credit = floor
    reimbursement = (
        comp["topup_reimbursement"]
        if policy.components["topup_reimbursement"] and not excluded
        else Decimal(0)
    )
    reasons = _reasons(sums, restricted_minutes)
    if excluded:
        reasons.append(f"plan {plan} excluded by policy")
    currency = sums["currency"]
    return {
        "user_id": sums["user_id"],
        "plan": sums["plan"],
        "currency": currency,
        **{c: comp[c] for c in COMPONENTS[:4]},
        "credit_amount": round_credit(credit, currency),
        "topup_reimbursement": round_credit(reimbursement, currency),
        "wrongful_429s": int(sums["wrongful_429s"]),
        "restricted_minutes": restricted_minutes,
        "review": bool(sums["review"]),
        "credit_id": credit_id(policy.incident_id, sums["user_id"], currency),
        "reasons": "; ".join(reasons),
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
        (restricted_minutes, f"{restricted_minutes} min wrongly restricted"),
        (sums["n_orphans"], _plural(sums["n_orphans"], "orphan charge") + " (review)"),
        (
            sums["n_unreviewed"],
            _plural(sums["n_unreviewed"], "restriction of a new user", "restrictions of a new user")
            + " (review)",
        ),
    )
    return [text for n, text in clauses if n]


def affected_users(impact_rows: pa.Table) -> pa.Table:
    """The refund job's list: rows owed a credit or a reimbursement, export columns only."""
    zero = pa.scalar(Decimal(0), type=impact_rows.schema.field("credit_amount").type)
    owed = pc.or_(
        pc.greater(impact_rows.column("credit_amount"), zero),
        pc.greater(impact_rows.column("topup_reimbursement"), zero),
    )
    return impact_rows.filter(owed).select(list(EXPORT_COLUMNS))


def totals(rows: pa.Table) -> list[str]:
    """Human summary lines: users and amounts per currency."""
    by: dict[str, list[Decimal]] = {}
    users: dict[str, set[str]] = {}
    for r in rows.select(
        [
            c
            for c in ("user_id", "currency", "credit_amount", "topup_reimbursement")
            if c in rows.column_names
        ]
    ).to_pylist():
        cur = r["currency"] or "(none)"
        acc = by.setdefault(cur, [Decimal(0), Decimal(0)])
        acc[0] += r["credit_amount"]
        acc[1] += r["topup_reimbursement"]
        users.setdefault(cur, set()).add(r["user_id"])
    lines = [
        f"{len(users[c])} user(s) in {c}: credits {a[0]}, top-up reimbursements {a[1]}"
        for c, a in sorted(by.items())
    ]
    return lines or ["no user is owed anything"]
