"""``investigate --engine spark``'s ingest (DESIGN.md section 6): the files
planned (local paths by ``sniff``, URIs by ``uris``), read by Spark when it
reads every one of them as DuckDB does (``spark_reads``; else DuckDB's ingest
reads them), and the tables Spark wrote to the warehouse copied into the
DuckDB database the report and every later command read.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from warroom.errors import InputError
from warroom.ingest.sniff import FilePlan
from warroom.model import TABLES, Kind
from warroom.spark import parquet, profiles
from warroom.spark.ingest import ingest
from warroom.spark.uris import READS, expand_uri, plan_uri, uri_of

if TYPE_CHECKING:
    import duckdb
    from pyspark.sql import SparkSession

    from warroom.ingest.load import IngestReport
    from warroom.profiles import Profile


def spark_reads(plans: list[FilePlan]) -> bool:
    """Whether Spark reads every file itself: JSON lines or arrays, CSV/TSV,
    Parquet whose columns Spark renders as DuckDB does, and pretty-printed JSON
    documents read through a profile."""
    return all(
        (p.profile is None or profiles.unread(p) is None)
        and p.format in READS
        and not (p.format == "parquet" and parquet.problems(p))
        for p in plans
    )


def load_into(
    con: duckdb.DuckDBPyConnection,
    spark: SparkSession,
    files: list[Path],
    warehouse: Path,
    uris: list[str] | None = None,
    profile: Profile | None = None,
) -> IngestReport | None:
    """``investigate --engine spark``: Spark reads ``files`` into the warehouse,
    and the tables are copied into the database ``con`` (the report, ``warroom
    sql`` and every later command read them there). None, with nothing done,
    when Spark does not read one of the local files (a JSON array or Parquet
    read through ``profile``, a Parquet column Spark renders otherwise) or the
    database already holds files: DuckDB's ingest then reads them."""
    from warroom.ingest.load import FileResult, IngestReport
    from warroom.ingest.sniff import plan_file

    remote = [u for given in uris or [] for u in expand_uri(spark, given)]
    if con.execute("SELECT count(*) FROM sources").fetchone() != (0,):
        if remote:
            raise InputError(f"{remote[0]}: Spark reads URIs into a new database only")
        return None
    planned = [(plan_file(con, p, None, profile), uri_of(p)) for p in files]
    if not spark_reads([plan for plan, _ in planned]):
        if remote:  # Spark reads them all, or none
            odd = next(plan for plan, _ in planned if not spark_reads([plan]))
            why = parquet.problems(odd) or profiles.unread(odd) or "a file DuckDB's ingest reads"
            raise InputError(
                f"{odd.path}: Spark does not read this file as DuckDB does ({why}); "
                f"with a URI ({remote[0]}) Spark must read every input"
            )
        return None
    planned += [(plan_uri(spark, u, profile=profile), u) for u in remote]
    sources = ingest(spark, planned, warehouse)
    _copy_into(con, warehouse)
    report = IngestReport()
    for s in sources:
        result = FileResult(
            s.shown,
            s.plan.profile.kind_label if s.plan.profile else s.plan.kind.value,
            s.plan.format,
            s.plan.compression,
            s.sha256,
            s.size,
            s.rows_loaded,
            s.rows_rejected,
            status=s.status,
            profile=s.plan.profile.name if s.plan.profile else None,
        )
        report.files.append(result)  # (one Spark job reads them all: no time per file)
    return report


def _copy_into(con: duckdb.DuckDBPyConnection, warehouse: Path) -> None:
    """The tables Spark read, into the database's (one transaction), read by
    DuckDB from the warehouse's Parquet files (never collected through Spark's
    driver, whose heap a large table would fill); the source id sequence moves
    past them."""
    names = ["sources", "rejects", *(TABLES[k] for k in Kind)]
    con.execute("BEGIN TRANSACTION")
    try:
        for name in names:
            files = sorted(str(p) for p in (warehouse / "tables" / name).glob("*.parquet"))
            if files:  # (Spark may write no file for an empty table)
                con.execute(f"INSERT INTO {name} SELECT * FROM read_parquet(?)", [files])
        row = con.execute("SELECT coalesce(max(source_id), 0) FROM sources").fetchone()
        con.execute("SELECT max(nextval('source_ids')) FROM range(?)", [int(row[0]) if row else 0])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
