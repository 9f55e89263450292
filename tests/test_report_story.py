"""The report leadership reads (issue 13): episodes with bracketed windows, the
failed mass reset, who was affected by plan (an excluded Enterprise with 0), what
we give back per currency and route, and the status-page draft, all against the
generator's ground truth of the report scenario.

One world serves the module: 40 users, 7 days, seed 1, the duplicate deductions
paused for 4 hours (two episodes of one fault), Enterprise spared by every fault
and excluded by the policy. Its truth (``report_scenario`` in summary.json) gives
each injected episode's first and last erroneous row and the clean comparable
rows around them; in this world the stale-price overbilling is the largest
episode (most users) and no chronic overbilling joins it.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from tests.conftest import run_cli
from tests.test_fixtures import led
from tests.test_fixtures import world as small_world
from warroom import db
from warroom.detect import detect
from warroom.episodes import Episode, rank
from warroom.generate import generate
from warroom.impact import load_policy
from warroom.ingest import expand_paths, ingest
from warroom.pack import load_pack
from warroom.report import Report, build_report, credit_text, render_markdown, summary_lines
from warroom.report.checks import mass_resets, parse_marker
from warroom.report.statuspage import render_statuspage, render_statuspage_text

WHEN = datetime(2025, 7, 1, 9, 30)
POLICY = """
[credits]
exclude_plans = ["enterprise"]

[fx]
currency = "usd"
rates = { units = "0.05", credits = "0.01" }
"""
MARKER = "2025-06-06T12:00:00Z=hotfix 1"


def _ts(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.rstrip("Z"))


def _second(text: str) -> str:
    """The truth's microsecond time as the report writes it: seconds, truncated, Z."""
    return text.split(".")[0] + "Z"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("story")
    logs = root / "logs"
    generate(logs, users=40, days=7, seed=1, dup_pause_hours=4, spared_plans=("enterprise",))
    policy = root / "policy.toml"
    policy.write_text(POLICY)
    db_file = root / "warroom.duckdb"
    with db.connect(db_file) as con:
        ingest(con, expand_paths([logs]))
        detect(con, load_pack())
        # as investigate does: the report reads the findings detect has just stored
        built = build_report(
            con,
            load_pack(),
            load_policy(policy),
            generated_at=WHEN,
            markers=(parse_marker(MARKER),),
            tz="America/Los_Angeles",
            stored_findings=True,
        )
    summary = orjson.loads((logs / "_truth" / "summary.json").read_bytes())
    findings = [
        orjson.loads(x) for x in (logs / "_truth" / "findings.jsonl").read_bytes().splitlines()
    ]
    return {
        "root": root,
        "db": db_file,
        "policy": policy,
        "report": built,
        "truth": summary,
        "findings": findings,
        "users": [
            orjson.loads(x) for x in (logs / "_truth" / "users.jsonl").read_bytes().splitlines()
        ],
    }


@pytest.fixture(scope="module")
def report(world: dict[str, Any]) -> Report:
    built: Report = world["report"]
    return built


@pytest.fixture(scope="module")
def markdown(report: Report) -> str:
    return render_markdown(report)


def _episode(report: Report, truth: dict[str, Any]) -> Episode:
    found = [
        e for e in report.episodes if e.fault == truth["fault"] and e.first == _ts(truth["first"])
    ]
    assert len(found) == 1, truth
    return found[0]


def _first_screen(md: str) -> str:
    return md[: md.index("## Status-page draft")]


# --------------------------------------------------------------------------- episodes


def test_each_injected_episode_has_the_truths_bracketed_window(
    report: Report, world: dict[str, Any]
) -> None:
    truth = world["truth"]["report_scenario"]["episodes"]
    assert set(truth) == {"duplicate_deductions_1", "duplicate_deductions_2", "stale_price_billing"}
    for t in truth.values():
        e = _episode(report, t)
        assert (e.clean_before, e.first, e.last, e.clean_after) == tuple(
            _ts(t[k]) for k in ("clean_before", "first", "last", "clean_after")
        )
    # two episodes of one fault: the pause splits the duplicate deductions
    dups = [e for e in report.episodes if e.fault == "duplicate_charges"]
    assert len(dups) == 2
    pause = world["truth"]["report_scenario"]["duplicate_pause"]
    assert dups[0].last < _ts(pause["from"]) and _ts(pause["until"]) <= max(d.first for d in dups)


def test_episode_users_rows_and_money_are_the_truths_findings(
    report: Report, world: dict[str, Any]
) -> None:
    for e in report.episodes:
        if e.fault != "duplicate_charges":
            continue
        rows = [
            f
            for f in world["findings"]
            if f["detector"] == "duplicate_charges" and e.first <= _ts(f["ts"]) <= e.last
        ]
        assert e.rows == len(rows)
        assert e.users == len({f["user_id"] for f in rows})
        assert e.amounts == {"usd": sum(Decimal(f["amount"]) for f in rows)}
        assert e.plans == ("payg",)


def test_episodes_are_ranked_users_then_rows_then_money(report: Report) -> None:
    eps = report.episodes
    assert rank(list(reversed(eps))) == eps
    keys = [(-e.users, -e.rows) for e in eps]
    assert keys == sorted(keys)
    # money breaks a tie of users and rows (a hand-made pair)
    a = Episode("x", 1, WHEN, WHEN, 3, 4, "k1", {"usd": Decimal("1")})
    b = Episode("y", 1, WHEN, WHEN, 3, 4, "k2", {"usd": Decimal("2")})
    assert rank([a, b]) == [b, a]


def test_the_incident_id_and_title_come_from_the_largest_episode(
    report: Report, markdown: str, world: dict[str, Any]
) -> None:
    largest = report.episodes[0]
    stale = world["truth"]["report_scenario"]["episodes"]["stale_price_billing"]
    assert largest.fault == "billing_mismatch:overbilled"
    assert largest.first == _ts(stale["first"])
    digest = hashlib.sha256(largest.first_row_key.encode()).hexdigest()[:6]
    assert report.incident_id == f"{largest.first:%Y-%m-%d}-{digest}"
    assert markdown.splitlines()[0] == (
        f"# Post-incident report: {report.incident_id} "
        f"(overbilled charges, {largest.first:%Y-%m-%d})"
    )


def test_the_first_screen_says_the_largest_episode_with_the_truths_brackets(
    markdown: str, world: dict[str, Any]
) -> None:
    stale = world["truth"]["report_scenario"]["episodes"]["stale_price_billing"]
    first = _first_screen(markdown)
    happened = first[first.index("## What happened") :]
    item = next(line for line in happened.splitlines() if line.startswith("1. "))
    assert item.startswith(
        f"1. Overbilled charges began between {_second(stale['clean_before'])} and "
        f"{_second(stale['first'])} and ended between {_second(stale['last'])} and "
        f"{_second(stale['clean_after'])}:"
    )
    # in the order: what happened, who, what we give back, what the logs cannot tell
    order = ["## What happened", "## Who was affected", "## What we give back", "### What the logs"]
    assert [first.index(h) for h in order] == sorted(first.index(h) for h in order)


def test_seconds_are_truncated_and_the_same_in_the_terminal_and_markdown(
    report: Report, markdown: str, world: dict[str, Any]
) -> None:
    dup1 = world["truth"]["report_scenario"]["episodes"]["duplicate_deductions_1"]
    words = (
        f"Duplicate deductions began between {_second(dup1['clean_before'])} and "
        f"{_second(dup1['first'])} and ended between {_second(dup1['last'])} and "
        f"{_second(dup1['clean_after'])}"
    )
    assert words in markdown
    assert any(words in line for line in summary_lines(report))  # investigate's terminal summary
    # (the HTML says the same: tests/test_report.py::test_html_at_1400_px_and_in_print)
    assert not re.search(r"T\d\d:\d\d:\d\d\.\d+Z", _first_screen(markdown))


# --------------------------------------------------------------------------- did the fix work


def _charges_between(world: dict[str, Any], lo: datetime, hi: datetime, cur: str | None) -> int:
    kinds = {"duplicate_charges", "abuse_penalty_charges"}
    return sum(
        1
        for f in world["findings"]
        if (
            f["detector"] in kinds
            or (
                f["detector"] == "billing_mismatch"
                and f["detail"] in ("charged_failed_request", "overbilled")
            )
        )
        and lo <= _ts(f["ts"]) < hi
        and (cur is None or f["currency"] == cur)
    )


def test_the_failed_mass_reset_gets_its_verdict(
    report: Report, markdown: str, world: dict[str, Any]
) -> None:
    at = _ts(world["truth"]["injected"]["global_quota_reset"])
    assert at is not None
    resets = [c for c in report.checks if c.kind == "mass reset"]
    assert [(c.ts, c.currency) for c in resets] == [(at, "units")]
    reset = resets[0]
    day = timedelta(hours=24)
    after = _charges_between(world, at, at + day, "units")
    before = _charges_between(world, at - day, at, "units")
    assert (reset.before, reset.after) == (before, after) and after > 0
    assert (
        reset.users
        == reset.of_users
        == world["truth"]["plans"]["plus"] + world["truth"]["plans"]["pro"]
    )
    sentence = (
        f"The drain went on after the mass reset at {at:%Y-%m-%dT%H:%M:%S}Z "
        f"(system reset of {reset.users} of {reset.of_users} units users): {after} erroneous charges"
    )
    assert sentence in _first_screen(markdown)


def test_a_marker_is_judged_the_same_way(report: Report, world: dict[str, Any]) -> None:
    (marker,) = [c for c in report.checks if c.kind == "marker"]
    at = datetime(2025, 6, 6, 12)
    assert (marker.ts, marker.label, marker.currency) == (at, "hotfix 1", None)
    day = timedelta(hours=24)
    assert marker.after == _charges_between(world, at, at + day, None)
    assert marker.before == _charges_between(world, at - day, at, None)
    assert sum(marker.hourly.values()) == marker.before + marker.after


# --------------------------------------------------------------------------- who, what we give back


def _table_after(md: str, marker: str) -> dict[str, list[str]]:
    lines = md[md.index(marker) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows: dict[str, list[str]] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def test_who_was_affected_by_plan_shows_the_excluded_enterprise_with_0(
    markdown: str, world: dict[str, Any]
) -> None:
    plans = world["truth"]["plans"]
    included = _table_after(markdown, "## Who was affected")
    excluded = _table_after(markdown, "Plans the credit policy excludes")
    assert set(included) == set(plans) - {"enterprise"}
    assert excluded == {"enterprise": [str(plans["enterprise"]), "0", "0", "0", "0"]}
    truth_users = world["users"]
    for plan, cells in included.items():
        mine = [u for u in truth_users if u["plan"] == plan]
        assert cells[:3] == [
            str(plans[plan]),
            str(len(mine)),
            str(sum(1 for u in mine if u["action"] == "credit")),
        ]


def test_what_we_give_back_per_currency_and_route_equals_the_truth(
    markdown: str, world: dict[str, Any]
) -> None:
    owed = _table_after(markdown, "### Owed per currency")
    for cur, t in world["truth"]["totals"].items():
        cells = owed[cur]
        # credits, to balances, to cards, compensation, total, banked resets
        assert [Decimal(c) for c in cells[3:8]] == [
            Decimal(t["credit_amount"]),
            Decimal(t["balance_credit"]),
            Decimal(t["topup_reimbursement"]),
            Decimal(t["compensation"]),
            Decimal(t["credit_amount"]) + Decimal(t["compensation"]),
        ]
        assert int(cells[8]) == t["banked_resets"]
    rates = {"usd": Decimal(1), "units": Decimal("0.05"), "credits": Decimal("0.01")}
    total = sum(
        (
            (Decimal(t["credit_amount"]) + Decimal(t["compensation"])) * rates[c]
            for c, t in world["truth"]["totals"].items()
        ),
        Decimal(0),
    )
    assert f"**Total to give back, in usd:** {total} usd (exact" in markdown


def test_what_the_logs_cannot_tell_sits_next_to_the_numbers(markdown: str) -> None:
    first = _first_screen(markdown)
    limits = first[first.index("### What the logs cannot tell") :]
    for term in ("Coverage gaps", "Rejected input lines", "Conflicting copies", "For review"):
        assert f"**{term}:**" in limits
    assert "**Rejected input lines:** 5 line(s)" in limits  # the generator's malformed lines


# --------------------------------------------------------------------------- status page


def test_every_figure_of_the_status_page_draft_comes_from_the_impact(
    report: Report, world: dict[str, Any]
) -> None:
    impact = report.impact.to_pylist()
    e = report.episodes[0]
    tz = ZoneInfo("America/Los_Angeles")
    allowed: set[str] = {str(e.users), str(len(report.episodes) - 1), "429"}
    allowed.add(str(len({r["user_id"] for r in impact})))
    for plan in {r["plan"] for r in impact}:
        allowed.add(str(len({r["user_id"] for r in impact if r["plan"] == plan})))
    per: dict[str, dict[str, Any]] = {}
    for r in impact:
        acc = per.setdefault(r["currency"], {"users": set(), "sums": {}, "banked": 0})
        if r["action"] == "credit":
            acc["users"].add(r["user_id"])
        for k in ("credit_amount", "balance_credit", "topup_reimbursement", "compensation"):
            acc["sums"][k] = acc["sums"].get(k, Decimal(0)) + Decimal(r[k])
        acc["banked"] += r["banked_resets"]
    for cur, acc in per.items():
        allowed |= {str(len(acc["users"])), str(acc["banked"])}
        total = acc["sums"]["credit_amount"] + acc["sums"]["compensation"]
        allowed |= {str(v.normalize()) for v in [*acc["sums"].values(), total]}
        allowed |= {credit_text(v, cur) for v in [*acc["sums"].values(), total]}
    with db.connect(world["db"], read_only=True) as con:
        codes = con.sql(
            "SELECT r.error_code, count(*), count(DISTINCT f.user_id) FROM findings f "
            "JOIN requests r USING (request_id) WHERE f.detector = 'wrongful_rejections' GROUP BY 1"
        ).fetchall()
    for _, n, users in codes:
        allowed |= {str(n), str(users)}
    for text in (render_statuspage(report), render_statuspage_text(report)):
        stripped = text.replace(report.incident_id, "ID")
        for when in (e.first, e.last):
            local = when.replace(tzinfo=UTC).astimezone(tz)
            assert f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}" in stripped
            stripped = stripped.replace(f"{local:%Y-%m-%d %H:%M:%S}", "LOCAL")
            assert f"{when:%Y-%m-%dT%H:%M:%S}Z" in stripped
            stripped = stripped.replace(f"{when:%Y-%m-%dT%H:%M:%S}Z", "UTC")
        figures = re.findall(r"(?<![\w.])\d[\d,]*(?:\.\d+)?", stripped)
        assert figures
        for f in figures:
            assert f.replace(",", "") in allowed, (f, text)
        assert "Not affected: enterprise" in text
        assert "insufficient_quota" in text or "usage_limit_reached" in text


def test_statuspage_format_and_tz_on_the_command_line(world: dict[str, Any]) -> None:
    args = ["report", "--db", str(world["db"]), "--policy", str(world["policy"])]
    out = world["root"] / "status.txt"  # .txt: the plain-text draft
    res = run_cli(*args, "--out", str(out), "--tz", "America/Los_Angeles")
    assert (res.code, res.stdout) == (0, b""), res.stderr
    text = out.read_text()
    assert text.startswith("Billing incident ") and "\n=====" in text and " PDT" in text
    bad_tz = run_cli(*args, "-f", "statuspage", "--tz", "Mars/Olympus")
    assert (bad_tz.code, bad_tz.stdout) == (2, b"") and "time zone" in bad_tz.stderr
    bad_marker = run_cli(*args, "--marker", "yesterday=fix")
    assert bad_marker.code == 2 and "--marker" in bad_marker.stderr
    assert "Traceback" not in bad_tz.stderr + bad_marker.stderr


def test_the_report_holds_the_status_page_draft(markdown: str) -> None:
    section = markdown[markdown.index("## Status-page draft") :]
    assert "What we are restoring, per currency:" in section.split("\n## ")[0]


def test_a_bad_fx_table_is_a_one_line_policy_error(tmp_path: Path) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text('[fx]\ncurrency = "usd"\nrates = { units = 0.05 }\n')
    res = run_cli("impact", "--db", str(tmp_path / "none.duckdb"), "--policy", str(bad))
    assert res.code != 0 and "[fx] rates.units" in res.stderr and "never a float" in res.stderr


# --------------------------------------------------------------------------- hand-computed


def test_a_mass_reset_is_half_of_a_quota_currencys_users_within_an_hour(tmp_path: Path) -> None:
    def reset(eid: str, ts: str, user: str, by: str = "system") -> dict[str, object]:
        return led(
            eid, ts, "reset", None, user, currency="units", balance_after="20", initiated_by=by
        )

    ledger = [
        # 4 users hold units; u5 holds usd only (not a user of the quota currency)
        *(reset(f"s{u}", "2025-06-01T00:00:00Z", f"u{u}") for u in range(1, 5)),
        led("t5", "2025-06-01T00:00:00Z", "grant", "1.00", "u5"),
        # 09:00: 1 system reset, then 1 more at 09:59:59 = 2 of 4 within the hour: mass
        reset("a1", "2025-06-02T09:00:00Z", "u1"),
        reset("a2", "2025-06-02T09:59:59Z", "u2"),
        # 12:00 and 13:00: 1 each, an hour apart (never 2 within one hour): not mass
        reset("b1", "2025-06-02T12:00:00Z", "u3"),
        reset("b2", "2025-06-02T13:00:00Z", "u4"),
        # users resetting themselves are not the system
        *(reset(f"c{u}", "2025-06-03T08:00:00Z", f"u{u}", "user") for u in range(1, 5)),
    ]
    con = small_world(tmp_path, [], ledger)
    found = mass_resets(con)
    assert found == [
        ("units", datetime(2025, 6, 1), 4, 4),
        ("units", datetime(2025, 6, 2, 9), 2, 4),
    ]
