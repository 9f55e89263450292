"""The command line as a user meets it: help, exit codes, stdout/stderr, formats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, Cli, write
from warroom import __version__

REQ = (
    '{"ts":"2025-06-01T10:00:00Z","request_id":"%s","user_id":"%s","status":200,'
    '"input_tokens":10,"cached_tokens":2,"output_tokens":5}\n'
)

COMMANDS = [
    "ingest",
    "sources",
    "sql",
    "generate",
    "queries",
    "run",
    "detect",
    "impact",
    "policy",
    "export",
    "report",
    "investigate",
    "user",
    "profiles",
    "timeline",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_and_takes_db(command: str, cli: Cli) -> None:
    res = cli(command, "--help")
    assert res.code == 0, res.stderr
    assert b"--db" in res.stdout
    assert f"`warroom {command}".encode() in (ROOT / "README.md").read_bytes()


def test_no_command_is_left_out_of_the_catalog() -> None:
    from warroom.cli import app

    names = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    assert names == set(COMMANDS)


def test_library_does_not_import_the_cli_stack() -> None:
    code = (
        "import sys, warroom, warroom.ingest, warroom.export, warroom.catalog; "
        "assert 'typer' not in sys.modules, 'typer'; assert 'rich' not in sys.modules, 'rich'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_installed_script_and_python_m_exit_with_the_code(tmp_path: Path) -> None:
    """The one run of each real entry point: everything else calls the CLI in-process."""
    script = Path(sys.executable).with_name("warroom")
    missing = str(tmp_path / "missing.jsonl")
    res = subprocess.run(
        [str(script), "ingest", missing, "--db", str(tmp_path / "w.duckdb")],
        capture_output=True,
        timeout=60,
    )
    assert (res.returncode, res.stdout) == (1, b""), res.stderr
    assert res.stderr.decode() == f"error: {missing}: no such file or folder\n"
    res = subprocess.run(
        [sys.executable, "-m", "warroom", "--version"], capture_output=True, timeout=60
    )
    assert (res.returncode, res.stdout, res.stderr) == (0, f"warroom {__version__}\n".encode(), b"")


def test_runs_in_process_leave_nothing_behind(tmp_path: Path, cli: Cli) -> None:
    """The cli fixture: plain stderr, and no environment, cwd or --debug carried over."""
    f = write(tmp_path / "requests.jsonl", REQ % ("r1", "u1"))
    env_db = tmp_path / "env.duckdb"
    assert cli("--debug", "ingest", str(f), env={"WARROOM_DB": str(env_db)}, cwd=tmp_path).code == 0
    assert "WARROOM_DB" not in os.environ and Path.cwd() != tmp_path
    res = cli("sources", "--db", str(tmp_path / "none.duckdb"))
    assert res == (
        1,
        b"",
        f"error: {tmp_path / 'none.duckdb'}: no such database; run `warroom ingest` or "
        "`warroom investigate` first, or name the database with --db FILE or $WARROOM_DB\n",
    )


def test_a_reader_that_goes_away_is_not_an_error(tmp_path: Path, cli: Cli) -> None:
    f = write(tmp_path / "requests.jsonl", REQ % ("r1", "u1"))
    db = str(tmp_path / "w.duckdb")
    assert cli("ingest", str(f), "--db", db).code == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "warroom", "sql", "SELECT range AS n FROM range(2000000)"]
        + ["--db", db, "-f", "csv"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == b'"n"\n'
    proc.stdout.close()  # as `| head -1` does
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == b""
    proc.stderr.close()


def test_ingest_then_sources_in_every_format(tmp_path: Path, cli: Cli) -> None:
    f = write(tmp_path / "requests.jsonl", REQ % ("r1", "u1") + "{bad\n")
    db = str(tmp_path / "w.duckdb")
    res = cli("ingest", str(f), "--db", db)
    assert res.code == 0, res.stderr
    assert res.stdout == b""  # summaries go to stderr only
    assert "1 rows loaded, 1 rejected" in res.stderr or "1 rows" in res.stderr
    out = cli("sources", "--db", db, "--format", "json")
    data = json.loads(out.stdout)
    assert [(d["kind"], d["rows_loaded"], d["rows_rejected"]) for d in data] == [("requests", 1, 1)]
    assert len(data[0]["sha256"]) == 64
    rej = cli("sources", "--rejects", "--db", db, "--format", "jsonl")
    assert json.loads(rej.stdout) == {
        "path": str(f),
        "line": 2,
        "reason": "malformed JSON",
        "raw": "{bad",
    }
    for fmt in ["csv", "markdown", "parquet"]:
        res = cli("sources", "--db", db, "--format", fmt)
        assert res.code == 0 and res.stdout, (fmt, res.stderr)


def test_db_from_environment(tmp_path: Path, cli: Cli) -> None:
    f = write(tmp_path / "requests.jsonl", REQ % ("r1", "u1"))
    env = {"WARROOM_DB": str(tmp_path / "env.duckdb")}
    assert cli("ingest", str(f), env=env).code == 0
    assert (tmp_path / "env.duckdb").exists()
    res = cli("sql", "SELECT count(*) AS n FROM requests", "--format", "csv", env=env)
    assert res.stdout.decode().splitlines() == ['"n"', "1"]


def test_sql_is_read_only(tmp_path: Path, cli: Cli) -> None:
    f = write(tmp_path / "requests.jsonl", REQ % ("r1", "u1"))
    db = str(tmp_path / "w.duckdb")
    cli("ingest", str(f), "--db", db)
    res = cli("sql", "DELETE FROM requests_all", "--db", db)
    assert res.code == 1
    assert "read-only" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = cli("sql", "SELECT count(*) AS n FROM requests_all", "--db", db, "-f", "csv")
    assert res.stdout.decode().splitlines()[1] == "1"


def test_errors_are_one_line_with_documented_exit_codes(tmp_path: Path, cli: Cli) -> None:
    res = cli("ingest", str(tmp_path / "missing.jsonl"), "--db", str(tmp_path / "w.duckdb"))
    assert res.code == 1
    assert res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr
    assert cli("ingest", "x.jsonl", "--kind", "nonsense").code == 2
    assert cli("sources", "--format", "xml").code == 2
    res = cli("sql", "SELEC 1", "--db", str(tmp_path / "w.duckdb"))
    assert res.code == 1


def test_strict_exits_3(tmp_path: Path, cli: Cli) -> None:
    f = write(tmp_path / "requests.jsonl", REQ % ("r1", "u1") + "{bad\n")
    res = cli("ingest", str(f), "--strict", "--db", str(tmp_path / "w.duckdb"))
    assert res.code == 3
    assert "--strict" in res.stderr


def test_hostile_ids_cannot_start_formulas_but_numbers_stay_numbers(
    tmp_path: Path, cli: Cli
) -> None:
    hostile = ['=HYPERLINK(\\"http://x\\")', "+1", "-2", "@SUM(A1)", "\\tx", "\\rx", "ok"]
    lines = "".join(REQ % (f"r{i}", u) for i, u in enumerate(hostile))
    f = write(tmp_path / "requests.jsonl", lines)
    db = str(tmp_path / "w.duckdb")
    assert cli("ingest", str(f), "--db", db).code == 0
    q = "SELECT user_id, status, -input_tokens AS neg FROM requests ORDER BY request_id"
    csv_out = cli("sql", q, "--db", db, "-f", "csv").stdout.decode()
    body = csv_out.split("\n")[1:]
    assert body[0].startswith("\"'=HYPERLINK")
    assert body[1] == '"\'+1",200,-10'  # the number -10 stays a number
    assert body[2] == '"\'-2",200,-10'
    assert body[3].startswith("\"'@SUM")
    assert body[4] == '"\'\tx",200,-10'
    assert body[5] == '"\'\rx",200,-10'
    assert body[6] == '"ok",200,-10'
    md = cli("sql", q, "--db", db, "-f", "markdown").stdout.decode()
    assert "| '+1 | 200 | -10 |" in md
    js = json.loads(cli("sql", q, "--db", db, "-f", "json").stdout)
    assert js[1]["user_id"] == "+1"  # JSON is data, not a spreadsheet: kept verbatim


def test_out_file_takes_format_from_extension(tmp_path: Path, cli: Cli) -> None:
    f = write(tmp_path / "requests.jsonl", REQ % ("r1", "u1"))
    db = str(tmp_path / "w.duckdb")
    cli("ingest", str(f), "--db", db)
    out = tmp_path / "s.json"
    res = cli("sources", "--db", db, "--out", str(out))
    assert res.code == 0 and res.stdout == b""
    assert json.loads(out.read_text())[0]["rows_loaded"] == 1


def test_decimals_are_exact_in_json(tmp_path: Path, cli: Cli) -> None:
    f = write(
        tmp_path / "ledger.jsonl",
        '{"entry_id":"e","ts":"2025-06-01T00:00:00Z","user_id":"u","kind":"topup",'
        '"amount":"0.100001"}\n',
    )
    db = str(tmp_path / "w.duckdb")
    cli("ingest", str(f), "--db", db)
    res = cli("sql", "SELECT amount, amount * 3 AS triple FROM ledger", "--db", db, "-f", "json")
    assert json.loads(res.stdout) == [{"amount": "0.100001", "triple": "0.300003"}]


@pytest.mark.parametrize("threads", ["0", "two", "-1"])
def test_a_bad_thread_cap_is_a_one_line_error(tmp_path: Path, cli: Cli, threads: str) -> None:
    db = str(tmp_path / "x.duckdb")
    assert cli("ingest", str(ROOT / "sample_logs" / "prices.csv"), "--db", db).code == 0
    done = cli("sources", "--db", db, env={"WARROOM_THREADS": threads})
    assert done.code == 1
    assert done.stderr.strip().splitlines() == [
        f"error: WARROOM_THREADS='{threads}': expected a whole number, 1 or more"
    ]
