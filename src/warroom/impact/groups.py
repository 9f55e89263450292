"""``warroom impact --by plan|currency|detector``: the impact rows summed per group.

Amounts are never added across currencies: every group is per currency too. The
sums are exact (``Decimal``) and are those of the impact rows themselves, so a group's
total is always the sum of the rows ``warroom impact`` prints for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa

from warroom.impact import COUNT_COLUMNS, MONEY_COLUMNS
from warroom.impact import MONEY_TYPE as _MONEY
from warroom.impact.policy import Policy

BY = ("plan", "currency", "detector")


#: --by detector: the impact column each detection's findings reach, in the pack's words
#: (billing mismatches split by kind, as the incident window names them)
DETECTOR_COLUMNS = (
    ("duplicate_charges", "duplicate_excess"),
    ("billing_mismatch:charged_failed_request", "failed_request_charges"),
    ("abuse_penalty_charges", "abuse_penalty_excess"),
    ("billing_mismatch:overbilled", "overbilled"),
    ("negative_balance_topups", "topup_reimbursement"),
    ("wrongful_rejections", "wrongful_429s"),
    ("spent_banked_resets", "banked_resets"),
    ("abuse_false_positives", "restricted_minutes"),
)


def impact_by(
    rows: pa.Table, by: str, policy: Policy, *, plans: Iterable[str | None] = ()
) -> pa.Table:
    """The impact ``rows`` summed per ``by`` (plan, currency or detector) and currency.

    ``plans`` are the plans in the data: under ``by="plan"`` a plan no impact row
    names is listed too, with 0 users (so "enterprise: 0 affected" can be read).
    """
    if by == "plan":
        return _by_plan(rows, policy, plans)
    if by == "currency":
        return _table(_groups(rows.to_pylist(), lambda r: (r["currency"],)), ["currency"], {})
    if by == "detector":
        return _by_detector(rows.to_pylist())
    raise ValueError(f"impact --by {by!r}: expected one of {', '.join(BY)}")


def _sort_key(value: str | None) -> tuple[bool, str]:
    return (value is None, value or "")


def _groups(
    rows: list[dict[str, Any]], key_of: Any
) -> dict[tuple[str | None, ...], dict[str, Any]]:
    groups: dict[tuple[str | None, ...], dict[str, Any]] = {}
    for r in rows:
        acc = groups.setdefault(key_of(r), _empty())
        acc["users"].add(r["user_id"])
        acc[f"{r['action']}_users"].add(r["user_id"])
        for c in MONEY_COLUMNS:
            acc[c] += r[c]
        for c in COUNT_COLUMNS:
            acc[c] += r[c]
    return groups


def _empty() -> dict[str, Any]:
    acc: dict[str, Any] = {k: set() for k in ("users", "credit_users", "notify_users")}
    acc["review_users"] = set()
    acc.update({c: Decimal(0) for c in MONEY_COLUMNS})
    acc.update({c: 0 for c in COUNT_COLUMNS})
    return acc


def _table(
    groups: dict[tuple[str | None, ...], dict[str, Any]],
    keys: list[str],
    extra: dict[str, pa.Array],
) -> pa.Table:
    """One row per group, keys first (sorted, None last), then ``extra`` (already in that
    order), then the users and the sums."""
    order = sorted(groups, key=lambda k: [_sort_key(v) for v in k])
    cols: dict[str, pa.Array] = {
        name: pa.array([k[i] for k in order], pa.string()) for i, name in enumerate(keys)
    }
    cols.update({name: values.take(_positions(groups, order)) for name, values in extra.items()})
    for c in ("users", "credit_users", "notify_users", "review_users"):
        cols[c] = pa.array([len(groups[k][c]) for k in order], pa.int64())
    for c in MONEY_COLUMNS:
        cols[c] = pa.array([groups[k][c] for k in order], _MONEY)
    for c in COUNT_COLUMNS:
        cols[c] = pa.array([groups[k][c] for k in order], pa.int64())
    return pa.table(cols)


def _positions(groups: dict[tuple[str | None, ...], Any], order: list[Any]) -> pa.Array:
    index = {k: i for i, k in enumerate(groups)}
    return pa.array([index[k] for k in order], pa.int64())


def _by_plan(rows: pa.Table, policy: Policy, plans: Iterable[str | None]) -> pa.Table:
    groups = _groups(rows.to_pylist(), lambda r: (r["plan"], r["currency"]))
    named = {k[0] for k in groups}
    for plan in plans:
        if plan not in named:
            groups[(plan, None)] = _empty()
            named.add(plan)
    excluded = pa.array([(k[0] or "").lower() in policy.exclude_plans for k in groups], pa.bool_())
    return _table(groups, ["plan", "currency"], {"excluded": excluded})


def _by_detector(rows: list[dict[str, Any]]) -> pa.Table:
    """Per detection and currency: the users whose impact row it reaches, and its sum
    there (``amount`` for money, ``count`` for 429s, banked resets and minutes)."""
    out: dict[str, list[Any]] = {
        k: [] for k in ("detector", "impact_column", "currency", "users", "amount", "count")
    }
    currencies = sorted({r["currency"] for r in rows}, key=_sort_key)
    for detector, column in DETECTOR_COLUMNS:
        money = column in MONEY_COLUMNS
        for currency in currencies:
            hit = [r for r in rows if r["currency"] == currency and r[column]]
            if not hit:
                continue
            total = sum((r[column] for r in hit), Decimal(0) if money else 0)
            out["detector"].append(detector)
            out["impact_column"].append(column)
            out["currency"].append(currency)
            out["users"].append(len({r["user_id"] for r in hit}))
            out["amount"].append(total if money else None)
            out["count"].append(None if money else total)
    return pa.table(
        {
            "detector": pa.array(out["detector"], pa.string()),
            "impact_column": pa.array(out["impact_column"], pa.string()),
            "currency": pa.array(out["currency"], pa.string()),
            "users": pa.array(out["users"], pa.int64()),
            "amount": pa.array(out["amount"], _MONEY),
            "count": pa.array(out["count"], pa.int64()),
        }
    )


def known_plans(con: duckdb.DuckDBPyConnection) -> list[str | None]:
    """Every plan a user is on (``user_plan``, which ``impact`` has just built on ``con``)."""
    return [
        r[0] for r in con.execute("SELECT DISTINCT plan FROM user_plan ORDER BY plan").fetchall()
    ]
