"""Running totals of the truth for summary.json: rows per detector (first,
last, per hour, per detail), impact totals per currency, roles and plans, and
the rows of each log per clock hour (coverage gaps are global)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from warroom.generate.rows import LedgerEntry, RequestRow
from warroom.generate.units import HOUR, ZERO
from warroom.generate.write.files import DETECTORS


class TruthStats:
    """Running totals for summary.json; ``merge`` adds another writer's."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {d: 0 for d in DETECTORS}
        self.first: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.hourly: dict[str, dict[int, int]] = {d: {} for d in DETECTORS}
        self.detail: dict[str, dict[str, int]] = {d: {} for d in DETECTORS}
        self.totals: dict[str, dict[str, Any]] = {}
        self.roles: dict[str, int] = {}
        self.plans: dict[str, int] = {}
        self.req_lo: int | None = None
        self.req_hi: int | None = None
        self.led_lo: int | None = None
        self.led_hi: int | None = None
        # rows per clock hour (hour index -> count): coverage gaps are global
        self.req_hours: dict[int, int] = {}
        self.led_hours: dict[int, int] = {}

    def finding(self, det: str, ts: int, detail: str | None) -> None:
        self.count[det] += 1
        if det not in self.first or ts < self.first[det]:
            self.first[det] = ts
        if det not in self.last or ts > self.last[det]:
            self.last[det] = ts
        h = self.hourly[det]
        h[ts // HOUR] = h.get(ts // HOUR, 0) + 1
        if detail is not None:
            self.detail[det][detail] = self.detail[det].get(detail, 0) + 1

    def logged(self, requests: list[RequestRow], written: list[LedgerEntry]) -> None:
        """One user's rows as written, both in time order: their clock hours and
        the span of each log."""
        hours = self.req_hours
        for r in requests:
            h = r.ts // HOUR
            hours[h] = hours.get(h, 0) + 1
        hours = self.led_hours
        for e in written:
            h = e.ts // HOUR
            hours[h] = hours.get(h, 0) + 1
        if requests:
            lo_r, hi_r = requests[0].ts, requests[-1].ts
            self.req_lo = lo_r if self.req_lo is None else min(self.req_lo, lo_r)
            self.req_hi = hi_r if self.req_hi is None else max(self.req_hi, hi_r)
        if written:
            lo_l, hi_l = written[0].ts, written[-1].ts
            self.led_lo = lo_l if self.led_lo is None else min(self.led_lo, lo_l)
            self.led_hi = hi_l if self.led_hi is None else max(self.led_hi, hi_l)

    def forget(self, det: str) -> None:
        self.count[det] = 0
        self.first.pop(det, None)
        self.last.pop(det, None)
        self.hourly[det] = {}
        self.detail[det] = {}

    def merge(self, o: TruthStats) -> None:
        for d in DETECTORS:
            self.count[d] += o.count[d]
            for k, n in o.hourly[d].items():
                self.hourly[d][k] = self.hourly[d].get(k, 0) + n
            for k2, n in o.detail[d].items():
                self.detail[d][k2] = self.detail[d].get(k2, 0) + n
        for d, ts in o.first.items():
            self.first[d] = min(ts, self.first.get(d, ts))
        for d, ts in o.last.items():
            self.last[d] = max(ts, self.last.get(d, ts))
        for cur, t in o.totals.items():
            mine = self.totals.setdefault(cur, dict.fromkeys(t, 0))
            for col, v in t.items():
                mine[col] += v
        for counts, theirs in ((self.roles, o.roles), (self.plans, o.plans)):
            for name, n in theirs.items():
                counts[name] = counts.get(name, 0) + n
        self.req_lo = _opt(min, self.req_lo, o.req_lo)
        self.req_hi = _opt(max, self.req_hi, o.req_hi)
        self.led_lo = _opt(min, self.led_lo, o.led_lo)
        self.led_hi = _opt(max, self.led_hi, o.led_hi)
        for hours, their_hours in ((self.req_hours, o.req_hours), (self.led_hours, o.led_hours)):
            for h, n in their_hours.items():
                hours[h] = hours.get(h, 0) + n

    def impact(self, row: dict[str, Any]) -> None:
        t = self.totals.setdefault(
            row["currency"],
            {
                "users": 0,
                "duplicate_excess": ZERO,
                "failed_request_charges": ZERO,
                "abuse_penalty_excess": ZERO,
                "overbilled": ZERO,
                "credit_amount": ZERO,
                "balance_credit": ZERO,
                "topup_reimbursement": ZERO,
                "compensation": ZERO,
                "banked_resets": 0,
                "wrongful_429s": 0,
                "restricted_minutes": 0,
                "review": 0,
            },
        )
        t["users"] += 1
        for k in (
            "duplicate_excess",
            "failed_request_charges",
            "abuse_penalty_excess",
            "overbilled",
            "credit_amount",
            "balance_credit",
            "topup_reimbursement",
            "compensation",
        ):
            t[k] += Decimal(row[k])
        t["banked_resets"] += row["banked_resets"]
        t["wrongful_429s"] += row["wrongful_429s"]
        t["restricted_minutes"] += row["restricted_minutes"]
        t["review"] += int(row["review"])


def _opt(f: Callable[[int, int], int], a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else f(a, b)
