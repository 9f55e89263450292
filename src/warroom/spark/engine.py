"""The pack on Spark (DESIGN.md section 6): shared relations, group steps,
detections and the impact arithmetic, from the same DuckDB-dialect files.

The canonical tables come from the warehouse folder as Parquet (``tables/``:
requests, ledger, abuse_events, prices, sources, rejects); every shared relation
is the translated SQL of its file, materialised once (``localCheckpoint``); a
group step (``pack.GroupStep``, the served counterfactual) runs per group on the
executors with ``applyInPandas``, calling the very function DuckDB's path calls;
each detection runs in ``Pack.detections`` order, a detection it uses readable
under its name. The findings are written to ``findings/`` in the warehouse.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from warroom.detect import FINDING_COLUMNS
from warroom.errors import QueryError
from warroom.pack import GroupStep, Pack, Query, Shared, bind
from warroom.spark.translate import to_spark

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

#: the canonical tables the pack reads, kept in the warehouse's ``tables/``: the
#: logical tables (canonical rows), every loaded row (``ledger_conflicts`` reads
#: the shadowed ones), prices, sources and rejects
CANONICAL = (
    "requests",
    "ledger",
    "abuse_events",
    "requests_all",
    "ledger_all",
    "abuse_events_all",
    "prices",
    "sources",
    "rejects",
)
_PARAM_REF = re.compile(r"\$([a-z_][a-z0-9_]*)")


def register_tables(spark: SparkSession, warehouse: Path) -> None:
    """The canonical tables of the warehouse as Spark views of their names."""
    for name in CANONICAL:
        path = warehouse / "tables" / name
        if not path.exists():
            raise QueryError(f"{path}: the warehouse has no {name} table")
        spark.read.parquet(str(path)).createOrReplaceTempView(name)


def sql(spark: SparkSession, text: str, params: dict[str, Any], *, name: str) -> DataFrame:
    """Run the DuckDB-dialect ``text`` on Spark with the ``params`` it names bound
    as Spark parameters (never formatted into the text)."""
    used = set(_PARAM_REF.findall(re.sub(r"--[^\n]*", "", text)))
    args = {k: _spark_value(v) for k, v in params.items() if k in used}
    try:
        return spark.sql(to_spark(text, name=name), args=args)
    except QueryError:
        raise
    except Exception as exc:  # Spark's AnalysisException and friends, in one line
        raise QueryError(f"{name} (Spark): {_first_line(exc)}") from None


def _spark_value(value: Any) -> Any:
    """A naive UTC datetime (the pack's timestamps) made explicit for PySpark,
    which would otherwise read it in the driver's local zone."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def build_shared(
    spark: SparkSession,
    pack: Pack,
    fault_window: tuple[datetime | None, datetime | None] = (None, None),
    on_step: Callable[[int], None] | None = None,
) -> None:
    """Every shared relation of ``pack`` as a materialised view of its name."""
    params = {"fault_start": fault_window[0], "fault_end": fault_window[1]}
    for i, s in enumerate(pack.shared):
        df = _group_step(spark, s.step, params) if s.step else _shared(spark, s, params)
        df.localCheckpoint(eager=True).createOrReplaceTempView(s.name)
        if on_step:
            on_step(i + 1)


def _shared(spark: SparkSession, s: Shared, params: dict[str, Any]) -> DataFrame:
    return sql(spark, s.sql, params, name=s.path.name)


def _group_step(spark: SparkSession, step: GroupStep, params: dict[str, Any]) -> DataFrame:
    """The step's function on each group of its input, on the executors."""
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    source = sql(spark, step.source, params, name=f"{step.name} (input)")
    in_schema = to_arrow_schema(source.schema)
    out_schema = step.function(in_schema.empty_table()).schema
    function, keys, order = step.function, step.keys, step.order

    def per_group(group: pd.DataFrame) -> pd.DataFrame:
        # the order DuckDB's path gives: NULLs first, then ascending
        ordered = group.sort_values(list(order), na_position="first", kind="stable")
        table = pa.Table.from_pandas(ordered, schema=in_schema, preserve_index=False)
        return function(table).to_pandas(date_as_object=True)

    return source.groupBy(*keys).applyInPandas(per_group, from_arrow_schema(out_schema))


def findings(
    spark: SparkSession,
    pack: Pack,
    *,
    since: str | None = None,
    until: str | None = None,
    on_detection: Callable[[str], None] | None = None,
    seconds: dict[str, float] | None = None,
) -> DataFrame:
    """Every detection's rows as one findings DataFrame (the columns of ``detect``),
    after ``build_shared``; ``seconds`` gets the time each detection took."""
    from pyspark.sql import functions as F

    detectors = pack.detections()
    used = {n for q in detectors for n in pack.uses(q)}
    parts: list[DataFrame] = []
    for q in detectors:
        started = time.monotonic()
        rows = _detection(spark, pack, q, since, until)
        if q.name in used:
            whole = rows if since is None and until is None else _detection(spark, pack, q)
            whole.createOrReplaceTempView(q.name)
        missing = [c for c in FINDING_COLUMNS if c not in rows.columns]
        if missing:
            raise QueryError(
                f"{q.path.name}: a detection must return the finding columns; "
                f"missing {', '.join(missing)} (or mark it '-- findings: no')"
            )
        tail = [
            (F.col(c).cast(t) if c in rows.columns else F.lit(None).cast(t)).alias(c)
            for c, t in (("source_id", "int"), ("line", "bigint"))
        ]
        parts.append(
            rows.select(
                F.col("detector").cast("string"),
                F.lit(q.severity).alias("severity"),
                *[F.col(c) for c in ("user_id", "currency", "ts", "request_id", "entry_id")],
                F.col("amount").cast("decimal(38,6)").alias("amount"),
                F.col("detail").cast("string"),
                *tail,
            )
        )
        if seconds is not None:
            seconds[q.name] = time.monotonic() - started
        if on_detection:
            on_detection(q.name)
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out


def _detection(
    spark: SparkSession, pack: Pack, q: Query, since: str | None = None, until: str | None = None
) -> DataFrame:
    return sql(spark, q.sql, bind(q, {}, since, until), name=q.path.name).localCheckpoint(
        eager=True
    )


def impact_sums(
    spark: SparkSession, start: datetime | None, end: datetime | None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """impact/impact.sql on Spark (over the ``findings`` view and the shared
    relations): its column names and rows, as DuckDB's path reads them."""
    text = resources.files("warroom.impact").joinpath("impact.sql").read_text(encoding="utf-8")
    df = sql(spark, text, {"start": start, "end": end}, name="impact.sql")
    table = df.toArrow()
    return table.column_names, [tuple(r.values()) for r in _naive(table).to_pylist()]


def to_arrow(df: DataFrame) -> pa.Table:
    """A DataFrame's rows as Arrow, timestamps naive UTC as DuckDB gives them."""
    return _naive(df.toArrow())


def _naive(table: pa.Table) -> pa.Table:
    fields = []
    for f in table.schema:
        if pa.types.is_timestamp(f.type) and f.type.tz is not None:
            fields.append(pa.field(f.name, pa.timestamp("us"), f.nullable))
        else:
            fields.append(f)
    return table.cast(pa.schema(fields))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def iter_names(pack: Pack) -> Iterator[str]:
    """The shared relations and detections, in the order the engine runs them."""
    yield from (s.name for s in pack.shared)
    yield from (q.name for q in pack.detections())
