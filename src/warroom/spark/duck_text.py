"""DuckDB's text of a value, in Spark SQL: the rules DuckDB's ingest runs read a
Parquet column as DuckDB's ``CAST(x AS VARCHAR)`` text and keep a row as its
``to_json`` text (a reject's ``raw``). Where Spark's text of a value differs,
``text_sql`` and ``json_sql`` write DuckDB's instead, by the column's DuckDB type:

* a DOUBLE is printed as DuckDB prints it (Python's ``repr``: ``1e+20``,
  ``1e-05``; Spark prints ``1.0E20``), in JSON as yyjson writes it
  (``100000000000000000000.0``, ``1e-7``): Python UDFs, ``duck_double_text``
  and ``duck_double_json`` (``register``);
* a TIMESTAMP WITH TIME ZONE ends with ``+00`` (the session is UTC);
* a STRUCT, LIST or MAP as DuckDB writes them (``{'a': 1}``, ``[1, 2]``,
  ``{k=1}``), strings inside quoted where DuckDB quotes them;
* in JSON, a timestamp or a date is the JSON string of its text, a NULL field
  ``null`` (Spark's ``to_json`` would drop it), a DECIMAL as DuckDB writes it
  (of width 9 or less through a double: ``1.5`` for ``1.50``; else its digits,
  never Jackson's ``1.000E-7``).

A column of another type (FLOAT, whose shortest digits DuckDB does not always
print; BLOB, TIME, UUID, INTERVAL; a nested value holding a double or a
timestamp) is not rendered alike: ``problem`` names it.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlglot import exp

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: DuckDB types whose text Spark's CAST(x AS STRING) gives alike (in a UTC session)
_AS_IS = re.compile(
    r"(VARCHAR|BOOLEAN|U?(TINYINT|SMALLINT|INTEGER|BIGINT)|DECIMAL\(\d+,\s*\d+\)|DATE"
    r"|TIMESTAMP(_MS|_S)?)"
)
#: of those, the ones to_json writes alike (as JSON numbers, strings, booleans)
_JSON_AS_IS = re.compile(r"(VARCHAR|BOOLEAN|U?(TINYINT|SMALLINT|INTEGER|BIGINT))")
TZ = "TIMESTAMP WITH TIME ZONE"
_DECIMAL = re.compile(r"DECIMAL\((\d+),\s*\d+\)")
#: DuckDB's ``to_json`` writes a DECIMAL of at most this width through a double
#: (``1.50`` as ``1.5``), a wider one with its digits (Spark's Jackson would
#: write ``1.000E-7``)
_NARROW = 9
_FLOATS = ("DOUBLE",)


# --------------------------------------------------------------------------- doubles


def _shortest(text: str) -> tuple[int, str, int]:
    """Sign, digits and decimal point position of a number's shortest text."""
    sign, digits, exponent = Decimal(text).normalize().as_tuple()
    ds = "".join(map(str, digits))
    return sign, ds, len(ds) + int(exponent)


def _fixed(ds: str, point: int) -> str:
    if point <= 0:
        return "0." + "0" * -point + ds
    if point >= len(ds):
        return ds + "0" * (point - len(ds)) + ".0"
    return ds[:point] + "." + ds[point:]


def _special(v: float, nan: str, inf: str) -> str | None:
    if math.isnan(v):
        return nan
    if math.isinf(v):
        return inf if v > 0 else "-" + inf
    if v == 0:
        return "-0.0" if math.copysign(1, v) < 0 else "0.0"
    return None


def duck_double_text(v: float | None) -> str | None:
    """DuckDB's ``CAST(x AS VARCHAR)`` of a DOUBLE (Python's repr: shortest digits,
    an exponent below 1e-4 and from 1e16)."""
    if v is None:
        return None
    return _special(v, "nan", "inf") or repr(float(v))


def duck_double_json(v: float | None) -> str | None:
    """DuckDB's ``to_json`` of a DOUBLE (yyjson: shortest digits, fixed from 1e-6
    to below 1e21, else ``1.5e21``)."""
    if v is None:
        return None
    special = _special(v, "NaN", "Infinity")
    if special:
        return special
    sign, ds, point = _shortest(repr(float(v)))
    e = point - 1
    if -6 <= e < 21:
        body = _fixed(ds, point)
    else:
        body = ds[0] + ("." + ds[1:] if len(ds) > 1 else "") + f"e{e}"
    return ("-" if sign else "") + body


def register(spark: SparkSession) -> None:
    """The UDFs the translated Parquet rules call."""
    spark.udf.register("wr_double_text", duck_double_text, "string")
    spark.udf.register("wr_double_json", duck_double_json, "string")


# --------------------------------------------------------------------------- types


def _dtype(t: str) -> exp.DataType:
    return exp.DataType.build(t, dialect="duckdb")


def problem(column: str, t: str) -> str | None:
    """Why Spark does not give DuckDB's text of a column of DuckDB type ``t``, or None."""
    u = t.upper()
    if _AS_IS.fullmatch(u) or u == TZ or u in _FLOATS:
        return None
    if u.startswith(("STRUCT", "MAP")) or u.endswith("]"):
        if re.search(
            r"DOUBLE|FLOAT|REAL|DECIMAL|TIME|DATE|BLOB|UUID|INTERVAL|UNION|HUGEINT|JSON", u
        ):
            return f"column {column} is {t}: a nested double, decimal, date or time"
        return None
    return f"column {column} is {t}"


def _scalar(node: exp.DataType) -> str:
    return node.sql("duckdb").upper()


def text_sql(x: str, t: str, depth: int = 0) -> str:
    """Spark SQL giving DuckDB's ``CAST(x AS VARCHAR)`` of ``x`` (DuckDB type ``t``)."""
    return _text(x, _dtype(t), depth)


def _text(x: str, node: exp.DataType, depth: int) -> str:
    T = exp.DataType.Type
    if node.this == T.STRUCT:
        items = []
        for field in node.expressions:
            name = field.name
            inner = _text(f"{x}.`{name}`", field.args["kind"], depth + 1)
            key = lit(f"'{name}': ")
            items.append(f"{key} || coalesce({_nested(inner, field.args['kind'])}, 'NULL')")
        body = f"concat_ws(', ', {', '.join(items)})"
        return f"CASE WHEN {x} IS NOT NULL THEN '{{' || {body} || '}}' END"
    if node.this in (T.ARRAY, T.LIST):
        e = f"wr_e{depth}"
        (kind,) = node.expressions
        inner = _nested(_text(e, kind, depth + 1), kind)
        return (
            f"CASE WHEN {x} IS NOT NULL THEN '[' || array_join(transform({x}, {e} -> "
            f"coalesce({inner}, 'NULL')), ', ') || ']' END"
        )
    if node.this == T.MAP:
        e = f"wr_e{depth}"
        k, v = node.expressions
        key = _nested(_text(f"{e}.key", k, depth + 1), k)
        value = _nested(_text(f"{e}.value", v, depth + 1), v)
        return (
            f"CASE WHEN {x} IS NOT NULL THEN '{{' || array_join(transform(map_entries({x}), "
            f"{e} -> {key} || '=' || coalesce({value}, 'NULL')), ', ') || '}}' END"
        )
    t = _scalar(node)
    if t == "DOUBLE":
        return f"wr_double_text({x})"
    if t.startswith("DECIMAL"):
        return _plain(f"CAST({x} AS STRING)")
    if t in (TZ, "TIMESTAMPTZ"):
        return f"(CAST({x} AS STRING) || '+00')"
    return f"CAST({x} AS STRING)"


def _plain(t: str) -> str:
    """A DECIMAL's text ``t`` as DuckDB writes it, digits to its scale: Spark
    writes one read from Parquet as Java's BigDecimal does, below 1e-6 with an
    exponent (``0E-10``, ``-1.000E-7``; the digits are the unscaled value's)."""
    sign = f"CASE WHEN {t} LIKE '-%' THEN '-' ELSE '' END"
    zeros = f"repeat('0', -CAST(substring_index({t}, 'E', -1) AS INT) - 1)"
    digits = f"replace(replace(substring_index({t}, 'E', 1), '-', ''), '.', '')"
    return f"CASE WHEN {t} LIKE '%E%' THEN {sign} || '0.' || {zeros} || {digits} ELSE {t} END"


def quoted(name: str) -> str:
    """A column name as Spark SQL quotes it."""
    return "`" + name.replace("`", "``") + "`"


def lit(text: str) -> str:
    """A Spark SQL string literal (backslash escapes, as Spark reads them)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


#: a string DuckDB quotes inside a nested value's text
_QUOTED = r"""[,'"{}\[\]:=\\]|^\s|\s$"""


def _nested(text: str, node: exp.DataType) -> str:
    """A string inside a nested value: quoted as DuckDB quotes it (empty, NULL,
    or holding a separator, a quote or a bracket), its quotes escaped."""
    if not node.is_type(*exp.DataType.TEXT_TYPES):
        return text
    s = f"({text})"
    q, bs = lit("'"), "\\"
    escaped = f"replace(replace({s}, {lit(bs)}, {lit(bs * 2)}), {q}, {lit(bs + chr(39))})"
    return (
        f"CASE WHEN {s} = '' OR upper({s}) = 'NULL' OR {s} RLIKE {lit(_QUOTED)} "
        f"THEN {q} || {escaped} || {q} ELSE {s} END"
    )


def json_sql(x: str, t: str) -> str:
    """Spark SQL giving DuckDB's ``to_json`` text of ``x`` (DuckDB type ``t``) as a
    field's value: ``null`` for NULL."""
    t = t.upper()
    if t == "DOUBLE":
        return f"coalesce(wr_double_json({x}), 'null')"
    if m := _DECIMAL.fullmatch(t):  # as DuckDB writes it: narrow ones through a double
        if int(m[1]) <= _NARROW:
            return f"coalesce(wr_double_json(CAST({x} AS DOUBLE)), 'null')"
        return f"coalesce({text_sql(x, t)}, 'null')"
    value = x if _JSON_AS_IS.fullmatch(t) or not _AS_IS.fullmatch(t) and t != TZ else None
    if value is None:  # a date or a timestamp: the JSON string of its text
        value = text_sql(x, t)
    j = f"to_json(array({value}), map('ignoreNullFields', 'false'))"
    return f"substring({j}, 2, length({j}) - 2)"
