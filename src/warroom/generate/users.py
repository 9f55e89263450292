"""Who the simulated users are: billing plans, the scenario roles they live
through, their daily rhythm, and the configuration of one generated world."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from warroom.generate.prices import PriceBook
from warroom.generate.rows import AbuseAction, LedgerEntry, RequestRow
from warroom.generate.timeline import IncidentTimeline
from warroom.generate.units import ZERO


@dataclass(frozen=True)
class BillingPlan:
    """A plan users sign up for: its ledger currency, share of users, usage and funding."""

    name: str
    currency: str
    weight: float
    usage: float  # relative requests per day
    prepaid: bool
    quota: Decimal | None  # reset to this weekly (subscriptions), at 40 requests a day
    grant: Decimal  # at sign-up (and weekly for free, scaled like quotas)
    models: tuple[tuple[str, float], ...]


BILLING_PLANS = (
    BillingPlan(
        name="payg", currency="usd", weight=0.35, usage=1.0, prepaid=True, quota=None,
        grant=Decimal("1.00"),
        models=(("atlas-large", 0.5), ("atlas-mini", 0.25), ("nova-code", 0.2),
                ("orbit-embed", 0.05)),
    ),
    BillingPlan(
        name="enterprise", currency="usd", weight=0.10, usage=2.0, prepaid=False, quota=None,
        grant=Decimal("10.00"),
        models=(("atlas-large", 0.6), ("nova-code", 0.3), ("orbit-embed", 0.1)),
    ),
    BillingPlan(
        name="plus", currency="units", weight=0.25, usage=1.0, prepaid=True,
        quota=Decimal("20"), grant=ZERO, models=(("atlas-large", 0.7), ("nova-code", 0.3)),
    ),
    BillingPlan(
        name="pro", currency="units", weight=0.10, usage=2.0, prepaid=True,
        quota=Decimal("80"), grant=ZERO, models=(("atlas-large", 0.7), ("nova-code", 0.3)),
    ),
    BillingPlan(
        name="free", currency="credits", weight=0.20, usage=0.3, prepaid=True, quota=None,
        grant=Decimal("0.25"), models=(("atlas-mini", 1.0),),
    ),
)  # fmt: skip
PLAN_BY_NAME = {p.name: p for p in BILLING_PLANS}
USAGE_NORM = 1.0 / (sum(p.weight * p.usage for p in BILLING_PLANS) * (5 * 1.1 + 2 * 0.6) / 7)
QUOTA_CODE = {
    "usd": "insufficient_quota",
    "credits": "insufficient_quota",
    "units": "usage_limit_reached",
}

#: scenario roles, with the share of users that live them in a large run
ROLE_RATES = (
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
    ("heavy_quota", 0.005),
)
#: so that even a small run holds every scenario, these go to distinct random users
#: first ("role:plan" also fixes the plan)
FORCED_ROLES = (
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
    "heavy_quota:plus",
)

# hour-of-day weights in the user's local time
LOCAL_HOURS = (
    0.05, 0.03, 0.03, 0.03, 0.03, 0.05, 0.15, 0.4, 0.8, 1.0, 1.0, 1.0,
    0.9, 1.0, 1.0, 1.0, 0.9, 0.8, 0.6, 0.5, 0.5, 0.4, 0.25, 0.1,
)  # fmt: skip
TZ_OFFSETS = (-8, -7, -7, -5, -4, 0, 1, 1, 2, 5, 8, 9)

FP_RULE = "usage_velocity_v2"
#: the resets a subscription user has banked: when their quota runs out, they spend
#: one (a ledger reset with initiated_by = user) while any is left
BANKED_RESETS = 2


@dataclass(frozen=True)
class WorldConfig:
    """Everything a user's simulation depends on besides its own random stream."""

    seed: int
    users: int
    width: int
    timeline: IncidentTimeline
    prices: PriceBook
    rate: float  # mean requests per user and day
    forced: dict[int, str]
    conflicts: frozenset[int]
    #: plans no fault touches (the seed's "not Enterprise"): their users live no harmful
    #: role, and neither failed requests nor stale prices are charged to them
    spared: frozenset[str] = frozenset()

    def uid(self, i: int) -> str:
        return f"u{i:0{self.width}d}"


@dataclass
class SimulatedUser:
    """One user's simulated rows and intents, handed to the audit and the writers."""

    index: int
    uid: str
    plan: BillingPlan
    role: str
    org: str | None
    requests: list[RequestRow]
    entries: list[LedgerEntry]
    actions: list[AbuseAction]
    wrongful: set[str] = field(default_factory=set)
    unbilled: set[str] = field(default_factory=set)
    reimbursable: dict[str, Decimal] = field(default_factory=dict)
    dropped: set[str] = field(default_factory=set)  # request lines lost from the log
