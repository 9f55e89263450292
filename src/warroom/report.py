"""The post-incident report: what went wrong, when, to whom, what we give back, and
how anyone can reproduce those numbers.

``build_report`` computes everything on one connection, from findings taken
fresh (as ``impact`` does), into a ``Report`` of Arrow tables and a run manifest
(versions, the policy as used, the SHA-256 of every input file and every query
file). ``render_markdown`` and ``render_html`` turn one ``Report`` into a
document; both walk the same outline, so the two always say the same thing.

Promises:

* Money is printed exactly: decimal text, never through a float (the charts
  place their bars with floats, but every figure printed on them is the exact
  decimal text).
* Deterministic: the same database and policy give byte-identical documents,
  except the one line that says when the report was generated (injectable, and
  ``$SOURCE_DATE_EPOCH`` pins it).
* User-derived text (user ids, plans, file names, details, the incident id) is
  escaped: Markdown cannot be broken out of (no HTML, no table splitting), and
  the HTML cannot run anything.
* The HTML is one self-contained file: CSS inline, charts as inline SVG drawn by
  matplotlib with their glyphs as paths, no fonts, scripts or images fetched.
"""

from __future__ import annotations

import html
import io
import os
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

import warroom
from warroom import catalog
from warroom.errors import QueryError, WarroomError
from warroom.export import Format, write
from warroom.impact import Policy, affected_users, impact, round_credit
from warroom.pack import SEVERITIES, Pack, bind, run

#: rows shown per detector, and users shown per currency
TOP_ROWS = 10
TOP_USERS = 20

#: detectors whose rows are split into faults by their ``detail`` (mirrors
#: queries/incident_window.sql, which names those faults ``detector:detail``)
SPLIT_BY_DETAIL = ("billing_mismatch", "abuse_false_positives")

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
AFFECTED_CSV = "affected-users.csv"

MONEY = pa.decimal128(38, 6)
TS = pa.timestamp("us")

ProgressFn = Callable[[str, float], None]


class ReportError(WarroomError):
    """The report cannot be built (e.g. a replaced incident_window query lacks columns)."""


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class Report:
    """Everything a post-incident report says, as data.

    Tables (all fully ordered):

    * ``owed``: per currency — users, users owed, users for review, credits,
      top-up reimbursements, their total.
    * ``windows``: per fault — detector, severity, first and last erroneous row,
      rows, clock hours with rows.
    * ``timeline``: per fault and clock hour — erroneous rows.
    * ``detectors``: per detector of the pack — title, severity, description, rows, users.
    * ``detector_amounts``: per detector, fault and currency — rows, users, amount.
    * ``top_rows``: per detector, its largest rows, each with the ``file:line`` it came from.
    * ``plans``: per plan and currency — users, users owed, credits, reimbursements,
      wrongful 429s, restricted minutes.
    * ``top_users``: per currency, the users owed most.
    * ``impact``: the impact table under the policy (DESIGN.md section 4).
    * ``methodology``: per query — title, severity, description, file, SHA-256.
    * ``sources``: per input file — kind, format, SHA-256, size, rows.
    """

    incident_id: str
    generated_at: datetime
    owed: pa.Table
    windows: pa.Table
    timeline: pa.Table
    detectors: pa.Table
    detector_amounts: pa.Table
    top_rows: pa.Table
    plans: pa.Table
    top_users: pa.Table
    impact: pa.Table
    methodology: pa.Table
    sources: pa.Table
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def affected_users(self) -> pa.Table:
        """What a refund job consumes (``export affected-users``)."""
        return affected_users(self.impact)


def default_generated_at() -> datetime:
    """Now (UTC, whole seconds), or ``$SOURCE_DATE_EPOCH`` when set, for reproducible builds."""
    pinned = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if pinned:
        try:
            return datetime.fromtimestamp(int(pinned), UTC).replace(tzinfo=None)
        except (ValueError, OverflowError, OSError):
            raise ReportError(f"SOURCE_DATE_EPOCH={pinned!r} is not epoch seconds") from None
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def build_report(
    con: duckdb.DuckDBPyConnection,
    pack: Pack,
    policy: Policy,
    *,
    generated_at: datetime | None = None,
    progress: ProgressFn | None = None,
    stored_findings: bool = False,
) -> Report:
    """Compute the post-incident report on ``con`` under ``policy``.

    Findings are computed afresh from the loaded data (a stored ``findings``
    table is not trusted), unless ``stored_findings`` says ``detect`` has just
    stored them on this connection; either way once, and every table of the report
    reads those same findings, so the report agrees with ``warroom impact``.

    Raises QueryError when a query of the pack fails, ReportError when the
    pack's ``incident_window`` does not return the columns the report needs.
    """

    def step(fraction: float) -> None:
        if progress:
            progress("report", fraction)

    step(0.0)
    # impact takes the findings fresh into temp.findings (shared relations as
    # tables), unless detect has just stored them on this connection
    impact_rows = impact(con, pack, policy, stored_findings=stored_findings)
    step(0.7)
    windows, timeline = _windows(con, pack)
    detectors, detector_amounts = _detectors(con, pack)
    report = Report(
        incident_id=policy.incident_id,
        generated_at=generated_at or default_generated_at(),
        owed=_owed(impact_rows),
        windows=windows,
        timeline=timeline,
        detectors=detectors,
        detector_amounts=detector_amounts,
        top_rows=_top_rows(con, TOP_ROWS),
        plans=_plans(impact_rows),
        top_users=_top_users(impact_rows, TOP_USERS),
        impact=impact_rows,
        methodology=_methodology(pack),
        sources=catalog.sources(con),
        manifest=_manifest(con, pack, policy),
    )
    step(1.0)
    return report


def _sql(
    con: duckdb.DuckDBPyConnection, what: str, sql: str, params: dict[str, Any] | None = None
) -> pa.Table:
    try:
        return con.sql(sql, params=params).to_arrow_table()
    except duckdb.Error as exc:
        raise QueryError(f"report ({what}): {str(exc).strip().splitlines()[0]}") from None


def _windows(con: duckdb.DuckDBPyConnection, pack: Pack) -> tuple[pa.Table, pa.Table]:
    query = pack.get("incident_window")
    rows = run(con, query, bind(query, {}))
    need = {"fault", "window_start", "window_end", "rows_total", "hour", "rows_in_hour"}
    missing = need - set(rows.column_names)
    if missing:
        raise ReportError(
            f"{query.path.name}: the report needs the column(s) {', '.join(sorted(missing))}"
        )
    severity = {q.name: q.severity for q in pack.queries.values()}
    per_fault: dict[str, dict[str, Any]] = {}
    hourly: list[tuple[datetime, str, int]] = []
    for r in rows.select(sorted(need)).to_pylist():
        w = per_fault.setdefault(
            r["fault"],
            {
                "fault": r["fault"],
                "detector": r["fault"].split(":", 1)[0],
                "window_start": r["window_start"],
                "window_end": r["window_end"],
                "rows": int(r["rows_total"]),
                "hours": 0,
            },
        )
        w["severity"] = severity.get(w["detector"], "info")
        w["hours"] += 1
        hourly.append((r["hour"], r["fault"], int(r["rows_in_hour"])))
    ordered = sorted(per_fault.values(), key=lambda w: (w["window_start"], w["fault"]))
    windows = pa.Table.from_pylist(
        ordered,
        schema=pa.schema(
            [
                ("fault", pa.string()),
                ("detector", pa.string()),
                ("window_start", TS),
                ("window_end", TS),
                ("rows", pa.int64()),
                ("hours", pa.int64()),
                ("severity", pa.string()),
            ]
        ),
    )
    hourly.sort()
    timeline = pa.table(
        {
            "hour": pa.array([h for h, _, _ in hourly], TS),
            "fault": pa.array([f for _, f, _ in hourly], pa.string()),
            "rows": pa.array([n for _, _, n in hourly], pa.int64()),
        }
    )
    return windows, timeline


_BY_DETECTOR = """
SELECT detector,
       CASE WHEN detector IN ('billing_mismatch', 'abuse_false_positives')
            THEN coalesce(detail, '') ELSE '' END AS kind,
       coalesce(currency, '') AS currency, user_id,
       count(*) AS n, sum(CAST(amount AS DECIMAL(38,6))) AS amount
FROM temp.findings
GROUP BY 1, 2, 3, 4
ORDER BY 1, 2, 3, 4 NULLS FIRST
"""


def _detectors(con: duckdb.DuckDBPyConnection, pack: Pack) -> tuple[pa.Table, pa.Table]:
    grouped = _sql(con, "findings by detector", _BY_DETECTOR).to_pylist()
    users: dict[str, set[str]] = {}
    rows: dict[str, int] = {}
    amounts: dict[tuple[str, str, str], list[Any]] = {}  # -> [rows, users, amount]
    for g in grouped:
        det, user = g["detector"], g["user_id"]
        rows[det] = rows.get(det, 0) + int(g["n"])
        if user is not None:
            users.setdefault(det, set()).add(user)
        acc = amounts.setdefault((det, g["kind"], g["currency"]), [0, set(), None])
        acc[0] += int(g["n"])
        if user is not None:
            acc[1].add(user)
        if g["amount"] is not None:
            acc[2] = (acc[2] or Decimal(0)) + g["amount"]
    queries = sorted(
        (q for q in pack.queries.values() if q.findings),
        key=lambda q: (-SEVERITIES.index(q.severity), q.name),
    )
    detectors = pa.table(
        {
            "detector": [q.name for q in queries],
            "title": [q.title for q in queries],
            "severity": [q.severity for q in queries],
            "description": [q.description for q in queries],
            "rows": pa.array([rows.get(q.name, 0) for q in queries], pa.int64()),
            "users": pa.array([len(users.get(q.name, ())) for q in queries], pa.int64()),
        }
    )
    keys = sorted(amounts)
    detector_amounts = pa.table(
        {
            "detector": [k[0] for k in keys],
            "kind": [k[1] for k in keys],
            "currency": [k[2] for k in keys],
            "rows": pa.array([amounts[k][0] for k in keys], pa.int64()),
            "users": pa.array([len(amounts[k][1]) for k in keys], pa.int64()),
            "amount": pa.array([amounts[k][2] for k in keys], MONEY),
        }
    )
    return detectors, detector_amounts


_TOP_ROWS = """
WITH ranked AS (
    SELECT f.*, row_number() OVER (
        PARTITION BY f.detector
        ORDER BY abs(f.amount) DESC NULLS LAST, f.ts NULLS LAST, f.user_id NULLS LAST,
                 f.currency NULLS LAST, f.entry_id NULLS LAST, f.request_id NULLS LAST,
                 f.source_id NULLS LAST, f.line NULLS LAST, f.detail NULLS LAST) AS rank
    FROM temp.findings AS f
)
SELECT r.detector, r.rank, r.user_id, r.currency, r.ts, r.request_id, r.entry_id,
       CAST(r.amount AS DECIMAL(38,6)) AS amount, r.detail,
       s.path || ':' || CAST(r.line AS VARCHAR) AS origin
FROM ranked AS r
LEFT JOIN sources AS s ON s.source_id = r.source_id
WHERE r.rank <= $limit
ORDER BY r.detector, r.rank
"""


def _top_rows(con: duckdb.DuckDBPyConnection, limit: int) -> pa.Table:
    return _sql(con, "top rows", _TOP_ROWS, {"limit": limit})


def _dec(v: Any) -> Decimal:
    return Decimal(0) if v is None else Decimal(v)


def _owed(impact_rows: pa.Table) -> pa.Table:
    per: dict[str, dict[str, Any]] = {}
    for r in impact_rows.to_pylist():
        cur = r["currency"] or ""
        acc = per.setdefault(
            cur,
            {
                "currency": cur,
                "users": set(),
                "owed": set(),
                "review": set(),
                "credit_amount": Decimal(0),
                "topup_reimbursement": Decimal(0),
            },
        )
        acc["users"].add(r["user_id"])
        credit, reimb = _dec(r["credit_amount"]), _dec(r["topup_reimbursement"])
        if credit > 0 or reimb > 0:
            acc["owed"].add(r["user_id"])
        if r["review"]:
            acc["review"].add(r["user_id"])
        acc["credit_amount"] += credit
        acc["topup_reimbursement"] += reimb
    rows = [per[c] for c in sorted(per)]
    return pa.table(
        {
            "currency": [r["currency"] for r in rows],
            "users": pa.array([len(r["users"]) for r in rows], pa.int64()),
            "users_owed": pa.array([len(r["owed"]) for r in rows], pa.int64()),
            "users_review": pa.array([len(r["review"]) for r in rows], pa.int64()),
            "credit_amount": pa.array([r["credit_amount"] for r in rows], MONEY),
            "topup_reimbursement": pa.array([r["topup_reimbursement"] for r in rows], MONEY),
            "total": pa.array([r["credit_amount"] + r["topup_reimbursement"] for r in rows], MONEY),
        }
    )


def _plans(impact_rows: pa.Table) -> pa.Table:
    per: dict[tuple[str, str], dict[str, Any]] = {}
    for r in impact_rows.to_pylist():
        key = (r["plan"] or "", r["currency"] or "")
        acc = per.setdefault(
            key,
            {
                "users": set(),
                "owed": set(),
                "credit": Decimal(0),
                "reimb": Decimal(0),
                "w429": 0,
                "minutes": 0,
            },
        )
        acc["users"].add(r["user_id"])
        credit, reimb = _dec(r["credit_amount"]), _dec(r["topup_reimbursement"])
        if credit > 0 or reimb > 0:
            acc["owed"].add(r["user_id"])
        acc["credit"] += credit
        acc["reimb"] += reimb
        acc["w429"] += int(r["wrongful_429s"] or 0)
        acc["minutes"] += int(r["restricted_minutes"] or 0)
    keys = sorted(per)
    return pa.table(
        {
            "plan": [k[0] for k in keys],
            "currency": [k[1] for k in keys],
            "users": pa.array([len(per[k]["users"]) for k in keys], pa.int64()),
            "users_owed": pa.array([len(per[k]["owed"]) for k in keys], pa.int64()),
            "credit_amount": pa.array([per[k]["credit"] for k in keys], MONEY),
            "topup_reimbursement": pa.array([per[k]["reimb"] for k in keys], MONEY),
            "wrongful_429s": pa.array([per[k]["w429"] for k in keys], pa.int64()),
            "restricted_minutes": pa.array([per[k]["minutes"] for k in keys], pa.int64()),
        }
    )


def _top_users(impact_rows: pa.Table, limit: int) -> pa.Table:
    owed = [
        r
        for r in impact_rows.to_pylist()
        if _dec(r["credit_amount"]) > 0 or _dec(r["topup_reimbursement"]) > 0
    ]
    owed.sort(
        key=lambda r: (
            r["currency"] or "",
            -_dec(r["credit_amount"]),
            -_dec(r["topup_reimbursement"]),
            r["user_id"],
        )
    )
    picked: list[dict[str, Any]] = []
    per_currency: dict[str, int] = {}
    for r in owed:
        cur = r["currency"] or ""
        per_currency[cur] = per_currency.get(cur, 0) + 1
        if per_currency[cur] <= limit:
            picked.append(r)
    columns = [
        "user_id",
        "plan",
        "currency",
        "credit_amount",
        "topup_reimbursement",
        "wrongful_429s",
        "restricted_minutes",
        "review",
        "reasons",
    ]
    schema = impact_rows.schema
    return pa.table({c: pa.array([r[c] for r in picked], schema.field(c).type) for c in columns})


_HEADER_KEY = re.compile(r"^--\s?([a-z_]+)\s*:\s*(.*?)\s*$")
_HEADER_MORE = re.compile(r"^--\s{2,}(\S.*?)\s*$")


def _methodology(pack: Pack) -> pa.Table:
    queries = sorted(pack.queries.values(), key=lambda q: q.name)
    return pa.table(
        {
            "name": [q.name for q in queries],
            "title": [q.title for q in queries],
            "severity": [q.severity for q in queries],
            "description": [q.description for q in queries],
            "file": [q.path.name for q in queries],
            "sha256": [q.sha256 for q in queries],
        }
    )


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _manifest(con: duckdb.DuckDBPyConnection, pack: Pack, policy: Policy) -> dict[str, Any]:
    spans = con.execute("SELECT start_ts, end_ts FROM data_span").fetchall()
    span = spans[0] if spans else None
    srcs = catalog.sources(con).to_pylist()
    return {
        "warroom_version": warroom.__version__,
        "duckdb_version": duckdb.__version__,
        "pyarrow_version": pa.__version__,
        "matplotlib_version": _version("matplotlib"),
        "incident_id": policy.incident_id,
        "policy": policy.as_dict(),
        "data": {
            "start": _iso(span[0]) if span and span[0] else None,
            "end": _iso(span[1]) if span and span[1] else None,
            "files": len(srcs),
            "rows_loaded": sum(int(s["rows_loaded"]) for s in srcs),
            "rows_rejected": sum(int(s["rows_rejected"]) for s in srcs),
        },
        "sources": [
            {
                "path": s["path"],
                "kind": s["kind"],
                "sha256": s["sha256"],
                "size_bytes": int(s["size_bytes"]),
                "rows_loaded": int(s["rows_loaded"]),
                "rows_rejected": int(s["rows_rejected"]),
            }
            for s in srcs
        ],
        "queries": [
            {"name": q.name, "file": q.path.name, "sha256": q.sha256}
            for q in sorted(pack.queries.values(), key=lambda q: q.name)
        ],
        "shared": [{"name": s.name, "file": s.path.name, "sha256": s.sha256} for s in pack.shared],
    }


# --------------------------------------------------------------------------- text


def _iso(ts: datetime | None) -> str:
    """``2025-06-01T16:00:00Z`` (UTC), with microseconds only when there are some."""
    if ts is None:
        return ""
    text = ts.replace(tzinfo=None).isoformat(timespec="microseconds")
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    return f"{whole}.{frac}Z" if frac else f"{whole}Z"


def _hour(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:00Z")


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [
        f"{days} d" if days else "",
        f"{hours} h" if hours else "",
        f"{mins} min" if mins or not (days or hours) else "",
    ]
    return " ".join(p for p in parts if p)


def _num(n: int) -> str:
    return f"{n:,}"


def _plain(d: Decimal | None) -> str:
    return "" if d is None else format(d, "f")


def credit_text(amount: Decimal | None, currency: str | None) -> str:
    """A credit in its currency's unit (cents for usd): exact, never rounded here.

    Credits are rounded once per row by impact; a sum of them is already in the
    unit, so trimming the stored 6 decimals loses nothing. A value that is not
    (e.g. a goodwill policy's) keeps all its decimals.
    """
    if amount is None:
        return ""
    unit_value = round_credit(amount, currency)
    return format(unit_value if unit_value == amount else amount, "f")


def _amounts_text(pairs: Iterable[tuple[str, Decimal | None]]) -> str:
    shown = [f"{_plain(a)} {c}".strip() for c, a in pairs if a is not None]
    return "; ".join(shown)


def _severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0


# --------------------------------------------------------------------------- outline

# One outline of blocks, rendered by both formats, so they cannot drift apart.


@dataclass
class _Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass
class _Para:
    text: str
    css: str = ""


@dataclass
class _Facts:
    items: list[tuple[str, str]]


@dataclass
class _Table:
    columns: list[str]
    rows: list[list[str]]
    numeric: list[bool]
    #: columns holding long unbroken text (hashes, paths) that may wrap anywhere
    wrap: list[bool] = field(default_factory=list)
    #: columns never wrapped (timestamps, short spans)
    nowrap: list[bool] = field(default_factory=list)
    #: identifiers: unbroken on screen, broken anywhere in print if they must
    ids: list[bool] = field(default_factory=list)
    css: str = ""


@dataclass
class _Chart:
    name: str
    caption: str


@dataclass
class _Cards:
    items: list[tuple[str, str, str]]  # label, value, note


_Block = _Heading | _Para | _Facts | _Table | _Chart | _Cards


def _table(
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    numeric: Iterable[str] = (),
    wrap: Iterable[str] = (),
    nowrap: Iterable[str] = (),
    ids: Iterable[str] = (),
    css: str = "",
) -> _Table:
    num, wr, nw, ident = set(numeric), set(wrap), set(nowrap), set(ids)
    return _Table(
        list(columns),
        [list(r) for r in rows],
        [c in num for c in columns],
        [c in wr for c in columns],
        [c in nw or "UTC" in c for c in columns],
        [c in ident for c in columns],
        css,
    )


def _headline(report: Report) -> dict[str, int]:
    users: set[str] = set()
    owed: set[str] = set()
    review: set[str] = set()
    minutes: dict[str, int] = {}
    w429 = 0
    for r in report.impact.to_pylist():
        users.add(r["user_id"])
        if _dec(r["credit_amount"]) > 0 or _dec(r["topup_reimbursement"]) > 0:
            owed.add(r["user_id"])
        if r["review"]:
            review.add(r["user_id"])
        w429 += int(r["wrongful_429s"] or 0)
        minutes[r["user_id"]] = max(minutes.get(r["user_id"], 0), int(r["restricted_minutes"] or 0))
    w429_users = {r["user_id"] for r in report.impact.to_pylist() if r["wrongful_429s"]}
    return {
        "users": len(users),
        "owed": len(owed),
        "review": len(review),
        "w429": w429,
        "w429_users": len(w429_users),
        "minutes": sum(minutes.values()),
        "restricted_users": sum(1 for m in minutes.values() if m),
    }


def _policy_items(d: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            items += _policy_items(value, name + ".")
        elif isinstance(value, dict | list | tuple):
            items.append((name, ", ".join(str(v) for v in value) if value else "(none)"))
        elif value is None:
            items.append((name, "(none)"))
        elif isinstance(value, bool):
            items.append((name, "true" if value else "false"))
        else:
            items.append((name, str(value)))
    return items


def _outline(report: Report, *, charts: bool) -> list[_Block]:
    m = report.manifest
    data = m.get("data", {})
    head = _headline(report)
    policy = m.get("policy", {})
    incident = policy.get("incident", {})
    blocks: list[_Block] = [_Heading(1, f"Post-incident report: {report.incident_id}")]
    blocks.append(
        _Para(
            f"Generated at: {_iso(report.generated_at)} (the only line that "
            "differs between two reports of the same data and policy)",
            css="generated",
        )
    )
    span = f"{data.get('start')} to {data.get('end')}" if data.get("start") else "no rows loaded"
    blocks.append(
        _Para(
            f"warroom {m.get('warroom_version', '')} read {_num(data.get('rows_loaded', 0))} rows "
            f"from {_num(data.get('files', 0))} file(s) ({_num(data.get('rows_rejected', 0))} "
            f"rejected), spanning {span} (UTC). Every number below traces to the rows listed "
            "with their file:line, and the run manifest at the end lets anyone reproduce it.",
            css="lede",
        )
    )

    # ---- summary
    blocks.append(_Heading(2, "Summary", "summary"))
    owed = report.owed.to_pylist()
    cards = [
        (
            "Users affected",
            _num(head["users"]),
            f"{_num(head['owed'])} owed, {_num(head['review'])} for review",
        ),
        ("Wrongful 429s", _num(head["w429"]), f"{_num(head['w429_users'])} user(s)"),
        (
            "Minutes wrongly restricted",
            _num(head["minutes"]),
            f"{_num(head['restricted_users'])} user(s)",
        ),
    ]
    for r in owed:
        if r["users_owed"]:
            cards.append(
                (
                    f"Owed in {r['currency'] or '(none)'}",
                    credit_text(r["total"], r["currency"]),
                    f"credits {credit_text(r['credit_amount'], r['currency'])} + "
                    f"reimbursements {credit_text(r['topup_reimbursement'], r['currency'])}",
                )
            )
    window = (
        f"{incident.get('start') or 'the start of the data'} to "
        f"{incident.get('end') or 'the end of the data'}"
    )
    facts = [
        (
            "Users affected",
            f"{_num(head['users'])} ({_num(head['owed'])} owed a credit or a "
            f"reimbursement, {_num(head['review'])} for review, never credited "
            "by default)",
        ),
        ("Wrongful 429s", f"{_num(head['w429'])} (for {_num(head['w429_users'])} user(s))"),
        (
            "Minutes wrongly restricted",
            f"{_num(head['minutes'])} (for {_num(head['restricted_users'])} user(s))",
        ),
        ("Credit policy", f"{policy.get('source', 'default')}; credits for findings from {window}"),
    ]
    if charts:  # the cards say the rest
        blocks += [_Cards(cards), _Facts(facts[-1:])]
    else:
        blocks.append(_Facts(facts))
    blocks.append(_Heading(3, "Owed per currency", "owed"))
    if owed:
        blocks.append(
            _table(
                [
                    "currency",
                    "users",
                    "users owed",
                    "for review",
                    "credits",
                    "top-up reimbursements",
                    "total to give back",
                ],
                (
                    [
                        r["currency"],
                        _num(r["users"]),
                        _num(r["users_owed"]),
                        _num(r["users_review"]),
                        credit_text(r["credit_amount"], r["currency"]),
                        credit_text(r["topup_reimbursement"], r["currency"]),
                        credit_text(r["total"], r["currency"]),
                    ]
                    for r in owed
                ),
                numeric=[
                    "users",
                    "users owed",
                    "for review",
                    "credits",
                    "top-up reimbursements",
                    "total to give back",
                ],
            )
        )
        blocks.append(
            _Para(
                "Credits are restored to the balance; top-up reimbursements go "
                "back to the payment method. Both are rounded half-up once per "
                "user (cents for usd, 6 decimals for credits, whole units "
                "otherwise), so these totals are the exact sums of the "
                "affected-users export."
            )
        )
    else:
        blocks.append(_Para("No user is owed anything under this policy."))

    blocks.append(_Heading(3, "Estimated incident window per fault", "windows"))
    windows = report.windows.to_pylist()
    if windows:
        blocks.append(
            _table(
                [
                    "fault",
                    "severity",
                    "first (UTC)",
                    "last (UTC)",
                    "span",
                    "rows",
                    "hours with rows",
                ],
                (
                    [
                        w["fault"],
                        w["severity"],
                        _iso(w["window_start"]),
                        _iso(w["window_end"]),
                        _duration(w["window_end"] - w["window_start"]),
                        _num(w["rows"]),
                        _num(w["hours"]),
                    ]
                    for w in windows
                ),
                numeric=["rows", "hours with rows"],
                nowrap=["span", "severity"],
            )
        )
        blocks.append(
            _Para(
                "A fault's window runs from its first to its last erroneous "
                "row: an estimate from the logs, bounded by what they cover."
            )
        )
    else:
        blocks.append(_Para("No erroneous rows were found."))

    # ---- impact
    blocks.append(_Heading(2, "Impact by plan", "plans"))
    plans = report.plans.to_pylist()
    if plans:
        if charts:
            blocks.append(
                _Chart("plans", "Credits and top-up reimbursements by plan, per currency")
            )
        blocks.append(
            _table(
                [
                    "plan",
                    "currency",
                    "users",
                    "users owed",
                    "credits",
                    "top-up reimbursements",
                    "wrongful 429s",
                    "restricted minutes",
                ],
                (
                    [
                        p["plan"] or "(unknown)",
                        p["currency"],
                        _num(p["users"]),
                        _num(p["users_owed"]),
                        credit_text(p["credit_amount"], p["currency"]),
                        credit_text(p["topup_reimbursement"], p["currency"]),
                        _num(p["wrongful_429s"]),
                        _num(p["restricted_minutes"]),
                    ]
                    for p in plans
                ),
                numeric=[
                    "users",
                    "users owed",
                    "credits",
                    "top-up reimbursements",
                    "wrongful 429s",
                    "restricted minutes",
                ],
            )
        )
    else:
        blocks.append(_Para("No user was affected."))

    blocks.append(_Heading(2, "Top affected users", "users"))
    top = report.top_users.to_pylist()
    if top:
        if charts:
            blocks.append(_Chart("users", "Users owed the most, per currency"))
        blocks.append(
            _Para(
                f"Up to {TOP_USERS} users per currency, by credit; the "
                "affected-users export lists all of them."
            )
        )
        blocks.append(
            _table(
                [
                    "user",
                    "plan",
                    "currency",
                    "credit",
                    "top-up reimbursement",
                    "wrongful 429s",
                    "restricted minutes",
                    "reasons",
                ],
                (
                    [
                        u["user_id"],
                        u["plan"] or "",
                        u["currency"] or "",
                        credit_text(u["credit_amount"], u["currency"]),
                        credit_text(u["topup_reimbursement"], u["currency"]),
                        _num(u["wrongful_429s"]),
                        _num(u["restricted_minutes"]),
                        u["reasons"]
                        + (" (review)" if u["review"] and "review" not in u["reasons"] else ""),
                    ]
                    for u in top
                ),
                numeric=["credit", "top-up reimbursement", "wrongful 429s", "restricted minutes"],
                ids=["user"],
                css="wide",
            )
        )
    else:
        blocks.append(_Para("No user is owed anything under this policy."))

    # ---- timeline
    blocks.append(_Heading(2, "Timeline", "timeline"))
    if report.timeline.num_rows == 0:
        blocks.append(_Para("No erroneous rows were found."))
    elif charts:
        blocks.append(
            _Chart(
                "timeline",
                "Erroneous rows per clock hour (UTC), one strip per "
                "fault; the shaded band is the fault's estimated "
                "window",
            )
        )
    else:
        by_hour: dict[datetime, list[tuple[str, int]]] = {}
        for t in report.timeline.to_pylist():
            by_hour.setdefault(t["hour"], []).append((t["fault"], t["rows"]))
        blocks.append(_Para("Erroneous rows per clock hour (UTC), for the hours that have any."))
        blocks.append(
            _table(
                ["hour (UTC)", "rows", "by fault"],
                (
                    [
                        _hour(h),
                        _num(sum(n for _, n in faults)),
                        ", ".join(f"{f} {_num(n)}" for f, n in faults),
                    ]
                    for h, faults in sorted(by_hour.items())
                ),
                numeric=["rows"],
            )
        )

    # ---- detectors
    blocks.append(_Heading(2, "Findings by detector", "detectors"))
    dets = report.detectors.to_pylist()
    amounts = report.detector_amounts.to_pylist()
    blocks.append(
        _table(
            ["detector", "severity", "rows", "users", "amounts"],
            (
                [
                    d["detector"],
                    d["severity"],
                    _num(d["rows"]),
                    _num(d["users"]),
                    _amounts_text(_by_currency(amounts, d["detector"])),
                ]
                for d in dets
            ),
            numeric=["rows", "users"],
        )
    )
    blocks.append(
        _Para(
            "Amounts are what the detections found, before the credit policy: "
            "an excess charge, a reimbursable top-up, a revenue leak or a balance "
            "difference, as each detector defines it (see Methodology)."
        )
    )
    top_rows = report.top_rows.to_pylist()
    for d in dets:
        if not d["rows"]:
            continue
        name = d["detector"]
        blocks.append(_Heading(3, f"{d['title']} ({name}, {d['severity']})", f"d-{name}"))
        blocks.append(_Para(d["description"]))
        blocks.append(
            _Para(
                f"{_num(d['rows'])} rows for {_num(d['users'])} user(s)"
                + (
                    f"; amounts {_amounts_text(_by_currency(amounts, name))}"
                    if _by_currency(amounts, name)
                    else ""
                )
                + "."
            )
        )
        kinds = [a for a in amounts if a["detector"] == name and a["kind"]]
        if kinds:
            with_amount = any(a["amount"] is not None for a in kinds)
            blocks.append(
                _table(
                    ["kind", "currency", "rows", "users"] + (["amount"] if with_amount else []),
                    (
                        [a["kind"], a["currency"], _num(a["rows"]), _num(a["users"])]
                        + ([_plain(a["amount"])] if with_amount else [])
                        for a in kinds
                    ),
                    numeric=["rows", "users", "amount"],
                )
            )
        mine = [r for r in top_rows if r["detector"] == name]
        columns = [
            ("user", "user_id"),
            ("currency", "currency"),
            ("ts (UTC)", "ts"),
            ("request", "request_id"),
            ("entry", "entry_id"),
            ("amount", "amount"),
            ("detail", "detail"),
            ("file:line", "origin"),
        ]
        shown = [
            (label, key)
            for label, key in columns
            if any(r[key] is not None and r[key] != "" for r in mine)
        ]
        order = (
            "largest amount first, then by time"
            if any(r["amount"] is not None for r in mine)
            else "by time"
        )
        blocks.append(
            _Para(
                f"{_num(len(mine))} of {_num(d['rows'])} rows ({order}):"
                if len(mine) < d["rows"]
                else f"All {_num(d['rows'])} rows ({order}):"
            )
        )
        blocks.append(
            _table(
                [label for label, _ in shown],
                ([_cell(r[key]) for _, key in shown] for r in mine),
                numeric=["amount"],
                wrap=["file:line"],
                ids=["user", "request", "entry"],
                css="rows wide",
            )
        )

    # ---- methodology
    blocks.append(_Heading(2, "Methodology", "methodology"))
    blocks.append(
        _Para(
            "Every detection is one SQL file of the query pack, run on the loaded data; its "
            "rows are the findings above. Each charge's excess is attributed to exactly one "
            "cause (duplicate, then a charged failed request, then a penalty, then "
            "overbilling), so nothing is credited twice. Credits are computed per user and "
            "currency under the policy in the run manifest. The SHA-256 of each file proves "
            "which SQL produced these numbers."
        )
    )
    blocks.append(
        _table(
            ["query", "title", "severity", "what a row means", "SHA-256"],
            (
                [q["name"], q["title"], q["severity"], q["description"], q["sha256"]]
                for q in report.methodology.to_pylist()
            ),
            wrap=["SHA-256"],
            css="method wide",
        )
    )

    # ---- manifest
    blocks.append(_Heading(2, "Run manifest", "manifest"))
    blocks.append(
        _Facts(
            [
                ("warroom", str(m.get("warroom_version", ""))),
                ("DuckDB", str(m.get("duckdb_version", ""))),
                ("PyArrow", str(m.get("pyarrow_version", ""))),
                ("matplotlib", str(m.get("matplotlib_version", ""))),
                ("incident", str(m.get("incident_id", ""))),
            ]
        )
    )
    blocks.append(_Heading(3, "Policy as used", "policy"))
    blocks.append(_table(["setting", "value"], _policy_items(policy)))
    blocks.append(_Heading(3, "Input files", "sources"))
    srcs = report.sources.to_pylist()
    if srcs:
        blocks.append(
            _table(
                [
                    "file",
                    "kind",
                    "format",
                    "SHA-256",
                    "bytes",
                    "rows loaded",
                    "rows rejected",
                    "ingested at (UTC)",
                ],
                (
                    [
                        s["path"],
                        s["kind"],
                        s["format"] + (f"+{s['compression']}" if s.get("compression") else ""),
                        s["sha256"],
                        _num(s["size_bytes"]),
                        _num(s["rows_loaded"]),
                        _num(s["rows_rejected"]),
                        _iso(s["ingested_at"]),
                    ]
                    for s in srcs
                ),
                numeric=["bytes", "rows loaded", "rows rejected"],
                wrap=["file", "SHA-256"],
                css="hashes wide",
            )
        )
    else:
        blocks.append(_Para("No file was loaded."))
    blocks.append(_Heading(3, "Query files", "query-files"))
    blocks.append(
        _table(
            ["file", "role", "SHA-256"],
            [
                [
                    q["file"],
                    "detection" if _is_detection(report, q["name"]) else "report table",
                    q["sha256"],
                ]
                for q in m.get("queries", [])
            ]
            + [
                [f"shared/{s['file']}", f"shared relation {s['name']}", s["sha256"]]
                for s in m.get("shared", [])
            ],
            wrap=["SHA-256"],
            css="hashes",
        )
    )
    return blocks


def _is_detection(report: Report, name: str) -> bool:
    return name in report.detectors.column("detector").to_pylist()


def _by_currency(amounts: list[dict[str, Any]], detector: str) -> list[tuple[str, Decimal]]:
    per: dict[str, Decimal] = {}
    for a in amounts:
        if a["detector"] == detector and a["amount"] is not None:
            per[a["currency"]] = per.get(a["currency"], Decimal(0)) + a["amount"]
    return sorted(per.items())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return _iso(value)
    return str(value)


# --------------------------------------------------------------------------- Markdown

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MD_ALWAYS = re.compile(r"([\\`*\[\]<>|~])")
#: an underscore that could open or close emphasis (not inside a word)
_MD_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_MD_ENTITY = re.compile(r"&(?=#?[0-9A-Za-z]+;)")


def _clean(text: str) -> str:
    return _CONTROL.sub(
        "\ufffd", text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ").replace("\t", " ")
    )


def md_escape(text: str) -> str:
    """Plain text -> GitHub-flavoured Markdown that shows exactly that text.

    Backslash-escapes what could start markup (emphasis, code, links, HTML or
    autolinks, table cells, strikethrough, entities); newlines become spaces.
    """
    text = _MD_ALWAYS.sub(r"\\\1", _clean(text))
    text = _MD_UNDERSCORE.sub(r"\\_", text)
    return _MD_ENTITY.sub(r"\\&", text)


def render_markdown(report: Report) -> str:
    """The report as GitHub-flavoured Markdown: headings, lists and tables, no HTML."""
    out: list[str] = []
    for block in _outline(report, charts=False):
        if isinstance(block, _Heading):
            out.append(f"{'#' * block.level} {md_escape(block.text)}")
        elif isinstance(block, _Para):
            out.append(
                md_escape(block.text)
                if block.css != "generated"
                else f"**{md_escape(block.text)}**"
            )
        elif isinstance(block, _Facts):
            out.append("\n".join(f"- **{md_escape(k)}:** {md_escape(v)}" for k, v in block.items))
        elif isinstance(block, _Table):
            out.append(_md_table(block))
    return "\n\n".join(out) + "\n"


def _md_table(t: _Table) -> str:
    lines = [
        "| " + " | ".join(md_escape(c) for c in t.columns) + " |",
        "|" + "|".join("---:" if n else "---" for n in t.numeric) + "|",
    ]
    for row in t.rows:
        lines.append("| " + " | ".join(md_escape(v) for v in row) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- HTML

_SEVERITY_COLORS = {
    "critical": "#7f1d1d",
    "high": "#b91c1c",
    "medium": "#c2410c",
    "low": "#1d4ed8",
    "info": "#4b5563",
}
_CREDIT_COLOR = "#1d4ed8"
_REIMB_COLOR = "#0d9488"


def _h(text: str) -> str:
    return html.escape(_CONTROL.sub("\ufffd", text), quote=True)


def render_html(report: Report) -> str:
    """The report as one self-contained HTML file with inline SVG charts.

    Nothing is fetched when it is viewed: no scripts, fonts, images or styles
    from elsewhere. It reads on screen and prints on A4 or Letter.
    """
    charts = _charts(report)
    blocks = _outline(report, charts=True)
    body: list[str] = []
    toc = [(b.anchor, b.text) for b in blocks if isinstance(b, _Heading) and b.level == 2]
    for block in blocks:
        if isinstance(block, _Heading):
            if block.level == 1:
                body.append(f"<header><h1>{_h(block.text)}</h1>")
                continue
            anchor = f' id="{_h(block.anchor)}"' if block.anchor else ""
            body.append(f"<h{block.level}{anchor}>{_h(block.text)}</h{block.level}>")
        elif isinstance(block, _Para):
            css = f' class="{block.css}"' if block.css else ""
            body.append(f"<p{css}>{_h(block.text)}</p>")
            if block.css == "lede":
                body.append(
                    "<nav><ol>"
                    + "".join(f'<li><a href="#{_h(a)}">{_h(t)}</a></li>' for a, t in toc)
                    + "</ol></nav></header>"
                )
        elif isinstance(block, _Facts):
            body.append(
                "<dl>"
                + "".join(f"<dt>{_h(k)}</dt><dd>{_h(v)}</dd>" for k, v in block.items)
                + "</dl>"
            )
        elif isinstance(block, _Cards):
            body.append(
                '<div class="cards">'
                + "".join(
                    f'<div class="card"><div class="label">{_h(label)}</div>'
                    f'<div class="value">{_h(value)}</div><div class="note">{_h(note)}</div></div>'
                    for label, value, note in block.items
                )
                + "</div>"
            )
        elif isinstance(block, _Table):
            body.append(_html_table(block))
        elif isinstance(block, _Chart):
            body.append(
                f'<figure class="chart chart-{block.name}">{charts[block.name]}'
                f"<figcaption>{_h(block.caption)}</figcaption></figure>"
            )
    title = f"Post-incident report: {report.incident_id}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_h(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + "\n</main>\n</body>\n</html>\n"
    )


def _html_table(t: _Table) -> str:
    severity = t.columns.index("severity") if "severity" in t.columns else -1
    head = "".join(f"<th{_cls(t, i)}>{_h(c)}</th>" for i, c in enumerate(t.columns))
    rows = []
    for row in t.rows:
        cells = []
        for i, v in enumerate(row):
            text = _h(v)
            if i == severity and v in _SEVERITY_COLORS:
                text = f'<span class="sev sev-{v}">{text}</span>'
            elif not t.numeric[i]:
                text = _wbr(text, times=t.nowrap[i])
            cells.append(f"<td{_cls(t, i)}>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    css = f' class="{t.css}"' if t.css else ""
    return (
        f'<div class="table"><table{css}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


_BREAKS = re.compile(r"([/_:\-])(?=[^\s/_:\-])|(?<=\d)(?=T\d)")
_TIME_BREAK = re.compile(r"(?<=\d)(?=T\d)")


def _wbr(escaped: str, *, times: bool = False) -> str:
    """Break opportunities inside long tokens (paths, ids, fault names; a timestamp
    only between its date and time), so a table can narrow to a printed page
    without cutting a word anywhere. They add no character: copying the text
    gives it back unchanged."""
    if times:
        return _TIME_BREAK.sub("<wbr>", escaped)
    return _BREAKS.sub(lambda m: (m.group(1) or "") + "<wbr>", escaped)


def _cls(t: _Table, i: int) -> str:
    names = [
        n
        for n, on in (
            ("num", t.numeric[i]),
            ("wrap", t.wrap[i]),
            ("nowrap", t.nowrap[i]),
            ("id", t.ids[i]),
        )
        if on
    ]
    return f' class="{" ".join(names)}"' if names else ""


_CSS = """
:root { --ink: #111827; --muted: #4b5563; --line: #e5e7eb; --soft: #f8fafc; --accent: #1d4ed8; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 64px; }
header { border-bottom: 3px solid var(--ink); margin-bottom: 8px; padding-bottom: 8px; }
h1 { font-size: 28px; line-height: 1.2; margin: 0 0 6px; overflow-wrap: anywhere; }
h2 { font-size: 21px; margin: 36px 0 10px; padding-bottom: 4px;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 24px 0 6px; overflow-wrap: anywhere; }
p { margin: 6px 0 10px; max-width: 80ch; overflow-wrap: anywhere; }
p.generated { color: var(--muted); font-size: 13px; margin: 0 0 6px; }
p.lede { color: var(--muted); }
nav ol { display: flex; flex-wrap: wrap; gap: 4px 18px; margin: 8px 0 0; padding: 0;
  list-style: none; font-size: 14px; }
nav a { color: var(--accent); text-decoration: none; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(165px, 1fr));
  gap: 12px; margin: 12px 0 16px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px;
  background: var(--soft); break-inside: avoid; }
.card .label { font-size: 12px; text-transform: uppercase; letter-spacing: .04em;
  color: var(--muted); }
.card .value { font-size: 26px; font-weight: 650; font-variant-numeric: tabular-nums;
  overflow-wrap: anywhere; }
.card .note { font-size: 12.5px; color: var(--muted); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 8px 0 14px; }
dt { font-weight: 600; }
dd { margin: 0; overflow-wrap: anywhere; }
.table { overflow-x: auto; margin: 8px 0 14px; }
table { border-collapse: collapse; font-size: 13.5px; }
table.wide { width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 5px 9px;
  border-bottom: 1px solid var(--line); overflow-wrap: break-word; }
th { background: var(--soft); font-weight: 600; border-bottom: 2px solid #d1d5db; }
tbody tr:nth-child(even) td { background: #fcfcfd; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num, td.nowrap, td.id { white-space: nowrap; }
td.wrap { overflow-wrap: anywhere; min-width: 14ch; }
table.hashes td.wrap, table.method td.wrap { font-family: ui-monospace, SFMono-Regular,
  Menlo, Consolas, monospace; font-size: 12px; }
table.method td:nth-child(4) { min-width: 24ch; }
table.method td.wrap { min-width: 16ch; }
table.rows { font-size: 12.5px; }
.sev { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px;
  font-weight: 600; color: #fff; white-space: nowrap; }
.sev-critical { background: #7f1d1d; } .sev-high { background: #b91c1c; }
.sev-medium { background: #c2410c; } .sev-low { background: #1d4ed8; }
.sev-info { background: #4b5563; }
figure { margin: 12px 0 18px; break-inside: avoid; }
figure svg { display: block; width: 100%; height: auto; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 4px; }
@page { size: auto; margin: 14mm 12mm; }
@media print {
  body { font-size: 10.5pt; }
  main { max-width: none; padding: 0; }
  nav { display: none; }
  h2 { break-after: avoid; page-break-after: avoid; }
  h3 { break-after: avoid; page-break-after: avoid; }
  .table { overflow: visible; }
  table { font-size: 8.5pt; }
  table.rows { font-size: 8pt; }
  th, td { padding: 3px 5px; }
  thead { display: table-header-group; }
  td.id, td.nowrap { white-space: normal; }
  tr, .card, figure { break-inside: avoid; page-break-inside: avoid; }
  .sev { color: #000; background: none !important; border: 1px solid #999; }
  a { color: inherit; text-decoration: none; }
}
""".strip()


# --------------------------------------------------------------------------- charts


def _charts(report: Report) -> dict[str, str]:
    """Inline SVG for every chart the outline places, drawn by matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    return {
        "timeline": _svg("timeline", _timeline_figure(report)) if report.timeline.num_rows else "",
        "plans": _svg("plans", _plans_figure(report)) if report.plans.num_rows else "",
        "users": _svg("users", _users_figure(report)) if report.top_users.num_rows else "",
    }


def _rc(name: str) -> Any:  # matplotlib types the keys as a Literal of every rcParam
    # hashsalt makes the ids in the SVG stable (and distinct per chart); text stays
    # text (searchable, small, quick to draw); parse_math off, or a "$" in a user
    # id would be read as TeX
    return {
        "svg.hashsalt": f"warroom-{name}",
        "svg.fonttype": "none",
        "text.parse_math": False,
        "font.family": "DejaVu Sans",
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.titleweight": "bold",
        "axes.spines.top": False,
        "axes.spines.right": False,
    }


def _svg(name: str, fig: Any) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(_rc(name)):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = re.sub(r"<\?xml[^>]*\?>\s*", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>\s*", "", text)
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    text = re.sub(r"<!--.*?-->\s*", "", text, flags=re.S)
    # ids must be unique in the whole page, and several charts share glyph ids
    text = re.sub(r'\bid="([^"]+)"', rf'id="{name}-\1"', text)
    text = re.sub(r'(xlink:href|href)="#([^"]+)"', rf'\1="#{name}-\2"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{name}-\1)", text)
    text = re.sub(
        r'<svg ([^>]*?)\s*width="[^"]*"\s*height="[^"]*"',
        rf'<svg role="img" aria-label="{name} chart" \1',
        text,
        count=1,
    )
    return text.strip()


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _label(text: str, limit: int = 34) -> str:
    text = _clean(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _timeline_figure(report: Report) -> Any:
    """One lane per fault (in the order of their windows), the bars of each lane
    scaled to its own busiest hour, on one time axis: one axes is quick to draw."""
    import matplotlib
    from matplotlib import dates as mdates
    from matplotlib.patches import Rectangle

    windows = report.windows.to_pylist()
    hours: dict[str, list[tuple[datetime, int]]] = {}
    for t in report.timeline.to_pylist():
        hours.setdefault(t["fault"], []).append((t["hour"], t["rows"]))
    stamps = report.timeline.column("hour").to_pylist()
    start, end = min(stamps), max(stamps) + timedelta(hours=1)
    data = report.manifest.get("data", {})
    if data.get("start"):
        start = min(start, _parse_iso(data["start"]).replace(minute=0, second=0, microsecond=0))
    if data.get("end"):
        end = max(end, _parse_iso(data["end"]))
    n = len(windows)
    with matplotlib.rc_context(_rc("timeline")):
        fig = _figure(11.5, 0.42 * n + 1.0)
        ax = fig.add_subplot()
        x0, x1 = _x(start), _x(end)
        for i, w in enumerate(windows):
            color = _SEVERITY_COLORS.get(w["severity"], "#4b5563")
            series = hours.get(w["fault"], [])
            peak = max((c for _, c in series), default=0)
            base = n - 1 - i - 0.42
            ws, we = _x(w["window_start"]), _x(w["window_end"])
            ax.add_patch(
                Rectangle(
                    (ws, base), max(we - ws, 1 / 96), 0.84, color=color, alpha=0.10, linewidth=0
                )
            )
            ax.bar(
                [_x(h) for h, _ in series],
                [0.8 * c / max(peak, 1) for _, c in series],
                bottom=base,
                width=1 / 24,
                align="edge",
                color=color,
                linewidth=0,
            )
            rows = "1 row" if w["rows"] == 1 else f"{w['rows']:,} rows"
            ax.text(
                x1 + (x1 - x0) * 0.006,
                n - 1 - i,
                f"{rows}, peak {peak:,}/h",
                fontsize=7.5,
                va="center",
                ha="left",
                color="#374151",
            )
            if i:
                ax.axhline(n - i - 0.5, color="#e5e7eb", linewidth=0.6)
        ax.set_yticks(
            range(n), labels=[_label(w["fault"], 44) for w in reversed(windows)], fontsize=8.5
        )
        ax.tick_params(axis="y", length=0)
        ax.set_ylim(-0.5, n - 0.5)
        ax.set_xlim(x0, x1)
        ax.spines["left"].set_visible(False)
        ax.spines["bottom"].set_color("#9ca3af")
        locator = mdates.AutoDateLocator(minticks=6, maxticks=14)  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
        ax.tick_params(axis="x", labelsize=8, colors="#374151")
        ax.grid(axis="x", color="#eef0f3", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.set_xlabel("UTC", fontsize=8, color="#4b5563")
    return fig


def _x(ts: datetime) -> float:
    """A time as matplotlib's date number (days since its epoch)."""
    from matplotlib import dates as mdates

    return float(mdates.date2num(ts))  # type: ignore[no-untyped-call]


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.rstrip("Z"))


def _money_bars(
    name: str,
    groups: list[tuple[str, list[tuple[str, Decimal, Decimal]]]],
    title_of: Callable[[str], str],
) -> Any:
    """One panel per currency (amounts in different currencies share no axis): a
    credit bar, and a reimbursement bar when there are any, per label.

    Floats only place the bars; every amount printed is the exact decimal text,
    and the value axis has no tick labels to round anything.
    """
    import matplotlib
    from matplotlib.patches import Patch

    paired = any(r > 0 for _, items in groups for _, _, r in items)
    cols = min(len(groups), 3)
    rows = -(-len(groups) // cols)
    slots = max(len(items) for _, items in groups)
    slot = 0.42 if paired else 0.3
    height = rows * (slots * slot + 0.5) + (0.3 if paired else 0.05)
    with matplotlib.rc_context(_rc(name)):
        fig = _figure(11.5, height)
        axes = fig.subplots(rows, cols, squeeze=False)
        bar = 0.4 if paired else 0.62
        for i, ax in enumerate(axes.flat):
            if i >= len(groups):
                ax.set_visible(False)
                continue
            currency, items = groups[i]
            ys = list(range(len(items)))
            top = (
                max([float(c) for _, c, _ in items] + [float(r) for _, _, r in items] + [0.0])
                or 1.0
            )
            both = any(r > 0 for _, _, r in items)
            shift = bar / 2 if both else 0.0
            credits = [c for _, c, _ in items]
            reimbursements = [r for _, _, r in items]
            series = [(-shift, credits, _CREDIT_COLOR)] + (
                [(shift, reimbursements, _REIMB_COLOR)] if both else []
            )
            for offset, values, color in series:
                ax.barh(
                    [y + offset for y in ys],
                    [float(v) for v in values],
                    height=bar,
                    color=color,
                    linewidth=0,
                )
                for y, v in zip(ys, values, strict=True):
                    if values is reimbursements and not v:
                        continue  # no reimbursement: no bar, no label
                    ax.text(
                        float(v) + top * 0.012,
                        y + offset,
                        credit_text(v, currency),
                        va="center",
                        ha="left",
                        fontsize=7.5,
                        color="#111827",
                    )
            ax.set_yticks(ys, labels=[_label(lab, 28) for lab, _, _ in items], fontsize=8)
            ax.tick_params(axis="y", length=0)
            ax.set_ylim(slots - 0.5, -0.5)  # the same bar thickness in every panel
            ax.set_xlim(0, top * 1.3)
            ax.set_xticks([])
            ax.spines["bottom"].set_visible(False)
            ax.spines["left"].set_color("#9ca3af")
            ax.set_title(title_of(currency), loc="left", fontsize=9.5)
        if paired:
            fig.legend(
                handles=[
                    Patch(color=_CREDIT_COLOR, label="credit"),
                    Patch(color=_REIMB_COLOR, label="top-up reimbursement"),
                ],
                loc="outside upper left",
                ncols=2,
                frameon=False,
                fontsize=8,
            )
        fig.get_layout_engine().set(w_pad=0.12, wspace=0.06)
    return fig


def _plans_figure(report: Report) -> Any:
    per: dict[str, list[tuple[str, Decimal, Decimal]]] = {}
    for p in report.plans.to_pylist():
        per.setdefault(p["currency"] or "(none)", []).append(
            (p["plan"] or "(unknown)", _dec(p["credit_amount"]), _dec(p["topup_reimbursement"]))
        )
    groups = sorted(per.items())
    return _money_bars("plans", groups, lambda c: f"in {c}")


def _users_figure(report: Report) -> Any:
    per: dict[str, list[tuple[str, Decimal, Decimal]]] = {}
    for u in report.top_users.to_pylist():
        items = per.setdefault(u["currency"] or "(none)", [])
        if len(items) < 10:
            items.append((u["user_id"], _dec(u["credit_amount"]), _dec(u["topup_reimbursement"])))
    groups = sorted(per.items())
    return _money_bars("users", groups, lambda c: f"in {c}")


# --------------------------------------------------------------------------- files

RENDERERS: dict[str, Callable[[Report], str]] = {
    "markdown": render_markdown,
    "html": render_html,
}


@dataclass(frozen=True)
class Bundle:
    """Where ``write_bundle`` put the report and the export."""

    markdown: Path
    html: Path
    affected_users: Path
    affected_rows: int


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, so a reader never sees half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # open() rather than mkstemp, so the file gets the usual permissions (umask)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bundle(report: Report, out_dir: Path) -> Bundle:
    """Write report.md, report.html and affected-users.csv into ``out_dir``."""
    md, page = out_dir / REPORT_MD, out_dir / REPORT_HTML
    csv_path = out_dir / AFFECTED_CSV
    write_atomic(md, render_markdown(report).encode())
    write_atomic(page, render_html(report).encode())
    rows = report.affected_users
    buf = io.BytesIO()
    write(rows, Format.csv, buf)
    write_atomic(csv_path, buf.getvalue())
    return Bundle(md, page, csv_path, rows.num_rows)


def investigation_inputs(paths: Sequence[str | Path], out_dir: Path) -> list[Path]:
    """The files ``investigate`` loads: ingest's expansion of ``paths``, less those
    inside ``out_dir`` (its own outputs, such as affected-users.csv, are not logs).

    Raises InputError for a path that matches nothing, or when nothing is left.
    """
    from warroom.errors import InputError
    from warroom.ingest import expand_paths

    skip = out_dir.resolve()
    files = [p for p in expand_paths(paths) if not p.resolve().is_relative_to(skip)]
    if not files:
        raise InputError(f"nothing to load: every file given is inside the output folder {out_dir}")
    return files


def summary_lines(report: Report) -> list[str]:
    """A short plain-text summary for the terminal: windows, users, amounts."""
    head = _headline(report)
    lines = [f"incident id: {report.incident_id} (from the policy; it goes into every credit_id)"]
    windows = report.windows.to_pylist()
    if windows:
        width = max(len(w["fault"]) for w in windows)
        lines.append("estimated window per fault (UTC):")
        for w in windows:
            # whole seconds, widened outwards, so the window shown holds the exact one
            first = w["window_start"].replace(microsecond=0)
            last = w["window_end"]
            if last.microsecond:
                last = last.replace(microsecond=0) + timedelta(seconds=1)
            rows = "1 row" if w["rows"] == 1 else f"{w['rows']:,} rows"
            lines.append(
                f"  {w['fault']:<{width}}  {_iso(first)} -> {_iso(last)}  "
                f"({_duration(last - first)}, {rows})"
            )
    else:
        lines.append("no erroneous rows found")
    # hours where one log has rows and the other none: the evidence, not the users,
    # is missing there, and every other answer is weaker for it
    gaps = [r for r in report.top_rows.to_pylist() if r["detector"] == "coverage_gaps"]
    if gaps:
        total = sum(
            d["rows"] for d in report.detectors.to_pylist() if d["detector"] == "coverage_gaps"
        )
        lines.append(f"coverage gaps (a log is missing, not the users): {total:,} hour(s)")
        lines += [f"  {_iso(g['ts'])}  {g['detail']}" for g in gaps[:5]]
        if total > 5:
            lines.append(f"  ... and {total - 5:,} more: `warroom run coverage_gaps`")
    lines.append(
        f"users affected: {head['users']:,} ({head['owed']:,} owed, "
        f"{head['review']:,} for review); wrongful 429s: {head['w429']:,}; "
        f"minutes wrongly restricted: {head['minutes']:,}"
    )
    for r in report.owed.to_pylist():
        if r["users_owed"]:
            cur = r["currency"] or "(none)"
            lines.append(
                f"  {cur}: {r['users_owed']:,} user(s) owed, credits "
                f"{credit_text(r['credit_amount'], r['currency'])}, top-up "
                f"reimbursements {credit_text(r['topup_reimbursement'], r['currency'])}"
            )
    if not any(r["users_owed"] for r in report.owed.to_pylist()):
        lines.append("  no user is owed anything under this policy")
    return lines


__all__ = [
    "Bundle",
    "Report",
    "ReportError",
    "build_report",
    "credit_text",
    "default_generated_at",
    "investigation_inputs",
    "md_escape",
    "render_html",
    "render_markdown",
    "summary_lines",
    "write_atomic",
    "write_bundle",
    "RENDERERS",
]
