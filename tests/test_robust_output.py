"""Issue 11, crashes and half-written files: legal rows whose sums are huge, result
types every format must write, policy numbers out of range, and writes that fail
(a full disk, a folder named as --out) without leaving half a file behind."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli, run_cli, write

TS = "2025-06-01T10:0{}:00Z"


def _led(entry: str, minute: int, kind: str, amount: str, request: str | None = None) -> str:
    row: dict[str, Any] = {
        "entry_id": entry,
        "ts": TS.format(minute),
        "user_id": "u1",
        "kind": kind,
        "amount": amount,
        "currency": "usd",
    }
    if request:
        row["request_id"] = request
    return json.dumps(row)


def _huge_logs(folder: Path) -> list[str]:
    """Legal rows whose sums outgrow DECIMAL(18,6): top-ups of 999,999,999,999, a
    charge billed three times, and 18-digit token counts."""
    big = "999999999999"
    ledger = [
        _led("e1", 0, "topup", big),
        _led("e2", 1, "topup", big),
        *(_led(f"c{i}", 2, "charge", "-" + big, "r1") for i in range(3)),
    ]
    request = {
        "ts": TS.format(2),
        "request_id": "r1",
        "user_id": "u1",
        "status": 200,
        "input_tokens": 999999999999999999,
        "cached_tokens": 0,
        "output_tokens": 999999999999999999,
        "model": "m1",
    }
    price = {
        "model": "m1",
        "input_per_mtok": "1.5",
        "output_per_mtok": "6",
        "effective_from": "2025-01-01T00:00:00Z",
    }
    return [
        str(write(folder / "ledger.jsonl", "\n".join(ledger) + "\n")),
        str(write(folder / "requests.jsonl", json.dumps(request) + "\n")),
        str(write(folder / "prices.jsonl", json.dumps(price) + "\n")),
    ]


def test_huge_legal_amounts_do_not_stop_the_analysis(tmp_path: Path, cli: Cli) -> None:
    files = _huge_logs(tmp_path / "logs")
    db = str(tmp_path / "w.db")
    assert cli("ingest", *files, "--db", db).code == 0
    detect = cli("detect", "--db", db)
    assert detect.code in (0, 5), detect.stderr
    impact = cli("impact", "--db", db, "-f", "json")
    assert impact.code in (0, 5), impact.stderr
    rows = json.loads(impact.stdout)
    assert rows[0]["duplicate_excess"] == "1999999999998.000000"
    assert cli("report", "--db", db).code in (0, 5)
    inv = cli(
        "investigate", *files, "--db", str(tmp_path / "i.db"), "--out-dir", str(tmp_path / "o")
    )
    assert inv.code in (0, 5), inv.stderr


# ----------------------------------------------------------------------------- failed writes


def _full_disk(monkeypatch: pytest.MonkeyPatch, fail_on: str = "") -> None:
    """Writes of a file whose name contains ``fail_on`` get half their bytes
    down, then ENOSPC, as on a full disk."""
    from warroom import atomic

    real = atomic._dump

    def dump(path: Path, data: bytes) -> None:
        if fail_on not in path.name:
            real(path, data)
            return
        with open(path, "xb") as fh:
            fh.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "_dump", dump)


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "internal error" not in lines[0] and "Traceback" not in stderr
    return lines[0]


@pytest.fixture(scope="module")
def small_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One small database per module (the tests that use it only read, or fail)."""
    folder = tmp_path_factory.mktemp("small")
    db = str(folder / "w.db")
    assert run_cli("ingest", *_huge_logs(folder / "logs"), "--db", db).code == 0
    return db


@pytest.mark.parametrize("suffix", ["csv", "json", "jsonl", "parquet", "md"])
def test_out_on_a_full_disk_keeps_the_old_file(
    tmp_path: Path, cli: Cli, small_db: str, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    out = write(tmp_path / "out" / f"affected-users.{suffix}", "the old refund list\n")
    _full_disk(monkeypatch)
    r = cli("sql", "SELECT * FROM ledger", "--db", small_db, "--out", str(out))
    assert r.code == 1
    assert "no space left" in _one_line(r.stderr)
    assert out.read_text() == "the old refund list\n"
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary left


def test_report_out_on_a_full_disk_keeps_the_old_file(
    tmp_path: Path, cli: Cli, small_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = write(tmp_path / "report.html", "old")
    _full_disk(monkeypatch)
    r = cli("report", "--db", small_db, "--out", str(out))
    assert r.code == 1 and "no space left" in _one_line(r.stderr)
    assert out.read_text() == "old"


@pytest.mark.parametrize("command", [["sql", "SELECT 1 AS x"], ["report"], ["impact"], ["sources"]])
@pytest.mark.parametrize(
    "target, words",
    [
        (".", "is a folder"),
        ("missing/x.csv", "no such folder"),
        ("a-file/x.csv", "not a folder"),
    ],
)
def test_out_naming_a_folder_or_a_missing_one_is_a_clear_error(
    tmp_path: Path, cli: Cli, small_db: str, command: list[str], target: str, words: str
) -> None:
    write(tmp_path / "a-file", "x")
    fmt = ["--format", "markdown"] if command == ["report"] else []
    r = cli(*command, *fmt, "--db", small_db, "--out", str(tmp_path / target))
    assert r.code == 1, r.stderr
    assert words in _one_line(r.stderr)


@pytest.mark.slow  # a whole investigation or a second process: make slow runs it
def test_failed_investigate_leaves_the_old_bundle_whole(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _huge_logs(tmp_path / "logs")
    out = tmp_path / "out"
    db = str(tmp_path / "w.db")
    assert cli("investigate", *files[:2], "--db", db, "--out-dir", str(out)).code in (0, 5)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"report.md", "report.html", "affected-users.csv", "impact.csv"}
    for name in ("report.html", "affected-users.csv", "impact.csv"):
        monkeypatch.undo()
        _full_disk(monkeypatch, fail_on=name)
        # the prices make this run's report differ from the old one
        r = cli("investigate", *files, "--db", db, "--out-dir", str(out))
        assert r.code == 1 and "internal error" not in r.stderr
        assert "no space left" in r.stderr.strip().splitlines()[-1]
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    monkeypatch.undo()
    assert cli("investigate", *files, "--db", db, "--out-dir", str(out)).code in (0, 5)
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(after) == set(before) and after["report.md"] != before["report.md"]


def test_investigate_out_dir_that_is_a_file(tmp_path: Path, cli: Cli) -> None:
    files = _huge_logs(tmp_path / "logs")
    out = write(tmp_path / "out", "x")
    r = cli("investigate", *files, "--db", str(tmp_path / "w.db"), "--out-dir", str(out))
    assert r.code == 1 and "internal error" not in r.stderr
    assert "not a folder" in r.stderr.strip().splitlines()[-1]


# ----------------------------------------------------------------------------- result types

#: every kind of DuckDB value a query can return, odd ones included
ODD_TYPES = {
    "iv": "INTERVAL 3 DAY + INTERVAL 5 SECOND",
    "neg_iv": "INTERVAL (-1) MONTH",
    "l": "[1, 2]",
    "s": "{'a': 1, 'b': 'x'}",
    "m": "MAP {'k': 1}",
    "arr": "[1, 2]::INTEGER[2]",
    "nested": "[{'x': 1.5::DECIMAL(18,6), 't': TIMESTAMP '2025-01-01'}]",
    "t": "TIME '12:34:56.5'",
    "ttz": "TIMETZ '12:00:00+05'",
    "ti": "'infinity'::TIMESTAMP",
    "tni": "'-infinity'::TIMESTAMP",
    "tzi": "'infinity'::TIMESTAMPTZ",
    "far": "TIMESTAMP '294246-01-01'",
    "bc": "TIMESTAMP '0001-01-01' - INTERVAL 1 DAY",
    "di": "'infinity'::DATE",
    "dfar": "DATE '5000000-01-01'",
    "tns": "TIMESTAMP_NS '2025-01-01 00:00:00.123456789'",
    "b": "'ab\\x00'::BLOB",
    "bit": "'101'::BIT",
    "u": "'98999e41-dc3d-4996-9396-2630d142b866'::UUID",
    "h": "170141183460469231731687303715884105727::HUGEINT",
    "uh": "340282366920938463463374607431768211455::UHUGEINT",
    "vi": "12345678901234567890123::VARINT",
    "un": "union_value(k := 1)",
    "e": "'a'::ENUM('a', 'b')",
    "nan": "'NaN'::DOUBLE",
    "js": "'{\"a\": 1}'::JSON",
    "ts": "TIMESTAMP '2025-06-01 16:00:00.5'",
}


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "parquet", "markdown", "table"])
def test_every_result_type_is_written_by_every_format(
    tmp_path: Path, cli: Cli, small_db: str, fmt: str
) -> None:
    query = "SELECT " + ", ".join(f"{v} AS {k}" for k, v in ODD_TYPES.items())
    query += " UNION ALL SELECT " + ", ".join(f"NULL AS {k}" for k in ODD_TYPES)
    r = cli("sql", query, "--db", small_db, "-f", fmt, env={"COLUMNS": "3000"})
    assert r.code == 0, r.stderr
    if fmt in ("json", "jsonl"):
        rows = (
            json.loads(r.stdout)
            if fmt == "json"
            else [json.loads(x) for x in r.stdout.splitlines()]
        )
        row = rows[0]
        assert row["ti"] == "infinity" and row["tni"] == "-infinity" and row["di"] == "infinity"
        assert row["far"] == "294246-01-01 00:00:00" and row["ts"] == "2025-06-01T16:00:00.5Z"
        assert row["iv"] == "3 days 00:00:05" and row["t"] == "12:34:56.5"
        assert row["l"] == [1, 2] and row["s"] == {"a": 1, "b": "x"} and row["m"] == {"k": 1}
        assert row["h"] == "170141183460469231731687303715884105727"
        assert row["u"] == "98999e41-dc3d-4996-9396-2630d142b866"
        assert all(v is None for v in rows[1].values())
    elif fmt == "parquet":
        import io

        import pyarrow.parquet as pq

        t = pq.read_table(io.BytesIO(r.stdout))
        assert t.column("iv").to_pylist()[0] == "3 days 00:00:05"
        assert t.column("l").to_pylist()[0] == [1, 2]
    else:
        text = r.stdout.decode()
        for want in ("infinity", "-infinity", "3 days 00:00:05", "12:34:56.5", "294246-01-01"):
            assert want in text, want


# ----------------------------------------------------------------------------- detect's errors


def test_detect_shows_the_error_that_aborted_it(tmp_path: Path, cli: Cli, small_db: str) -> None:
    """A detection whose amount cannot be stored aborts the transaction: the user
    sees why, not DuckDB's "Current transaction is aborted"."""
    write(
        tmp_path / "mine" / "bad_amount.sql",
        "-- title: Bad amount\n-- description: returns text as the amount\n-- severity: low\n"
        "SELECT 'bad_amount' AS detector, 'u1' AS user_id, 'usd' AS currency, TIMESTAMP '2025-06-01' AS ts, "
        "NULL AS request_id, NULL AS entry_id, 'lots' AS amount, 'x' AS detail\n",
    )
    r = cli("detect", "--db", small_db, "--queries-dir", str(tmp_path / "mine"))
    assert r.code == 1
    line = _one_line(r.stderr)
    assert "lots" in line and "aborted" not in line


def test_full_disk_during_detect_is_a_clear_error(
    cli: Cli, small_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB ends the transaction itself when it cannot write; the ROLLBACK that
    follows ("no transaction is active") must not hide the full disk."""
    import duckdb

    from warroom import detect

    def full(con: duckdb.DuckDBPyConnection, *_: object) -> None:
        con.execute("ROLLBACK")
        raise duckdb.IOException('Could not write file "w.db.wal": No space left on device')

    monkeypatch.setattr(detect, "store_incident_id", full)
    r = cli("detect", "--db", small_db)
    assert r.code == 1
    line = _one_line(r.stderr)
    assert "No space left on device" in line and "no transaction" not in line
