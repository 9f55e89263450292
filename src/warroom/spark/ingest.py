"""Spark reads the inputs itself (DESIGN.md section 6): canonical JSON lines and
CSV/TSV, gzip or not, JSON arrays (``spark/documents.py``) and Parquet
(``spark/parquet.py``), typed and rejected by ingest's own SQL translated for
Spark (``translate_ingest``), into the warehouse's canonical tables.

A text file is read with ``spark.read.text`` (only LF ends a line, as in
DuckDB's ingest) and numbered per file in the JVM; a line a cheap test suspects
passes ``convert.line_reason`` (the very function of the careful path: too
long, not UTF-8, a control byte) on the executors, a bad line becoming a reject
with ``scan.clip``'s text. The lines then go through
``relations._json_values``/``_csv_values`` and ``convert.typed_select``,
translated: the same rules, the same reasons, run (and materialised) once for
all the files of a kind, format and header (each line coded with its source id
meanwhile); each file's counts come from one job at the end.
Canonical rows are elected as DuckDB's ingest elects them (the first ingested:
lowest file order, then line), a file whose bytes repeat an earlier one's is
skipped, and ``sources`` records each file (sha256 read through Hadoop's
FileSystem on the driver).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from warroom.errors import InputError
from warroom.ingest import relations
from warroom.ingest.convert import LINE_LIMIT, line_reason, typed_select
from warroom.ingest.scan import clip
from warroom.ingest.sniff import FilePlan
from warroom.model import CONTENT_IDENTITY, FIELDS, IDENTITY, TABLES, FieldType, Kind
from warroom.spark import documents, parquet, profiles
from warroom.spark.translate_ingest import ingest_to_spark
from warroom.spark.uris import READS, _hadoop, uri_of

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


#: the Spark type each canonical field is stored as
SPARK_TYPES = {
    FieldType.TIMESTAMP: "timestamp",
    FieldType.STRING: "string",
    FieldType.INT: "int",
    FieldType.BIGINT: "bigint",
    FieldType.MONEY: "decimal(18,6)",
    FieldType.DOUBLE: "double",
}
#: settings the translated rules assume while they run: an out-of-range index
#: or a failed cast is NULL (as DuckDB's TRY_ forms and list indexing give),
#: and a JSON text naming a key twice parses (the rules reject it by name)
INGEST_CONF = {
    "spark.sql.ansi.enabled": "false",
    "spark.sql.variant.allowDuplicateKeys": "true",
}


@dataclass
class SparkSource:
    """One input file as ``sources`` records it."""

    source_id: int
    plan: FilePlan
    uri: str
    sha256: str
    size: int
    shown: str
    lines: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    status: str = "loaded"
    #: a profile file's rows rejected whole (the rest of its rejects are items)
    rows_rejected_whole: int | None = None


def file_digest(spark: SparkSession, uri: str) -> tuple[str, int]:
    """sha256 and size of ``uri``, its bytes streamed through Hadoop's FileSystem
    on the driver (any scheme Spark reads: file, s3a, hdfs, abfss): the same
    digest DuckDB's ingest records, so a repeated file is known on both."""
    jvm, conf = _hadoop(spark)
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(conf)
    size = int(fs.getFileStatus(path).getLen())
    stream = fs.open(path)
    try:  # streamed in the JVM, by the commons-codec Hadoop ships
        return str(jvm.org.apache.commons.codec.digest.DigestUtils.sha256Hex(stream)), size
    finally:
        stream.close()


# --------------------------------------------------------------------------- lines


#: the bytes a line may not hold (convert.CONTROL), as a Java class; CR is among
#: them (only a CRLF's last one is dropped before)
_CONTROL = "[\\x00-\\x08\\x0b-\\x1f\\x7f]"
#: the low bits of monotonically_increasing_id: a row's place in its partition
_IN_PARTITION = (1 << 33) - 1


def _number_lines(spark: SparkSession, uri: str) -> tuple[DataFrame, int]:
    """Every physical line of the text at ``uri``, and how many: ``line`` (from
    1), ``raw`` (the text, CR of a CRLF ending and a leading BOM dropped; '' for
    a bad line) and ``bad``/``bad_raw`` (the careful path's reject of a line
    DuckDB cannot read).

    Numbered in the JVM: a row's place in its partition, after the lines of the
    partitions that start earlier in the file (``_metadata.file_block_start``).
    Only a line a cheap test suspects (not UTF-8, a control byte, too long)
    goes to Python, for ``convert.line_reason`` and ``scan.clip``."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    text = spark.read.option("lineSep", "\n").text(uri)
    placed = text.select(
        F.col("value").cast("binary").alias("b0"),
        F.col("_metadata.file_block_start").alias("blk"),
        F.spark_partition_id().alias("p"),
        (F.monotonically_increasing_id().bitwiseAND(F.lit(_IN_PARTITION))).alias("i"),
    ).localCheckpoint(eager=True)
    parts = placed.groupBy("p").agg(F.min("blk").alias("blk"), F.count("*").alias("n"))
    starts, before = [], 0
    for row in sorted(parts.collect(), key=lambda r: (r["blk"], r["p"])):
        starts.append((int(row["p"]), before))
        before += int(row["n"])
    offsets = spark.createDataFrame(starts or [(0, 0)], "p int, start long")
    b = F.col("b0")
    cr = F.substring(b, -1, 1) == F.unhex(F.lit("0D"))
    b = F.when(cr, F.expr("substring(b0, 1, octet_length(b0) - 1)")).otherwise(b)
    numbered = placed.join(F.broadcast(offsets), "p").select(
        (F.col("start") + F.col("i") + 1).alias("line"), b.alias("b1")
    )
    bom = (F.col("line") == 1) & (F.substring("b1", 1, 3) == F.unhex(F.lit("EFBBBF")))
    numbered = numbered.select(
        "line", F.when(bom, F.expr("substring(b1, 4)")).otherwise(F.col("b1")).alias("b")
    )
    as_text = F.col("b").cast("string")
    suspect = (
        ~F.expr("is_valid_utf8(CAST(b AS STRING))")
        | (F.octet_length("b") > LINE_LIMIT)
        | as_text.rlike(_CONTROL)
    )
    good = numbered.where(~suspect).select(
        "line",
        as_text.alias("raw"),
        F.lit(None).cast("string").alias("bad"),
        F.lit(None).cast("string").alias("bad_raw"),
    )

    def judged(b: bytes) -> tuple[str | None, str]:
        reason = line_reason(bytes(b))
        return (reason, clip(bytes(b))) if reason else (None, bytes(b).decode("utf-8"))

    judge = F.udf(
        judged,
        StructType([StructField("reason", StringType()), StructField("text", StringType())]),
    )
    seen = numbered.where(suspect).select("line", judge("b").alias("j"))
    looked = seen.select(
        "line",
        F.when(F.col("j.reason").isNull(), F.col("j.text")).otherwise(F.lit("")).alias("raw"),
        F.col("j.reason").alias("bad"),
        F.when(F.col("j.reason").isNotNull(), F.col("j.text")).alias("bad_raw"),
    )
    return good.unionByName(looked), before


# --------------------------------------------------------------------------- a file


#: a text file's lines share one run of the rules with the other files of its
#: kind, format and header: each line is coded as (source id << _BITS) + line
#: while the rules run (they carry ``line`` through), then decoded
_BITS = 40


def _typed(spark: SparkSession, plan: FilePlan, lines_view: str) -> DataFrame:
    """The records of ``lines_view`` (``line`` coded, ``raw``) typed by the
    translated rules of ``plan``: ``source_id``, ``line``, ``raw``, the
    canonical columns and ``reason``."""
    from pyspark.sql import functions as F

    records = relations.record_lines(f"SELECT line, raw FROM {lines_view}")
    if plan.format == "json":
        values = relations._json_values(plan.kind, records)
    else:
        values = relations._csv_values(plan, records)
    sql = typed_select(plan.kind, f"({values})", extra=("raw",))
    typed = spark.sql(ingest_to_spark(sql, name=f"{plan.path.name} (ingest)"))
    return typed.select(
        F.shiftright("line", _BITS).cast("int").alias("source_id"),
        F.col("line").bitwiseAND(F.lit((1 << _BITS) - 1)).alias("line"),
        *[c for c in typed.columns if c != "line"],
    )


def _text_key(plan: FilePlan) -> tuple[object, ...]:
    """Files whose lines one run of the rules types alike."""
    return (plan.kind, plan.format, tuple(plan.header), plan.header_line)


def _read(spark: SparkSession, src: SparkSource) -> tuple[DataFrame | None, DataFrame, DataFrame]:
    """One file: its typed rows (with ``source_id``; None for a text file), its
    coded lines (a text file's, to type with its group's), and its rejects."""
    from pyspark.sql import functions as F

    plan = src.plan
    if plan.format not in READS:
        raise InputError(
            f"{plan.path}: --engine spark reads canonical JSON lines and arrays, CSV/TSV "
            "(gzip or not) and Parquet files; this one is read by DuckDB's ingest only"
        )
    none = spark.createDataFrame([], "line bigint, raw string")
    if plan.format == "parquet":
        rows = parquet.typed(spark, plan, src.uri, f"wr_parquet_{src.source_id}")
        rows = rows.withColumn("source_id", F.lit(src.source_id))
        return rows, none, _union_rejects(spark, [])
    if plan.json_array:
        view = f"wr_array_{src.source_id}"
        rows, before, src.lines = documents.read(spark, plan, src.uri, src.shown, view)
        bad = spark.createDataFrame(
            [(src.source_id, *b) for b in before],
            "source_id int, line bigint, raw string, reason string",
        )
        return rows.withColumn("source_id", F.lit(src.source_id)), none, bad
    lines, src.lines = _number_lines(spark, src.uri)
    coded = lines.where(f"bad IS NULL AND line > {plan.header_line}").select(
        (F.lit(src.source_id << _BITS) + F.col("line")).alias("line"), "raw"
    )
    bad = lines.where("bad IS NOT NULL").select(
        F.lit(src.source_id).alias("source_id"),
        "line",
        F.col("bad_raw").alias("raw"),
        F.col("bad").alias("reason"),
    )
    return None, coded, bad


def _read_profiled(
    spark: SparkSession,
    src: SparkSource,
    typed: dict[Kind, list[DataFrame]],
    rejects: list[DataFrame],
) -> None:
    """``src``, a file read through its import profile: its lines, or an
    array's elements, as profile rows mapped (``profiles.read``); its good rows into
    ``typed``, its rejects into ``rejects``, its counts into ``src``."""
    from pyspark.sql import functions as F

    plan, sid = src.plan, src.source_id
    assert plan.profile is not None
    name = plan.profile.name
    view = f"wr_plines_{sid}"
    types = None
    if plan.format == "parquet":
        rows, types = parquet.profile_rows(spark, plan, src.uri, view)
        bad, before = spark.createDataFrame([], profiles.REJECTS), 0
    elif plan.json_array or plan.json_document:
        trailing, _ = documents.element_view(spark, plan, src.uri, src.shown, view)
        rows = relations.element_rows(f"SELECT line, raw FROM {view}")
        bad = spark.createDataFrame(
            [(sid, line, raw, f"{name}: {why}") for line, raw, why in trailing], profiles.REJECTS
        )
        before = len(trailing)  # (an array's rows are elements: no blank lines)
    else:
        lines, src.lines = _number_lines(spark, src.uri)
        lines = lines.localCheckpoint(eager=True)
        lines.where("bad IS NULL").select("line", "raw").createOrReplaceTempView(view)
        bad = lines.where("bad IS NOT NULL").select(
            F.lit(sid).cast("int").alias("source_id"),
            F.col("line").cast("bigint"),
            F.col("bad_raw").alias("raw"),
            F.concat(F.lit(name + ": "), F.col("bad")).alias("reason"),
        )
        before = bad.count()
        rows = relations.lines_rows(plan, relations.record_lines(f"SELECT line, raw FROM {view}"))
    try:
        runner, counts = profiles.read(spark, plan, sid, rows, src.shown, before, types)
    finally:
        spark.catalog.dropTempView(view)
    src.rows_loaded, src.rows_rejected, src.rows_rejected_whole = counts
    for kind, good in runner.good:
        typed[kind].append(_conform(good, kind))
    rejects.extend([*runner.rejects, bad])


# --------------------------------------------------------------------------- the tables


def _conform(df: DataFrame, kind: Kind) -> DataFrame:
    """The canonical columns in their stored types (the rules give them already;
    the cast only names the type, e.g. Spark's TIMESTAMP for DuckDB's)."""
    from pyspark.sql import functions as F

    # a profile's rows carry their mapping's and element's place (wr_m, wr_e)
    profiled = "wr_m" in df.columns
    return df.select(
        F.col("source_id").cast("int"),
        F.col("line").cast("bigint"),
        (F.col("wr_m") if profiled else F.lit(0)).cast("int").alias("wr_m"),
        (F.col("wr_e") if profiled else F.lit(1)).cast("int").alias("wr_e"),
        *[F.col(f.name).cast(SPARK_TYPES[f.type]).alias(f.name) for f in FIELDS[kind]],
        (F.lit(None) if profiled else F.col("raw")).cast("string").alias("raw"),
        (F.lit(None) if profiled else F.col("reason")).cast("string").alias("reason"),
    )


def _elect(spark: SparkSession, kind: Kind, good: DataFrame) -> DataFrame:
    """The kind's ``*_all`` table: with ``canonical`` where the kind has an id
    (the first ingested row of an id: lowest source id, then line; in a profile
    file, the first mapping's, then the line's first element)."""
    names = [f.name for f in FIELDS[kind]]
    if kind not in IDENTITY:
        return good.select("source_id", "line", *names)
    good.createOrReplaceTempView("wr_good")
    key = IDENTITY[kind]
    return spark.sql(
        f"SELECT source_id, line, row_number() OVER (PARTITION BY {key} "
        f"ORDER BY source_id, wr_m, line, wr_e) = 1 AS canonical, {', '.join(names)} FROM wr_good"
    )


def ingest(
    spark: SparkSession, plans: list[tuple[FilePlan, str]], warehouse: Path
) -> list[SparkSource]:
    """Read ``plans`` (each a file's plan and the URI Spark reads it at) into the
    warehouse's canonical tables (``tables/NAME`` as Parquet, each also a view
    of its name on ``spark``); returns what ``sources`` records."""
    saved = {k: spark.conf.get(k, None) for k in INGEST_CONF}
    for k, v in INGEST_CONF.items():
        spark.conf.set(k, v)
    try:
        return _ingest(spark, plans, warehouse)
    finally:
        for k, old in saved.items():
            if old is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, old)


def _ingest(
    spark: SparkSession, plans: list[tuple[FilePlan, str]], warehouse: Path
) -> list[SparkSource]:

    sources: list[SparkSource] = []
    seen: set[str] = set()
    typed: dict[Kind, list[DataFrame]] = {k: [] for k in Kind}
    texts: dict[tuple[object, ...], tuple[FilePlan, list[DataFrame]]] = {}
    rejects: list[DataFrame] = []
    for plan, uri in plans:
        sha, size = file_digest(spark, uri)
        # a local file as its path, a URI as Hadoop names it
        shown = str(plan.path) if uri == uri_of(plan.path) else uri
        src = SparkSource(len(sources) + 1, plan, uri, sha, size, shown)
        if sha in seen:  # the same bytes again: skipped, as a repeat is on DuckDB
            src.status = "skipped"
            continue
        seen.add(sha)
        sources.append(src)
        if size == 0:
            continue
        if plan.profile is not None:
            _read_profiled(spark, src, typed, rejects)
            continue
        rows, coded, bad = _read(spark, src)
        if rows is not None:
            typed[plan.kind].append(_conform(rows, plan.kind).localCheckpoint(eager=True))
        else:
            texts.setdefault(_text_key(plan), (plan, []))[1].append(coded)
        rejects.append(bad)
    for n, (plan, parts) in enumerate(texts.values()):
        lines = parts[0]
        for part in parts[1:]:
            lines = lines.unionByName(part)
        # materialised first: Spark would push the rules' large projection
        # through the union, one copy per file
        lines.localCheckpoint(eager=True).createOrReplaceTempView(f"wr_lines_{n}")
        rows = _conform(_typed(spark, plan, f"wr_lines_{n}"), plan.kind)
        typed[plan.kind].append(rows.localCheckpoint(eager=True))
    tables: dict[str, DataFrame] = {}
    for kind in Kind:
        # each group's rows are materialised (the rules ran once there): a
        # union of plans that small, never one of the large rule plans
        rows = _union(spark, typed[kind], kind)
        rejects.append(
            rows.where("reason IS NOT NULL").select("source_id", "line", "raw", "reason")
        )
        typed[kind] = [rows]
        good = rows.where("reason IS NULL").drop("raw", "reason")
        tables[TABLES[kind]] = _elect(spark, kind, good)
    tables["rejects"] = _union_rejects(spark, rejects)
    _count(spark, sources, [t[0] for t in typed.values()], tables["rejects"])
    tables["sources"] = _sources_frame(spark, sources)
    _write(spark, tables, warehouse)
    return sources


def _count(
    spark: SparkSession, sources: list[SparkSource], rows: list[DataFrame], rejects: DataFrame
) -> None:
    """Each source's rows loaded (its good rows) and rejected (its rejects: rows
    and lines), in one job over every file."""
    from pyspark.sql import functions as F

    both = rejects.select("source_id", F.lit(0).alias("good"), F.lit(1).alias("bad"))
    for r in rows:
        good = r.where("reason IS NULL")
        both = both.unionByName(
            good.select("source_id", F.lit(1).alias("good"), F.lit(0).alias("bad"))
        )
    counts = both.groupBy("source_id").agg(F.sum("good").alias("good"), F.sum("bad").alias("bad"))
    by_id = {int(r["source_id"]): r for r in counts.collect()}
    for src in sources:  # (a profile's file counts its rows as its profile does)
        if src.source_id in by_id and src.plan.profile is None:
            src.rows_loaded = int(by_id[src.source_id]["good"])
            src.rows_rejected = int(by_id[src.source_id]["bad"])


def _union(spark: SparkSession, parts: list[DataFrame], kind: Kind) -> DataFrame:
    if parts:
        out = parts[0]
        for p in parts[1:]:
            out = out.unionByName(p)
        return out
    cols = ", ".join(
        ["CAST(NULL AS INT) AS source_id", "CAST(NULL AS BIGINT) AS line"]
        + ["CAST(NULL AS INT) AS wr_m", "CAST(NULL AS INT) AS wr_e"]
        + [f"CAST(NULL AS {SPARK_TYPES[f.type]}) AS {f.name}" for f in FIELDS[kind]]
        + ["CAST(NULL AS STRING) AS raw", "CAST(NULL AS STRING) AS reason"]
    )
    return spark.sql(f"SELECT {cols} WHERE false")


def _union_rejects(spark: SparkSession, parts: list[DataFrame]) -> DataFrame:
    from pyspark.sql import functions as F

    if not parts:
        return spark.sql(
            "SELECT CAST(NULL AS INT) AS source_id, CAST(NULL AS BIGINT) AS line, "
            "CAST(NULL AS STRING) AS raw, CAST(NULL AS STRING) AS reason WHERE false"
        )
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out.select(F.col("source_id").cast("int"), F.col("line").cast("bigint"), "raw", "reason")


def _sources_frame(spark: SparkSession, sources: list[SparkSource]) -> DataFrame:
    from pyspark.sql.types import (
        IntegerType,
        LongType,
        StringType,
        StructField,
        StructType,
        TimestampType,
    )

    now = datetime.now(UTC)
    rows = []
    for s in sources:
        header = 1 if s.plan.header else 0
        whole = s.rows_rejected if s.rows_rejected_whole is None else s.rows_rejected_whole
        blank = max(s.lines - s.rows_loaded - whole - header, 0)
        profile = s.plan.profile
        kind = profile.kind_label if profile else s.plan.kind.value
        fmt, comp = s.plan.format, s.plan.compression
        rows.append(
            (
                s.source_id,
                s.shown,
                kind,
                fmt,
                comp,
                profile.name if profile else None,
                s.sha256,
                s.size,
                s.rows_loaded,
                s.rows_rejected,
                blank,
                now,
            )
        )
    schema = StructType(
        [
            StructField("source_id", IntegerType()),
            StructField("path", StringType()),
            StructField("kind", StringType()),
            StructField("format", StringType()),
            StructField("compression", StringType()),
            StructField("profile", StringType()),
            StructField("sha256", StringType()),
            StructField("size_bytes", LongType()),
            StructField("rows_loaded", LongType()),
            StructField("rows_rejected", LongType()),
            StructField("blank_lines", LongType()),
            StructField("ingested_at", TimestampType()),
        ]
    )
    return spark.createDataFrame(rows, schema)


def _write(spark: SparkSession, tables: dict[str, DataFrame], warehouse: Path) -> None:
    """Each table as Parquet in the warehouse, then a view of its name read from
    there; the logical tables (canonical rows) as views over them."""
    for name, df in tables.items():
        df.write.mode("overwrite").parquet(str(warehouse / "tables" / name))
    for name in tables:
        spark.read.parquet(str(warehouse / "tables" / name)).createOrReplaceTempView(name)
    for kind in IDENTITY:
        names = ", ".join(["source_id", "line"] + [f.name for f in FIELDS[kind]])
        df = spark.sql(f"SELECT {names} FROM {TABLES[kind]} WHERE canonical")
        df.write.mode("overwrite").parquet(str(warehouse / "tables" / kind.value))
    for kind, view in CONTENT_IDENTITY.items():
        names = ", ".join(f.name for f in FIELDS[kind])
        df = spark.sql(
            f"SELECT source_id, line, {names} FROM (SELECT *, row_number() OVER "
            f"(PARTITION BY {names} ORDER BY source_id, line) AS wr_n "
            f"FROM {TABLES[kind]}) WHERE wr_n = 1"
        )
        df.write.mode("overwrite").parquet(str(warehouse / "tables" / view))
    for name in [k.value for k in IDENTITY] + list(CONTENT_IDENTITY.values()):
        spark.read.parquet(str(warehouse / "tables" / name)).createOrReplaceTempView(name)
