"""One simulated user: who they are (drawn once from the seed) and the state the
gateway, billing and the abuse system share while the simulation runs.

The draws happen in a fixed order from the user's own random stream, so a
user's rows do not depend on any other user's.
"""

from __future__ import annotations

import heapq
import random
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from math import exp
from typing import Any

from warroom.generate.rows import AbuseAction, LedgerEntry, RequestRow
from warroom.generate.timeline import OUTAGE_LEAD
from warroom.generate.units import DAY, HOUR, SEC, ZERO, q6
from warroom.generate.users import (
    BANKED_RESETS,
    BILLING_PLANS,
    LOCAL_HOURS,
    PLAN_BY_NAME,
    QUOTA_CODE,
    ROLE_RATES,
    TZ_OFFSETS,
    USAGE_NORM,
    BillingPlan,
    WorldConfig,
)

#: a scheduled event: ts, priority, sequence number, kind, payload
Event = tuple[int, int, int, str, Any]


def _draw_plan(rng: random.Random, role: str, forced_plan: str) -> BillingPlan:
    if forced_plan:
        return PLAN_BY_NAME[forced_plan]
    if role == "fp_penalty":
        # mostly quotas drained 10-20x; sometimes an uncapped postpaid bill
        return PLAN_BY_NAME[rng.choices(("plus", "pro", "enterprise"), weights=(60, 15, 25))[0]]
    if role == "lost_write":
        return PLAN_BY_NAME["plus" if rng.random() < 0.85 else "pro"]
    if role == "dup_victim":
        return PLAN_BY_NAME["payg"]
    if role == "heavy_quota":
        return PLAN_BY_NAME["plus" if rng.random() < 0.7 else "pro"]
    plan = rng.choices(BILLING_PLANS, weights=[p.weight for p in BILLING_PLANS])[0]
    if role == "new_restricted" and plan.name == "enterprise":
        plan = PLAN_BY_NAME["payg"]
    return plan


class UserState:
    """A user and the state of their simulation; the actors (planner, gateway,
    billing, abuse system) are mixins over it."""

    def __init__(self, cfg: WorldConfig, i: int) -> None:
        self.cfg = cfg
        self.tl = cfg.timeline
        self.rng = rng = random.Random(f"warroom-generate:{cfg.seed}:{i}")
        self.index = i
        self.uid = cfg.uid(i)
        role, _, forced_plan = cfg.forced.get(i, "").partition(":")
        r = rng.random()
        if not role:
            role = "normal"
            for name, rate in ROLE_RATES:
                if r < rate:
                    role = name
                    break
                r -= rate
        self.role = role
        self.forced_plan = forced_plan
        plan = _draw_plan(rng, role, forced_plan)
        if plan.name in cfg.spared:  # a plan the incident spares lives no harmful scenario
            self.role = role = "normal"
        self._take_plan(plan)
        self._draw_habits()
        self._draw_signup()
        self._start_state()

    def _take_plan(self, plan: BillingPlan) -> None:
        cfg, rng, role = self.cfg, self.rng, self.role
        self.plan = plan
        self.cur = plan.currency
        self.quota_code = QUOTA_CODE[self.cur]
        # quotas are sized for 40 requests a user-day and scale with the rate asked
        # for, so that any rate lives through the same incidents
        scale = Decimal(str(round(cfg.rate / 40, 6)))
        self.quota = (
            None
            if plan.quota is None
            else max(Decimal(1), (plan.quota * scale).quantize(Decimal(1), ROUND_HALF_UP))
        )
        self.grant = (
            plan.grant if plan.name != "free" else max(Decimal("0.01"), q6(plan.grant * scale))
        )
        self.prepaid = plan.prepaid
        self.payg = plan.name == "payg"
        self.rid_prefix = f"req-{self.uid}-"
        self.eid_prefix = f"le-{self.uid}-"
        self.org = f"org-{(self.index * 7919) % 97:03d}" if plan.name == "enterprise" else None
        # a hand-to-mouth payg user tops up a little each time a request is refused
        self.hand_to_mouth = role == "dup_victim"
        self.auto_topup = plan.name == "payg" and rng.random() < 0.4 and not self.hand_to_mouth
        self.refunded = plan.name == "payg" and rng.random() < 0.35

    def _draw_habits(self) -> None:
        """How much, when in the day, which models, how large, and what a day costs."""
        cfg, rng, role, plan = self.cfg, self.rng, self.role, self.plan
        activity = min(5.0, max(0.1, rng.lognormvariate(-0.18, 0.6)))
        if role.startswith("fp_") or role == "flagged" or self.index in cfg.forced:
            activity = max(activity, 1.0)  # steady users with a real baseline
        if role == "fp_penalty" and self.forced_plan == "plus":
            activity = max(activity, 2.0)  # a heavy user, whom the misfire drains
        if role == "heavy_quota":
            activity = 5.0  # drains their own quota, with no fault of the service
        self.daily = cfg.rate * USAGE_NORM * plan.usage * activity
        tz = rng.choice(TZ_OFFSETS)
        self.hour_cum: list[float] = []
        acc = 0.0
        for h in range(24):
            acc += LOCAL_HOURS[(h + tz) % 24]
            self.hour_cum.append(acc)
        self.model_names = [m for m, _ in plan.models]
        self.model_cum: list[float] = []
        acc = 0.0
        for _, w in plan.models:
            acc += w * rng.uniform(0.5, 1.5)
            self.model_cum.append(acc)
        self.in_mu = rng.uniform(7.8, 9.4)  # coding agents send large contexts
        self.out_mu = rng.uniform(5.4, 6.4)
        # what a typical day costs this user: payg funding is sized by it
        inp = 20 + int(exp(self.in_mu + 0.405))  # the mean of the lognormal draws
        out = 1 + int(exp(self.out_mu + 0.405))
        per_request = ZERO
        prev = 0.0
        for name, cum in zip(self.model_names, self.model_cum, strict=True):
            cost = cfg.prices.at(name, self.cur, self.tl.start).expected(inp, inp // 2, out)
            per_request += cost * Decimal(str(round((cum - prev) / self.model_cum[-1], 3)))
            prev = cum
        self.spend = max(Decimal("0.01"), per_request * Decimal(str(round(self.daily, 3))))

    def _draw_signup(self) -> None:
        rng, tl = self.rng, self.tl
        if self.role == "new_restricted" and tl.days >= 3:
            self.signup = tl.start + rng.randrange(DAY, (tl.days - 1) * DAY, SEC)
        elif rng.random() < 0.03 and tl.days >= 3 and self.role == "normal":
            self.signup = tl.start + rng.randrange(DAY, (tl.days - 1) * DAY, SEC)
        else:
            self.signup = tl.start + rng.randrange(0, 6 * HOUR, SEC)

    def _start_state(self) -> None:
        tl = self.tl
        self.heap: list[Event] = []
        self.seq = 0
        self.n_entries = 0
        self.n_requests = 0
        self.taken: set[int] = set()  # whole seconds used by scheduled rows
        self.entries: list[LedgerEntry] = []
        self.requests: list[RequestRow] = []
        self.actions: list[AbuseAction] = []
        self.req_ts: list[int] = []
        self.req_tok: list[int] = []
        self.hourly: dict[int, list[int]] = {}
        self.bal = ZERO  # replay of the ledger rows so far (what the gateway sees)
        self.acc = ZERO  # excess since the last reset: counterfactual = bal + acc
        self.attributed = ZERO  # reimbursable already given since the last reset
        # estimated costs of the wrongful 429s since the last reset: served = bal + acc - spent
        self.spent = ZERO
        self.served_by_day: dict[int, list[Decimal]] = {}  # expected charges of status < 400
        self.dup_left: dict[str, Decimal] = {}
        self.topup_pending = False
        self.banked = BANKED_RESETS if self.quota is not None else 0
        self.reset_pending = False  # a banked reset is on its way
        self.quota_wrongful = False  # a wrongful quota refusal since the last reset
        self.track = False  # keep per-hour counts for the abuse rule (users with actions)
        self.penalty: AbuseAction | None = None
        self.throttle: AbuseAction | None = None
        self.block: AbuseAction | None = None
        self.wrongful: set[str] = set()
        self.unbilled: set[str] = set()
        self.reimbursable: dict[str, Decimal] = {}
        self.windows: dict[str, tuple[int, int]] = {}
        # when requests fail for the billing outage (never, without one)
        self.outage = (
            (tl.outage[0] - OUTAGE_LEAD, tl.outage[1])
            if tl.outage is not None
            else (1 << 62, 1 << 62)
        )

    # -- scheduling, shared by every actor

    def push(self, ts: int, prio: int, kind: str, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (ts, prio, self.seq, kind, payload))

    def claim(self, ts: int) -> int:
        """A free whole second at or after ts for a scheduled row."""
        ts = -(-ts // SEC) * SEC
        while ts in self.taken:
            ts += SEC
        self.taken.add(ts)
        return ts

    def schedule_row(self, ts: int, kind: str, amount: Decimal | None, **kw: Any) -> LedgerEntry:
        """A ledger row at the first free whole second from ts (after an outage)."""
        at = self.claim(ts)
        out = self.tl.outage
        if out is not None and out[0] <= at < out[1]:
            at = self.claim(out[1])  # billing is down: the row is written when it is back
        e = LedgerEntry(at, self.new_entry_id(), kind, amount, self.cur, **kw)
        self.entries.append(e)
        self.push(e.ts, 2, "row", e)
        return e

    def wrongly_refused(self, t: int, rid: str) -> None:
        """A 429 at t that the served counterfactual (bal + acc - spent) did not
        warrant, if it is > 0: wrongful, and it would have been paid for."""
        if self.bal + self.acc - self.spent > 0:
            self.wrongful.add(rid)
            self.spent += self.estimated_cost(t)

    def unpriceable(self, t: int) -> bool:
        """Would a refusal at t be wrongful and need other users' history to price?
        The simulation runs one user at a time and cannot know that history, so
        the gateway serves such a request instead of refusing it (rare: a user with
        no successful request in the 7 days before, after the world's first day)."""
        if self.bal + self.acc - self.spent <= 0:
            return False
        day = t // DAY
        if day * DAY <= self.tl.start:
            return False
        return not any(self.served_by_day.get(d) for d in range(day - 7, day))

    def estimated_cost(self, t: int) -> Decimal:
        """The lower median of the expected charges of this user's successful
        requests over the 7 UTC days before t's day (0 with none: only on the
        world's first day, where no user of the plan has any either)."""
        day = t // DAY
        values = sorted(x for d in range(day - 7, day) for x in self.served_by_day.get(d, ()))
        if not values:
            if day * DAY > self.tl.start:
                raise RuntimeError("generator self-check: a 429 priced by other users' history")
            return ZERO
        return values[(len(values) + 1) // 2 - 1]

    def new_entry_id(self) -> str:
        """The next entry_id: the user's entries are numbered as they are made."""
        self.n_entries += 1
        return f"{self.eid_prefix}{self.n_entries:05d}"

    def topup_amount(self, lo: float, hi: float) -> Decimal:
        """lo to hi days of this user's spend, in whole 5 usd."""
        days = Decimal(str(round(self.rng.uniform(lo, hi), 2)))
        return max(Decimal(5), (self.spend * days / 5).to_integral_value(ROUND_CEILING) * 5)
