"""Run the query pack: one query for ``warroom run``, or all of them into ``findings``.

``detect`` materialises the shared relations once, runs every detection, and
replaces the ``findings`` table (the common columns of DESIGN.md section 3) in
one transaction, so a report always reads the findings of one run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa

from warroom.errors import QueryError
from warroom.incident import store_incident_id
from warroom.pack import SEVERITIES, Pack, Query, bind, prepare, run

FINDING_COLUMNS = (
    "detector",
    "user_id",
    "currency",
    "ts",
    "request_id",
    "entry_id",
    "amount",
    "detail",
)

FINDINGS_DDL = """CREATE TABLE IF NOT EXISTS findings (
    detector VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    user_id VARCHAR,
    currency VARCHAR,
    ts TIMESTAMP,
    request_id VARCHAR,
    entry_id VARCHAR,
    amount DECIMAL(38,6),
    detail VARCHAR,
    source_id INTEGER,
    line BIGINT
)"""


@dataclass
class DetectorSummary:
    name: str
    title: str
    severity: str
    rows: int
    seconds: float
    #: currency -> sum of amount
    amounts: dict[str, Decimal] = field(default_factory=dict)


@dataclass
class DetectResult:
    detectors: list[DetectorSummary]
    seconds: float
    #: (name, seconds) of each shared relation, in the order they were built
    shared: list[tuple[str, float]] = field(default_factory=list)

    def worst_at_or_above(self, severity: str) -> list[DetectorSummary]:
        floor = SEVERITIES.index(severity)
        return [d for d in self.detectors if d.rows and SEVERITIES.index(d.severity) >= floor]


def _uses_findings(query: Query) -> bool:
    return "findings" in query.headers.get("uses", "").split()


def run_one(
    con: duckdb.DuckDBPyConnection,
    pack: Pack,
    name: str,
    given: dict[str, str],
    since: str | None = None,
    until: str | None = None,
) -> pa.Table:
    """Run one query of the pack and return its rows.

    The shared relations it reads are built first, as temporary tables (a view
    read twice would be computed twice). A query that reads ``findings`` gets them
    computed afresh from the same data, which needs every shared relation.
    """
    query = pack.get(name)
    params = bind(query, given, since, until)
    if _uses_findings(query):
        prepare(con, pack)
        compute_findings(con, pack, table="findings", temp=True)
        return run(con, query, params)
    used = _used_closure(pack, query)
    prepare(con, pack, only=pack.needs("\n".join([query.sql] + [q.sql for q in used])))
    rows_of: dict[str, pa.Table] = {}
    for q in used:
        rows_of[q.name] = _run_using(con, pack, q, bind(q, {}, None, None), rows_of)
    return _run_using(con, pack, query, params, rows_of)


def _used_closure(pack: Pack, query: Query) -> list[Query]:
    """The detections ``query`` reads, directly or through another, in running order."""
    wanted: set[str] = set()
    todo = pack.uses(query)
    while todo:
        n = todo.pop()
        if n not in wanted:
            wanted.add(n)
            todo += pack.uses(pack.queries[n])
    return [q for q in pack.detections() if q.name in wanted]


def _run_using(
    con: duckdb.DuckDBPyConnection,
    pack: Pack,
    query: Query,
    params: dict[str, Any],
    rows_of: dict[str, pa.Table],
) -> pa.Table:
    """Run ``query`` with the rows of each detection it uses readable under its name."""
    used = pack.uses(query)
    for n in used:
        con.register(n, rows_of[n])
    try:
        return run(con, query, params)
    finally:
        for n in used:
            con.unregister(n)


def detect(
    con: duckdb.DuckDBPyConnection,
    pack: Pack,
    *,
    since: str | None = None,
    until: str | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> DetectResult:
    """Run every detection and replace the ``findings`` table with what they found."""
    started = time.monotonic()
    # the shared relations are most of the work: they count as steps of the bar
    steps = len(pack.shared) + sum(1 for q in pack.queries.values() if q.findings)
    names = [s.name for s in pack.shared]

    def on_step(done: int) -> None:  # the progress label names the step now running
        if progress:
            now = names[done] if done < len(names) else "detections"
            progress(f"detect: {now}", done / steps)

    on_step(0)
    shared = prepare(con, pack, on_step=on_step if progress else None)
    # a fresh computation (run/impact) may have left a temp findings shadowing ours
    con.execute("DROP TABLE IF EXISTS temp.findings")
    con.execute(FINDINGS_DDL)
    _widen_findings(con)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM findings")
        summaries = _run_detectors(
            con, pack, "findings", since, until, progress, already=len(shared), steps=steps
        )
        store_incident_id(con, pack)
        con.execute("COMMIT")
    except BaseException:
        _rollback(con)
        raise
    return DetectResult(summaries, time.monotonic() - started, shared)


def _widen_findings(con: duckdb.DuckDBPyConnection) -> None:
    """A findings table made before amounts were DECIMAL(38,6) is widened: sums of
    legal rows (two top-ups of 999,999,999,999) outgrow DECIMAL(18,6)."""
    row = con.execute(
        "SELECT data_type FROM duckdb_columns() WHERE schema_name = 'main' "
        "AND table_name = 'findings' AND column_name = 'amount'"
    ).fetchone()
    if row is not None and row[0] != "DECIMAL(38,6)":
        con.execute("ALTER TABLE main.findings ALTER amount TYPE DECIMAL(38,6)")


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back, if there is still a transaction to roll back: after some failures
    (a full disk) DuckDB has ended it already, and its "no transaction is active"
    must not hide the error that ended it."""
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass


def compute_findings(con: duckdb.DuckDBPyConnection, pack: Pack, *, table: str, temp: bool) -> None:
    if temp:
        con.execute(f"DROP TABLE IF EXISTS temp.{table}")
    ddl = FINDINGS_DDL.replace(
        "CREATE TABLE IF NOT EXISTS findings", f"CREATE {'TEMP ' if temp else ''}TABLE {table}"
    )
    con.execute(ddl)
    _run_detectors(con, pack, table, None, None, None)


def _run_detectors(
    con: duckdb.DuckDBPyConnection,
    pack: Pack,
    table: str,
    since: str | None,
    until: str | None,
    progress: Callable[[str, float], None] | None,
    *,
    already: int = 0,
    steps: int = 0,
) -> list[DetectorSummary]:
    detectors = pack.detections()
    # a detection that another uses is read whole: --since/--until bound only its own rows
    used = {n for q in detectors for n in pack.uses(q)}
    rows_of: dict[str, pa.Table] = {}
    steps = max(steps, already + len(detectors), 1)
    summaries = []
    for i, q in enumerate(detectors):
        if progress:
            progress(f"detect: {q.name}", (already + i) / steps)
        t0 = time.monotonic()
        rows = _run_using(con, pack, q, bind(q, {}, since, until), rows_of)
        if q.name in used:
            rows_of[q.name] = (
                rows
                if since is None and until is None
                else _run_using(con, pack, q, bind(q, {}, None, None), rows_of)
            )
        _check_columns(q, rows)
        con.register("wr_rows", rows)
        try:
            # provenance, where the detection returns it
            tail = ", ".join(
                f"CAST({c} AS {t})" if c in rows.column_names else "NULL"
                for c, t in (("source_id", "INTEGER"), ("line", "BIGINT"))
            )
            con.execute(
                f"INSERT INTO {table} SELECT detector, ?, user_id, currency, ts, request_id, "
                f"entry_id, CAST(amount AS DECIMAL(38,6)), detail, {tail} FROM wr_rows",
                [q.severity],
            )
            amounts = con.execute(
                "SELECT coalesce(currency, ''), sum(CAST(amount AS DECIMAL(38,6))) FROM wr_rows "
                "WHERE amount IS NOT NULL GROUP BY 1 ORDER BY 1"
            ).fetchall()
        finally:
            _unregister(con, "wr_rows")
        summaries.append(
            DetectorSummary(
                q.name,
                q.title,
                q.severity,
                rows.num_rows,
                time.monotonic() - t0,
                {str(c): Decimal(a) for c, a in amounts if a is not None},
            )
        )
    if progress:
        progress("detect", 1.0)
    return sorted(summaries, key=lambda d: d.name)


def _unregister(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Unregister ``name``; in an aborted transaction DuckDB refuses, and its
    "Current transaction is aborted" must not hide the error that aborted it."""
    try:
        con.unregister(name)
    except duckdb.TransactionException:
        pass


def _check_columns(q: Query, rows: pa.Table) -> None:
    missing = [c for c in FINDING_COLUMNS if c not in rows.column_names]
    if missing:
        raise QueryError(
            f"{q.path.name}: a detection must return the finding columns; "
            f"missing {', '.join(missing)} (or mark it '-- findings: no')"
        )


def queries_table(pack: Pack) -> pa.Table:
    """The pack as rows: name, title, severity, parameters."""
    rows: dict[str, list[Any]] = {
        "name": [],
        "title": [],
        "severity": [],
        "parameters": [],
        "source": [],
    }
    for q in sorted(pack.queries.values(), key=lambda q: q.name):
        rows["name"].append(q.name)
        rows["title"].append(q.title)
        rows["severity"].append(q.severity)
        params = [
            f"{p.name} {p.type} = {p.default if p.default is not None else 'NULL'}"
            for p in q.params
        ]
        rows["parameters"].append("; ".join(["since", "until"] + params))
        rows["source"].append(str(q.path))
    return pa.table(rows)


def summary_table(result: DetectResult) -> pa.Table:
    """One row per detector: severity, rows, amount per currency, seconds."""
    rows: dict[str, list[Any]] = {
        "detector": [],
        "severity": [],
        "rows": [],
        "amounts": [],
        "seconds": [],
    }
    for d in result.detectors:
        rows["detector"].append(d.name)
        rows["severity"].append(d.severity)
        rows["rows"].append(d.rows)
        rows["amounts"].append(
            "; ".join(f"{a} {c or ''}".strip() for c, a in sorted(d.amounts.items()))
        )
        rows["seconds"].append(round(d.seconds, 3))
    return pa.table(rows)


_USER_TIMELINE = """
WITH files AS (SELECT source_id, path FROM sources),
-- the served counterfactual after a ledger row: less the estimated cost of the
-- wrongful 429s of its segment at or before it (a 429 at t comes before rows at t)
served AS (
    SELECT t.entry_id,
           t.cf_balance - coalesce(sum(w.charged_cost), 0) AS served_cf_balance
    FROM balance_timeline AS t
    LEFT JOIN served_rejections AS w
      ON w.wrongful AND w.user_id = t.user_id AND w.currency = t.currency
     AND coalesce(w.reset_entry_id, '') = coalesce(t.reset_entry_id, '') AND w.ts <= t.ts
    WHERE t.user_id = $user_id AND t.row_type = 'ledger'
    GROUP BY t.entry_id, t.cf_balance
),
rows AS (
    SELECT r.ts, 1 AS ord, 'request' AS source, r.request_id AS id,
           CAST(r.status AS VARCHAR) || coalesce(' ' || r.error_code, '') AS what,
           CAST(NULL AS DECIMAL(38,6)) AS amount, CAST(NULL AS DECIMAL(38,6)) AS balance,
           CAST(NULL AS DECIMAL(38,6)) AS cf_balance,
           CAST(NULL AS DECIMAL(38,6)) AS served_cf_balance,
           concat_ws(' ', r.model, 'in=' || r.input_tokens, 'cached=' || r.cached_tokens,
                     'out=' || r.output_tokens) AS detail,
           r.source_id, r.line
    FROM requests AS r WHERE r.user_id = $user_id
    UNION ALL
    SELECT t.ts, 2, 'ledger', t.entry_id, t.kind || ' ' || t.currency, t.amount, t.balance,
           t.cf_balance, s.served_cf_balance,
           concat_ws(' ', 'request=' || t.request_id, 'recorded=' || t.recorded_balance,
                     CASE WHEN t.kind = 'reset' THEN 'by=' || l.initiated_by END),
           t.source_id, t.line
    FROM balance_timeline AS t LEFT JOIN served AS s USING (entry_id)
    LEFT JOIN ledger AS l ON l.entry_id = t.entry_id
    WHERE t.user_id = $user_id AND t.row_type = 'ledger'
    UNION ALL
    SELECT e.ts, 3, 'abuse', e.action, e.action || coalesce(' ' || e.rule, ''),
           NULL, NULL, NULL, NULL,
           concat_ws(' ', a.classification, 'until=' || CAST(a.end_ts AS VARCHAR),
                     'x' || CAST(e.multiplier AS VARCHAR)),
           e.source_id, e.line
    FROM abuse_events AS e
    LEFT JOIN abuse_restrictions AS a ON a.source_id = e.source_id AND a.line = e.line
    WHERE e.user_id = $user_id
    UNION ALL
    SELECT f.ts, 4, 'finding', f.detector, f.currency, f.amount, NULL, NULL, NULL, f.detail,
           f.source_id, f.line
    FROM findings AS f WHERE f.user_id = $user_id
)
SELECT rows.ts, source, id, what, amount, balance, cf_balance, served_cf_balance, detail,
       files.path || ':' || CAST(rows.line AS VARCHAR) AS origin
FROM rows LEFT JOIN files USING (source_id)
ORDER BY rows.ts, ord, id, origin
"""


def user_timeline(
    con: duckdb.DuckDBPyConnection, pack: Pack, user_id: str, *, prepared: bool = False
) -> pa.Table:
    """One user's story in time order: requests, ledger rows with the replayed,
    counterfactual and served counterfactual balance, abuse actions with their
    classification, and findings, each with the file:line it came from.
    ``prepared``: the shared relations and temp findings are already on ``con``."""
    if not prepared:
        prepare(con, pack)
        compute_findings(con, pack, table="findings", temp=True)
    try:
        return con.sql(_USER_TIMELINE, params={"user_id": user_id}).to_arrow_table()
    except duckdb.Error as exc:
        raise QueryError(f"user timeline: {str(exc).splitlines()[0]}") from None
