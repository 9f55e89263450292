"""The truth of each injected episode's bracketed window (issue 13.2), kept while
users are written: the first and last erroneous row, and the last *clean
comparable* row before it and the first after it, as ``warroom.episodes`` reads
them (a ledger ``charge`` of a (plan, currency) among the erroneous rows' — and of
one of their models for overbilling — that neither is nor shares a request with
a row of that fault).

The episodes: each stretch of duplicate deductions (two when the window pauses),
and the stale-price billing. Written into summary.json only for worlds made with
the report scenario's options (``dup_pause_hours``, ``spared_plans``), so older
worlds keep their bytes.
"""

from __future__ import annotations

from typing import Any

from warroom.generate.rows import Finding, LedgerEntry
from warroom.generate.timeline import IncidentTimeline
from warroom.generate.units import MIN, iso_us
from warroom.generate.users import SimulatedUser, WorldConfig

#: a duplicate lands up to 40 ms after its charge: past the window's end by that
_LATE = MIN

Key = tuple[str, str, str | None]  # plan, currency, model (overbilling only)


def report_scenario(cfg: WorldConfig) -> bool:
    """Whether the world was made with the report scenario's options."""
    return bool(cfg.spared) or cfg.timeline.dup_pause is not None


def episode_windows(tl: IncidentTimeline) -> dict[str, tuple[str, int, int]]:
    """name -> (fault, from, until) of every injected episode with a bracket truth."""
    dup = (
        [tl.dup]
        if tl.dup_pause is None
        else [
            (tl.dup[0], tl.dup_pause[0]),
            (tl.dup_pause[1], tl.dup[1]),
        ]
    )
    out = {
        f"duplicate_deductions_{k}": ("duplicate_charges", lo, hi)
        for k, (lo, hi) in enumerate(dup, 1)
    }
    out["stale_price_billing"] = ("billing_mismatch:overbilled", *tl.stale)
    return out


def _fault(x: Finding) -> str:
    if x.detector in ("billing_mismatch", "abuse_false_positives"):
        return f"{x.detector}:{x.detail}"
    return x.detector


class Brackets:
    """Per episode: erroneous ts range and keys; per key the clean candidates."""

    def __init__(self, tl: IncidentTimeline) -> None:
        self.windows = episode_windows(tl)
        self.first: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.keys: dict[str, set[Key]] = {n: set() for n in self.windows}
        # name -> key -> the latest clean ts before the window
        self.before: dict[str, dict[Key, int]] = {n: {} for n in self.windows}
        # name -> key -> clean ts inside the window (a request made before a price
        # change, a charge just past a duplicate) and the earliest one after it
        self.inside: dict[str, dict[Key, list[int]]] = {n: {} for n in self.windows}
        self.after: dict[str, dict[Key, int]] = {n: {} for n in self.windows}

    def user(self, u: SimulatedUser, written: list[LedgerEntry], findings: list[Finding]) -> None:
        models = {r.request_id: r.model for r in u.requests if r.request_id not in u.dropped}
        for name, (fault, lo, hi) in self.windows.items():
            mine = [x for x in findings if _fault(x) == fault]
            bad_e = {x.entry_id for x in mine}
            bad_r = {x.request_id for x in mine if x.request_id is not None}
            with_model = fault == "billing_mismatch:overbilled"

            def key(e: LedgerEntry, with_model: bool = with_model) -> Key:
                return (u.plan.name, e.currency, models.get(e.rid or "") if with_model else None)

            by_eid = {e.eid: e for e in written}
            for x in mine:
                if x.ts is not None and lo <= x.ts < hi + _LATE and x.entry_id in by_eid:
                    self.first[name] = min(x.ts, self.first.get(name, x.ts))
                    self.last[name] = max(x.ts, self.last.get(name, x.ts))
                    self.keys[name].add(key(by_eid[x.entry_id]))
            for e in written:
                if e.kind != "charge" or e.eid in bad_e or (e.rid is not None and e.rid in bad_r):
                    continue
                k = key(e)
                if e.ts < lo:
                    self.before[name][k] = max(e.ts, self.before[name].get(k, e.ts))
                elif e.ts < hi + _LATE:
                    self.inside[name].setdefault(k, []).append(e.ts)
                else:
                    self.after[name][k] = min(e.ts, self.after[name].get(k, e.ts))

    def merge(self, o: Brackets) -> None:
        for n in self.windows:
            if n in o.first:
                self.first[n] = min(o.first[n], self.first.get(n, o.first[n]))
                self.last[n] = max(o.last[n], self.last.get(n, o.last[n]))
            self.keys[n] |= o.keys[n]
            for k, ts in o.before[n].items():
                self.before[n][k] = max(ts, self.before[n].get(k, ts))
            for k, ts in o.after[n].items():
                self.after[n][k] = min(ts, self.after[n].get(k, ts))
            for k, tss in o.inside[n].items():
                self.inside[n].setdefault(k, []).extend(tss)

    def truth(self) -> dict[str, Any]:
        """name -> fault, clean_before, first, last, clean_after (ISO, microseconds)."""
        out: dict[str, Any] = {}
        for n, (fault, _, _) in self.windows.items():
            if n not in self.first:
                continue
            first, last, keys = self.first[n], self.last[n], self.keys[n]
            before = [ts for k, ts in self.before[n].items() if k in keys]
            after = [ts for k, ts in self.after[n].items() if k in keys]
            for k, tss in self.inside[n].items():
                if k in keys:
                    before += [t for t in tss if t < first]
                    after += [t for t in tss if t > last]
            out[n] = {
                "fault": fault,
                "clean_before": iso_us(max(before)) if before else None,
                "first": iso_us(first),
                "last": iso_us(last),
                "clean_after": iso_us(min(after)) if after else None,
            }
        return out
