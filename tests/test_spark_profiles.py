"""Spark reads files through an import profile itself (warroom.spark.profiles):
every real export of tests/data/real-formats/ (JSON lines, CSV, JSON arrays,
pretty-printed documents), named by
``file://`` URIs (listed, planned and hashed through Hadoop's FileSystem, as an
``s3a://`` one is), land as DuckDB's ingest of the same files lands them: the
canonical tables (values, file and line), the rejects (line, raw text, reason)
and the sources, row for row. Slow: one Spark session (local[2]).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import ROOT, Cli
from tests.test_spark_ingest import _first_diffs, _tables
from warroom import db, profiles
from warroom.ingest import ingest

pytestmark = pytest.mark.slow

CORPUS = ROOT / "tests" / "data" / "real-formats"
#: every real export (JSON lines, CSV, JSON arrays, pretty-printed documents), by
#: the profile that reads it (a mapping file: OpenRouter's)
REAL = {
    "lago": [
        "lago/wallet_transactions.jsonl",
        "lago/litellm_callback_bodies.jsonl",
        "lago/events_page.json",
        "lago/wallet_transactions_page.json",
        "lago/wallet_transactions_page_settled_only.json",
    ],
    "litellm": [
        "litellm/spendlogs_psql_timestamp3.csv",
        "litellm/spendlogs_psql_timestamptz.csv",
        "litellm/spend_logs_api.json",
        "litellm/spend_logs_payload.json",
        "litellm/spend_logs_v2_page.json",
    ],
    "openai-usage": [
        "openai-usage/costs_cookbook_pages.jsonl",
        "openai-usage/usage_cookbook_pages.jsonl",
        "openai-usage/usage_cookbook_bucket_list.json",
        "openai-usage/costs_grouped_project_line_item_api_key.json",
        "openai-usage/usage_completions_reference_page.json",
        "openai-usage/usage_grouped_model_service_tier.json",
    ],
    "openmeter": [
        "openmeter/events_as_sent.jsonl",
        "openmeter/list_events_v1.json",
        "openmeter/list_events_v2_page.json",
    ],
    "stripe": [
        "stripe/dashboard_all_activity.csv",
        "stripe/itemized3_api_with_customer.csv",
        "stripe/itemized3_dashboard_default.csv",
        "stripe/balance_transactions_list.json",
        "stripe/billing_meter_events.json",
        "stripe/customer_balance_transactions_list.json",
    ],
    "stripe-meter": ["stripe/billing_meter_events.json"],
    str(CORPUS / "openrouter" / "openrouter.toml"): [
        "openrouter/generation_trick_question_bench.json"
    ],
}


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from warroom.spark.session import SparkSettings, start

    yield start(SparkSettings(master="local[2]"))


def _land_alike(spark: Any, profile: str, paths: list[Path], tmp: Path) -> dict[str, Any]:
    """DuckDB's ingest of ``paths`` through ``profile``; Spark's of their
    ``file://`` URIs; every table equal (sources by file name)."""
    from warroom.spark import ingest as spark_ingest
    from warroom.spark import uris as spark_uris

    prof = profiles.resolve(profile)
    con = db.connect(tmp / "w.duckdb")
    try:
        ingest(con, paths, profile=prof)
        uris = [f"file://{p.resolve()}" for p in paths]
        plans = [(spark_uris.plan_uri(spark, u, profile=prof), u) for u in uris]
        spark_ingest.ingest(spark, plans, tmp / "warehouse")
        tables = _tables(con, tmp / "warehouse", by_name=True)
    finally:
        con.close()
    differ = {n: _first_diffs(*t) for n, t in tables.items() if t[0] != t[1]}
    assert not differ, "\n".join(f"{n}:\n{d}" for n, d in differ.items())
    return tables


@pytest.mark.parametrize("profile", sorted(REAL), ids=lambda p: Path(p).stem)
def test_spark_reads_a_real_export_through_its_profile(
    tmp_path: Path, spark: Any, profile: str
) -> None:
    paths = []
    for i, name in enumerate(REAL[profile]):
        data = (CORPUS / name).read_bytes()
        folder = tmp_path / "in" / f"{i:02d}"
        folder.mkdir(parents=True)
        paths.append(folder / Path(name).name)
        paths[-1].write_bytes(data)
        if i == 0:  # and gzip
            gz = tmp_path / "in" / f"{i:02d}-gz"
            gz.mkdir()
            paths.append(gz / (Path(name).name + ".gz"))
            paths[-1].write_bytes(gzip.compress(data))
    tables = _land_alike(spark, profile, paths, tmp_path)
    sources = tables["sources"][0]
    assert len(sources) == len(paths)
    name = profiles.resolve(profile).name
    assert all(s[4] == name for s in sources), sources  # the profile column


def test_investigate_reads_a_profile_uri_on_spark_as_duckdb_reads_the_file(
    tmp_path: Path, spark: Any, cli: Cli
) -> None:
    """One command, a LiteLLM export named by a URI: the same impact and affected
    users, byte for byte, as DuckDB's investigation of the local file."""
    export = CORPUS / "litellm" / "spendlogs_psql_timestamp3.csv"
    duck = cli("investigate", str(export), "--profile", "litellm", "--out-dir", str(tmp_path / "d"))
    assert duck.code == 0, duck.stderr
    uri = f"file://{export.resolve()}"
    res = cli(
        "investigate",
        uri,
        "--profile",
        "litellm",
        "--engine",
        "spark",
        "--spark-master",
        "local[2]",
        "--out-dir",
        str(tmp_path / "s"),
    )
    assert res.code == 0, res.stderr
    assert res.stdout == b""
    # Spark falls back from code generation too large for the JVM, silently:
    # its Java stack traces do not reach the terminal
    assert "ERROR" not in res.stderr and len(res.stderr.splitlines()) < 30, res.stderr
    for name in ("impact.csv", "affected-users.csv"):
        ours = (tmp_path / "s" / name).read_bytes()
        assert ours == (tmp_path / "d" / name).read_bytes(), name
    con = duckdb.connect(str(tmp_path / "s" / "warroom.duckdb"), read_only=True)
    try:
        sources = con.execute("SELECT path, profile, rows_loaded FROM sources").fetchall()
        found = con.execute("SELECT detector FROM findings").fetchall()
    finally:
        con.close()
    assert sources == [(uri, "litellm", 6)]
    assert found == [("unbilled_requests",)]  # the cache hit, as on DuckDB


#: real exports in CSV as a warehouse holds them: read by DuckDB's CSV reader
#: (money as DOUBLE, times as TIMESTAMP) and written as Parquet
PARQUET = {
    "litellm": ["litellm/spendlogs_psql_timestamp3.csv", "litellm/spendlogs_psql_timestamptz.csv"],
    "stripe": ["stripe/dashboard_all_activity.csv", "stripe/itemized3_api_with_customer.csv"],
}


@pytest.mark.parametrize("money", ["DOUBLE", "DECIMAL(9,6)", "DECIMAL(38,10)"])
@pytest.mark.parametrize("profile", sorted(PARQUET))
def test_spark_reads_parquet_through_a_profile(
    tmp_path: Path, spark: Any, profile: str, money: str
) -> None:
    """Each export as Parquet, its DOUBLE columns as they are or as a DECIMAL (NULL
    where it does not fit):
    Spark writes each row's JSON document as DuckDB does, and the tables land alike."""
    paths = []
    for i, name in enumerate(PARQUET[profile]):
        out = tmp_path / "in" / f"{i:02d}" / (Path(name).stem + ".parquet")
        out.parent.mkdir(parents=True)
        rel = duckdb.sql(f"SELECT * FROM read_csv('{CORPUS / name}')")
        cols = [
            f'TRY_CAST("{c}" AS {money}) AS "{c}"' if str(t) == "DOUBLE" else f'"{c}"'
            for c, t in zip(rel.columns, rel.types, strict=True)
        ]
        rel.query("t", f"COPY (SELECT {', '.join(cols)} FROM t) TO '{out}' (FORMAT parquet)")
        paths.append(out)
    tables = _land_alike(spark, profile, paths, tmp_path)
    assert len(tables["ledger_all"][0]) > 0


def test_spark_reads_parquet_numbers_through_a_profile(tmp_path: Path, spark: Any) -> None:
    """test_profiles' file of every numeric type (a DOUBLE read through a double,
    DECIMALs and nested numbers read as written, their rejects) lands alike."""
    from tests.test_profiles import NUMBERS_MAPPING, numbers_parquet

    mapping = tmp_path / "n.toml"
    mapping.write_text(NUMBERS_MAPPING)
    path = numbers_parquet(tmp_path / "in" / "numbers.parquet", nested_decimal=False)
    tables = _land_alike(spark, str(mapping), [path], tmp_path)
    assert len(tables["rejects"][0]) == 5


def test_parquet_spark_does_not_write_alike_is_named_for_a_uri_and_read_by_duckdb_here(
    tmp_path: Path, spark: Any, cli: Cli
) -> None:
    """A Parquet column whose JSON text Spark does not write as DuckDB does (here
    a struct holding a double) is named in one line (exit 1) for a URI; a local
    file is read by DuckDB's ingest."""
    export = tmp_path / "in" / "events.parquet"
    export.parent.mkdir()
    duckdb.execute(
        f"COPY (SELECT 'e1' AS id, 'u1' AS subject, '2025-01-01T00:00:00Z' AS time, "
        f"'request' AS type, {{'tokens': 1.5::DOUBLE}} AS data) TO '{export}' (FORMAT parquet)"
    )
    uri = f"file://{export.resolve()}"
    res = cli(
        "investigate",
        uri,
        "--profile",
        "openmeter",
        "--engine",
        "spark",
        "--out-dir",
        str(tmp_path),
    )
    assert res.code == 1
    assert res.stderr.strip().splitlines()[-1] == (
        f"error: {uri}: Spark does not read this Parquet file as DuckDB does (column data "
        'is STRUCT("tokens" DOUBLE): a nested double, decimal, date or time)'
    )
    local = cli(
        "investigate",
        str(export),
        "--profile",
        "openmeter",
        "--engine",
        "spark",
        "--out-dir",
        str(tmp_path / "local"),
    )
    assert local.code == 0, local.stderr
    assert "DuckDB reads them" in local.stderr
