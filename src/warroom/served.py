"""The served counterfactual (DESIGN.md section 3): which 429s were wrongful.

Without the fault, a wrongly refused request would have been served and paid
for, so each wrongful 429 costs its estimated price in the counterfactual, and
whether a 429 is wrongful depends on the earlier ones. That is a sequential
pass, done here over the candidates alone (``queries/shared/55_rejection_candidates.sql``
computes them, with their counterfactual balance and estimated cost, in SQL),
one user, currency and segment (since a reset) at a time: a group step of the
pack (``warroom.pack.GroupStep``).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from warroom.pack import GroupStep

_ZERO = Decimal(0)
_MONEY = pa.decimal128(38, 6)


def served_rejections(group: pa.Table) -> pa.Table:
    """One user, currency and segment's candidate 429s, in (ts, request_id) order,
    with ``served_cf_balance`` (the counterfactual balance less the estimated
    costs of the wrongful 429s before it in the segment), ``wrongful`` and
    ``charged_cost`` (its estimate if wrongful, else 0).

    A quota 429 is wrongful while the served balance is > 0; an abuse 429 (one
    during a false-positive throttle or block) if it is > 0 or the user had no
    ledger yet. A wrongful 429 with no estimate costs 0.
    """
    cf = group.column("cf_balance").to_pylist()
    cost = group.column("estimated_cost").to_pylist()
    kind = group.column("kind").to_pylist()
    served: list[Decimal | None] = []
    wrongful: list[bool] = []
    charged: list[Decimal] = []
    spent = _ZERO
    for cf_i, cost_i, kind_i in zip(cf, cost, kind, strict=True):
        served_i = None if cf_i is None else cf_i - spent
        is_wrongful = (served_i is not None and served_i > 0) or (
            kind_i == "abuse" and served_i is None
        )
        charged_i = (cost_i or _ZERO) if is_wrongful else _ZERO
        spent += charged_i
        served.append(served_i)
        wrongful.append(is_wrongful)
        charged.append(charged_i)
    return (
        group.append_column("served_cf_balance", pa.array(served, _MONEY))
        .append_column("wrongful", pa.array(wrongful, pa.bool_()))
        .append_column("charged_cost", pa.array(charged, _MONEY))
    )


SERVED_REJECTIONS = GroupStep(
    name="served_rejections",
    source=(
        "-- the candidate 429s; served_rejections (warroom/served.py) takes them in\n"
        "-- order per user, currency and segment\n"
        "SELECT * FROM rejection_candidates"
    ),
    keys=("user_id", "currency", "reset_entry_id"),
    order=("ts", "request_id"),
    function=served_rejections,
    module_path=Path(__file__),
)
