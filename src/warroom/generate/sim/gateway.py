"""The gateway: decides each request (served, failed or refused), logs it, and
hands what it served to billing."""

from __future__ import annotations

import heapq
from bisect import bisect_left
from decimal import ROUND_CEILING, Decimal
from math import exp

from warroom.generate.rows import AbuseAction, RequestRow
from warroom.generate.sim.state import UserState
from warroom.generate.units import DAY, HOUR, MIN, SEC, off_second


class Gateway(UserState):
    """Requests in arrival order (the hot path: kept flat)."""

    def arrive(self, t: int) -> None:
        """The gateway's decision on a request at t.

        It refuses (429) in this order: a standing block, a standing throttle
        (80% of requests), a prepaid balance at t <= 0, ordinary rate limiting.
        """
        rand = self.rng.random
        self.n_requests += 1
        rid = f"{self.rid_prefix}{self.n_requests:05d}"
        cum = self.model_cum
        model = (
            self.model_names[bisect_left(cum, rand() * cum[-1])]
            if len(cum) > 1
            else self.model_names[0]
        )
        status = 200
        err: str | None = None
        inp = cached = out = 0
        outage = self.outage
        if outage[0] <= t < outage[1]:
            status, err = 503, "overloaded"  # the billing outage (and its lead-up)
        elif self.block is not None and not self._unpriceable_refusal(self.block, t):
            status, err = 429, "abuse_blocked"
        elif (
            self.throttle is not None
            and rand() < 0.8
            and not self._unpriceable_refusal(self.throttle, t)
        ):
            status, err = 429, "rate_limit_exceeded"
        elif self.prepaid and self.bal <= 0 and not self.unpriceable(t):
            status, err = 429, self.quota_code
            self._refuse_for_balance(t, rid)
        elif rand() < 0.003:
            status, err = 429, "rate_limit_exceeded"  # ordinary rate limiting
        else:
            status, err, inp, cached, out = self._serve(model)
        if status == 200:
            lat_us = 150_000 + int(out * (5000 + 15000 * rand()) + 100_000 * rand())
            if t + lat_us >= outage[0] and t < outage[1]:
                # still running when the outage begins: it fails, unbilled
                status, err, inp, cached, out = 503, "overloaded", 0, 0, 0
        elif status == 429:
            lat_us = 2000 + int(13000 * rand())
            if err == "abuse_blocked" or err == "rate_limit_exceeded":
                standing = self.block or self.throttle
                if standing is not None and standing.cls == "false_positive":
                    self.wrongly_refused(t, rid)
        else:
            lat_us = 50_000 + int(19_950_000 * rand())
        if status < 400:
            cost = self.cfg.prices.at(model, self.cur, t).expected(inp, cached, out)
            self.served_by_day.setdefault(t // DAY, []).append(cost)
        req = RequestRow(t, rid, status, err, model, inp, cached, out, lat_us / 1000)
        self.requests.append(req)
        if self.track:
            self._count_for_abuse_rule(t, inp + out)
        if status == 200:  # billed when it completes
            c = t + lat_us
            self.seq += 1
            heapq.heappush(self.heap, (c + 1 if c % SEC == 0 else c, 2, self.seq, "done", req))
        elif status == 500 and inp:
            self._bill_failed(req, lat_us)

    def _unpriceable_refusal(self, standing: AbuseAction, t: int) -> bool:
        """A refusal by a false-positive restriction that would need other users'
        history to price (see ``unpriceable``)."""
        return standing.cls == "false_positive" and self.unpriceable(t)

    def _serve(self, model: str) -> tuple[int, str | None, int, int, int]:
        """An admitted request: status, error code and its input, cached and
        output tokens (a failure logs no output tokens)."""
        rand = self.rng.random
        gauss = self.rng.gauss
        cached = out = 0
        if model == "orbit-embed":
            inp = 50 + int(exp(gauss(6.0, 0.7)))
        else:
            inp = 20 + int(exp(gauss(self.in_mu, 0.9)))
            if rand() < 0.7:
                cached = int(inp * (0.4 + 0.55 * rand()))
            out = 1 + int(exp(gauss(self.out_mu, 0.9)))
        r = rand()
        if r < 0.024:
            if r < 0.012:
                return 500, "internal_error", inp, cached, 0
            if r < 0.02:
                return 503, "overloaded", 0, 0, 0
            return 400, "invalid_request", 0, 0, 0
        return 200, None, inp, cached, out

    def _refuse_for_balance(self, t: int, rid: str) -> None:
        """A prepaid balance at or below zero: wrongful if the served
        counterfactual balance is positive; a payg user may top up in reaction,
        a subscriber spends a banked reset."""
        self.wrongly_refused(t, rid)
        if rid in self.wrongful:
            self.quota_wrongful = True
        if self.quota is not None:
            self._spend_banked_reset(t)
            return
        if not self.payg or self.topup_pending:
            return
        rand = self.rng.random
        if self.hand_to_mouth:
            ts = t + 2 * MIN + int(rand() * 28 * MIN)
            amount = max(
                Decimal(1),
                (self.spend * Decimal(str(round(0.3 + 0.5 * rand(), 2)))).quantize(
                    Decimal("0.01"), ROUND_CEILING
                ),
            )
        elif rand() < 0.5:
            ts = t + 2 * MIN + int(rand() * (3 * HOUR - 2 * MIN))
            amount = self.topup_amount(1, 6)
        else:
            return
        if ts < self.tl.end:
            self.topup_pending = True
            self.schedule_row(ts, "topup", amount)

    def _spend_banked_reset(self, t: int) -> None:
        """A subscriber refused for their quota spends a banked reset, 5 to 60
        minutes later, while any is left. Billing decides, as it lands, whether
        the fault made them spend it (a wrongful refusal in the window it ends)."""
        if not self.banked or self.reset_pending:
            return
        ts = t + 5 * MIN + int(self.rng.random() * 55 * MIN)
        if ts < self.tl.end - HOUR:
            self.banked -= 1
            self.reset_pending = True
            self.schedule_row(ts, "reset", None, balance_after=self.quota, initiated_by="user")

    def _count_for_abuse_rule(self, t: int, tok: int) -> None:
        """What the abuse rule will look at (kept for users with actions only)."""
        self.req_ts.append(t)
        self.req_tok.append(tok)
        h = t // HOUR
        b = self.hourly.get(h)
        if b is None:
            self.hourly[h] = [1, tok]
        else:
            b[0] += 1
            b[1] += tok

    def _bill_failed(self, req: RequestRow, lat_us: int) -> None:
        """A 500 that completes in the failed-request incident is charged."""
        c = off_second(req.ts + lat_us)
        if self.tl.failed[0] <= c < self.tl.failed[1] and self.plan.name not in self.cfg.spared:
            self.push(c, 2, "done", req)
