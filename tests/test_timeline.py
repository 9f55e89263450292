"""``warroom timeline`` and ``warroom impact --by``: on a small generated world, against
a hand-written SQL and against the impact rows they sum (hand-computed hours are in
tests/cases/timeline.yml)."""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from tests.conftest import SAMPLE, Cli, run_cli
from warroom import db
from warroom.detect import detect
from warroom.generate import generate
from warroom.impact import Policy, impact
from warroom.impact.groups import BY, COUNT_COLUMNS, DETECTOR_COLUMNS, MONEY_COLUMNS, impact_by
from warroom.ingest import ingest
from warroom.pack import load_pack
from warroom.report.timeline_chart import timeline_chart
from warroom.timeline import TimelineOptions, parse_compare, timeline


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated incident (4 days, 16 users, three currencies), detected once."""
    root = tmp_path_factory.mktemp("timeline")
    generate(root / "logs", users=16, days=4, seed=3)
    with db.connect(root / "w.duckdb") as con:
        ingest(con, [root / "logs"])
        detect(con, load_pack())
    return root / "w.duckdb"


@pytest.fixture
def con(world: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    c = db.connect(world, read_only=True)
    yield c
    c.close()


#: the same counts, written another way: each hour of the span and each currency, with
#: every count a correlated subquery over the rows of that hour, and of the hour a day
#: earlier (DuckDB's own generate_series makes the hours: a test need not be portable)
HAND_SQL = """
WITH req AS (
    SELECT r.request_id, date_trunc('hour', r.ts) AS h, r.status, r.error_code,
           (SELECT min(e.currency) FROM expected_charges e WHERE e.request_id = r.request_id)
               AS cur,
           r.request_id IN (SELECT request_id FROM served_rejections WHERE wrongful) AS wrongful
    FROM requests r
),
ch AS (SELECT date_trunc('hour', ts) AS h, currency AS cur, charged, excess
       FROM charge_attribution),
span AS (SELECT min(h) AS lo, max(h) AS hi FROM (SELECT h FROM req UNION ALL SELECT h FROM ch)),
hours AS (SELECT unnest(generate_series(lo, hi, INTERVAL 1 HOUR)) AS h FROM span),
curs AS (SELECT cur FROM req UNION SELECT cur FROM ch),
grid AS (SELECT h, cur, h - INTERVAL 1 DAY AS p FROM hours, curs)
SELECT
    g.h, g.cur, g.p,
    (SELECT count(*) FROM req WHERE req.h = g.h AND req.cur = g.cur),
    (SELECT count(*) FROM req WHERE req.h = g.p AND req.cur = g.cur),
    (SELECT count(*) FROM req WHERE req.h = g.h AND req.cur = g.cur AND status = 429),
    (SELECT count(*) FROM req WHERE req.h = g.p AND req.cur = g.cur AND status = 429),
    (SELECT count(*) FROM req WHERE req.h = g.h AND req.cur = g.cur AND status = 429
        AND error_code = 'insufficient_quota'),
    (SELECT count(*) FROM req WHERE req.h = g.h AND req.cur = g.cur AND status = 429
        AND error_code = 'usage_limit_reached'),
    (SELECT count(*) FROM req WHERE req.h = g.p AND req.cur = g.cur AND status = 429
        AND error_code = 'usage_limit_reached'),
    (SELECT count(*) FROM req WHERE req.h = g.h AND req.cur = g.cur AND status = 429
        AND error_code = 'rate_limit_exceeded'),
    (SELECT count(*) FROM req WHERE req.h = g.h AND req.cur = g.cur AND status = 429
        AND error_code = 'abuse_blocked'),
    (SELECT count(*) FROM req WHERE req.h = g.h AND req.cur = g.cur AND wrongful),
    (SELECT count(*) FROM req WHERE req.h = g.p AND req.cur = g.cur AND wrongful),
    (SELECT count(*) FROM ch WHERE ch.h = g.h AND ch.cur = g.cur),
    (SELECT count(*) FROM ch WHERE ch.h = g.p AND ch.cur = g.cur),
    (SELECT coalesce(sum(charged), 0) FROM ch WHERE ch.h = g.h AND ch.cur = g.cur),
    (SELECT coalesce(sum(charged), 0) FROM ch WHERE ch.h = g.p AND ch.cur = g.cur),
    (SELECT count(*) FROM ch WHERE ch.h = g.h AND ch.cur = g.cur AND excess > 0),
    (SELECT coalesce(sum(excess), 0) FROM ch WHERE ch.h = g.h AND ch.cur = g.cur),
    (SELECT coalesce(sum(excess), 0) FROM ch WHERE ch.h = g.p AND ch.cur = g.cur)
FROM grid g
ORDER BY g.h, g.cur
"""
HAND_COLUMNS = [
    "period_start",
    "currency",
    "prev_period_start",
    "requests",
    "requests_prev",
    "http_429",
    "http_429_prev",
    "http_429_insufficient_quota",
    "http_429_usage_limit_reached",
    "http_429_usage_limit_reached_prev",
    "http_429_rate_limit_exceeded",
    "http_429_abuse_blocked",
    "wrongful_429s",
    "wrongful_429s_prev",
    "charges",
    "charges_prev",
    "charged",
    "charged_prev",
    "erroneous_charges",
    "erroneous_excess",
    "erroneous_excess_prev",
]


def test_compare_1d_equals_a_hand_written_sql(con: duckdb.DuckDBPyConnection) -> None:
    table = timeline(con, load_pack(), TimelineOptions(compare_days=parse_compare("1d")))
    # timeline built the shared relations it reads on this connection: the hand SQL reads them
    want = con.execute(HAND_SQL).fetchall()
    got = [tuple(r[c] for c in HAND_COLUMNS) for r in table.to_pylist()]
    assert len(got) == len(want) > 24 * 4 * 2
    assert got == [tuple(Decimal(v) if isinstance(v, Decimal) else v for v in r) for r in want]
    # the world is not trivial where it matters
    column = dict(zip(HAND_COLUMNS, zip(*got, strict=True), strict=True))
    assert sum(column["wrongful_429s"]) > 10 and sum(column["requests_prev"]) > 1000
    assert sum(column["erroneous_excess"]) > 0 and sum(column["erroneous_excess_prev"]) > 0


def test_the_totals_are_those_of_the_data_and_of_impact(con: duckdb.DuckDBPyConnection) -> None:
    pack = load_pack()
    rows = timeline(con, pack, TimelineOptions(every="day")).to_pylist()
    assert "requests_prev" not in rows[0] and "prev_period_start" not in rows[0]
    total = lambda c: sum(r[c] for r in rows)  # noqa: E731
    assert total("requests") == con.execute("SELECT count(*) FROM requests").fetchone()[0]  # type: ignore[index]
    assert (
        total("charges")
        == con.execute("SELECT count(*) FROM ledger WHERE kind = 'charge'").fetchone()[0]
    )  # type: ignore[index]
    assert total("http_429") == sum(
        total(c)
        for c in (
            "http_429_insufficient_quota",
            "http_429_usage_limit_reached",
            "http_429_rate_limit_exceeded",
            "http_429_abuse_blocked",
            "http_429_other",
        )
    )
    # the erroneous excess per currency is what impact owes for the four causes, and the
    # wrongful 429s are impact's
    owed: dict[str, Decimal] = defaultdict(Decimal)
    for r in impact(con, pack, Policy()).to_pylist():
        owed[r["currency"]] += sum(r[c] for c in MONEY_COLUMNS[:4])
    excess: dict[str, Decimal] = defaultdict(Decimal)
    for r in rows:
        excess[r["currency"]] += r["erroneous_excess"]
    assert {c: v for c, v in excess.items() if v} == {c: v for c, v in owed.items() if v}
    assert len(owed) == 3
    wrongful = con.execute(
        "SELECT count(*) FROM findings WHERE detector = 'wrongful_rejections'"
    ).fetchone()[0]  # type: ignore[index]
    assert total("wrongful_429s") == wrongful > 0


def test_user_plan_and_model_select_their_rows(con: duckdb.DuckDBPyConnection) -> None:
    pack = load_pack()
    user, plan, n_user = con.execute(
        "SELECT r.user_id, min(r.plan), count(*) FROM requests r GROUP BY r.user_id "
        "ORDER BY count(*) DESC, r.user_id LIMIT 1"
    ).fetchone()  # type: ignore[misc]
    mine = timeline(con, pack, TimelineOptions(user_id=user)).to_pylist()
    assert sum(r["requests"] for r in mine) == n_user
    on_plan = con.execute(
        "SELECT count(*) FROM requests WHERE user_id IN "
        "(SELECT user_id FROM requests GROUP BY user_id HAVING arg_max(plan, ts) = ?)",
        [plan],
    ).fetchone()[0]  # type: ignore[index]
    rows = timeline(con, pack, TimelineOptions(plan=plan.upper())).to_pylist()
    assert sum(r["requests"] for r in rows) == on_plan
    model = con.execute("SELECT min(model) FROM requests").fetchone()[0]  # type: ignore[index]
    n_model = con.execute("SELECT count(*) FROM requests WHERE model = ?", [model]).fetchone()[0]  # type: ignore[index]
    rows = timeline(con, pack, TimelineOptions(model=model)).to_pylist()
    assert sum(r["requests"] for r in rows) == n_model
    # --since/--until select periods by their start; an empty range is no rows
    some = timeline(
        con, pack, TimelineOptions(since="2025-06-02T05:00:00Z", until="2025-06-02T08:00:00Z")
    ).to_pylist()
    assert sorted({str(r["period_start"]) for r in some}) == [
        "2025-06-02 05:00:00",
        "2025-06-02 06:00:00",
        "2025-06-02 07:00:00",
    ]
    assert timeline(con, pack, TimelineOptions(user_id="nobody")).num_rows == 0


def test_a_week_back_and_the_days_before_the_data_are_zeros(
    con: duckdb.DuckDBPyConnection,
) -> None:
    rows = timeline(
        con, load_pack(), TimelineOptions(every="day", compare_days=parse_compare("7d"))
    ).to_pylist()
    assert {(r["period_start"] - r["prev_period_start"]).days for r in rows} == {7}
    # a 4-day world has nothing a week before any of its days
    assert all(r["requests_prev"] == 0 and r["erroneous_excess_prev"] == 0 for r in rows)


@pytest.mark.parametrize("text", ["1", "0d", "week", "-1d", "99999d", "1h"])
def test_a_bad_compare_is_a_usage_error(cli: Cli, world: Path, text: str) -> None:
    res = cli("timeline", "--db", str(world), "--compare", text)
    assert res.code == 2 and res.stdout == b""
    assert "--compare" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- formats


def _read(fmt: str, data: bytes) -> list[dict[str, Any]]:
    if fmt == "csv":
        return pacsv.read_csv(io.BytesIO(data)).to_pylist()
    if fmt == "json":
        return list(orjson.loads(data))
    if fmt == "jsonl":
        return [orjson.loads(line) for line in data.splitlines()]
    return pq.read_table(io.BytesIO(data)).to_pylist()


@pytest.fixture(scope="module")
def daily(world: Path) -> pa.Table:
    """The library's rows for ``timeline --every day --compare 1d``."""
    with db.connect(world, read_only=True) as c:
        return timeline(c, load_pack(), TimelineOptions(every="day", compare_days=1))


#: the formats every test runs; JSON Lines and Markdown (the same writers as everywhere)
#: run with the slow tests
FORMATS = [
    "csv",
    "json",
    "parquet",
    pytest.param("jsonl", marks=pytest.mark.slow),
    pytest.param("markdown", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_carries_the_same_rows(
    cli: Cli, world: Path, daily: pa.Table, fmt: str
) -> None:
    args = ("--db", str(world), "--every", "day", "--compare", "1d", "-f", fmt)
    res = cli("timeline", *args)
    assert res.code == 0, res.stderr
    want = daily
    if fmt == "markdown":
        lines = res.stdout.decode().splitlines()
        assert lines[0] == "| " + " | ".join(want.column_names) + " |"
        assert len(lines) == 2 + want.num_rows
        first = want.to_pylist()[0]
        assert f"| {first['erroneous_excess']} |" in lines[2] or str(first["charged"]) in lines[2]
        return
    got = _read(fmt, res.stdout)
    assert [list(r) for r in got][0] == want.column_names
    assert len(got) == want.num_rows
    for g, w in zip(got, want.to_pylist(), strict=True):
        # money exact in every format: the decimal text, never a float's
        assert Decimal(str(g["erroneous_excess"])) == w["erroneous_excess"]
        assert Decimal(str(g["charged_prev"])) == w["charged_prev"]
        assert g["requests"] == w["requests"] and g["wrongful_429s"] == w["wrongful_429s"]
        if fmt in ("json", "jsonl"):
            assert g["charged"] == format(w["charged"], "f")
            assert g["period_start"] == w["period_start"].strftime("%Y-%m-%dT%H:%M:%SZ")
    if fmt == "parquet":  # --out takes the format from the extension
        out = world.parent / "t.parquet"
        res = cli("timeline", "--db", str(world), "--every", "day", "--out", str(out))
        assert res.code == 0 and res.stdout == b"", res.stderr
        assert pq.read_table(out).column_names == [c for c in want.column_names if "prev" not in c]


def test_table_format_draws_on_stdout(cli: Cli, world: Path) -> None:
    res = cli(
        "timeline",
        "--db",
        str(world),
        "--by",
        "day",
        "-f",
        "table",
        "--plan",
        "payg",
        env={"COLUMNS": "400"},
    )
    assert res.code == 0, res.stderr
    text = res.stdout.decode()
    assert "timeline per day, plan payg" in text and "2025-06-02" in text


# ----------------------------------------------------------------------------- the chart


def test_chart_is_drawn_beside_the_rows(cli: Cli, world: Path, tmp_path: Path) -> None:
    chart = tmp_path / "t.png"
    res = cli("timeline", "--db", str(world), "--every", "day", "--chart", str(chart), "-f", "csv")
    assert res.code == 0, res.stderr
    assert res.stdout.startswith(b'"period_start"')  # the rows still go to stdout
    assert chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert f"wrote the chart to {chart}" in res.stderr


def test_chart_labels_are_exact(daily: pa.Table) -> None:
    text = timeline_chart(daily, "svg", every="day", title="timeline per day").decode()
    rows = daily.to_pylist()
    # labels carry exact totals: the integer counts and the decimal text of the excess
    assert f"requests (total {sum(r['requests'] for r in rows):,})" in text
    prev = sum(r["wrongful_429s_prev"] for r in rows)
    assert f"wrongful 429s, 1 day earlier (total {prev:,})" in text
    for currency in ("usd", "units"):
        owed = sum((r["erroneous_excess"] for r in rows if r["currency"] == currency), Decimal(0))
        assert owed > 0
        assert f"erroneous excess in {currency} per day: total {owed:f}" in text
    # the same table draws the same bytes
    assert timeline_chart(daily, "svg", every="day", title="timeline per day").decode() == text


def test_chart_needs_a_png_or_svg_name(cli: Cli, world: Path, tmp_path: Path) -> None:
    res = cli("timeline", "--db", str(world), "--chart", str(tmp_path / "t.pdf"))
    assert res.code == 2 and res.stdout == b"" and ".png or .svg" in res.stderr
    assert not (tmp_path / "t.pdf").exists()


# ----------------------------------------------------------------------------- impact --by


@pytest.fixture(scope="module")
def impact_rows(world: Path) -> list[dict[str, Any]]:
    with db.connect(world, read_only=True) as c:
        return impact(c, load_pack(), Policy()).to_pylist()


_KEYS = {"plan": ("plan", "currency"), "currency": ("currency",)}


@pytest.mark.parametrize("by", ["plan", "currency"])
def test_impact_by_group_sums_the_impact_rows(
    cli: Cli, world: Path, impact_rows: list[dict[str, Any]], by: str
) -> None:
    res = cli("impact", "--db", str(world), "--by", by, "-f", "json")
    assert res.code == 0, res.stderr
    got = orjson.loads(res.stdout)
    keys = _KEYS[by]
    want: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in impact_rows:
        acc = want.setdefault(tuple(r[k] for k in keys), defaultdict(Decimal, users=set()))
        acc["users"].add(r["user_id"])
        for c in (*MONEY_COLUMNS, *COUNT_COLUMNS):
            acc[c] += r[c]
    assert len(want) >= 3
    assert {tuple(g[k] for k in keys) for g in got} == set(want)
    for g in got:
        w = want[tuple(g[k] for k in keys)]
        assert g["users"] == len(w["users"])
        assert g["users"] == g["credit_users"] + g["notify_users"] + g["review_users"]
        for c in MONEY_COLUMNS:
            assert g[c] == format(w[c], "f"), c  # exact decimal text
        for c in COUNT_COLUMNS:
            assert g[c] == w[c], c


def test_impact_by_detector_sums_each_column_the_detection_reaches(
    impact_rows: list[dict[str, Any]],
) -> None:
    table = impact_by(pa.Table.from_pylist(impact_rows), "detector", Policy())
    seen = set()
    for g in table.to_pylist():
        hit = [r for r in impact_rows if r["currency"] == g["currency"] and r[g["impact_column"]]]
        total = sum(r[g["impact_column"]] for r in hit)
        assert g["users"] == len({r["user_id"] for r in hit}) > 0
        assert (g["amount"] if g["amount"] is not None else g["count"]) == total
        seen.add(g["detector"])
    assert {"duplicate_charges", "wrongful_rejections", "abuse_false_positives"} <= seen
    assert seen <= {d for d, _ in DETECTOR_COLUMNS}


def test_impact_by_plan_lists_a_plan_with_no_one_affected_and_marks_exclusions(
    world: Path, impact_rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text('[credits]\nexclude_plans = ["enterprise"]\n')
    res = run_cli(
        "impact", "--db", str(world), "--by", "plan", "--policy", str(policy), "-f", "csv"
    )
    assert res.code == 0, res.stderr
    got = pacsv.read_csv(io.BytesIO(res.stdout)).to_pylist()
    assert [g["excluded"] for g in got if g["plan"] == "enterprise"] == [True]
    assert not any(g["excluded"] for g in got if g["plan"] != "enterprise")
    # every plan in the data has a row, with 0 users where no one was affected
    affected = {r["plan"] for r in impact_rows}
    rows = [r for r in impact_rows if r["plan"] is not None]
    table = impact_by(
        pa.Table.from_pylist(rows), "plan", Policy(), plans=[*sorted(affected), "team"]
    ).to_pylist()
    team = [g for g in table if g["plan"] == "team"]
    assert len(team) == 1 and team[0]["users"] == 0 and team[0]["credit_amount"] == 0


def test_impact_by_needs_a_known_grouping(cli: Cli, world: Path) -> None:
    res = cli("impact", "--db", str(world), "--by", "user")
    assert res.code == 2 and res.stdout == b""
    assert set(BY) == {"plan", "currency", "detector"}


@pytest.mark.slow
def test_the_readme_numbers_hold_on_the_sample_logs(tmp_path: Path, cli: Cli) -> None:
    """README: the 24 h after the mass reset of 2025-06-08 12:00 beside the 24 h before."""
    db_file = str(tmp_path / "s.duckdb")
    assert cli("ingest", str(SAMPLE), "--db", db_file).code == 0
    res = cli(
        "timeline",
        "--db",
        db_file,
        "--compare",
        "1d",
        "--since",
        "2025-06-08T12:00Z",
        "--until",
        "2025-06-09T12:00Z",
        "-f",
        "json",
    )
    units = [r for r in orjson.loads(res.stdout) if r["currency"] == "units"]
    assert len(units) == 24
    assert sum(r["erroneous_charges"] for r in units) == 69
    assert sum(Decimal(r["erroneous_excess"]) for r in units) == Decimal("48.727078")
    assert sum(r["wrongful_429s"] for r in units) == 37
    assert sum(r["erroneous_charges_prev"] for r in units) == 13
    assert sum(Decimal(r["erroneous_excess_prev"]) for r in units) == Decimal("22.064567")
    assert sum(r["wrongful_429s_prev"] for r in units) == 26
    plans = {
        r["plan"]: r
        for r in orjson.loads(cli("impact", "--db", db_file, "--by", "plan", "-f", "json").stdout)
    }
    assert (plans["plus"]["users"], plans["plus"]["credit_amount"]) == (10, "70.261806")
    assert (plans["enterprise"]["users"], plans["enterprise"]["credit_amount"]) == (4, "20.800000")
    assert (plans["payg"]["users"], plans["payg"]["credit_amount"]) == (14, "3.040000")
    assert plans["payg"]["topup_reimbursement"] == "1.420000"


@pytest.mark.parametrize(
    "args, code, words",
    [
        (("--since", "yesterday"), 1, "is not a timestamp"),
        (("--every", "week"), 2, "--every"),
        (("--until", "2025-13-01"), 1, "is not a timestamp"),
    ],
)
def test_bad_options_are_one_line_errors(
    cli: Cli, world: Path, args: tuple[str, ...], code: int, words: str
) -> None:
    res = cli("timeline", "--db", str(world), *args)
    assert res.code == code and res.stdout == b"", res.stderr
    assert words in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f not in ("csv", "json")])
def test_impact_by_detector_in_every_format(
    cli: Cli, world: Path, impact_rows: list[dict[str, Any]], fmt: str
) -> None:
    want = impact_by(pa.Table.from_pylist(impact_rows), "detector", Policy())
    res = cli("impact", "--db", str(world), "--by", "detector", "-f", fmt)
    assert res.code == 0, res.stderr
    if fmt == "parquet":
        assert pq.read_table(io.BytesIO(res.stdout)).equals(want)
    elif fmt == "jsonl":
        got = [orjson.loads(line) for line in res.stdout.splitlines()]
        assert [g["amount"] for g in got] == [
            None if w is None else format(w, "f") for w in want.column("amount").to_pylist()
        ]
        assert [g["count"] for g in got] == want.column("count").to_pylist()
    else:
        lines = res.stdout.decode().splitlines()
        assert lines[0] == "| detector | impact_column | currency | users | amount | count |"
        assert len(lines) == 2 + want.num_rows
