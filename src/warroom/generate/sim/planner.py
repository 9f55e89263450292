"""What is planned before a user's simulation runs: when their requests
arrive, the scheduled ledger rows of their plan, and the scenario of their
role (an abuse misfire, a real burst, a runaway script, a billing bug window)."""

from __future__ import annotations

from bisect import bisect_left

from warroom.generate.rows import AbuseAction
from warroom.generate.sim.state import UserState
from warroom.generate.units import DAY, HOUR, MIN, SEC, off_second
from warroom.generate.users import FP_RULE


class Planner(UserState):
    """Arrivals, scheduled rows and the role's scenario, pushed as events."""

    def schedule(self) -> list[int]:
        """Every planned event on the heap; returns the request arrivals, sorted."""
        rng = self.rng
        tl = self.tl
        arrivals = self.plan_demand_and_roles()
        # sign-up rows: the first ledger row precedes every request
        if self.quota is not None:
            self.schedule_row(self.signup, "reset", None, balance_after=self.quota)
            ts = self.signup + 7 * DAY
            while ts < tl.end:
                if tl.global_reset is None or ts != tl.global_reset:
                    self.schedule_row(ts, "reset", None, balance_after=self.quota)
                ts += 7 * DAY
            if tl.global_reset is not None and tl.global_reset > self.signup:
                self.schedule_row(tl.global_reset, "reset", None, balance_after=self.quota)
        else:
            self.schedule_row(self.signup, "grant", self.grant)
            if self.plan.name == "free":
                ts = self.signup + 7 * DAY
                while ts < tl.end:
                    self.schedule_row(ts, "grant", self.grant)
                    ts += 7 * DAY
            elif self.plan.name == "payg" and not self.hand_to_mouth and rng.random() < 0.8:
                self.schedule_row(self.signup + MIN, "topup", self.topup_amount(1, 8))
        if self.plan.name == "payg" and self.refunded and tl.refund_at is not None:
            self.push(self.claim(tl.refund_at + rng.randrange(0, 4 * HOUR)), 2, "refund", None)
        return arrivals

    def plan_demand(self) -> list[int]:
        """The user's ordinary requests, day by day from sign-up."""
        rng = self.rng
        tl = self.tl
        arrivals: list[int] = []
        first_day = (self.signup - tl.start) // DAY
        hours = range(24)
        for d in range(first_day, tl.days):
            day_start = tl.start + d * DAY
            weekday = (day_start // DAY + 3) % 7
            mean = self.daily * (0.6 if weekday >= 5 else 1.1)
            n = max(0, round(rng.gauss(mean, mean**0.5 + 0.5)))
            if not n:
                continue
            floor = self.signup + MIN
            rand = rng.random
            for h in rng.choices(hours, cum_weights=self.hour_cum, k=n):
                ts = day_start + h * HOUR + int(rand() * HOUR)
                if ts > floor:
                    arrivals.append(ts + 1 if ts % SEC == 0 else ts)
        arrivals.sort()
        return arrivals

    def plan_demand_and_roles(self) -> list[int]:
        """The demand, with what the user's role adds to it or plans around it."""
        tl = self.tl
        arrivals = self.plan_demand()
        role = self.role
        if role.startswith("fp_") and tl.abuse is not None:
            self._plan_misfire(arrivals, tl.abuse)
        elif role == "warranted" and arrivals:
            arrivals = self._plan_burst(arrivals)
        elif role == "new_restricted" and arrivals:
            self._plan_new_account_risk(arrivals[0])
        elif role == "flagged":
            self._plan_flags(arrivals)
        elif role == "runaway" and tl.days >= 4:
            arrivals = self._plan_runaway(arrivals)
        if role == "cache_bug" or role == "underbilled" or role == "unbilled":
            rng = self.rng
            lo = tl.start + rng.randrange(0, max(1, tl.days - 1)) * DAY + rng.randrange(DAY)
            self.windows[role] = (lo, lo + (48 if role == "cache_bug" else 8) * HOUR)
        return arrivals

    def _window(self, arrivals: list[int], lo: int, hi: int) -> int | None:
        """A claimed second in [lo, hi) with a day of history before it and
        3 hours of data after it; None if there is none."""
        tl = self.tl
        lo = max(lo, arrivals[0] + 26 * HOUR if arrivals else tl.end)
        hi = min(hi, tl.end - 3 * HOUR)
        return self.claim(self.rng.randrange(lo, hi)) if lo < hi else None

    def _plan_misfire(self, arrivals: list[int], abuse: tuple[int, int]) -> None:
        """A false-positive penalty, throttle or block during the abuse incident."""
        rng = self.rng
        # the story's worst case, guaranteed in every run: a weekly quota drained
        # at 20x from the first hours of the misfire, before the global reset and
        # for at least 10 hours after it (the mass reset does not stop the drain)
        worst = self.forced_plan == "plus"
        if worst:
            t = self._window(arrivals, abuse[0], abuse[0] + 4 * HOUR)
        else:
            t = self._window(arrivals, *abuse)
        if t is None:
            return
        if self.role == "fp_penalty":
            a = AbuseAction(
                t,
                "penalty",
                FP_RULE,
                round(rng.uniform(0.9, 0.99), 3),
                "false_positive",
                rng.randrange((40 if worst else 30) * HOUR, 48 * HOUR, SEC),
                multiplier=20.0 if worst else rng.choice((10.0, 12.5, 15.0, 20.0)),
                use_until=rng.random() < 0.7,
            )
        elif self.role == "fp_throttle":
            a = AbuseAction(
                t,
                "throttle",
                FP_RULE,
                round(rng.uniform(0.8, 0.95), 3),
                "false_positive",
                rng.randrange(8 * HOUR, 24 * HOUR, SEC),
            )
        else:
            a = AbuseAction(
                t,
                "block",
                FP_RULE,
                round(rng.uniform(0.9, 0.99), 3),
                "false_positive",
                rng.randrange(6 * HOUR, 16 * HOUR, SEC),
                use_until=False,
            )
        self.push(a.ts, 0, "act", a)

    def _plan_burst(self, arrivals: list[int]) -> list[int]:
        """A real burst, far above 3x the busiest hour of the week before, and
        the warranted action on it."""
        rng = self.rng
        t = self._window(arrivals, self.tl.start, self.tl.end)
        if t is None:
            return arrivals
        base = self.busiest_hour_count(arrivals, t)
        n = 4 * base + 10 + rng.randrange(20)
        burst = [off_second(t - 55 * MIN + rng.randrange(54 * MIN)) for _ in range(n)]
        arrivals = sorted(arrivals + burst)
        kind = rng.choices(("throttle", "block", "penalty"), weights=(45, 30, 25))[0]
        a = AbuseAction(
            t,
            kind,
            "burst_detector",
            round(rng.uniform(0.95, 1.0), 3),
            "warranted",
            rng.randrange(2 * HOUR, 12 * HOUR, SEC),
            multiplier=10.0 if kind == "penalty" else None,
            use_until=kind != "block",
        )
        self.push(a.ts, 0, "act", a)
        return arrivals

    def _plan_new_account_risk(self, first: int) -> None:
        """A restriction on an account too new for the rule to judge."""
        rng = self.rng
        t = first + rng.randrange(HOUR, 20 * HOUR)
        if t >= self.tl.end - 3 * HOUR:
            return
        kind = rng.choice(("throttle", "penalty", "block"))
        a = AbuseAction(
            self.claim(t),
            kind,
            "new_account_risk",
            round(rng.uniform(0.7, 0.9), 3),
            "insufficient_history",
            rng.randrange(2 * HOUR, 10 * HOUR, SEC),
            multiplier=15.0 if kind == "penalty" else None,
            use_until=kind != "block",
        )
        self.push(a.ts, 0, "act", a)

    def _plan_flags(self, arrivals: list[int]) -> None:
        """One or two flags, which restrict nothing."""
        rng = self.rng
        for _ in range(rng.randint(1, 2)):
            t = self._window(arrivals, self.tl.start, self.tl.end)
            if t is not None:
                a = AbuseAction(
                    t,
                    "flag",
                    "shared_key_heuristic",
                    round(rng.uniform(0.5, 0.8), 3),
                    "any",
                    0,
                    use_until=False,
                )
                self.push(a.ts, 0, "act", a)

    def _plan_runaway(self, arrivals: list[int]) -> list[int]:
        """A script loops for a day: real usage, twenty times the user's normal."""
        rng = self.rng
        tl = self.tl
        day_start = tl.start + rng.randrange(3, tl.days) * DAY
        extra = round(20 * self.daily)
        rand = rng.random
        return sorted(
            arrivals
            + [
                day_start + h * HOUR + 1 + int(rand() * (HOUR - 2))
                for h in rng.choices(range(24), cum_weights=self.hour_cum, k=extra)
            ]
        )

    @staticmethod
    def busiest_hour_count(arrivals: list[int], t: int) -> int:
        """Requests of the busiest clock hour that the rule would look at for t."""
        lo = t - HOUR - 7 * DAY
        hi = t - HOUR
        counts: dict[int, int] = {}
        for ts in arrivals[bisect_left(arrivals, lo - HOUR) : bisect_left(arrivals, hi)]:
            h = ts // HOUR
            if h * HOUR >= lo and (h + 1) * HOUR <= hi:
                counts[h] = counts.get(h, 0) + 1
        return max(counts.values(), default=0)
