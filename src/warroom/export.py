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
    ``decimals`` is false (CSV writes them as plain numbers)."""
    cols = []
    for col in table.columns:
        t = col.type
        if decimals and pa.types.is_decimal(t):
            col = pc.cast(col, pa.string())
        elif pa.types.is_timestamp(t):
            col = _iso(col)
        elif pa.types.is_date(t):
            col = pc.cast(col, pa.string())
        cols.append(col)
    return pa.table(cols, names=table.column_names)


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
    return _text_columns(table).to_pylist()  # type: ignore[no-any-return]


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
    buf = io.BytesIO()
    pq.write_table(table, buf)
    out.write(buf.getvalue())


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
