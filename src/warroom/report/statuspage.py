"""A status-page update, drafted from the run's numbers (issue 13.5).

The draft names the largest episode's window (first and last erroneous row,
whole seconds, truncated) in UTC and in a time zone of the reader's choice, the
plans affected and those not, the symptom users saw (the wrongful 429s by error
code), what is being restored and how, and the reimbursement line. Every figure
comes from the report (the impact table and the episodes): nothing is typed in.

``statuspage_lines`` gives the draft as (kind, text) lines; ``render_statuspage``
writes it as Markdown, ``render_statuspage_text`` as plain text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from warroom.errors import UsageError
from warroom.escape import md_escape, visible
from warroom.report.build import Report, headline_figures
from warroom.report.first import credit_route_text, plan_rows
from warroom.report.story import fault_words
from warroom.report.text import count_text, credit_text, second_text


def time_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (``America/Los_Angeles``); UsageError if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"--tz {name!r}: not a known time zone (e.g. America/Los_Angeles)"
        ) from None


def local_text(ts: datetime, tz: str) -> str:
    """``2025-06-05 09:02:34 PDT``: ``ts`` (naive UTC) in ``tz``, whole seconds, truncated."""
    local = ts.replace(tzinfo=UTC, microsecond=0).astimezone(time_zone(tz))
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"


def _plans_text(names: list[tuple[str, int]]) -> str:
    return ", ".join(f"{p} ({count_text(n)} user{'s' if n != 1 else ''})" for p, n in names)


def statuspage_lines(report: Report) -> list[tuple[str, str]]:
    """The draft as (kind, text): ``title`` once, then ``para`` and ``item`` lines."""
    tz = report.tz
    head = headline_figures(report)
    lines: list[tuple[str, str]] = []
    if not report.episodes:
        lines.append(("title", f"Billing incident {report.incident_id}: no fault found"))
        lines.append(("para", "The logs show no erroneous charge or restriction."))
        return lines
    e = report.episodes[0]
    lines.append(("title", f"Billing incident {report.incident_id}: {fault_words(e.fault)}"))
    window = f"between {second_text(e.first)} and {second_text(e.last)} (UTC)"
    if tz != "UTC":
        window += f", {local_text(e.first, tz)} to {local_text(e.last, tz)}"
    others = len(report.episodes) - 1
    lines.append(
        (
            "para",
            f"What happened: {fault_words(e.fault)} {window}, for {count_text(e.users)} "
            f"user(s)"
            + (f"; {count_text(others)} other episode(s) are in the report." if others else "."),
        )
    )
    rows = plan_rows(report)
    hit = [(p["plan"], p["affected"]) for p in rows if p["affected"] and not p["excluded"]]
    spared = [p["plan"] for p in rows if not p["affected"]]
    excluded = [(p["plan"], p["affected"]) for p in rows if p["excluded"] and p["affected"]]
    lines.append(
        (
            "para",
            f"Who was affected: {count_text(head['users'])} user(s)"
            + (f" on {_plans_text(hit)}" if hit else "")
            + (f". Not affected: {', '.join(spared)}" if spared else "")
            + (f". Excluded from credits by policy: {_plans_text(excluded)}" if excluded else "")
            + ".",
        )
    )
    lines += _symptom_lines(report)
    lines += _restore_lines(report)
    return lines


def _symptom_lines(report: Report) -> list[tuple[str, str]]:
    codes = report.rejections
    if not codes:
        return [("para", "What users saw: no request was wrongly refused.")]
    seen = "; ".join(
        f"{count_text(n)} request(s) refused with 429 {code} ({count_text(u)} user(s))"
        for code, (n, u) in codes.items()
    )
    return [("para", f"What users saw: {seen}.")]


def _restore_lines(report: Report) -> list[tuple[str, str]]:
    owed = [r for r in report.owed.to_pylist() if r["users_owed"]]
    if not owed:
        return [("para", "What we are restoring: nothing is owed under the credit policy.")]
    out: list[tuple[str, str]] = [("para", "What we are restoring, per currency:")]
    for r in owed:
        out.append(
            (
                "item",
                f"{r['currency']}: {count_text(r['users_owed'])} user(s), "
                f"{credit_text(r['total'], r['currency'])} {r['currency']} in all: "
                + credit_route_text(r)
                + ".",
            )
        )
    cards = [r for r in owed if r["topup_reimbursement"]]
    if cards:
        reimbursed = "; ".join(
            f"{credit_text(r['topup_reimbursement'], r['currency'])} {r['currency']}" for r in cards
        )
        out.append(
            (
                "para",
                f"Reimbursement: top-ups forced by the fault, {reimbursed}, go back to the "
                "payment method they were paid with; the rest is credited to balances.",
            )
        )
    else:
        out.append(("para", "Reimbursement: no top-up was forced; credits go to balances."))
    return out


def render_statuspage(report: Report) -> str:
    """The draft as Markdown (values escaped)."""
    out = []
    for kind, text in statuspage_lines(report):
        if kind == "title":
            out.append(f"## {md_escape(text)}\n")
        elif kind == "item":
            out.append(f"- {md_escape(text)}")
        else:
            out.append(("\n" if out and out[-1].startswith("- ") else "") + md_escape(text) + "\n")
    return "\n".join(out).rstrip("\n") + "\n"


def render_statuspage_text(report: Report) -> str:
    """The draft as plain text (control characters shown as escapes)."""
    out = []
    for kind, text in statuspage_lines(report):
        if kind == "title":
            out += [visible(text), "=" * len(visible(text)), ""]
        elif kind == "item":
            out.append(f"  - {visible(text)}")
        else:
            out += [("\n" if out and out[-1].startswith("  - ") else "") + visible(text), ""]
    return "\n".join(out).rstrip("\n") + "\n"
