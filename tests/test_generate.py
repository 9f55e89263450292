"""The generator's files and its ground truth, checked from the raw files.

Every check here reads the written files with orjson/csv and recomputes what it
asserts on its own (it never calls ingest, and never trusts the generator's
own bookkeeping where the files can answer), so a wrong answer key fails here
before it can mislead a detection test.
"""

from __future__ import annotations

import csv
import re
import time
from bisect import bisect_left
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import warroom.generate as gen
from warroom.errors import InputError
from warroom.generate import DETECTORS, generate

MONEY = re.compile(r"^-?\d+(\.\d{1,6})?$")
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
QUANTUM = {"usd": Decimal("0.01"), "credits": Decimal("0.000001")}
SMALL = {"users": 60, "days": 10, "seed": 11, "requests_per_user_day": 20.0}


def us(ts: str) -> int:
    """Microseconds since the epoch."""
    return (datetime.fromisoformat(ts) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        microseconds=1
    )


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in lines(path)]


def is_request(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("user_id"), str)
        and isinstance(obj.get("request_id"), str)
        and isinstance(obj.get("status"), int)
        and isinstance(obj.get("ts"), str)
    )


def round_credit(d: Decimal, currency: str) -> Decimal:
    """DESIGN.md section 4: half-up to the minor unit (usd cents, 6 places for credits and
    quota units), never to 0 while something is owed."""
    unit = QUANTUM.get(currency, Decimal("0.000001"))
    rounded = d.quantize(unit, rounding=ROUND_HALF_UP)
    return unit if d > 0 and rounded == 0 else rounded


@dataclass
class Run:
    """One generated data set, read back from its files."""

    dir: Path
    result: gen.GenerateResult
    requests: list[dict[str, Any]]
    request_lines: list[bytes]
    ledger1: list[dict[str, Any]]
    ledger2: list[dict[str, Any]]
    abuse: list[dict[str, Any]]
    findings: list[dict[str, Any]]
    users: list[dict[str, Any]]
    rejects: list[dict[str, Any]]
    summary: dict[str, Any]

    @property
    def canonical(self) -> dict[str, dict[str, Any]]:
        """entry_id -> row, the first file (ledger-1) winning, as ingest does."""
        out: dict[str, dict[str, Any]] = {}
        for row in self.ledger1 + self.ledger2:
            out.setdefault(row["entry_id"], row)
        return out

    def by_user(self) -> dict[str, list[dict[str, Any]]]:
        rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in self.canonical.values():
            rows[row["user_id"]].append(row)
        for r in rows.values():
            r.sort(key=lambda x: (x["ts"], x["entry_id"]))
        return rows

    def truth(self, detector: str) -> list[dict[str, Any]]:
        return [f for f in self.findings if f["detector"] == detector]


def load(d: Path, result: gen.GenerateResult) -> Run:
    request_lines = lines(d / "requests.jsonl")
    requests = []
    for raw in request_lines:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if is_request(obj):
            requests.append(obj)
    return Run(
        dir=d,
        result=result,
        requests=requests,
        request_lines=request_lines,
        ledger1=jsonl(d / "ledger-1.jsonl"),
        ledger2=jsonl(d / "ledger-2.jsonl"),
        abuse=jsonl(d / "abuse.jsonl"),
        findings=jsonl(d / "_truth" / "findings.jsonl"),
        users=jsonl(d / "_truth" / "users.jsonl"),
        rejects=jsonl(d / "_truth" / "rejects.jsonl"),
        summary=orjson.loads((d / "_truth" / "summary.json").read_bytes()),
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    d = tmp_path_factory.mktemp("gen") / "out"
    return load(d, generate(d, **SMALL))  # type: ignore[arg-type]


def tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# -- determinism and bookkeeping


def test_same_arguments_give_the_same_bytes_and_another_seed_does_not(
    run: Run, tmp_path: Path
) -> None:
    again = generate(tmp_path / "again", **SMALL)  # type: ignore[arg-type]
    assert tree(again.out_dir) == tree(run.dir)
    other = generate(tmp_path / "other", **{**SMALL, "seed": SMALL["seed"] + 1})  # type: ignore[arg-type]
    assert (other.out_dir / "requests.jsonl").read_bytes() != (
        run.dir / "requests.jsonl"
    ).read_bytes()


def test_worker_processes_do_not_change_a_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 64 users a chunk: 3 chunks
    monkeypatch.setattr("warroom.generate.write.parallel.CHUNK_BLOCKS", 1)
    args = {"users": 150, "days": 3, "seed": 5, "requests_per_user_day": 6.0}
    progress: list[tuple[int, int]] = []
    one = generate(tmp_path / "one", workers=1, **args)  # type: ignore[arg-type]
    two = generate(
        tmp_path / "two", workers=2, progress=lambda a, b: progress.append((a, b)), **args
    )  # type: ignore[arg-type]
    assert tree(one.out_dir) == tree(two.out_dir)
    assert progress[-1] == (150, 150)
    assert [a for a, _ in progress] == sorted(a for a, _ in progress)
    assert not [p for p in (tmp_path / "two" / "_truth").iterdir() if p.name.startswith(".")]


def test_reported_rows_are_the_lines_in_the_files(run: Run) -> None:
    files = run.result.files
    assert set(files) == {
        "requests.jsonl",
        "ledger-1.jsonl",
        "ledger-2.jsonl",
        "abuse.jsonl",
        "prices.csv",
    }
    for name, n in files.items():
        text = (run.dir / name).read_bytes()
        assert text.endswith(b"\n") and b"\n\n" not in text
        assert n == text.count(b"\n") - (1 if name.endswith(".csv") else 0), name
    assert run.summary["files"] == files
    assert run.result.truth_dir == run.dir / "_truth"
    assert sorted(p.name for p in run.result.truth_dir.iterdir()) == [
        "findings.jsonl",
        "rejects.jsonl",
        "summary.json",
        "users.jsonl",
    ]


def test_progress_is_reported_up_to_all_users(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    generate(tmp_path / "p", users=7, days=2, seed=1, progress=lambda a, b: seen.append((a, b)))
    assert seen and seen[-1] == (7, 7)
    assert all(b == 7 for _, b in seen)


def test_a_small_run_is_quick(tmp_path: Path) -> None:
    t = time.perf_counter()
    generate(tmp_path / "q", users=30, days=7, seed=3, requests_per_user_day=20)
    assert time.perf_counter() - t < 10


# -- formats


def test_money_is_a_decimal_string_with_at_most_6_places(run: Run) -> None:
    for row in run.ledger1 + run.ledger2:
        for key in ("amount", "balance_after"):
            v = row[key]
            if v is not None or (key == "amount" and row["kind"] != "reset"):
                assert isinstance(v, str) and MONEY.match(v), row
    for f in run.findings:
        assert f["amount"] is None or (isinstance(f["amount"], str) and MONEY.match(f["amount"]))
    for u in run.users:
        for key in (
            "duplicate_excess",
            "failed_request_charges",
            "abuse_penalty_excess",
            "overbilled",
            "credit_amount",
            "topup_reimbursement",
        ):
            assert isinstance(u[key], str) and MONEY.match(u[key]), u
    with open(run.dir / "prices.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            for key in ("input_per_mtok", "cached_per_mtok", "output_per_mtok"):
                assert row[key] == "" or MONEY.match(row[key])


def test_every_row_is_canonical_compact_json(run: Run) -> None:
    """Hand-formatted lines must be exactly what orjson writes for their content."""
    bad = {r["line"] for r in run.rejects}
    for name in ("requests.jsonl", "ledger-1.jsonl", "ledger-2.jsonl", "abuse.jsonl"):
        for n, raw in enumerate(lines(run.dir / name), start=1):
            if name == "requests.jsonl" and n in bad:
                continue
            assert orjson.dumps(orjson.loads(raw)) == raw, (name, n)


def test_timestamps_are_utc_iso_with_z(run: Run) -> None:
    for r in run.requests:
        assert TS.match(r["ts"])
    for r in run.ledger1 + run.ledger2 + run.findings:
        assert TS.match(r["ts"])
    for r in run.abuse:
        assert TS.match(r["ts"]) and (r["until"] is None or TS.match(r["until"]))


def test_prices_list_three_currencies_and_one_change(run: Run) -> None:
    with open(run.dir / "prices.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [
        "model",
        "currency",
        "input_per_mtok",
        "cached_per_mtok",
        "output_per_mtok",
        "effective_from",
    ]
    pairs = defaultdict(list)
    for r in rows:
        pairs[(r["model"], r["currency"])].append(r["effective_from"])
    assert {c for _, c in pairs} == {"usd", "units", "credits"}
    assert len({m for m, _ in pairs}) == 4
    changed = {m for (m, _), effs in pairs.items() if len(effs) == 2}
    assert len(changed) == 1
    assert any(r["cached_per_mtok"] == "" for r in rows)  # no cache discount: input price


def test_malformed_lines_are_where_the_truth_says(run: Run) -> None:
    bad = {r["line"] for r in run.rejects}
    assert len(bad) == 5 and {r["file"] for r in run.rejects} == {"requests.jsonl"}
    for n, raw in enumerate(run.request_lines, start=1):
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = None
        assert is_request(obj) != (n in bad), (n, raw[:80])
        if n in bad:
            assert raw.decode() == next(r["raw"] for r in run.rejects if r["line"] == n)


# -- the ledger files


def test_overlap_is_shipped_twice_identically_except_the_conflicts(run: Run) -> None:
    split = us(run.summary["ledger_split"]["at"])
    hour = 3600 * 10**6
    conflicts = {f["entry_id"] for f in run.truth("ledger_conflicts")}
    assert all(us(r["ts"]) < split + hour for r in run.ledger1)
    # ledger-2 starts an hour before the split; a conflicting copy may be older
    assert all(us(r["ts"]) >= split - hour or r["entry_id"] in conflicts for r in run.ledger2)
    one = {r["entry_id"]: r for r in run.ledger1}
    twice = [r for r in run.ledger2 if r["entry_id"] in one]
    assert 2 <= len(conflicts) <= 3
    assert any(r["entry_id"] not in conflicts for r in twice)  # a real overlap exists
    for r in twice:
        assert (r == one[r["entry_id"]]) == (r["entry_id"] not in conflicts)
    for f in run.truth("ledger_conflicts"):
        first = one[f["entry_id"]]
        assert (f["user_id"], f["ts"], f["request_id"]) == (
            first["user_id"],
            first["ts"],
            first["request_id"],
        )


def test_replay_reproduces_balance_after_where_the_chain_holds(run: Run) -> None:
    breaks = {f["entry_id"] for f in run.truth("balance_chain_breaks")}
    assert breaks, "the generator loses at least one ledger write"
    mismatched = set()
    for rows in run.by_user().values():
        bal = Decimal(0)
        for r in rows:
            if r["kind"] == "reset":
                bal = Decimal(r["balance_after"])
                continue
            bal += Decimal(r["amount"])
            if r["balance_after"] is not None and Decimal(r["balance_after"]) != bal:
                mismatched.add(r["entry_id"])
    assert mismatched == breaks


def test_each_user_has_one_currency_and_a_ledger_row_before_any_request(run: Run) -> None:
    ledger = run.by_user()
    for user, rows in ledger.items():
        assert len({r["currency"] for r in rows}) == 1, user
    first_request: dict[str, str] = {}
    for r in run.requests:
        first_request[r["user_id"]] = min(r["ts"], first_request.get(r["user_id"], r["ts"]))
    for user, ts in first_request.items():
        assert ledger[user][0]["ts"] < ts


def test_a_charge_lands_at_request_ts_plus_latency(run: Run) -> None:
    reqs = {r["request_id"]: r for r in run.requests}
    seen = set()
    for row in run.canonical.values():
        if row["kind"] != "charge" or row["request_id"] in seen:
            continue
        seen.add(row["request_id"])  # the legitimate (first written) charge
        r = reqs.get(row["request_id"])
        if r is None:
            continue
        delta = us(row["ts"]) - us(r["ts"]) - round(r["latency_ms"] * 1000)
        assert delta in (0, 1), (row, r)


# -- the truth against the raw files


def test_duplicates_are_exactly_the_charges_sharing_a_request(run: Run) -> None:
    charges: dict[str, list[dict[str, Any]]] = defaultdict(list)
    refunds: dict[str, Decimal] = defaultdict(Decimal)
    for row in sorted(run.canonical.values(), key=lambda x: (x["ts"], x["entry_id"])):
        if row["kind"] == "charge":
            charges[row["request_id"]].append(row)
        elif row["kind"] == "refund" and row["request_id"]:
            refunds[row["request_id"]] += Decimal(row["amount"])
    expected = {}
    for rid, rows in charges.items():
        left = refunds[rid]
        for extra in rows[1:]:
            charged = -Decimal(extra["amount"])
            back = min(charged, left)
            left -= back
            expected[extra["entry_id"]] = charged - back
    truth = {f["entry_id"]: Decimal(f["amount"]) for f in run.truth("duplicate_charges")}
    assert truth and truth == expected
    assert any(v == 0 for v in truth.values()), "some duplicates are refunded"
    assert any(v > 0 for v in truth.values())


def test_duplicates_hit_payg_only_and_inside_one_12h_window(run: Run) -> None:
    plan = {r["user_id"]: r["plan"] for r in run.requests}
    dups = run.truth("duplicate_charges")
    assert {plan[f["user_id"]] for f in dups} == {"payg"}
    window = run.summary["injected"]["duplicate_deductions"]
    lo, hi = us(window["from"]), us(window["until"])
    assert hi - lo == 12 * 3600 * 10**6
    assert all(lo <= us(f["ts"]) < hi + 10**6 for f in dups)


def test_enterprise_accounts_have_no_duplicate_charges_in_the_files(run: Run) -> None:
    plan = {r["user_id"]: r["plan"] for r in run.requests}
    assert "enterprise" in plan.values()
    per_request: dict[str, int] = defaultdict(int)
    for row in run.canonical.values():
        if row["kind"] == "charge" and plan.get(row["user_id"]) == "enterprise":
            per_request[row["request_id"]] += 1
    assert per_request and max(per_request.values()) == 1


def test_unbilled_and_orphans_are_what_the_files_show(run: Run) -> None:
    charged = {r["request_id"] for r in run.canonical.values() if r["kind"] == "charge"}
    logged = {r["request_id"] for r in run.requests}
    unbilled = {
        r["request_id"]
        for r in run.requests
        if r["status"] < 400
        and (r["input_tokens"] or r["output_tokens"])
        and r["request_id"] not in charged
    }
    assert unbilled == {f["request_id"] for f in run.truth("unbilled_requests")}
    orphans = {rid for rid in charged if rid not in logged}
    assert orphans == {
        f["request_id"] for f in run.truth("billing_mismatch") if f["detail"] == "orphan_charge"
    }
    assert orphans and unbilled


def test_quota_refusals_happen_at_a_replayed_balance_at_or_below_zero(run: Run) -> None:
    ledger = run.by_user()
    chain_users = {f["user_id"] for f in run.truth("balance_chain_breaks")}
    refusals = 0
    for r in run.requests:
        if r["error_code"] not in ("insufficient_quota", "usage_limit_reached"):
            continue
        rows = ledger[r["user_id"]]
        t = r["ts"]
        bal = Decimal(0)
        for row in rows:
            if row["ts"] >= t:
                break
            bal = (
                Decimal(row["balance_after"])
                if row["kind"] == "reset"
                else bal + Decimal(row["amount"])
            )
        assert bal <= 0 or r["user_id"] in chain_users, r
        refusals += 1
    assert refusals


def test_subscribers_spend_banked_resets_for_the_fault_and_for_none(run: Run) -> None:
    """A subscriber refused for their quota spends a banked reset (initiated_by user);
    those after a wrongful quota 429 are to restore, the others (a quota the user
    drained themselves) are not. Every other reset is the system's."""
    resets = [r for r in run.canonical.values() if r["kind"] == "reset"]
    assert {r["initiated_by"] for r in resets} == {"system", "user"}
    assert all(r["initiated_by"] is None for r in run.canonical.values() if r["kind"] != "reset")
    by_user = {r["entry_id"] for r in resets if r["initiated_by"] == "user"}
    restorable = {f["entry_id"] for f in run.truth("spent_banked_resets")}
    assert restorable and restorable < by_user
    assert all(r["currency"] == "units" for r in resets)
    banked = {u["user_id"]: u["banked_resets"] for u in run.users if u["banked_resets"]}
    spent = Counter(f["user_id"] for f in run.truth("spent_banked_resets"))
    assert banked == dict(spent)


def test_the_mass_reset_does_not_stop_the_drain(run: Run) -> None:
    """Quota penalties charge on after the global reset of every subscription."""
    reset = run.summary["injected"]["global_quota_reset"]
    assert reset is not None
    after = [
        f
        for f in run.truth("abuse_penalty_charges")
        if f["currency"] == "units" and f["ts"] > reset
    ]
    assert after


def test_counterfactual_balance_explains_wrongful_429s_and_reimbursed_topups(run: Run) -> None:
    """DECISIONS 'Counterfactual balance', 'Wrongful 429s' (quota codes) and
    'Negative-balance top-ups', recomputed from the files; only each legitimate
    charge's excess is taken from the findings."""
    excess = {
        f["entry_id"]: Decimal(f["amount"])
        for f in run.findings
        if f["detector"] == "abuse_penalty_charges"
        or (
            f["detector"] == "billing_mismatch"
            and f["detail"] in ("charged_failed_request", "overbilled")
        )
    }
    requests: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in run.requests:
        requests[r["user_id"]].append(r)
    wrongful, reimbursed = set(), {}
    for user, rows in run.by_user().items():
        seen: set[str] = set()
        dup_left: dict[str, Decimal] = defaultdict(Decimal)
        bal = acc = attributed = Decimal(0)
        timeline = []  # (ts, balance after, counterfactual after)
        for row in rows:
            if row["kind"] == "reset":
                bal, acc, attributed = Decimal(row["balance_after"]), Decimal(0), Decimal(0)
            else:
                amount = Decimal(row["amount"])
                if row["kind"] == "topup" and bal < 0 and bal + acc >= 0:
                    back = max(Decimal(0), min(amount, acc - attributed))
                    attributed += back
                    reimbursed[row["entry_id"]] = back
                elif row["kind"] == "refund" and row["request_id"]:
                    back = min(amount, dup_left[row["request_id"]])
                    dup_left[row["request_id"]] -= back
                    acc -= back
                elif row["kind"] == "charge" and row["request_id"] in seen:
                    dup_left[row["request_id"]] -= amount
                    acc -= amount
                elif row["kind"] == "charge":
                    seen.add(row["request_id"])
                    acc += excess.get(row["entry_id"], Decimal(0))
                bal += amount
            timeline.append((row["ts"], bal + acc))
        stamps = [ts for ts, _ in timeline]
        for r in requests[user]:
            if r["error_code"] in ("insufficient_quota", "usage_limit_reached"):
                i = bisect_left(stamps, r["ts"])
                if i and timeline[i - 1][1] > 0:
                    wrongful.add(r["request_id"])
    truth_wrongful = {
        f["request_id"]
        for f in run.truth("wrongful_rejections")
        if f["detail"] in ("insufficient_quota", "usage_limit_reached")
    }
    assert wrongful == truth_wrongful and wrongful
    assert reimbursed == {
        f["entry_id"]: Decimal(f["amount"]) for f in run.truth("negative_balance_topups")
    }


def test_abuse_classes_follow_the_pinned_rule(run: Run) -> None:
    """An independent reading of DECISIONS 'Abuse classification'."""
    hour = 3600 * 10**6
    reqs: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in run.requests:
        reqs[r["user_id"]].append((us(r["ts"]), r["input_tokens"] + r["output_tokens"]))
    for v in reqs.values():
        v.sort()
    want = {}
    for a in run.abuse:
        if a["action"] == "clear":
            continue
        t = us(a["ts"])
        rs = reqs[a["user_id"]]
        if not rs or rs[0][0] > t - 24 * hour:
            want[(a["user_id"], a["ts"])] = "insufficient_history"
            continue
        last = [tok for ts, tok in rs if t - hour <= ts < t]
        buckets: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for ts, tok in rs:
            h = ts - ts % hour
            if h >= t - hour - 7 * 24 * hour and h + hour <= t - hour:
                buckets[h][0] += 1
                buckets[h][1] += tok
        top_n = max((b[0] for b in buckets.values()), default=0)
        top_t = max((b[1] for b in buckets.values()), default=0)
        cls = "false_positive" if len(last) <= 3 * top_n and sum(last) <= 3 * top_t else "warranted"
        if cls == "false_positive":
            want[(a["user_id"], a["ts"])] = cls
    got = {(f["user_id"], f["ts"]): f["detail"] for f in run.truth("abuse_false_positives")}
    assert got == want
    assert set(got.values()) == {"false_positive", "insufficient_history"}
    flagged = {(a["user_id"], a["ts"]) for a in run.abuse if a["action"] != "clear"}
    assert flagged - set(got), "some restrictions are warranted"


def test_wrongful_rejections_are_429s_with_the_right_codes(run: Run) -> None:
    reqs = {r["request_id"]: r for r in run.requests}
    rows = run.truth("wrongful_rejections")
    codes = {f["detail"] for f in rows}
    assert codes >= {"insufficient_quota", "usage_limit_reached"}
    assert codes & {"rate_limit_exceeded", "abuse_blocked"}
    for f in rows:
        r = reqs[f["request_id"]]
        assert r["status"] == 429 and r["error_code"] == f["detail"] and r["ts"] == f["ts"]


def test_findings_are_fully_sorted_and_cover_every_detector(run: Run) -> None:
    def key(f: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(
            (f[k] is None, f[k] or "")
            for k in ("detector", "user_id", "currency", "ts", "request_id", "entry_id")
        )

    assert run.findings == sorted(run.findings, key=key)
    assert len({key(f) for f in run.findings}) == len(run.findings)
    present = {f["detector"] for f in run.findings}
    assert present == set(DETECTORS)
    for d in DETECTORS:
        assert run.summary["detectors"][d]["rows"] == len(run.truth(d))


# -- impact


def test_credit_amount_is_the_rounded_sum_of_its_parts(run: Run) -> None:
    assert run.users
    for u in run.users:
        parts = sum(
            Decimal(u[k])
            for k in (
                "duplicate_excess",
                "failed_request_charges",
                "abuse_penalty_excess",
                "overbilled",
            )
        )
        assert Decimal(u["credit_amount"]) == round_credit(parts, u["currency"])
        assert (
            Decimal(u["credit_amount"]).as_tuple().exponent
            == round_credit(Decimal(0), u["currency"]).as_tuple().exponent
        )
    assert {u["currency"] for u in run.users} == {"usd", "units", "credits"}


def test_users_truth_is_the_findings_aggregated(run: Run) -> None:
    agg: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {
            "duplicate_excess": Decimal(0),
            "failed_request_charges": Decimal(0),
            "abuse_penalty_excess": Decimal(0),
            "overbilled": Decimal(0),
            "topup_reimbursement": Decimal(0),
            "wrongful_429s": 0,
            "review": False,
        }
    )
    column = {
        "duplicate_charges": "duplicate_excess",
        "abuse_penalty_charges": "abuse_penalty_excess",
        "negative_balance_topups": "topup_reimbursement",
    }
    for f in run.findings:
        a = agg[(f["user_id"], f["currency"])]
        d = f["detector"]
        if d in column:
            a[column[d]] += Decimal(f["amount"])
        elif d == "billing_mismatch" and f["detail"] == "charged_failed_request":
            a["failed_request_charges"] += Decimal(f["amount"])
        elif d == "billing_mismatch" and f["detail"] == "overbilled":
            a["overbilled"] += Decimal(f["amount"])
        elif d == "billing_mismatch" and f["detail"] == "orphan_charge":
            a["review"] = True
        elif d == "wrongful_rejections":
            a["wrongful_429s"] += 1
        elif d == "abuse_false_positives" and f["detail"] == "insufficient_history":
            a["review"] = True
    minutes = restricted_minutes(run)
    by_key = {(u["user_id"], u["currency"]): u for u in run.users}
    for key, a in agg.items():
        owed = any(
            a[k]
            for k in (
                "duplicate_excess",
                "failed_request_charges",
                "abuse_penalty_excess",
                "overbilled",
                "topup_reimbursement",
            )
        )
        if not (owed or a["wrongful_429s"] or a["review"] or minutes.get(key[0])):
            assert key not in by_key
            continue
        u = by_key[key]
        for k in (
            "duplicate_excess",
            "failed_request_charges",
            "abuse_penalty_excess",
            "overbilled",
        ):
            assert Decimal(u[k]) == a[k], (key, k)
        credit = Decimal(u["credit_amount"])
        to_card = min(round_credit(a["topup_reimbursement"], key[1]), credit)
        assert Decimal(u["topup_reimbursement"]) == to_card, key
        assert Decimal(u["balance_credit"]) == credit - to_card, key
        assert (u["wrongful_429s"], u["review"]) == (a["wrongful_429s"], a["review"])
        assert u["restricted_minutes"] == minutes.get(key[0], 0)
    assert set(by_key) <= set(agg) | {(u, c) for (u, c) in by_key if minutes.get(u)}
    assert any(Decimal(u["topup_reimbursement"]) > 0 for u in run.users)


def restricted_minutes(run: Run) -> dict[str, int]:
    """DECISIONS 'Restricted minutes' from abuse.jsonl and the truth's classes."""
    fp = {
        (f["user_id"], f["ts"])
        for f in run.truth("abuse_false_positives")
        if f["detail"] == "false_positive"
    }
    clears: dict[str, list[int]] = defaultdict(list)
    for a in run.abuse:
        if a["action"] == "clear":
            clears[a["user_id"]].append(us(a["ts"]))
    spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for a in run.abuse:
        if a["action"] in ("throttle", "block", "penalty") and (a["user_id"], a["ts"]) in fp:
            t = us(a["ts"])
            if a["until"] is not None:
                end = us(a["until"])
            else:
                cs = sorted(clears[a["user_id"]])
                end = cs[bisect_left(cs, t + 1)]
            spans[a["user_id"]].append((t, end))
    out = {}
    for user, ss in spans.items():
        total, cur = 0, None
        for lo, hi in sorted(ss):
            if cur is None or lo > cur[1]:
                total += 0 if cur is None else cur[1] - cur[0]
                cur = [lo, hi]
            else:
                cur[1] = max(cur[1], hi)
        assert cur is not None
        total += cur[1] - cur[0]
        out[user] = int((Decimal(total) / 60_000_000).quantize(Decimal(1), ROUND_HALF_UP))
    return out


# -- arguments


@pytest.mark.parametrize(
    "kwargs",
    [
        {"users": 0},
        {"days": 0},
        {"users": -3},
        {"requests_per_user_day": 0},
        {"requests_per_user_day": float("nan")},
        {"workers": 0},
        {"seed": "x"},
    ],
)
def test_bad_arguments_raise_input_error(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    args = {"users": 2, "days": 1, "seed": 1, **kwargs}
    with pytest.raises(InputError):
        generate(tmp_path / "x", **args)
    assert not (tmp_path / "x").exists()


def test_out_dir_must_be_new_empty_or_a_previous_output(tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        generate(afile, users=1, days=1, seed=1)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        generate(busy, users=1, days=1, seed=1)
    assert (busy / "notes.txt").read_text() == "mine"
    again = tmp_path / "again"
    generate(again, users=3, days=2, seed=1)
    generate(again, users=2, days=1, seed=2)  # a previous output is replaced
    assert (
        orjson.loads((again / "_truth" / "summary.json").read_bytes())["parameters"]["users"] == 2
    )


def test_a_naive_start_is_utc(tmp_path: Path) -> None:
    r = generate(tmp_path / "n", users=2, days=1, seed=1, start=datetime(2025, 3, 1, 12))
    summary = orjson.loads((r.truth_dir / "summary.json").read_bytes())
    assert summary["period"] == {
        "start": "2025-03-01T12:00:00.000000Z",
        "end": "2025-03-02T12:00:00.000000Z",
    }


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# found by hypothesis: a sparse user refused with no history of their own after day one
@example(users=5, days=3, seed=4_909_849_858, rate=1.25)
@given(
    users=st.integers(1, 12),
    days=st.integers(1, 9),
    seed=st.integers(0, 2**40),
    rate=st.floats(0.5, 30),
)
def test_any_small_run_passes_its_own_self_check(
    tmp_path: Path, users: int, days: int, seed: int, rate: float
) -> None:
    d = tmp_path / f"h{users}-{days}-{seed}-{rate}"
    r = generate(d, users=users, days=days, seed=seed, requests_per_user_day=rate)
    for name, n in r.files.items():
        assert n == (d / name).read_bytes().count(b"\n") - name.endswith(".csv")
    rejects = jsonl(d / "_truth" / "rejects.jsonl")
    assert len(rejects) == 5
