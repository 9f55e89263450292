"""Hostile values and statements against the outputs (issue 11, items 1-6).

Cases as data, one harness each: what ``warroom sql`` refuses, and what every
output format makes of a hostile value (machine formats keep it exactly, human
formats show it safely).
"""

from __future__ import annotations

import io
import json
import re
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from rich.console import Console

from tests.conftest import Cli, write
from warroom import render
from warroom.escape import has_unsafe, html_escape, md_escape
from warroom.export import Format, write_csv, write_markdown
from warroom.export import write as write_format
from warroom.report.blocks import Table
from warroom.report.html import CELL_LIMIT, _table_html
from warroom.report.markdown import _markdown_table

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


# --------------------------------------------------------------------------- values

ESC_OSC52 = "\x1b]52;c;aGk=\x07"  # sets the clipboard
CLEAR = "\x1b[2J\x1b[H"
RLO = "u\u202e00.5-"  # reads "u-5.00" reversed
#: (id, hostile value, what a human-facing output must show in its place)
HOSTILE = [
    ("osc52", ESC_OSC52, r"\x1b]52;c;aGk=\x07"),
    ("clear", CLEAR, r"\x1b[2J\x1b[H"),
    ("c1-csi", "a\x9b31mb", r"a\x9b31mb"),
    ("nul", "a\x00b", r"a\x00b"),
    ("newline", "a\nforged line", r"a\x0aforged line"),
    ("rlo", RLO, r"u\u202e00.5-"),
    ("lri-pdi", "\u2066x\u2069", r"\u2066x\u2069"),
    ("lrm-zwsp", "a\u200eb\u200bc", r"a\u200eb\u200bc"),
    ("bom", "\ufeffu1", r"\ufeffu1"),
]


def _sql_of(value: str) -> str:
    """A DuckDB expression that builds ``value`` without putting its bytes in argv."""
    return " || ".join(f"chr({ord(c)})" for c in value)


@pytest.mark.parametrize(("value", "shown"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_human_outputs_show_controls_and_bidi_as_escapes(
    value: str, shown: str, small_db: str, cli: Cli
) -> None:
    q = f"SELECT {_sql_of(value)} AS v, 1.50::DECIMAL(10, 2) AS amount"
    for fmt in ["table", "markdown"]:
        res = cli("sql", q, "--db", small_db, "-f", fmt)
        assert res.code == 0, res.stderr
        out = res.stdout.decode()
        assert not has_unsafe(out.replace("\n", "")), (fmt, out)
        assert (shown if fmt == "table" else md_escape(value)) in out
    # an error message carries the value too (an unknown table named by it)
    res = cli("sql", f'SELECT * FROM "{value}"', "--db", small_db)
    assert res.code == 1 and len(res.stderr.strip().splitlines()) == 1
    assert not has_unsafe(res.stderr.strip())  # (DuckDB writes a NUL as \\0 itself)


def test_machine_outputs_keep_the_exact_value(small_db: str, cli: Cli) -> None:
    values = [h[1] for h in HOSTILE]
    q = " UNION ALL ".join(f"SELECT {i} AS i, {_sql_of(v)} AS v" for i, v in enumerate(values))
    q = f"SELECT * FROM ({q}) ORDER BY i"
    js = json.loads(cli("sql", q, "--db", small_db, "-f", "json").stdout)
    assert [r["v"] for r in js] == values
    jl = cli("sql", q, "--db", small_db, "-f", "jsonl").stdout.decode().splitlines()
    assert [json.loads(line)["v"] for line in jl] == values
    raw = cli("sql", q, "--db", small_db, "-f", "parquet").stdout
    assert pq.read_table(io.BytesIO(raw)).column("v").to_pylist() == values
    csv_rows = pacsv.read_csv(io.BytesIO(cli("sql", q, "--db", small_db, "-f", "csv").stdout))
    assert [v.removeprefix("'") for v in csv_rows.column("v").to_pylist()] == values


# --------------------------------------------------------------------------- rich markup


def test_markup_in_a_path_or_value_is_shown_not_parsed(tmp_path: Path, cli: Cli) -> None:
    src = write(tmp_path / "in[/x]" / "requests[/red].jsonl", REQ % ("r1", "[/x][credit]"))
    db = str(tmp_path / "in[/x]" / "w[red].duckdb")
    res = cli("ingest", str(src), "--db", db)
    assert res.code == 0, res.stderr
    assert "requests[/red].jsonl" in res.stderr and "Traceback" not in res.stderr
    res = cli("sql", 'SELECT user_id AS "[bold]u" FROM requests', "--db", db, "-f", "table")
    assert res.code == 0 and "[/x][credit]" in res.stdout.decode()
    assert "[bold]u" in res.stdout.decode()
    res = cli("sql", 'SELECT * FROM "[credit]"', "--db", db)
    assert res.code == 1 and "[credit]" in res.stderr
    res = cli("sql", "SELECT 1", "--db", str(tmp_path / "[/x]missing.duckdb"))
    assert res.code == 1 and "[/x]missing.duckdb" in res.stderr, res.stderr


def test_unknown_policy_section_is_named(tmp_path: Path, small_db: str, cli: Cli) -> None:
    policy = write(tmp_path / "p.toml", "[credit]\nx = 1\n")
    res = cli("impact", "--policy", str(policy), "--db", small_db)
    assert res.code != 0 and "[credit]" in res.stderr, res.stderr


# --------------------------------------------------------------------------- markdown

MARKDOWN = [
    "<img src=https://evil.example/x.png>",
    "[click](javascript:alert(1))",
    "<script>alert(1)</script>",
    "a|b",
    "**bold** _em_ `code`",
    "line\nbreak<br>",
    "&lt;entity",
]


@pytest.mark.parametrize("value", MARKDOWN)
def test_markdown_format_escapes_like_report_md(value: str, small_db: str, cli: Cli) -> None:
    res = cli("sql", f"SELECT {_sql_of(value)} AS v", "--db", small_db, "-f", "markdown")
    assert res.code == 0, res.stderr
    body = res.stdout.decode().splitlines()
    assert len(body) == 3 and body[2] == f"| {md_escape(value)} |"
    assert "<" not in body[2].replace("\\<", "")


# --------------------------------------------------------------------------- formulas

#: OWASP CSV injection: a formula sign, also after blanks, line breaks, NUL or
#: invisible characters, in ASCII or full width; a leading control of any kind
FORMULAS = [
    "=1+1",
    "+1",
    "-1",
    "@SUM(A1)",
    " =1",
    "   +1",
    "\n=1",
    "\r\n@x",
    "\x00=1",
    "\t=1",
    "\u3000=1",
    "\u200b=1",
    "\ufeff=1",
    "\uff1d1+1",
    "\uff0b1",
    "\uff0d1",
    "\uff20SUM(A1)",
    " \uff1d1",
    "\t",
    "\rx",
    "\x00",
    "\x1b[2J",
]
SAFE = ["ok", " ok", "a=1", "u-1", "1-2", "", "\u00e9=1"]


@pytest.mark.parametrize("value", FORMULAS + SAFE)
def test_spreadsheet_formulas_are_defused_in_csv_and_markdown(value: str) -> None:
    table = pa.table({"v": [value], "n": pa.array([-1], pa.int64())})
    buf = io.BytesIO()
    write_csv(table, buf)
    cell = pacsv.read_csv(io.BytesIO(buf.getvalue())).column("v").to_pylist()[0] or ""
    assert cell == ("'" + value if value in FORMULAS else value)
    assert buf.getvalue().endswith(b",-1\n")  # numbers stay numbers
    buf = io.BytesIO()
    write_markdown(table, buf)
    row = buf.getvalue().decode().splitlines()[2]
    assert row.startswith("| '" if value in FORMULAS else "| ")


# --------------------------------------------------------------------------- HTML


def test_a_huge_id_is_cut_in_html_with_the_whole_value_in_its_title() -> None:
    huge = "u" * 19_990 + "\u202e<b>&"
    table = Table(
        columns=["user_id", "amount"],
        rows=[[huge, "1.00"]],
        numeric=[False, True],
        wrap=[False, False],
        nowrap=[False, False],
        ids=[True, False],
    )
    out = _table_html(table)
    cell = re.search(r"<td class=\"id\">(.*?)</td>", out)
    assert cell is not None
    assert f'title="{html_escape(huge)}"' in cell.group(1)
    shown = re.sub(r"<[^>]*>", "", cell.group(1).split(">", 1)[1])
    assert len(shown) <= CELL_LIMIT + 1 and shown.endswith("\u2026")
    assert "\u202e" not in out and "<b>" not in out


# --------------------------------------------------------------------------- the property

#: ids made of what hurts: controls, bidi and invisible format characters, markup
#: brackets, formula signs, table pipes, HTML, full-width signs, and any other text
HURTFUL = st.sampled_from(
    list("\x00\x07\x1b\x7f\x9b\n\r\t\u061c\u200b\u200e\u202a\u202e\u2066\u2069\ufeff")
    + list("[]/=+-@|<>&`*_~\\\"'")
    + ["\uff1d", "\uff0b", "[/x]", "[bold]", "<img src=x>"]
)
IDS = st.lists(st.one_of(HURTFUL, st.text(max_size=3)), max_size=12).map("".join)
_OURS = re.compile(r"</?(?:td|tr|th|span|wbr)\b[^>]*>")


@settings(max_examples=30, deadline=None)
@example(ids=["\x85"])  # NEL: a line end to str.splitlines, not to JSON Lines
@given(ids=st.lists(IDS, min_size=1, max_size=3))
def test_any_id_through_every_format(ids: list[str]) -> None:
    table = pa.table(
        {"user_id": ids, "amount": pa.array([Decimal("-1.50")] * len(ids), pa.decimal128(18, 6))}
    )
    # machine formats keep the exact value
    out = {fmt: io.BytesIO() for fmt in Format if fmt is not Format.table}
    for fmt, buf in out.items():
        write_format(table, fmt, buf)
    assert [r["user_id"] for r in json.loads(out[Format.json].getvalue())] == ids
    # JSON Lines are split on \n only: U+0085 or U+2028 inside a value is not a line end
    lines = out[Format.jsonl].getvalue().split(b"\n")[:-1]
    assert [json.loads(line)["user_id"] for line in lines] == ids
    assert (
        pq.read_table(io.BytesIO(out[Format.parquet].getvalue())).column("user_id").to_pylist()
        == ids
    )
    csv = pacsv.read_csv(
        io.BytesIO(out[Format.csv].getvalue()),
        convert_options=pacsv.ConvertOptions(
            column_types={"user_id": pa.string()}, strings_can_be_null=False
        ),
    )
    got = csv.column("user_id").to_pylist()
    # only the formula prefix may differ (test_spreadsheet_formulas... pins where)
    assert all(v in (i, "'" + i) for v, i in zip(got, ids, strict=True)), got
    # human formats: nothing unsafe, nothing that opens markup or HTML, one line per row
    md = out[Format.markdown].getvalue().decode().splitlines()
    assert len(md) == 2 + len(ids)
    for line in md:
        assert not has_unsafe(line)
        assert re.search(r"(?<!\\)[<>]", line) is None
        assert len(re.findall(r"(?<!\\)\|", re.sub(r"\\\\", "", line))) == 3
    console = Console(file=io.StringIO(), width=60, color_system=None)
    saved_out, saved_err = render.stdout_console, render.stderr
    render.stdout_console, render.stderr = (lambda: console), console
    try:
        render.draw_table(table, title=ids[0])
        render.draw_summary(table, title=ids[0])
        render.note(ids[0], (ids[-1], "yellow"))
        render.error(ids[0])
    finally:
        render.stdout_console, render.stderr = saved_out, saved_err
    assert not has_unsafe(console.file.getvalue().replace("\n", ""))  # type: ignore[attr-defined]
    report_rows = [[i, "1.50"] for i in ids]
    html = _table_html(
        Table(
            ["user_id", "amount"],
            report_rows,
            [False, True],
            [False] * 2,
            [False] * 2,
            [True, False],
        )
    )
    text = _OURS.sub("", html.split("<tbody>", 1)[1].rsplit("</tbody>", 1)[0])
    assert not has_unsafe(text) and "<" not in text and ">" not in text
    report_md = _markdown_table(Table(["user_id", "amount"], report_rows, [False, True]))
    for line in report_md.splitlines():
        assert not has_unsafe(line) and re.search(r"(?<!\\)[<>]", line) is None
