"""URIs Spark reads the inputs at (``s3a://``, ``hdfs://``, ``abfss://``,
``file://``): listed and planned through Hadoop's FileSystem, as ``sniff``
expands and plans local paths."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from warroom.errors import InputError
from warroom.ingest.sniff import FilePlan
from warroom.model import Kind
from warroom.spark import parquet

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from warroom.profiles import Profile

#: the formats Spark reads itself
READS = ("json", "csv", "tsv", "parquet")


def _hadoop(spark: SparkSession) -> tuple[Any, Any]:
    """The driver's JVM and Hadoop configuration (FileSystem calls go there)."""
    jvm: Any = spark.sparkContext._jvm
    jsc: Any = spark.sparkContext._jsc
    return jvm, jsc.hadoopConfiguration()


def uri_of(p: Path | str) -> str:
    text = str(p)
    return text if "://" in text else "file:" + str(Path(text).resolve())


def expand_uri(spark: SparkSession, uri: str) -> list[str]:
    """The data files at ``uri`` (a file, or a folder read recursively, entries
    starting with ``_`` or ``.`` skipped), sorted: any scheme Hadoop reads."""
    from warroom.ingest.sniff import _data_suffix

    jvm, conf = _hadoop(spark)
    root = jvm.org.apache.hadoop.fs.Path(uri)
    fs = root.getFileSystem(conf)
    if not fs.exists(root):
        raise InputError(f"{uri}: no such file or folder")
    if fs.getFileStatus(root).isFile():
        return [uri]
    found = []
    it = fs.listFiles(root, True)
    while it.hasNext():
        path = it.next().getPath()
        rel = str(path.toString())[len(str(root.toString())) :]
        if any(part[:1] in ("_", ".") for part in rel.split("/") if part):
            continue
        if _data_suffix(Path(path.getName())) is not None:
            found.append(str(path.toString()))
    if not found:
        raise InputError(f"{uri}: no data files in this folder")
    return sorted(found)


def plan_uri(
    spark: SparkSession, uri: str, kind: Kind | None = None, profile: Profile | None = None
) -> FilePlan:
    """How Spark reads the file at ``uri``: its format from its name, its kind
    from ``kind``, its name or its first record (a CSV's header), as
    ``sniff.plan_file`` decides for a local file; with ``profile``, as
    ``sniff._plan_profile`` does (how its rows are found: a CSV's header as
    written, a .json file's array or document)."""
    import json

    from warroom.ingest.sniff import (
        _data_suffix,
        _format_of,
        _kind_from_fields,
        _kind_from_name,
        _plan_csv,
    )

    name = Path(uri.rsplit("/", 1)[-1])
    fmt, compression = _format_of(name)
    if fmt not in READS:
        raise InputError(f"{uri}: Spark reads JSON lines and arrays, CSV/TSV and Parquet here")
    plan = FilePlan(name, fmt, compression, kind or Kind.requests, 0)
    if fmt == "parquet":
        plan.parquet_columns = parquet.uri_columns(spark, uri)
        plan.parquet_types = {c.lower(): t for c, t in plan.parquet_columns}
        if profile is not None:
            plan.profile, plan.kind = profile, profile.kinds[0]
        else:
            plan.kind = (
                kind or _kind_from_name(name) or _kind_from_fields(name, set(plan.parquet_types))
            )
        why = parquet.problems(plan)
        if why:
            raise InputError(f"{uri}: Spark does not read this Parquet file as DuckDB does ({why})")
        return plan
    head = spark.read.option("lineSep", "\n").text(uri).limit(64).collect()
    lines = [str(r[0]).removeprefix("\ufeff").rstrip("\r") for r in head]
    first = next((i for i, line in enumerate(lines) if line.strip(" \t")), None)
    if profile is not None:
        return _plan_profile(uri, plan, profile, lines, first)
    named = kind or _kind_from_name(name)
    if fmt in ("csv", "tsv"):
        if first is not None:
            _plan_csv(plan, named, lines, first)
        else:
            plan.kind = named or Kind.requests
        return plan
    text = "\n".join(lines).lstrip(" \t\r\n")
    plan.json_array = _data_suffix(name) == ".json" and text.startswith("[")
    if named is None:
        try:  # the first line's object, or an array's first element
            keys = set(
                json.JSONDecoder().raw_decode(text[1:].lstrip())[0]
                if plan.json_array
                else json.loads(lines[first])
                if first is not None
                else ()
            )
        except (ValueError, TypeError):
            keys = set()
        named = _kind_from_fields(name, keys)
    plan.kind = named
    return plan


def _plan_profile(
    uri: str, plan: FilePlan, profile: Profile, lines: list[str], first: int | None
) -> FilePlan:
    import orjson

    from warroom.ingest.sniff import _csv_header, _data_suffix

    plan.profile, plan.kind = profile, profile.kinds[0]
    if first is None:
        return plan
    if plan.format in ("csv", "tsv"):
        plan.header_line = first + 1
        plan.header = _csv_header(lines[first], plan.format)
        dup = sorted({c for c in plan.header if plan.header.count(c) > 1})
        if dup:
            raise InputError(f"{uri}: column(s) {', '.join(dup)} appear twice in the header")
    elif _data_suffix(plan.path) == ".json":
        if lines[first].lstrip().startswith("["):
            plan.json_array = True
        else:
            try:
                orjson.loads(lines[first])
            except orjson.JSONDecodeError:
                plan.json_document = True
    return plan
