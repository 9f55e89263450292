"""The report's first screen, in the order a reader asks (issue 13.4): what
happened (the ranked episodes, one sentence each, and whether a reset or a fix
stopped it); who was affected, by plan (every plan, those with none too; plans
the policy excludes counted apart); what we give back, per currency and route,
with a total in one currency when the policy has an ``[fx]`` table; and what the
logs cannot tell, next to those numbers.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from warroom.report.blocks import Block, Facts, Heading, Items, Paragraph, table
from warroom.report.build import Report
from warroom.report.story import check_sentence, episode_sentence, fault_words
from warroom.report.text import count_text, credit_text, decimal_text, second_text

#: episodes told in a sentence each on the first screen (all are in the Episodes table)
EPISODES_TOLD = 8


def title_text(report: Report) -> str:
    """``Post-incident report: ID (duplicate deductions, 2025-06-05)``."""
    if not report.episodes:
        return f"Post-incident report: {report.incident_id}"
    largest = report.episodes[0]
    return (
        f"Post-incident report: {report.incident_id} "
        f"({fault_words(largest.fault)}, {largest.first:%Y-%m-%d})"
    )


def what_happened_section(report: Report) -> list[Block]:
    heading = Heading(2, "What happened", "happened")
    if not report.episodes:
        return [heading, Paragraph("No erroneous rows were found.")]
    told = report.episodes[:EPISODES_TOLD]
    more = len(report.episodes) - len(told)
    blocks: list[Block] = [
        heading,
        Paragraph(
            f"{count_text(len(report.episodes))} episode(s) of "
            f"{count_text(len({e.fault for e in report.episodes}))} fault(s), largest first "
            "(most users affected, then most rows, then money); an episode ends where its "
            f"fault's erroneous rows pause for more than {report.gap_hours} h. Each window lies "
            "between the last clean comparable row before it and the first after it (times in "
            "UTC, whole seconds, truncated)."
        ),
        Items([episode_sentence(e) for e in told], ordered=True),
    ]
    if more:
        blocks.append(Paragraph(f"… and {count_text(more)} smaller episode(s): see Episodes."))
    if report.checks:
        blocks += [
            Heading(3, "Did the fix work?", "fix"),
            Items([check_sentence(c) for c in report.checks]),
        ]
    return blocks


def _per_plan(report: Report) -> dict[str, dict[str, Any]]:
    per: dict[str, dict[str, Any]] = {
        p: {"users": n, "affected": set(), "owed": set(), "review": set(), "w429": 0}
        for p, n in report.plan_users.items()
    }
    for r in report.impact.to_pylist():
        plan = r["plan"] or "(unknown)"
        acc = per.setdefault(
            plan, {"users": 0, "affected": set(), "owed": set(), "review": set(), "w429": 0}
        )
        acc["affected"].add(r["user_id"])
        if r["action"] == "credit":
            acc["owed"].add(r["user_id"])
        if r["review"]:
            acc["review"].add(r["user_id"])
        acc["w429"] += int(r["wrongful_429s"] or 0)
    return per


def plan_rows(report: Report) -> list[dict[str, Any]]:
    """Per plan: users in the data, affected (an impact row), owed, for review, wrongful
    429s, and whether the policy excludes it; every plan seen, in name order."""
    excluded = set(report.manifest.get("policy", {}).get("exclude_plans", []))
    return [
        {
            "plan": plan,
            "users": acc["users"],
            "affected": len(acc["affected"]),
            "owed": len(acc["owed"]),
            "review": len(acc["review"]),
            "wrongful_429s": acc["w429"],
            "excluded": plan in excluded,
        }
        for plan, acc in sorted(_per_plan(report).items())
    ]


def who_section(report: Report) -> list[Block]:
    rows = plan_rows(report)
    columns = ["plan", "users in the data", "affected", "owed", "for review", "wrongful 429s"]

    def cells(p: dict[str, Any]) -> list[str]:
        return [
            p["plan"],
            count_text(p["users"]),
            count_text(p["affected"]),
            count_text(p["owed"]),
            count_text(p["review"]),
            count_text(p["wrongful_429s"]),
        ]

    included = [p for p in rows if not p["excluded"]]
    excluded = [p for p in rows if p["excluded"]]
    blocks: list[Block] = [
        Heading(2, "Who was affected", "affected"),
        Paragraph(
            "Every plan in the data (each user's latest), those with no one affected "
            "too. A user is affected when they have an impact row: something owed, a "
            "wrongful 429, a false-positive restriction, or something to review."
        ),
        table(columns, (cells(p) for p in included), numeric=columns[1:]),
    ]
    if excluded:
        blocks += [
            Paragraph(
                "Plans the credit policy excludes, counted apart: their users keep their "
                "rows (notify or review) and get no credit, compensation or banked resets."
            ),
            table(columns, (cells(p) for p in excluded), numeric=columns[1:]),
        ]
    return blocks


def fx_total(report: Report) -> tuple[str, Decimal | None, list[str]]:
    """The policy's ``[fx]`` currency, the total to give back in it (exact: each
    currency's total times its rate, summed; None without ``[fx]`` or when a currency
    owed has no rate) and the currencies missing a rate."""
    fx = report.manifest.get("policy", {}).get("fx")
    if not fx:
        return "", None, []
    rates = {k: Decimal(v) for k, v in fx["rates"].items()}
    owed = [r for r in report.owed.to_pylist() if r["total"]]
    missing = [r["currency"] for r in owed if r["currency"] not in rates]
    if missing:
        return fx["currency"], None, missing
    total = sum((r["total"] * rates[r["currency"]] for r in owed), Decimal(0))
    return fx["currency"], total, []


def fx_blocks(report: Report) -> list[Block]:
    currency, total, missing = fx_total(report)
    if not currency:
        return []
    if missing:
        return [
            Paragraph(
                f"No total in {currency}: the policy's [fx] table has no rate for "
                f"{', '.join(missing)}."
            )
        ]
    rates = report.manifest["policy"]["fx"]["rates"]
    used = "; ".join(f"1 {c} = {r} {currency}" for c, r in rates.items() if c != currency)
    return [
        Facts(
            [
                (
                    f"Total to give back, in {currency}",
                    f"{decimal_text(total)} {currency} (exact, at the policy's rates: {used})",
                )
            ]
        )
    ]


def limits_facts(report: Report) -> Facts:
    """What the logs cannot tell: coverage gaps, rejected lines, conflicts, rows to review."""
    rows = {d["detector"]: d for d in report.detectors.to_pylist()}
    kinds = {(a["detector"], a["kind"]): a["rows"] for a in report.detector_amounts.to_pylist()}
    gaps = [r for r in report.top_rows.to_pylist() if r["detector"] == "coverage_gaps"]
    n_gaps = rows.get("coverage_gaps", {}).get("rows", 0)
    gap_text = f"{count_text(n_gaps)} clock hour(s) where one log has rows and the other none"
    if gaps:
        gap_text += " (first: " + ", ".join(second_text(g["ts"]) for g in gaps[:3]) + ")"
    gap_text += ": amounts owed in those hours may be missing or incomplete."
    data = report.manifest.get("data", {})
    review = kinds.get(("billing_mismatch", "orphan_charge"), 0) + kinds.get(
        ("abuse_false_positives", "insufficient_history"), 0
    )
    return Facts(
        [
            ("Coverage gaps", gap_text),
            (
                "Rejected input lines",
                f"{count_text(data.get('rows_rejected', 0))} line(s) could not be loaded "
                "(`warroom sources --rejects`); what they held is not counted.",
            ),
            (
                "Conflicting copies",
                f"{count_text(rows.get('ledger_conflicts', {}).get('rows', 0))} ledger entr(ies) "
                "whose copies disagree and "
                f"{count_text(rows.get('price_conflicts', {}).get('rows', 0))} price conflict(s): "
                "one copy is used, the other may be right.",
            ),
            (
                "For review",
                f"{count_text(review)} row(s) the logs cannot settle (orphan charges, "
                "restrictions on users with too little history): never credited by default.",
            ),
        ]
    )


def give_back_blocks(report: Report) -> list[Block]:
    """After the per-currency table: the total in one currency, and the limits."""
    return [
        *fx_blocks(report),
        Heading(3, "What the logs cannot tell", "limits"),
        limits_facts(report),
    ]


def credit_route_text(r: dict[str, Any]) -> str:
    """How a currency's total goes back: to balances, to cards, banked resets."""
    cur = r["currency"]
    text = (
        f"{credit_text(r['balance_credit'], cur)} {cur} to balances, "
        f"{credit_text(r['topup_reimbursement'], cur)} {cur} to cards"
    )
    if r["compensation"]:
        text += f", {credit_text(r['compensation'], cur)} {cur} compensation"
    if r["banked_resets"]:
        text += f", {count_text(r['banked_resets'])} banked reset(s) restored"
    return text
