"""The report as data: ``build_report`` fills a ``Report`` of Arrow tables and a
run manifest from one connection, reading the findings once.

Every table is fully ordered, so the same database and policy give the same
report; money stays ``Decimal`` (DECIMAL(38,6) in Arrow) from SQL to the page.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from importlib import metadata
from typing import Any

import duckdb
import pyarrow as pa

import warroom
from warroom import catalog
from warroom.episodes import DEFAULT_GAP_HOURS, Episode, episodes, episodes_table
from warroom.errors import QueryError, WarroomError
from warroom.impact import Policy, affected_users, impact
from warroom.incident import incident_id
from warroom.pack import SEVERITIES, Pack, bind, run
from warroom.report.checks import Check, Marker, checks
from warroom.report.text import timestamp_text

#: rows shown per detector, and users shown per currency
TOP_ROWS = 10
TOP_USERS = 20

_MONEY_TYPE = pa.decimal128(38, 6)
_TIMESTAMP_TYPE = pa.timestamp("us")

ProgressFn = Callable[[str, float], None]


class ReportError(WarroomError):
    """The report cannot be built (e.g. a replaced incident_window query lacks columns)."""


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
    * ``episodes``: the episodes of every fault, largest first (``warroom.episodes``),
      and ``episodes_table`` the same as a table.
    * ``checks``: each mass reset and marker with the erroneous charges around it.
    * ``plan_users``: per plan (every plan seen, the user's latest) — users in the data.
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
    episodes: list[Episode] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    plan_users: dict[str, int] = field(default_factory=dict)
    gap_hours: int = DEFAULT_GAP_HOURS
    #: wrongful 429s by error code: (429s, users)
    rejections: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: the time zone the status-page draft gives its window in, besides UTC
    tz: str = "UTC"

    @property
    def episodes_table(self) -> pa.Table:
        return episodes_table(self.episodes)

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
    gap_hours: int = DEFAULT_GAP_HOURS,
    markers: tuple[Marker, ...] = (),
    tz: str = "UTC",
    impact_rows: pa.Table | None = None,
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
    # (the Spark engine hands in the impact it computed, with findings and shared relations)
    if impact_rows is None:
        impact_rows = impact(con, pack, policy, stored_findings=stored_findings)
    # the id impact used: chosen, stored by detect, or named now from the same findings
    policy = replace(policy, incident_id=incident_id(con, pack, policy.incident_id))
    step(0.7)
    windows, timeline = _windows(con, pack)
    detectors, detector_amounts = _detectors(con, pack)
    report = Report(
        incident_id=policy.incident_id or "",
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
        episodes=_episodes(con, pack, gap_hours),
        checks=checks(con, list(markers)),
        plan_users=_plan_users(con),
        gap_hours=gap_hours,
        rejections=_rejections(con),
        tz=tz,
    )
    step(1.0)
    return report


def _episodes(con: duckdb.DuckDBPyConnection, pack: Pack, gap_hours: int) -> list[Episode]:
    # the episodes read the findings impact took (temp.findings shadows a stored table)
    return episodes(con, pack, gap_hours)


_REJECTIONS = """
SELECT coalesce(requests.error_code, '') AS code, count(*) AS n,
       count(DISTINCT f.user_id) AS users
FROM temp.findings AS f
LEFT JOIN requests ON requests.request_id = f.request_id
WHERE f.detector = 'wrongful_rejections'
GROUP BY 1
ORDER BY 2 DESC, 1
"""


def _rejections(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, int]]:
    rows = _sql(con, "wrongful 429s by code", _REJECTIONS).to_pylist()
    return {r["code"]: (int(r["n"]), int(r["users"])) for r in rows}


# each user under their latest plan: the shared relation user_plan (impact has built
# it on this connection, or handed it over from Spark)
_PLAN_USERS = """
SELECT plan, count(*) AS users FROM user_plan GROUP BY plan ORDER BY plan
"""


def _plan_users(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Users per plan in the data (each user's latest plan, as impact reads it)."""
    return {r["plan"]: int(r["users"]) for r in _sql(con, "plans", _PLAN_USERS).to_pylist()}


def decimal_or_zero(v: Any) -> Decimal:
    """An amount of the impact table as a Decimal, 0 for NULL."""
    return Decimal(0) if v is None else Decimal(v)


def _is_owed(row: dict[str, Any]) -> bool:
    """Something to pay or restore: a credit, compensation or banked resets."""
    return bool(row["action"] == "credit")


def headline_figures(report: Report) -> dict[str, int]:
    """The figures a reader wants first: users affected, owed and for review,
    wrongful 429s, minutes wrongly restricted (each user's longest), and for how many users."""
    users: set[str] = set()
    owed: set[str] = set()
    review: set[str] = set()
    minutes: dict[str, int] = {}
    w429 = 0
    for r in report.impact.to_pylist():
        users.add(r["user_id"])
        if _is_owed(r):
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
                ("window_start", _TIMESTAMP_TYPE),
                ("window_end", _TIMESTAMP_TYPE),
                ("rows", pa.int64()),
                ("hours", pa.int64()),
                ("severity", pa.string()),
            ]
        ),
    )
    hourly.sort()
    timeline = pa.table(
        {
            "hour": pa.array([h for h, _, _ in hourly], _TIMESTAMP_TYPE),
            "fault": pa.array([f for _, f, _ in hourly], pa.string()),
            "rows": pa.array([n for _, _, n in hourly], pa.int64()),
        }
    )
    return windows, timeline


# the detectors split into faults by their detail, as queries/incident_window.sql
# names those faults ``detector:detail``
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
            "amount": pa.array([amounts[k][2] for k in keys], _MONEY_TYPE),
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
                **dict.fromkeys(_PAID, Decimal(0)),
                "banked_resets": 0,
            },
        )
        acc["users"].add(r["user_id"])
        if _is_owed(r):
            acc["owed"].add(r["user_id"])
        if r["review"]:
            acc["review"].add(r["user_id"])
        for c in _PAID:
            acc[c] += decimal_or_zero(r[c])
        acc["banked_resets"] += int(r["banked_resets"] or 0)
    rows = [per[c] for c in sorted(per)]
    return pa.table(
        {
            "currency": [r["currency"] for r in rows],
            "users": pa.array([len(r["users"]) for r in rows], pa.int64()),
            "users_owed": pa.array([len(r["owed"]) for r in rows], pa.int64()),
            "users_review": pa.array([len(r["review"]) for r in rows], pa.int64()),
            **{c: pa.array([r[c] for r in rows], _MONEY_TYPE) for c in _PAID},
            # the credit is given once (balance + card); compensation comes on top of it
            "total": pa.array([r["credit_amount"] + r["compensation"] for r in rows], _MONEY_TYPE),
            "banked_resets": pa.array([r["banked_resets"] for r in rows], pa.int64()),
        }
    )


#: how an amount owed is paid: the credit (to the balance + to the card), and compensation
_PAID = ("credit_amount", "balance_credit", "topup_reimbursement", "compensation")


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
        if _is_owed(r):
            acc["owed"].add(r["user_id"])
        acc["credit"] += decimal_or_zero(r["credit_amount"])
        acc["reimb"] += decimal_or_zero(r["topup_reimbursement"])
        acc["w429"] += int(r["wrongful_429s"] or 0)
        acc["minutes"] += int(r["restricted_minutes"] or 0)
    keys = sorted(per)
    return pa.table(
        {
            "plan": [k[0] for k in keys],
            "currency": [k[1] for k in keys],
            "users": pa.array([len(per[k]["users"]) for k in keys], pa.int64()),
            "users_owed": pa.array([len(per[k]["owed"]) for k in keys], pa.int64()),
            "credit_amount": pa.array([per[k]["credit"] for k in keys], _MONEY_TYPE),
            "topup_reimbursement": pa.array([per[k]["reimb"] for k in keys], _MONEY_TYPE),
            "wrongful_429s": pa.array([per[k]["w429"] for k in keys], pa.int64()),
            "restricted_minutes": pa.array([per[k]["minutes"] for k in keys], pa.int64()),
        }
    )


def _top_users(impact_rows: pa.Table, limit: int) -> pa.Table:
    owed = [r for r in impact_rows.to_pylist() if _is_owed(r)]
    owed.sort(
        key=lambda r: (
            r["currency"] or "",
            -decimal_or_zero(r["credit_amount"]),
            -decimal_or_zero(r["topup_reimbursement"]),
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


def _installed_version(dist: str) -> str:
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
        "matplotlib_version": _installed_version("matplotlib"),
        "incident_id": policy.incident_id,
        "policy": policy.as_dict(),
        "data": {
            "start": timestamp_text(span[0]) if span and span[0] else None,
            "end": timestamp_text(span[1]) if span and span[1] else None,
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
