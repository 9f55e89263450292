"""``--engine spark`` when it cannot start: one line naming what is missing, exit
code 1, before any work (no JVM is started here: fast)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from tests.conftest import SAMPLE, Cli
from warroom import profiles


def test_no_java_is_said_in_one_line_before_the_ingest(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-java"))
    # the extra counts as installed here, so that Java is what is missing
    monkeypatch.setitem(sys.modules, "pyspark", types.ModuleType("pyspark"))
    r = cli("investigate", str(SAMPLE), "--out-dir", str(tmp_path / "out"), "--engine", "spark")
    assert r.code == 1
    assert r.stderr.strip().splitlines() == [
        "error: --engine spark needs Java 17+ and none was found (set JAVA_HOME, or on "
        "Debian: apt-get install default-jre-headless)"
    ]
    assert not (tmp_path / "out" / "warroom.duckdb").exists()
    assert r.stdout == b""


def test_a_missing_extra_is_said_in_one_line(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark -> ImportError
    r = cli("detect", "--db", str(tmp_path / "w.duckdb"), "--engine", "spark")
    assert r.code == 1
    assert r.stderr.strip() == (
        "error: --engine spark needs the [spark] extra (pyspark is not installed): "
        'pip install -e ".[spark]"'
    )


def test_a_malformed_spark_conf_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    r = cli(
        "impact", "--db", str(tmp_path / "w.duckdb"), "--engine", "spark", "--spark-conf", "oops"
    )
    assert r.code == 2
    assert "--spark-conf 'oops': write KEY=VALUE" in r.stderr


def test_a_uri_without_the_spark_engine_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    """Only Spark reads s3a://, hdfs://, abfss:// inputs: said before any work."""
    r = cli("investigate", "s3a://bucket/logs/", "--out-dir", str(tmp_path / "out"))
    assert r.code == 2
    assert r.stderr.strip() == "error: s3a://bucket/logs/: a URI is read with --engine spark only"
    assert not (tmp_path / "out").exists()
    assert r.stdout == b""


def test_what_spark_does_not_read_through_a_profile_is_named() -> None:
    """Through a profile Spark reads JSON lines, CSV/TSV, JSON arrays,
    pretty-printed documents and Parquet, unless a column (any: the row is the
    profile's document) is one Spark does not write as DuckDB does (refused for
    a URI: tests/test_spark_profiles.py)."""
    from warroom.ingest.sniff import FilePlan
    from warroom.model import Kind
    from warroom.spark.load import spark_reads
    from warroom.spark.profiles import unread

    def plan(name: str, fmt: str, **kw: object) -> FilePlan:
        p = FilePlan(Path(name), fmt, None, Kind.requests, 1)
        for k, v in kw.items():
            setattr(p, k, v)
        return p

    assert unread(plan("a.jsonl", "json")) is None
    assert unread(plan("a.csv", "csv")) is None
    assert unread(plan("a.json", "json", json_array=True)) is None
    assert unread(plan("a.json", "json", json_document=True)) is None
    # a local file too: Spark reads it, not DuckDB's ingest
    documents = plan("a.json", "json", json_document=True, profile=profiles.resolve("lago"))
    assert spark_reads([documents])
    profile = profiles.resolve("openmeter")
    ok = [("id", "VARCHAR"), ("data", 'STRUCT("tokens" BIGINT)'), ("at", "TIMESTAMP")]
    assert unread(plan("a.parquet", "parquet", parquet_columns=ok, profile=profile)) is None
    odd = [("id", "VARCHAR"), ("cost", "FLOAT"), ("data", 'STRUCT("usd" DECIMAL(9,2))')]
    assert unread(plan("a.parquet", "parquet", parquet_columns=odd, profile=profile)) == (
        'column cost is FLOAT; column data is STRUCT("usd" DECIMAL(9,2)): '
        "a nested double, decimal, date or time"
    )


def test_local_workers_run_this_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a local master Spark's Python workers run the interpreter warroom runs
    in (``.venv/bin/warroom`` started by its path, the virtualenv not activated,
    sent them to PATH's ``python3``, which has no warroom); a Python the user
    names is kept; a cluster's workers are left to run the cluster's."""
    from warroom.spark.session import SparkSettings, worker_python

    monkeypatch.delenv("PYSPARK_PYTHON", raising=False)
    assert worker_python(SparkSettings(master="local[2]")) == sys.executable
    assert worker_python(SparkSettings(master="yarn")) is None
    mine = SparkSettings(master="local[*]", conf={"spark.pyspark.python": "/opt/py/bin/python"})
    assert worker_python(mine) == "/opt/py/bin/python"
    monkeypatch.setenv("PYSPARK_PYTHON", "/usr/local/bin/python3")
    assert worker_python(SparkSettings(master="local[2]")) == "/usr/local/bin/python3"
    assert worker_python(mine) == "/opt/py/bin/python"


def test_a_local_master_gets_a_quarter_of_the_memory() -> None:
    """On a local master the driver's JVM runs every task: its heap is a quarter
    of the machine's memory (at least Spark's 1g, at most 16g), unless the user
    names one; a cluster's driver is left to the cluster's settings."""
    from warroom.spark.session import SparkSettings, local_memory, session_conf

    assert [local_memory(g * 2**30) for g in (2, 8, 23, 64, 256)] == [
        "1g",
        "2g",
        "5g",
        "16g",
        "16g",
    ]
    assert session_conf(SparkSettings("local[2]"))["spark.driver.memory"] == local_memory()
    mine = SparkSettings("local[*]", {"spark.driver.memory": "3g"})
    assert session_conf(mine)["spark.driver.memory"] == "3g"
    assert "spark.driver.memory" not in session_conf(SparkSettings("spark://head:7077"))
