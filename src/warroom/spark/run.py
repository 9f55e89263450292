"""``--engine spark`` end to end: the warehouse, the pack on Spark, and the answers
handed back to the DuckDB database the commands render from.

The canonical tables, rejects and sources are written to the warehouse as
Parquet (``tables/NAME``), the shared relations, detections and impact sums are
computed on Spark from them, the findings are written beside them
(``findings/``) and stored in the database's ``findings`` table, so the report,
the incident id and ``warroom sql`` read what Spark found.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from warroom.detect import FINDINGS_DDL, DetectorSummary, DetectResult
from warroom.errors import OutputError
from warroom.impact import Policy, policy_rows
from warroom.incident import incident_id, store_incident_id
from warroom.pack import Pack, Query, bind
from warroom.spark import engine

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

Progress = Callable[[str, float], None]


def export_canonical(con: duckdb.DuckDBPyConnection, warehouse: Path) -> None:
    """The canonical tables of ``con`` as Parquet under ``warehouse/tables``."""
    try:
        for name in engine.CANONICAL:
            folder = warehouse / "tables" / name
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            con.sql(f"SELECT * FROM {name}").write_parquet(str(folder / "part-0.parquet"))
    except OSError as exc:
        raise OutputError(f"{warehouse}: cannot write the warehouse: {exc.strerror}") from None


def compute(
    con: duckdb.DuckDBPyConnection,
    spark: SparkSession,
    pack: Pack,
    warehouse: Path,
    *,
    fault_window: tuple[datetime | None, datetime | None] = (None, None),
    since: str | None = None,
    until: str | None = None,
    progress: Progress | None = None,
    seconds: dict[str, float] | None = None,
    native: bool = False,
) -> pa.Table:
    """Export (unless Spark has read the inputs itself: ``native``), build the
    shared relations and run every detection on Spark; the findings (also a
    ``findings`` view on ``spark`` and Parquet in the warehouse). ``seconds``
    gets the time of each detection."""
    if not native:
        export_canonical(con, warehouse)
    engine.register_tables(spark, warehouse)
    steps = len(pack.shared) + len(pack.detections())
    done = [0]

    def tick(_: object = None) -> None:
        done[0] += 1
        if progress:
            progress("detect", min(done[0] / max(steps, 1), 1.0))

    engine.build_shared(spark, pack, fault_window, on_step=tick)
    found = engine.findings(
        spark, pack, since=since, until=until, on_detection=tick, seconds=seconds
    )
    found = found.localCheckpoint(eager=True)
    found.createOrReplaceTempView("findings")
    found.write.mode("overwrite").parquet(str(warehouse / "findings"))
    return engine.to_arrow(found)


def detect(
    con: duckdb.DuckDBPyConnection,
    spark: SparkSession,
    pack: Pack,
    warehouse: Path,
    *,
    since: str | None = None,
    until: str | None = None,
    progress: Progress | None = None,
    native: bool = False,
) -> DetectResult:
    """``warroom detect`` on Spark: the findings replace the database's, in one
    transaction, and name the incident as DuckDB's path does."""
    started = time.monotonic()
    seconds: dict[str, float] = {}
    rows = compute(
        con,
        spark,
        pack,
        warehouse,
        since=since,
        until=until,
        progress=progress,
        seconds=seconds,
        native=native,
    )
    con.execute("DROP TABLE IF EXISTS temp.findings")
    con.execute(FINDINGS_DDL)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM findings")
        con.register("wr_spark_findings", rows)
        con.execute("INSERT INTO findings SELECT * FROM wr_spark_findings")
        con.unregister("wr_spark_findings")
        store_incident_id(con, pack)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    summaries = _summaries(con, pack.detections(), rows, seconds)
    return DetectResult(summaries, time.monotonic() - started, [])


def _summaries(
    con: duckdb.DuckDBPyConnection,
    detectors: list[Query],
    rows: pa.Table,
    seconds: dict[str, float],
) -> list[DetectorSummary]:
    con.register("wr_spark_findings", rows)
    try:
        counts = dict(
            con.execute(
                "SELECT detector, count(*) FROM wr_spark_findings GROUP BY detector"
            ).fetchall()
        )
        sums = con.execute(
            "SELECT detector, coalesce(currency, ''), sum(amount) FROM wr_spark_findings "
            "WHERE amount IS NOT NULL GROUP BY ALL ORDER BY 1, 2"
        ).fetchall()
    finally:
        con.unregister("wr_spark_findings")
    out = []
    for q in detectors:
        amounts = {str(c): Decimal(a) for d, c, a in sums if d == q.name and a is not None}
        out.append(
            DetectorSummary(
                q.name,
                q.title,
                q.severity,
                int(counts.get(q.name, 0)),
                seconds.get(q.name, 0.0),
                amounts,
            )
        )
    return sorted(out, key=lambda d: d.name)


def impact(
    con: duckdb.DuckDBPyConnection,
    spark: SparkSession,
    pack: Pack,
    policy: Policy,
    warehouse: Path,
    *,
    fresh: bool = True,
    progress: Progress | None = None,
    native: bool = False,
) -> pa.Table:
    """Per-user impact under ``policy``, its sums computed on Spark from findings
    computed there afresh (``fresh=False``: the ones ``detect`` has just left on
    ``spark``). A policy window (DESIGN.md 7.4) recomputes them with only its
    faults undone; afterwards ``spark`` holds every fault's findings again."""
    window = (policy.start, policy.end)
    windowed = window != (None, None)
    every = (
        compute(con, spark, pack, warehouse, progress=progress, native=native) if fresh else None
    )
    if policy.incident_id is None:
        # named from every fault's findings, as DuckDB's path does
        named = _incident_id(con, pack, every) if every is not None else None
        policy = replace(policy, incident_id=named or incident_id(con, pack, None))
    if windowed:
        compute(con, spark, pack, warehouse, fault_window=window, progress=progress, native=True)
    names, raw = engine.impact_sums(spark, policy.start, policy.end)
    if windowed:
        compute(con, spark, pack, warehouse, progress=progress, native=True)
    return policy_rows(names, raw, policy)


def handover(con: duckdb.DuckDBPyConnection, spark: SparkSession, pack: Pack) -> None:
    """Every fault's findings and the shared relations the report reads beside
    the impact (``data_span``, and those impact.sql reads: a few rows per user)
    from Spark into temporary tables of ``con``, so the report renders what Spark
    computed."""
    text = resources.files("warroom.impact").joinpath("impact.sql").read_text(encoding="utf-8")
    for name in [*pack.needs(text + "\ndata_span"), "findings"]:
        con.register("wr_spark_rows", engine.to_arrow(spark.table(name)))
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM wr_spark_rows")
        finally:
            con.unregister("wr_spark_rows")


def _incident_id(con: duckdb.DuckDBPyConnection, pack: Pack, rows: pa.Table) -> str:
    """The stored id, else the one the findings ``rows`` name (incident_episodes on
    DuckDB); ``rows`` stay on ``con`` as ``temp.findings`` for the report."""
    con.register("wr_spark_findings", rows)
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE findings AS SELECT * FROM wr_spark_findings")
    finally:
        con.unregister("wr_spark_findings")
    return incident_id(con, pack, None)


def run_one(
    con: duckdb.DuckDBPyConnection,
    spark: SparkSession,
    pack: Pack,
    name: str,
    given: dict[str, str],
    warehouse: Path,
    since: str | None = None,
    until: str | None = None,
) -> pa.Table:
    """One query of the pack on Spark (``warroom run --engine spark``)."""
    query = pack.get(name)
    params = bind(query, given, since, until)
    compute(con, spark, pack, warehouse)
    return engine.to_arrow(engine.sql(spark, query.sql, params, name=query.path.name))
