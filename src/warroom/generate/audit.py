"""The truth: the pinned rules of DESIGN.md and docs/DECISIONS.md applied to
one user's rows as written, independently of what the simulation meant.

The truth is made twice and must agree: ``cross_check`` compares this audit
with the simulation's own account (each row's cause and excess, the wrongful
429s, the unbilled requests, the reimbursable top-ups, the abuse classes) and
raises ``RuntimeError`` on any disagreement rather than write a wrong answer key.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from decimal import Decimal
from statistics import median_low
from typing import Any, NamedTuple

from warroom.generate.impact import impact_row
from warroom.generate.prices import PriceBook
from warroom.generate.rows import AbuseRow, Finding, LedgerEntry, RequestRow
from warroom.generate.units import DAY, HOUR, TOLERANCE, ZERO, iso_us
from warroom.generate.users import SimulatedUser, WorldConfig

#: what a charge means: its cause (None: correct) and its excess over the right amount
Cause = tuple[str | None, Decimal]


@dataclass
class AuditResult:
    """The user's findings and impact row, and the verdicts ``cross_check`` compares."""

    findings: list[Finding]
    impact: dict[str, Any] | None
    causes: dict[str, Cause]
    wrongful: set[str]
    unbilled: set[str]
    reimbursable: dict[str, Decimal]
    classes: dict[int, str]
    spent_resets: set[str]


class _Span(NamedTuple):
    """An abuse action and the interval it stands over, with the rule's class."""

    start: int
    end: int
    action: str
    cls: str
    multiplier: float | None


def classify_abuse(
    req_ts: list[int], req_tok: list[int], hourly: dict[int, tuple[int, int]], t: int
) -> str:
    """DECISIONS 'Abuse classification', read straight off the request rows."""
    if not req_ts or req_ts[0] > t - DAY:
        return "insufficient_history"
    i, j = bisect_left(req_ts, t - HOUR), bisect_left(req_ts, t)
    n = j - i
    tok = sum(req_tok[i:j])
    r_max = t_max = 0
    for h, (cnt, tk) in hourly.items():
        if h * HOUR >= t - HOUR - 7 * DAY and h * HOUR + HOUR <= t - HOUR:
            r_max = max(r_max, cnt)
            t_max = max(t_max, tk)
    return "false_positive" if n <= 3 * r_max and tok <= 3 * t_max else "warranted"


def _abuse_spans(
    abuse: list[AbuseRow], requests: list[RequestRow], data_end: int
) -> tuple[list[_Span], dict[int, str]]:
    """Each action's class and the interval it stands over: to its ``until``,
    else to the next ``clear`` (a flag may stand to the end of the data)."""
    req_ts = [r.ts for r in requests] if abuse else []
    req_tok = [r.input_tokens + r.output_tokens for r in requests] if abuse else []
    hourly: dict[int, tuple[int, int]] = {}
    for ts, tok in zip(req_ts, req_tok, strict=True):
        c, k = hourly.get(ts // HOUR, (0, 0))
        hourly[ts // HOUR] = (c + 1, k + tok)
    clears = sorted(a.ts for a in abuse if a.action == "clear")
    spans: list[_Span] = []
    classes: dict[int, str] = {}
    for a in abuse:
        if a.action == "clear":
            continue
        t = a.ts
        cls = classify_abuse(req_ts, req_tok, hourly, t)
        classes[t] = cls
        if a.until is not None:
            end = a.until
        else:
            k = bisect_right(clears, t)
            if k == len(clears):
                if a.action != "flag":
                    raise RuntimeError(f"generator self-check: open-ended {a.action}")
                end = data_end
            else:
                end = clears[k]
        spans.append(_Span(t, end, a.action, cls, a.multiplier))
    return spans, classes


def _standing(spans: list[_Span], kinds: tuple[str, ...], x: int) -> list[_Span]:
    return [s for s in spans if s.action in kinds and s.start <= x < s.end]


def _currency_before(es: list[LedgerEntry], e_ts: list[int], t: int) -> str | None:
    """DECISIONS: a request's currency is that of the user's last ledger row before it."""
    i = bisect_left(e_ts, t)
    return es[i - 1].currency if i else None


# -- charges


def _first_charge(
    e: LedgerEntry, r: RequestRow | None, prices: PriceBook, spans: list[_Span], cur: str
) -> tuple[Cause, Finding | None]:
    """The verdict on the first charge naming a request."""
    assert e.rid is not None and e.amount is not None
    charged = -e.amount
    if r is None:
        return ("orphan_charge", ZERO), Finding(
            "billing_mismatch", cur, e.ts, e.rid, e.eid, charged, "orphan_charge"
        )
    if r.status >= 400:
        return ("charged_failed_request", charged), Finding(
            "billing_mismatch", cur, e.ts, e.rid, e.eid, charged, "charged_failed_request"
        )
    price = prices.at(r.model, e.currency, r.ts)
    expected = price.expected(r.input_tokens, r.cached_tokens, r.output_tokens)
    pens = _standing(spans, ("penalty",), e.ts) if spans else None
    if pens:
        if len({s.cls for s in pens}) > 1:
            raise RuntimeError("generator self-check: penalties of two classes overlap")
        if pens[0].cls == "false_positive":
            excess = charged - expected
            return ("penalty_fp", excess), Finding(
                "abuse_penalty_charges", cur, e.ts, e.rid, e.eid, excess, None
            )
        return ("penalty", ZERO), None
    diff = charged - expected
    if diff > TOLERANCE:
        return ("overbilled", diff), Finding(
            "billing_mismatch", cur, e.ts, e.rid, e.eid, diff, "overbilled"
        )
    if -diff > TOLERANCE:
        return ("underbilled", ZERO), Finding(
            "billing_mismatch", cur, e.ts, e.rid, e.eid, -diff, "underbilled"
        )
    return (None, ZERO), None


def _charges(
    es: list[LedgerEntry],
    cur: str,
    requests: list[RequestRow],
    prices: PriceBook,
    spans: list[_Span],
    f: list[Finding],
) -> tuple[dict[str, Cause], set[str]]:
    """Every charge's cause (findings appended to ``f``), and the requests charged.
    A second charge for a request is a duplicate: the whole extra entry, less
    refunds naming the request."""
    req_by_id = {r.request_id: r for r in requests}
    refund_left: dict[str, Decimal] = {}
    for e in es:
        if e.kind == "refund" and e.rid is not None:
            assert e.amount is not None
            refund_left[e.rid] = refund_left.get(e.rid, ZERO) + e.amount
    charged_ids: set[str] = set()
    causes: dict[str, Cause] = {}
    for e in es:
        if e.kind != "charge":
            continue
        assert e.rid is not None and e.amount is not None
        if e.rid in charged_ids:
            charged = -e.amount
            back = min(charged, refund_left.get(e.rid, ZERO))
            if back:
                refund_left[e.rid] -= back
            causes[e.eid] = ("duplicate", charged)
            f.append(Finding("duplicate_charges", cur, e.ts, e.rid, e.eid, charged - back, None))
            continue
        charged_ids.add(e.rid)
        causes[e.eid], finding = _first_charge(e, req_by_id.get(e.rid), prices, spans, cur)
        if finding is not None:
            f.append(finding)
    return causes, charged_ids


# -- balances


class _Replay:
    """The ledger replayed in (ts, entry_id) order: the balance after each row,
    the counterfactual balance (without the excess of wrongful charges), what
    each top-up reimburses, and where the recorded chain breaks."""

    def __init__(self, es: list[LedgerEntry], causes: dict[str, Cause], cur: str) -> None:
        self.es = es
        self.e_ts = [e.ts for e in es]
        self.causes = causes
        self.cur = cur
        bal = ZERO
        if es and es[0].balance_after is not None and es[0].amount is not None:
            bal = es[0].balance_after - es[0].amount
        self.start_bal = bal
        self.bal = bal
        self.acc = ZERO  # excess since the last reset: counterfactual = bal + acc
        self.dup_left: dict[str, Decimal] = {}
        self.reimbursable: dict[str, Decimal] = {}
        self.cf_after: list[Decimal] = []
        self.reset_ts = [e.ts for e in es if e.kind == "reset"]
        #: each top-up: its index, the balance and the counterfactual just before it
        self.topups: list[tuple[int, Decimal, Decimal]] = []

    def run(self, f: list[Finding]) -> None:
        prev_recorded: Decimal | None = None
        for k, e in enumerate(self.es):
            if e.kind == "reset":
                assert e.balance_after is not None
                self.bal = e.balance_after
                self.acc = ZERO
            else:
                assert e.amount is not None
                if e.kind == "topup":
                    if bisect_left(self.e_ts, e.ts) != k:  # balance at t: rows with ts < t
                        raise RuntimeError("generator self-check: a top-up shares its instant")
                    self.topups.append((k, self.bal, self.bal + self.acc))
                elif e.kind == "refund" and e.rid is not None:
                    back = min(e.amount, self.dup_left.get(e.rid, ZERO))
                    self.dup_left[e.rid] = self.dup_left.get(e.rid, ZERO) - back
                    self.acc -= back
                elif e.kind == "charge":
                    cause, excess = self.causes[e.eid]
                    if cause == "duplicate":
                        assert e.rid is not None
                        self.dup_left[e.rid] = self.dup_left.get(e.rid, ZERO) + excess
                    self.acc += excess
                self.bal += e.amount
                if e.balance_after is not None:
                    self._check_chain(e, prev_recorded, f)
            if e.balance_after is not None:
                prev_recorded = e.balance_after
            self.cf_after.append(self.bal + self.acc)

    def segment(self, t: int) -> int:
        """Which segment t is in: the number of resets with ts < t."""
        return bisect_left(self.reset_ts, t)

    def judge_topups(self, costs: list[tuple[int, Decimal]], f: list[Finding]) -> None:
        """A top-up made at a negative balance that the served counterfactual
        (less ``costs``: each wrongful 429's ts and estimated cost) says was not
        negative reimburses what the wrongful charges took, once per segment."""
        attributed: dict[int, Decimal] = {}
        for k, b_t, cf_t in self.topups:
            e = self.es[k]
            assert e.amount is not None
            seg = self.segment(e.ts)
            served = cf_t - sum(
                (c for ts, c in costs if ts < e.ts and self.segment(ts) == seg), ZERO
            )
            if b_t < 0 and served >= 0:
                done = attributed.get(seg, ZERO)
                back = max(ZERO, min(e.amount, (cf_t - b_t) - done))
                attributed[seg] = done + back
                self.reimbursable[e.eid] = back
                f.append(
                    Finding("negative_balance_topups", self.cur, e.ts, None, e.eid, back, None)
                )

    def _check_chain(self, e: LedgerEntry, prev_recorded: Decimal | None, f: list[Finding]) -> None:
        """A recorded balance_after that the replay does not reach is a chain
        break; the local reading (previous recorded + amount) must agree."""
        assert e.balance_after is not None and e.amount is not None
        local = None if prev_recorded is None else prev_recorded + e.amount
        if e.balance_after != self.bal:
            if local is not None and local == e.balance_after:
                raise RuntimeError("generator self-check: chain readings disagree")
            f.append(
                Finding(
                    "balance_chain_breaks",
                    self.cur,
                    e.ts,
                    e.rid,
                    e.eid,
                    e.balance_after - self.bal,
                    None,
                )
            )
        elif local is not None and local != e.balance_after:
            raise RuntimeError("generator self-check: chain readings disagree")

    def counterfactual_before(self, t: int) -> Decimal:
        """The counterfactual balance at t: the rows with ts < t."""
        i = bisect_left(self.e_ts, t)
        return self.cf_after[i - 1] if i else self.start_bal


# -- requests


def _requests(
    requests: list[RequestRow],
    charged_ids: set[str],
    replay: _Replay,
    spans: list[_Span],
    prices: PriceBook,
    start: int,
    f: list[Finding],
) -> tuple[set[str], set[str], list[tuple[int, Decimal]]]:
    """Wrongful 429s and unbilled requests (findings appended to ``f``), and the
    estimated cost of each wrongful 429 (its ts and cost)."""
    wrongful: set[str] = set()
    unbilled: set[str] = set()
    served = _Served(requests, replay, prices, start)
    for r in sorted(requests, key=lambda r: (r.ts, r.request_id)):
        status, rid = r.status, r.request_id
        if status == 200 and rid in charged_ids:
            continue
        t = r.ts
        r_cur = _currency_before(replay.es, replay.e_ts, t)
        if status == 429:
            if served.wrongful(r, r_cur, spans):
                wrongful.add(rid)
                f.append(Finding("wrongful_rejections", r_cur, t, rid, None, None, r.error_code))
        elif status < 400 and (r.input_tokens or r.output_tokens) and rid not in charged_ids:
            unbilled.add(rid)
            amount = None
            if r_cur is not None:
                price = prices.at(r.model, r_cur, t)
                amount = price.expected(r.input_tokens, r.cached_tokens, r.output_tokens)
            f.append(Finding("unbilled_requests", r_cur, t, rid, None, amount, None))
    return wrongful, unbilled, served.costs


class _Served:
    """The served counterfactual (DESIGN.md section 3): the counterfactual less the
    estimated cost of each wrongful 429 since the last reset, 429s taken in
    (ts, request_id) order."""

    def __init__(
        self, requests: list[RequestRow], replay: _Replay, prices: PriceBook, start: int
    ) -> None:
        self.replay = replay
        self.start = start
        self.costs: list[tuple[int, Decimal]] = []
        self.by_day: dict[int, list[Decimal]] = {}
        cur = replay.cur
        for r in requests:
            if r.status < 400:
                cost = prices.at(r.model, cur, r.ts).expected(
                    r.input_tokens, r.cached_tokens, r.output_tokens
                )
                self.by_day.setdefault(r.ts // DAY, []).append(cost)

    def estimate(self, t: int) -> Decimal:
        """The lower median of the user's expected charges over the 7 UTC days
        before t's day; the plan's pool is never needed (see ``cross_check``)."""
        day = t // DAY
        values = sorted(x for d in range(day - 7, day) for x in self.by_day.get(d, ()))
        if not values:
            if day * DAY > self.start:
                raise RuntimeError("generator self-check: a 429 priced by other users' history")
            return ZERO
        return values[(len(values) + 1) // 2 - 1]

    def wrongful(self, r: RequestRow, r_cur: str | None, spans: list[_Span]) -> bool:
        """A quota 429 while the served counterfactual was > 0; an abuse 429 under
        a standing false-positive throttle or block, if it was > 0 or there was no
        ledger yet. A wrongful one costs its estimate from then on."""
        err = r.error_code
        if err in ("abuse_blocked", "rate_limit_exceeded"):
            standing = _standing(spans, ("throttle", "block"), r.ts)
            if not any(s.cls == "false_positive" for s in standing):
                return False
        elif err not in ("insufficient_quota", "usage_limit_reached"):
            return False
        if r_cur is None:
            return err in ("abuse_blocked", "rate_limit_exceeded")
        seg = self.replay.segment(r.ts)
        spent = sum((c for ts, c in self.costs if self.replay.segment(ts) == seg), ZERO)
        if self.replay.counterfactual_before(r.ts) - spent <= 0:
            return False
        self.costs.append((r.ts, self.estimate(r.ts)))
        return True


def _spent_banked_resets(
    es: list[LedgerEntry],
    requests: list[RequestRow],
    wrongful: set[str],
    cur: str,
    f: list[Finding],
) -> set[str]:
    """Each reset the user ran (initiated_by user) after a wrongful quota 429 in the
    window it ends: since the previous reset, any; a 429 at a reset's own instant
    saw the balance before it. The row names the last such 429."""
    refused = [
        r
        for r in requests
        if r.request_id in wrongful
        and r.error_code in ("insufficient_quota", "usage_limit_reached")
    ]
    refused.sort(key=lambda r: (r.ts, r.request_id))
    spent: set[str] = set()
    previous: int | None = None
    for e in es:
        if e.kind != "reset":
            continue
        if e.initiated_by == "user":
            inside = [r for r in refused if (previous is None or r.ts > previous) and r.ts <= e.ts]
            if inside:
                spent.add(e.eid)
                f.append(
                    Finding(
                        "spent_banked_resets",
                        cur,
                        e.ts,
                        inside[-1].request_id,
                        e.eid,
                        None,
                        None,
                    )
                )
        previous = e.ts
    return spent


# -- abuse and consumption


def _abuse_findings(spans: list[_Span], replay: _Replay, f: list[Finding]) -> tuple[int, bool]:
    """abuse_false_positives rows; returns the time restricted by false
    positives (overlaps counted once) and whether anything needs review."""
    restricted: list[tuple[int, int]] = []
    review = False
    for s in spans:
        if s.cls in ("false_positive", "insufficient_history"):
            cur = _currency_before(replay.es, replay.e_ts, s.start)
            f.append(Finding("abuse_false_positives", cur, s.start, None, None, None, s.cls))
        if s.cls == "insufficient_history":
            review = True
        if s.cls == "false_positive" and s.action in ("throttle", "block", "penalty"):
            restricted.append((s.start, s.end))
    restricted.sort()
    total = 0
    cover_lo = cover_hi = None
    for lo, hi in restricted:
        if cover_hi is None or lo > cover_hi:
            if cover_hi is not None and cover_lo is not None:
                total += cover_hi - cover_lo
            cover_lo, cover_hi = lo, hi
        else:
            cover_hi = max(cover_hi, hi)
    if cover_hi is not None and cover_lo is not None:
        total += cover_hi - cover_lo
    return total, review


def _consumption_anomalies(es: list[LedgerEntry], cur: str, f: list[Finding]) -> None:
    """A day >= 10x the lower median (DESIGN.md 7.2) of the previous 7 days with charges."""
    daily: dict[int, Decimal] = {}
    for e in es:
        if e.kind == "charge":
            assert e.amount is not None
            daily[e.ts // DAY] = daily.get(e.ts // DAY, ZERO) - e.amount
    for d in sorted(daily):
        before = [daily[x] for x in range(d - 7, d) if x in daily]
        if len(before) >= 3 and daily[d] >= 10 * median_low(before):
            f.append(Finding("consumption_anomalies", cur, d * DAY, None, None, daily[d], None))


def audit_user(
    u: SimulatedUser,
    cfg: WorldConfig,
    written: list[LedgerEntry],
    abuse: list[AbuseRow],
    requests: list[RequestRow],
) -> AuditResult:
    """The pinned rules applied to one user's rows as written: their findings
    (every detector but ledger_conflicts and coverage_gaps) and impact row."""
    spans, classes = _abuse_spans(abuse, requests, cfg.timeline.end)
    es = sorted(written, key=lambda e: (e.ts, e.eid))
    if len({e.currency for e in es}) > 1:
        raise RuntimeError("generator self-check: one currency per user")
    cur = es[0].currency if es else u.plan.currency
    f: list[Finding] = []
    causes, charged_ids = _charges(es, cur, requests, cfg.prices, spans, f)
    replay = _Replay(es, causes, cur)
    replay.run(f)
    wrongful, unbilled, costs = _requests(
        requests, charged_ids, replay, spans, cfg.prices, cfg.timeline.start, f
    )
    replay.judge_topups(costs, f)
    spent = _spent_banked_resets(es, requests, wrongful, cur, f)
    restricted, review = _abuse_findings(spans, replay, f)
    _consumption_anomalies(es, cur, f)
    impact = impact_row(u, cur, f, restricted, review)
    return AuditResult(f, impact, causes, wrongful, unbilled, replay.reimbursable, classes, spent)


def cross_check(u: SimulatedUser, a: AuditResult, written: list[LedgerEntry]) -> None:
    """The simulation's intent and the rules' verdict must be the same answer."""
    problems: list[str] = []
    for e in written:
        if e.kind != "charge":
            continue
        got = a.causes[e.eid]
        if (e.cause, e.excess) != got:
            problems.append(f"{e.eid}: simulated {e.cause} {e.excess}, rules {got}")
    if u.wrongful != a.wrongful:
        problems.append(f"wrongful 429s: simulated {sorted(u.wrongful ^ a.wrongful)} differ")
    if u.unbilled != a.unbilled:
        problems.append(f"unbilled: simulated {sorted(u.unbilled)}, rules {sorted(a.unbilled)}")
    intended = {e.eid for e in written if e.cause == "spent_banked_reset"}
    if intended != a.spent_resets:
        problems.append(
            f"spent banked resets: simulated {sorted(intended)}, rules {sorted(a.spent_resets)}"
        )
    if u.reimbursable != a.reimbursable:
        problems.append(f"reimbursable: simulated {u.reimbursable}, rules {a.reimbursable}")
    for act in u.actions:
        if a.classes.get(act.ts) != act.cls:
            problems.append(
                f"{act.action} at {iso_us(act.ts)}: simulated {act.cls}, "
                f"rules {a.classes.get(act.ts)}"
            )
    if problems:
        raise RuntimeError(f"generator self-check failed for {u.uid}: " + "; ".join(problems[:5]))
