"""Ingest end to end: provenance, canonical rows, re-ingest, --force, --strict, kinds."""

from __future__ import annotations

import gzip
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from tests.conftest import write
from warroom import ingest
from warroom.errors import InputError
from warroom.ingest import RejectedRowsError
from warroom.model import Kind

REQ = (
    '{"ts":"2025-06-01T10:00:00Z","request_id":"r%d","user_id":"u1","status":200,'
    '"input_tokens":10,"cached_tokens":2,"output_tokens":5}\n'
)


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[object, ...]]:
    return con.execute(sql).fetchall()


def test_clean_jsonl_loads_every_line_with_its_line_number(con, tmp_path: Path) -> None:
    f = write(tmp_path / "requests.jsonl", "".join(REQ % i for i in range(1, 6)))
    report = ingest(con, [f])
    assert [r.rows_loaded for r in report.files] == [5]
    assert rows(con, "SELECT line, request_id FROM requests ORDER BY line") == [
        (i, f"r{i}") for i in range(1, 6)
    ]
    assert rows(con, "SELECT path, kind, rows_loaded, rows_rejected FROM sources") == [
        (str(f), "requests", 5, 0)
    ]


def test_blank_lines_keep_numbering_and_are_not_rows(con, tmp_path: Path) -> None:
    f = write(tmp_path / "requests.jsonl", REQ % 1 + "\n   \n" + REQ % 2 + "\n")
    report = ingest(con, [f])
    assert (
        report.files[0].rows_loaded,
        report.files[0].rows_rejected,
        report.files[0].blank_lines,
    ) == (2, 0, 3)
    assert rows(con, "SELECT line FROM requests ORDER BY line") == [(1,), (4,)]


def test_timestamps_and_money_are_exact_and_utc(con, tmp_path: Path) -> None:
    f = write(
        tmp_path / "ledger.jsonl",
        "\n".join(
            [
                '{"entry_id":"a","ts":"2025-06-01T12:00:00+02:00","user_id":"u","kind":"topup",'
                '"amount":"10.000001"}',
                '{"entry_id":"b","ts":1748772000,"user_id":"u","kind":"charge","amount":-0.1,'
                '"request_id":"r"}',
                '{"entry_id":"c","ts":1748772000123,"user_id":"u","kind":"charge","amount":"-0.000001",'
                '"request_id":"s"}',
                '{"entry_id":"d","ts":"2025-06-01 10:00:00","user_id":"u","kind":"reset",'
                '"balance_after":"5"}',
            ]
        )
        + "\n",
    )
    ingest(con, [f])
    got = rows(
        con, "SELECT entry_id, CAST(ts AS VARCHAR), amount, currency FROM ledger ORDER BY entry_id"
    )
    assert got == [
        ("a", "2025-06-01 10:00:00", Decimal("10.000001"), "usd"),
        ("b", "2025-06-01 10:00:00", Decimal("-0.1"), "usd"),
        ("c", "2025-06-01 10:00:00.123", Decimal("-0.000001"), "usd"),
        ("d", "2025-06-01 10:00:00", None, "usd"),
    ]


def test_entry_shipped_twice_counts_once_and_conflicts_are_findable(con, tmp_path: Path) -> None:
    a = (
        '{"entry_id":"e1","ts":"2025-06-01T10:00:00Z","user_id":"u","kind":"charge",'
        '"amount":"-1","request_id":"r1"}\n'
    )
    b = (
        '{"entry_id":"e2","ts":"2025-06-01T10:00:00Z","user_id":"u","kind":"charge",'
        '"amount":"-2","request_id":"r2"}\n'
    )
    b2 = b.replace('"-2"', '"-3"')
    f1 = write(tmp_path / "ledger-1.jsonl", a + b)
    f2 = write(tmp_path / "ledger-2.jsonl", a + b2)
    ingest(con, [tmp_path])
    assert rows(con, "SELECT count(*) FROM ledger_all") == [(4,)]
    assert rows(con, "SELECT entry_id, amount FROM ledger ORDER BY entry_id") == [
        ("e1", Decimal("-1")),
        ("e2", Decimal("-2")),
    ]  # the first ingested wins
    conflicts = rows(
        con,
        """
        SELECT entry_id FROM ledger_all GROUP BY entry_id
        HAVING count(DISTINCT amount) > 1""",
    )
    assert conflicts == [("e2",)]
    del f1, f2


def test_reingest_same_bytes_loads_nothing_and_force_replaces(con, tmp_path: Path) -> None:
    f = write(tmp_path / "requests.jsonl", REQ % 1 + REQ % 2)
    ingest(con, [f])
    again = ingest(con, [f])
    assert again.files[0].status == "skipped"
    assert "already ingested" in again.files[0].note
    assert rows(con, "SELECT count(*) FROM requests_all") == [(2,)]
    forced = ingest(con, [f], force=True)
    assert forced.files[0].status == "replaced"
    assert rows(con, "SELECT count(*), count(*) FILTER (WHERE canonical) FROM requests_all") == [
        (2, 2)
    ]
    assert rows(con, "SELECT count(*) FROM sources") == [(1,)]


def test_force_keeps_the_files_place_and_its_canonical_rows(con, tmp_path: Path) -> None:
    f1 = write(tmp_path / "requests-1.jsonl", REQ % 1)
    f2 = write(tmp_path / "requests-2.jsonl", REQ % 1 + REQ % 2)
    ingest(con, [f1, f2])
    canonical = """SELECT s.path, r.line FROM requests_all r JOIN sources s USING (source_id)
                   WHERE canonical ORDER BY r.request_id"""
    assert rows(con, canonical) == [(str(f1), 1), (str(f2), 2)]
    assert ingest(con, [f1], force=True).files[0].status == "replaced"
    # f1 keeps its source id, so its row of r1 stays the one used
    assert rows(con, "SELECT source_id, path FROM sources ORDER BY 1") == [
        (1, str(f1)),
        (2, str(f2)),
    ]
    assert rows(con, canonical) == [(str(f1), 1), (str(f2), 2)]
    ingest(con, [f2], force=True)
    assert rows(con, canonical) == [(str(f1), 1), (str(f2), 2)]
    # a replaced file that no longer holds an id hands it to the next row in order
    con.execute("BEGIN")
    from warroom.ingest.load import _delete_source, _elect_orphans

    _delete_source(con, 1, reelect=False)
    _elect_orphans(con)
    con.execute("COMMIT")
    assert rows(con, canonical) == [(str(f2), 1), (str(f2), 2)]


def test_strict_loads_nothing_from_a_file_with_rejects(con, tmp_path: Path) -> None:
    good = write(tmp_path / "requests-good.jsonl", REQ % 1)
    bad = write(tmp_path / "requests-bad.jsonl", REQ % 2 + "{oops\n")
    with pytest.raises(RejectedRowsError) as err:
        ingest(con, [good, bad], strict=True)
    assert err.value.exit_code == 3
    assert rows(con, "SELECT path FROM sources") == [(str(good),)]
    assert rows(con, "SELECT request_id FROM requests") == [("r1",)]
    assert rows(con, "SELECT count(*) FROM rejects") == [(0,)]


def test_kind_from_fields_and_ambiguous_file_is_an_error(con, tmp_path: Path) -> None:
    f = write(tmp_path / "gateway.jsonl", REQ % 1)
    assert ingest(con, [f]).files[0].kind == "requests"
    g = write(tmp_path / "mystery.jsonl", '{"foo": 1}\n')
    with pytest.raises(InputError, match="name it requests\\*, ledger\\*, abuse\\* or prices\\*"):
        ingest(con, [g])
    assert ingest(con, [g], kind=Kind.abuse).files[0].rows_rejected == 1


def test_gzip_csv_tsv_and_parquet(con, tmp_path: Path) -> None:
    gz = tmp_path / "requests.jsonl.gz"
    gz.write_bytes(gzip.compress((REQ % 1 + REQ % 2).encode()))
    csv = write(
        tmp_path / "prices.csv",
        "model,currency,input_per_mtok,cached_per_mtok,output_per_mtok,effective_from\n"
        'm1,usd,1.5,,"6",2025-01-01T00:00:00Z\n',
    )
    tsv = write(
        tmp_path / "abuse.tsv",
        "ts\tuser_id\taction\tmultiplier\n2025-06-01T10:00:00Z\tu1\tpenalty\t10\n",
    )
    pq = tmp_path / "ledger.parquet"
    duckdb.sql(f"""COPY (SELECT 'e1' AS entry_id, TIMESTAMP '2025-06-01 10:00:00' AS ts,
                  'u1' AS user_id, 'topup' AS kind, 5.5::DECIMAL(10,2) AS amount)
                  TO '{pq}' (FORMAT parquet)""")
    report = ingest(con, [gz, csv, tsv, pq])
    assert [(r.format, r.rows_loaded, r.rows_rejected) for r in report.files] == [
        ("json", 2, 0),
        ("csv", 1, 0),
        ("tsv", 1, 0),
        ("parquet", 1, 0),
    ]
    assert rows(con, "SELECT input_per_mtok, cached_per_mtok, output_per_mtok FROM prices") == [
        (Decimal("1.5"), Decimal("1.5"), Decimal("6"))
    ]
    assert rows(con, "SELECT action, multiplier FROM abuse_events") == [("penalty", 10.0)]
    assert rows(con, "SELECT entry_id, amount, line FROM ledger") == [("e1", Decimal("5.5"), 1)]


def test_missing_path_is_a_clear_error(con, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        ingest(con, [tmp_path / "nope.jsonl"])


@pytest.mark.parametrize("text", ["PAR1", "PAR1\n", "PAR1 not parquet PAR1\n" + REQ % 2])
def test_a_text_line_that_starts_like_parquet_is_a_line(con, tmp_path: Path, text: str) -> None:
    # found by the property test: only a file that also ends like Parquet is one
    f = write(tmp_path / "requests.jsonl", text)
    report = ingest(con, [f])
    lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    assert report.files[0].rows_loaded + report.files[0].rows_rejected == lines
    assert rows(con, "SELECT line FROM rejects") == [(1,)]


def test_an_older_database_keeps_its_abuse_events_under_the_new_name(tmp_path: Path) -> None:
    """Before abuse events counted once per content, their table was `abuse_events`
    (now the view): opening such a database renames it to `abuse_events_all`."""
    from warroom import db
    from warroom.model import FIELDS

    cols = ", ".join(f"{f.name} {f.type.value}" for f in FIELDS[Kind.abuse])
    old = duckdb.connect(str(tmp_path / "old.duckdb"))
    old.execute(f"CREATE TABLE abuse_events (source_id INTEGER, line BIGINT, {cols})")
    old.execute(
        "INSERT INTO abuse_events (source_id, line, ts, user_id, action) VALUES "
        "(1, 1, '2025-06-10 00:00:00', 'u1', 'flag'), (2, 1, '2025-06-10 00:00:00', 'u1', 'flag')"
    )
    old.close()
    con = db.connect(tmp_path / "old.duckdb")
    assert rows(con, "SELECT count(*) FROM abuse_events_all") == [(2,)]
    assert rows(con, "SELECT source_id, line FROM abuse_events") == [(1, 1)]
