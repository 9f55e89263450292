"""Billing: the ledger rows it writes for completed requests (with the billing
bugs of the incident: stale prices, cache and output not billed, unbilled
requests, penalties, duplicate deductions), top-ups, refunds and resets, and
the balance the gateway sees as each row lands."""

from __future__ import annotations

from decimal import Decimal

from warroom.generate.prices import CHANGED_MODEL, ModelPrice
from warroom.generate.rows import AbuseAction, LedgerEntry, RequestRow
from warroom.generate.sim.state import UserState
from warroom.generate.units import MIN, SEC, TOLERANCE, ZERO, off_second, q6


class Billing(UserState):
    """Ledger writes, and the real and counterfactual balances they move."""

    def apply(self, e: LedgerEntry) -> None:
        """A ledger row becomes visible to the gateway at its ts."""
        if e.kind == "reset":
            assert e.balance_after is not None
            if e.initiated_by == "user":
                self.reset_pending = False
                if self.quota_wrongful:
                    e.cause = "spent_banked_reset"  # to restore: the fault made them spend it
            self.quota_wrongful = False
            self.bal = e.balance_after
            self.acc = ZERO
            self.attributed = ZERO
            self.spent = ZERO
            return
        assert e.amount is not None
        if e.kind == "topup":
            self.topup_pending = False
            if self.bal < 0 and self.bal + self.acc - self.spent >= 0:
                r = max(ZERO, min(e.amount, self.acc - self.attributed))
                self.reimbursable[e.eid] = r
                self.attributed += r
        elif e.kind == "refund" and e.rid is not None:
            left = self.dup_left.get(e.rid, ZERO)
            r = min(e.amount, left)
            self.dup_left[e.rid] = left - r
            self.acc -= r
        self.bal += e.amount
        self.acc += e.excess

    def complete(self, c: int, req: RequestRow) -> None:
        """Billing at the charge's ts c for the request req."""
        tl = self.tl
        model, inp, cached, out = req.model, req.input_tokens, req.cached_tokens, req.output_tokens
        b_cached, b_out = cached, out
        if self.windows:  # the role's billing bug
            billed = self._billed_tokens(c, req)
            if billed is None:
                self.unbilled.add(req.request_id)
                return
            b_cached, b_out = billed
        prices = self.cfg.prices
        price = prices.at(model, self.cur, req.ts)
        billed_price = price
        if (
            model == CHANGED_MODEL
            and req.ts >= tl.price_change
            and tl.stale[0] <= c < tl.stale[1]
            and self.plan.name not in self.cfg.spared
        ):
            billed_price = prices.at(model, self.cur, tl.price_change - 1)
        charged = billed_price.expected(inp, b_cached, b_out)
        pen = self.penalty
        if pen is not None:
            assert pen.multiplier is not None
            charged = q6(charged * Decimal(str(pen.multiplier)))
        tokens = (inp, b_cached, b_out)
        self.n_entries += 1
        eid = f"{self.eid_prefix}{self.n_entries:05d}"
        e = LedgerEntry(c, eid, "charge", -charged, self.cur, req.request_id, tokens)
        self.entries.append(e)
        wrong = req.status >= 400 or pen is not None or billed_price is not price
        if wrong or b_cached != cached or b_out != out:  # else: a correct charge
            self._intend(e, req, charged, pen, price, billed_price)
        self.bal -= charged
        self.acc += e.excess
        if self.payg:
            self._after_payg_charge(c, req.request_id, charged, tokens)

    def _billed_tokens(self, c: int, req: RequestRow) -> tuple[int, int] | None:
        """The cached and output tokens billing counts for a charge at c (the
        role's billing bug may drop them); None for a request left unbilled."""
        b_cached, b_out = req.cached_tokens, req.output_tokens
        win = self.windows
        if (
            req.status < 400
            and "unbilled" in win
            and win["unbilled"][0] <= c < win["unbilled"][1]
            and self.rng.random() < 0.3
        ):
            return None
        if "cache_bug" in win and win["cache_bug"][0] <= c < win["cache_bug"][1]:
            b_cached = 0
        if "underbilled" in win and win["underbilled"][0] <= c < win["underbilled"][1]:
            b_out = 0
        return b_cached, b_out

    @staticmethod
    def _intend(
        e: LedgerEntry,
        req: RequestRow,
        charged: Decimal,
        pen: AbuseAction | None,
        price: ModelPrice,
        billed_price: ModelPrice,
    ) -> None:
        """What the charge means: its cause and the excess that counts in the
        counterfactual balance."""
        inp, cached, out = req.input_tokens, req.cached_tokens, req.output_tokens
        assert e.tokens is not None
        _, b_cached, b_out = e.tokens
        if req.status >= 400:
            e.cause, e.excess = "charged_failed_request", charged
        elif pen is not None:
            if pen.cls == "false_positive":
                e.cause, e.excess = "penalty_fp", charged - price.expected(inp, cached, out)
            else:
                e.cause = "penalty"
        elif billed_price is not price or b_cached != cached or b_out != out:
            diff = charged - price.expected(inp, cached, out)
            if diff > TOLERANCE:
                e.cause, e.excess = "overbilled", diff
            elif -diff > TOLERANCE:
                e.cause = "underbilled"

    def _after_payg_charge(
        self, c: int, rid: str, charged: Decimal, tokens: tuple[int, int, int]
    ) -> None:
        """A duplicate deduction in the incident window, and an automatic top-up
        when the balance runs low."""
        tl = self.tl
        if tl.duplicating(c):
            d = LedgerEntry(
                off_second(c + 3000 + int(37000 * self.rng.random())),
                self.new_entry_id(),
                "charge",
                -charged,
                self.cur,
                rid,
                tokens,
            )
            self.entries.append(d)
            d.cause, d.excess = "duplicate", charged
            self.dup_left[rid] = self.dup_left.get(rid, ZERO) + charged
            self.push(d.ts, 2, "row", d)
        if self.auto_topup and not self.topup_pending and self.bal < self.spend * 3 / 10:
            ts = c + MIN + int(self.rng.random() * 19 * MIN)  # the payment takes a while
            if ts < tl.end:
                self.topup_pending = True
                self.schedule_row(ts, "topup", self.topup_amount(5, 5))

    def refund(self, ts: int) -> None:
        """Every duplicate deduction so far is refunded in full, 2 s apart."""
        for e in list(self.entries):
            if e.cause == "duplicate" and e.ts < ts:
                assert e.amount is not None and e.rid is not None
                self.schedule_row(ts, "refund", -e.amount, rid=e.rid)
                ts += 2 * SEC
