"""The report's sentences: each episode, each mass reset or marker, in words.

Times are whole seconds, truncated, with ``Z`` (``text.second_text``): the
terminal summary, the Markdown, the HTML and the status-page draft say the same.
"""

from __future__ import annotations

from decimal import Decimal

from warroom.episodes import Episode
from warroom.report.checks import Check
from warroom.report.text import count_text, decimal_text, second_text

#: what each fault is, in words (plural, as a reader says it)
FAULT_WORDS = {
    "duplicate_charges": "duplicate deductions",
    "billing_mismatch:charged_failed_request": "charges for failed requests",
    "billing_mismatch:overbilled": "overbilled charges",
    "abuse_penalty_charges": "charges under a false-positive abuse penalty",
    "abuse_false_positives:false_positive": "false-positive abuse actions",
}


def fault_words(fault: str) -> str:
    return FAULT_WORDS.get(fault, fault)


def money_words(amounts: dict[str, Decimal]) -> str:
    """``2.801044 usd and 0.5 units`` (exact decimals); empty without amounts."""
    return " and ".join(f"{decimal_text(a)} {c}".strip() for c, a in amounts.items())


def began_text(e: Episode) -> str:
    """``began between A and B``, or ``began at or before B`` without a clean row before."""
    if e.clean_before is None:
        return f"began at or before {second_text(e.first)} (no clean comparable row before it)"
    return f"began between {second_text(e.clean_before)} and {second_text(e.first)}"


def ended_text(e: Episode) -> str:
    """``ended between A and B``, or ``ended at or after A`` without a clean row after."""
    if e.clean_after is None:
        return f"ended at or after {second_text(e.last)} (no clean comparable row after it)"
    return f"ended between {second_text(e.last)} and {second_text(e.clean_after)}"


def episode_sentence(e: Episode) -> str:
    """One sentence: what, the bracketed window, users, rows and money."""
    money = money_words(e.amounts)
    users = "1 user" if e.users == 1 else f"{count_text(e.users)} users"
    rows = "1 row" if e.rows == 1 else f"{count_text(e.rows)} rows"
    plans = f" ({', '.join(e.plans)})" if e.plans else ""
    return (
        f"{fault_words(e.fault).capitalize()} {began_text(e)} and {ended_text(e)}: "
        f"{users}{plans}, {rows}" + (f", {money} in excess" if money else "") + "."
    )


def check_sentence(c: Check) -> str:
    """The verdict on a mass reset or a marker."""
    what = (
        f"the mass reset at {second_text(c.ts)} ({c.label})"
        if c.kind == "mass reset"
        else f"{c.label} at {second_text(c.ts)}"
    )
    scope = f" in {c.currency}" if c.currency else ""
    after = _charges(c.after, c.after_amounts)
    before = _charges(c.before, c.before_amounts)
    if c.went_on:
        verdict = "did not stop the drain" if c.kind == "mass reset" else "did not stop it"
        return (
            f"The drain went on after {what}: {after}{scope} in the next 24 h "
            f"({before} in the 24 h before); it {verdict}."
        )
    if c.before:
        return (
            f"No erroneous charge{scope} in the 24 h after {what} ({before} in the 24 h "
            "before): the erroneous charges stopped by then."
        )
    return f"No erroneous charge{scope} in the 24 h before or after {what}."


def _charges(n: int, amounts: dict[str, Decimal]) -> str:
    text = "1 erroneous charge" if n == 1 else f"{count_text(n)} erroneous charges"
    money = money_words(amounts)
    return f"{text} ({money})" if money and n else text
