"""The incident timeline: every window of an injected fault derives from the
start and the number of days alone, so every user of a world lives through the
same incidents."""

from __future__ import annotations

from dataclasses import dataclass

from warroom.generate.units import DAY, HOUR, MIN

OUTAGE_LEAD = 30 * MIN  # requests fail from this long before the billing outage


@dataclass(frozen=True)
class IncidentTimeline:
    """The windows of the injected incidents, in microseconds since the epoch."""

    start: int
    end: int
    days: int
    split: int  # ledger-1: ts < split + 1 h; ledger-2: ts >= split - 1 h
    dup: tuple[int, int]  # duplicate deductions for payg charges in [lo, hi)
    refund_at: int | None  # some duplicates are refunded from here
    failed: tuple[int, int]  # 500s completing in here are charged
    price_change: int
    stale: tuple[int, int]  # the old atlas-large price is still billed in here
    abuse: tuple[int, int] | None  # the abuse system misfires on normal users
    global_reset: int | None  # every subscription quota is reset (mid abuse incident)
    # the billing system is down for this clock hour: the gateway answers 503 to
    # every request from OUTAGE_LEAD before it, and no ledger row is written in it
    # (what was due is written when it is back): a coverage gap in the ledger
    outage: tuple[int, int] | None = None
    # duplicates pause for these hours inside ``dup`` (two episodes of one fault)
    dup_pause: tuple[int, int] | None = None

    def duplicating(self, c: int) -> bool:
        """Whether a payg charge at c gets a duplicate."""
        paused = self.dup_pause is not None and self.dup_pause[0] <= c < self.dup_pause[1]
        return self.dup[0] <= c < self.dup[1] and not paused

    @classmethod
    def build(cls, start: int, days: int, dup_pause_hours: int = 0) -> IncidentTimeline:
        end = start + days * DAY

        def day(k: int) -> int:
            return start + max(0, min(days - 1, k)) * DAY

        dup_lo = day(round(days * 0.4)) + 16 * HOUR  # 09:00 Pacific (PDT)
        dup = (dup_lo, min(dup_lo + 12 * HOUR, end))
        refund_at = dup[1] + 30 * HOUR if dup[1] + 30 * HOUR < end - 2 * HOUR else None
        failed_lo = day(round(days * 0.25)) + 2 * HOUR
        change = start + 12 * HOUR if days == 1 else day(max(1, round(days * 0.6)))
        abuse_lo = start + max(2, round(days * 0.7)) * DAY + 6 * HOUR
        abuse = None
        reset = None
        if abuse_lo < end - 8 * HOUR:
            abuse = (abuse_lo, min(abuse_lo + 36 * HOUR, end - 6 * HOUR))
            if abuse_lo + 30 * HOUR < end - 2 * HOUR:
                reset = abuse_lo + 30 * HOUR
        split = start + days * DAY // 2
        stale = (change, min(change + 3 * HOUR, end))
        failed = (failed_lo, failed_lo + 6 * HOUR)
        busy = [dup, failed, stale, (split - HOUR, split + HOUR)]
        busy += [w for w in (abuse,) if w is not None]
        busy += [(t, t + 4 * HOUR) for t in (refund_at, reset) if t is not None]
        # the hour from 03:00 on the latest day (but the first) where it stays an
        # hour clear of every other incident
        outage: tuple[int, int] | None = None
        for k in range(days - 1, 0, -1):
            lo = start + k * DAY + 3 * HOUR
            if lo + 2 * HOUR <= end and not any(
                lo - OUTAGE_LEAD - HOUR < b_hi and b_lo < lo + 2 * HOUR for b_lo, b_hi in busy
            ):
                outage = (lo, lo + HOUR)
                break
        return cls(
            start=start,
            end=end,
            days=days,
            split=split,
            dup=dup,
            refund_at=refund_at,
            failed=failed,
            price_change=change,
            stale=stale,
            abuse=abuse,
            global_reset=reset,
            outage=outage,
            dup_pause=_pause(dup, dup_pause_hours),
        )


def _pause(dup: tuple[int, int], hours: int) -> tuple[int, int] | None:
    """``hours`` in the middle of the duplicate window, None for 0 (or too long)."""
    lo, hi = dup
    if hours <= 0 or hours * HOUR >= hi - lo - 2 * HOUR:
        return None
    start = lo + (hi - lo - hours * HOUR) // 2
    return (start, start + hours * HOUR)
