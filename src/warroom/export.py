"""One table of writers: format name -> function(arrow table, binary stream).

Every command that prints rows goes through ``write``, so ``--format`` and
``--out`` behave the same everywhere. Two promises hold for every writer:

* money stays exact: decimals are written as their exact decimal text (JSON
  strings), never through a binary float;
* text opened in a spreadsheet cannot start a formula: in CSV and Markdown a
  text cell is prefixed with a single quote when it begins with ``=``, ``+``,
  ``-``, ``@`` or their full-width forms (``＝ ＋ － ＠``), also after leading
  blanks, line breaks or other controls (a NUL), or when it begins with any
  control character (tab, carriage return, ...): OWASP's CSV-injection triggers.
  Numeric columns are left numeric;
* Markdown is for people: every cell goes through ``warroom.escape.md_escape``,
  as ``report.md`` does (no HTML, controls and bidi characters shown as escapes).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from enum import Enum
from typing import BinaryIO

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from warroom.escape import md_escape


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    jsonl = "jsonl"
    parquet = "parquet"
    markdown = "markdown"


#: a leading control, or a formula sign after any leading blanks, controls or invisible
#: format characters (RE2 classes: Z = separators, Cc = controls, Cf = format)
_FORMULA = r"^(?:\p{Cc}|[\p{Z}\p{Cc}\p{Cf}]*[=+\-@\x{FF1D}\x{FF0B}\x{FF0D}\x{FF20}])"


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def defuse_formulas(table: pa.Table, text_columns: list[str] | None = None) -> pa.Table:
    """Prefix ``'`` to every text cell a spreadsheet would read as a formula.

    Only ``text_columns`` (default: the string columns) are touched, so numbers
    rendered as text for exactness stay numbers.
    """
    if text_columns is None:
        text_columns = [f.name for f in table.schema if _is_text(f.type)]
    cols = []
    for name, col in zip(table.column_names, table.columns, strict=True):
        if name in text_columns:
            risky = pc.match_substring_regex(col, _FORMULA)
            col = pc.if_else(risky, pc.binary_join_element_wise("'", col, ""), col)
        cols.append(col)
    return pa.table(cols, names=table.column_names)


def _text_columns(table: pa.Table, *, decimals: bool = True) -> pa.Table:
    """Timestamps -> ISO-8601 UTC text (``...Z``); decimals -> exact text unless
    ``decimals`` is false (CSV writes them as plain numbers); every other type
    that is not text, a number or a boolean -> its text form (``as_text``)."""
    cols = []
    for col in table.columns:
        t = col.type
        if decimals and pa.types.is_decimal(t):
            col = pc.cast(col, pa.string())
        elif not _is_plain(t):
            col = as_text(col)
        cols.append(col)
    return pa.table(cols, names=table.column_names)


def text_table(table: pa.Table) -> pa.Table:
    """``table`` for the table view: every column that is not text, a number, a
    boolean or a timestamp or date Python can hold becomes text (``as_text``)."""
    cols = [
        col if _is_plain(col.type) or _python_temporal(col) else as_text(col)
        for col in table.columns
    ]
    return pa.table(cols, names=table.column_names)


def _python_temporal(col: pa.ChunkedArray) -> bool:
    """A timestamp (to the microsecond) or date column whose values all lie in years 1-9999."""
    t = col.type
    if pa.types.is_timestamp(t) and t.unit != "ns":
        micros = pc.cast(pc.cast(col, pa.timestamp("us", tz=t.tz)), pa.int64())
        lo, hi = _ISO_RANGE
    elif pa.types.is_date(t):
        micros = pc.cast(pc.cast(col, pa.date32()), pa.int32())
        lo, hi = -719_162, 2_932_897
    else:
        return False
    inside = pc.and_(pc.greater_equal(micros, lo), pc.less(micros, hi))
    return bool(pc.all(inside).as_py() is not False)


def _is_plain(t: pa.DataType) -> bool:
    """Text, numbers, booleans: every format writes these as they are."""
    return bool(
        _is_text(t)
        or pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_decimal(t)
        or pa.types.is_boolean(t)
        or pa.types.is_null(t)
    )


def _is_nested(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_fixed_size_list(t)
        or pa.types.is_struct(t)
        or pa.types.is_map(t)
    )


#: microseconds since the epoch of 0001-01-01 and 10000-01-01: the years _iso can write
_ISO_RANGE = (-62_135_596_800_000_000, 253_402_300_800_000_000)


def as_text(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """A column of any type as text, the form every format without such a type writes:
    timestamps ``2025-06-01T16:00:00.5Z`` (UTC), dates ``2025-06-01``, and DuckDB's own
    text for the rest (``infinity``, ``294246-01-01 00:00:00``, ``3 days 00:00:05``,
    ``12:34:56.5``, ``[1, 2]``, ``{'a': 1}``, ``{k=1}``, a BLOB as ``ab\\x00``)."""
    t = col.type
    if pa.types.is_timestamp(t) and t.unit == "ns":
        return _duck_text(col)  # nanoseconds: DuckDB's text keeps every digit
    if pa.types.is_timestamp(t):
        micros = pc.cast(pc.cast(col, pa.timestamp("us", tz=t.tz), safe=False), pa.int64())
        odd = pc.invert(
            pc.and_(pc.greater_equal(micros, _ISO_RANGE[0]), pc.less(micros, _ISO_RANGE[1]))
        )
        if not pc.any(odd).as_py():
            return _iso(col)
        safe = pc.if_else(odd, pa.scalar(None, col.type), col)
        return pc.if_else(odd, _duck_text(col), _iso(safe))
    if pa.types.is_date(t):
        days = pc.cast(pc.cast(col, pa.date32()), pa.int32())
        odd = pc.invert(pc.and_(pc.greater_equal(days, -719_162), pc.less(days, 2_932_897)))
        if not pc.any(odd).as_py():
            return pc.cast(col, pa.string())
        safe = pc.if_else(odd, pa.scalar(None, col.type), col)
        return pc.if_else(odd, _duck_text(col), pc.cast(safe, pa.string()))
    if pa.types.is_dictionary(t):
        return _text_of(pc.cast(col, t.value_type))
    return _duck_text(col)


def _text_of(col: pa.ChunkedArray) -> pa.ChunkedArray:
    return col if _is_text(col.type) else as_text(col)


def _duck_text(col: pa.ChunkedArray, *, json: bool = False) -> pa.ChunkedArray:
    """DuckDB's text (or, with ``json``, its ``to_json``) of each value of ``col``."""
    import duckdb

    expr = "to_json(c)::VARCHAR" if json else "CAST(c AS VARCHAR)"
    con = duckdb.connect(config={"threads": 1})
    try:
        con.register("wr_col", pa.table({"c": col}))
        return con.sql(f"SELECT {expr} AS c FROM wr_col").to_arrow_table().column(0)  # noqa: S608
    finally:
        con.close()


def _json_columns(table: pa.Table) -> tuple[pa.Table, list[str]]:
    """Nested columns as JSON text (to be written as JSON, not as strings), the rest
    as ``_text_columns``; returns the table and the names of the JSON columns."""
    nested = [f.name for f in table.schema if _is_nested(f.type)]
    cols = [
        _duck_text(col, json=True) if name in nested else col
        for name, col in zip(table.column_names, table.columns, strict=True)
    ]
    return _text_columns(pa.table(cols, names=table.column_names)), nested


def _iso(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """``2025-06-01T16:00:00Z``, with as many fraction digits as the value needs."""
    us = pc.cast(col, pa.timestamp("us"))
    seconds = pc.cast(pc.floor_temporal(us, unit="second"), pa.timestamp("s"))
    whole = pc.strftime(seconds, format="%Y-%m-%dT%H:%M:%S")
    micros = pc.subtract(
        pc.cast(us, pa.int64()), pc.multiply(pc.cast(seconds, pa.int64()), 1_000_000)
    )
    frac = pc.if_else(
        pc.equal(micros, 0),
        "",
        pc.binary_join_element_wise(
            ".", pc.utf8_lpad(pc.cast(micros, pa.string()), width=6, padding="0"), ""
        ),
    )
    frac = pc.utf8_rtrim(frac, characters="0")
    return pc.binary_join_element_wise(whole, frac, "Z", "")


def _rows(table: pa.Table) -> list[dict[str, object]]:
    table, nested = _json_columns(table)
    rows: list[dict[str, object]] = table.to_pylist()
    for row in rows:
        for name in nested:
            if row[name] is not None:
                row[name] = orjson.Fragment(row[name])  # type: ignore[arg-type]
    return rows


def _text_names(table: pa.Table) -> list[str]:
    return [f.name for f in table.schema if _is_text(f.type)]


def write_csv(table: pa.Table, out: BinaryIO) -> None:
    table = defuse_formulas(_text_columns(table, decimals=False), _text_names(table))
    buf = io.BytesIO()
    pacsv.write_csv(table, buf, pacsv.WriteOptions(quoting_style="needed"))
    out.write(buf.getvalue())


def write_json(table: pa.Table, out: BinaryIO) -> None:
    out.write(orjson.dumps(_rows(table), option=orjson.OPT_INDENT_2))
    out.write(b"\n")


def write_jsonl(table: pa.Table, out: BinaryIO) -> None:
    for row in _rows(table):
        out.write(orjson.dumps(row))
        out.write(b"\n")


def write_parquet(table: pa.Table, out: BinaryIO) -> None:
    cols = [col if _parquet_has(col.type) else as_text(col) for col in table.columns]
    table = pa.table(cols, names=table.column_names)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    out.write(buf.getvalue())


def _parquet_has(t: pa.DataType) -> bool:
    """Types Parquet stores as they are (intervals, unions and DuckDB's own
    extension types are written as text)."""
    if _is_plain(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return True
    if pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_time(t):
        return True
    if pa.types.is_dictionary(t):
        return _parquet_has(t.value_type)
    if isinstance(t, pa.ExtensionType) or pa.types.is_union(t) or pa.types.is_interval(t):
        return False
    if _is_nested(t):
        return all(_parquet_has(t.field(i).type) for i in range(t.num_fields))
    return False


def _md_cell(value: object) -> str:
    return "" if value is None else md_escape(str(value))


def write_markdown(table: pa.Table, out: BinaryIO) -> None:
    numeric = [
        pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
        for t in table.schema.types
    ]
    table = defuse_formulas(_text_columns(table), _text_names(table))
    header = "| " + " | ".join(_md_cell(n) for n in table.column_names) + " |"
    rule = "|" + "|".join("---:" if num else "---" for num in numeric) + "|"
    lines = [header, rule]
    for row in table.to_pylist():
        lines.append("| " + " | ".join(_md_cell(v) for v in row.values()) + " |")
    out.write(("\n".join(lines) + "\n").encode())


Writer = Callable[[pa.Table, BinaryIO], None]

WRITERS: dict[Format, Writer] = {
    Format.csv: write_csv,
    Format.json: write_json,
    Format.jsonl: write_jsonl,
    Format.parquet: write_parquet,
    Format.markdown: write_markdown,
}


def write(table: pa.Table, fmt: Format, out: BinaryIO) -> None:
    """Write ``table`` in ``fmt`` (any format but ``table``, which render draws)."""
    WRITERS[fmt](table, out)
