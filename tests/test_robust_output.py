"""Issue 11, crashes and half-written files: legal rows whose sums are huge, result
types every format must write, policy numbers out of range, and writes that fail
(a full disk, a folder named as --out) without leaving half a file behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import Cli, write

TS = "2025-06-01T10:0{}:00Z"


def _led(entry: str, minute: int, kind: str, amount: str, request: str | None = None) -> str:
    row: dict[str, Any] = {
        "entry_id": entry,
        "ts": TS.format(minute),
        "user_id": "u1",
        "kind": kind,
        "amount": amount,
        "currency": "usd",
    }
    if request:
        row["request_id"] = request
    return json.dumps(row)


def _huge_logs(folder: Path) -> list[str]:
    """Legal rows whose sums outgrow DECIMAL(18,6): top-ups of 999,999,999,999, a
    charge billed three times, and 18-digit token counts."""
    big = "999999999999"
    ledger = [
        _led("e1", 0, "topup", big),
        _led("e2", 1, "topup", big),
        *(_led(f"c{i}", 2, "charge", "-" + big, "r1") for i in range(3)),
    ]
    request = {
        "ts": TS.format(2),
        "request_id": "r1",
        "user_id": "u1",
        "status": 200,
        "input_tokens": 999999999999999999,
        "cached_tokens": 0,
        "output_tokens": 999999999999999999,
        "model": "m1",
    }
    price = {
        "model": "m1",
        "input_per_mtok": "1.5",
        "output_per_mtok": "6",
        "effective_from": "2025-01-01T00:00:00Z",
    }
    return [
        str(write(folder / "ledger.jsonl", "\n".join(ledger) + "\n")),
        str(write(folder / "requests.jsonl", json.dumps(request) + "\n")),
        str(write(folder / "prices.jsonl", json.dumps(price) + "\n")),
    ]


def test_huge_legal_amounts_do_not_stop_the_analysis(tmp_path: Path, cli: Cli) -> None:
    files = _huge_logs(tmp_path / "logs")
    db = str(tmp_path / "w.db")
    assert cli("ingest", *files, "--db", db).code == 0
    detect = cli("detect", "--db", db)
    assert detect.code in (0, 5), detect.stderr
    impact = cli("impact", "--db", db, "-f", "json")
    assert impact.code in (0, 5), impact.stderr
    rows = json.loads(impact.stdout)
    assert rows[0]["duplicate_excess"] == "1999999999998.000000"
    assert cli("report", "--db", db).code in (0, 5)
    inv = cli(
        "investigate", *files, "--db", str(tmp_path / "i.db"), "--out-dir", str(tmp_path / "o")
    )
    assert inv.code in (0, 5), inv.stderr
