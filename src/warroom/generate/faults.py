"""Faults injected after a user's simulation, touching only what is written:
a lost ledger write, request lines the gateway never logged, and a ledger-2
copy of an entry that disagrees with ledger-1."""

from __future__ import annotations

import random
from bisect import bisect_right

from warroom.generate.timeline import IncidentTimeline
from warroom.generate.units import HOUR, ZERO
from warroom.generate.users import QUOTA_CODE, SimulatedUser


def lose_a_write(u: SimulatedUser, rng: random.Random) -> None:
    """A charge the billing system counted but never wrote: the next row's
    balance_after breaks the chain. Chosen so that exactly one written row sits
    between it and the next reset (any reading of the chain rule then flags that
    one row), and no quota refusal falls in the gap (so the gateway's view and
    the replay never disagree about a decision)."""
    es = u.entries
    refused = [r.ts for r in u.requests if r.status == 429 and r.error_code == QUOTA_CODE["units"]]
    options = []
    for k in range(len(es) - 2):
        e, nxt, reset = es[k], es[k + 1], es[k + 2]
        if e.kind == "charge" and e.cause is None and nxt.kind != "reset" and reset.kind == "reset":
            i = bisect_right(refused, e.ts)
            if i == len(refused) or refused[i] >= reset.ts:
                options.append(e)
    if options:
        e = rng.choice(options)
        e.lost = True
        u.unbilled.add(e.rid or "")


def drop_requests(u: SimulatedUser, rng: random.Random) -> None:
    """Request lines the gateway never logged: their charges become orphans."""
    charged: dict[str, int] = {}
    for e in u.entries:
        if e.kind == "charge" and e.rid is not None:
            charged[e.rid] = charged.get(e.rid, 0) + 1
    single = [
        e
        for e in u.entries
        if e.kind == "charge" and e.cause is None and charged.get(e.rid or "") == 1
    ]
    for e in rng.sample(single, min(len(single), rng.randint(1, 2))):
        assert e.rid is not None
        u.dropped.add(e.rid)
        e.cause, e.excess = "orphan_charge", ZERO


def make_conflict(u: SimulatedUser, tl: IncidentTimeline, rng: random.Random) -> bool:
    """One entry_id whose copy in ledger-2 carries another amount (ledger-1 wins);
    False when the user has no charge in ledger-1."""
    lo, hi = tl.split - HOUR, tl.split + HOUR
    charges = [e for e in u.entries if e.kind == "charge" and not e.lost and e.ts < hi]
    overlap = [e for e in charges if e.ts >= lo]
    pool = overlap or charges
    if pool:
        e = rng.choice(pool)
        assert e.amount is not None
        e.conflict = e.amount * 2
        return True
    return False
