"""Ingest's typing and reject rules translated for Spark (warroom.spark.translate_ingest):
no JVM, fast. Every rule of every kind and the text formats Spark reads must
translate; each fix is pinned on the smallest SQL that needs it; a construct the
layer does not carry is refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from warroom.ingest import relations
from warroom.ingest.convert import typed_select
from warroom.ingest.sniff import FilePlan
from warroom.model import FIELDS, Kind
from warroom.spark.translate import Untranslatable
from warroom.spark.translate_ingest import ingest_to_spark

LINES = relations.record_lines("SELECT line, raw FROM wr_lines")


@pytest.mark.parametrize("kind", list(Kind), ids=lambda k: k.value)
def test_every_kinds_typing_and_reject_rules_translate(kind: Kind) -> None:
    spark = ingest_to_spark(typed_select(kind, "(SELECT * FROM src)", extra=("raw",)))
    # the macros are expanded, DuckDB's regex and JSON functions are gone
    for duck in ("wr_", "REGEXP_FULL_MATCH", "ISFINITE", "MAKE_TIMESTAMP"):
        assert duck not in spark.upper(), duck
    assert "RLIKE '(?d)^(?:" in spark  # full matches anchored for Java


@pytest.mark.parametrize("kind", list(Kind), ids=lambda k: k.value)
def test_json_lines_translate(kind: Kind) -> None:
    spark = ingest_to_spark(relations._json_values(kind, LINES))
    assert "TRY_PARSE_JSON(raw)" in spark and "JSON_OBJECT_KEYS" in spark
    for duck in ("JSON_EXTRACT", "JSON_TYPE", "LIST_POSITION", "JSON_VALID", "GET_JSON_OBJECT"):
        assert duck not in spark.upper(), duck


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_csv_and_tsv_translate(fmt: str) -> None:
    header = [f.name for f in FIELDS[Kind.prices]]
    plan = FilePlan(Path(f"p.{fmt}"), fmt, None, Kind.prices, 0, header=header, header_line=1)
    spark = ingest_to_spark(relations._csv_values(plan, LINES))
    assert "ARRAY_SIZE(fs) <> 6" in spark  # a list's length is not a string's
    assert "wr_csv_unquote" not in spark
    assert "SUBSTRING((TRIM(fs[0])), 2, (LENGTH((TRIM(fs[0]))) - 1) - (2) + 1)" in spark


def test_a_macro_is_expanded_from_its_definition() -> None:
    spark = ingest_to_spark("SELECT wr_quote(v_a) AS q FROM s")
    # (Spark spells a quote in a literal as backslash-quote)
    assert spark == (
        r"SELECT '\'' || CASE WHEN LENGTH((v_a)) > 40 THEN LEFT((v_a), 40) || '...' "
        r"ELSE (v_a) END || '\'' AS q FROM s"
    )


def test_regexes_are_read_as_re2_reads_them() -> None:
    spark = ingest_to_spark(
        r"SELECT regexp_full_match(a, '[0-9]+\.x'), regexp_matches(a, 'b.c'), "
        r"regexp_extract(a, '([0-9])', 1) FROM s"
    )
    # only LF ends a line (RE2's '.'), a full match ends at the very end (\z)
    assert r"a RLIKE '(?d)^(?:[0-9]+\\.x)\\z'" in spark
    assert "a RLIKE '(?d)b.c'" in spark
    assert "REGEXP_EXTRACT(a, '(?d)([0-9])')" in spark


def test_regexp_replace_groups_become_javas() -> None:
    spark = ingest_to_spark(r"SELECT regexp_replace(a, '(x)', '\1$', 'g') FROM s")
    assert spark == r"SELECT REGEXP_REPLACE(a, '(?d)(x)', '$1\\$') FROM s"


@pytest.mark.parametrize(
    ("sql", "what"),
    [
        ("SELECT regexp_replace(a, 'x', 'y') FROM s", "without 'g'"),
        ("SELECT regexp_matches(a, '[[:alpha:]]') FROM s", "POSIX classes"),
        ("SELECT json_extract(a, '$.x[*]') FROM s", "JSON path"),
        ("SELECT list_reduce(a, lambda x, y: x + y) FROM s", "list_reduce|Reduce"),
        ("SELECT string_agg(a, ',') FROM s", "GroupConcat|string_agg"),
    ],
)
def test_what_the_layer_does_not_carry_is_refused(sql: str, what: str) -> None:
    with pytest.raises(Untranslatable, match=rf"rules: .*({what})"):
        ingest_to_spark(sql, name="rules")


def test_list_filter_counts_its_index_from_one() -> None:
    spark = ingest_to_spark(
        "SELECT list_filter(ks, lambda k, i: list_position(ks, k) < i)[1] FROM s"
    )
    assert spark == "SELECT FILTER(ks, (k, i) -> ARRAY_POSITION(ks, k) < (i + 1))[0] FROM s"


def test_json_functions_become_variant_reads() -> None:
    spark = ingest_to_spark(
        """SELECT json_extract_string(raw, ['$."a"', '$."b"']) AS v,
                  json_type(json_extract(raw, '$."a"')) AS t, json_valid(raw) AS ok FROM s"""
    )
    assert (
        "ARRAY(TRY_VARIANT_GET(TRY_PARSE_JSON(raw), '$[\\'a\\']', 'string'), "
        "TRY_VARIANT_GET(TRY_PARSE_JSON(raw), '$[\\'b\\']', 'string')) AS v"
    ) in spark
    assert (
        "WHEN SCHEMA_OF_VARIANT(TRY_VARIANT_GET(TRY_PARSE_JSON(raw), '$[\\'a\\']')) LIKE 'STRING%' THEN 'VARCHAR'"
        in spark
    )
    # Spark's parser stops after the first value: the text must be an array's one element
    assert (
        "(NOT TRY_PARSE_JSON('[' || raw || ']') IS NULL AND JSON_ARRAY_LENGTH('[' || raw || ']') = 1) AS ok"
        in spark
    )


def test_a_double_is_read_from_a_decimal_numbers_text_only() -> None:
    spark = ingest_to_spark("SELECT TRY_CAST(v AS DOUBLE) AS d, isfinite(d) AS f FROM s")
    assert r"CASE WHEN v RLIKE '(?d)^(?:[ \\t\\n\\r]*[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)" in spark
    assert "THEN TRY_CAST(v AS DOUBLE) END AS d" in spark
    assert "NOT (ISNAN(d) OR ABS(d) = CAST('Infinity' AS DOUBLE)) AS f" in spark


# --------------------------------------------------------------------------- Parquet

#: a column of every type Spark renders as DuckDB does, by field type
PARQUET_TYPES = {
    "ts": "TIMESTAMP WITH TIME ZONE",
    "until": "DATE",
    "effective_from": "TIMESTAMP",
    "amount": "DOUBLE",
    "balance_after": "DECIMAL(38,10)",
    "input_per_mtok": "DOUBLE",
    "status": "INTEGER[]",
    "org_id": "STRUCT(a VARCHAR, b MAP(VARCHAR, INTEGER))",
    "input_tokens": "UBIGINT",
    "multiplier": "DOUBLE",
}


@pytest.mark.parametrize("kind", list(Kind), ids=lambda k: k.value)
def test_parquet_rules_translate_with_duckdbs_text_of_each_column(kind: Kind) -> None:
    plan = FilePlan(Path(f"{kind.value}.parquet"), "parquet", None, kind, 0)
    names = {f.name for f in FIELDS[kind]}
    plan.parquet_types = {c: t for c, t in PARQUET_TYPES.items() if c in names} | {
        f.name: "VARCHAR" for f in FIELDS[kind] if f.name not in PARQUET_TYPES
    }
    values = relations.parquet_values(plan, "wr_parquet")
    spark = ingest_to_spark(
        typed_select(kind, f"({values})", extra=("raw",)), types=plan.parquet_types
    )
    assert "READ_PARQUET" not in spark.upper() and "wr_parquet_text" not in spark.lower()
    assert "TO_JSON(STRUCT" not in spark.upper()  # the row's JSON written field by field
    if "ts" in names:
        assert "(CAST(`ts` AS STRING) || '+00')" in spark
    if "amount" in names or "multiplier" in names:
        assert "wr_double_text(" in spark and "wr_double_json(" in spark


def test_duckdbs_text_of_a_double_in_python() -> None:
    """DuckDB's CAST(DOUBLE AS VARCHAR) and to_json, by the UDFs Spark calls."""
    import duckdb

    from warroom.spark.duck_text import duck_double_json, duck_double_text

    values = [1.5, 100.0, 1e20, 1e-7, 0.1, 1e15, 1e16, -0.0, 0.0, 5e-324, 1 / 3, 1e-4, 1e-5]
    values += [1e-6, 9.99e20, 1e21, 1.2345e21, -2.5e-9, 1.7976931348623157e308, 2e9]
    values += [float("nan"), float("inf"), float("-inf")]
    con = duckdb.connect()
    for v in values:
        text, as_json = con.execute(
            "SELECT CAST(?::DOUBLE AS VARCHAR), CAST(to_json([?::DOUBLE]) AS VARCHAR)", [v, v]
        ).fetchone()  # type: ignore[misc]
        assert (duck_double_text(v), f"[{duck_double_json(v)}]") == (text, as_json), v
    assert duck_double_text(None) is None and duck_double_json(None) is None


@pytest.mark.parametrize(
    ("column", "t", "why"),
    [
        ("amount", "FLOAT", "column amount is FLOAT"),
        ("ts", "TIMESTAMP_NS", "column ts is TIMESTAMP_NS"),
        ("org_id", "BLOB", "column org_id is BLOB"),
        (
            "org_id",
            "STRUCT(a DOUBLE)",
            "column org_id is STRUCT(a DOUBLE): a nested double, decimal, date or time",
        ),
        (
            "org_id",
            "STRUCT(a DECIMAL(9,2))",
            "column org_id is STRUCT(a DECIMAL(9,2)): a nested double, decimal, date or time",
        ),
        ("status", "BIGINT", None),
        ("ts", "TIMESTAMP WITH TIME ZONE", None),
        ("plan", "MAP(VARCHAR, VARCHAR[])", None),
    ],
)
def test_a_parquet_column_spark_does_not_render_alike_is_named(
    column: str, t: str, why: str | None
) -> None:
    from warroom.spark.duck_text import problem

    assert problem(column, t) == why
