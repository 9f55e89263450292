"""Spark reads Parquet itself (DESIGN.md section 6): each file with
``spark.read.parquet``, numbered by its row position (``_metadata.row_index``,
from 0: DuckDB's ``file_row_number``), typed and rejected by the rules of
DuckDB's Parquet path (``relations.parquet_values`` + ``convert.typed_select``)
translated by ``translate_ingest``.

Those rules read each column as DuckDB's ``CAST(x AS VARCHAR)`` text and keep
the row as DuckDB's ``to_json`` text (a reject's ``raw``); the translation
writes DuckDB's text where Spark's differs (``spark/duck_text.py``). A column
whose text cannot be rendered alike (``duck_text.problem``; also a nanosecond
timestamp Spark cannot read) is named, and a local file is then read by
DuckDB's ingest, a URI refused. Through an import profile every column is
read, as the row's JSON document (``relations.parquet_rows``, ``profile_rows``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from warroom.errors import InputError
from warroom.ingest import relations
from warroom.ingest.convert import typed_select
from warroom.ingest.sniff import FilePlan
from warroom.model import FIELDS
from warroom.spark.duck_text import TZ, problem, quoted, register
from warroom.spark.translate_ingest import ingest_to_spark

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import DataType

# --------------------------------------------------------------------------- URIs


def duck_type(t: DataType) -> str:
    """The DuckDB name of a Spark type as DuckDB reads the same Parquet column
    (read with timestamps without a zone as TIMESTAMP_NTZ)."""
    from pyspark.sql import types as T

    simple = {
        T.StringType: "VARCHAR",
        T.BooleanType: "BOOLEAN",
        T.ByteType: "TINYINT",
        T.ShortType: "SMALLINT",
        T.IntegerType: "INTEGER",
        T.LongType: "BIGINT",
        T.FloatType: "FLOAT",
        T.DoubleType: "DOUBLE",
        T.DateType: "DATE",
        T.TimestampNTZType: "TIMESTAMP",
        T.TimestampType: TZ,
        T.BinaryType: "BLOB",
    }
    for cls, name in simple.items():
        if isinstance(t, cls):
            return name
    if isinstance(t, T.DecimalType):
        return f"DECIMAL({t.precision},{t.scale})"
    if isinstance(t, T.ArrayType):
        return duck_type(t.elementType) + "[]"
    if isinstance(t, T.MapType):
        return f"MAP({duck_type(t.keyType)}, {duck_type(t.valueType)})"
    if isinstance(t, T.StructType):
        return "STRUCT(" + ", ".join(f'"{f.name}" {duck_type(f.dataType)}' for f in t) + ")"
    return t.simpleString().upper()


def uri_columns(spark: SparkSession, uri: str) -> list[tuple[str, str]]:
    """The columns of the Parquet file at ``uri``, in order, and their DuckDB
    types (as ``sniff`` reads them for a local file), from the footer Spark reads."""
    key = "spark.sql.parquet.inferTimestampNTZ.enabled"
    old = spark.conf.get(key, None)
    spark.conf.set(key, "true")
    try:
        schema = spark.read.parquet(uri).schema
    except Exception as exc:  # noqa: BLE001 - Spark's many reader errors, as one line
        raise InputError(f"{uri}: Spark cannot read this Parquet file: {_first(exc)}") from None
    finally:
        spark.conf.set(key, old or "false")
    return [(f.name, duck_type(f.dataType)) for f in schema]


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def used(plan: FilePlan) -> dict[str, str]:
    """The canonical columns the file holds, and their DuckDB types."""
    return {
        f.name: plan.parquet_types[f.name]
        for f in FIELDS[plan.kind]
        if f.name in plan.parquet_types
    }


def problems(plan: FilePlan) -> str | None:
    """Why Spark does not read the file as DuckDB's ingest does, or None: a
    canonical file's columns that are read, or, through a profile, every column
    (the row is the profile's JSON document)."""
    columns = plan.parquet_columns if plan.profile else used(plan).items()
    found = [p for c, t in columns if (p := problem(c, t))]
    return "; ".join(found) or None


def _rows(spark: SparkSession, uri: str, columns: list[str], view: str) -> None:
    """``view``: the columns of the file at ``uri`` and ``file_row_number``."""
    from pyspark.sql import functions as F

    try:
        rows = spark.read.parquet(uri)
    except Exception as exc:  # noqa: BLE001 - Spark's many reader errors, as one line
        raise InputError(f"{uri}: Spark cannot read this Parquet file: {_first(exc)}") from None
    rows.select(
        *[F.col(quoted(c)) for c in columns],
        F.col("_metadata.row_index").alias("file_row_number"),
    ).createOrReplaceTempView(view)


def profile_rows(
    spark: SparkSession, plan: FilePlan, uri: str, view: str
) -> tuple[str, dict[str, str]]:
    """A profile file's rows: ``view``, the file read, and the SQL of its rows
    over it (``relations.parquet_rows``) with the DuckDB types of the columns
    it reads, for ``translate_ingest`` to write DuckDB's text of each."""
    why = problems(plan)
    if why:
        raise InputError(f"{uri}: Spark does not read this Parquet file as DuckDB does ({why})")
    register(spark)
    _rows(spark, uri, [c for c, _ in plan.parquet_columns], view)
    return relations.parquet_rows(plan, view), {c.lower(): t for c, t in plan.parquet_columns}


def typed(spark: SparkSession, plan: FilePlan, uri: str, view: str) -> DataFrame:
    """The file's rows typed by the translated rules: ``line``, ``raw``, the
    canonical columns and ``reason``."""
    why = problems(plan)
    if why:
        raise InputError(f"{uri}: Spark does not read this Parquet file as DuckDB does ({why})")
    types = used(plan)
    register(spark)
    _rows(spark, uri, list(types), view)
    values = relations.parquet_values(plan, view)
    sql = typed_select(plan.kind, f"({values})", extra=("raw",))
    return spark.sql(ingest_to_spark(sql, name=f"{plan.path.name} (ingest)", types=types))
