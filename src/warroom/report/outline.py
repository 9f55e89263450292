"""The report as a document: one list of blocks, section by section, that both
the Markdown and the HTML render.

``outline`` composes the sections in reading order; each section is one short
function from the ``Report`` to its blocks. With ``charts`` the document is for
HTML: the summary shows cards, and charts stand in for the hourly timeline table.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from warroom.report.blocks import (
    Block,
    Cards,
    Chart,
    Facts,
    Heading,
    Paragraph,
    Table,
    table,
)
from warroom.report.build import TOP_USERS, Report, headline_figures
from warroom.report.details import checks_section, episodes_section, statuspage_section
from warroom.report.first import (
    give_back_blocks,
    title_text,
    what_happened_section,
    who_section,
)
from warroom.report.text import (
    amounts_text,
    count_text,
    credit_text,
    decimal_text,
    duration_text,
    hour_text,
    parse_timestamp_text,
    second_text,
    timestamp_text,
    value_text,
)


def outline(report: Report, *, charts: bool) -> list[Block]:
    """The blocks of the report in reading order; ``charts`` for the HTML's version."""
    return [
        *_title_section(report),
        # the first screen, in the order a reader asks
        *what_happened_section(report),
        *who_section(report),
        *_summary_section(report, charts=charts),
        Heading(2, "What we give back", "give-back"),
        *_owed_section(report),
        *give_back_blocks(report),
        *statuspage_section(report),
        # the rest
        *episodes_section(report),
        *checks_section(report),
        *_windows_section(report),
        *_plans_section(report, charts=charts),
        *_top_users_section(report, charts=charts),
        *_timeline_section(report, charts=charts),
        *_detectors_section(report),
        *_methodology_section(report),
        *_manifest_section(report),
    ]


def _title_section(report: Report) -> list[Block]:
    data = report.manifest.get("data", {})
    span = (
        f"{second_text(parse_timestamp_text(data['start']))} to "
        f"{second_text(parse_timestamp_text(data['end']))}"
        if data.get("start")
        else "no rows loaded"
    )
    return [
        Heading(1, title_text(report)),
        Paragraph(
            f"Generated at: {timestamp_text(report.generated_at)} (the only line that "
            "differs between two reports of the same data and policy)",
            css="generated",
        ),
        Paragraph(
            f"warroom {report.manifest.get('warroom_version', '')} read "
            f"{count_text(data.get('rows_loaded', 0))} rows "
            f"from {count_text(data.get('files', 0))} file(s) "
            f"({count_text(data.get('rows_rejected', 0))} "
            f"rejected), spanning {span} (UTC). Every number below traces to the rows listed "
            "with their file:line, and the run manifest at the end lets anyone reproduce it.",
            css="lede",
        ),
    ]


def _summary_section(report: Report, *, charts: bool) -> list[Block]:
    head = headline_figures(report)
    policy = report.manifest.get("policy", {})
    incident = policy.get("incident", {})
    window = (
        f"{incident.get('start') or 'the start of the data'} to "
        f"{incident.get('end') or 'the end of the data'}"
    )
    credit_policy = (
        "Credit policy",
        f"{policy.get('source', 'default')}; credits for findings from {window}",
    )
    if charts:  # the cards say the rest
        return [
            Heading(3, "Summary", "summary"),
            _summary_cards(report, head),
            Facts([credit_policy]),
        ]
    facts = [
        (
            "Users affected",
            f"{count_text(head['users'])} ({count_text(head['owed'])} owed a credit or a "
            f"reimbursement, {count_text(head['review'])} for review, never credited "
            "by default)",
        ),
        (
            "Wrongful 429s",
            f"{count_text(head['w429'])} (for {count_text(head['w429_users'])} user(s))",
        ),
        (
            "Minutes wrongly restricted",
            f"{count_text(head['minutes'])} (for {count_text(head['restricted_users'])} user(s))",
        ),
        credit_policy,
    ]
    return [Heading(3, "Summary", "summary"), Facts(facts)]


def _summary_cards(report: Report, head: dict[str, int]) -> Cards:
    cards = [
        (
            "Users affected",
            count_text(head["users"]),
            f"{count_text(head['owed'])} owed, {count_text(head['review'])} for review",
        ),
        ("Wrongful 429s", count_text(head["w429"]), f"{count_text(head['w429_users'])} user(s)"),
        (
            "Minutes wrongly restricted",
            count_text(head["minutes"]),
            f"{count_text(head['restricted_users'])} user(s)",
        ),
    ]
    for r in report.owed.to_pylist():
        if r["users_owed"]:
            cards.append(
                (
                    f"Owed in {r['currency'] or '(none)'}",
                    credit_text(r["total"], r["currency"]),
                    _paid_text(r),
                )
            )
    return Cards(cards)


def _paid_text(r: dict[str, Any]) -> str:
    """How a currency's total is paid: to the balance, to the card, compensation."""
    cur = r["currency"]
    text = (
        f"{credit_text(r['balance_credit'], cur)} to balances + "
        f"{credit_text(r['topup_reimbursement'], cur)} to cards"
    )
    if r["compensation"]:
        text += f" + {credit_text(r['compensation'], cur)} compensation"
    if r["banked_resets"]:
        text += f"; {count_text(r['banked_resets'])} banked reset(s) restored"
    return text


def _owed_section(report: Report) -> list[Block]:
    heading = Heading(3, "Owed per currency", "owed")
    owed = report.owed.to_pylist()
    if not owed:
        return [heading, Paragraph("No user is owed anything under this policy.")]
    amounts = [
        "credits",
        "to balances",
        "to cards (top-ups)",
        "compensation",
        "total to give back",
        "banked resets",
    ]
    rows = (
        [
            r["currency"],
            count_text(r["users"]),
            count_text(r["users_owed"]),
            count_text(r["users_review"]),
            credit_text(r["credit_amount"], r["currency"]),
            credit_text(r["balance_credit"], r["currency"]),
            credit_text(r["topup_reimbursement"], r["currency"]),
            credit_text(r["compensation"], r["currency"]),
            credit_text(r["total"], r["currency"]),
            count_text(r["banked_resets"]),
        ]
        for r in owed
    )
    return [
        heading,
        table(
            ["currency", "users", "users owed", "for review", *amounts],
            rows,
            numeric=["users", "users owed", "for review", *amounts],
        ),
        Paragraph(
            "Credits are restored to the balance; top-up reimbursements go "
            "back to the payment method. Both are rounded half-up once per "
            "user, to the currency's minor unit for a real currency (ISO 4217: "
            "cents for usd) and to 6 decimals for credits, quota units and any "
            "other unit, unless the policy's [rounding] says otherwise; an "
            "amount owed never rounds to 0. These totals are the exact sums of "
            "the affected-users export."
        ),
    ]


def _windows_section(report: Report) -> list[Block]:
    heading = Heading(3, "Estimated incident window per fault", "windows")
    windows = report.windows.to_pylist()
    if not windows:
        return [heading, Paragraph("No erroneous rows were found.")]
    rows = (
        [
            w["fault"],
            w["severity"],
            second_text(w["window_start"]),
            second_text(w["window_end"]),
            duration_text(w["window_end"] - w["window_start"]),
            count_text(w["rows"]),
            count_text(w["hours"]),
        ]
        for w in windows
    )
    return [
        heading,
        table(
            ["fault", "severity", "first (UTC)", "last (UTC)", "span", "rows", "hours with rows"],
            rows,
            numeric=["rows", "hours with rows"],
            nowrap=["span", "severity"],
        ),
        Paragraph(
            "A fault's window runs from its first to its last erroneous "
            "row: an estimate from the logs, bounded by what they cover."
        ),
    ]


def _plans_section(report: Report, *, charts: bool) -> list[Block]:
    heading = Heading(2, "Impact by plan", "plans")
    plans = report.plans.to_pylist()
    if not plans:
        return [heading, Paragraph("No user was affected.")]
    chart = Chart("plans", "Credits and top-up reimbursements by plan, per currency")
    figures = [
        "users",
        "users owed",
        "credits",
        "of which to cards",
        "wrongful 429s",
        "restricted minutes",
    ]
    rows = (
        [
            p["plan"] or "(unknown)",
            p["currency"],
            count_text(p["users"]),
            count_text(p["users_owed"]),
            credit_text(p["credit_amount"], p["currency"]),
            credit_text(p["topup_reimbursement"], p["currency"]),
            count_text(p["wrongful_429s"]),
            count_text(p["restricted_minutes"]),
        ]
        for p in plans
    )
    return [
        heading,
        *([chart] if charts else []),
        table(["plan", "currency", *figures], rows, numeric=figures),
    ]


def _top_users_section(report: Report, *, charts: bool) -> list[Block]:
    heading = Heading(2, "Top affected users", "users")
    top = report.top_users.to_pylist()
    if not top:
        return [heading, Paragraph("No user is owed anything under this policy.")]
    chart = Chart("users", "Users owed the most, per currency")
    figures = ["credit", "of which to the card", "wrongful 429s", "restricted minutes"]
    rows = (
        [
            u["user_id"],
            u["plan"] or "",
            u["currency"] or "",
            credit_text(u["credit_amount"], u["currency"]),
            credit_text(u["topup_reimbursement"], u["currency"]),
            count_text(u["wrongful_429s"]),
            count_text(u["restricted_minutes"]),
            u["reasons"] + (" (review)" if u["review"] and "review" not in u["reasons"] else ""),
        ]
        for u in top
    )
    return [
        heading,
        *([chart] if charts else []),
        Paragraph(
            f"Up to {TOP_USERS} users per currency, by credit; the "
            "affected-users export lists all of them."
        ),
        table(
            ["user", "plan", "currency", *figures, "reasons"],
            rows,
            numeric=figures,
            ids=["user"],
            css="wide",
        ),
    ]


def _timeline_section(report: Report, *, charts: bool) -> list[Block]:
    heading = Heading(2, "Timeline", "timeline")
    if report.timeline.num_rows == 0:
        return [heading, Paragraph("No erroneous rows were found.")]
    if charts:
        caption = (
            "Erroneous rows per clock hour (UTC), one strip per "
            "fault; the shaded band is the fault's estimated "
            "window"
        )
        return [heading, Chart("timeline", caption)]
    by_hour: dict[datetime, list[tuple[str, int]]] = {}
    for t in report.timeline.to_pylist():
        by_hour.setdefault(t["hour"], []).append((t["fault"], t["rows"]))
    rows = (
        [
            hour_text(h),
            count_text(sum(n for _, n in faults)),
            ", ".join(f"{f} {count_text(n)}" for f, n in faults),
        ]
        for h, faults in sorted(by_hour.items())
    )
    return [
        heading,
        Paragraph("Erroneous rows per clock hour (UTC), for the hours that have any."),
        table(["hour (UTC)", "rows", "by fault"], rows, numeric=["rows"]),
    ]


def _detectors_section(report: Report) -> list[Block]:
    amounts = report.detector_amounts.to_pylist()
    top_rows = report.top_rows.to_pylist()
    detectors = report.detectors.to_pylist()
    rows = (
        [
            d["detector"],
            d["severity"],
            count_text(d["rows"]),
            count_text(d["users"]),
            amounts_text(_amount_per_currency(amounts, d["detector"])),
        ]
        for d in detectors
    )
    blocks: list[Block] = [
        Heading(2, "Findings by detector", "detectors"),
        table(
            ["detector", "severity", "rows", "users", "amounts"], rows, numeric=["rows", "users"]
        ),
        Paragraph(
            "Amounts are what the detections found, before the credit policy: "
            "an excess charge, a reimbursable top-up, a revenue leak or a balance "
            "difference, as each detector defines it (see Methodology)."
        ),
    ]
    for d in detectors:
        if d["rows"]:
            blocks += _detector_section(
                d, amounts, [r for r in top_rows if r["detector"] == d["detector"]]
            )
    return blocks


def _detector_section(
    d: dict[str, Any], amounts: list[dict[str, Any]], top_rows: list[dict[str, Any]]
) -> list[Block]:
    """One detector with rows: what it means, its totals, its faults, its largest rows."""
    name = d["detector"]
    per_currency = _amount_per_currency(amounts, name)
    totals = f"; amounts {amounts_text(per_currency)}" if per_currency else ""
    order = (
        "largest amount first, then by time"
        if any(r["amount"] is not None for r in top_rows)
        else "by time"
    )
    shown = (
        f"{count_text(len(top_rows))} of {count_text(d['rows'])} rows ({order}):"
        if len(top_rows) < d["rows"]
        else f"All {count_text(d['rows'])} rows ({order}):"
    )
    kinds = [a for a in amounts if a["detector"] == name and a["kind"]]
    return [
        Heading(3, f"{d['title']} ({name}, {d['severity']})", f"d-{name}"),
        Paragraph(d["description"]),
        Paragraph(f"{count_text(d['rows'])} rows for {count_text(d['users'])} user(s){totals}."),
        *([_kinds_table(kinds)] if kinds else []),
        Paragraph(shown),
        _rows_table(top_rows),
    ]


def _kinds_table(kinds: list[dict[str, Any]]) -> Table:
    """A detector's rows per fault (its ``detail``) and currency."""
    with_amount = any(a["amount"] is not None for a in kinds)
    return table(
        ["kind", "currency", "rows", "users"] + (["amount"] if with_amount else []),
        (
            [a["kind"], a["currency"], count_text(a["rows"]), count_text(a["users"])]
            + ([decimal_text(a["amount"])] if with_amount else [])
            for a in kinds
        ),
        numeric=["rows", "users", "amount"],
    )


#: the columns a detector's rows may show (label, field), those never filled left out
_ROW_COLUMNS = [
    ("user", "user_id"),
    ("currency", "currency"),
    ("ts (UTC)", "ts"),
    ("request", "request_id"),
    ("entry", "entry_id"),
    ("amount", "amount"),
    ("detail", "detail"),
    ("file:line", "origin"),
]


def _rows_table(rows: list[dict[str, Any]]) -> Table:
    """A detector's largest rows, each with the ``file:line`` it came from."""
    shown = [
        (label, key)
        for label, key in _ROW_COLUMNS
        if any(r[key] is not None and r[key] != "" for r in rows)
    ]
    return table(
        [label for label, _ in shown],
        ([value_text(r[key]) for _, key in shown] for r in rows),
        numeric=["amount"],
        wrap=["file:line"],
        ids=["user", "request", "entry"],
        css="rows wide",
    )


def _amount_per_currency(amounts: list[dict[str, Any]], detector: str) -> list[tuple[str, Decimal]]:
    per: dict[str, Decimal] = {}
    for a in amounts:
        if a["detector"] == detector and a["amount"] is not None:
            per[a["currency"]] = per.get(a["currency"], Decimal(0)) + a["amount"]
    return sorted(per.items())


def _methodology_section(report: Report) -> list[Block]:
    return [
        Heading(2, "Methodology", "methodology"),
        Paragraph(
            "Every detection is one SQL file of the query pack, run on the loaded data; its "
            "rows are the findings above. Each charge's excess is attributed to exactly one "
            "cause (duplicate, then a charged failed request, then a penalty, then "
            "overbilling), so nothing is credited twice. Credits are computed per user and "
            "currency under the policy in the run manifest. The SHA-256 of each file proves "
            "which SQL produced these numbers."
        ),
        table(
            ["query", "title", "severity", "what a row means", "SHA-256"],
            (
                [q["name"], q["title"], q["severity"], q["description"], q["sha256"]]
                for q in report.methodology.to_pylist()
            ),
            wrap=["SHA-256"],
            css="method wide",
        ),
    ]


def _manifest_section(report: Report) -> list[Block]:
    m = report.manifest
    versions = [
        ("warroom", str(m.get("warroom_version", ""))),
        ("DuckDB", str(m.get("duckdb_version", ""))),
        ("PyArrow", str(m.get("pyarrow_version", ""))),
        ("matplotlib", str(m.get("matplotlib_version", ""))),
        ("incident", str(m.get("incident_id", ""))),
    ]
    return [
        Heading(2, "Run manifest", "manifest"),
        Facts(versions),
        Heading(3, "Policy as used", "policy"),
        table(["setting", "value"], _policy_settings(m.get("policy", {}))),
        *_input_files_section(report),
        *_query_files_section(report),
    ]


def _policy_settings(d: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """The policy as dotted setting names and their values, nested tables flattened."""
    items: list[tuple[str, str]] = []
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            items += _policy_settings(value, name + ".")
        elif isinstance(value, dict | list | tuple):
            items.append((name, ", ".join(str(v) for v in value) if value else "(none)"))
        elif value is None:
            items.append((name, "(none)"))
        elif isinstance(value, bool):
            items.append((name, "true" if value else "false"))
        else:
            items.append((name, str(value)))
    return items


def _input_files_section(report: Report) -> list[Block]:
    heading = Heading(3, "Input files", "sources")
    sources = report.sources.to_pylist()
    if not sources:
        return [heading, Paragraph("No file was loaded.")]
    counts = ["bytes", "rows loaded", "rows rejected"]
    rows = (
        [
            s["path"],
            s["kind"],
            s["format"] + (f"+{s['compression']}" if s.get("compression") else ""),
            s["sha256"],
            count_text(s["size_bytes"]),
            count_text(s["rows_loaded"]),
            count_text(s["rows_rejected"]),
            timestamp_text(s["ingested_at"]),
        ]
        for s in sources
    )
    return [
        heading,
        table(
            ["file", "kind", "format", "SHA-256", *counts, "ingested at (UTC)"],
            rows,
            numeric=counts,
            wrap=["file", "SHA-256"],
            css="hashes wide",
        ),
    ]


def _query_files_section(report: Report) -> list[Block]:
    detections = set(report.detectors.column("detector").to_pylist())
    queries = [
        [q["file"], "detection" if q["name"] in detections else "report table", q["sha256"]]
        for q in report.manifest.get("queries", [])
    ]
    shared = [
        [f"shared/{s['file']}", f"shared relation {s['name']}", s["sha256"]]
        for s in report.manifest.get("shared", [])
    ]
    return [
        Heading(3, "Query files", "query-files"),
        table(["file", "role", "SHA-256"], queries + shared, wrap=["SHA-256"], css="hashes"),
    ]
