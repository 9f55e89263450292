"""Spark reads Parquet itself (warroom.spark.parquet) and lands what DuckDB's
ingest lands: canonical tables (values, path and row number), rejects (row,
raw text, reason) and sources, row for row. On Parquet versions of the test
worlds (written by DuckDB's COPY, with money as DOUBLE or DECIMAL and times as
TIMESTAMP, TIMESTAMPTZ or epoch milliseconds), on the catalog's Parquet cases
and on a catalog of column types whose text the engines write differently
(doubles, zones, nested values); also through ``file://`` URIs, a file and a
folder. Slow: one Spark session (local[2]).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import world_logs
from tests.test_bad_input import req
from tests.test_spark_ingest import WORLDS, _first_diffs, _land_alike, _tables
from warroom import db
from warroom.ingest import ingest
from warroom.ingest.sniff import expand_paths, plan_file

pytestmark = pytest.mark.slow

#: how each world's columns are typed in its Parquet version (SQL over the
#: auto-detected columns): as DuckDB guesses them, or money as DECIMAL and
#: times with a zone, or times as epoch milliseconds, or money as DOUBLE
MONEY = ("amount", "balance_after", "input_per_mtok", "cached_per_mtok", "output_per_mtok")
STYLES = ["auto", "decimal-tz", "epoch", "double-money"]


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from warroom.spark.session import SparkSettings, start

    yield start(SparkSettings(master="local[2]"))


def _select(con: duckdb.DuckDBPyConnection, source: str, style: str) -> str:
    cols = con.sql(f"DESCRIBE SELECT * FROM {source}").fetchall()
    out = []
    for name, typ, *_ in cols:
        q = f'"{name}"'
        if style == "decimal-tz" and name in MONEY:
            out.append(f"TRY_CAST({q} AS DECIMAL(18,6)) AS {q}")
        elif style == "double-money" and name in MONEY:
            out.append(f"TRY_CAST({q} AS DOUBLE) AS {q}")
        elif style == "decimal-tz" and name in ("ts", "until"):
            out.append(f"CAST({q} AS TIMESTAMPTZ) AS {q}")
        elif style == "epoch" and name in ("ts", "until") and "TIMESTAMP" in typ:
            out.append(f"epoch_ms(CAST({q} AS TIMESTAMPTZ)) AS {q}")
        elif typ == "JSON" or typ.startswith(("STRUCT", "MAP")) or typ.endswith("]"):
            out.append(f"CAST({q} AS VARCHAR) AS {q}")  # a JSON-typed column: its text
        else:
            out.append(q)
    return ", ".join(out)


def parquet_world(logs: Path, out: Path, style: str) -> Path:
    """Each file of ``logs`` as Parquet, written by DuckDB from its records (the
    lines that are JSON objects: the worlds hold broken lines on purpose), its
    columns typed as DuckDB guesses them, then restyled (``style``)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    out.mkdir(parents=True)
    for p in expand_paths([logs]):
        records = out / "records.jsonl"
        if p.suffix == ".csv":
            source = f"read_csv_auto('{p}', all_varchar = true)"
        else:
            kept = [x for x in p.read_bytes().split(b"\n") if _is_object(x)]
            records.write_bytes(b"\n".join(kept) + b"\n")
            source = f"read_json_auto('{records}', records = true, sample_size = -1)"
        target = out / (p.name.split(".")[0] + ".parquet")
        con.execute(f"COPY (SELECT {_select(con, source, style)} FROM {source}) TO '{target}'")
        records.unlink(missing_ok=True)
    con.close()
    return out


def _is_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


@pytest.mark.parametrize(
    ("world", "style"),
    [(w, s) for w, s in zip(WORLDS, STYLES, strict=True)],
    ids=[f"{w.id}-{s}" for w, s in zip(WORLDS, STYLES, strict=True)],
)
def test_spark_reads_a_parquet_world_as_duckdb_does(
    tmp_path: Path, spark: Any, world: Any, style: str
) -> None:
    logs = parquet_world(world_logs(world.values[0], tmp_path), tmp_path / "pq", style)
    tables = _land_alike(spark, [logs], tmp_path)
    assert tables["requests"][0] and tables["ledger"][0]


#: Parquet cases: (file name, SELECT writing it); the catalog's two
#: (tests/test_bad_input.py) first, then a column type each
CASES = [
    (
        "requests.parquet",
        """SELECT * FROM (VALUES
            (TIMESTAMP '2025-06-01 10:00:00', 'r1', 'u1', '200', {'a': 1}),
            (TIMESTAMP '2025-06-01 10:00:00', 'r2', 'u1', 'abc', NULL),
            (TIMESTAMP '2025-06-01 10:00:00', 'r3', NULL, '429', NULL))
        t(ts, request_id, user_id, status, org_id)""",
    ),
    (
        "requests-a.parquet",
        """SELECT * FROM (VALUES (TIMESTAMP '2025-06-01 10:00:00', 'r1', 'u1', '200'),
                              (TIMESTAMP '2025-06-01 10:00:00', 'r2', 'u1', 'abc'))
        t(ts, request_id, user_id, status)""",
    ),
    (
        "requests-b.parquet",
        """SELECT * FROM (VALUES (true, 'r3', 'u1', 200), (false, 'r4', 'u1', 200))
        t(ts, request_id, user_id, status)""",
    ),
    (  # doubles where integers belong, as DuckDB prints them: 1e+20, 200.0, nan
        "requests-doubles.parquet",
        """SELECT * FROM (VALUES
            ('2025-06-01T10:00:00Z', 'd1', 'u1', 1e20::DOUBLE, 12.5::DOUBLE, 1e-7::DOUBLE),
            ('2025-06-01T10:00:01Z', 'd2', 'u1', 200.0::DOUBLE, 'nan'::DOUBLE, 3::DOUBLE),
            ('2025-06-01T10:00:02Z', 'd3', 'u1', 200::DOUBLE, 'inf'::DOUBLE, 1e16::DOUBLE),
            ('2025-06-01T10:00:03Z', 'd4', 'u1', -0.0::DOUBLE, 0.1::DOUBLE, 5::DOUBLE),
            ('2025-06-01T10:00:04Z', 'd5', 'u1', 404::DOUBLE, 1e300::DOUBLE, 7::DOUBLE))
        t(ts, request_id, user_id, status, latency_ms, input_tokens)""",
    ),
    (  # money as DOUBLE: exponent forms, too many places, too large for a double
        "ledger-doubles.parquet",
        """SELECT * FROM (VALUES
            ('e1', '2025-06-01 10:00:00', 'u1', 'topup', 10.5::DOUBLE, NULL),
            ('e2', '2025-06-01 10:00:01', 'u1', 'topup', 1e-7::DOUBLE, NULL),
            ('e3', '2025-06-01 10:00:02', 'u1', 'topup', 2e9::DOUBLE, NULL),
            ('e4', '2025-06-01 10:00:03', 'u1', 'reset', NULL, 1e21::DOUBLE),
            ('e5', '2025-06-01 10:00:04', 'u1', 'charge', -0.000123::DOUBLE, 5.25::DOUBLE),
            ('e6', '2025-06-01 10:00:05', 'u1', 'grant', 'nan'::DOUBLE, NULL))
        t(entry_id, ts, user_id, kind, amount, balance_after)""",
    ),
    (  # money as DECIMAL, times with a zone, out of range, dates
        "ledger-decimal.parquet",
        """SELECT * FROM (VALUES
            ('f1', TIMESTAMPTZ '2025-06-01 10:00:00.5+00', 'u1', 'topup',
             10.5::DECIMAL(38,10), 0::DECIMAL(38,10)),
            ('f2', TIMESTAMPTZ '2200-01-01 00:00:00+00', 'u1', 'topup',
             1.1234567::DECIMAL(38,10), NULL),
            ('f3', TIMESTAMPTZ '1969-12-31 23:59:59.999+00', 'u1', 'topup',
             -1::DECIMAL(38,10), NULL),
            ('f4', TIMESTAMPTZ '2025-06-01 10:00:00.123456+00', 'u1', 'refund',
             123456789012.5::DECIMAL(38,10), NULL))
        t(entry_id, ts, user_id, kind, amount, balance_after)""",
    ),
    (
        "abuse-dates.parquet",
        """SELECT * FROM (VALUES
            (DATE '2025-06-01', 'u1', 'throttle', DATE '2025-06-02', 2.5::DOUBLE, 'x'),
            (DATE '2025-06-03', 'u1', 'throttle', DATE '2025-06-02', 0::DOUBLE, 'y'),
            (DATE '2025-06-01', 'u2', 'block', NULL, -1e-300::DOUBLE, 'z'))
        t(ts, user_id, action, until, multiplier, reason)""",
    ),
    (  # nested values where strings and numbers belong; DuckDB's text of each
        "requests-nested.parquet",
        """SELECT * FROM (VALUES
            ('2025-06-01T10:00:00Z', 'n1', 'u1', ['a b', 'a,b', '', NULL],
             {'x': 1, 'y': 'it''s', 'z': NULL}, MAP {'k': 'v=w'}, 200),
            ('2025-06-01T10:00:01Z', 'n2', 'u1', NULL, NULL, NULL, 200),
            ('2025-06-01T10:00:02Z', 'n3', 'u1', [], {'x': NULL, 'y': 'NULL', 'z': [1]},
             MAP {'a': NULL}, 200))
        t(ts, request_id, user_id, plan, org_id, model, status)""",
    ),
    (
        "requests-nested-status.parquet",
        """SELECT * FROM (VALUES
            ('2025-06-01T10:00:00Z', 'm1', 'u1', [200, 201]),
            ('2025-06-01T10:00:01Z', 'm2', 'u1', NULL))
        t(ts, request_id, user_id, status)""",
    ),
    (  # integers of every width, unsigned too; upper-case names; control bytes
        "requests-ints.parquet",
        """SELECT * FROM (VALUES
            (1748772000::BIGINT, 'i1', 'u' || chr(1) || '"/é', 200::UTINYINT,
             5::UBIGINT, 3::USMALLINT, 18446744073709551615::UBIGINT),
            (1748772000000::BIGINT, 'i2', 'u2', 599::SMALLINT, 1::TINYINT, 2::UINTEGER,
             NULL::UBIGINT))
        t("TS", "Request_Id", user_id, status, input_tokens, cached_tokens, output_tokens)""",
    ),
    (  # nested strings where a closed choice belongs: the reason quotes DuckDB's text
        "ledger-nested.parquet",
        r"""SELECT * FROM (VALUES
            ('g1', '2025-06-01 10:00:00', 'u1',
             ['a b', 'a,b', '', NULL, 'it''s', 'NULL', ' x', 'x=y', 'a\b', '{x}', 'é:'], 1.5),
            ('g2', '2025-06-01 10:00:01', 'u1', ['topup'], 1),
            ('g3', '2025-06-01 10:00:02', 'u1', [], 1))
        t(entry_id, ts, user_id, kind, amount)""",
    ),
    (
        "ledger-struct.parquet",
        """SELECT * FROM (VALUES
            ('h1', '2025-06-01 10:00:00', 'u1', {'a': 'x y', 'b': [1, NULL], 'c': MAP {'k': 'v'}}, 1),
            ('h2', '2025-06-01 10:00:01', 'u1', {'a': NULL, 'b': NULL, 'c': NULL}, 1),
            ('h3', '2025-06-01 10:00:02', 'u1', NULL, 1))
        t(entry_id, ts, user_id, kind, amount)""",
    ),
    (
        "prices.parquet",
        """SELECT * FROM (VALUES
            ('m1', '2025-01-01', 2.5::DOUBLE, NULL::DOUBLE, 10::DOUBLE),
            ('m2', '2025-01-01', -1::DOUBLE, 0.1::DOUBLE, 1e-9::DOUBLE))
        t(model, effective_from, input_per_mtok, cached_per_mtok, output_per_mtok)""",
    ),
]


def test_the_parquet_cases_land_alike(tmp_path: Path, spark: Any) -> None:
    scratch = duckdb.connect()
    scratch.execute("SET TimeZone = 'UTC'")
    paths = []
    for i, (name, select) in enumerate(CASES):
        folder = tmp_path / "cases" / f"{i:02d}"
        folder.mkdir(parents=True)
        scratch.execute(f"COPY ({select}) TO '{folder / name}' (FORMAT parquet)")
        paths.append(folder / name)
    tables = _land_alike(spark, paths, tmp_path)
    assert len(tables["rejects"][0]) >= 25


def test_a_parquet_uri_file_and_folder(tmp_path: Path, spark: Any) -> None:
    """Parquet named by ``file://`` URIs (a file, a folder): planned from the
    footer Spark reads (column types mapped to DuckDB's), hashed through Hadoop,
    read as DuckDB's ingest reads the local files."""
    from warroom.spark import ingest as spark_ingest
    from warroom.spark import uris as spark_uris

    logs = parquet_world(world_logs((1, 25, 8), tmp_path), tmp_path / "pq", "decimal-tz")
    requests, rest = logs / "requests.parquet", tmp_path / "rest"
    rest.mkdir()
    for p in logs.iterdir():
        if p != requests:
            p.rename(rest / p.name)
    con = db.connect(tmp_path / "w.duckdb")
    try:
        ingest(con, [requests, rest])
        uris = [f"file://{requests}", *spark_uris.expand_uri(spark, f"file://{rest}")]
        plans = [(spark_uris.plan_uri(spark, u), u) for u in uris]
        local = [plan_file(con, p, None, None) for p in expand_paths([requests, rest])]
        assert [(p.kind, p.parquet_types) for p, _ in plans] == [
            (p.kind, p.parquet_types) for p in local
        ]
        spark_ingest.ingest(spark, plans, tmp_path / "warehouse")
        tables = _tables(con, tmp_path / "warehouse", by_name=True)
    finally:
        con.close()
    differ = {n: _first_diffs(*t) for n, t in tables.items() if t[0] != t[1]}
    assert not differ, "\n".join(f"{n}:\n{d}" for n, d in differ.items())


def test_a_column_spark_does_not_render_alike_is_named(tmp_path: Path, spark: Any) -> None:
    """A FLOAT column (DuckDB does not always print its shortest digits): a local
    file is left to DuckDB's ingest, a URI refused in one line naming it."""
    from warroom.errors import InputError
    from warroom.spark import load as spark_load
    from warroom.spark import uris as spark_uris

    path = tmp_path / "ledger.parquet"
    scratch = duckdb.connect()
    scratch.execute(
        f"COPY (SELECT 'e1' AS entry_id, '2025-06-01' AS ts, 'u1' AS user_id, 'topup' AS kind, "
        f"1.5::FLOAT AS amount) TO '{path}' (FORMAT parquet)"
    )
    con = db.connect(tmp_path / "w.duckdb")
    try:
        assert not spark_load.spark_reads([plan_file(con, path, None, None)])
    finally:
        con.close()
    with pytest.raises(InputError) as err:
        spark_uris.plan_uri(spark, f"file://{path}")
    assert str(err.value) == (
        f"file://{path}: Spark does not read this Parquet file as DuckDB does "
        "(column amount is FLOAT)"
    )
    # beside a URI, the local file is named: Spark reads every input or none
    other = tmp_path / "remote" / "requests.jsonl"
    other.parent.mkdir()
    other.write_text(req(1) + "\n")
    con = db.connect(tmp_path / "x.duckdb")
    try:
        with pytest.raises(InputError) as err:
            spark_load.load_into(con, spark, [path], tmp_path / "wh", [f"file://{other}"])
    finally:
        con.close()
    assert str(err.value) == (
        f"{path}: Spark does not read this file as DuckDB does (column amount is FLOAT); "
        f"with a URI (file://{other}) Spark must read every input"
    )
