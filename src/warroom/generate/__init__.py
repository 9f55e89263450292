"""Synthetic billing incidents with their ground truth, at any scale.

A detection that was never run against a known answer proves nothing, and a
war room cannot wait for the next real incident to find out. This package
simulates a metered API, one user at a time, and writes what such a service
would leave behind (a request log, a billing ledger split into two
overlapping files, abuse-system decisions, a price list) with the faults of
DESIGN.md injected into it. Next to the logs it writes ``_truth/``: the
findings and the per-user impact that DESIGN.md and docs/DECISIONS.md define
for exactly those files.

The truth is made twice and must agree. The simulation knows by construction
what each injected fault cost (it tracks the real and the counterfactual
balance as it goes); an independent audit then applies the pinned rules to the
rows as written. Any disagreement is a bug in this package and raises
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
  quota, ``initiated_by`` ``system``) at sign-up, weekly from sign-up, and once
  for everyone in the middle of the abuse incident (the worst penalty outlasts
  it by 10 hours or more: the mass reset does not stop the drain). Each
  subscriber banks 2 resets and, 5 to 60 minutes after a quota refusal, spends
  one (``initiated_by`` ``user``) while any is left and none is on its way; it
  is to restore if a refusal in the window it ends was wrongful (a
  ``heavy_quota`` user drains their own quota: theirs are not). ``free`` holds
  ``credits`` from a weekly ``grant``.
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
- A wrongful 429 costs, in the served counterfactual, the lower median of the
  expected charges of the user's successful requests over the 7 UTC days before
  its day. Users are simulated one at a time, so the plan-wide fallback is out
  of reach: a wrongful 429 that would need it (no own history after the world's
  first day) fails the self-check; on the first day nobody has history (cost 0).
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

The package, by stage: ``units`` (time and money), ``prices``, ``timeline``
(the incident windows), ``users`` (plans, roles, the world's configuration),
``rows`` (what a user leaves behind), ``sim`` (the per-user simulation, one
module per actor), ``faults`` (injected after it), ``audit`` (the truth, and its
cross-check against the simulation), ``write`` (the files, in parallel for a
large world).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from warroom.errors import InputError
from warroom.generate.prices import PriceBook
from warroom.generate.timeline import IncidentTimeline
from warroom.generate.units import DAY, us_since_epoch
from warroom.generate.users import FORCED_ROLES, WorldConfig
from warroom.generate.write.files import DETECTORS, TRUTH_DIR, check_out_dir, open_streams
from warroom.generate.write.parallel import run_users
from warroom.generate.write.sink import MALFORMED_LINES, Sink
from warroom.generate.write.truth import finish

__all__ = ["GenerateResult", "generate", "DETECTORS"]


@dataclass(frozen=True)
class GenerateResult:
    """Where the data went. ``files`` maps each data file (relative to
    ``out_dir``) to the rows written: lines for JSONL (malformed ones included),
    data rows for CSV (the header is not a row)."""

    out_dir: Path
    files: dict[str, int]
    truth_dir: Path


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
    dup_pause_hours: int = 0,
    spared_plans: tuple[str, ...] = (),
) -> GenerateResult:
    """Simulate ``users`` users for ``days`` days from ``start`` and write the
    logs and their ground truth into ``out_dir`` (created if missing; a previous
    generator output there is overwritten).

    The same arguments give byte-identical files, whatever ``workers`` is.
    Users are simulated one at a time, so memory stays bounded by one user's
    rows per process. ``workers`` processes share the users (None: one per CPU,
    up to 8, for runs of more than one chunk of users; 1: in this process).
    ``progress(done, total)`` is called now and then with users done.

    The report scenario (issue 13): ``dup_pause_hours`` pauses the duplicate
    deductions for that many hours mid-window (two episodes of one fault), and
    ``spared_plans`` (e.g. ``("enterprise",)``) are touched by no fault; such a world's
    summary.json adds ``report_scenario`` with each episode's bracketed window.

    Raises InputError for a bad argument: users or days < 1, a rate that is not
    a positive finite number, an out-of-range ``start`` (a naive one is UTC), or
    an ``out_dir`` that is a file or a directory holding anything else.
    """
    rate, start = _checked_arguments(users, days, seed, requests_per_user_day, workers, start)
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    truth = out_dir / TRUTH_DIR
    truth.mkdir(exist_ok=True)

    cfg, bad_after = _world(users, days, seed, us_since_epoch(start), rate)
    cfg = replace(
        cfg,
        timeline=IncidentTimeline.build(cfg.timeline.start, days, dup_pause_hours),
        spared=frozenset(p.lower() for p in spared_plans),
    )
    files = open_streams(out_dir, truth)
    try:
        try:
            total = Sink(cfg, files, bad_after)
            run_users(cfg, total, bad_after, workers, truth, progress)
        finally:
            for fh in files.values():
                fh.close()
        rows = finish(out_dir, cfg, total, requests_per_user_day)
    except BaseException:
        for tmp in truth.glob(".*.tmp"):  # never leave a half-made answer key behind
            tmp.unlink()
        raise
    return GenerateResult(out_dir=out_dir, files=rows, truth_dir=truth)


def _checked_arguments(
    users: int,
    days: int,
    seed: int,
    requests_per_user_day: float,
    workers: int | None,
    start: datetime,
) -> tuple[float, datetime]:
    """The rate as a float and the start in UTC; InputError for a bad argument."""
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
    return rate, start


def _world(
    users: int, days: int, seed: int, start_us: int, rate: float
) -> tuple[WorldConfig, list[int]]:
    """The world's configuration (who lives which forced scenario, who gets a
    ledger conflict) and the users after whom the malformed lines go."""
    tl = IncidentTimeline.build(start_us, days)
    g = random.Random(f"warroom-generate:{seed}:global")
    forced_idx = g.sample(range(users), min(users, len(FORCED_ROLES)))
    forced = dict(zip(forced_idx, FORCED_ROLES, strict=False))
    conflicts = frozenset(g.sample(range(users), min(users, 3)))
    bad_after = sorted(g.randrange(users) for _ in MALFORMED_LINES)
    cfg = WorldConfig(
        seed=seed,
        users=users,
        width=max(6, len(str(users - 1))),
        timeline=tl,
        prices=PriceBook(start_us - 30 * DAY, tl.price_change),
        rate=rate,
        forced=forced,
        conflicts=conflicts,
    )
    return cfg, bad_after
