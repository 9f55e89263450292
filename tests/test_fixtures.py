"""Hand-computed fixtures: each pins one rule of DESIGN.md section 3 and 4 at its edge.

Every expected number here is worked out by hand in the comment beside it.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from tests.conftest import Cli
from warroom import db
from warroom.detect import detect, run_one
from warroom.impact import Policy, impact
from warroom.ingest import ingest
from warroom.pack import load_pack

D = Decimal
PRICES = (
    "model,currency,input_per_mtok,cached_per_mtok,output_per_mtok,effective_from\n"
    # 1 usd per 1M input, 0.5 cached, 2 output: 1000 in + 500 out = 0.001 + 0.001 = 0.002
    "m,usd,1,0.5,2,2025-01-01T00:00:00Z\n"
    "m,units,1000,500,2000,2025-01-01T00:00:00Z\n"
)


def req(
    rid: str,
    ts: str,
    user: str = "u1",
    status: int = 200,
    error: str | None = None,
    inp: int = 1000,
    cached: int = 0,
    out: int = 500,
    plan: str = "payg",
) -> dict[str, object]:
    return {
        "ts": ts,
        "request_id": rid,
        "user_id": user,
        "plan": plan,
        "model": "m",
        "status": status,
        "error_code": error,
        "input_tokens": inp,
        "cached_tokens": cached,
        "output_tokens": out,
    }


def led(
    eid: str,
    ts: str,
    kind: str,
    amount: str | None,
    user: str = "u1",
    rid: str | None = None,
    currency: str = "usd",
    balance_after: str | None = None,
    key: str | None = None,
) -> dict[str, object]:
    row: dict[str, object] = {
        "entry_id": eid,
        "ts": ts,
        "user_id": user,
        "kind": kind,
        "currency": currency,
    }
    for k, v in (
        ("amount", amount),
        ("request_id", rid),
        ("balance_after", balance_after),
        ("idempotency_key", key),
    ):
        if v is not None:
            row[k] = v
    return row


def abuse(
    ts: str,
    action: str,
    user: str = "u1",
    until: str | None = None,
    multiplier: float | None = None,
) -> dict[str, object]:
    row: dict[str, object] = {"ts": ts, "user_id": user, "action": action}
    if until:
        row["until"] = until
    if multiplier:
        row["multiplier"] = multiplier
    return row


def world(
    tmp_path: Path,
    requests: list[dict[str, object]],
    ledger: list[dict[str, object]],
    abuse_rows: list[dict[str, object]] = (),
    prices: str = PRICES,
):  # type: ignore[assignment]
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "requests.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in requests))
    (logs / "ledger.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in ledger))
    (logs / "abuse.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in abuse_rows))
    (logs / "prices.csv").write_text(prices)
    con = db.connect(tmp_path / "w.duckdb")
    report = ingest(con, [logs])
    assert report.rows_rejected == 0
    return con


def findings(con, detector: str) -> list[tuple[object, ...]]:
    pack = load_pack()
    detect(con, pack)
    return con.execute(
        "SELECT user_id, CAST(ts AS VARCHAR), request_id, entry_id, amount, detail FROM findings "
        "WHERE detector = ? ORDER BY ts, entry_id, request_id",
        [detector],
    ).fetchall()


def charge(eid: str, ts: str, rid: str, amount: str = "-0.002", **kw: object) -> dict[str, object]:
    return led(eid, ts, "charge", amount, rid=rid, **kw)  # type: ignore[arg-type]


T0 = "2025-06-10T10:00:00Z"


# ----------------------------------------------------------------------------- duplicates


def test_entry_shipped_twice_is_not_a_duplicate(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    con = world(
        tmp_path,
        [req("r1", T0)],
        [
            led("g", "2025-06-10T09:00:00Z", "grant", "1"),
            charge("e1", "2025-06-10T10:00:01Z", "r1"),
        ],
    )
    # the same ledger row again, in an overlapping file
    (logs / "ledger-again.jsonl").write_bytes(
        orjson.dumps(charge("e1", "2025-06-10T10:00:01Z", "r1")) + b"\n"
    )
    ingest(con, [logs / "ledger-again.jsonl"])
    assert findings(con, "duplicate_charges") == []
    assert findings(con, "ledger_conflicts") == []


def test_two_entries_for_one_request_and_a_partial_refund(tmp_path: Path) -> None:
    con = world(
        tmp_path,
        [req("r1", T0)],
        [
            led("g", "2025-06-10T09:00:00Z", "grant", "1"),
            charge("e1", "2025-06-10T10:00:01Z", "r1"),
            charge("e2", "2025-06-10T10:00:02Z", "r1"),  # duplicate: 0.002 excess
            charge("e3", "2025-06-10T10:00:03Z", "r1"),  # duplicate: 0.002 excess
            led(
                "rf", "2025-06-11T00:00:00Z", "refund", "0.003", rid="r1"
            ),  # covers e2, 0.001 of e3
        ],
    )
    assert findings(con, "duplicate_charges") == [
        ("u1", "2025-06-10 10:00:02", "r1", "e2", D("0"), "duplicate of e1; 0.002000 refunded"),
        ("u1", "2025-06-10 10:00:03", "r1", "e3", D("0.001"), "duplicate of e1; 0.001000 refunded"),
    ]


def test_same_idempotency_key_under_two_request_ids_is_a_duplicate(tmp_path: Path) -> None:
    con = world(
        tmp_path,
        [req("r1", T0), req("r2", "2025-06-10T10:00:00.5Z")],
        [
            led("g", "2025-06-10T09:00:00Z", "grant", "1"),
            charge("e1", "2025-06-10T10:00:01Z", "r1", key="k1"),
            charge("e2", "2025-06-10T10:00:02Z", "r2", key="k1"),
        ],
    )
    assert [(r[3], r[5]) for r in findings(con, "duplicate_charges")] == [
        ("e2", "duplicate of e1")
    ]  # e2's own request r2 is charged once: it repeats e1's key


# ----------------------------------------------------------------------------- mismatches


def test_penalty_charge_is_never_overbilled(tmp_path: Path) -> None:
    # a steady user (one request an hour for 3 days), then a penalty x10 standing 1 h
    reqs = [req(f"h{i}", f"2025-06-0{7 + i // 24}T{i % 24:02d}:30:00Z") for i in range(72)]
    ledger = [led("g", "2025-06-07T00:00:00Z", "grant", "100")]
    ledger += [
        charge(f"c{i}", f"2025-06-0{7 + i // 24}T{i % 24:02d}:30:01Z", f"h{i}") for i in range(72)
    ]
    reqs.append(req("p1", "2025-06-10T00:10:00Z"))
    ledger.append(charge("cp", "2025-06-10T00:10:01Z", "p1", "-0.02"))  # 10 x 0.002
    reqs.append(req("o1", "2025-06-10T02:10:00Z"))
    ledger.append(charge("co", "2025-06-10T02:10:01Z", "o1", "-0.003"))  # overbilled 0.001
    con = world(
        tmp_path,
        reqs,
        ledger,
        [abuse("2025-06-10T00:00:00Z", "penalty", until="2025-06-10T01:00:00Z", multiplier=10)],
    )
    assert findings(con, "abuse_false_positives") == [
        ("u1", "2025-06-10 00:00:00", None, None, None, "false_positive")
    ]
    assert findings(con, "abuse_penalty_charges") == [
        ("u1", "2025-06-10 00:10:01", "p1", "cp", D("0.018"), "charged 0.020000, expected 0.002000")
    ]
    mismatches = findings(con, "billing_mismatch")
    assert [(r[3], r[4], r[5]) for r in mismatches] == [("co", D("0.001"), "overbilled")]


def test_failed_request_charged_orphan_and_underbilled(tmp_path: Path) -> None:
    con = world(
        tmp_path,
        [req("f1", T0, status=500, error="server_error"), req("u1r", "2025-06-10T11:00:00Z")],
        [
            led("g", "2025-06-10T09:00:00Z", "grant", "1"),
            charge("cf", "2025-06-10T10:00:01Z", "f1"),  # failed: 0.002
            charge("cu", "2025-06-10T11:00:01Z", "u1r", "-0.0015"),  # under by 0.0005
            charge("co", "2025-06-10T12:00:01Z", "ghost", "-0.004"),  # orphan: 0.004
        ],
    )
    assert [(r[3], r[4], r[5]) for r in findings(con, "billing_mismatch")] == [
        ("cf", D("0.002"), "charged_failed_request"),
        ("cu", D("0.0005"), "underbilled"),
        ("co", D("0.004"), "orphan_charge"),
    ]


def test_prices_changing_mid_window_use_the_price_in_force_at_the_request(tmp_path: Path) -> None:
    prices = PRICES + "m,usd,2,1,4,2025-06-10T12:00:00Z\n"  # doubles at noon
    con = world(
        tmp_path,
        [req("a", "2025-06-10T11:59:59Z"), req("b", "2025-06-10T12:00:00Z")],
        [
            led("g", "2025-06-10T09:00:00Z", "grant", "1"),
            charge("ca", "2025-06-10T12:00:01Z", "a", "-0.002"),  # old price: exact
            charge("cb", "2025-06-10T12:00:02Z", "b", "-0.002"),  # new price 0.004: under by 0.002
        ],
        prices=prices,
    )
    assert [(r[3], r[4], r[5]) for r in findings(con, "billing_mismatch")] == [
        ("cb", D("0.002"), "underbilled")
    ]


# ----------------------------------------------------------------------------- coverage


def test_coverage_gaps_and_unbilled_requests_only_where_both_logs_cover(tmp_path: Path) -> None:
    # request log: hours 10, 11, 13 and 16; ledger: hours 08, 10, 12, 13.
    # Together they cover [10:00, 13:00] (the later first hour, the earlier last):
    #   11 has requests, no ledger rows -> a gap; its request is not "unbilled"
    #   12 has ledger rows, no requests -> a gap
    #   08 (ledger only) and 16 (requests only) lie outside the common span
    #   14 and 15 have neither -> not gaps (nothing is missing from one log only)
    con = world(
        tmp_path,
        [
            req("r10", "2025-06-10T10:10:00Z"),
            req("r11", "2025-06-10T11:10:00Z"),
            req("r13", "2025-06-10T13:10:00Z"),
            req("r13b", "2025-06-10T13:05:00Z"),  # never charged: unbilled, 0.002
            req("r16", "2025-06-10T16:10:00Z"),
        ],
        [
            led("g", "2025-06-10T08:00:00Z", "grant", "1"),
            charge("c10", "2025-06-10T10:10:01Z", "r10"),
            led("t12", "2025-06-10T12:30:00Z", "topup", "1"),
            led("t12b", "2025-06-10T12:40:00Z", "topup", "1"),
            charge("c13", "2025-06-10T13:10:01Z", "r13"),
        ],
    )
    assert [(r[1], r[5]) for r in findings(con, "coverage_gaps")] == [
        ("2025-06-10 11:00:00", "ledger: none; requests: 1 rows"),
        ("2025-06-10 12:00:00", "requests: none; ledger: 2 rows"),
    ]
    # unbilled counts only inside [latest first ts, earliest last ts] of the two logs
    # (10:10:00 .. 13:10:01): r16 is outside; r11 sits in the ledger's empty hour
    assert findings(con, "unbilled_requests") == [
        ("u1", "2025-06-10 13:05:00", "r13b", None, D("0.002"), "no charge for m")
    ]


# ----------------------------------------------------------------------------- balances


def test_429_exactly_at_a_ledger_rows_timestamp_sees_the_balance_before_it(tmp_path: Path) -> None:
    # balance 0.001 after the grant; at 10:00:00 a duplicate takes it to -0.001 ... the 429
    # at the same instant as the topup row must not see that topup.
    con = world(
        tmp_path,
        [
            req("r1", "2025-06-10T09:59:00Z"),
            req("x", "2025-06-10T10:00:00Z", status=429, error="insufficient_quota", inp=0, out=0),
        ],
        [
            led("g", "2025-06-10T09:00:00Z", "grant", "0.003"),
            charge("e1", "2025-06-10T09:59:01Z", "r1"),  # 0.001 left
            charge("e2", "2025-06-10T09:59:02Z", "r1"),  # dup: -0.001, cf 0.001
            led("t", "2025-06-10T10:00:00Z", "topup", "5"),  # same ts as the 429
        ],
    )
    rows = findings(con, "wrongful_rejections")
    assert [(r[2], r[5]) for r in rows] == [
        ("x", "insufficient_quota while the counterfactual balance was 0.001000")
    ]
    # the top-up at 10:00:00 saw -0.001 with counterfactual 0.001: reimburse min(5, 0.002)
    assert [(r[3], r[4]) for r in findings(con, "negative_balance_topups")] == [("t", D("0.002"))]


def test_topup_reimbursement_is_capped_by_outstanding_excess(tmp_path: Path) -> None:
    con = world(
        tmp_path,
        [req("r1", T0), req("r2", "2025-06-10T10:10:00Z")],
        [
            led("g", "2025-06-10T09:00:00Z", "grant", "0.002"),
            charge("e1", "2025-06-10T10:00:01Z", "r1"),  # 0
            charge("e2", "2025-06-10T10:00:02Z", "r1"),  # dup: -0.002 (cf 0)
            led("t1", "2025-06-10T10:05:00Z", "topup", "0.001"),  # -0.001: reimb 0.001
            led("t2", "2025-06-10T10:06:00Z", "topup", "0.5"),  # -0.001: reimb 0.001
            charge("e3", "2025-06-10T10:10:01Z", "r2"),
            led("t3", "2025-06-10T10:20:00Z", "topup", "1"),  # balance > 0: no
        ],
    )
    assert [(r[3], r[4]) for r in findings(con, "negative_balance_topups")] == [
        ("t1", D("0.001")),
        ("t2", D("0.001")),
    ]


def test_a_reset_in_the_middle_of_an_incident_does_not_cancel_the_credit(tmp_path: Path) -> None:
    con = world(
        tmp_path,
        [
            req("r1", T0, plan="plus"),
            req("r2", "2025-06-10T13:00:00Z", plan="plus"),
            req(
                "x",
                "2025-06-10T12:30:00Z",
                status=429,
                error="usage_limit_reached",
                inp=0,
                out=0,
                plan="plus",
            ),
        ],
        [
            led("q", "2025-06-10T09:00:00Z", "reset", None, currency="units", balance_after="2"),
            charge("e1", "2025-06-10T10:00:01Z", "r1", "-2", currency="units"),  # 0 left
            charge("e2", "2025-06-10T10:00:02Z", "r1", "-2", currency="units"),  # dup: -2
            led("q2", "2025-06-10T12:00:00Z", "reset", None, currency="units", balance_after="0"),
            charge("e3", "2025-06-10T13:00:01Z", "r2", "-2", currency="units"),
        ],
    )
    # after the reset the counterfactual balance is 0 (the excess was before it): not wrongful
    assert findings(con, "wrongful_rejections") == []
    pack = load_pack()
    rows = {r["user_id"]: r for r in impact(con, pack, Policy()).to_pylist()}
    assert rows["u1"]["duplicate_excess"] == D("2")
    assert rows["u1"]["credit_amount"] == D("2")  # owed all the same


def test_chain_breaks_are_listed_where_the_drift_changes(tmp_path: Path) -> None:
    reqs = [req(f"r{i}", f"2025-06-10T{9 + i // 6:02d}:{i % 6 * 10:02d}:00Z") for i in range(1, 8)]
    ledger = [
        # the comment gives the replayed balance, then the drift (recorded - replayed)
        led("g", "2025-06-10T09:00:00Z", "grant", "1", balance_after="1"),  # 1: 0
        charge("c1", "2025-06-10T09:10:01Z", "r1", balance_after="0.998"),  # 0.998: 0
        charge("c2", "2025-06-10T09:20:01Z", "r2", balance_after="0.994"),  # 0.996: -0.002 break
        charge("c3", "2025-06-10T09:30:01Z", "r3", balance_after="0.992"),  # 0.994: -0.002 still
        charge("c4", "2025-06-10T09:40:01Z", "r4"),  # 0.992: unrecorded
        charge("c5", "2025-06-10T09:50:01Z", "r5", balance_after="0.988"),  # 0.990: -0.002 as c3
        led("q", "2025-06-10T10:00:00Z", "reset", None, balance_after="5"),  # 5: 0 at a reset
        charge("c6", "2025-06-10T10:10:01Z", "r6", balance_after="4.998"),  # 4.998: 0
        charge("c7", "2025-06-10T10:20:01Z", "r7", balance_after="4.997"),  # 4.996: +0.001 break
    ]
    con = world(tmp_path, reqs, ledger)
    assert [(r[3], r[4], r[5]) for r in findings(con, "balance_chain_breaks")] == [
        ("c2", D("-0.002"), "recorded 0.994000, replayed 0.996000"),
        ("c7", D("0.001"), "recorded 4.997000, replayed 4.996000"),
    ]


def test_a_day_at_ten_times_the_median_of_the_days_before_is_anomalous(tmp_path: Path) -> None:
    reqs, ledger = (
        [],
        [
            led("g", "2025-06-01T00:00:00Z", "grant", "10"),
            led("g2", "2025-06-01T00:00:00Z", "grant", "10", user="u2"),
        ],
    )
    for day, amount in (
        ("01", "-0.002"),
        ("02", "-0.002"),
        ("03", "-0.002"),
        ("04", "-0.02"),  # 10 x the median 0.002 of 01-03: anomalous
        ("05", "-0.019"),
    ):  # median of 01-04 is 0.002: under 10x
        reqs.append(req(f"a{day}", f"2025-06-{day}T12:00:00Z"))
        ledger.append(charge(f"ca{day}", f"2025-06-{day}T12:00:01Z", f"a{day}", amount))
    for day, amount in (("02", "-0.002"), ("03", "-0.002"), ("04", "-1")):  # 2 days before: too few
        reqs.append(req(f"b{day}", f"2025-06-{day}T12:00:00Z", user="u2"))
        ledger.append(charge(f"cb{day}", f"2025-06-{day}T12:00:01Z", f"b{day}", amount, user="u2"))
    con = world(tmp_path, reqs, ledger)
    assert [(r[0], r[1], r[4]) for r in findings(con, "consumption_anomalies")] == [
        ("u1", "2025-06-04 00:00:00", D("0.02"))
    ]


def test_incident_window_spans_each_faults_rows_hour_by_hour(tmp_path: Path) -> None:
    con = world(
        tmp_path,
        [req("r1", T0), req("r2", "2025-06-10T12:30:00Z")],
        [
            led("g", "2025-06-10T09:00:00Z", "grant", "1"),
            charge("e1", "2025-06-10T10:00:01Z", "r1"),
            charge("e2", "2025-06-10T10:00:02Z", "r1"),  # duplicate at 10:00:02
            charge("e3", "2025-06-10T12:30:01Z", "r2"),
            charge("e4", "2025-06-10T12:30:05Z", "r2"),  # duplicate at 12:30:05
            charge("e5", "2025-06-10T12:40:00Z", "ghost"),  # orphan at 12:40
        ],
    )
    rows = run_one(con, load_pack(), "incident_window", {}).to_pylist()
    got = [
        (
            r["fault"],
            str(r["window_start"]),
            str(r["window_end"]),
            r["rows_total"],
            str(r["hour"]),
            r["rows_in_hour"],
        )
        for r in rows
    ]
    assert got == [
        (
            "billing_mismatch:orphan_charge",
            "2025-06-10 12:40:00",
            "2025-06-10 12:40:00",
            1,
            "2025-06-10 12:00:00",
            1,
        ),
        (
            "duplicate_charges",
            "2025-06-10 10:00:02",
            "2025-06-10 12:30:05",
            2,
            "2025-06-10 10:00:00",
            1,
        ),
        (
            "duplicate_charges",
            "2025-06-10 10:00:02",
            "2025-06-10 12:30:05",
            2,
            "2025-06-10 12:00:00",
            1,
        ),
    ]


# ----------------------------------------------------------------------------- abuse


def test_user_with_23_hours_of_history_is_for_review(tmp_path: Path) -> None:
    reqs = [req(f"r{i}", f"2025-06-09T{11 + i:02d}:00:00Z") for i in range(12)]
    con = world(
        tmp_path,
        reqs,
        [led("g", "2025-06-09T10:00:00Z", "grant", "1")],
        [abuse("2025-06-10T10:00:00Z", "throttle", until="2025-06-10T11:00:00Z")],
    )
    # first request 2025-06-09T11:00 is 23 h before the throttle
    assert findings(con, "abuse_false_positives") == [
        ("u1", "2025-06-10 10:00:00", None, None, None, "insufficient_history")
    ]
    rows = impact(con, load_pack(), Policy()).to_pylist()
    assert [
        (r["user_id"], r["review"], r["restricted_minutes"], r["credit_amount"]) for r in rows
    ] == [("u1", True, 0, D("0"))]


def test_burst_is_warranted_and_throttle_minutes_union(tmp_path: Path) -> None:
    # steady user: 1 request an hour for 2 days; then two overlapping FP throttles
    reqs = [req(f"h{i}", f"2025-06-0{8 + i // 24}T{i % 24:02d}:15:00Z") for i in range(48)]
    reqs += [
        req("x1", "2025-06-10T00:20:00Z", status=429, error="abuse_blocked", inp=0, out=0),
        req("x2", "2025-06-10T01:20:00Z", status=429, error="rate_limit_exceeded", inp=0, out=0),
    ]
    con = world(
        tmp_path,
        reqs,
        [led("g", "2025-06-08T00:00:00Z", "grant", "100")],
        [
            abuse("2025-06-10T00:00:00Z", "throttle", until="2025-06-10T00:45:00Z"),
            abuse("2025-06-10T00:30:00Z", "block", until="2025-06-10T01:00:30Z"),
        ],
    )
    assert [r[2] for r in findings(con, "wrongful_rejections")] == ["x1"]
    rows = impact(con, load_pack(), Policy()).to_pylist()
    # union 00:00:00-01:00:30 = 60.5 min -> 61 (half-up)
    assert [(r["restricted_minutes"], r["wrongful_429s"]) for r in rows] == [(61, 1)]


# ----------------------------------------------------------------------------- impact


def test_credit_is_rounded_once_per_row_not_per_finding(tmp_path: Path) -> None:
    # three overbilled charges of 0.004 usd each: 0.012 -> 0.01, not 3 x 0.00
    reqs = [req(f"r{i}", f"2025-06-10T1{i}:00:00Z") for i in range(3)]
    ledger = [led("g", "2025-06-10T09:00:00Z", "grant", "1")]
    ledger += [charge(f"e{i}", f"2025-06-10T1{i}:00:01Z", f"r{i}", "-0.006") for i in range(3)]
    con = world(tmp_path, reqs, ledger)
    rows = impact(con, load_pack(), Policy()).to_pylist()
    assert [(r["overbilled"], r["credit_amount"], r["reasons"]) for r in rows] == [
        (D("0.012"), D("0.01"), "3 overbilled charges")
    ]


@pytest.mark.parametrize(
    "policy_text, credit, reimbursement",
    [
        ("", D("0.01"), D("0.00")),
        ("[credits]\noverbilled = false\n", D("0"), D("0.00")),
        ("[credits]\ngoodwill_percent = 50\n", D("0.02"), D("0.00")),  # 0.012 x 1.5 = 0.018
        ('[credits]\nminimum_credit = { usd = "1.00" }\n', D("1.00"), D("0.00")),
        ('[credits]\nexclude_plans = ["payg"]\n', D("0"), D("0")),
        ('[incident]\nid = "x"\nstart = "2025-06-10T11:00:00Z"\n', D("0.01"), D("0.00")),
    ],
)
def test_policy_variants(
    tmp_path: Path, policy_text: str, credit: Decimal, reimbursement: Decimal
) -> None:
    from warroom.impact import load_policy

    reqs = [req(f"r{i}", f"2025-06-10T1{i}:00:00Z") for i in range(3)]
    ledger = [led("g", "2025-06-10T09:00:00Z", "grant", "1")]
    ledger += [charge(f"e{i}", f"2025-06-10T1{i}:00:01Z", f"r{i}", "-0.006") for i in range(3)]
    con = world(tmp_path, reqs, ledger)
    p = tmp_path / "policy.toml"
    p.write_text(policy_text)
    rows = impact(con, load_pack(), load_policy(p)).to_pylist()
    assert [(r["credit_amount"], r["topup_reimbursement"]) for r in rows] == [
        (credit, reimbursement)
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("[credit]\nx = 1\n", "unknown section [credit]"),
        ("[credits]\ngoodwil_percent = 5\n", "unknown key 'goodwil_percent'"),
        ("[credits]\ngoodwill_percent = 0.5\n", "never a float"),
        ('[credits]\noverbilled = "yes"\n', "must be true or false"),
        ('[incident]\nstart = "yesterday"\n', "is not a timestamp"),
        ("not toml at all [", "not valid TOML"),
    ],
)
def test_bad_policy_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    from warroom.impact import PolicyError, load_policy

    p = tmp_path / "policy.toml"
    p.write_text(text)
    with pytest.raises(PolicyError, match=message.replace("[", r"\[")):
        load_policy(p)


def test_credit_id_is_stable_per_incident_user_and_currency() -> None:
    from warroom.impact import credit_id

    assert credit_id("inc", "u1", "usd") == credit_id("inc", "u1", "usd")
    assert (
        len(
            {
                credit_id("inc", "u1", "usd"),
                credit_id("inc2", "u1", "usd"),
                credit_id("inc", "u2", "usd"),
                credit_id("inc", "u1", "units"),
            }
        )
        == 4
    )


def test_run_with_since_until_and_params(tmp_path: Path) -> None:
    con = world(
        tmp_path,
        [req("r1", T0), req("r2", "2025-06-11T10:00:00Z")],
        [
            led("g", "2025-06-10T09:00:00Z", "grant", "1"),
            charge("e1", "2025-06-10T10:00:01Z", "r1", "-0.0021"),
            charge("e2", "2025-06-11T10:00:01Z", "r2", "-0.0021"),
        ],
    )
    pack = load_pack()
    all_rows = run_one(con, pack, "billing_mismatch", {})
    assert all_rows.column("entry_id").to_pylist() == ["e1", "e2"]
    late = run_one(con, pack, "billing_mismatch", {}, since="2025-06-11T00:00:00Z")
    assert late.column("entry_id").to_pylist() == ["e2"]
    loose = run_one(con, pack, "billing_mismatch", {"tolerance": "0.0001"})
    assert loose.num_rows == 0


def test_sql_can_read_the_shared_relations(tmp_path: Path, cli: Cli) -> None:
    con = world(
        tmp_path,
        [req("r1", T0)],
        [
            led("g", "2025-06-10T09:00:00Z", "grant", "1"),
            charge("e1", "2025-06-10T10:00:01Z", "r1"),
            charge("e2", "2025-06-10T10:00:02Z", "r1"),  # duplicate: the counterfactual keeps it
        ],
    )
    con.close()
    res = cli(
        "sql",
        "SELECT entry_id, balance, cf_balance FROM balance_timeline "
        "WHERE row_type = 'ledger' ORDER BY ts",
        "--db",
        str(tmp_path / "w.duckdb"),
        "-f",
        "csv",
    )
    assert res.code == 0, res.stderr
    assert res.stdout.decode().splitlines() == [
        '"entry_id","balance","cf_balance"',
        '"g",1.000000,1.000000',
        '"e1",0.998000,0.998000',
        '"e2",0.996000,0.998000',
    ]
