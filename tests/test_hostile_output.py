"""Hostile values and statements against the outputs (issue 11, items 1-6).

Cases as data, one harness each: what ``warroom sql`` refuses, and what every
output format makes of a hostile value (machine formats keep it exactly, human
formats show it safely).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cli, write

REQ = (
    '{"ts":"2025-06-01T10:00:00Z","request_id":"%s","user_id":"%s","status":200,'
    '"input_tokens":10,"output_tokens":5}\n'
)


@pytest.fixture
def small_db(tmp_path: Path, cli: Cli) -> str:
    f = write(tmp_path / "requests.jsonl", REQ % ("r1", "u1"))
    db = str(tmp_path / "w.duckdb")
    assert cli("ingest", str(f), "--db", db).code == 0
    return db


# (statement, the word the one-line error names); each must leave no file behind
WRITES = [
    ("COPY (SELECT 1 AS a) TO '{out}'", "COPY"),
    ("SELECT 1; COPY (SELECT 1 AS a) TO '{out}'", "COPY"),
    ("/* a comment */ COPY requests_all TO '{out}' (FORMAT parquet)", "COPY"),
    ("EXPORT DATABASE '{out}'", "EXPORT"),
    ("EXPLAIN ANALYZE COPY (SELECT 1 AS a) TO '{out}'", "COPY"),
    ("INSTALL httpfs", "INSTALL"),
    ("LOAD httpfs", "LOAD"),
    ("ATTACH '{out}' AS other", "ATTACH"),
    ("SET enable_external_access = false", "SET"),
    ("PRAGMA enable_profiling", "PRAGMA"),
    ("PRAGMA profiling_output = '{out}'", "PRAGMA"),
    ("CALL pragma_version()", "CALL"),
    ("CHECKPOINT", "CHECKPOINT"),
    ("CREATE TEMP TABLE t AS SELECT 1", "CREATE"),
]


@pytest.mark.parametrize(("statement", "word"), WRITES, ids=[w[0][:30] for w in WRITES])
def test_sql_refuses_every_statement_that_writes(
    statement: str, word: str, small_db: str, tmp_path: Path, cli: Cli
) -> None:
    out = tmp_path / "out" / "affected-users.csv"
    out.parent.mkdir()
    res = cli("sql", statement.format(out=out), "--db", small_db)
    assert res.code == 1, res.stderr
    assert f"only reads; {word} is refused" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert list(out.parent.iterdir()) == []


READS = [
    "SELECT count(*) AS n FROM requests_all",
    "WITH a AS (SELECT 1 AS n) SELECT * FROM a",
    "FROM requests_all SELECT user_id",
    "DESCRIBE requests_all",
    "SHOW TABLES",
    "SUMMARIZE SELECT 1 AS n",
    "EXPLAIN SELECT 1",
    "PRAGMA version",
    "PRAGMA table_info('requests_all')",
    "SELECT 1 AS n; SELECT 2 AS n",
    "SELECT * FROM read_csv('{csv}')",
]


@pytest.mark.parametrize("statement", READS)
def test_sql_still_reads_and_joins_local_files(
    statement: str, small_db: str, tmp_path: Path, cli: Cli
) -> None:
    csv = write(tmp_path / "support.csv", "user_id,ticket\nu1,T-1\n")
    res = cli("sql", statement.format(csv=csv), "--db", small_db, "-f", "csv")
    assert res.code == 0, res.stderr
    assert res.stdout


def test_sql_cannot_autoload_an_extension(small_db: str, cli: Cli) -> None:
    res = cli("sql", "SELECT * FROM read_csv('https://example.invalid/x.csv')", "--db", small_db)
    assert res.code == 1
    assert "httpfs" in res.stderr and len(res.stderr.strip().splitlines()) == 1
