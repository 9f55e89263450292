"""Spark reads a .json file holding one array of records itself (DESIGN.md
section 6): the file's bytes (``binaryFile``, one task per file) are inflated
by the careful path's own ``scan.plain_copy`` (gzip members, a stream cut
short, bytes trailing the gzip data), split into the array's elements as
written (an element's number is its "line", as DuckDB's ``read_json_objects``
numbers them by ordinality), and the elements go through the rules of
DuckDB's array path (``relations._json_values`` + ``convert.typed_select``),
translated. A file DuckDB's ingest refuses whole (cut short, no closing ``]``,
not a well-formed array) is refused with the same one-line message.
"""

from __future__ import annotations

import json
import re
import tempfile
from json.decoder import scanstring  # type: ignore[attr-defined]  # the json module's C string reader
from pathlib import Path
from typing import TYPE_CHECKING, Any

from warroom.errors import InputError
from warroom.ingest import relations
from warroom.ingest.convert import typed_select
from warroom.ingest.scan import plain_copy
from warroom.ingest.sniff import FilePlan
from warroom.spark.translate_ingest import ingest_to_spark

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: JSON's blanks
_WS = " \t\n\r"
#: what ``split`` answers for a file that is not one well-formed array
MALFORMED = "malformed"
MALFORMED_DOCUMENTS = "malformed documents"
OPEN = "open"


def _skip(s: str, i: int) -> int:
    while i < len(s) and s[i] in _WS:
        i += 1
    return i


#: a JSON number as Python's json module reads one (ASCII digits only)
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
#: the words Python's json module reads as values (NaN and Infinity, as DuckDB's reader)
_WORDS = ("null", "true", "false", "NaN", "Infinity", "-Infinity")


def _member(s: str, i: int) -> int | None:
    """Past an object member's key and colon at ``s[i]``: where its value starts."""
    if s[i : i + 1] != '"':
        return None
    try:
        i = _skip(s, scanstring(s, i + 1)[1])
    except ValueError:
        return None
    return _skip(s, i + 1) if s[i : i + 1] == ":" else None


def _scalar_end(s: str, i: int) -> int | None:
    """Where the string, word or number at ``s[i]`` ends, or None."""
    if s[i : i + 1] == '"':
        try:
            return int(scanstring(s, i + 1)[1])
        except ValueError:
            return None
    word = next((w for w in _WORDS if s.startswith(w, i)), None)
    if word:
        return i + len(word)
    m = _NUMBER.match(s, i)
    return m.end() if m else None


def value_end(s: str, i: int) -> int | None:
    """Where the JSON value starting at ``s[i]`` ends, or None when it is not well
    formed: what ``json.JSONDecoder().raw_decode`` reads, without its recursion,
    so that no depth of nesting stops it (DuckDB's reader takes any)."""
    closers: list[str] = []  # the closing bracket of each open container
    while True:
        opened = s[i : i + 1]
        if opened in ("{", "["):
            close = "}" if opened == "{" else "]"
            i = _skip(s, i + 1)
            if s[i : i + 1] != close:
                closers.append(close)
                start = _member(s, i) if close == "}" else i
                if start is None:
                    return None
                i = start
                continue
            i += 1
        else:
            end = _scalar_end(s, i)
            if end is None:
                return None
            i = end
        # past a value: close what it ends, or go on to the next item
        while closers:
            i = _skip(s, i)
            if s[i : i + 1] == closers[-1]:
                closers.pop()
                i += 1
                continue
            if s[i : i + 1] != ",":
                return None
            i = _skip(s, i + 1)
            start = _member(s, i) if closers[-1] == "}" else i
            if start is None:
                return None
            i = start
            break
        else:
            return i


_DECODER = json.JSONDecoder()


def _end(s: str, i: int) -> int | None:
    """``value_end``, by Python's decoder (in C) where its recursion reaches."""
    try:
        return int(_DECODER.raw_decode(s, i)[1])
    except ValueError:
        return None
    except RecursionError:
        return value_end(s, i)


def elements(text: str) -> list[str] | None:
    """The elements of the JSON array ``text`` as written, or None when it is not
    one well-formed array (blanks around it aside). NaN and Infinity are read,
    as DuckDB's reader reads them (the rules then reject them)."""
    i = _skip(text, 0)
    if text[i : i + 1] != "[":
        return None
    i, out = _skip(text, i + 1), list[str]()
    if text[i : i + 1] == "]":
        return out if _skip(text, i + 1) == len(text) else None
    while True:
        end = _end(text, i)
        if end is None:
            return None
        out.append(text[i:end])
        i = _skip(text, end)
        if text[i : i + 1] == ",":
            i = _skip(text, i + 1)
        elif text[i : i + 1] == "]":
            return out if _skip(text, i + 1) == len(text) else None
        else:
            return None


def documents(text: str) -> list[str] | None:
    """The JSON documents of ``text`` (values one after another, blanks between
    them) as written, or None when one is not well formed: what DuckDB's
    ``read_json_objects(format = 'unstructured')`` reads."""
    out: list[str] = []
    i = _skip(text, 0)
    while i < len(text):
        end = _end(text, i)
        if end is None:
            return None
        out.append(text[i:end])
        i = _skip(text, end)
    return out


def split(
    content: bytes, gzip: bool, array: bool = True
) -> tuple[str | None, str | None, int, list[str]]:
    """A .json array file's bytes (or, not ``array``, a file of pretty-printed
    documents) -> (why it is refused whole, what trailed its gzip data, its
    physical lines, its elements or documents as written)."""
    with tempfile.TemporaryDirectory(prefix="warroom-spark-") as tmp:
        raw = Path(tmp) / "file"
        raw.write_bytes(content)
        path, text = plain_copy(raw, "gzip" if gzip else None, tmp)
        if text.broken:
            return text.broken, None, 0, []
        body = path.read_bytes()
    lines = body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)
    if array and not body.rstrip(b" \t\r\n").endswith(b"]"):
        return OPEN, None, lines, []
    try:
        decoded = body.decode("utf-8").removeprefix("\ufeff")
        found = elements(decoded) if array else documents(decoded)
    except UnicodeDecodeError:
        found = None
    if found is None:
        return (MALFORMED if array else MALFORMED_DOCUMENTS), None, lines, []
    return None, text.trailing, lines, found


def _refusal(path: object, why: str) -> str:
    if why == OPEN:
        return (
            f"{path}: the JSON array ends without its closing `]`: "
            "the file looks cut short; nothing loaded"
        )
    if why == MALFORMED_DOCUMENTS:
        return f"{path}: cannot read JSON: not well-formed JSON documents; nothing loaded"
    if why == MALFORMED:
        return (
            f"{path}: not a well-formed JSON array of objects; "
            "use one JSON object per line (.jsonl)"
        )
    return (
        f"{path}: {why}; a JSON array or document cut short is not loaded "
        "(nothing loaded): fetch the file again"
    )


def read(
    spark: SparkSession, plan: FilePlan, uri: str, shown: str, view: str
) -> tuple[DataFrame, list[tuple[int, str, str]], int]:
    """The array's elements typed by the translated rules (``line``, ``raw``, the
    canonical columns, ``reason``), the rejects found before them (bytes after
    the gzip data: one after the last element) and the file's physical lines."""
    trailing, lines = element_view(spark, plan, uri, shown, view)
    values = relations._json_values(plan.kind, f"SELECT line, raw FROM {view}")
    sql = typed_select(plan.kind, f"({values})", extra=("raw",))
    typed = spark.sql(ingest_to_spark(sql, name=f"{plan.path.name} (ingest)"))
    return typed, trailing, lines


def element_view(
    spark: SparkSession, plan: FilePlan, uri: str, shown: str, view: str
) -> tuple[list[tuple[int, str, str]], int]:
    """The array's elements (or a file's pretty-printed documents) as written,
    numbered from 1, as the temp view ``view`` (``line``, ``raw``); returns the
    rejects found before them (bytes after the gzip data: one after the last
    element, its reason) and the file's physical lines. A file DuckDB refuses
    whole is refused alike."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import (
        ArrayType,
        IntegerType,
        StringType,
        StructField,
        StructType,
    )

    schema = StructType(
        [
            StructField("why", StringType()),
            StructField("trailing", StringType()),
            StructField("lines", IntegerType()),
            StructField("elements", ArrayType(StringType())),
        ]
    )
    gz = plan.compression == "gzip"
    array = plan.json_array
    cut = F.udf(lambda b: split(bytes(b), gz, array), schema)
    whole = (
        spark.read.format("binaryFile")
        .load(uri)
        .select(cut("content").alias("s"))
        .select("s.*")
        .localCheckpoint(eager=True)
    )
    head: Any = whole.select("why", "trailing", "lines", F.size("elements").alias("n")).first()
    if head["why"]:
        raise InputError(_refusal(shown, head["why"]))
    whole.select(
        F.posexplode("elements").alias("i", "raw"),
    ).select((F.col("i") + 1).cast("bigint").alias("line"), "raw").createOrReplaceTempView(view)
    trailing = [(int(head["n"]) + 1, "", head["trailing"])] if head["trailing"] else []
    return trailing, int(head["lines"])
