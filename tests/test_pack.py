"""The query pack as a catalog: headers, loading from a checkout and a wheel, user
folders, the query commands, and golden files for every output format."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, SAMPLE, Cli
from tests.test_fixtures import charge, led, req, world
from warroom.errors import QueryError
from warroom.pack import builtin_dir, load_pack

GOLDEN = Path(__file__).parent / "golden"
EXPECTED = {
    "incident_episodes",
    "duplicate_charges",
    "billing_mismatch",
    "unbilled_requests",
    "abuse_false_positives",
    "abuse_penalty_charges",
    "wrongful_rejections",
    "negative_balance_topups",
    "spent_banked_resets",
    "balance_chain_breaks",
    "ledger_conflicts",
    "price_conflicts",
    "coverage_gaps",
    "consumption_anomalies",
    "incident_window",
    "timeline",
}

#: detections the sample logs have no rows for
CLEAN_IN_SAMPLES = {"price_conflicts"}


def test_the_pack_has_every_detection_of_the_contract() -> None:
    pack = load_pack()
    assert set(pack.queries) == EXPECTED
    assert builtin_dir() == ROOT / "queries"  # editable install: the checkout's folder


def _assert_portable(name: str, sql: str) -> None:
    sql = re.sub(r"--[^\n]*", "", sql.lower())  # the portable-SQL rules of DESIGN.md §6
    for forbidden in (
        r"read_json",
        r"read_csv",
        r"read_parquet",
        r"\bqualify\b",
        r"\basof\b",
        r"\bpivot\b",
        r"date_diff",
        r"epoch_ms",
        r"union by name",
        r"\blist_",
        r"\bhash\(",
        r"\bweek\(",
        r"at time zone",
        r"within group",
        r"\barg_(max|min)\b",
        r"\bmaterialized\b",
        r"\blateral\b",
    ):
        assert not re.search(forbidden, sql), (name, forbidden)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_query_has_a_complete_header_and_is_in_the_readme(name: str) -> None:
    q = load_pack().get(name)
    assert q.title and len(q.description) > 40
    assert q.severity in ("info", "low", "medium", "high", "critical")
    _assert_portable(name, q.sql)
    assert f"`{name}`" in (ROOT / "README.md").read_text()


def test_shared_relations_are_portable_and_explained() -> None:
    for s in load_pack().shared:
        _assert_portable(s.name, s.sql)
        assert s.sql.lstrip().startswith("--"), f"{s.name}: say what it is in a comment first"


def test_a_query_builds_only_the_shared_relations_it_reads() -> None:
    pack = load_pack()
    # duplicate_charges reads charge_attribution, which reads the duplicates, the
    # restrictions (which read the data span) and the expected charges (which read
    # the users' currencies and the prices)
    assert pack.needs(pack.get("duplicate_charges").sql) == [
        "data_span",
        "user_currency",
        "price_intervals",
        "expected_charges",
        "abuse_restrictions",
        "charge_duplicates",
        "charge_attribution",
    ]
    assert pack.needs(pack.get("ledger_conflicts").sql) == []
    assert pack.needs("SELECT * FROM balance_timeline") == [
        "data_span",
        "user_currency",
        "price_intervals",
        "expected_charges",
        "abuse_restrictions",
        "charge_duplicates",
        "charge_attribution",
        "excess_moves",
        "balance_timeline",
    ]
    assert pack.needs("-- user_currency in a comment only\nSELECT 1") == []


def test_a_group_step_sits_in_the_pack_after_its_inputs() -> None:
    # served_rejections is computed in Python from rejection_candidates, group by group
    pack = load_pack()
    names = [s.name for s in pack.shared]
    assert names.index("served_rejections") == names.index("rejection_candidates") + 1
    needed = pack.needs(pack.get("wrongful_rejections").sql)
    assert needed[-2:] == ["rejection_candidates", "served_rejections"]
    step = next(s for s in pack.shared if s.name == "served_rejections")
    assert step.step is not None and step.path.name == "served.py"


def test_the_served_pass_takes_429s_in_order_and_charges_the_wrongful_ones() -> None:
    from decimal import Decimal as D

    import pyarrow as pa

    from warroom.served import served_rejections

    money = pa.decimal128(38, 6)
    group = pa.table(
        {
            "cf_balance": pa.array([D("0.003"), D("0.003"), D("0.003"), None], money),
            "estimated_cost": pa.array([D("0.002"), None, D("0.002"), None], money),
            "kind": ["quota", "quota", "abuse", "abuse"],
        }
    )
    out = served_rejections(group).to_pydict()
    # 0.003 -> wrongful, costs 0.002 -> 0.001: wrongful, no estimate (0) -> 0.001 -> wrongful
    assert out["served_cf_balance"] == [D("0.003"), D("0.001"), D("0.001"), None]
    assert out["wrongful"] == [True, True, True, True]  # the last: no ledger
    assert out["charged_cost"] == [D("0.002"), D(0), D("0.002"), D(0)]
    assert served_rejections(group.slice(0, 0)).num_rows == 0


@pytest.mark.slow  # repeats a whole run to compare: make slow runs it
def test_every_query_runs_on_the_sample_logs(tmp_path: Path, cli: Cli) -> None:
    from warroom import db
    from warroom.detect import detect, run_one
    from warroom.ingest import ingest

    path = tmp_path / "s.duckdb"
    con = db.connect(path)
    ingest(con, [SAMPLE])
    pack = load_pack()
    detect(con, pack)  # the shared relations as tables, and the findings
    for name in sorted(EXPECTED):
        rows = run_one(con, pack, name, {})
        # the generator writes one price per (model, currency, effective_from): its
        # conflicts are pinned by tests/cases/price_conflicts.yml instead
        assert rows.num_rows > 0 or name in CLEAN_IN_SAMPLES, name
    con.close()
    # and one through the command line, as a user runs it
    res = cli("run", "duplicate_charges", "--db", str(path), "-f", "jsonl")
    assert res.code == 0 and res.stdout.count(b"\n") > 100, res.stderr


@pytest.mark.slow  # builds a wheel: in `make check`
def test_pack_loads_from_a_built_wheel(tmp_path: Path) -> None:
    # build from a clean copy: a stale build/ folder in the checkout must not leak in
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "build",
            "*.egg-info",
            "*.duckdb*",
            "data",
            "__pycache__",
            ".pytest_cache",
            ".hypothesis",
            "warroom-out",
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next((tmp_path / "dist").glob("warroom-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"warroom/queries/{n}.sql" for n in EXPECTED} <= set(names)
    assert any(n.startswith("warroom/queries/shared/") for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import warroom.pack as q; p = q.load_pack(); "
        "print(q.builtin_dir()); print(len(p.queries), len(p.shared))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    ).stdout.split()
    assert out[0] == str(site / "warroom" / "queries")
    assert int(out[1]) == len(EXPECTED) and int(out[2]) >= 5
    # the built-in import profiles ship as package data too
    assert "warroom/profiles/defs/litellm.toml" in names
    code = (
        "from warroom import profiles as p; print(*[p.builtin(n).name for n in p.builtin_names()])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    ).stdout.split()
    assert out == ["lago", "litellm", "openai-usage", "openmeter", "stripe", "stripe-meter"]


def test_user_queries_from_a_folder_and_the_environment(tmp_path: Path, cli: Cli) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "big_spenders.sql").write_text(
        "-- title: Big spenders\n-- description: users whose charges add up to more than a "
        "threshold, for a quick look\n-- severity: info\n-- findings: no\n"
        "-- param: threshold DECIMAL 0.001 the total above which a user is listed\n"
        "SELECT user_id, sum(-amount) AS charged FROM ledger WHERE kind = 'charge' "
        "GROUP BY user_id HAVING sum(-amount) > $threshold ORDER BY user_id\n"
    )
    con = world(
        tmp_path,
        [req("r1", "2025-06-10T10:00:00Z")],
        [
            led("g", "2025-06-10T09:00:00Z", "grant", "1"),
            charge("e1", "2025-06-10T10:00:01Z", "r1"),
        ],
    )
    con.close()
    db = str(tmp_path / "w.duckdb")
    res = cli("run", "big_spenders", "--queries-dir", str(mine), "--db", db, "-f", "csv")
    assert res.stdout.decode().splitlines() == ['"user_id","charged"', '"u1",0.002000']
    res = cli(
        "run",
        "big_spenders",
        "-p",
        "threshold=1",
        "--db",
        db,
        "-f",
        "csv",
        env={"WARROOM_QUERIES": str(mine)},
    )
    assert res.stdout.decode().splitlines() == ['"user_id","charged"']
    res = cli("queries", "-f", "csv", env={"WARROOM_QUERIES": str(mine)})
    assert "big_spenders" in res.stdout.decode()
    res = cli("run", "big_spenders", "-p", "nope=1", "--queries-dir", str(mine), "--db", db)
    assert res.code == 1 and "has no parameter nope" in res.stderr
    res = cli("run", "no_such_query", "--db", db)
    assert res.code == 1 and "unknown query" in res.stderr


@pytest.mark.parametrize(
    "text, message",
    [
        ("SELECT 1", "lacks '-- title"),
        ("-- title: t\n-- description: d\n-- severity: urgent\nSELECT 1", "severity 'urgent'"),
        ("-- title: t\n-- description: d\n-- severity: low\nSELECT $x", "undeclared parameter"),
        (
            "-- title: t\n-- description: d\n-- severity: low\n-- param: x FLOAT 1\nSELECT $x",
            "parameter type FLOAT",
        ),
    ],
)
def test_bad_user_query_headers_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "bad.sql").write_text(text)
    with pytest.raises(QueryError, match=re.escape(message)):
        load_pack([tmp_path])


_DETECTION = (
    "-- title: t\n-- description: d\n-- severity: low\n{uses}"
    "SELECT 'x' AS detector, user_id, currency, ts, request_id, entry_id, amount, detail "
    "FROM {source}\n"
)


@pytest.mark.parametrize(
    "files, message",
    [
        (
            {"a": ("-- uses: nothing_here\n", "ledger")},
            "'-- uses: nothing_here' names no detection",
        ),
        (
            {"a": ("-- uses: b\n", "b"), "b": ("-- uses: a\n", "a")},
            "detections use each other in a cycle: a -> b -> a",
        ),
    ],
)
def test_detections_that_use_others_are_checked(
    tmp_path: Path, files: dict[str, tuple[str, str]], message: str
) -> None:
    for name, (uses, source) in files.items():
        (tmp_path / f"{name}.sql").write_text(_DETECTION.format(uses=uses, source=source))
    pack = load_pack([tmp_path])
    with pytest.raises(QueryError, match=re.escape(message)):
        pack.detections()


def test_a_detection_reads_the_whole_of_the_one_it_uses(tmp_path: Path) -> None:
    """--since bounds spent_banked_resets' own rows, not the wrongful 429s it reads:
    the 429 at 11:00 is before --since, the banked reset at 11:30 after it."""
    from warroom.detect import detect, run_one

    con = world(
        tmp_path,
        [
            req("r1", "2025-06-10T10:00:00Z", plan="plus"),
            req("x", "2025-06-10T11:00:00Z", status=429, error="usage_limit_reached", plan="plus"),
        ],
        [
            led("q", "2025-06-10T09:00:00Z", "reset", None, currency="units", balance_after="4"),
            charge("e1", "2025-06-10T10:00:01Z", "r1", "-4", currency="units"),
            led(
                "b",
                "2025-06-10T11:30:00Z",
                "reset",
                None,
                currency="units",
                balance_after="4",
                initiated_by="user",
            ),
        ],
    )
    pack = load_pack()
    since = "2025-06-10T11:15:00Z"
    rows = run_one(con, pack, "spent_banked_resets", {}, since=since).to_pylist()
    assert [(r["entry_id"], r["request_id"]) for r in rows] == [("b", "x")]
    detect(con, pack, since=since)
    found = con.execute("SELECT detector, entry_id FROM findings ORDER BY 1").fetchall()
    assert found == [("spent_banked_resets", "b")]


def test_detect_stores_findings_and_fails_on_severity(tmp_path: Path, cli: Cli) -> None:
    con = world(
        tmp_path,
        [req("r1", "2025-06-10T10:00:00Z")],
        [
            led("g", "2025-06-10T09:00:00Z", "grant", "1"),
            charge("e1", "2025-06-10T10:00:01Z", "r1"),
            charge("e2", "2025-06-10T10:00:02Z", "r1"),
        ],
    )
    con.close()
    db = str(tmp_path / "w.duckdb")
    res = cli("detect", "--db", db, "--fail-on", "high")
    assert res.code == 5 and res.stdout == b""
    assert "duplicate_charges" in res.stderr
    assert cli("detect", "--db", db, "--fail-on", "critical").code == 0
    res = cli("sql", "SELECT detector, entry_id, amount FROM findings", "--db", db, "-f", "csv")
    assert res.stdout.decode().splitlines()[1:] == ['"duplicate_charges","e2",0.002000']


def test_warroom_profile_writes_duckdbs_profile_of_each_step(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    con = world(
        tmp_path,
        [req("r1", "2025-06-10T10:00:00Z")],
        [
            led("g", "2025-06-10T09:00:00Z", "grant", "1"),
            charge("e1", "2025-06-10T10:00:01Z", "r1"),
        ],
    )
    con.close()
    profiles = tmp_path / "profiles"
    monkeypatch.setenv("WARROOM_PROFILE", str(profiles))
    assert cli("detect", "--db", str(tmp_path / "w.duckdb")).code == 0
    pack = load_pack()
    sql_steps = {s.name for s in pack.shared if s.step is None}
    detections = {q.name for q in pack.detections()}
    written = {p.stem for p in profiles.glob("*.json")}
    # every SQL step and detection (and the episodes, which detect reads for the id)
    assert sql_steps | detections <= written <= sql_steps | set(pack.queries)
    # the statement and the operators DuckDB ran for it (the layout is DuckDB's own)
    text = json.dumps(json.loads((profiles / "charge_attribution.json").read_text()))
    assert "CREATE OR REPLACE TEMP TABLE charge_attribution AS" in text
    assert "HASH_JOIN" in text and "timing" in text
    # and without it, nothing is written
    monkeypatch.delenv("WARROOM_PROFILE")
    shutil.rmtree(profiles)
    assert cli("detect", "--db", str(tmp_path / "w.duckdb")).code == 0
    assert not profiles.exists()


# ----------------------------------------------------------------------------- golden files


def _golden_world(tmp_path: Path) -> str:
    hostile = "=cmd|' /C calc'!A0"
    con = world(
        tmp_path,
        [
            req("r1", "2025-06-10T10:00:00Z", user=hostile),
            req("r2", "2025-06-10T10:00:00.25Z", user="u|pipe"),
        ],
        [
            led("g1", "2025-06-10T09:00:00Z", "grant", "1", user=hostile),
            led("g2", "2025-06-10T09:00:00Z", "grant", "1", user="u|pipe"),
            charge("e1", "2025-06-10T10:00:01Z", "r1", user=hostile),
            charge("e2", "2025-06-10T10:00:02.5Z", "r1", user=hostile),
            charge("e3", "2025-06-10T10:00:01Z", "r2", user="u|pipe"),
            charge("e4", "2025-06-10T10:00:03Z", "r2", "-0.0035", user="u|pipe"),
        ],
    )
    # the files as a user in tmp_path named them: the golden `origin` (file:line) is stable
    con.execute("UPDATE sources SET path = replace(path, ?, '')", [f"{tmp_path}/"])
    con.close()
    return str(tmp_path / "w.duckdb")


@pytest.mark.parametrize(
    "fmt, ext",
    [("csv", "csv"), ("json", "json"), ("jsonl", "jsonl"), ("markdown", "md"), ("table", "txt")],
)
def test_golden_output_formats(tmp_path: Path, fmt: str, ext: str, cli: Cli) -> None:
    db = _golden_world(tmp_path)
    res = cli(
        "run",
        "duplicate_charges",
        "--db",
        db,
        "--format",
        fmt,
        env={"COLUMNS": "160", "TERM": "dumb"},
    )
    assert res.code == 0, res.stderr
    golden = GOLDEN / f"duplicate_charges.{ext}"
    if os.environ.get("WARROOM_REGEN_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_bytes(res.stdout)
    assert res.stdout == golden.read_bytes()


def test_golden_parquet_keeps_exact_types(tmp_path: Path, cli: Cli) -> None:
    db = _golden_world(tmp_path)
    out = tmp_path / "d.parquet"
    assert cli("run", "duplicate_charges", "--db", db, "--out", str(out)).code == 0
    table = pq.read_table(out)
    assert str(table.schema.field("amount").type) == "decimal128(38, 6)"
    assert str(table.schema.field("ts").type) == "timestamp[us]"
    rows = json.loads((GOLDEN / "duplicate_charges.json").read_text())
    assert [str(a) for a in table.column("amount").to_pylist()] == [r["amount"] for r in rows]
