"""The per-user simulation: a discrete-event run of one user against the
gateway, billing and the abuse system, each an actor of its own module over
the user's shared state (``state``): ``planner`` plans the events, ``gateway``
decides requests, ``billing`` writes the ledger, ``abuse`` restricts.

The simulation knows by construction what each injected fault cost: it tracks
the real and the counterfactual balance as it goes, and marks each row with
what it meant (``cause``, ``excess``) for the audit to check.
"""

from __future__ import annotations

import heapq

from warroom.generate.sim.abuse import AbuseSystem
from warroom.generate.sim.billing import Billing
from warroom.generate.sim.gateway import Gateway
from warroom.generate.sim.planner import Planner
from warroom.generate.sim.state import Event
from warroom.generate.users import SimulatedUser, WorldConfig

__all__ = ["simulate_user"]


class _UserSim(Planner, Gateway, Billing, AbuseSystem):
    """A discrete-event simulation of one user against the gateway and billing.

    Events are processed in (ts, priority) order: abuse actions and their ends
    (0) before request arrivals (1) before ledger rows and completions (2), so a
    restriction standing from t covers a request at t, and a request at t never
    sees a ledger row at t (DECISIONS: balance at t replays ts < t).
    """

    def run(self) -> SimulatedUser:
        arrivals = self.schedule()
        self.track = any(ev[3] == "act" for ev in self.heap)
        heap = self.heap
        pop = heapq.heappop
        dispatch = self.dispatch
        arrive = self.arrive
        for t in arrivals:
            while heap and (heap[0][0] < t or (heap[0][0] == t and heap[0][1] < 1)):
                dispatch(pop(heap))
            arrive(t)
        while heap:
            dispatch(pop(heap))
        return SimulatedUser(
            index=self.index,
            uid=self.uid,
            plan=self.plan,
            role=self.role,
            org=self.org,
            requests=self.requests,
            entries=self.entries,
            actions=self.actions,
            wrongful=self.wrongful,
            unbilled=self.unbilled,
            reimbursable=self.reimbursable,
        )

    def dispatch(self, ev: Event) -> None:
        ts, _, _, kind, payload = ev
        if kind == "done":
            self.complete(ts, payload)
        elif kind == "row":
            self.apply(payload)
        elif kind == "act":
            self.act(ts, payload)
        elif kind == "end":
            self.end(ts, payload)
        elif kind == "refund":
            self.refund(ts)


def simulate_user(cfg: WorldConfig, i: int) -> SimulatedUser:
    """User ``i`` of the world, simulated from its own random stream."""
    return _UserSim(cfg, i).run()
