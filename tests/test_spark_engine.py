"""``--engine spark`` gives DuckDB's answers (DESIGN.md section 6), row for row and
to the last decimal: the findings, the impact and the affected-users list, on the
sample logs and three small generated worlds. Slow: one Spark session (local[2])
for the whole run.
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pyarrow as pa
import pytest

from tests.conftest import world_logs
from warroom import db
from warroom.detect import detect
from warroom.impact import affected_users, impact, load_policy
from warroom.ingest import ingest
from warroom.pack import load_pack

pytestmark = pytest.mark.slow

# (seed, users, days): small worlds, each with every kind of fault the generator makes
WORLDS = [
    pytest.param(None, id="sample_logs"),
    pytest.param((1, 25, 8), id="seed1-25u-8d"),
    pytest.param((3, 20, 9), id="seed3-20u-9d"),
    pytest.param((7, 30, 7), id="seed7-30u-7d"),
]


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    from warroom.spark.session import SparkSettings, start

    yield start(SparkSettings(master="local[2]"))


@pytest.fixture(scope="module", params=WORLDS)
def answers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, spark: object
) -> Iterator[dict[str, dict[str, pa.Table]]]:
    """Each engine's findings, impact and affected users on one world."""
    from warroom.spark import run

    root = tmp_path_factory.mktemp("spark")
    logs = world_logs(request.param, root)
    con = db.connect(root / "w.duckdb")
    ingest(con, [logs])
    pack, policy = load_pack(), load_policy(None)
    detect(con, pack)
    duck_impact = impact(con, pack, policy, stored_findings=True)
    out = {"duckdb": _answers(con, duck_impact)}
    run.detect(con, spark, pack, root / "warehouse")
    spark_impact = run.impact(con, spark, pack, policy, root / "warehouse", fresh=False)
    out["spark"] = _answers(con, spark_impact)
    out["spark"]["warehouse_findings"] = _sorted(
        con, con.read_parquet(str(root / "warehouse" / "findings" / "*.parquet")).to_arrow_table()
    )
    yield out
    con.close()


def _sorted(con: duckdb.DuckDBPyConnection, table: pa.Table) -> pa.Table:
    con.register("t", table)
    try:
        return con.sql("SELECT * FROM t ORDER BY ALL").to_arrow_table()
    finally:
        con.unregister("t")


def _answers(con: duckdb.DuckDBPyConnection, rows: pa.Table) -> dict[str, pa.Table]:
    return {
        "findings": con.sql("SELECT * FROM main.findings ORDER BY ALL").to_arrow_table(),
        "impact": rows,
        "affected_users": affected_users(rows),
    }


def _diff(a: pa.Table, b: pa.Table) -> list[str]:
    """The first rows that differ, for a readable failure."""
    left, right = a.to_pylist(), b.to_pylist()
    out = [f"rows: {len(left)} vs {len(right)}"]
    out += [f"{x}\n  != {y}" for x, y in zip(left, right, strict=False) if x != y][:5]
    return out


@pytest.mark.parametrize("what", ["findings", "impact", "affected_users"])
def test_spark_gives_duckdbs_answers(answers: dict[str, dict[str, pa.Table]], what: str) -> None:
    duck, spark = answers["duckdb"][what], answers["spark"][what]
    assert duck.num_rows > 0
    assert duck.schema == spark.schema, (duck.schema, spark.schema)
    # to the last decimal: values compared as Python objects (Decimal, datetime, str)
    assert duck.to_pylist() == spark.to_pylist(), "\n".join(_diff(duck, spark))


def test_the_warehouse_keeps_the_findings(answers: dict[str, dict[str, pa.Table]]) -> None:
    kept = answers["spark"]["warehouse_findings"]
    assert kept.to_pylist() == answers["duckdb"]["findings"].to_pylist()
