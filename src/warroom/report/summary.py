"""The report in a few lines of plain text, for ``investigate`` to print on the
terminal: the windows per fault, the coverage gaps, the users and the amounts owed."""

from __future__ import annotations

from typing import Any

from warroom.report.build import Report, headline_figures
from warroom.report.story import check_sentence, episode_sentence
from warroom.report.text import credit_text, duration_text, second_text

#: the largest episodes told in a sentence on the terminal
_EPISODES_SHOWN = 3

#: coverage-gap hours listed before "... and N more"
_GAPS_SHOWN = 5


def summary_lines(report: Report) -> list[str]:
    """A short plain-text summary for the terminal: windows, users, amounts."""
    lines = [f"incident id: {report.incident_id} (it goes into every credit_id)"]
    lines += _episode_lines(report)
    lines += _window_lines(report.windows.to_pylist())
    lines += _gap_lines(report)
    lines += _owed_lines(report)
    return lines


def _episode_lines(report: Report) -> list[str]:
    if not report.episodes:
        return []
    shown = report.episodes[:_EPISODES_SHOWN]
    lines = [f"largest episodes (of {len(report.episodes):,}):"]
    lines += [f"  {i}. {episode_sentence(e)}" for i, e in enumerate(shown, 1)]
    lines += [f"  {check_sentence(c)}" for c in report.checks]
    return lines


def _window_lines(windows: list[dict[str, Any]]) -> list[str]:
    if not windows:
        return ["no erroneous rows found"]
    width = max(len(w["fault"]) for w in windows)
    lines = ["estimated window per fault (UTC):"]
    for w in windows:
        # whole seconds, truncated: the same text as the report's
        first, last = w["window_start"], w["window_end"]
        rows = "1 row" if w["rows"] == 1 else f"{w['rows']:,} rows"
        lines.append(
            f"  {w['fault']:<{width}}  {second_text(first)} -> {second_text(last)}  "
            f"({duration_text(last - first)}, {rows})"
        )
    return lines


def _gap_lines(report: Report) -> list[str]:
    # hours where one log has rows and the other none: the evidence, not the users,
    # is missing there, and every other answer is weaker for it
    gaps = [r for r in report.top_rows.to_pylist() if r["detector"] == "coverage_gaps"]
    if not gaps:
        return []
    total = sum(d["rows"] for d in report.detectors.to_pylist() if d["detector"] == "coverage_gaps")
    lines = [f"coverage gaps (a log is missing, not the users): {total:,} hour(s)"]
    lines += [f"  {second_text(g['ts'])}  {g['detail']}" for g in gaps[:_GAPS_SHOWN]]
    if total > _GAPS_SHOWN:
        lines.append(f"  ... and {total - _GAPS_SHOWN:,} more: `warroom run coverage_gaps`")
    return lines


def _owed_lines(report: Report) -> list[str]:
    head = headline_figures(report)
    lines = [
        f"users affected: {head['users']:,} ({head['owed']:,} owed, "
        f"{head['review']:,} for review); wrongful 429s: {head['w429']:,}; "
        f"minutes wrongly restricted: {head['minutes']:,}"
    ]
    owed = [r for r in report.owed.to_pylist() if r["users_owed"]]
    for r in owed:
        lines.append(
            f"  {r['currency'] or '(none)'}: {r['users_owed']:,} user(s) owed, credits "
            f"{credit_text(r['credit_amount'], r['currency'])} given once: "
            f"{credit_text(r['balance_credit'], r['currency'])} to balances, "
            f"{credit_text(r['topup_reimbursement'], r['currency'])} to cards"
            + (
                f"; compensation {credit_text(r['compensation'], r['currency'])}"
                if r["compensation"]
                else ""
            )
            + (f"; banked resets {r['banked_resets']:,}" if r["banked_resets"] else "")
        )
    if not owed:
        lines.append("  no user is owed anything under this policy")
    return lines
