"""Issue 12 part 2: the command line behaves like the tools its users already know.

One test (or a few) per point of the issue, each through the in-process ``cli``.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tests.conftest import Cli, write

REQ = (
    '{"ts":"2025-06-01T10:00:00Z","request_id":"%s","user_id":"%s","status":200,'
    '"input_tokens":10,"cached_tokens":2,"output_tokens":5}\n'
)
LEDGER = (
    '{"ts":"2025-06-01T10:00:01Z","entry_id":"%s","user_id":"%s","kind":"charge",'
    '"amount":"-0.50","currency":"usd","request_id":"%s"}\n'
)


def _world(folder: Path, user: str = "u1") -> Path:
    """A tiny incident: one request, charged twice."""
    write(folder / "requests.jsonl", REQ % ("r1", user))
    write(folder / "ledger.jsonl", LEDGER % ("e1", user, "r1") + LEDGER % ("e2", user, "r1"))
    return folder


def _files(db: Path) -> list[str]:
    with duckdb.connect(str(db), read_only=True) as con:
        return [str(r[0]) for r in con.execute("SELECT path FROM sources ORDER BY path").fetchall()]


# 7. investigate works in its own database, and never mixes two incidents silently


def test_investigate_ignores_warroom_db_and_works_in_its_out_dir(tmp_path: Path, cli: Cli) -> None:
    old = _world(tmp_path / "old")
    new = _world(tmp_path / "new", user="u2")
    env_db = tmp_path / "env.duckdb"
    assert cli("ingest", str(old), env={"WARROOM_DB": str(env_db)}).code == 0
    res = cli(
        "investigate", str(new), "--out-dir", str(tmp_path / "out"), env={"WARROOM_DB": str(env_db)}
    )
    assert res.code == 0, res.stderr
    assert "$WARROOM_DB is not used by investigate" in res.stderr
    assert _files(env_db) == [str(old / "ledger.jsonl"), str(old / "requests.jsonl")]
    assert _files(tmp_path / "out" / "warroom.duckdb") == [
        str(new / "ledger.jsonl"),
        str(new / "requests.jsonl"),
    ]


def test_investigate_refuses_to_add_to_a_database_holding_other_files(
    tmp_path: Path, cli: Cli
) -> None:
    old = _world(tmp_path / "old")
    new = _world(tmp_path / "new", user="u2")
    out = tmp_path / "out"
    assert cli("investigate", str(old), "--out-dir", str(out)).code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    res = cli("investigate", str(new), "--out-dir", str(out))
    assert res.code == 1
    assert res.stdout == b""
    assert res.stderr == (
        f"error: {out / 'warroom.duckdb'} already holds other files ({old / 'ledger.jsonl'} "
        "and 1 more); give another --out-dir or --db for this incident, or --append to add "
        "these logs to it\n"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written
    # the same for a database named with --db, before or after the command
    for args in (["--db", str(out / "warroom.duckdb"), "investigate"], ["investigate"]):
        extra = [] if "--db" in args else ["--db", str(out / "warroom.duckdb")]
        res = cli(*args, str(new), "--out-dir", str(tmp_path / "elsewhere"), *extra)
        assert res.code == 1 and "already holds other files" in res.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_investigate_reruns_on_the_same_logs_and_appends_when_told(
    tmp_path: Path, cli: Cli
) -> None:
    old = _world(tmp_path / "old")
    new = _world(tmp_path / "new", user="u2")
    out = tmp_path / "out"
    assert cli("investigate", str(old), "--out-dir", str(out)).code == 0
    # the same logs again (logs that grow are re-run the same way): no refusal
    res = cli("investigate", str(old), "--out-dir", str(out))
    assert res.code == 0 and "skipped" in res.stderr
    res = cli("investigate", str(new), "--out-dir", str(out), "--append")
    assert res.code == 0, res.stderr
    assert len(_files(out / "warroom.duckdb")) == 4


# 8. --db before the command, as --debug is


def test_db_before_the_command(tmp_path: Path, cli: Cli) -> None:
    f = write(tmp_path / "requests.jsonl", REQ % ("r1", "u1"))
    db = tmp_path / "x.duckdb"
    assert cli("--db", str(db), "ingest", str(f)).code == 0
    res = cli("--db", str(db), "sql", "SELECT count(*) AS n FROM requests", "-f", "csv")
    assert (res.code, res.stdout) == (0, b'"n"\n1\n')
    # the command's own --db still works, and wins over the one before the command
    # (and over $WARROOM_DB): it is said on stderr
    other = tmp_path / "other.duckdb"
    assert cli("ingest", str(f), "--db", str(other)).code == 0
    res = cli(
        "--db", str(db), "sources", "-f", "csv", "--db", str(other),
        env={"WARROOM_DB": str(tmp_path / "env.duckdb")},
    )  # fmt: skip
    assert res.code == 0
    assert f"--db given twice: using the command's own, {other}" in res.stderr
    # the one before the command wins over $WARROOM_DB
    res = cli("--db", str(db), "sources", "-f", "csv", env={"WARROOM_DB": str(other)})
    assert res.code == 0 and res.stderr == ""
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE sources SET path = 'in-x'")
    res = cli("--db", str(db), "sources", "-f", "csv", env={"WARROOM_DB": str(other)})
    assert b"in-x" in res.stdout


# 10. help, typos, and where the database is


def test_help_shows_value_names_and_no_bool(cli: Cli) -> None:
    res = cli("ingest", "--help", env={"COLUMNS": "100"})
    text = res.stdout.decode()
    assert "<bool>" not in text and "<str>" not in text and "<path>" not in text
    assert "Usage: warroom ingest [OPTIONS] PATHS..." in text
    assert "  --force " in text  # a flag: no value
    assert "  --db FILE " in text
    assert "  --kind [requests|ledger|abuse|prices]" in text
    top = cli("--help").stdout.decode()
    assert "--db FILE" in top and "<bool>" not in top


@pytest.mark.parametrize(
    ("typo", "hint"),
    [
        ("--bogus", None),
        ("--fromat", "--format"),
        ("--pol", "--policy"),
        ("--incid", "--incident-id"),
    ],
)
def test_an_unknown_option_suggests_only_a_close_one(typo: str, hint: str | None, cli: Cli) -> None:
    res = cli("impact", typo, "x")
    assert res.code == 2
    last = res.stderr.strip().splitlines()[-1]
    if hint is None:
        assert last == f"Error: No such option: {typo}"
    else:
        assert last == f"Error: No such option: {typo} (Possible options: {hint})"


def test_a_missing_database_points_at_the_one_investigate_wrote(tmp_path: Path, cli: Cli) -> None:
    res = cli("impact", cwd=tmp_path)
    assert res.code == 1
    assert res.stderr == (
        "error: warroom.duckdb: no such database; run `warroom ingest` or `warroom investigate` "
        "first, or name the database with --db FILE or $WARROOM_DB\n"
    )
    assert cli("investigate", str(_world(tmp_path / "logs")), cwd=tmp_path).code == 0
    res = cli("impact", cwd=tmp_path)
    made = Path("warroom-out") / "warroom.duckdb"
    assert res.code == 1
    assert res.stderr == (
        f"error: warroom.duckdb: no such database; `warroom investigate` wrote {made}: add "
        f"--db {made} (before or after the command) or set WARROOM_DB={made}\n"
    )
    res = cli("--db", str(made), "impact", "-f", "csv", cwd=tmp_path)
    assert res.code == 0 and b"u1" in res.stdout


# 14. --strict: what was refused is not reported as "0 rejected"


def test_strict_summary_does_not_say_zero_rejected(tmp_path: Path, cli: Cli) -> None:
    f = write(tmp_path / "requests.jsonl", REQ % ("r1", "u1") + "{bad\n" * 5)
    res = cli("ingest", str(f), "--strict", "--db", str(tmp_path / "w.duckdb"))
    assert res.code == 3
    assert res.stderr.splitlines() == [
        f"refused {f} (requests, json): 5 rejected, so none of its 1 good rows loaded (--strict)",
        "nothing loaded; 1 file(s) refused under --strict (5 rejected rows)",
        f"error: --strict: nothing loaded from {f} (5 rejected)",
    ]
