"""Spark reads a file through an import profile itself (DESIGN.md section 6): the
very statements ``profiles.map_rows`` runs on DuckDB (the ``each`` expansions,
the mappings, the reasons, the rejects), run on Spark translated by
``ingest_to_spark``, never a second copy.

``SparkRunner`` is the ``profiles.apply.Executor`` for Spark: ``CREATE OR
REPLACE TEMP TABLE x AS SELECT`` becomes a temp view of the translated SELECT
(materialised: the later statements read it several times), ``INSERT INTO``
a union into that view, ``DROP TABLE`` a dropped view; the good rows
``insert_good`` is given and the rejects are kept as frames for the
warehouse's tables. The rows come from the file's numbered lines
(``spark/ingest.py``) or an array's elements through ``relations.lines_rows``
or ``element_rows``, translated too.

Spark reads profile files in JSON lines, CSV/TSV, JSON arrays and
pretty-printed documents (gzip or not; an array's elements and the documents
as written, ``spark/documents.py``, as DuckDB's ``read_json_objects`` gives
them) and Parquet (each row's JSON document written as DuckDB writes it,
``parquet.profile_rows``; a column Spark does not write alike is named by
``unread``: refused for a URI, read by DuckDB's ingest for a local file).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from warroom.errors import UsageError
from warroom.model import FIELDS, Kind
from warroom.profiles.apply import map_rows
from warroom.spark import parquet
from warroom.spark.translate import Untranslatable
from warroom.spark.translate_ingest import ingest_to_spark

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from warroom.ingest.sniff import FilePlan

_CREATE_AS = re.compile(r"CREATE OR REPLACE TEMP TABLE (\w+) AS\s+(.*)\Z", re.S)
_CREATE_COLS = re.compile(r"CREATE OR REPLACE TEMP TABLE (\w+) \((.*)\)\Z", re.S)
_INSERT = re.compile(r"INSERT INTO (\w+) (SELECT\s.*)\Z", re.S)
_DROP = re.compile(r"DROP TABLE (?:IF EXISTS )?(\w+)\Z")
_MACRO = re.compile(r"CREATE OR REPLACE TEMP MACRO (\w+)\(")


def unread(plan: FilePlan) -> str | None:
    """Why Spark does not read ``plan``'s profile file itself, or None: a Parquet
    column whose JSON text Spark does not write as DuckDB does."""
    return parquet.problems(plan) if plan.format == "parquet" else None


class SparkRunner:
    """The mapping's statements on Spark (module doc)."""

    def __init__(self, spark: SparkSession, source_id: int, name: str) -> None:
        self.spark, self.source_id, self.name = spark, source_id, name
        self.rows: list[Any] = []
        self.rejects: list[DataFrame] = []
        self.good: list[tuple[Kind, DataFrame]] = []

    def frame(
        self,
        sql: str,
        params: dict[str, object] | None = None,
        types: dict[str, str] | None = None,
    ) -> DataFrame:
        """``sql`` translated (``types``: of the Parquet columns it reads) and run."""
        text = ingest_to_spark(sql, name=self.name, types=types)
        return self.spark.sql(text, args=params) if params else self.spark.sql(text)

    def keep(self, view: str, df: DataFrame) -> None:
        df.localCheckpoint(eager=True).createOrReplaceTempView(view)

    def execute(self, query: str, parameters: Any = None, /) -> SparkRunner:
        sql = query.strip()
        if m := _MACRO.match(sql):
            from warroom.spark.translate_ingest import macros

            if m.group(1).lower() not in macros():
                raise Untranslatable(f"{self.name}: macro {m.group(1)} has no Spark form")
        elif m := _CREATE_AS.match(sql):
            self.keep(m.group(1), self.frame(m.group(2), parameters))
        elif m := _CREATE_COLS.match(sql):
            cols = ", ".join(
                f"CAST(NULL AS {typ}) AS {col}"
                for col, typ in (c.split() for c in m.group(2).split(","))
            )
            self.keep(m.group(1), self.frame(f"SELECT {cols} WHERE false"))
        elif m := _INSERT.match(sql):
            self._insert(m.group(1), self.frame(m.group(2), parameters))
        elif m := _DROP.match(sql):
            self.spark.catalog.dropTempView(m.group(1))
        elif sql.startswith("SELECT"):
            self.rows = self.frame(sql, parameters).collect()
        else:
            raise Untranslatable(f"{self.name}: a statement Spark does not run: {sql[:40]}")
        return self

    def _insert(self, view: str, df: DataFrame) -> None:
        from pyspark.sql import functions as F

        if view == "rejects":
            cols = ["source_id", "line", "raw", "reason"]
            typed = [F.col(c).cast(t) for c, t in zip(cols, _REJECT_TYPES, strict=True)]
            df = df.toDF(*cols).select(*typed)
            self.rejects.append(df.localCheckpoint(eager=True))
            return
        old = self.spark.table(view)
        df = df.toDF(*old.columns).select(
            *[F.col(f.name).cast(f.dataType) for f in old.schema.fields]
        )
        self.keep(view, old.union(df))

    def executemany(self, query: str, parameters: Any, /) -> SparkRunner:
        raise Untranslatable(f"{self.name}: rows given one by one do not go to Spark")

    def fetchone(self) -> tuple[Any, ...] | None:
        return tuple(self.rows[0]) if self.rows else None


_REJECT_TYPES = ("int", "bigint", "string", "string")
#: the schema of a frame of rejects
REJECTS = "source_id int, line bigint, raw string, reason string"


def insert_good(
    runner: SparkRunner,
    kind: Kind,
    typed_sql: str,
    params: dict[str, object],
    order: str | None = None,
) -> int:
    """``ingest.loaders.insert_good`` for Spark: the good rows of ``typed_sql``
    kept (materialised: the mapping's views go at the end) with ``wr_m`` (the
    mapping's place: an id's canonical row is the first mapping's) and ``wr_e``
    (the element's place on its line, by ``order``) for the election."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    del params  # the source id is the runner's
    df = runner.frame(typed_sql).where("reason IS NULL")
    elem = (
        F.row_number().over(
            Window.partitionBy("line").orderBy(*[c.strip() for c in order.split(",")])
        )
        if order
        else F.lit(1)
    )
    rows = df.select(
        F.lit(runner.source_id).alias("source_id"),
        "line",
        F.lit(len(runner.good)).alias("wr_m"),
        elem.alias("wr_e"),
        *[f.name for f in FIELDS[kind]],
    ).localCheckpoint(eager=True)
    runner.good.append((kind, rows))
    return rows.count()


def read(
    spark: SparkSession,
    plan: FilePlan,
    source_id: int,
    rows: str,
    shown: str,
    before: int,
    types: dict[str, str] | None = None,
) -> tuple[SparkRunner, tuple[int, int, int]]:
    """A profile file's rows (``rows``: the SQL of ``relations.lines_rows``,
    ``element_rows`` or ``parquet_rows`` over the file's numbered lines, elements
    or rows; ``types``: a Parquet file's column types) mapped by its profile: the
    runner (good rows, rejects) and (rows loaded, rejects, rows rejected whole) as
    ``map_rows`` counts them, with the ``before`` lines or bytes rejected before
    any row (a line not read, bytes after gzip data)."""
    profile = plan.profile
    assert profile is not None
    why = unread(plan)
    if why:
        raise UsageError(f"{shown}: --engine spark does not read {why} yet; copy the file here")
    runner = SparkRunner(spark, source_id, f"{plan.path.name} (profile {profile.name})")
    runner.keep("wr_prow", runner.frame(rows, types=types))
    try:
        loaded, rejects, whole = map_rows(runner, profile, source_id, insert_good)
    finally:
        spark.catalog.dropTempView("wr_prow")
    return runner, (loaded, rejects + before, whole + before)
