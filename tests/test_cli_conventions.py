"""Issue 12 part 2: the command line behaves like the tools its users already know.

One test (or a few) per point of the issue, each through the in-process ``cli``.
"""

from __future__ import annotations

import itertools
import json
import shutil
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from tests.conftest import SAMPLE, Cli, write

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
    req = f"r-{user}"
    write(folder / "requests.jsonl", REQ % (req, user))
    write(
        folder / "ledger.jsonl",
        LEDGER % (f"e1-{user}", user, req) + LEDGER % (f"e2-{user}", user, req),
    )
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


@pytest.mark.slow  # a whole investigation or a second process: make slow runs it
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
    # the same logs copied elsewhere: the same bytes are the same files
    shutil.copytree(old, tmp_path / "copy")
    res = cli("investigate", "copy", "--out-dir", str(out), cwd=tmp_path)
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
    made = Path("warroom-out") / "warroom.duckdb"
    # what `investigate` leaves (loaded here by ingest: the same database, cheaper)
    logs = str(_world(tmp_path / "logs"))
    (tmp_path / "warroom-out").mkdir()
    assert cli("ingest", logs, "--db", str(tmp_path / made), cwd=tmp_path).code == 0
    res = cli("impact", cwd=tmp_path)
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


# 9. the policy: help names only what ships; `warroom policy --default` to start from

FULL_POLICY = """\
[incident]
id = "2025-06-07-duplicate-deductions"
start = "2025-06-07T16:00:00Z"
end = "2025-06-08T04:00:00.5Z"

[credits]
exclude_plans = ["enterprise", "Free Tier"]
duplicate_excess = true
failed_request_charges = false
abuse_penalty_excess = true
overbilled = false
topup_reimbursement = false
goodwill_percent = "12.5"
minimum_credit = { usd = "1.00", "credits x" = 3 }
per_wrongful_429 = { usd = "0.05" }
per_restricted_hour = { eur = "0.50" }
grant_banked_resets = 2

[rounding]
units = 0
jpy = 1
"""


def test_policy_default_prints_a_file_that_loads_back_to_the_default(
    tmp_path: Path, cli: Cli
) -> None:
    from dataclasses import replace

    from warroom.impact.policy import Policy, load_policy

    res = cli("policy", "--default")
    assert res.code == 0 and res.stderr == ""
    f = write(tmp_path / "policy.toml", res.stdout)
    assert replace(load_policy(f), source="default") == Policy()
    assert res.stdout.startswith(b"# warroom credit policy (the built-in default)\n")
    assert b"\n[credits]\nexclude_plans = []\nduplicate_excess = true\n" in res.stdout
    assert cli("policy").stdout == res.stdout  # the default is the default
    assert cli("policy", "--default", "--policy", str(f)).code == 2


def test_policy_prints_a_file_as_it_is_read(tmp_path: Path, cli: Cli) -> None:
    from dataclasses import replace

    from warroom.impact.policy import load_policy

    given = write(tmp_path / "mine.toml", FULL_POLICY)
    res = cli("policy", "--policy", str(given))
    assert res.code == 0, res.stderr
    again = write(tmp_path / "again.toml", res.stdout)
    assert replace(load_policy(again), source=str(given)) == load_policy(given)
    assert b'minimum_credit = { "credits x" = "3", usd = "1.00" }' in res.stdout
    assert b'end = "2025-06-08T04:00:00.500000Z"' in res.stdout


@pytest.mark.parametrize("command", ["impact", "export", "report", "investigate"])
def test_policy_help_names_only_what_ships(command: str, cli: Cli) -> None:
    text = " ".join(cli(command, "--help").stdout.decode().split())
    assert "DESIGN" not in text
    assert "the built-in policy (`warroom policy --default` prints it" in text


# 11. formats: one set of extensions, refused when unknown; no binary on a terminal


def _tiny_db(tmp_path: Path, cli: Cli) -> str:
    db = str(tmp_path / "w.duckdb")
    assert cli("ingest", str(_world(tmp_path / "logs")), "--db", db).code == 0
    return db


def test_an_unknown_out_extension_is_refused(tmp_path: Path, cli: Cli) -> None:
    db = _tiny_db(tmp_path, cli)
    for name, args in itertools.product(
        ["rows.xlsx", "rows.txt", "rows"], [["sources"], ["export", "affected-users"]]
    ):
        res = cli(*args, "--db", db, "--out", str(tmp_path / name))
        assert res.code == 2 and res.stdout == b""
        assert res.stderr.startswith(f"error: --out {tmp_path / name}: no format writes ")
        assert res.stderr.endswith(
            "; name it .csv, .json, .jsonl, .md, .ndjson, .parquet, or give --format\n"
        )
        assert not (tmp_path / name).exists()
    # an explicit format still writes any name
    assert cli("sources", "--db", db, "--out", str(tmp_path / "rows.xlsx"), "-f", "csv").code == 0


def test_markdown_by_extension_and_by_format_agree(tmp_path: Path, cli: Cli) -> None:
    db = _tiny_db(tmp_path, cli)
    res = cli("export", "affected-users", "--db", db, "-f", "markdown")
    assert res.code == 0, res.stderr
    assert res.stdout.startswith(b"| user_id | plan | currency | action |")
    assert cli("export", "affected-users", "--db", db, "--out", str(tmp_path / "x.md")).code == 0
    assert (tmp_path / "x.md").read_bytes() == res.stdout


def test_parquet_is_not_written_to_a_terminal(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from warroom import render

    db = _tiny_db(tmp_path, cli)
    assert cli("sources", "--db", db, "-f", "parquet").stdout[:4] == b"PAR1"  # redirected
    monkeypatch.setattr(render, "stdout_is_terminal", lambda: True)
    res = cli("sources", "--db", db, "-f", "parquet")
    assert (res.code, res.stdout) == (2, b"")
    assert res.stderr == (
        "error: --format parquet is binary: redirect stdout to a file (> rows.parquet) "
        "or give --out FILE\n"
    )
    assert (
        cli("sources", "--db", db, "-f", "parquet", "--out", str(tmp_path / "s.parquet")).code == 0
    )


def test_run_shows_file_line_to_people_and_ids_to_machines(tmp_path: Path, cli: Cli) -> None:
    db = _tiny_db(tmp_path, cli)
    ledger = tmp_path / "logs" / "ledger.jsonl"
    machine = cli("run", "duplicate_charges", "--db", db, "-f", "csv")
    header, row = machine.stdout.decode().splitlines()
    assert header.endswith('"charged","source_id","line"') and row.endswith(",2")
    people = cli("run", "duplicate_charges", "--db", db, "-f", "markdown").stdout.decode()
    assert people.splitlines()[0].endswith("| charged | origin |")
    assert people.splitlines()[2].endswith(f"| 0.500000 | {ledger}:2 |")
    assert "source_id" not in people


# 12. a table too wide for the terminal: one row per block


WIDE = (
    "SELECT 'u000011' AS user_id, 'pro' AS plan, 'usd' AS currency, 'credit' AS action, "
    "0.74 AS credit_amount, 0.74 AS balance_credit, 0.00 AS topup_reimbursement, "
    "0.00 AS compensation, 0 AS banked_resets, 4 AS wrongful_429s, 0 AS restricted_minutes, "
    "'cr_1da8c96b2167cb22406ee38b' AS credit_id, "
    "'2 duplicate charges; 4 wrongful 429s' AS reasons"
)


def test_a_wide_table_is_drawn_one_row_per_block(tmp_path: Path, cli: Cli) -> None:
    db = _tiny_db(tmp_path, cli)
    res = cli("sql", f"{WIDE} UNION ALL {WIDE}", "--db", db, "-f", "table", env={"COLUMNS": "120"})
    assert res.code == 0, res.stderr
    block = (
        "            user_id = u000011\n"
        "               plan = pro\n"
        "           currency = usd\n"
        "             action = credit\n"
        "      credit_amount = 0.74\n"
        "     balance_credit = 0.74\n"
        "topup_reimbursement = 0.00\n"
        "       compensation = 0.00\n"
        "      banked_resets = 0\n"
        "      wrongful_429s = 4\n"
        " restricted_minutes = 0\n"
        "          credit_id = cr_1da8c96b2167cb22406ee38b\n"
        "            reasons = 2 duplicate charges; 4 wrongful 429s\n"
    )
    assert res.stdout.decode() == block + "\n" + block
    assert res.stderr == (
        "13 columns do not fit in 120 characters: one row per block; "
        "--format csv or markdown for a table\n"
    )
    # a table that fits stays a table
    res = cli("sql", "SELECT 1 AS a, 'x' AS b", "--db", db, "-f", "table", env={"COLUMNS": "120"})
    assert "┃ a ┃ b ┃" in res.stdout.decode() and res.stderr == ""


# 13. warroom user: no such user, a window, a summary


def test_user_nobody_is_an_error_naming_the_closest_ids(tmp_path: Path, cli: Cli) -> None:
    db = str(tmp_path / "w.duckdb")
    for user in ("u000011", "u000012", "acme-7"):
        assert cli("ingest", str(_world(tmp_path / user, user=user)), "--db", db).code == 0
    res = cli("user", "u00011", "--db", db)
    assert (res.code, res.stdout) == (1, b"")
    assert res.stderr == "error: no such user: 'u00011' (closest ids: u000011, u000012, acme-7)\n"
    res = cli("user", "nobody", "--db", db)
    assert res.code == 1 and res.stderr.startswith("error: no such user: 'nobody' (closest ids: ")
    # one request charged twice (0.50 usd each): the second is a duplicate, 0.50 owed
    res = cli("user", "u000011", "--db", db, "-f", "csv")
    assert (
        res.code == 0 and len(res.stdout.splitlines()) == 5
    )  # header, request, 2 charges, finding
    assert res.stderr == (
        "u000011: 1 requests, 0 429s (0 wrongful); excess 0.50 usd; "
        "credit 0.50 usd (credit) (whole incident)\n"
    )
    res = cli("user", "u000011", "--db", db, "-f", "csv", "--since", "2025-06-01T10:00:01Z")
    assert len(res.stdout.splitlines()) == 4  # the request at 10:00:00 is before the window
    assert res.stderr.startswith(
        "u000011 from 2025-06-01T10:00:01Z until the end: 0 requests, 0 429s (0 wrongful); "
        "excess 0.50 usd; credit 0.50 usd"
    )


def _exact(amount: Decimal, places: int = 2) -> str:
    whole, _, frac = format(amount.normalize(), "f").partition(".")
    return f"{whole}.{frac.ljust(places, '0')}"


def _sample_counts(user: str, start: datetime, end: datetime) -> tuple[int, int, int, Decimal]:
    """Requests and 429s of ``user`` in the sample's request log, and its wrongful 429s
    and erroneous excess in the generator's truth, with ts in [start, end)."""

    def inside(ts: str) -> bool:
        return start <= datetime.fromisoformat(ts.replace("Z", "+00:00")) < end

    rejected = {
        json.loads(line)["line"]
        for line in (SAMPLE / "_truth" / "rejects.jsonl").open()
        if json.loads(line)["file"] == "requests.jsonl"
    }
    lines = (SAMPLE / "requests.jsonl").read_text().split("\n")
    reqs = [json.loads(text) for i, text in enumerate(lines, 1) if text and i not in rejected]
    mine = [r for r in reqs if r["user_id"] == user and inside(r["ts"])]
    truth = [json.loads(line) for line in (SAMPLE / "_truth" / "findings.jsonl").open()]
    found = [f for f in truth if f["user_id"] == user and inside(f["ts"])]
    excess_kinds = {"duplicate_charges", "abuse_penalty_charges"}
    excess = sum(
        (
            Decimal(f["amount"])
            for f in found
            if f["detector"] in excess_kinds
            or (f["detector"] == "billing_mismatch"
                and f["detail"] in ("charged_failed_request", "overbilled"))
        ),
        Decimal(0),
    )  # fmt: skip
    wrongful = sum(1 for f in found if f["detector"] == "wrongful_rejections")
    return len(mine), sum(1 for r in mine if r["status"] == 429), wrongful, excess


@pytest.mark.slow
def test_user_summary_line_matches_the_sample_truth(tmp_path: Path, cli: Cli) -> None:
    db = str(tmp_path / "w.duckdb")
    assert cli("ingest", str(SAMPLE), "--db", db).code == 0
    user = "u000011"
    owed = next(
        json.loads(line)
        for line in (SAMPLE / "_truth" / "users.jsonl").open()
        if json.loads(line)["user_id"] == user
    )
    ever = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    n, n429, wrongful, excess = _sample_counts(user, *ever)
    assert wrongful == owed["wrongful_429s"] == 4
    res = cli("user", user, "--db", db, "-f", "csv")
    assert res.code == 0, res.stderr
    assert len(res.stdout.splitlines()) > n  # the timeline itself, on stdout
    assert res.stderr == (
        f"{user}: {n:,} requests, {n429} 429s ({wrongful} wrongful); excess {_exact(excess)} usd; "
        f"credit {owed['credit_amount']} usd ({owed['action']}) (whole incident)\n"
    )
    since, until = "2025-06-06T00:00:00Z", "2025-06-08T00:00:00Z"
    window = datetime(2025, 6, 6, tzinfo=UTC), datetime(2025, 6, 8, tzinfo=UTC)
    n, n429, wrongful, excess = _sample_counts(user, *window)
    res = cli("user", user, "--db", db, "-f", "csv", "--since", since, "--until", until)
    assert res.code == 0, res.stderr
    stamps = [line.split(",")[0].strip('"') for line in res.stdout.decode().splitlines()[1:]]
    assert stamps and all(since <= s < until for s in stamps)
    assert res.stderr == (
        f"{user} from {since} until {until}: {n:,} requests, {n429} 429s ({wrongful} wrongful); "
        f"excess {_exact(excess)} usd; credit {owed['credit_amount']} usd ({owed['action']}) "
        "(whole incident)\n"
    )
