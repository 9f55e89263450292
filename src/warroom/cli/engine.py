"""``--engine spark`` on investigate, detect, impact, export, report and run: the
shared options, and each command's Spark variant (DESIGN.md section 6).

A command takes ``engine: EngineOption`` and the three Spark options, and starts
with ``if spark_settings(...)``: the Spark variant here does the work the
DuckDB path does in the command itself, with the pack on Spark.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from warroom import render

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
    from pyspark.sql import SparkSession

    from warroom.detect import DetectResult
    from warroom.impact import Policy
    from warroom.ingest.load import IngestReport
    from warroom.pack import Pack
    from warroom.profiles import Profile
    from warroom.report import Report
    from warroom.spark.session import SparkSettings

Progress = Callable[[str, float], None]


class Engine(str, Enum):
    duckdb = "duckdb"
    spark = "spark"


EngineOption = Annotated[
    Engine,
    typer.Option(
        "--engine",
        help="Where the pack runs: duckdb (this machine) or spark (PySpark; needs the "
        '[spark] extra, pip install -e ".[spark]", and Java 17+).',
    ),
]
SparkMasterOption = Annotated[
    str,
    typer.Option(
        "--spark-master", help="With --engine spark: local[*], spark://..., yarn, k8s://..."
    ),
]
SparkConfOption = Annotated[
    list[str] | None,
    typer.Option("--spark-conf", help="With --engine spark: a Spark setting K=V (repeatable)."),
]
WarehouseOption = Annotated[
    Path | None,
    typer.Option(
        "--warehouse",
        help="With --engine spark: where the canonical tables, rejects and findings are kept "
        "as Parquet (default: warehouse/ beside the outputs or the database).",
    ),
]


def spark_settings(
    engine: Engine, master: str, conf: list[str] | None, warehouse: Path | None, beside: Path
) -> SparkSettings | None:
    """The Spark settings when ``--engine spark``, else None (the DuckDB path)."""
    if engine is not Engine.spark:
        return None
    from warroom.spark.session import SparkSettings, check_available, parse_conf

    settings = parse_conf(conf)  # a usage error first, whatever the machine has
    check_available()  # what is missing is said now, not after a long ingest
    return SparkSettings(master, settings, warehouse or beside / "warehouse")


@contextmanager
def spark_session(settings: SparkSettings) -> Iterator[SparkSession]:
    from pyspark.sql import SparkSession as Session

    from warroom.spark.session import start

    if Session.getActiveSession() is None:  # (investigate's later steps reuse it)
        render.note(f"starting Spark ({settings.master}); warehouse {settings.warehouse}")
    yield start(settings)


def ingest(
    con: duckdb.DuckDBPyConnection,
    settings: SparkSettings,
    files: list[Path],
    uris: list[str] | None = None,
    profile: Profile | None = None,
) -> IngestReport | None:
    """``investigate --engine spark``: Spark reads the files and ``uris`` itself
    (JSON lines and arrays, CSV/TSV, gzip or not, Parquet; through ``profile``
    too) into the warehouse and the database; None when one of the local files
    is read by DuckDB's ingest only (a Parquet column Spark does not render
    alike)."""
    from warroom.spark.load import load_into

    with spark_session(settings) as spark:
        report = load_into(con, spark, files, settings.warehouse, uris or [], profile)
    if report is None:
        render.note("Spark does not read one of these files as DuckDB does: DuckDB reads them")
    return report


def detect(
    con: duckdb.DuckDBPyConnection,
    settings: SparkSettings,
    pack: Pack,
    since: str | None,
    until: str | None,
    progress: Progress,
    native: bool = False,
) -> DetectResult:
    """``native``: on the tables Spark has read itself (``ingest`` above)."""
    from warroom.spark import run

    with spark_session(settings) as spark:
        return run.detect(
            con,
            spark,
            pack,
            settings.warehouse,
            since=since,
            until=until,
            progress=progress,
            native=native,
        )


def impact(
    con: duckdb.DuckDBPyConnection, settings: SparkSettings, pack: Pack, policy: Policy
) -> pa.Table:
    from warroom.spark import run

    with spark_session(settings) as spark:
        return run.impact(con, spark, pack, policy, settings.warehouse)


def report(
    con: duckdb.DuckDBPyConnection,
    settings: SparkSettings,
    pack: Pack,
    policy: Policy,
    progress: Progress,
    *,
    detected: bool = False,
    **options: Any,
) -> Report:
    """The report with the findings, impact and shared relations computed on Spark
    (``detected``: the ones ``detect`` has just computed there and stored)."""
    from warroom.report import build_report
    from warroom.spark import run

    with spark_session(settings) as spark:
        rows = run.impact(
            con, spark, pack, policy, settings.warehouse, fresh=not detected, progress=progress
        )
        run.handover(con, spark, pack)
    return build_report(con, pack, policy, progress=progress, impact_rows=rows, **options)


def run_query(
    con: duckdb.DuckDBPyConnection,
    settings: SparkSettings,
    pack: Pack,
    name: str,
    given: dict[str, str],
    since: str | None,
    until: str | None,
) -> pa.Table:
    from warroom.spark import run

    with spark_session(settings) as spark:
        return run.run_one(con, spark, pack, name, given, settings.warehouse, since, until)
