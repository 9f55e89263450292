"""The truth's impact row of one user under the default policy (DESIGN.md section 4),
from the findings the audit made: the excess by cause, the credit given once
(balance + card), the action. Computed here apart from warroom.impact.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from warroom.generate.rows import Finding
from warroom.generate.units import MIN, ZERO, money_text, q6
from warroom.generate.users import SimulatedUser

#: decimal places of the generator's currencies: usd is a real currency (ISO 4217:
#: cents); credits and quota units are not, and keep 6 places (DESIGN.md section 4)
_PLACES = {"usd": 2, "credits": 6, "units": 6}


def _round_owed(d: Decimal, currency: str) -> Decimal:
    """Half-up to the currency's places; never to 0 while something is owed."""
    unit = Decimal(1).scaleb(-_PLACES[currency])
    rounded = d.quantize(unit, rounding=ROUND_HALF_UP)
    return unit if d > 0 and rounded == 0 else rounded


def impact_row(
    u: SimulatedUser, cur: str, f: list[Finding], restricted: int, review: bool
) -> dict[str, Any] | None:
    """The user's impact row under the default policy (DESIGN.md section 4), for their
    one currency; None if nothing is owed, nothing was wrongful and nothing to review."""
    comp = {
        "duplicate_charges": ZERO,
        "charged_failed_request": ZERO,
        "abuse_penalty_charges": ZERO,
        "overbilled": ZERO,
        "negative_balance_topups": ZERO,
    }
    n_wrong = banked = 0
    for x in f:
        key = x.detail if x.detector == "billing_mismatch" else x.detector
        if key in comp and x.amount is not None:
            comp[key] += x.amount
        elif x.detector == "wrongful_rejections":
            n_wrong += 1
        elif x.detector == "spent_banked_resets":
            banked += 1
        if x.detector == "billing_mismatch" and x.detail == "orphan_charge":
            review = True
    if not (any(comp.values()) or n_wrong or restricted or review):
        return None
    owed = (
        comp["duplicate_charges"]
        + comp["charged_failed_request"]
        + comp["abuse_penalty_charges"]
        + comp["overbilled"]
    )
    # the credit is the whole value owed, given once: the reimbursed top-ups go back to
    # the card (never more than the credit), the rest to the balance
    credit = _round_owed(owed, cur)
    to_card = min(_round_owed(comp["negative_balance_topups"], cur), credit)
    action = "credit" if credit > 0 or banked > 0 else ("review" if review else "notify")
    return {
        "user_id": u.uid,
        "plan": u.plan.name,
        "currency": cur,
        "duplicate_excess": money_text(q6(comp["duplicate_charges"])),
        "failed_request_charges": money_text(q6(comp["charged_failed_request"])),
        "abuse_penalty_excess": money_text(q6(comp["abuse_penalty_charges"])),
        "overbilled": money_text(q6(comp["overbilled"])),
        "credit_amount": money_text(credit),
        "balance_credit": money_text(credit - to_card),
        "topup_reimbursement": money_text(to_card),
        "compensation": "0",
        "banked_resets": banked,
        "wrongful_429s": n_wrong,
        "restricted_minutes": (2 * restricted + MIN) // (2 * MIN),
        "action": action,
        "review": review,
    }
