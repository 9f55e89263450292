"""The writer of consecutive users: simulates each, injects the post-simulation
faults, audits what will be written, cross-checks, and writes the logs and the
per-detector truth to one set of streams."""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson

from warroom.generate.audit import AuditResult, audit_user, cross_check
from warroom.generate.faults import drop_requests, lose_a_write, make_conflict
from warroom.generate.rows import AbuseRow, Finding, LedgerEntry, request_line, user_head
from warroom.generate.sim import simulate_user
from warroom.generate.units import HOUR, ZERO, iso_us, money_text
from warroom.generate.users import SimulatedUser, WorldConfig
from warroom.generate.write.brackets import Brackets, report_scenario
from warroom.generate.write.files import JSONL_FILES, STREAMS
from warroom.generate.write.stats import TruthStats

#: conflict carry-over never crosses a block of users, and a chunk handed to a
#: worker is a whole number of blocks: so the output does not depend on workers
BLOCK = 64

#: the lines of requests.jsonl that no reader can take, with the reason
MALFORMED_LINES = (
    ("truncated_json", '{"ts": "%s", "request_id": "req-bad-1", "user_id": "u-bad", "sta'),
    ("not_json", "GET /v1/responses 200 upstream=10.2.3.4 -- proxy access log line"),
    (
        "bad_status",
        '{"ts": "%s", "request_id": "req-bad-3", "user_id": "%s", "plan": "payg", '
        '"model": "atlas-mini", "status": "abc", "error_code": null, '
        '"input_tokens": 10, "cached_tokens": 0, "output_tokens": 5, '
        '"latency_ms": 12.5}',
    ),
    ("json_array", '["%s", "req-bad-4", "%s", 200]'),
    (
        "missing_user_id",
        '{"ts": "%s", "request_id": "req-bad-5", "plan": "payg", '
        '"model": "atlas-mini", "status": 200, "error_code": null, '
        '"input_tokens": 10, "cached_tokens": 0, "output_tokens": 5, '
        '"latency_ms": 12.5}',
    ),
)


def _abuse_rows(u: SimulatedUser) -> list[AbuseRow]:
    rows = []
    for a in u.actions:
        rows.append(AbuseRow(a.ts, a.until, a.action, a.rule, a.score, a.multiplier))
        if a.clear_at is not None:
            rows.append(AbuseRow(a.clear_at, None, "clear", a.rule, None, None))
    rows.sort(key=lambda r: r.ts)
    return rows


def _abuse_line(uid: str, a: AbuseRow) -> str:
    return orjson.dumps(
        {
            "ts": iso_us(a.ts),
            "user_id": uid,
            "action": a.action,
            "rule": a.rule,
            "score": a.score,
            "until": None if a.until is None else iso_us(a.until),
            "multiplier": a.multiplier,
        }
    ).decode()


def _sort_key(x: Finding) -> tuple[Any, ...]:
    rid, eid = x.request_id, x.entry_id
    return (x.detector, x.ts, rid is None, rid or "", eid is None, eid or "")


def _finding_line(uid: str, x: Finding) -> bytes:
    return orjson.dumps(
        {
            "detector": x.detector,
            "user_id": uid,
            "currency": x.currency,
            "ts": iso_us(x.ts),
            "request_id": x.request_id,
            "entry_id": x.entry_id,
            "amount": None if x.amount is None else money_text(x.amount),
            "detail": x.detail,
        }
    )


def _record_balances(entries: list[LedgerEntry]) -> None:
    """What the billing system recorded as balance_after, lost writes included."""
    bal = ZERO
    for e in entries:
        if e.kind == "reset":
            assert e.balance_after is not None
            bal = e.balance_after
        else:
            assert e.amount is not None
            bal += e.amount
            e.balance_after = bal


class Sink:
    """Writes the rows and the truth of consecutive users to one set of streams,
    keeping the counts, the totals and the rejects (line numbers are local to
    these streams until ``absorb`` moves them into another sink)."""

    def __init__(self, cfg: WorldConfig, files: dict[str, IO[bytes]], bad_after: list[int]) -> None:
        self.cfg = cfg
        self.files = files
        self.bad_after = bad_after
        self.stats = TruthStats()
        self.rows = {name: 0 for name in JSONL_FILES}
        self.rejects: list[dict[str, Any]] = []
        self.conflicts = 0
        self.conflicts_due = 0  # a chosen user without a charge passes it on
        self.done = 0
        # the bracket truth is kept for worlds of the report scenario only
        self.brackets = Brackets(cfg.timeline) if report_scenario(cfg) else None

    def run(self, lo: int, hi: int, progress: Callable[[int, int], None] | None) -> None:
        """Users lo..hi-1, each followed by the malformed lines placed after it."""
        step = max(1, self.cfg.users // 100)
        for i in range(lo, hi):
            if i % BLOCK == 0:
                self.conflicts_due = 0
            self.user(simulate_user(self.cfg, i))
            for k, after in enumerate(self.bad_after):
                if after == i:
                    self.malformed(k, i)
            self.done += 1
            if progress is not None and (self.done % step == 0 or i + 1 == hi):
                progress(self.done, self.cfg.users)

    def absorb(self, part: Sink, d: Path) -> None:
        """Append a worker's streams and totals after ours."""
        for name in STREAMS:
            with open(d / name, "rb") as fh:
                shutil.copyfileobj(fh, self.files[name], 1 << 20)
        for r in part.rejects:
            self.rejects.append({**r, "line": r["line"] + self.rows["requests.jsonl"]})
        for name in JSONL_FILES:
            self.rows[name] += part.rows[name]
        self.stats.merge(part.stats)
        if self.brackets is not None and part.brackets is not None:
            self.brackets.merge(part.brackets)
        self.conflicts += part.conflicts
        self.done += part.done
        shutil.rmtree(d, ignore_errors=True)

    def _write(self, name: str, lines: list[str]) -> None:
        if lines:
            lines.append("")
            self.files[name].write("\n".join(lines).encode())
            self.rows[name] += len(lines) - 1

    def malformed(self, k: int, after_user: int) -> None:
        """The k-th malformed line, after user after_user's rows."""
        kind, template = MALFORMED_LINES[k]
        ts = iso_us(self.cfg.timeline.start + (k + 1) * HOUR + 123_000)
        uid = self.cfg.uid(after_user)
        text = template.replace("%s", ts, 1).replace("%s", uid, 1)
        self._write("requests.jsonl", [text])
        self.rejects.append(
            {
                "file": "requests.jsonl",
                "line": self.rows["requests.jsonl"],
                "kind": kind,
                "raw": text,
            }
        )

    def user(self, u: SimulatedUser) -> None:
        """One simulated user: faults, audit, cross-check, then every line."""
        cfg = self.cfg
        rng = random.Random(f"warroom-generate:{cfg.seed}:{u.index}:post")
        u.entries.sort(key=lambda e: (e.ts, e.eid))
        _record_balances(u.entries)
        if u.role == "lost_write":
            lose_a_write(u, rng)
        if u.role == "orphan":
            drop_requests(u, rng)
        if u.index in cfg.conflicts:
            self.conflicts_due += 1
        if self.conflicts_due and make_conflict(u, cfg.timeline, rng):
            self.conflicts_due -= 1
            self.conflicts += 1
        written = [e for e in u.entries if not e.lost]
        requests = (
            [r for r in u.requests if r.request_id not in u.dropped] if u.dropped else u.requests
        )
        abuse = _abuse_rows(u)
        audit = audit_user(u, cfg, written, abuse, requests)
        cross_check(u, audit, written)
        if self.brackets is not None:
            self.brackets.user(u, written, audit.findings)

        head = user_head(u.uid, u.org, u.plan.name)
        self._write("requests.jsonl", [request_line(r, head) for r in requests])
        self.stats.logged(requests, written)
        self._write_ledgers(u.uid, written, audit)
        self._write("abuse.jsonl", [_abuse_line(u.uid, a) for a in abuse])
        self._write_truth(u, audit)

    def _write_ledgers(self, uid: str, written: list[LedgerEntry], audit: AuditResult) -> None:
        """ledger-1 up to an hour past the split, ledger-2 from an hour before
        it; a conflicting copy goes to ledger-2 only (and is a finding)."""
        l1: list[str] = []
        l2: list[str] = []
        tl = self.cfg.timeline
        lo, hi = tl.split - HOUR, tl.split + HOUR
        for e in written:
            line = e.line(uid)
            if e.ts < hi:
                l1.append(line)
            if e.conflict is not None:
                l2.append(e.line(uid, e.conflict))
                audit.findings.append(
                    Finding("ledger_conflicts", e.currency, e.ts, e.rid, e.eid, None, "amount")
                )
            elif e.ts >= lo:
                l2.append(line)
        self._write("ledger-1.jsonl", l1)
        self._write("ledger-2.jsonl", l2)

    def _write_truth(self, u: SimulatedUser, audit: AuditResult) -> None:
        stats = self.stats
        audit.findings.sort(key=_sort_key)
        files = self.files
        for x in audit.findings:
            stats.finding(x.detector, x.ts, x.detail)
            files[x.detector].write(_finding_line(u.uid, x) + b"\n")
        if audit.impact is not None:
            files["_users"].write(orjson.dumps(audit.impact) + b"\n")
            stats.impact(audit.impact)
        stats.roles[u.role] = stats.roles.get(u.role, 0) + 1
        stats.plans[u.plan.name] = stats.plans.get(u.plan.name, 0) + 1
