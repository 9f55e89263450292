"""Each format as an SQL relation of text, ready for ``convert.typed_select``.

A canonical file becomes ``line``, ``raw`` (kept for a reject), ``pre_reason``
(why a line is not a record at all: see ``convert.json_record_reason``) and per
canonical field the columns ``typed_select`` reads: ``v_<field>`` (the text),
``n_<money field>`` (read through a binary double?) and ``c_<string field>``
(an object or an array where a string belongs?).

A file read through a profile becomes *profile rows* instead: ``line``,
``raw``, ``d`` (the row as one JSON object) and ``pre_reason``; the profile maps
them (``warroom.profiles``).

Every query reads the file from the parameter ``$path``.
"""

from __future__ import annotations

import json
import re

import duckdb

from warroom.ingest.convert import (
    LINE_LIMIT,
    csv_record_reason,
    duplicate_suspect,
    json_record_reason,
)
from warroom.ingest.sniff import FilePlan
from warroom.model import FIELDS, FieldType, Kind


def _lines(*, numbered: bool) -> str:
    """Every physical line of the text at ``$path`` as ``raw``: numbered (``line``,
    a serial read), or not (a parallel read, for a check over all lines, where a
    line DuckDB cannot take, e.g. invalid UTF-8, is left out: a reject anyway)."""
    line, numbering = ("ordinality AS line, ", " WITH ORDINALITY") if numbered else ("", "")
    lenient = "" if numbered else ", ignore_errors = true"
    return (
        f"SELECT {line}raw FROM read_csv($path, columns = {{'raw': 'VARCHAR'}}, "
        "delim = '\x01', quote = '', escape = '', header = false, auto_detect = false, "
        f"new_line = '\\n', max_line_size = {LINE_LIMIT + 1024}, strict_mode = false{lenient})"
        f"{numbering}"
    )


#: every physical line of a text file DuckDB can read whole (a clean copy, see
#: scan.clean_copy, or a file the fast path has vetted) as (line, raw)
LINES = _lines(numbered=True)
#: every physical line's text, unnumbered
LINES_UNNUMBERED = _lines(numbered=False)


def record_lines(lines: str) -> str:
    """The lines of ``lines`` (a relation of ``line`` and ``raw``) that are not
    blank: each is a record, or a reject."""
    return (
        f"SELECT line, raw FROM ({lines}) WHERE NOT regexp_full_match(coalesce(raw, ''), '[ \\t]*')"
    )


#: the lines of the file at ``$path`` that are not blank
_RECORD_LINES = record_lines(LINES)

#: the fast path's mark on a row it cannot read exactly (never a stored reason)
UNSURE = "unsure: read it the careful way"


def install_csv_macro(con: duckdb.DuckDBPyConnection) -> None:
    """Define the macro reading one CSV field: a quoted one without its quotes."""
    con.execute(CSV_UNQUOTE_MACRO)


#: the macro reading one CSV field (also expanded by the Spark translation)
CSV_UNQUOTE_MACRO = (
    "CREATE OR REPLACE TEMP MACRO wr_csv_unquote(x) AS CASE WHEN left(x, 1) = '\"' "
    "AND right(x, 1) = '\"' AND length(x) >= 2 "
    "THEN replace(x[2:length(x) - 1], '\"\"', '\"') ELSE x END"
)


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _csv_split(fmt: str) -> str:
    """SQL splitting ``raw`` into its fields ``fs``."""
    if fmt == "csv":
        return 'regexp_extract_all(\',\' || raw, \',("(?:[^"]|"")*"|[^,"]*)\', 1)'
    return "string_split(raw, '\t')"


# --------------------------------------------------------------------------- canonical files


def json_fast_values(plan: FilePlan, *, numbered: bool = True, lenient: bool = False) -> str:
    """The fast path: DuckDB's ``read_json`` reads the fields as text straight from
    the file; rows whose text it cannot give back exactly get ``pre_reason`` UNSURE.
    ``numbered``: ``line`` is the ordinality (which makes the read serial), else
    NULL (the caller numbers the rows by their preserved order). ``lenient``: a
    line DuckDB cannot read is a row of NULLs instead of an error."""
    fields = FIELDS[plan.kind]
    # money is read as JSON to tell numbers from strings; so are the strings of
    # an array file, to tell objects from strings (lines go the careful way)
    as_json = {
        f.name
        for f in fields
        if f.type is FieldType.MONEY or (plan.json_array and f.type is FieldType.STRING)
    }
    spec = ", ".join(f"'{f.name}': '{'JSON' if f.name in as_json else 'VARCHAR'}'" for f in fields)
    vals, unsure = [], []
    for f in fields:
        col = f'"{f.name}"'
        if f.name in as_json:
            vals.append(
                f"CASE WHEN left({col}, 1) = '\"' THEN {col}->>'$' "
                f"ELSE CAST({col} AS VARCHAR) END AS v_{f.name}"
            )
        else:
            vals.append(f"{col} AS v_{f.name}")
        if f.type is FieldType.MONEY:
            vals.append(f"coalesce(left({col}, 1) <> '\"', false) AS n_{f.name}")
        elif f.type is FieldType.STRING and plan.json_array:
            vals.append(
                f"CASE left({col}, 1) WHEN '{{' THEN 'an object' "
                f"WHEN '[' THEN 'an array' END AS c_{f.name}"
            )
        elif f.type is FieldType.STRING:
            # read as text, an object and a string holding JSON text look alike
            vals.append(f"NULL::VARCHAR AS c_{f.name}")
            unsure.append(f"(left({col}, 1) IN ('{{', '[') AND json_valid({col}))")
        if f.type is FieldType.MONEY:
            # a JSON number with a fraction or an exponent went through a double,
            # which may have rounded it: the careful path reads its text
            unsure.append(
                f"(left({col}, 1) <> '\"' AND regexp_matches(CAST({col} AS VARCHAR), '[.eE]'))"
            )
        if f.type is not FieldType.DOUBLE and not plan.json_array:
            # a JSON number in exponent form reads as DuckDB prints a double
            # ('1e+20'), not as its text: the careful path would see another text
            unsure.append(
                f"((contains({col}, 'e+') OR contains({col}, 'e-')) AND "
                f"regexp_full_match({col}, '-?[0-9]+(\\.[0-9]+)?e[+-][0-9]+'))"
            )
    unsure_sql = f"CASE WHEN {' OR '.join(unsure)} THEN '{UNSURE}' END" if unsure else "NULL"
    fmt = "array" if plan.json_array else "newline_delimited"
    line, numbering = ("ordinality", " WITH ORDINALITY") if numbered else ("NULL::BIGINT", "")
    return (
        f"SELECT {line} AS line, {unsure_sql}::VARCHAR AS pre_reason, {', '.join(vals)} "
        f"FROM read_json($path, columns = {{{spec}}}, format = '{fmt}', records = true, "
        f"ignore_errors = {str(lenient).lower()}, maximum_object_size = {LINE_LIMIT}){numbering}"
    )


def _json_values(kind: Kind, records: str = _RECORD_LINES) -> str:
    """The careful path's JSON lines (or elements of an array: ``records``, a
    relation of ``line`` and ``raw``): every record parsed by SQL."""
    fields = FIELDS[kind]
    paths = ", ".join(f"'$.\"{f.name}\"'" for f in fields)
    money = [i for i, f in enumerate(fields) if f.type is FieldType.MONEY]
    cols = [f"v[{i + 1}] AS v_{f.name}" for i, f in enumerate(fields) if i not in money]
    # a money value that is a JSON number: its text as written, since DuckDB
    # renders it through a double (-1.9999999999999999999 would read as -2.0),
    # whatever the spelling of its key (\u0061mount): read from the row with its
    # numbers as marked text (see _numbers_as_text)
    cols += [
        f"CASE WHEN starts_with(m[{k + 1}], chr(1)) THEN m[{k + 1}][2:] "
        f"ELSE v[{i + 1}] END AS v_{fields[i].name}"
        for k, i in enumerate(money)
    ]
    cols += [  # j holds the money fields only, in order
        f"coalesce(json_type(j[{k + 1}]) NOT IN ('VARCHAR', 'NULL'), false) AS n_{fields[i].name}"
        for k, i in enumerate(money)
    ]
    money_paths = ", ".join(f"'$.\"{fields[i].name}\"'" for i in money) or "'$.__none__'"
    # an object or array where a string belongs: only a text starting so can be one
    cols += [
        f"CASE WHEN left(v[{i + 1}], 1) IN ('{{', '[') THEN CASE json_type(json_extract("
        f"raw, '$.\"{f.name}\"')) WHEN 'OBJECT' THEN 'an object' WHEN 'ARRAY' THEN 'an array' "
        f"END END AS c_{f.name}"
        for i, f in enumerate(fields)
        if f.type is FieldType.STRING
    ]
    # a valid JSON text is an object if it starts so (after JSON's whitespace):
    # cheaper than parsing it once more for its type
    not_object = "left(ltrim(raw, ' ' || chr(9) || chr(10) || chr(13)), 1) <> '{'"
    return f"""
        SELECT line, raw, pre_reason, {", ".join(cols)} FROM (
            SELECT line, raw, pre_reason,
                CASE WHEN pre_reason IS NULL THEN json_extract_string(raw, [{paths}]) END AS v,
                CASE WHEN pre_reason IS NULL THEN json_extract(raw, [{money_paths}]) END AS j,
                CASE WHEN pre_reason IS NULL AND list_has_any(json_type(raw, [{money_paths}]),
                    ['DOUBLE', 'UBIGINT', 'BIGINT', 'HUGEINT'])
                    THEN json_extract_string({_numbers_as_text("raw")}, [{money_paths}])
                    END AS m
            FROM (
                SELECT line, raw,
                    {json_record_reason("raw", not_object, [f.name for f in fields])}
                    AS pre_reason
                FROM ({records})
            )
        )"""


def _csv_values(plan: FilePlan, records: str = _RECORD_LINES) -> str:
    """The careful path's CSV/TSV (or ``records``, a relation of ``line`` and
    ``raw``): every line split into the header's fields."""
    fields = FIELDS[plan.kind]
    cols = []
    for f in fields:
        if f.name in plan.header:
            i = plan.header.index(f.name) + 1
            cols.append(f"NULLIF(wr_csv_unquote(trim(fs[{i}])), '') AS v_{f.name}")
        else:
            cols.append(f"NULL::VARCHAR AS v_{f.name}")
    cols += [f"false AS n_{f.name}" for f in fields if f.type is FieldType.MONEY]
    cols += [f"NULL::VARCHAR AS c_{f.name}" for f in fields if f.type is FieldType.STRING]
    return f"""
        SELECT line, raw, {csv_record_reason(plan.format, len(plan.header))} AS pre_reason,
            {", ".join(cols)}
        FROM (SELECT line, raw, {_csv_split(plan.format)} AS fs FROM ({records})
            WHERE line > {plan.header_line})"""


def json_record_values(kind: Kind, records: str) -> str:
    """The careful path's reading of given JSON lines: ``records`` is a relation
    of ``line`` and ``raw`` (the lines the fast path could not read exactly)."""
    return _json_values(kind, records)


def duplicate_key_lines(plan: FilePlan) -> str:
    """How many lines of the file at ``$path`` name a field twice (a reject the
    fast path's lenient read cannot see: it keeps the first value): one parallel
    pass over the raw lines, the costly test behind a cheap regular expression."""
    names = [f.name for f in FIELDS[plan.kind]]
    reason = json_record_reason("raw", "false", names)
    return (
        f"SELECT count(*) FROM ({LINES_UNNUMBERED}) WHERE CASE "
        f"WHEN {duplicate_suspect('raw', names)} THEN starts_with({reason}, 'duplicate key') "
        "ELSE false END"
    )


def lines_values(plan: FilePlan) -> str:
    """The careful path's text file (its clean copy at ``$path``), line by line."""
    return _json_values(plan.kind) if plan.format == "json" else _csv_values(plan)


def array_values(plan: FilePlan) -> str:
    """The careful path's .json array (the file itself at ``$path``), element by
    element; ``raw`` is the element's JSON text as written."""
    elements = (
        "SELECT ordinality AS line, CAST(json AS VARCHAR) AS raw FROM read_json_objects("
        f"$path, format = 'array', maximum_object_size = {LINE_LIMIT}) WITH ORDINALITY"
    )
    return _json_values(plan.kind, elements)


def parquet_values(
    plan: FilePlan, rows: str = "read_parquet($path, file_row_number = true)"
) -> str:
    """A Parquet file, numbered by its row numbers; ``raw`` is the row as JSON.
    ``rows``: where its columns and ``file_row_number`` are read from (Spark
    names a view of the file read there)."""
    fields = FIELDS[plan.kind]
    cols, raw_parts = [], []
    for f in fields:
        if f.name in plan.parquet_types:
            cols.append(f'CAST("{f.name}" AS VARCHAR) AS v_{f.name}')
            raw_parts.append(f"'{f.name}': \"{f.name}\"")
        else:
            cols.append(f"NULL::VARCHAR AS v_{f.name}")
    for f in fields:
        t = plan.parquet_types.get(f.name, "")
        if f.type is FieldType.MONEY:
            via_double = "true" if t in ("DOUBLE", "FLOAT", "REAL") else "false"
            cols.append(f"{via_double} AS n_{f.name}")
        elif f.type is FieldType.STRING:
            shape = (
                "an object"
                if t.startswith(("STRUCT", "MAP", "UNION"))
                else "an array"
                if t.endswith("]")
                else None
            )
            cols.append(
                f"CASE WHEN \"{f.name}\" IS NOT NULL THEN '{shape}' END AS c_{f.name}"
                if shape
                else f"NULL::VARCHAR AS c_{f.name}"
            )
    raw = f"CAST(to_json({{{', '.join(raw_parts)}}}) AS VARCHAR)" if raw_parts else "'{}'"
    return (
        f"SELECT file_row_number + 1 AS line, {raw} AS raw, NULL::VARCHAR AS pre_reason, "
        f"{', '.join(cols)} FROM {rows}"
    )


# --------------------------------------------------------------------------- profile rows


def _not_object(d: str) -> str:
    """Why the JSON text ``d`` is not a row; a valid one is an object if it starts so."""
    starts = f"left(ltrim({d}, ' ' || chr(9) || chr(10) || chr(13)), 1) <> '{{'"
    return json_record_reason(d, starts)


def _numbers_as_text(d: str) -> str:
    """The JSON text ``d`` with every number that a double could round (a fraction,
    an exponent, 16 digits or more) turned into a string holding chr(1) and its
    text, so that a profile reads it as written (``profiles.compile.NUMBER_MARK``):
    DuckDB's JSON functions give a number back through a double (0.1000000000000000055
    reads as 0.1). Strings (keys too) are left as they are: one pass matches a
    string or a number, and brackets only the numbers with chr(2) and chr(3), which
    valid JSON text never holds raw; a second pass makes them marked strings."""
    string = r'("(?:[^"\\]|\\.)*")'
    number = r"(-?[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?|-?[0-9]+[eE][+-]?[0-9]+|-?[0-9]{16,})"
    bracketed = f"regexp_replace({d}, '{string}|{number}', '\\1' || chr(2) || '\\2' || chr(3), 'g')"
    return (
        f"regexp_replace(replace({bracketed}, chr(2) || chr(3), ''), "
        f"chr(2) || '([^' || chr(3) || ']*)' || chr(3), "
        "'\"\\\\u0001\\1\"', 'g')"
    )


def _json_rows(records: str = _RECORD_LINES) -> str:
    """JSON lines -> profile rows."""
    return (
        f"SELECT line, raw, {_numbers_as_text('raw')} AS d, {_not_object('raw')} AS pre_reason "
        f"FROM ({records})"
    )


def _csv_rows(plan: FilePlan, records: str = _RECORD_LINES) -> str:
    """CSV/TSV -> profile rows: one JSON object per record, keyed by the header as
    written; every value a string, an empty cell null."""
    pairs = ", ".join(
        f"{_sql_text(name)}, NULLIF(wr_csv_unquote(trim(fs[{i + 1}])), '')"
        for i, name in enumerate(plan.header)
    )
    return f"""
        SELECT line, raw, CASE WHEN pre_reason IS NULL THEN CAST(json_object({pairs}) AS VARCHAR)
                          END AS d, pre_reason
        FROM (SELECT line, raw, fs,
                {csv_record_reason(plan.format, len(plan.header))} AS pre_reason
            FROM (SELECT line, raw, {_csv_split(plan.format)} AS fs FROM ({records})
                WHERE line > {plan.header_line}))"""


def lines_rows(plan: FilePlan, records: str = _RECORD_LINES) -> str:
    """A text file (its clean copy at ``$path``; or ``records``, its lines that
    are not blank) -> profile rows, line by line."""
    return _json_rows(records) if plan.format == "json" else _csv_rows(plan, records)


def document_rows(plan: FilePlan) -> str:
    """A .json array (its elements) or pretty-printed documents -> profile rows; the
    "line" is the element's or document's number."""
    fmt = "array" if plan.json_array else "unstructured"
    return element_rows(
        "SELECT ordinality AS line, CAST(json AS VARCHAR) AS raw "
        f"FROM read_json_objects($path, format = '{fmt}', "
        f"maximum_object_size = {LINE_LIMIT}) WITH ORDINALITY"
    )


def element_rows(elements: str) -> str:
    """Elements or documents (a relation of ``line`` and ``raw``, each the JSON text
    as written) -> profile rows."""
    return (
        f"SELECT line, raw, {_numbers_as_text('raw')} AS d, {_not_object('raw')} AS pre_reason "
        f"FROM ({elements})"
    )


def json_key(name: str) -> str:
    """``name`` as DuckDB's ``to_json`` writes a string (yyjson: control characters
    as ``\\u00XX`` in upper case, nothing else escaped past ``"`` and ``\\``)."""
    text = json.dumps(name, ensure_ascii=False)
    return re.sub(r"(\\\\)|\\u00([0-9a-f]{2})", lambda m: m[1] or "\\u00" + m[2].upper(), text)


#: DuckDB types of a Parquet column a profile reads as a number read through a double
_DOUBLES = ("DOUBLE", "FLOAT", "REAL")
#: types whose JSON text holds no number a double could round (a string, a
#: boolean, an integer of at most 10 digits): not searched for numbers to mark
_NO_ROUNDING = re.compile(
    r"VARCHAR|BOOLEAN|U?(TINYINT|SMALLINT|INTEGER)|DATE|TIME(STAMP)?(_S|_MS|_NS)?"
    r"|TIMESTAMP WITH TIME ZONE|TIME WITH TIME ZONE"
)


def parquet_rows(plan: FilePlan, rows: str = "read_parquet($path, file_row_number = true)") -> str:
    """Parquet -> profile rows, numbered from 1: ``raw`` the row as ``to_json``
    writes it; ``d`` the same row where a top-level DOUBLE is a string of its
    JSON text after ``NUMBER_MARK`` and ``d`` (read as a number through a double,
    whatever JSON makes of it), and every other number that a double could round
    is marked as in JSON lines (a DECIMAL is read as written, never through a
    double). ``rows``: where the columns and ``file_row_number`` are read from."""
    struct, parts = [], []
    for name, t in plan.parquet_columns:
        col = '"' + name.replace('"', '""') + '"'
        struct.append(f"{_sql_text(name)}: {col}")
        j = f"CAST(to_json({col}) AS VARCHAR)"
        if t.upper() in _DOUBLES:
            value = f"""CASE WHEN {col} IS NULL THEN 'null' ELSE '"\\u0001d' || {j} || '"' END"""
        elif _NO_ROUNDING.fullmatch(t.upper()):
            value = f"coalesce({j}, 'null')"
        else:
            value = _numbers_as_text(f"coalesce({j}, 'null')")
        parts.append(f"{_sql_text(json_key(name) + ':')} || {value}")
    d = " || ',' || ".join(parts)
    return (
        f"SELECT file_row_number + 1 AS line, CAST(to_json({{{', '.join(struct)}}}) AS VARCHAR) "
        f"AS raw, '{{' || {d} || '}}' AS d, NULL::VARCHAR AS pre_reason FROM {rows}"
    )
