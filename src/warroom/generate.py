"""Synthetic billing incidents with their ground truth, at any scale.

A detection that was never run against a known answer proves nothing, and a
war room cannot wait for the next real incident to find out. This module
simulates a metered API, one user at a time, and writes what such a service
would leave behind (a request log, a billing ledger split into two
overlapping files, abuse-system decisions, a price list) with the faults of
DESIGN.md injected into it. Next to the logs it writes ``_truth/``: the
findings and the per-user impact that DESIGN.md and docs/DECISIONS.md define
for exactly those files.

The truth is made twice and must agree. The simulation knows by construction
what each injected fault cost (it tracks the real and the counterfactual
balance as it goes); an independent audit then applies the pinned rules to the
rows as written. Any disagreement is a bug in this module and raises
``RuntimeError`` rather than write a wrong answer key.

Conventions this generator fixes, beyond DECISIONS.md (the tests pin them):

- A charge's ``ts`` is the request's ``ts`` + its ``latency_ms`` (exact to the
  microsecond, plus 1 µs if that lands on a whole second). The price is the
  one in force at the request's ``ts``; whether a penalty, the duplicate
  window or a billing bug applies is decided at the charge's ``ts``.
- Scheduled rows (grants, resets, top-ups, refunds, abuse actions) sit on
  whole seconds, never two at one instant for a user; request and charge
  timestamps never sit on a whole second. No rule depends on a tie.
- ``plus``/``pro`` hold ``units``: a ``reset`` (no amount, ``balance_after`` =
  quota) at sign-up, weekly from sign-up, and once for everyone in the middle
  of the abuse incident. ``free`` holds ``credits`` from a weekly ``grant``.
  Quotas and the free grant scale with ``requests_per_user_day`` / 40.
  ``payg`` (usd) starts with a ``grant`` and tops up; ``enterprise`` (usd)
  starts with a ``grant`` and may go negative. Every user's first ledger row
  precedes their first request, and each user has one currency.
- The gateway refuses (429) in this order: a standing block, a standing
  throttle (80% of requests), a prepaid balance at t <= 0, ordinary rate
  limiting; refused and failed requests log no output tokens.
- Every throttle, block and penalty ends by ``until`` or by a later ``clear``;
  only flags may stand to the end of the data. Scenarios are placed where the
  pinned abuse rule's verdict is clear-cut (at most 2/3 of the threshold for a
  false positive, well above it for a burst).
- Duplicates: each ``charge`` of a ``payg`` user whose ``ts`` is in the window
  gets a second entry 3 to 40 ms later; a refund names the request and gives
  back the whole duplicate. A lost write leaves exactly one written row
  between it and the next reset, so any reading of the chain rule flags that
  row alone. Conflicting copies live in ledger-2 only (ledger-1 is the truth).
- A billing outage (worlds of 5 days or more): for one clock hour at 03:00 on a
  late day, clear of every other incident, no ledger row is written (rows due
  in it are written when it ends), and the gateway answers 503 ``overloaded``
  to every request from 30 minutes before it (and to any still running when
  those 30 minutes begin): unbilled, so a coverage gap and nothing else.

What the truth rows hold where DESIGN.md leaves it open: amounts are positive
(underbilled: expected - charged; orphan: the charge; chain break: recorded -
replayed balance); ``detail`` is the class for billing_mismatch and
abuse_false_positives, the error code for wrongful_rejections, the differing
field for ledger_conflicts, else null. An extra charge fully refunded is still
a duplicate_charges row, with amount 0. consumption_anomalies: one row per
user and UTC day (ts = midnight, amount = the day's charges), against the
median of the previous 7 days that had charges. Unbilled requests count only
in [max(first request, first ledger row), min(last request, last ledger row)]
and not in an hour without ledger rows; coverage_gaps (user null, ts = the
hour, detail as the query words it) are computed from the rows written.
A user has an impact row if anything is owed, a 429 was wrongful, a
false-positive throttle/block/penalty stood, or there is something to review.
"""

from __future__ import annotations

import heapq
import os
import pickle
import random
import shutil
import subprocess
import sys
import tempfile
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from math import exp
from pathlib import Path
from statistics import median
from typing import IO, Any, NamedTuple

import orjson

from warroom.errors import InputError

__all__ = ["GenerateResult", "generate", "DETECTORS"]

# ----------------------------------------------------------------------------
# Units: time is integer microseconds since the Unix epoch, money is Decimal.

SEC = 1_000_000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR
OUTAGE_LEAD = 30 * MIN  # requests fail from this long before the billing outage
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DATE = date(1970, 1, 1)

Q6 = Decimal("0.000001")
ZERO = Decimal(0)
MILLION = Decimal(1_000_000)
TOLERANCE = Decimal("0.000001")

#: the detectors whose expected rows _truth/findings.jsonl holds, in file order
DETECTORS = (
    "abuse_false_positives",
    "abuse_penalty_charges",
    "balance_chain_breaks",
    "billing_mismatch",
    "consumption_anomalies",
    "coverage_gaps",
    "duplicate_charges",
    "ledger_conflicts",
    "negative_balance_topups",
    "unbilled_requests",
    "wrongful_rejections",
)
_DATA_FILES = ("requests.jsonl", "ledger-1.jsonl", "ledger-2.jsonl", "abuse.jsonl", "prices.csv")
_TRUTH = "_truth"


@dataclass(frozen=True)
class GenerateResult:
    """Where the data went. ``files`` maps each data file (relative to
    ``out_dir``) to the rows written: lines for JSONL (malformed ones included),
    data rows for CSV (the header is not a row)."""

    out_dir: Path
    files: dict[str, int]
    truth_dir: Path


def _us(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(microseconds=1)


_HOUR_PREFIX: dict[int, str] = {}
_MM_SS = [f"{m:02d}:{s:02d}." for m in range(60) for s in range(60)]


def _iso(us: int) -> str:
    """ISO-8601 in UTC with ``Z`` and exactly six fractional digits."""
    h, rest = divmod(us, HOUR)
    prefix = _HOUR_PREFIX.get(h)
    if prefix is None:
        d, hh = divmod(h, 24)
        prefix = _HOUR_PREFIX[h] = f"{(_EPOCH_DATE + timedelta(days=d)).isoformat()}T{hh:02d}:"
    s, micro = divmod(rest, SEC)
    return f"{prefix}{_MM_SS[s]}{micro:06d}Z"


def _money(d: Decimal) -> str:
    """A decimal string with no exponent; never ``-0``."""
    if not d:
        d = abs(d)
    return format(d, "f")


def _json_money(d: Decimal | None) -> str:
    return "null" if d is None else f'"{_money(d)}"'


def _q6(d: Decimal) -> Decimal:
    return d.quantize(Q6, rounding=ROUND_HALF_UP)


def _round_credit(d: Decimal, currency: str) -> Decimal:
    """DESIGN §4: usd to cents, credits to 6 decimals, any other unit to 1."""
    quantum = {"usd": Decimal("0.01"), "credits": Q6}.get(currency, Decimal(1))
    return d.quantize(quantum, rounding=ROUND_HALF_UP)


def _off_second(us: int) -> int:
    """Unscheduled rows never sit on a whole second (scheduled ones always do)."""
    return us + 1 if us % SEC == 0 else us


# ----------------------------------------------------------------------------
# Prices


class _Price:
    """One row of the price list.

    ``expected`` is the DESIGN §2 formula. Prices have at most 6 decimals, so
    it runs on whole micro-units: the sum is then exact in 1e-12, and rounding
    it half-up to 1e-6 is one integer division, the same number Decimal
    arithmetic gives, several times faster.
    """

    __slots__ = (
        "model",
        "currency",
        "input",
        "cached",
        "output",
        "effective_from",
        "_in",
        "_cached",
        "_out",
    )

    def __init__(
        self,
        model: str,
        currency: str,
        input: Decimal,
        cached: Decimal | None,
        output: Decimal,
        effective_from: int,
    ) -> None:
        self.model = model
        self.currency = currency
        self.input = input
        self.cached = cached  # None: no cache discount (the CSV cell is empty)
        self.output = output
        self.effective_from = effective_from
        self._in = int(input * MILLION)
        self._cached = self._in if cached is None else int(cached * MILLION)
        self._out = int(output * MILLION)
        assert self._in == input * MILLION and self._out == output * MILLION

    def expected(self, inp: int, cached: int, out: int) -> Decimal:
        """The cost of the tokens, rounded half-up to 6 decimals."""
        pico = (inp - cached) * self._in + cached * self._cached + out * self._out
        return Decimal((pico + 500_000) // 1_000_000).scaleb(-6)


_BASE_PRICES = {  # usd per million tokens: input, cached (None: no discount), output
    "atlas-large": ("3.00", "0.30", "15.00"),
    "atlas-mini": ("0.15", "0.075", "0.60"),
    "nova-code": ("1.25", None, "10.00"),
    "orbit-embed": ("0.02", "0.02", "0"),
}
_CHANGED_MODEL = "atlas-large"
_CHANGED_PRICES = ("2.50", "0.25", "12.50")
#: one price list per ledger currency; different numbers so a currency mix-up shows
_CURRENCY_FACTOR = {"usd": Decimal(1), "units": Decimal(2), "credits": Decimal("1.5")}


class _PriceBook:
    def __init__(self, first: int, change: int) -> None:
        self.prices: list[_Price] = []
        for model, base in sorted(_BASE_PRICES.items()):
            for currency, factor in sorted(_CURRENCY_FACTOR.items()):
                steps = [(first, base)]
                if model == _CHANGED_MODEL:
                    steps.append((change, _CHANGED_PRICES))
                for eff, (pin, pcached, pout) in steps:
                    self.prices.append(
                        _Price(
                            model,
                            currency,
                            _q6(Decimal(pin) * factor),
                            None if pcached is None else _q6(Decimal(pcached) * factor),
                            _q6(Decimal(pout) * factor),
                            eff,
                        )
                    )
        self._by: dict[tuple[str, str], tuple[list[int], list[_Price]]] = {}
        for p in self.prices:
            effs, ps = self._by.setdefault((p.model, p.currency), ([], []))
            effs.append(p.effective_from)
            ps.append(p)

    def at(self, model: str, currency: str, ts: int) -> _Price:
        effs, ps = self._by[(model, currency)]
        i = bisect_right(effs, ts) - 1
        if i < 0:
            raise RuntimeError(f"no {currency} price for {model} at {_iso(ts)}")
        return ps[i]

    def csv_lines(self) -> list[str]:
        lines = ["model,currency,input_per_mtok,cached_per_mtok,output_per_mtok,effective_from"]
        for p in self.prices:
            cached = "" if p.cached is None else _money(p.cached)
            lines.append(
                f"{p.model},{p.currency},{_money(p.input)},{cached},"
                f"{_money(p.output)},{_iso(p.effective_from)}"
            )
        return lines


# ----------------------------------------------------------------------------
# The incident timeline: every window derives from start and days alone.


@dataclass(frozen=True)
class _Timeline:
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

    @classmethod
    def build(cls, start: int, days: int) -> _Timeline:
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
        )


# ----------------------------------------------------------------------------
# Users: plans, roles (which scenario a user lives through) and the demand.


@dataclass(frozen=True)
class _Plan:
    name: str
    currency: str
    weight: float
    usage: float  # relative requests per day
    prepaid: bool
    quota: Decimal | None  # reset to this weekly (subscriptions), at 40 requests a day
    grant: Decimal  # at sign-up (and weekly for free, scaled like quotas)
    models: tuple[tuple[str, float], ...]


_PLANS = (
    _Plan(
        name="payg", currency="usd", weight=0.35, usage=1.0, prepaid=True, quota=None,
        grant=Decimal("1.00"),
        models=(("atlas-large", 0.5), ("atlas-mini", 0.25), ("nova-code", 0.2),
                ("orbit-embed", 0.05)),
    ),
    _Plan(
        name="enterprise", currency="usd", weight=0.10, usage=2.0, prepaid=False, quota=None,
        grant=Decimal("10.00"),
        models=(("atlas-large", 0.6), ("nova-code", 0.3), ("orbit-embed", 0.1)),
    ),
    _Plan(
        name="plus", currency="units", weight=0.25, usage=1.0, prepaid=True,
        quota=Decimal("20"), grant=ZERO, models=(("atlas-large", 0.7), ("nova-code", 0.3)),
    ),
    _Plan(
        name="pro", currency="units", weight=0.10, usage=2.0, prepaid=True,
        quota=Decimal("80"), grant=ZERO, models=(("atlas-large", 0.7), ("nova-code", 0.3)),
    ),
    _Plan(
        name="free", currency="credits", weight=0.20, usage=0.3, prepaid=True, quota=None,
        grant=Decimal("0.25"), models=(("atlas-mini", 1.0),),
    ),
)  # fmt: skip
_PLAN = {p.name: p for p in _PLANS}
_USAGE_NORM = 1.0 / (sum(p.weight * p.usage for p in _PLANS) * (5 * 1.1 + 2 * 0.6) / 7)
_QUOTA_CODE = {
    "usd": "insufficient_quota",
    "credits": "insufficient_quota",
    "units": "usage_limit_reached",
}

#: scenario roles, with the share of users that live them in a large run
_ROLE_RATES = (
    ("fp_penalty", 0.012),
    ("fp_throttle", 0.004),
    ("fp_block", 0.003),
    ("warranted", 0.004),
    ("new_restricted", 0.003),
    ("flagged", 0.01),
    ("orphan", 0.001),
    ("cache_bug", 0.003),
    ("underbilled", 0.002),
    ("unbilled", 0.002),
    ("lost_write", 0.001),
    ("dup_victim", 0.01),
    ("runaway", 0.002),
)
#: so that even a small run holds every scenario, these go to distinct random users
#: first ("role:plan" also fixes the plan)
_FORCED_ROLES = (
    "fp_penalty:plus",
    "dup_victim:payg",
    "runaway:enterprise",
    "warranted",
    "fp_throttle",
    "fp_block",
    "new_restricted",
    "lost_write",
    "orphan",
    "cache_bug:free",
    "underbilled",
    "unbilled",
    "flagged",
    "fp_penalty:enterprise",
    "warranted",
    "fp_penalty",
    "flagged",
    "cache_bug",
    "dup_victim:payg",
)

# hour-of-day weights in the user's local time
_LOCAL_HOURS = (
    0.05, 0.03, 0.03, 0.03, 0.03, 0.05, 0.15, 0.4, 0.8, 1.0, 1.0, 1.0,
    0.9, 1.0, 1.0, 1.0, 0.9, 0.8, 0.6, 0.5, 0.5, 0.4, 0.25, 0.1,
)  # fmt: skip
_TZ_OFFSETS = (-8, -7, -7, -5, -4, 0, 1, 1, 2, 5, 8, 9)

_FP_RULE = "usage_velocity_v2"


@dataclass(frozen=True)
class _Config:
    seed: int
    users: int
    width: int
    timeline: _Timeline
    prices: _PriceBook
    rate: float  # mean requests per user and day
    forced: dict[int, str]
    conflicts: frozenset[int]

    def uid(self, i: int) -> str:
        return f"u{i:0{self.width}d}"


# ----------------------------------------------------------------------------
# The per-user simulation


class _Entry:
    """A ledger row, plus what the simulation meant by it (``cause``, ``excess``)."""

    __slots__ = (
        "ts",
        "eid",
        "kind",
        "amount",
        "currency",
        "rid",
        "tokens",
        "balance_after",
        "lost",
        "cause",
        "excess",
        "conflict",
    )

    def __init__(
        self,
        ts: int,
        eid: str,
        kind: str,
        amount: Decimal | None,
        currency: str,
        rid: str | None = None,
        tokens: tuple[int, int, int] | None = None,
        balance_after: Decimal | None = None,
    ) -> None:
        self.ts = ts
        self.eid = eid
        self.kind = kind
        self.amount = amount
        self.currency = currency
        self.rid = rid
        self.tokens = tokens
        self.balance_after = balance_after
        self.lost = False
        self.cause: str | None = None
        self.excess = ZERO  # what counts in the counterfactual balance
        self.conflict: Decimal | None = None  # ledger-2 carries this amount instead

    def line(self, uid: str, amount: Decimal | None = None) -> str:
        """The JSON line, formatted by hand: every string in it is an id or a
        name from a fixed alphabet (no quote, backslash or control character),
        and this is the hottest path of a large run."""
        if amount is None:
            amount = self.amount
        tok = self.tokens
        rid = self.rid
        if tok is not None and rid is not None:  # a charge
            tail = (
                f'"request_id":"{rid}","idempotency_key":"ik-{rid[4:]}",'
                f'"input_tokens":{tok[0]},"cached_tokens":{tok[1]},"output_tokens":{tok[2]}'
            )
        else:
            tail = (
                ('"request_id":null' if rid is None else f'"request_id":"{rid}"')
                + ',"idempotency_key":null,"input_tokens":null,"cached_tokens":null,'
                '"output_tokens":null'
            )
        return (
            f'{{"entry_id":"{self.eid}","ts":"{_iso(self.ts)}","user_id":"{uid}",'
            f'"kind":"{self.kind}","amount":{_json_money(amount)},'
            f'"currency":"{self.currency}",{tail},'
            f'"balance_after":{_json_money(self.balance_after)}}}'
        )


# a request row: ts, request_id, status, error_code, model, input, cached, output, latency_ms
_Req = tuple[int, str, int, str | None, str, int, int, int, float]


@dataclass
class _Action:
    ts: int
    action: str
    rule: str
    score: float
    intent: str  # false_positive | warranted | insufficient_history | any (flags)
    duration: int
    multiplier: float | None = None
    use_until: bool = True
    tries: int = 0
    # filled when it happens
    cls: str | None = None
    until: int | None = None
    clear_at: int | None = None


@dataclass
class _UserData:
    """One user's simulated rows and intents, handed to the audit and the writers."""

    index: int
    uid: str
    plan: _Plan
    role: str
    org: str | None
    requests: list[_Req]
    entries: list[_Entry]
    actions: list[_Action]
    wrongful: set[str] = field(default_factory=set)
    unbilled: set[str] = field(default_factory=set)
    reimbursable: dict[str, Decimal] = field(default_factory=dict)
    dropped: set[str] = field(default_factory=set)  # request lines lost from the log


class _Sim:
    """A discrete-event simulation of one user against the gateway and billing.

    Events are processed in (ts, priority) order: abuse actions and their ends
    (0) before request arrivals (1) before ledger rows and completions (2), so a
    restriction standing from t covers a request at t, and a request at t never
    sees a ledger row at t (DECISIONS: balance at t replays ts < t).
    """

    def __init__(self, cfg: _Config, i: int) -> None:
        self.cfg = cfg
        self.tl = cfg.timeline
        self.rng = rng = random.Random(f"warroom-generate:{cfg.seed}:{i}")
        self.index = i
        self.uid = cfg.uid(i)
        role, _, forced_plan = cfg.forced.get(i, "").partition(":")
        r = rng.random()
        if not role:
            role = "normal"
            for name, rate in _ROLE_RATES:
                if r < rate:
                    role = name
                    break
                r -= rate
        self.role = role
        self.forced_plan = forced_plan
        if forced_plan:
            plan = _PLAN[forced_plan]
        elif role == "fp_penalty":
            # mostly quotas drained 10-20x; sometimes an uncapped postpaid bill
            plan = _PLAN[rng.choices(("plus", "pro", "enterprise"), weights=(60, 15, 25))[0]]
        elif role == "lost_write":
            plan = _PLAN["plus" if rng.random() < 0.85 else "pro"]
        elif role == "dup_victim":
            plan = _PLAN["payg"]
        else:
            plan = rng.choices(_PLANS, weights=[p.weight for p in _PLANS])[0]
            if role == "new_restricted" and plan.name == "enterprise":
                plan = _PLAN["payg"]
        self.plan = plan
        self.cur = plan.currency
        self.quota_code = _QUOTA_CODE[self.cur]
        # quotas are sized for 40 requests a user-day and scale with the rate asked
        # for, so that any rate lives through the same incidents
        scale = Decimal(str(round(cfg.rate / 40, 6)))
        self.quota = (
            None
            if plan.quota is None
            else max(Decimal(1), (plan.quota * scale).quantize(Decimal(1), ROUND_HALF_UP))
        )
        self.grant = (
            plan.grant if plan.name != "free" else max(Decimal("0.01"), _q6(plan.grant * scale))
        )
        self.prepaid = plan.prepaid
        self.payg = plan.name == "payg"
        self.rid_prefix = f"req-{self.uid}-"
        self.eid_prefix = f"le-{self.uid}-"
        self.org = f"org-{(i * 7919) % 97:03d}" if plan.name == "enterprise" else None
        # a hand-to-mouth payg user tops up a little each time a request is refused
        self.hand_to_mouth = role == "dup_victim"
        self.auto_topup = plan.name == "payg" and rng.random() < 0.4 and not self.hand_to_mouth
        self.refunded = plan.name == "payg" and rng.random() < 0.35

        tl = self.tl
        activity = min(5.0, max(0.1, rng.lognormvariate(-0.18, 0.6)))
        if role.startswith("fp_") or role == "flagged" or i in cfg.forced:
            activity = max(activity, 1.0)  # steady users with a real baseline
        if role == "fp_penalty" and forced_plan == "plus":
            activity = max(activity, 2.0)  # a heavy user, whom the misfire drains
        self.daily = cfg.rate * _USAGE_NORM * plan.usage * activity
        tz = rng.choice(_TZ_OFFSETS)
        self.hour_cum: list[float] = []
        acc = 0.0
        for h in range(24):
            acc += _LOCAL_HOURS[(h + tz) % 24]
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
        inp = 20 + int(exp(self.in_mu + 0.405))  # the mean of the lognormal draws below
        out = 1 + int(exp(self.out_mu + 0.405))
        per_request = ZERO
        prev = 0.0
        for name, cum in zip(self.model_names, self.model_cum, strict=True):
            cost = cfg.prices.at(name, self.cur, tl.start).expected(inp, inp // 2, out)
            per_request += cost * Decimal(str(round((cum - prev) / self.model_cum[-1], 3)))
            prev = cum
        self.spend = max(Decimal("0.01"), per_request * Decimal(str(round(self.daily, 3))))

        if role == "new_restricted" and tl.days >= 3:
            self.signup = tl.start + rng.randrange(DAY, (tl.days - 1) * DAY, SEC)
        elif rng.random() < 0.03 and tl.days >= 3 and role == "normal":
            self.signup = tl.start + rng.randrange(DAY, (tl.days - 1) * DAY, SEC)
        else:
            self.signup = tl.start + rng.randrange(0, 6 * HOUR, SEC)

        # state
        self.heap: list[tuple[int, int, int, str, Any]] = []
        self.seq = 0
        self.n_entries = 0
        self.n_requests = 0
        self.taken: set[int] = set()  # whole seconds used by scheduled rows
        self.entries: list[_Entry] = []
        self.requests: list[_Req] = []
        self.actions: list[_Action] = []
        self.req_ts: list[int] = []
        self.req_tok: list[int] = []
        self.hourly: dict[int, list[int]] = {}
        self.bal = ZERO  # replay of the ledger rows so far (what the gateway sees)
        self.acc = ZERO  # excess since the last reset: counterfactual = bal + acc
        self.attributed = ZERO  # reimbursable already given since the last reset
        self.dup_left: dict[str, Decimal] = {}
        self.topup_pending = False
        self.track = False  # keep per-hour counts for the abuse rule (users with actions)
        self.penalty: _Action | None = None
        self.throttle: _Action | None = None
        self.block: _Action | None = None
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

    # -- scheduling helpers

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

    def entry(self, ts: int, kind: str, amount: Decimal | None, **kw: Any) -> _Entry:
        self.n_entries += 1
        e = _Entry(ts, f"{self.eid_prefix}{self.n_entries:05d}", kind, amount, self.cur, **kw)
        self.entries.append(e)
        return e

    def schedule_row(self, ts: int, kind: str, amount: Decimal | None, **kw: Any) -> _Entry:
        at = self.claim(ts)
        out = self.tl.outage
        if out is not None and out[0] <= at < out[1]:
            at = self.claim(out[1])  # billing is down: the row is written when it is back
        e = self.entry(at, kind, amount, **kw)
        self.push(e.ts, 2, "row", e)
        return e

    # -- planning

    def plan_demand(self) -> list[int]:
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

    def schedule(self) -> list[int]:
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

    def topup_amount(self, lo: float, hi: float) -> Decimal:
        """lo to hi days of this user's spend, in whole 5 usd."""
        days = Decimal(str(round(self.rng.uniform(lo, hi), 2)))
        return max(Decimal(5), (self.spend * days / 5).to_integral_value(ROUND_CEILING) * 5)

    def plan_demand_and_roles(self) -> list[int]:
        rng = self.rng
        tl = self.tl
        arrivals = self.plan_demand()
        role = self.role
        first = arrivals[0] if arrivals else None
        lo_hist = (first + 26 * HOUR) if first is not None else tl.end

        def window(lo: int, hi: int) -> int | None:
            lo = max(lo, lo_hist)
            hi = min(hi, tl.end - 3 * HOUR)
            return self.claim(rng.randrange(lo, hi)) if lo < hi else None

        if role.startswith("fp_") and tl.abuse is not None:
            # the story's worst case, guaranteed in every run: a weekly quota drained
            # at 20x from the first hours of the misfire, before the global reset
            worst = self.forced_plan == "plus"
            t = window(tl.abuse[0], tl.abuse[0] + 4 * HOUR) if worst else window(*tl.abuse)
            if t is not None:
                if role == "fp_penalty":
                    a = _Action(
                        t,
                        "penalty",
                        _FP_RULE,
                        round(rng.uniform(0.9, 0.99), 3),
                        "false_positive",
                        rng.randrange(30 * HOUR, 48 * HOUR, SEC),
                        multiplier=20.0 if worst else rng.choice((10.0, 12.5, 15.0, 20.0)),
                        use_until=rng.random() < 0.7,
                    )
                elif role == "fp_throttle":
                    a = _Action(
                        t,
                        "throttle",
                        _FP_RULE,
                        round(rng.uniform(0.8, 0.95), 3),
                        "false_positive",
                        rng.randrange(8 * HOUR, 24 * HOUR, SEC),
                    )
                else:
                    a = _Action(
                        t,
                        "block",
                        _FP_RULE,
                        round(rng.uniform(0.9, 0.99), 3),
                        "false_positive",
                        rng.randrange(6 * HOUR, 16 * HOUR, SEC),
                        use_until=False,
                    )
                self.push(a.ts, 0, "act", a)
        elif role == "warranted" and first is not None:
            t = window(tl.start, tl.end)
            if t is not None:
                # a real burst: far above 3x the busiest hour of the week before
                base = self.busiest_hour_count(arrivals, t)
                n = 4 * base + 10 + rng.randrange(20)
                burst = [_off_second(t - 55 * MIN + rng.randrange(54 * MIN)) for _ in range(n)]
                arrivals = sorted(arrivals + burst)
                kind = rng.choices(("throttle", "block", "penalty"), weights=(45, 30, 25))[0]
                a = _Action(
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
        elif role == "new_restricted" and first is not None:
            t = first + rng.randrange(HOUR, 20 * HOUR)
            if t < tl.end - 3 * HOUR:
                kind = rng.choice(("throttle", "penalty", "block"))
                a = _Action(
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
        elif role == "flagged":
            for _ in range(rng.randint(1, 2)):
                t = window(tl.start, tl.end)
                if t is not None:
                    a = _Action(
                        t,
                        "flag",
                        "shared_key_heuristic",
                        round(rng.uniform(0.5, 0.8), 3),
                        "any",
                        0,
                        use_until=False,
                    )
                    self.push(a.ts, 0, "act", a)
        elif role == "runaway" and tl.days >= 4:
            # a script loops for a day: real usage, twenty times the user's normal
            day_start = tl.start + rng.randrange(3, tl.days) * DAY
            extra = round(20 * self.daily)
            rand = rng.random
            arrivals = sorted(
                arrivals
                + [
                    day_start + h * HOUR + 1 + int(rand() * (HOUR - 2))
                    for h in rng.choices(range(24), cum_weights=self.hour_cum, k=extra)
                ]
            )
        if role == "cache_bug" or role == "underbilled" or role == "unbilled":
            lo = tl.start + rng.randrange(0, max(1, tl.days - 1)) * DAY + rng.randrange(DAY)
            self.windows[role] = (lo, lo + (48 if role == "cache_bug" else 8) * HOUR)
        return arrivals

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

    # -- running

    def run(self) -> _UserData:
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
        return _UserData(
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

    def dispatch(self, ev: tuple[int, int, int, str, Any]) -> None:
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

    def apply(self, e: _Entry) -> None:
        """A ledger row becomes visible to the gateway at its ts."""
        if e.kind == "reset":
            assert e.balance_after is not None
            self.bal = e.balance_after
            self.acc = ZERO
            self.attributed = ZERO
            return
        assert e.amount is not None
        if e.kind == "topup":
            self.topup_pending = False
            if self.bal < 0 and self.bal + self.acc >= 0:
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

    def arrive(self, t: int) -> None:
        """The gateway's decision on a request at t (hot path: kept flat)."""
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
        elif self.block is not None:
            status, err = 429, "abuse_blocked"
        elif self.throttle is not None and rand() < 0.8:
            status, err = 429, "rate_limit_exceeded"
        elif self.prepaid and self.bal <= 0:
            status, err = 429, self.quota_code
            if self.bal + self.acc > 0:
                self.wrongful.add(rid)
            if self.payg and not self.topup_pending:
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
                    ts = self.tl.end
                if ts < self.tl.end:
                    self.topup_pending = True
                    self.schedule_row(ts, "topup", amount)
        elif rand() < 0.003:
            status, err = 429, "rate_limit_exceeded"  # ordinary rate limiting
        else:
            gauss = self.rng.gauss
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
                    status, err, out = 500, "internal_error", 0
                elif r < 0.02:
                    status, err, inp, cached, out = 503, "overloaded", 0, 0, 0
                else:
                    status, err, inp, cached, out = 400, "invalid_request", 0, 0, 0
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
                    self.wrongful.add(rid)
        else:
            lat_us = 50_000 + int(19_950_000 * rand())
        req: _Req = (t, rid, status, err, model, inp, cached, out, lat_us / 1000)
        self.requests.append(req)
        if self.track:  # what the abuse rule will look at
            self.req_ts.append(t)
            tok = inp + out
            self.req_tok.append(tok)
            h = t // HOUR
            b = self.hourly.get(h)
            if b is None:
                self.hourly[h] = [1, tok]
            else:
                b[0] += 1
                b[1] += tok
        if status == 200:
            c = t + lat_us
            self.seq += 1
            heapq.heappush(self.heap, (c + 1 if c % SEC == 0 else c, 2, self.seq, "done", req))
        elif status == 500 and inp:
            c = _off_second(t + lat_us)
            if self.tl.failed[0] <= c < self.tl.failed[1]:
                self.push(c, 2, "done", req)

    def complete(self, c: int, req: _Req) -> None:
        """Billing at the charge's ts c for the request req."""
        t, rid, status, _, model, inp, cached, out, _ = req
        tl = self.tl
        failed = status >= 400
        b_cached, b_out = cached, out
        if self.windows:
            win = self.windows
            if (
                not failed
                and "unbilled" in win
                and win["unbilled"][0] <= c < win["unbilled"][1]
                and self.rng.random() < 0.3
            ):
                self.unbilled.add(rid)
                return
            if "cache_bug" in win and win["cache_bug"][0] <= c < win["cache_bug"][1]:
                b_cached = 0
            if "underbilled" in win and win["underbilled"][0] <= c < win["underbilled"][1]:
                b_out = 0
        prices = self.cfg.prices
        price = prices.at(model, self.cur, t)
        billed_price = price
        if model == _CHANGED_MODEL and t >= tl.price_change and tl.stale[0] <= c < tl.stale[1]:
            billed_price = prices.at(model, self.cur, tl.price_change - 1)
        charged = billed_price.expected(inp, b_cached, b_out)
        pen = self.penalty
        if pen is not None:
            assert pen.multiplier is not None
            charged = _q6(charged * Decimal(str(pen.multiplier)))
        self.n_entries += 1
        e = _Entry(
            c,
            f"{self.eid_prefix}{self.n_entries:05d}",
            "charge",
            -charged,
            self.cur,
            rid,
            (inp, b_cached, b_out),
        )
        self.entries.append(e)
        if failed:
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
        self.bal -= charged
        self.acc += e.excess
        if self.payg:
            if tl.dup[0] <= c < tl.dup[1]:
                self.n_entries += 1
                d = _Entry(
                    _off_second(c + 3000 + int(37000 * self.rng.random())),
                    f"{self.eid_prefix}{self.n_entries:05d}",
                    "charge",
                    -charged,
                    self.cur,
                    rid,
                    (inp, b_cached, b_out),
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
        for e in list(self.entries):
            if e.cause == "duplicate" and e.ts < ts:
                assert e.amount is not None and e.rid is not None
                self.schedule_row(ts, "refund", -e.amount, rid=e.rid)
                ts += 2 * SEC

    # -- abuse

    def classify_now(self, t: int) -> tuple[str, float]:
        """The pinned classification rule at t, from the requests logged so far,
        with how far from the threshold it is (ratio of last hour to 3x busiest)."""
        ts = self.req_ts
        if not ts or ts[0] > t - DAY:
            return "insufficient_history", 0.0
        n = tok = 0
        j = len(ts) - 1
        while j >= 0 and ts[j] >= t - HOUR:
            n += 1
            tok += self.req_tok[j]
            j -= 1
        first_h = -(-(t - HOUR - 7 * DAY) // HOUR)
        last_h = (t - 2 * HOUR) // HOUR
        top_n = top_tok = 0
        for h in range(first_h, last_h + 1):
            b = self.hourly.get(h)
            if b is not None:
                top_n = max(top_n, b[0])
                top_tok = max(top_tok, b[1])
        if n <= 3 * top_n and tok <= 3 * top_tok:
            ratio = max(n / (3 * top_n) if top_n else 0.0, tok / (3 * top_tok) if top_tok else 0.0)
            if not top_n:
                ratio = 1.0  # no baseline at all: fragile, not a clear false positive
            return "false_positive", ratio
        ratio = max(n / (3 * top_n) if top_n else 99.0, tok / (3 * top_tok) if top_tok else 99.0)
        return "warranted", ratio

    def act(self, t: int, a: _Action) -> None:
        cls, ratio = self.classify_now(t)
        clear_cut = (
            (cls == "false_positive" and ratio <= 0.67)
            or (cls == "warranted" and ratio >= 1.5)
            or cls == "insufficient_history"
        )
        if (
            a.intent in ("false_positive", "any")
            and not clear_cut
            or a.intent == "false_positive"
            and cls != "false_positive"
        ):
            # move a planned misfire to an hour where the rule's verdict is clear-cut
            self.taken.discard(t)
            if a.tries < 12 and t + HOUR < self.tl.end - 3 * HOUR:
                a.tries += 1
                a.ts = self.claim(t + HOUR)
                self.push(a.ts, 0, "act", a)
            return
        if a.intent not in ("any", cls):
            raise RuntimeError(
                f"generator self-check: {self.uid} {a.action} at {_iso(t)} meant {a.intent}, "
                f"the rule says {cls}"
            )
        a.cls = cls
        self.actions.append(a)
        if a.action == "flag":
            return
        end = t + a.duration
        if end >= self.tl.end - HOUR:
            end = self.claim(self.tl.end - HOUR - 10 * MIN)
            a.use_until = True
        if a.use_until:
            a.until = end
        else:
            a.clear_at = end = self.claim(end)
        setattr(self, a.action, a)
        self.push(end, 0, "end", a)

    def end(self, ts: int, a: _Action) -> None:
        if getattr(self, a.action) is a:
            setattr(self, a.action, None)


# ----------------------------------------------------------------------------
# Post-simulation faults that touch only what is written


def _lose_a_write(u: _UserData, rng: random.Random) -> None:
    """A charge the billing system counted but never wrote: the next row's
    balance_after breaks the chain. Chosen so that exactly one written row sits
    between it and the next reset (any reading of the chain rule then flags that
    one row), and no quota refusal falls in the gap (so the gateway's view and
    the replay never disagree about a decision)."""
    es = u.entries
    refused = [r[0] for r in u.requests if r[2] == 429 and r[3] == _QUOTA_CODE["units"]]
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


def _drop_requests(u: _UserData, rng: random.Random) -> None:
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


def _make_conflict(u: _UserData, tl: _Timeline, rng: random.Random) -> bool:
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


# ----------------------------------------------------------------------------
# The audit: the pinned rules applied to what was written


# a finding: detector, currency, ts, request_id, entry_id, amount, detail
_Finding = tuple[str, str | None, int, str | None, str | None, Decimal | None, str | None]


@dataclass
class _Audit:
    findings: list[_Finding]
    impact: dict[str, Any] | None
    causes: dict[str, tuple[str | None, Decimal]]
    wrongful: set[str]
    unbilled: set[str]
    reimbursable: dict[str, Decimal]
    classes: dict[int, str]


def _classify(
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


def _audit(
    u: _UserData, cfg: _Config, written: list[_Entry], abuse: list[_AbuseRow], requests: list[_Req]
) -> _Audit:
    prices = cfg.prices
    f: list[_Finding] = []
    req_by_id = {r[1]: r for r in requests}

    # abuse: classes and the intervals each action stands over
    req_ts = [r[0] for r in requests] if abuse else []
    req_tok = [r[5] + r[7] for r in requests] if abuse else []
    hourly: dict[int, tuple[int, int]] = {}
    for ts, tok in zip(req_ts, req_tok, strict=True):
        c, k = hourly.get(ts // HOUR, (0, 0))
        hourly[ts // HOUR] = (c + 1, k + tok)
    clears = sorted(a.ts for a in abuse if a.action == "clear")
    spans: list[tuple[int, int, str, str, float | None]] = []  # start, end, action, class, mult
    classes: dict[int, str] = {}
    for a in abuse:
        if a.action == "clear":
            continue
        t = a.ts
        cls = _classify(req_ts, req_tok, hourly, t)
        classes[t] = cls
        if a.until is not None:
            end = a.until
        else:
            k = bisect_right(clears, t)
            if k == len(clears):
                if a.action != "flag":
                    raise RuntimeError(f"generator self-check: open-ended {a.action}")
                end = cfg.timeline.end
            else:
                end = clears[k]
        spans.append((t, end, a.action, cls, a.multiplier))

    def standing(kinds: tuple[str, ...], x: int) -> list[tuple[int, int, str, str, float | None]]:
        return [s for s in spans if s[2] in kinds and s[0] <= x < s[1]]

    # the ledger, replayed in (ts, entry_id) order
    es = sorted(written, key=lambda e: (e.ts, e.eid))
    currencies = {e.currency for e in es}
    if len(currencies) > 1:
        raise RuntimeError("generator self-check: one currency per user")
    cur = es[0].currency if es else u.plan.currency
    e_ts = [e.ts for e in es]

    first_by_req: dict[str, _Entry] = {}
    refunds: dict[str, Decimal] = {}
    for e in es:
        if e.kind == "refund" and e.rid is not None:
            assert e.amount is not None
            refunds[e.rid] = refunds.get(e.rid, ZERO) + e.amount
    dup_refund_left = dict(refunds)
    causes: dict[str, tuple[str | None, Decimal]] = {}
    for e in es:
        if e.kind != "charge":
            continue
        assert e.rid is not None and e.amount is not None
        charged = -e.amount
        if e.rid in first_by_req:
            # duplicate: the whole extra entry, less refunds naming the request
            back = min(charged, dup_refund_left.get(e.rid, ZERO))
            if back:
                dup_refund_left[e.rid] -= back
            causes[e.eid] = ("duplicate", charged)
            f.append(("duplicate_charges", cur, e.ts, e.rid, e.eid, charged - back, None))
            continue
        first_by_req[e.rid] = e
        r = req_by_id.get(e.rid)
        if r is None:
            causes[e.eid] = ("orphan_charge", ZERO)
            f.append(("billing_mismatch", cur, e.ts, e.rid, e.eid, charged, "orphan_charge"))
            continue
        if r[2] >= 400:
            causes[e.eid] = ("charged_failed_request", charged)
            f.append(
                ("billing_mismatch", cur, e.ts, e.rid, e.eid, charged, "charged_failed_request")
            )
            continue
        expected = prices.at(r[4], e.currency, r[0]).expected(r[5], r[6], r[7])
        pens = standing(("penalty",), e.ts) if spans else None
        if pens:
            if len({s[3] for s in pens}) > 1:
                raise RuntimeError("generator self-check: penalties of two classes overlap")
            if pens[0][3] == "false_positive":
                causes[e.eid] = ("penalty_fp", charged - expected)
                f.append(
                    ("abuse_penalty_charges", cur, e.ts, e.rid, e.eid, charged - expected, None)
                )
            else:
                causes[e.eid] = ("penalty", ZERO)
            continue
        diff = charged - expected
        if diff > TOLERANCE:
            causes[e.eid] = ("overbilled", diff)
            f.append(("billing_mismatch", cur, e.ts, e.rid, e.eid, diff, "overbilled"))
        elif -diff > TOLERANCE:
            causes[e.eid] = ("underbilled", ZERO)
            f.append(("billing_mismatch", cur, e.ts, e.rid, e.eid, -diff, "underbilled"))
        else:
            causes[e.eid] = (None, ZERO)

    # balances: replay, counterfactual, top-ups, chain
    bal_after: list[Decimal] = []
    cf_after: list[Decimal] = []
    bal = ZERO
    if es and es[0].balance_after is not None and es[0].amount is not None:
        bal = es[0].balance_after - es[0].amount
    start_bal = bal
    acc = ZERO
    attributed = ZERO
    dup_left: dict[str, Decimal] = {}
    reimbursable: dict[str, Decimal] = {}
    prev_recorded: Decimal | None = None
    for k, e in enumerate(es):
        if e.kind == "reset":
            assert e.balance_after is not None
            bal = e.balance_after
            acc = ZERO
            attributed = ZERO
        else:
            assert e.amount is not None
            if e.kind == "topup":
                i = bisect_left(e_ts, e.ts)  # balance at t: rows with ts < t
                b_t = bal_after[i - 1] if i else start_bal
                cf_t = cf_after[i - 1] if i else start_bal
                if i != k:
                    raise RuntimeError("generator self-check: a top-up shares its instant")
                if b_t < 0 and cf_t >= 0:
                    back = max(ZERO, min(e.amount, (cf_t - b_t) - attributed))
                    attributed += back
                    reimbursable[e.eid] = back
                    f.append(("negative_balance_topups", cur, e.ts, None, e.eid, back, None))
            elif e.kind == "refund" and e.rid is not None:
                back = min(e.amount, dup_left.get(e.rid, ZERO))
                dup_left[e.rid] = dup_left.get(e.rid, ZERO) - back
                acc -= back
            elif e.kind == "charge":
                cause, excess = causes[e.eid]
                if cause == "duplicate":
                    assert e.rid is not None
                    dup_left[e.rid] = dup_left.get(e.rid, ZERO) + excess
                acc += excess
            bal += e.amount
            if e.balance_after is not None:
                local = None if prev_recorded is None else prev_recorded + e.amount
                if e.balance_after != bal:
                    if local is not None and local == e.balance_after:
                        raise RuntimeError("generator self-check: chain readings disagree")
                    f.append(
                        (
                            "balance_chain_breaks",
                            cur,
                            e.ts,
                            e.rid,
                            e.eid,
                            e.balance_after - bal,
                            None,
                        )
                    )
                elif local is not None and local != e.balance_after:
                    raise RuntimeError("generator self-check: chain readings disagree")
        if e.balance_after is not None:
            prev_recorded = e.balance_after
        bal_after.append(bal)
        cf_after.append(bal + acc)

    def at(series: list[Decimal], t: int) -> Decimal:
        i = bisect_left(e_ts, t)
        return series[i - 1] if i else start_bal

    # requests: wrongful 429s, unbilled
    charged_ids = set(first_by_req)
    wrongful: set[str] = set()
    unbilled: set[str] = set()
    for r in requests:
        status = r[2]
        if status == 200 and r[1] in charged_ids:
            continue
        t, rid, err = r[0], r[1], r[3]
        i = bisect_left(e_ts, t)
        r_cur = es[i - 1].currency if i else None  # DECISIONS: a request's currency
        if status == 429:
            if err in ("insufficient_quota", "usage_limit_reached"):
                wrong = r_cur is not None and at(cf_after, t) > 0
            elif err in ("abuse_blocked", "rate_limit_exceeded"):
                wrong = any(s[3] == "false_positive" for s in standing(("throttle", "block"), t))
            else:
                wrong = False
            if wrong:
                wrongful.add(rid)
                f.append(("wrongful_rejections", r_cur, t, rid, None, None, err))
        elif status < 400 and (r[5] or r[7]) and rid not in charged_ids:
            unbilled.add(rid)
            amount = None
            if r_cur is not None:
                amount = prices.at(r[4], r_cur, t).expected(r[5], r[6], r[7])
            f.append(("unbilled_requests", r_cur, t, rid, None, amount, None))

    # abuse findings
    restricted: list[tuple[int, int]] = []
    review = False
    for t, end, action, cls, _ in spans:
        if cls in ("false_positive", "insufficient_history"):
            i = bisect_left(e_ts, t)
            f.append(
                (
                    "abuse_false_positives",
                    es[i - 1].currency if i else None,
                    t,
                    None,
                    None,
                    None,
                    cls,
                )
            )
        if cls == "insufficient_history":
            review = True
        if cls == "false_positive" and action in ("throttle", "block", "penalty"):
            restricted.append((t, end))
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
    minutes = (2 * total + MIN) // (2 * MIN)

    # consumption anomalies: a day >= 10x the median of the previous 7 days with charges
    daily: dict[int, Decimal] = {}
    for e in es:
        if e.kind == "charge":
            assert e.amount is not None
            daily[e.ts // DAY] = daily.get(e.ts // DAY, ZERO) - e.amount
    for d in sorted(daily):
        before = [daily[x] for x in range(d - 7, d) if x in daily]
        if len(before) >= 3 and daily[d] >= 10 * median(before):
            f.append(("consumption_anomalies", cur, d * DAY, None, None, daily[d], None))

    # impact (DESIGN §4), for the user's one currency
    comp = {
        "duplicate_charges": ZERO,
        "charged_failed_request": ZERO,
        "abuse_penalty_charges": ZERO,
        "overbilled": ZERO,
        "negative_balance_topups": ZERO,
    }
    n_wrong = 0
    for det, _, _, _, _, amount, detail in f:
        key = detail if det == "billing_mismatch" else det
        if key in comp and amount is not None:
            comp[key] += amount
        elif det == "wrongful_rejections":
            n_wrong += 1
        if det == "billing_mismatch" and detail == "orphan_charge":
            review = True
    credit = (
        comp["duplicate_charges"]
        + comp["charged_failed_request"]
        + comp["abuse_penalty_charges"]
        + comp["overbilled"]
    )
    impact = None
    if any(comp.values()) or n_wrong or total or review:
        impact = {
            "user_id": u.uid,
            "plan": u.plan.name,
            "currency": cur,
            "duplicate_excess": _money(_q6(comp["duplicate_charges"])),
            "failed_request_charges": _money(_q6(comp["charged_failed_request"])),
            "abuse_penalty_excess": _money(_q6(comp["abuse_penalty_charges"])),
            "overbilled": _money(_q6(comp["overbilled"])),
            "credit_amount": _money(_round_credit(credit, cur)),
            "topup_reimbursement": _money(_round_credit(comp["negative_balance_topups"], cur)),
            "wrongful_429s": n_wrong,
            "restricted_minutes": minutes,
            "review": review,
        }
    return _Audit(f, impact, causes, wrongful, unbilled, reimbursable, classes)


def _cross_check(u: _UserData, a: _Audit, written: list[_Entry]) -> None:
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
    if u.reimbursable != a.reimbursable:
        problems.append(f"reimbursable: simulated {u.reimbursable}, rules {a.reimbursable}")
    for act in u.actions:
        if a.classes.get(act.ts) != act.cls:
            problems.append(
                f"{act.action} at {_iso(act.ts)}: simulated {act.cls}, "
                f"rules {a.classes.get(act.ts)}"
            )
    if problems:
        raise RuntimeError(f"generator self-check failed for {u.uid}: " + "; ".join(problems[:5]))


# ----------------------------------------------------------------------------
# Writing


_MALFORMED = (
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


class _Stats:
    """Running totals for summary.json."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {d: 0 for d in DETECTORS}
        self.first: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.hourly: dict[str, dict[int, int]] = {d: {} for d in DETECTORS}
        self.detail: dict[str, dict[str, int]] = {d: {} for d in DETECTORS}
        self.totals: dict[str, dict[str, Any]] = {}
        self.roles: dict[str, int] = {}
        self.plans: dict[str, int] = {}
        self.req_lo: int | None = None
        self.req_hi: int | None = None
        self.led_lo: int | None = None
        self.led_hi: int | None = None
        # rows per clock hour (hour index -> count): coverage gaps are global
        self.req_hours: dict[int, int] = {}
        self.led_hours: dict[int, int] = {}

    def finding(self, det: str, ts: int, detail: str | None) -> None:
        self.count[det] += 1
        if det not in self.first or ts < self.first[det]:
            self.first[det] = ts
        if det not in self.last or ts > self.last[det]:
            self.last[det] = ts
        h = self.hourly[det]
        h[ts // HOUR] = h.get(ts // HOUR, 0) + 1
        if detail is not None:
            self.detail[det][detail] = self.detail[det].get(detail, 0) + 1

    def forget(self, det: str) -> None:
        self.count[det] = 0
        self.first.pop(det, None)
        self.last.pop(det, None)
        self.hourly[det] = {}
        self.detail[det] = {}

    def merge(self, o: _Stats) -> None:
        for d in DETECTORS:
            self.count[d] += o.count[d]
            for k, n in o.hourly[d].items():
                self.hourly[d][k] = self.hourly[d].get(k, 0) + n
            for k2, n in o.detail[d].items():
                self.detail[d][k2] = self.detail[d].get(k2, 0) + n
        for d, ts in o.first.items():
            self.first[d] = min(ts, self.first.get(d, ts))
        for d, ts in o.last.items():
            self.last[d] = max(ts, self.last.get(d, ts))
        for cur, t in o.totals.items():
            mine = self.totals.setdefault(cur, dict.fromkeys(t, 0))
            for col, v in t.items():
                mine[col] += v
        for counts, theirs in ((self.roles, o.roles), (self.plans, o.plans)):
            for name, n in theirs.items():
                counts[name] = counts.get(name, 0) + n
        self.req_lo = _opt(min, self.req_lo, o.req_lo)
        self.req_hi = _opt(max, self.req_hi, o.req_hi)
        self.led_lo = _opt(min, self.led_lo, o.led_lo)
        self.led_hi = _opt(max, self.led_hi, o.led_hi)
        for hours, their_hours in ((self.req_hours, o.req_hours), (self.led_hours, o.led_hours)):
            for h, n in their_hours.items():
                hours[h] = hours.get(h, 0) + n

    def impact(self, row: dict[str, Any]) -> None:
        t = self.totals.setdefault(
            row["currency"],
            {
                "users": 0,
                "duplicate_excess": ZERO,
                "failed_request_charges": ZERO,
                "abuse_penalty_excess": ZERO,
                "overbilled": ZERO,
                "credit_amount": ZERO,
                "topup_reimbursement": ZERO,
                "wrongful_429s": 0,
                "restricted_minutes": 0,
                "review": 0,
            },
        )
        t["users"] += 1
        for k in (
            "duplicate_excess",
            "failed_request_charges",
            "abuse_penalty_excess",
            "overbilled",
            "credit_amount",
            "topup_reimbursement",
        ):
            t[k] += Decimal(row[k])
        t["wrongful_429s"] += row["wrongful_429s"]
        t["restricted_minutes"] += row["restricted_minutes"]
        t["review"] += int(row["review"])


def _opt(f: Callable[[int, int], int], a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else f(a, b)


def _request_line(r: _Req, head: str) -> str:
    """The JSON line, by hand like ``_Entry.line``; ``head`` holds the user's fields."""
    err = "null" if r[3] is None else f'"{r[3]}"'
    return (
        f'{{"ts":"{_iso(r[0])}","request_id":"{r[1]}",{head},"model":"{r[4]}",'
        f'"status":{r[2]},"error_code":{err},"input_tokens":{r[5]},'
        f'"cached_tokens":{r[6]},"output_tokens":{r[7]},"latency_ms":{r[8]!r}}}'
    )


def _user_head(uid: str, org: str | None, plan: str) -> str:
    org_json = "null" if org is None else f'"{org}"'
    return f'"user_id":"{uid}","org_id":{org_json},"plan":"{plan}"'


class _AbuseRow(NamedTuple):
    ts: int
    until: int | None
    action: str
    rule: str
    score: float | None
    multiplier: float | None


def _abuse_rows(u: _UserData) -> list[_AbuseRow]:
    rows = []
    for a in u.actions:
        rows.append(_AbuseRow(a.ts, a.until, a.action, a.rule, a.score, a.multiplier))
        if a.clear_at is not None:
            rows.append(_AbuseRow(a.clear_at, None, "clear", a.rule, None, None))
    rows.sort(key=lambda r: r.ts)
    return rows


def _sort_key(x: _Finding) -> tuple[Any, ...]:
    _, _, ts, rid, eid, _, _ = x
    return (x[0], ts, rid is None, rid or "", eid is None, eid or "")


def _finding_line(det: str, uid: str, x: _Finding) -> bytes:
    _, cur, ts, rid, eid, amount, detail = x
    return orjson.dumps(
        {
            "detector": det,
            "user_id": uid,
            "currency": cur,
            "ts": _iso(ts),
            "request_id": rid,
            "entry_id": eid,
            "amount": None if amount is None else _money(amount),
            "detail": detail,
        }
    )


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir():
        foreign = sorted(
            p.name for p in out_dir.iterdir() if p.name not in _DATA_FILES and p.name != _TRUTH
        )
        if foreign:
            raise InputError(
                f"{out_dir} is not empty ({', '.join(foreign[:3])}...); "
                "generate into a new or empty directory"
            )


def generate(
    out_dir: Path,
    *,
    users: int,
    days: int,
    seed: int,
    start: datetime = datetime(2025, 6, 1, tzinfo=UTC),
    requests_per_user_day: float = 40.0,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> GenerateResult:
    """Simulate ``users`` users for ``days`` days from ``start`` and write the
    logs and their ground truth into ``out_dir`` (created if missing; a previous
    generator output there is overwritten).

    The same arguments give byte-identical files, whatever ``workers`` is.
    Users are simulated one at a time, so memory stays bounded by one user's
    rows per process. ``workers`` processes share the users (None: one per CPU,
    up to 8, for runs of more than one chunk of users; 1: in this process).
    ``progress(done, total)`` is called now and then with users done.

    Raises InputError for a bad argument: users or days < 1, a rate that is not
    a positive finite number, an out-of-range ``start`` (a naive one is UTC), or
    an ``out_dir`` that is a file or a directory holding anything else.
    """
    if isinstance(users, bool) or not isinstance(users, int) or users < 1:
        raise InputError(f"--users must be a whole number >= 1, not {users!r}")
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise InputError(f"--days must be a whole number >= 1, not {days!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"--seed must be a whole number, not {seed!r}")
    try:
        rate = float(requests_per_user_day)
    except (TypeError, ValueError):
        rate = float("nan")
    if not (0 < rate < 1e6):
        raise InputError(
            f"--requests-per-user-day must be a number > 0, not {requests_per_user_day!r}"
        )
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise InputError(f"workers must be a whole number >= 1, not {workers!r}")
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    start = start.astimezone(UTC)
    if start.year < 1970 or start + timedelta(days=days + 1) >= datetime(2100, 1, 1, tzinfo=UTC):
        raise InputError(f"--start {start.isoformat()} with --days {days} leaves 1970..2099")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    truth = out_dir / _TRUTH
    truth.mkdir(exist_ok=True)

    start_us = _us(start)
    tl = _Timeline.build(start_us, days)
    g = random.Random(f"warroom-generate:{seed}:global")
    forced_idx = g.sample(range(users), min(users, len(_FORCED_ROLES)))
    forced = dict(zip(forced_idx, _FORCED_ROLES, strict=False))
    conflicts = frozenset(g.sample(range(users), min(users, 3)))
    bad_after = sorted(g.randrange(users) for _ in _MALFORMED)
    cfg = _Config(
        seed=seed,
        users=users,
        width=max(6, len(str(users - 1))),
        timeline=tl,
        prices=_PriceBook(start_us - 30 * DAY, tl.price_change),
        rate=rate,
        forced=forced,
        conflicts=conflicts,
    )
    chunk = _BLOCK * _CHUNK_BLOCKS
    n_chunks = -(-users // chunk)
    if workers is None:
        workers = min(os.cpu_count() or 1, 8, n_chunks)
    workers = min(workers, n_chunks)

    files = _open_streams(out_dir, truth)
    try:
        try:
            total = _Sink(cfg, files, bad_after)
            if workers <= 1:
                total.run(0, users, progress)
            else:
                _run_parallel(cfg, total, bad_after, workers, chunk, truth, progress)
        finally:
            for fh in files.values():
                fh.close()
        rows = _finish(out_dir, cfg, total, requests_per_user_day)
    except BaseException:
        for tmp in truth.glob(".*.tmp"):  # never leave a half-made answer key behind
            tmp.unlink()
        raise
    return GenerateResult(out_dir=out_dir, files=rows, truth_dir=truth)


#: conflict carry-over never crosses a block of users, and a chunk handed to a
#: worker is a whole number of blocks: so the output does not depend on workers
_BLOCK = 64
_CHUNK_BLOCKS = 8
_JSONL = ("requests.jsonl", "ledger-1.jsonl", "ledger-2.jsonl", "abuse.jsonl")
_STREAMS = (*_JSONL, "_users", *DETECTORS)


def _open_streams(out_dir: Path, truth: Path) -> dict[str, IO[bytes]]:
    files: dict[str, IO[bytes]] = {}
    try:
        for name in _JSONL:
            files[name] = open(out_dir / name, "wb")  # noqa: SIM115
        files["_users"] = open(truth / ".users.tmp", "wb")  # noqa: SIM115
        for d in DETECTORS:
            files[d] = open(truth / f".{d}.tmp", "wb")  # noqa: SIM115
    except OSError as exc:
        for fh in files.values():
            fh.close()
        raise InputError(f"cannot write into {out_dir}: {exc.strerror}") from None
    return files


def _run_parallel(
    cfg: _Config,
    total: _Sink,
    bad_after: list[int],
    workers: int,
    chunk: int,
    truth: Path,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Chunks of users in worker processes, appended in order as each completes.

    Workers are fresh interpreters started with ``python -c``, not a
    multiprocessing pool: the caller's main module is never re-imported (a
    script without a ``__main__`` guard still works) and nothing is forked
    from a process that may run threads.
    """
    tmp = Path(tempfile.mkdtemp(prefix=".chunks-", dir=truth))
    bounds = [(lo, min(lo + chunk, cfg.users)) for lo in range(0, cfg.users, chunk)]
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parents[1])  # so the worker imports this very package
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for w in range(workers):
            err = tmp / f"worker-{w}.log"
            with open(err, "wb") as err_fh:
                proc = subprocess.Popen(
                    [sys.executable, "-c", "from warroom.generate import _worker; _worker()"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=err_fh,
                    env=env,
                )
            assert proc.stdin is not None
            proc.stdin.write(pickle.dumps((cfg, bounds[w::workers], bad_after, str(tmp))))
            proc.stdin.close()
            procs.append((proc, err))
        for k, (lo, _) in enumerate(bounds):
            d = tmp / f"{lo:012d}"
            result = d / "result.pickle"
            proc, err = procs[k % workers]
            while not result.exists():
                if proc.poll() is not None and not result.exists():
                    tail = err.read_text(errors="replace").strip().splitlines()[-1:]
                    raise RuntimeError(f"a generate worker failed: {' '.join(tail)}")
                time.sleep(0.01)
            total.absorb(pickle.loads(result.read_bytes()), d)
            if progress is not None:
                progress(total.done, cfg.users)
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def _worker() -> None:
    """Entry point of a worker process: its chunks, in order, from a job on stdin."""
    cfg, bounds, bad_after, tmp = pickle.load(sys.stdin.buffer)
    for lo, hi in bounds:
        sink, d = _run_chunk((cfg, lo, hi, bad_after, tmp))
        part = Path(d) / "result.part"
        part.write_bytes(pickle.dumps(sink))
        part.replace(Path(d) / "result.pickle")


def _run_chunk(job: tuple[_Config, int, int, list[int], str]) -> tuple[_Sink, str]:
    """Users lo..hi-1 into files of their own, under tmp."""
    cfg, lo, hi, bad_after, tmp = job
    d = Path(tmp) / f"{lo:012d}"
    d.mkdir()
    files: dict[str, IO[bytes]] = {name: open(d / name, "wb") for name in _STREAMS}  # noqa: SIM115
    try:
        sink = _Sink(cfg, files, bad_after)
        sink.run(lo, hi, None)
    finally:
        for fh in files.values():
            fh.close()
    sink.files = {}
    return sink, str(d)


class _Sink:
    """Writes the rows and the truth of consecutive users to one set of streams,
    keeping the counts, the totals and the rejects (line numbers are local to
    these streams until ``absorb`` moves them into another sink)."""

    def __init__(self, cfg: _Config, files: dict[str, IO[bytes]], bad_after: list[int]) -> None:
        self.cfg = cfg
        self.files = files
        self.bad_after = bad_after
        self.stats = _Stats()
        self.rows = {name: 0 for name in _JSONL}
        self.rejects: list[dict[str, Any]] = []
        self.conflicts = 0
        self.conflicts_due = 0  # a chosen user without a charge passes it on
        self.done = 0

    def run(self, lo: int, hi: int, progress: Callable[[int, int], None] | None) -> None:
        step = max(1, self.cfg.users // 100)
        for i in range(lo, hi):
            if i % _BLOCK == 0:
                self.conflicts_due = 0
            self.user(_Sim(self.cfg, i).run())
            for k, after in enumerate(self.bad_after):
                if after == i:
                    self.malformed(k, i)
            self.done += 1
            if progress is not None and (self.done % step == 0 or i + 1 == hi):
                progress(self.done, self.cfg.users)

    def absorb(self, part: _Sink, d: Path) -> None:
        """Append a worker's streams and totals after ours."""
        for name in _STREAMS:
            with open(d / name, "rb") as fh:
                shutil.copyfileobj(fh, self.files[name], 1 << 20)
        for r in part.rejects:
            self.rejects.append({**r, "line": r["line"] + self.rows["requests.jsonl"]})
        for name in _JSONL:
            self.rows[name] += part.rows[name]
        self.stats.merge(part.stats)
        self.conflicts += part.conflicts
        self.done += part.done
        shutil.rmtree(d, ignore_errors=True)

    def _write(self, name: str, lines: list[str]) -> None:
        if lines:
            lines.append("")
            self.files[name].write("\n".join(lines).encode())
            self.rows[name] += len(lines) - 1

    def malformed(self, k: int, after_user: int) -> None:
        kind, template = _MALFORMED[k]
        ts = _iso(self.cfg.timeline.start + (k + 1) * HOUR + 123_000)
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

    def user(self, u: _UserData) -> None:
        cfg = self.cfg
        tl = cfg.timeline
        stats = self.stats
        rng = random.Random(f"warroom-generate:{cfg.seed}:{u.index}:post")
        u.entries.sort(key=lambda e: (e.ts, e.eid))
        bal = ZERO
        for e in u.entries:  # what the billing system recorded, lost writes included
            if e.kind == "reset":
                assert e.balance_after is not None
                bal = e.balance_after
            else:
                assert e.amount is not None
                bal += e.amount
                e.balance_after = bal
        if u.role == "lost_write":
            _lose_a_write(u, rng)
        if u.role == "orphan":
            _drop_requests(u, rng)
        if u.index in cfg.conflicts:
            self.conflicts_due += 1
        if self.conflicts_due and _make_conflict(u, tl, rng):
            self.conflicts_due -= 1
            self.conflicts += 1
        written = [e for e in u.entries if not e.lost]
        requests = [r for r in u.requests if r[1] not in u.dropped] if u.dropped else u.requests
        abuse = _abuse_rows(u)
        audit = _audit(u, cfg, written, abuse, requests)
        _cross_check(u, audit, written)

        uid, plan = u.uid, u.plan.name
        head = _user_head(uid, u.org, plan)
        self._write("requests.jsonl", [_request_line(r, head) for r in requests])
        hours = stats.req_hours
        for r in requests:
            h = r[0] // HOUR
            hours[h] = hours.get(h, 0) + 1
        hours = stats.led_hours
        for e in written:
            h = e.ts // HOUR
            hours[h] = hours.get(h, 0) + 1
        if requests:
            lo_r, hi_r = requests[0][0], requests[-1][0]
            stats.req_lo = lo_r if stats.req_lo is None else min(stats.req_lo, lo_r)
            stats.req_hi = hi_r if stats.req_hi is None else max(stats.req_hi, hi_r)
        if written:
            lo_l, hi_l = written[0].ts, written[-1].ts
            stats.led_lo = lo_l if stats.led_lo is None else min(stats.led_lo, lo_l)
            stats.led_hi = hi_l if stats.led_hi is None else max(stats.led_hi, hi_l)
        l1: list[str] = []
        l2: list[str] = []
        lo, hi = tl.split - HOUR, tl.split + HOUR
        for e in written:
            line = e.line(uid)
            if e.ts < hi:
                l1.append(line)
            if e.conflict is not None:
                l2.append(e.line(uid, e.conflict))
                audit.findings.append(
                    ("ledger_conflicts", e.currency, e.ts, e.rid, e.eid, None, "amount")
                )
            elif e.ts >= lo:
                l2.append(line)
        self._write("ledger-1.jsonl", l1)
        self._write("ledger-2.jsonl", l2)
        self._write(
            "abuse.jsonl",
            [
                orjson.dumps(
                    {
                        "ts": _iso(a.ts),
                        "user_id": uid,
                        "action": a.action,
                        "rule": a.rule,
                        "score": a.score,
                        "until": None if a.until is None else _iso(a.until),
                        "multiplier": a.multiplier,
                    }
                ).decode()
                for a in abuse
            ],
        )

        audit.findings.sort(key=_sort_key)
        files = self.files
        for x in audit.findings:
            stats.finding(x[0], x[2], x[6])
            files[x[0]].write(_finding_line(x[0], uid, x) + b"\n")
        if audit.impact is not None:
            files["_users"].write(orjson.dumps(audit.impact) + b"\n")
            stats.impact(audit.impact)
        stats.roles[u.role] = stats.roles.get(u.role, 0) + 1
        stats.plans[plan] = stats.plans.get(plan, 0) + 1


def _finish(out: Path, cfg: _Config, total: _Sink, rate: float) -> dict[str, int]:
    """prices.csv, and _truth/ from the per-detector streams and the totals."""
    tl = cfg.timeline
    stats = total.stats
    truth = out / _TRUTH
    lines = cfg.prices.csv_lines()
    (out / "prices.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows: dict[str, int] = {**total.rows, "prices.csv": len(lines) - 1}

    # unbilled requests count only inside the time both sources cover
    cover = None
    if (
        stats.req_lo is not None
        and stats.req_hi is not None
        and stats.led_lo is not None
        and stats.led_hi is not None
    ):
        cover = (max(stats.req_lo, stats.led_lo), min(stats.req_hi, stats.led_hi))
    with open(truth / "findings.jsonl", "wb") as out_fh:
        for d in DETECTORS:
            tmp = truth / f".{d}.tmp"
            with open(tmp, "rb") as fh:
                if d == "coverage_gaps":
                    for h, detail in _coverage_gaps(stats):
                        out_fh.write(
                            orjson.dumps(
                                {
                                    "detector": d,
                                    "user_id": None,
                                    "currency": None,
                                    "ts": _iso(h * HOUR),
                                    "request_id": None,
                                    "entry_id": None,
                                    "amount": None,
                                    "detail": detail,
                                }
                            )
                            + b"\n"
                        )
                        stats.finding(d, h * HOUR, detail)
                elif d != "unbilled_requests":
                    shutil.copyfileobj(fh, out_fh, 1 << 20)
                else:
                    # and not in an hour where the ledger has no rows at all
                    stats.forget(d)
                    for line in fh:
                        row = orjson.loads(line)
                        ts = _us(datetime.fromisoformat(row["ts"]))
                        if (
                            cover is not None
                            and cover[0] <= ts <= cover[1]
                            and ts // HOUR in stats.led_hours
                        ):
                            out_fh.write(line)
                            stats.finding(d, ts, row["detail"])
            tmp.unlink()
    (truth / ".users.tmp").replace(truth / "users.jsonl")
    (truth / "rejects.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in total.rejects))

    summary = {
        "generator": "warroom.generate",
        "parameters": {
            "users": cfg.users,
            "days": tl.days,
            "seed": cfg.seed,
            "start": _iso(tl.start),
            "requests_per_user_day": rate,
        },
        "period": {"start": _iso(tl.start), "end": _iso(tl.end)},
        "files": rows,
        "malformed_lines": len(total.rejects),
        "ledger_split": {
            "at": _iso(tl.split),
            "overlap_from": _iso(tl.split - HOUR),
            "overlap_until": _iso(tl.split + HOUR),
        },
        "coverage": None if cover is None else {"from": _iso(cover[0]), "until": _iso(cover[1])},
        "injected": {
            "duplicate_deductions": _span(tl.dup),
            "duplicate_refunds_from": None if tl.refund_at is None else _iso(tl.refund_at),
            "charged_failed_requests": _span(tl.failed),
            "price_change": _iso(tl.price_change),
            "stale_price_billing": _span(tl.stale),
            "billing_outage": None if tl.outage is None else _span(tl.outage),
            "abuse_misfires": None if tl.abuse is None else _span(tl.abuse),
            "global_quota_reset": None if tl.global_reset is None else _iso(tl.global_reset),
            "ledger_conflicts": total.conflicts,
        },
        "roles": dict(sorted(stats.roles.items())),
        "plans": dict(sorted(stats.plans.items())),
        "detectors": {
            d: {
                "rows": stats.count[d],
                "first": _iso(stats.first[d]) if d in stats.first else None,
                "last": _iso(stats.last[d]) if d in stats.last else None,
                "by_detail": dict(sorted(stats.detail[d].items())),
                "hourly": {_iso(h * HOUR): n for h, n in sorted(stats.hourly[d].items())},
            }
            for d in DETECTORS
        },
        "totals": {
            cur: {k: _money(v) if isinstance(v, Decimal) else v for k, v in t.items()}
            for cur, t in sorted(stats.totals.items())
        },
    }
    (truth / "summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    return rows


def _coverage_gaps(stats: _Stats) -> list[tuple[int, str]]:
    """Clock hours inside the span both logs cover (from the later first hour to
    the earlier last) where one has rows and the other none, with the detail."""
    req, led = stats.req_hours, stats.led_hours
    if not req or not led:
        return []
    gaps = []
    for h in range(max(min(req), min(led)), min(max(req), max(led)) + 1):
        if h in req and h not in led:
            gaps.append((h, f"ledger: none; requests: {req[h]} rows"))
        elif h in led and h not in req:
            gaps.append((h, f"requests: none; ledger: {led[h]} rows"))
    return gaps


def _span(w: tuple[int, int]) -> dict[str, str]:
    return {"from": _iso(w[0]), "until": _iso(w[1])}
