"""Spark reads the inputs itself (warroom.spark.ingest) and lands what DuckDB's
ingest lands: the canonical tables (values and provenance: file and line), the
rejects (line, raw text, reason) and the sources, row for row; and the pack run
on those tables gives DuckDB's findings, impact and affected users. On the
sample logs, three generated worlds and every text case of the bad-input
catalog (tests/test_bad_input.py). Slow: one Spark session (local[2]).

Provenance is compared as (path, line): DuckDB numbers its sources in file
order too, but a file its fast path hands to the careful path uses up a number.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import SAMPLE, world_logs
from tests.test_bad_input import CASES
from warroom import db
from warroom.detect import detect
from warroom.impact import affected_users, impact, load_policy
from warroom.ingest import ingest
from warroom.ingest.sniff import expand_paths, plan_file
from warroom.pack import load_pack
from warroom.spark.engine import CANONICAL

pytestmark = pytest.mark.slow

WORLDS = [
    pytest.param(None, id="sample_logs"),
    pytest.param((1, 25, 8), id="seed1-25u-8d"),
    pytest.param((3, 20, 9), id="seed3-20u-9d"),
    pytest.param((7, 30, 7), id="seed7-30u-7d"),
]
#: cases whose reject quotes a JSON number in exponent form where an integer or
#: a timestamp belongs: each engine renders that double its own way
#: ('200000000000000000000.0' on DuckDB, '2.0E20' on Spark); same line, same rule
RENDERED_DOUBLES = {"status-exponent", "ts-epoch-1e20"}
#: the catalog's text cases (JSON lines, CSV, TSV; gzip or not); JSON arrays and
#: Parquet: tests/test_spark_documents.py, tests/test_spark_parquet.py
TEXT_CASES = [
    c
    for c in CASES
    if c.name.removesuffix(".gz").endswith((".jsonl", ".csv", ".tsv"))
    and c.id not in RENDERED_DOUBLES
]


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from warroom.spark.session import SparkSettings, start

    yield start(SparkSettings(master="local[2]"))


def _both(con: duckdb.DuckDBPyConnection, spark: Any, paths: list[Path], warehouse: Path) -> None:
    """DuckDB's ingest into ``con``, Spark's into ``warehouse``."""
    from warroom.spark import ingest as spark_ingest

    ingest(con, paths)
    files = expand_paths(paths)
    plans = [(plan_file(con, p, None, None), spark_ingest.uri_of(p)) for p in files]
    spark_ingest.ingest(spark, plans, warehouse)


def _tables(
    con: duckdb.DuckDBPyConnection, warehouse: Path, by_name: bool = False
) -> dict[str, tuple[list, list]]:
    """Each canonical table on both engines, source ids as paths (``by_name``:
    file names), sorted."""
    path = "regexp_extract(s.path, '[^/]*$')" if by_name else "s.path"
    out = {}
    con.execute(
        "CREATE OR REPLACE TEMP VIEW spark_sources AS SELECT * FROM "
        f"read_parquet('{warehouse}/tables/sources/*.parquet')"
    )
    for name in CANONICAL:
        cols = [c for c in con.table(name).columns if c not in ("source_id", "ingested_at", "path")]
        sel = ", ".join(f"t.{c}" for c in cols)
        duck = con.sql(
            f"SELECT {path}, {sel} FROM {name} t JOIN sources s USING (source_id) ORDER BY ALL"
        ).fetchall()
        spark = con.sql(
            f"SELECT {path}, {sel} FROM read_parquet('{warehouse}/tables/{name}/*.parquet') t "
            "JOIN spark_sources s USING (source_id) ORDER BY ALL"
        ).fetchall()
        out[name] = (duck, spark)
    return out


def _first_diffs(duck: list, spark: list) -> str:
    lines = [f"rows: {len(duck)} vs {len(spark)}"]
    only_d = [r for r in duck if r not in spark][:4]
    only_s = [r for r in spark if r not in duck][:4]
    lines += [f"duckdb only: {r}" for r in only_d] + [f"spark only: {r}" for r in only_s]
    return "\n".join(str(x)[:600] for x in lines)


def _land_alike(spark: Any, paths: list[Path], tmp: Path) -> dict[str, tuple[list, list]]:
    """Both ingests of ``paths`` (a database and a warehouse under ``tmp``): every
    canonical table, the rejects and the sources equal row for row; returns them."""
    con = db.connect(tmp / "w.duckdb")
    try:
        _both(con, spark, paths, tmp / "warehouse")
        tables = _tables(con, tmp / "warehouse")
    finally:
        con.close()
    differ = {n: _first_diffs(*t) for n, t in tables.items() if t[0] != t[1]}
    assert not differ, "\n".join(f"{n}:\n{d}" for n, d in differ.items())
    return tables


@pytest.fixture(scope="module", params=WORLDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, spark: Any
) -> Iterator[dict[str, Any]]:
    """One world through both ingests; the pack on each engine's tables."""
    from warroom.spark import run

    root = tmp_path_factory.mktemp("native")
    logs = world_logs(request.param, root)
    con = db.connect(root / "w.duckdb")
    _both(con, spark, [logs], root / "warehouse")
    tables = _tables(con, root / "warehouse")
    pack, policy = load_pack(), load_policy(None)
    detect(con, pack)
    duck_impact = impact(con, pack, policy, stored_findings=True)
    duck = {"findings": _findings(con, "sources"), "impact": duck_impact}
    run.detect(con, spark, pack, root / "warehouse", native=True)
    spark_impact = run.impact(con, spark, pack, policy, root / "warehouse", fresh=False)
    found = {"findings": _findings(con, "spark_sources"), "impact": spark_impact}
    yield {"tables": tables, "duckdb": duck, "spark": found}
    con.close()


def _findings(con: duckdb.DuckDBPyConnection, sources: str) -> list[tuple]:
    """The findings with their provenance as (path, line): the source ids of the
    engine that read the files (``sources``: its table)."""
    cols = [c for c in con.table("main.findings").columns if c != "source_id"]
    return con.sql(
        f"SELECT s.path, {', '.join('f.' + c for c in cols)} FROM main.findings f "
        f"LEFT JOIN {sources} s USING (source_id) ORDER BY ALL"
    ).fetchall()


@pytest.mark.parametrize("name", CANONICAL)
def test_spark_reads_the_inputs_as_duckdb_does(world: dict[str, Any], name: str) -> None:
    duck, spark = world["tables"][name]
    if name not in ("rejects", "abuse_events", "abuse_events_all"):
        assert duck, name
    assert duck == spark, _first_diffs(duck, spark)


def test_the_pack_on_sparks_own_tables_gives_duckdbs_answers(world: dict[str, Any]) -> None:
    duck, spark = world["duckdb"], world["spark"]
    assert duck["findings"] and duck["findings"] == spark["findings"], _first_diffs(
        duck["findings"], spark["findings"]
    )
    assert duck["impact"].num_rows > 0
    assert duck["impact"].to_pylist() == spark["impact"].to_pylist()
    assert affected_users(duck["impact"]).to_pylist() == affected_users(spark["impact"]).to_pylist()


def test_the_bad_input_catalog_lands_alike(tmp_path: Path, spark: Any) -> None:
    """Every text case of the catalog (each file in its own folder), through both
    ingests at once: the same rows, rejects (raw text and reason) and sources."""
    paths = []
    for i, case in enumerate(TEXT_CASES):
        folder = tmp_path / "cases" / f"{i:03d}-{case.id}"
        folder.mkdir(parents=True)
        (folder / case.name).write_bytes(case.data)
        paths.append(folder / case.name)
        if i % 10 == 0:  # and gzip: one case in ten again, compressed
            gz = tmp_path / "cases" / f"{i:03d}-{case.id}-gz"
            gz.mkdir()
            (gz / (case.name + ".gz")).write_bytes(gzip.compress(case.data))
            paths.append(gz / (case.name + ".gz"))
    assert len(paths) >= 120
    _land_alike(spark, paths, tmp_path)


def test_a_uri_is_read_as_the_local_file_is(tmp_path: Path, spark: Any) -> None:
    """The sample logs named by a ``file://`` URI (listed, planned and hashed
    through Hadoop's FileSystem, as an ``s3a://`` or ``hdfs://`` one is), read in
    small splits, land as DuckDB's ingest lands the folder; sources keep the URI
    as the path."""
    from warroom.spark import ingest as spark_ingest
    from warroom.spark import uris as spark_uris

    con = db.connect(tmp_path / "w.duckdb")
    # small splits: a file over many partitions is numbered as one
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(256 * 1024))
    try:
        ingest(con, [SAMPLE])
        uris = spark_uris.expand_uri(spark, f"file://{SAMPLE.resolve()}")
        assert spark.read.text(uris[-1]).rdd.getNumPartitions() > 10
        assert [u.rsplit("/", 1)[-1] for u in uris] == [p.name for p in expand_paths([SAMPLE])]
        plans = [(spark_uris.plan_uri(spark, u), u) for u in uris]
        spark_ingest.ingest(spark, plans, tmp_path / "warehouse")
        tables = _tables(con, tmp_path / "warehouse", by_name=True)
        paths = con.sql(
            f"SELECT path FROM read_parquet('{tmp_path}/warehouse/tables/sources/*.parquet')"
        ).fetchall()
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
        con.close()
    assert sorted(p for (p,) in paths) == sorted(uris)
    differ = {n: _first_diffs(*t) for n, t in tables.items() if t[0] != t[1]}
    assert not differ, "\n".join(f"{n}:\n{d}" for n, d in differ.items())
