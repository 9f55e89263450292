"""The SQL an import profile runs, translated for Spark (warroom.spark.translate_profiles):
no JVM. Every statement ``profiles.map_rows`` runs for every built-in profile
translates; each fix is pinned on the smallest SQL that needs it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from warroom import db, profiles
from warroom.ingest import ingest, relations
from warroom.ingest.sniff import FilePlan
from warroom.model import Kind
from warroom.spark.documents import documents, split
from warroom.spark.profiles import _CREATE_AS, _INSERT
from warroom.spark.translate import Untranslatable
from warroom.spark.translate_ingest import ingest_to_spark
from warroom.spark.translate_profiles import PROFILE_FIXES

CORPUS = ROOT / "tests" / "data" / "real-formats"
#: one JSON-lines or CSV export per built-in profile
FILES = {
    "lago": "lago/wallet_transactions.jsonl",
    "litellm": "litellm/spendlogs_psql_timestamp3.csv",
    "openai-usage": "openai-usage/usage_cookbook_pages.jsonl",
    "openmeter": "openmeter/events_as_sent.jsonl",
    "stripe": "stripe/itemized3_api_with_customer.csv",
    "stripe-meter": "openmeter/events_as_sent.jsonl",
}


class _Recorder:
    """A DuckDB connection that keeps every statement the mapping runs."""

    def __init__(self, con: Any, seen: list[str]) -> None:
        self.con, self.seen = con, seen

    def execute(self, query: str, parameters: Any = None, /) -> Any:
        self.seen.append(query)
        return self.con.execute(query, parameters)

    def executemany(self, query: str, parameters: Any, /) -> Any:
        return self.con.executemany(query, parameters)


@pytest.mark.parametrize(
    "name",
    # one in the fast suite (two levels of `each`, rejecting mappings); the
    # rest with the slow tests: each takes seconds to translate
    [n if n == "openmeter" else pytest.param(n, marks=pytest.mark.slow) for n in sorted(FILES)],
)
def test_every_statement_a_profile_runs_translates(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaders = importlib.import_module("warroom.ingest.loaders")
    seen: list[str] = []
    real = loaders.profiles.map_rows

    def recorded(con: Any, profile: Any, source_id: int, good: Any, pre: Any) -> Any:
        def insert(c: Any, kind: Any, sql: str, params: Any, order: Any) -> Any:
            seen.append(f"INSERT INTO {kind.value} {sql}")  # (the typed rows)
            return good(c.con, kind, sql, params, order)

        return real(_Recorder(con, seen), profile, source_id, insert, pre)

    monkeypatch.setattr(loaders.profiles, "map_rows", recorded)
    con = db.connect(tmp_path / "w.duckdb")
    ingest(con, [CORPUS / FILES[name]], profile=profiles.resolve(name))
    con.close()
    bodies = []
    for sql in seen:
        if m := _CREATE_AS.match(sql.strip()) or _INSERT.match(sql.strip()):
            bodies.append(m.group(2))
    assert len(bodies) >= 8
    for body in bodies:
        spark = ingest_to_spark(body, name=name)
        for duck in ("JSON_EXTRACT", "UNNEST", "STRING_AGG", "LIST_TRANSFORM", "WR_DTEXT"):
            assert duck not in spark.upper(), duck


def test_json_paths_of_keys_and_indexes() -> None:
    spark = ingest_to_spark("""SELECT json_extract_string(d, '$."a"."b"[2]') AS v FROM s""")
    assert spark == (
        "SELECT TRY_VARIANT_GET(TRY_PARSE_JSON(d), '$[\\'a\\'][\\'b\\'][2]', 'string') AS v FROM s"
    )


def test_an_integer_is_bigint_and_a_fraction_double() -> None:
    spark = ingest_to_spark("""SELECT json_type(d, ['$."a"']) AS y FROM s""")
    assert "LIKE 'BIGINT%' THEN 'BIGINT'" in spark
    assert "RLIKE '^DECIMAL\\\\([0-9]+,0\\\\)$' THEN 'BIGINT'" in spark
    assert spark.endswith("IS NULL THEN 'DOUBLE' END) AS y FROM s")


def test_an_arrays_items_keep_the_text_as_written() -> None:
    spark = ingest_to_spark(
        """SELECT CAST(json_extract(d, '$."data"[*]') AS VARCHAR[]) AS items FROM s"""
    )
    assert spark == (
        "SELECT TRANSFORM(FROM_JSON(GET_JSON_OBJECT(d, '$[\\'data\\']'), 'array<string>'), "
        "(wr_x, wr_i) -> CASE WHEN wr_x IS NULL THEN 'null' WHEN SCHEMA_OF_VARIANT("
        "TRY_ELEMENT_AT(TRY_VARIANT_GET(TRY_PARSE_JSON(d), '$[\\'data\\']', 'array<variant>'), "
        "wr_i + 1)) LIKE 'STRING%' THEN SUBSTRING(TO_JSON(ARRAY(wr_x)), 2, "
        "LENGTH(TO_JSON(ARRAY(wr_x))) - 2) ELSE wr_x END) AS items FROM s"
    )
    one = ingest_to_spark("""SELECT CAST(json_extract(d, '$."e"') AS VARCHAR) AS o FROM s""")
    assert "ELSE GET_JSON_OBJECT(d, '$[\\'e\\']') END AS o" in one


def test_a_list_and_its_positions_unnest_as_one_inline() -> None:
    spark = ingest_to_spark(
        "SELECT line, unnest(items) AS l_a, unnest(range(1, len(items) + 1)) AS k_a FROM s"
    )
    assert spark == (
        "SELECT line, INLINE(TRANSFORM(items, (wr_x, wr_i) -> "
        "NAMED_STRUCT('l_a', wr_x, 'k_a', wr_i + 1))) FROM s"
    )
    with pytest.raises(Untranslatable, match="unnest other than"):
        ingest_to_spark("SELECT unnest(a) AS x, unnest(b) AS y FROM s")


def test_concat_strftime_json_object() -> None:
    assert ingest_to_spark("SELECT concat('a', b) AS c FROM s") == (
        "SELECT (COALESCE('a', '') || COALESCE(b, '')) AS c FROM s"
    )
    # concat_ws (a Concat to SQLGlot) keeps its separator: Spark's skips NULLs too
    assert ingest_to_spark("SELECT concat_ws('; ', a, b) AS c FROM s") == (
        "SELECT CONCAT_WS('; ', a, b) AS c FROM s"
    )
    spark = ingest_to_spark(
        "SELECT strftime(make_timestamp(CAST(m AS BIGINT)), '%Y-%m-%dT%H:%M:%S.%fZ') AS t FROM s"
    )
    assert "DATE_FORMAT(TIMESTAMP_MICROS(CAST(m AS BIGINT)), " in spark
    assert "'yyyy-MM-dd\\'T\\'HH:mm:ss.SSSSSS\\'Z\\'') AS t" in spark
    with pytest.raises(Untranslatable, match="strftime code '%j'"):
        ingest_to_spark("SELECT strftime(t, '%j') FROM s")
    assert ingest_to_spark("SELECT CAST(json_object('a b', x) AS VARCHAR) AS d FROM s") == (
        "SELECT CAST(TO_JSON(NAMED_STRUCT('a b', x), MAP('ignoreNullFields', 'false')) "
        "AS STRING) AS d FROM s"
    )


def test_ordered_string_agg_bool_or_and_the_reason_relabelling() -> None:
    spark = ingest_to_spark(
        "SELECT line, string_agg(r, '; ' ORDER BY o, r) AS r, bool_or(f) AS b FROM s GROUP BY line"
    )
    assert "LISTAGG(r, '; ') WITHIN GROUP (ORDER BY o NULLS LAST, r NULLS LAST) AS r" in spark
    assert "BOOL_OR(f) AS b" in spark
    with pytest.raises(Untranslatable, match="string_agg without ORDER BY"):
        ingest_to_spark("SELECT string_agg(r, '; ') FROM s")
    relabel = ingest_to_spark(
        "SELECT array_to_string(list_transform(string_split(r, '; '), lambda p: CASE WHEN "
        "starts_with(p, 'a: ') THEN 'b: ' || p[4:] ELSE p END), '; ') AS r FROM s"
    )
    assert relabel == (
        "SELECT ARRAY_JOIN(TRANSFORM(SPLIT(r, CONCAT('\\\\Q', '; ', '\\\\E')), p -> CASE WHEN "
        "STARTSWITH(p, 'a: ') THEN 'b: ' || SUBSTRING(p, 4) ELSE p END), '; ') AS r FROM s"
    )


def test_dtext_an_end_anchored_replace_a_parameter_and_a_json_cast() -> None:
    assert ingest_to_spark("SELECT wr_dtext(x) AS t FROM s") == (
        "SELECT REGEXP_REPLACE(REGEXP_REPLACE(CAST((x) AS STRING), "
        "'(?d)(\\\\.[0-9]*?)0+\\\\z', '$1'), '(?d)\\\\.\\\\z', '') AS t FROM s"
    )
    assert ingest_to_spark("SELECT $source_id, line FROM s") == "SELECT :source_id, line FROM s"
    spark = ingest_to_spark("""SELECT json_extract_string(TRY_CAST(t AS JSON), '$."a"') FROM s""")
    assert "TRY_VARIANT_GET(TRY_PARSE_JSON(t), " in spark  # parsed once, not twice


def test_the_profile_fixes_are_in_order() -> None:
    # the pairs of unnest first: the calls' fixes rewrite the lists they read
    assert [f.__name__ for f in PROFILE_FIXES] == ["fix_unnest_pairs", "fix_profile_calls"]


def test_profile_rows_of_lines_and_of_elements_translate() -> None:
    lines = relations.record_lines("SELECT line, raw FROM v")
    plan = FilePlan(Path("a.csv"), "csv", None, Kind.requests, 1, header=["a b", "c"])
    plan.header_line = 1
    for sql in (
        relations.lines_rows(FilePlan(Path("a.jsonl"), "json", None, Kind.requests, 1), lines),
        relations.lines_rows(plan, lines),
        relations.element_rows("SELECT line, raw FROM v"),
    ):
        spark = ingest_to_spark(sql)
        assert "FROM v" in spark and "wr_" not in spark
    csv = ingest_to_spark(relations.lines_rows(plan, lines))
    assert "TO_JSON(NAMED_STRUCT('a b', " in csv  # the header as written, nulls kept


def test_documents_are_split_as_written() -> None:
    """Pretty-printed documents, one after another: each as written (DuckDB's
    read_json_objects gives them so); one not well formed refuses the file."""
    text = '{"b" : 1,\n "a": 2.50}\n\n {"x": "\\u00e9"} [1]\n'
    assert documents(text) == ['{"b" : 1,\n "a": 2.50}', '{"x": "\\u00e9"}', "[1]"]
    assert documents('{"a": 1} {') is None
    assert documents("  \n") == []
    why, trailing, lines, found = split(text.encode(), gzip=False, array=False)
    assert (why, trailing, lines, len(found)) == (None, None, 4, 3)
    assert split(b'{"a": 1} {', gzip=False, array=False)[0] == "malformed documents"


def test_a_json_strings_body_is_matched_without_javas_recursion() -> None:
    """Java's matcher recurses per iteration of ``(?:[^"\\\\]|\\\\.)*``: a long string
    (a spend log's message) overflowed the executor's stack. The same strings,
    unrolled and possessive."""
    from warroom.ingest.relations import _numbers_as_text

    spark = ingest_to_spark(f"SELECT {_numbers_as_text('raw')} AS d FROM s")
    assert r"""'(?d)("[^"\\\\]*+(?:\\\\.[^"\\\\]*+)*+")|""" in spark
