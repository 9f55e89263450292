"""Hand-computed fixtures: each pins one rule of DESIGN.md section 3 and 4 at its edge.

Every expected number here is worked out by hand in the comment beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.conftest import Cli
from warroom import db
from warroom.detect import detect, run_one
from warroom.impact import Policy, impact, load_policy
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
    initiated_by: str | None = None,
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
        ("initiated_by", initiated_by),
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
    detect(con, load_pack())
    return stored_findings(con, detector)


def stored_findings(con, detector: str) -> list[tuple[object, ...]]:
    """The rows ``detect`` stored for ``detector``, in a stable order."""
    return con.execute(
        "SELECT user_id, CAST(ts AS VARCHAR), request_id, entry_id, amount, detail FROM findings "
        "WHERE detector = ? ORDER BY ts, entry_id, request_id",
        [detector],
    ).fetchall()


def charge(eid: str, ts: str, rid: str, amount: str = "-0.002", **kw: object) -> dict[str, object]:
    return led(eid, ts, "charge", amount, rid=rid, **kw)  # type: ignore[arg-type]


T0 = "2025-06-10T10:00:00Z"


# ----------------------------------------------------------------------------- the cases

#: one file per detection, each a mapping of case name -> case (see cases/*.yml)
CASES = Path(__file__).with_name("cases")

#: case fields -> the parameters of req(), led() and abuse(); a field left out takes
#: the helper's default (user u1, plan payg, model m, status 200, 1000 input, 0 cached
#: and 500 output tokens, currency usd; a charge without an amount is -0.002)
REQUEST_FIELDS = {
    "request_id": "rid",
    "ts": "ts",
    "user_id": "user",
    "status": "status",
    "error_code": "error",
    "input_tokens": "inp",
    "cached_tokens": "cached",
    "output_tokens": "out",
    "plan": "plan",
}
LEDGER_FIELDS = {
    "entry_id": "eid",
    "ts": "ts",
    "kind": "kind",
    "amount": "amount",
    "user_id": "user",
    "request_id": "rid",
    "currency": "currency",
    "balance_after": "balance_after",
    "idempotency_key": "key",
    "initiated_by": "initiated_by",
}
ABUSE_FIELDS = {
    "ts": "ts",
    "action": "action",
    "user_id": "user",
    "until": "until",
    "multiplier": "multiplier",
}
CASE_KEYS = {
    "requests",
    "ledger",
    "abuse",
    "prices",
    "policy",
    "ingest_again",
    "ingest_force",
    "expect",
}
#: an ``ingest_again`` file's rows are of the kind its name starts with (else ledger
#: rows); a price list is its CSV text
AGAIN_KINDS = {
    "requests": (REQUEST_FIELDS, req),
    "abuse": (ABUSE_FIELDS, abuse),
}
FINDING_COLUMNS = ["user_id", "ts", "request_id", "entry_id", "amount", "detail"]
STEPS = {"m": timedelta(minutes=1), "h": timedelta(hours=1)}


def _expand(rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Rows as written, a ``repeat`` row as ``repeat`` rows ``every`` apart ({i} numbered)."""
    for row in rows:
        if "repeat" not in row:
            yield row
            continue
        row = dict(row)
        count, first, every = row.pop("repeat"), row.pop("first", 0), row.pop("every")
        step = int(every[:-1]) * STEPS[every[-1]]
        start = datetime.fromisoformat(row["ts"])
        for k in range(count):
            fields = {f: v.format(i=first + k) if isinstance(v, str) else v for f, v in row.items()}
            yield fields | {"ts": (start + k * step).strftime("%Y-%m-%dT%H:%M:%SZ")}


def _rows(
    rows: list[dict[str, Any]], fields: dict[str, str], make: Callable[..., dict[str, object]]
) -> list[dict[str, object]]:
    out = []
    for row in _expand(rows):
        unknown = set(row) - set(fields)
        assert not unknown, f"unknown field(s) {sorted(unknown)} in {row}"
        kwargs = {fields[f]: v for f, v in row.items()}
        if make is led:  # a reset has no amount
            kwargs.setdefault("amount", "-0.002" if kwargs["kind"] == "charge" else None)
        out.append(make(**kwargs))
    return out


def _cell(got: object, want: object) -> object:
    """The expected cell in the type of the actual one: money is written as a string."""
    assert not isinstance(want, float), f"write money as a string, not {want!r}"
    if isinstance(got, Decimal) and isinstance(want, str):
        return Decimal(want)
    return want


def _check(what: str, got: list[dict[str, Any]], want: Any, columns: list[str]) -> None:
    if isinstance(want, list):
        want = {"rows": want}
    columns = want.get("columns", columns)
    actual = [
        [str(r[c]) if isinstance(r[c], datetime | date) else r[c] for c in columns] for r in got
    ]
    expected = []
    for k, want_row in enumerate(want["rows"]):
        assert len(want_row) == len(columns), f"{what}: {want_row} is not one cell per {columns}"
        like = actual[k] if k < len(actual) else [None] * len(columns)
        expected.append([_cell(g, w) for g, w in zip(like, want_row, strict=True)])
    assert actual == expected, what


def _load_cases() -> Iterator[Any]:
    for path in sorted(CASES.glob("*.yml")):
        for name, case in yaml.safe_load(path.read_text()).items():
            unknown = set(case) - CASE_KEYS
            assert not unknown, f"{path.name}: {name}: unknown key(s) {sorted(unknown)}"
            yield pytest.param(case, id=f"{path.stem}/{name}")


@pytest.mark.parametrize("case", list(_load_cases()))
def test_hand_computed_case(tmp_path: Path, case: dict[str, Any]) -> None:
    """Given these rows, each detection (or impact) named under ``expect`` returns these rows."""
    con = world(
        tmp_path,
        _rows(case.get("requests", []), REQUEST_FIELDS, req),
        _rows(case.get("ledger", []), LEDGER_FIELDS, led),
        _rows(case.get("abuse", []), ABUSE_FIELDS, abuse),
        prices=PRICES + case.get("prices", ""),
    )
    for name, rows in case.get("ingest_again", {}).items():
        again = tmp_path / "logs" / name
        fields, make = next(
            (v for k, v in AGAIN_KINDS.items() if name.startswith(k)), (LEDGER_FIELDS, led)
        )
        if isinstance(rows, str):  # a price list: CSV text
            again.write_text(rows)
        else:
            lines = _rows(rows, fields, make)
            again.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines))
        ingest(con, [again])
    # files already ingested (the world's own, or an ingest_again one), replaced with --force
    for name in case.get("ingest_force", []):
        report = ingest(con, [tmp_path / "logs" / name], force=True)
        assert [f.status for f in report.files] == ["replaced"], name
    pack = load_pack()
    detected = False  # detect runs once per case, and impact then reads what it stored
    for name, want in case["expect"].items():
        if name == "runs":
            for run in want:
                table = run_one(
                    con, pack, run["query"], run.get("params", {}), since=run.get("since")
                )
                _check(run["query"], table.to_pylist(), run, table.column_names)
        elif name == "impact":
            policy = Policy()
            if "policy" in case:
                (tmp_path / "policy.toml").write_text(case["policy"])
                policy = load_policy(tmp_path / "policy.toml")
            table = impact(con, pack, policy, stored_findings=detected)
            _check(name, table.to_pylist(), want, table.column_names)
        else:
            if not detected:
                detect(con, pack)
                detected = True
            rows = stored_findings(con, name)
            got = [dict(zip(FINDING_COLUMNS, row, strict=True)) for row in rows]
            _check(name, got, want, FINDING_COLUMNS)


# ----------------------------------------------------------------------------- policies


@pytest.mark.parametrize(
    "text, message",
    [
        ("[credit]\nx = 1\n", "unknown section [credit]"),
        ("[credits]\ngoodwil_percent = 5\n", "unknown key 'goodwil_percent'"),
        ("[credits]\ngoodwill_percent = 0.5\n", "never a float"),
        ('[credits]\noverbilled = "yes"\n', "must be true or false"),
        ('[incident]\nstart = "yesterday"\n', "is not a timestamp"),
        ("not toml at all [", "not valid TOML"),
        # numbers out of range name their key (issue 11 #20)
        ('[credits]\ngoodwill_percent = "NaN"\n', "goodwill_percent must be a finite number"),
        ('[credits]\ngoodwill_percent = "sNaN"\n', "goodwill_percent must be a finite number"),
        ('[credits]\ngoodwill_percent = "Infinity"\n', "goodwill_percent must be a finite"),
        ('[credits]\ngoodwill_percent = "-inf"\n', "goodwill_percent must be a finite"),
        ('[credits]\ngoodwill_percent = "1e30"\n', "goodwill_percent must be at most 1,000"),
        ("[credits]\ngoodwill_percent = 1" + "0" * 40 + "\n", "goodwill_percent must be at most"),
        ('[credits]\ngoodwill_percent = "0.0000001"\n', "at most 6 decimal places"),
        ('[credits]\nminimum_credit = {usd = "1e30"}\n', "minimum_credit.usd must be at most"),
        ('[credits]\nminimum_credit = {usd = "NaN"}\n', "minimum_credit.usd must be a finite"),
        ('[credits]\nper_wrongful_429 = {eur = "Infinity"}\n', "per_wrongful_429.eur must be"),
        ("[credits]\nper_restricted_hour = {usd = 1" + "0" * 30 + "}\n", "per_restricted_hour.usd"),
        ('[credits]\nper_restricted_hour = {usd = "1e-30"}\n', "at most 6 decimal places"),
        ("[credits]\ngrant_banked_resets = 1" + "0" * 30 + "\n", "grant_banked_resets must be"),
    ],
)
def test_bad_policy_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    from warroom.impact import PolicyError

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


def test_user_shows_the_served_counterfactual_beside_the_counterfactual(tmp_path: Path) -> None:
    from warroom.detect import user_timeline

    con = world(
        tmp_path,
        [
            req("h1", "2025-06-09T12:00:00Z", out=0),  # the estimate: 0.001
            req("r1", "2025-06-10T09:00:00Z"),
            req("x1", T0, status=429, error="insufficient_quota", inp=0, out=0),
        ],
        [
            led("g", "2025-06-09T09:00:00Z", "grant", "0.003"),
            charge("e1", "2025-06-10T09:00:01Z", "r1"),  # 0.001
            charge("e2", "2025-06-10T09:00:02Z", "r1"),  # dup: -0.001, cf 0.001
            led("t", "2025-06-10T11:00:00Z", "topup", "1"),  # after x1 cost 0.001: served 0
        ],
    )
    rows = user_timeline(con, load_pack(), "u1").to_pylist()
    ledger = [
        (r["id"], r["cf_balance"], r["served_cf_balance"]) for r in rows if r["source"] == "ledger"
    ]
    assert ledger[-2:] == [("e2", D("0.001"), D("0.001")), ("t", D("1.001"), D("1.000"))]
