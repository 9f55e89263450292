"""The post-incident report: its numbers, its manifest, determinism, escaping, and
that the HTML really renders (headless Chromium), plus `investigate` end to end.

One small generated world serves the whole module: `investigate` runs on it once
through the CLI, and the in-process tests read the database it leaves.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import re
import struct
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
from typer.testing import CliRunner

from tests.conftest import Cli, chromium, need_chromium, run_cli, write
from warroom import db
from warroom.cli import app
from warroom.errors import UsageError
from warroom.generate import generate
from warroom.impact import Policy, impact
from warroom.ingest import ingest
from warroom.pack import load_pack
from warroom.report import (
    Report,
    build_report,
    credit_text,
    md_escape,
    render_html,
    render_markdown,
)

WHEN = datetime(2025, 7, 1, 9, 30, 0)
EPOCH = "1751362200"  # 2025-07-01T09:30:00Z, for the CLI runs


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A generated incident, investigated once through the CLI."""
    root = tmp_path_factory.mktemp("world")
    logs = root / "logs"
    generate(logs, users=24, days=7, seed=1)
    out = root / "out"
    res = run_cli("investigate", str(logs), "--out-dir", str(out), env={"SOURCE_DATE_EPOCH": EPOCH})
    return {
        "root": root,
        "logs": logs,
        "out": out,
        "db": out / "warroom.duckdb",
        "run": res,
        "truth": orjson.loads((logs / "_truth" / "summary.json").read_bytes()),
    }


@pytest.fixture(scope="module")
def con(world: dict[str, Any]) -> Iterator[duckdb.DuckDBPyConnection]:
    c = db.connect(world["db"], read_only=True)
    yield c
    c.close()


@pytest.fixture(scope="module")
def report(con: duckdb.DuckDBPyConnection) -> Report:
    return build_report(con, load_pack(), Policy(), generated_at=WHEN)


@pytest.fixture(scope="module")
def markdown(report: Report) -> str:
    return render_markdown(report)


@pytest.fixture(scope="module")
def page(report: Report) -> str:
    return render_html(report)


def _md_section(md: str, heading: str) -> list[list[str]]:
    """The body rows of the first table after ``heading``, cells unescaped."""
    lines = md.splitlines()
    start = lines.index(heading)
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
            rows.append([re.sub(r"\\(.)", r"\1", c.strip()) for c in cells])
        elif rows:
            break
    return rows[2:]  # past the header and the rule


# --------------------------------------------------------------------------- investigate


def test_investigate_writes_the_bundle_and_keeps_stdout_empty(world: dict[str, Any]) -> None:
    res, out = world["run"], world["out"]
    assert res.code == 0, res.stderr
    assert res.stdout == b""
    for name in ("report.md", "report.html", "affected-users.csv", "warroom.duckdb"):
        assert (out / name).is_file(), name
    err = res.stderr
    assert "estimated window per fault (UTC):" in err
    assert re.search(r"duplicate_charges\s+2025-06-0\dT\d\d:\d\d:\d\dZ -> ", err)
    assert "users affected:" in err and "usd:" in err
    assert str(out / "report.html") in err and str(out / "affected-users.csv") in err
    # the hours a log is missing are said, from the generator's billing outage
    gaps = [
        orjson.loads(line)
        for line in (world["logs"] / "_truth" / "findings.jsonl").read_bytes().splitlines()
        if b'"coverage_gaps"' in line
    ]
    assert gaps, "the generated world has its billing outage"
    assert f"coverage gaps (a log is missing, not the users): {len(gaps)} hour(s)" in err
    for g in gaps:
        assert f"  {g['ts'][:19]}Z  {g['detail']}" in err


@pytest.mark.slow  # repeats a whole run to compare: make slow runs it
def test_investigate_again_skips_loaded_files_and_gives_the_same_files(
    world: dict[str, Any],
    cli: Cli,
) -> None:
    out = world["out"]
    before = {n: (out / n).read_bytes() for n in ("report.md", "report.html", "affected-users.csv")}
    res = cli(
        "investigate", str(world["logs"]), "--out-dir", str(out), env={"SOURCE_DATE_EPOCH": EPOCH}
    )
    assert res.code == 0, res.stderr
    assert res.stdout == b""
    assert "skipped" in res.stderr and "0 rows loaded" in res.stderr
    for name, data in before.items():
        assert (out / name).read_bytes() == data, name


def test_report_command_reproduces_investigate(
    world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # typer's runner keeps the library's exception, for the last assertion
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    runner = CliRunner()
    res = runner.invoke(app, ["report", "--db", str(world["db"])])
    assert res.exit_code == 0, res.output
    assert res.stdout_bytes == (world["out"] / "report.md").read_bytes()
    target = tmp_path / "r.html"
    res = runner.invoke(app, ["report", "--db", str(world["db"]), "--out", str(target)])
    assert res.exit_code == 0 and res.stdout_bytes == b"", res.output
    assert target.read_bytes() == (world["out"] / "report.html").read_bytes()
    res = runner.invoke(app, ["report", "--db", str(world["db"]), "--out", str(tmp_path / "r.pdf")])
    assert isinstance(res.exception, UsageError) and ".md, .html or .txt" in str(res.exception)
    assert res.exception.exit_code == 2


# --------------------------------------------------------------------------- numbers


def test_owed_per_currency_is_the_sum_of_the_impact_table(
    world: dict[str, Any], report: Report, markdown: str
) -> None:
    # impact computed on its own connection, as `warroom impact` would
    c = db.connect(world["db"], read_only=True)
    try:
        rows = impact(c, load_pack(), Policy()).to_pylist()
    finally:
        c.close()
    sums: dict[str, list[Decimal]] = {}
    for r in rows:
        acc = sums.setdefault(r["currency"], [Decimal(0)] * 4)
        acc[0] += r["credit_amount"]
        acc[1] += r["balance_credit"]
        acc[2] += r["topup_reimbursement"]
        acc[3] += r["compensation"]
    table = {r[0]: r for r in _md_section(markdown, "### Owed per currency")}
    assert set(table) == set(sums)
    for cur, (credit, to_balance, to_card, compensation) in sums.items():
        assert table[cur][4] == credit_text(credit, cur)
        assert Decimal(table[cur][4]) == credit  # exact: trimmed zeros only
        assert Decimal(table[cur][5]) == to_balance
        assert Decimal(table[cur][6]) == to_card
        assert Decimal(table[cur][7]) == compensation
        # the credit is given once, split between balance and card
        assert to_balance + to_card == credit
        assert Decimal(table[cur][8]) == credit + compensation
    assert table["usd"][4] == format(sums["usd"][0].quantize(Decimal("0.01")), "f")
    # the refund list the bundle wrote adds up to the same amounts
    exported: dict[str, Decimal] = {}
    text = (world["out"] / "affected-users.csv").read_text()
    for r in csv.DictReader(io.StringIO(text)):
        exported[r["currency"]] = exported.get(r["currency"], Decimal(0)) + Decimal(
            r["credit_amount"]
        )
    assert exported == {c: s[0] for c, s in sums.items()}
    assert not re.search(r"\d\.\d+e[-+]?\d", markdown)  # no float ever printed


def test_windows_come_from_incident_window_and_bracket_the_injected_fault(
    report: Report, markdown: str, world: dict[str, Any]
) -> None:
    windows = {w["fault"]: w for w in report.windows.to_pylist()}
    dup = windows["duplicate_charges"]
    injected = world["truth"]["injected"]["duplicate_deductions"]
    start = datetime.fromisoformat(injected["from"].rstrip("Z"))
    until = datetime.fromisoformat(injected["until"].rstrip("Z"))
    assert start <= dup["window_start"] <= dup["window_end"] < until
    rows = {r[0]: r for r in _md_section(markdown, "### Estimated incident window per fault")}
    assert rows["duplicate_charges"][2].startswith(dup["window_start"].strftime("%Y-%m-%dT%H:%M"))
    assert int(rows["duplicate_charges"][5].replace(",", "")) == dup["rows"]
    # the hourly timeline adds up to each fault's rows
    per_fault: dict[str, int] = {}
    for t in report.timeline.to_pylist():
        per_fault[t["fault"]] = per_fault.get(t["fault"], 0) + t["rows"]
    assert per_fault == {f: w["rows"] for f, w in windows.items()}


def test_manifest_has_every_input_and_query_hash(
    con: duckdb.DuckDBPyConnection, report: Report, markdown: str
) -> None:
    sources = con.sql("SELECT path, sha256 FROM sources ORDER BY source_id").fetchall()
    assert len(sources) == 5
    listed = {r[0]: r[3] for r in _md_section(markdown, "### Input files")}
    assert listed == dict(sources)
    for path, sha in sources:
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == sha
    assert [(s["path"], s["sha256"]) for s in report.manifest["sources"]] == sources
    pack = load_pack()
    files = {r[0]: r[2] for r in _md_section(markdown, "### Query files")}
    for q in pack.queries.values():
        assert files[q.path.name] == q.sha256 == hashlib.sha256(q.path.read_bytes()).hexdigest()
    for s in pack.shared:
        assert files[f"shared/{s.path.name}"] == s.sha256
    method = {r[0]: r for r in _md_section(markdown, "## Methodology")}
    assert set(method) == set(pack.queries)
    assert method["duplicate_charges"][2] == "high"
    # the whole description, not only its first header line
    assert "never a duplicate" in method["duplicate_charges"][3]
    policy = {r[0]: r[1] for r in _md_section(markdown, "### Policy as used")}
    # the incident is named from the data: date and hash of the largest episode
    assert re.fullmatch(r"2025-\d\d-\d\d-[0-9a-f]{6}", report.incident_id)
    assert policy["incident.id"] == report.incident_id and policy["goodwill_percent"] == "0"
    expected = dataclasses.replace(Policy(), incident_id=report.incident_id)
    assert report.manifest["policy"] == expected.as_dict()


# --------------------------------------------------------------------------- determinism


@pytest.mark.slow  # repeats a whole run to compare: make slow runs it
def test_same_data_and_policy_give_byte_identical_documents(
    world: dict[str, Any], markdown: str, page: str
) -> None:
    c = db.connect(world["db"], read_only=True)
    try:
        again = build_report(c, load_pack(), Policy(), generated_at=WHEN)
    finally:
        c.close()
    assert render_markdown(again) == markdown
    assert render_html(again) == page
    later = dataclasses.replace(again, generated_at=datetime(2026, 1, 2, 3, 4, 5))
    for old, new in ((markdown, render_markdown(later)), (page, render_html(later))):
        diff = [(a, b) for a, b in zip(old.splitlines(), new.splitlines(), strict=True) if a != b]
        assert len(diff) == 1 and "Generated at: 2026-01-02T03:04:05Z" in diff[0][1]


# --------------------------------------------------------------------------- escaping

HOSTILE = "<script>alert(1)</script>|x_*$a$*"


def _hostile_db(tmp_path: Path) -> Path:
    req = (
        '{"ts":"2025-06-01T10:00:00Z","request_id":"r1","user_id":%s,"plan":"pay|<i>",'
        '"model":"m","status":200,"input_tokens":1000,"output_tokens":100}\n'
    )
    charge = (
        '{"entry_id":"%s","ts":"2025-06-01T10:00:0%dZ","user_id":%s,"kind":"charge",'
        '"amount":"-1.25","currency":"usd","request_id":"r1"}\n'
    )
    uid = orjson.dumps(HOSTILE).decode()
    logs = tmp_path / "logs"
    write(logs / "requests.jsonl", req % uid)
    write(
        logs / "ledger-<b>|1.jsonl",
        '{"entry_id":"t0","ts":"2025-06-01T09:00:00Z",'
        f'"user_id":{uid},"kind":"topup","amount":"10","currency":"usd"}}\n'
        + charge % ("e1", 1, uid)
        + charge % ("e2", 2, uid),
    )
    write(
        logs / "prices.csv",
        "model,currency,input_per_mtok,cached_per_mtok,output_per_mtok,"
        "effective_from\nm,usd,1000,1000,2500,2025-01-01T00:00:00Z\n",
    )
    path = tmp_path / "h.duckdb"
    c = db.connect(path)
    try:
        ingest(c, [logs])
    finally:
        c.close()
    return path


def test_hostile_user_ids_and_file_names_are_escaped(tmp_path: Path) -> None:
    c = db.connect(_hostile_db(tmp_path), read_only=True)
    try:
        rep = build_report(c, load_pack(), Policy(), generated_at=WHEN)
    finally:
        c.close()
    assert HOSTILE in rep.impact.column("user_id").to_pylist()
    md, page = render_markdown(rep), render_html(rep)
    # Markdown: no HTML gets through, and a "|" never splits a table cell
    assert not re.search(r"(?<!\\)<", md), "an unescaped < could open an HTML tag"
    assert md_escape(HOSTILE) in md
    assert md_escape(HOSTILE) == r"\<script\>alert(1)\</script\>\|x\_\*$a$\*"
    lines = md.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|---") or line.startswith("|--"):
            width = len(re.split(r"(?<!\\)\|", lines[i - 1]))
            for row in lines[i + 1 :]:
                if not row.startswith("|"):
                    break
                assert len(re.split(r"(?<!\\)\|", row)) == width, row
    top = _md_section(md, "## Top affected users")
    assert top[0][0] == HOSTILE and top[0][3] == "1.25"
    # HTML: escaped everywhere, tables, charts and headings alike
    assert "<script" not in page.lower()
    text = page.replace("<wbr>", "")  # break opportunities, not characters
    assert "&lt;script&gt;alert(1)&lt;/script&gt;|x_*$a$*" in text
    assert "ledger-&lt;b&gt;|1.jsonl" in text and "<b>" not in page
    assert page.count("<svg") == 3


def test_a_report_on_an_empty_database_says_so(tmp_path: Path) -> None:
    db.connect(tmp_path / "e.duckdb").close()
    c = db.connect(tmp_path / "e.duckdb", read_only=True)
    try:
        rep = build_report(c, load_pack(), Policy(), generated_at=WHEN)
    finally:
        c.close()
    md, page = render_markdown(rep), render_html(rep)
    assert "No erroneous rows were found." in md and "No file was loaded." in md
    assert "No user is owed anything under this policy." in page
    assert "<svg" not in page


# --------------------------------------------------------------------------- the HTML page


def test_html_is_one_self_contained_printable_file(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == 3  # timeline, credits by plan, top users
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", page, re.I)
    assert not re.search(r"""url\(\s*["']?\s*(https?:|//)""", page, re.I)
    assert "@import" not in page and "<script" not in page and "<link" not in page
    assert "@media print" in page
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "element ids must be unique across the charts"


@pytest.mark.slow  # a whole investigation or a second process: make slow runs it
def test_html_renders_in_headless_chromium(world: dict[str, Any], tmp_path: Path) -> None:
    need_chromium()
    html_file = world["out"] / "report.html"
    png = tmp_path / "report.png"
    shot = chromium(
        f"--screenshot={png}", "--window-size=1280,2000", html_file.resolve().as_uri(), tmp=tmp_path
    )
    assert shot.returncode == 0, shot.stderr.decode(errors="replace")[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 2000)
    assert len(data) > 50_000, "a blank page compresses to almost nothing"
    dom = chromium("--dump-dom", html_file.resolve().as_uri(), tmp=tmp_path)
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
    text = dom.stdout.decode()
    assert text.count("<svg") == 3
    assert '<h2 id="happened">What happened</h2>' in text
    assert '<h3 id="summary">Summary</h3>' in text
    assert "Owed per currency" in text and "Estimated incident window per fault" in text
    assert "duplicate_charges" in text
