"""Findings -> per-user impact and suggested credits under a policy (DESIGN.md section 4).

One row per user and currency. The four excess components come from the
findings (each charge's excess is attributed to exactly one cause there, so
nothing is counted twice); ``credit_amount`` is their sum, rounded half-up
once per row to the currency's unit; ``topup_reimbursement`` likewise.

The policy (TOML, read with the standard library) can name the incident and
its window, exclude plans, switch components off, add goodwill and a minimum
credit. Unknown keys and bad values are errors, so a typo cannot silently
change who gets what.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from warroom.detect import _compute_findings
from warroom.errors import QueryError, WarroomError
from warroom.pack import Pack, parse_timestamp, prepare

COMPONENTS = (
    "duplicate_excess",
    "failed_request_charges",
    "abuse_penalty_excess",
    "overbilled",
    "topup_reimbursement",
)

IMPACT_COLUMNS = (
    "user_id",
    "plan",
    "currency",
    "duplicate_excess",
    "failed_request_charges",
    "abuse_penalty_excess",
    "overbilled",
    "credit_amount",
    "topup_reimbursement",
    "wrongful_429s",
    "restricted_minutes",
    "review",
    "credit_id",
    "reasons",
)

EXPORT_COLUMNS = (
    "user_id",
    "plan",
    "currency",
    "credit_amount",
    "topup_reimbursement",
    "credit_id",
    "reasons",
)


class PolicyError(WarroomError):
    """The policy file is unreadable, has an unknown key, or a bad value."""


@dataclass(frozen=True)
class Policy:
    incident_id: str = "incident"
    start: datetime | None = None
    end: datetime | None = None
    exclude_plans: tuple[str, ...] = ()
    components: dict[str, bool] = field(default_factory=lambda: {c: True for c in COMPONENTS})
    goodwill_percent: Decimal = Decimal(0)
    #: currency -> smallest credit given to a row that is owed anything
    minimum_credit: dict[str, Decimal] = field(default_factory=dict)
    source: str = "default"

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "incident": {
                "id": self.incident_id,
                "start": self.start.isoformat() + "Z" if self.start else None,
                "end": self.end.isoformat() + "Z" if self.end else None,
            },
            "exclude_plans": list(self.exclude_plans),
            "components": dict(self.components),
            "goodwill_percent": str(self.goodwill_percent),
            "minimum_credit": {k: str(v) for k, v in sorted(self.minimum_credit.items())},
        }


_SCHEMA: dict[str, set[str]] = {
    "incident": {"id", "start", "end"},
    "credits": {"exclude_plans", "goodwill_percent", "minimum_credit", *COMPONENTS},
}


def load_policy(path: Path | None) -> Policy:
    """Read a policy file; None gives the default policy of DESIGN.md section 4."""
    if path is None:
        return Policy()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"{path}: no such policy file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from None
    for section, body in data.items():
        if section not in _SCHEMA:
            raise PolicyError(
                f"{path}: unknown section [{section}] (known: {', '.join(sorted(_SCHEMA))})"
            )
        if not isinstance(body, dict):
            raise PolicyError(f"{path}: {section} must be a table, like [{section}]")
        for key in body:
            if key not in _SCHEMA[section]:
                raise PolicyError(
                    f"{path}: unknown key {key!r} in [{section}] "
                    f"(known: {', '.join(sorted(_SCHEMA[section]))})"
                )
    incident = data.get("incident", {})
    credits = data.get("credits", {})

    def text(section: str, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise PolicyError(f"{path}: [{section}] {key} must be a non-empty string")
        return value

    def when(key: str) -> datetime | None:
        value = incident.get(key)
        if value is None:
            return None
        if isinstance(value, datetime):
            from datetime import UTC

            return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        try:
            return parse_timestamp(text("incident", key, value))
        except QueryError as exc:
            raise PolicyError(f"{path}: [incident] {key}: {exc}") from None

    def money(key: str, value: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise PolicyError(
                f"{path}: [credits] {key} must be a number written as a "
                'string ("0.50") or an integer, never a float'
            )
        try:
            d = Decimal(str(value))
        except InvalidOperation:
            raise PolicyError(f"{path}: [credits] {key}: {value!r} is not a number") from None
        if d < 0:
            raise PolicyError(f"{path}: [credits] {key} must not be negative")
        return d

    start, end = when("start"), when("end")
    if start and end and end <= start:
        raise PolicyError(f"{path}: [incident] end must be after start")
    components = {c: True for c in COMPONENTS}
    for c in COMPONENTS:
        if c in credits:
            if not isinstance(credits[c], bool):
                raise PolicyError(f"{path}: [credits] {c} must be true or false")
            components[c] = credits[c]
    plans = credits.get("exclude_plans", [])
    if not isinstance(plans, list) or not all(isinstance(p, str) for p in plans):
        raise PolicyError(f"{path}: [credits] exclude_plans must be a list of plan names")
    minimum = credits.get("minimum_credit", {})
    if not isinstance(minimum, dict):
        raise PolicyError(
            f"{path}: [credits] minimum_credit must be a table of "
            'currency = amount, e.g. minimum_credit = {{ usd = "1.00" }}'
        )
    return Policy(
        incident_id=text("incident", "id", incident.get("id", "incident")),
        start=start,
        end=end,
        exclude_plans=tuple(p.lower() for p in plans),
        components=components,
        goodwill_percent=money("goodwill_percent", credits.get("goodwill_percent", 0)),
        minimum_credit={k.lower(): money(f"minimum_credit.{k}", v) for k, v in minimum.items()},
        source=str(path),
    )


def credit_id(incident_id: str, user_id: str, currency: str | None) -> str:
    """A stable id for one credit: applying the same credit file twice is detectable."""
    digest = hashlib.sha256(
        "\x1f".join([incident_id, user_id, currency or ""]).encode()
    ).hexdigest()
    return "cr_" + digest[:24]


_IMPACT_SQL = """
WITH f AS (
    SELECT * FROM findings
    WHERE ($start IS NULL OR ts >= $start) AND ($end IS NULL OR ts < $end)
),
keys AS (
    SELECT DISTINCT user_id, currency FROM f
    WHERE user_id IS NOT NULL
      AND detector IN ('duplicate_charges', 'billing_mismatch', 'abuse_penalty_charges',
                       'negative_balance_topups', 'wrongful_rejections', 'abuse_false_positives')
),
sums AS (
    SELECT user_id, currency,
        sum(CASE WHEN detector = 'duplicate_charges' THEN amount ELSE 0 END) AS duplicate_excess,
        sum(CASE WHEN detector = 'duplicate_charges' THEN 1 ELSE 0 END) AS n_duplicates,
        sum(CASE WHEN detector = 'billing_mismatch' AND detail = 'charged_failed_request'
                 THEN amount ELSE 0 END) AS failed_request_charges,
        sum(CASE WHEN detector = 'billing_mismatch' AND detail = 'charged_failed_request'
                 THEN 1 ELSE 0 END) AS n_failed,
        sum(CASE WHEN detector = 'abuse_penalty_charges' THEN amount ELSE 0 END)
            AS abuse_penalty_excess,
        sum(CASE WHEN detector = 'abuse_penalty_charges' THEN 1 ELSE 0 END) AS n_penalty,
        sum(CASE WHEN detector = 'billing_mismatch' AND detail = 'overbilled'
                 THEN amount ELSE 0 END) AS overbilled,
        sum(CASE WHEN detector = 'billing_mismatch' AND detail = 'overbilled'
                 THEN 1 ELSE 0 END) AS n_overbilled,
        sum(CASE WHEN detector = 'negative_balance_topups' THEN amount ELSE 0 END)
            AS topup_reimbursement,
        sum(CASE WHEN detector = 'negative_balance_topups' AND amount > 0 THEN 1 ELSE 0 END)
            AS n_topups,
        sum(CASE WHEN detector = 'wrongful_rejections' THEN 1 ELSE 0 END) AS wrongful_429s,
        sum(CASE WHEN detector = 'billing_mismatch' AND detail = 'orphan_charge'
                 THEN 1 ELSE 0 END) AS n_orphans,
        sum(CASE WHEN detector = 'abuse_false_positives' AND detail = 'insufficient_history'
                 THEN 1 ELSE 0 END) AS n_unreviewed
    FROM f
    WHERE user_id IS NOT NULL
    GROUP BY user_id, currency
),
restrictions AS (
    SELECT a.user_id, uc.currency,
           greatest(a.ts, coalesce($start, a.ts)) AS start_ts,
           least(a.end_ts, coalesce($end, a.end_ts)) AS end_ts
    FROM abuse_restrictions AS a
    LEFT JOIN user_currency AS uc ON uc.user_id = a.user_id
    WHERE a.classification = 'false_positive' AND a.action IN ('throttle', 'block', 'penalty')
),
ordered AS (
    SELECT *, max(end_ts) OVER (
        PARTITION BY user_id, currency ORDER BY start_ts, end_ts
        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach
    FROM restrictions WHERE end_ts > start_ts
),
islands AS (
    SELECT *, sum(CASE WHEN reach IS NULL OR start_ts > reach THEN 1 ELSE 0 END) OVER (
        PARTITION BY user_id, currency ORDER BY start_ts, end_ts
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS island
    FROM ordered
),
restricted AS (
    SELECT user_id, currency,
           sum(epoch_us(island_end) - epoch_us(island_start)) AS micros
    FROM (SELECT user_id, currency, island, min(start_ts) AS island_start,
                 max(end_ts) AS island_end
          FROM islands GROUP BY user_id, currency, island) AS merged
    GROUP BY user_id, currency
),
plans AS (
    SELECT user_id, plan FROM (
        SELECT user_id, plan,
               row_number() OVER (PARTITION BY user_id ORDER BY ts DESC, request_id DESC) AS rn
        FROM requests WHERE plan IS NOT NULL) AS latest
    WHERE rn = 1
),
joined AS (
    SELECT coalesce(s.user_id, r.user_id) AS user_id, coalesce(s.currency, r.currency) AS currency,
           s.* EXCLUDE (user_id, currency), coalesce(r.micros, 0) AS restricted_micros
    FROM sums AS s
    FULL OUTER JOIN restricted AS r ON r.user_id = s.user_id
        AND r.currency IS NOT DISTINCT FROM s.currency
)
SELECT j.user_id, p.plan, j.currency,
       coalesce(j.duplicate_excess, 0) AS duplicate_excess,
       coalesce(j.failed_request_charges, 0) AS failed_request_charges,
       coalesce(j.abuse_penalty_excess, 0) AS abuse_penalty_excess,
       coalesce(j.overbilled, 0) AS overbilled,
       coalesce(j.topup_reimbursement, 0) AS topup_reimbursement,
       coalesce(j.wrongful_429s, 0) AS wrongful_429s,
       j.restricted_micros,
       coalesce(j.n_orphans, 0) > 0 OR coalesce(j.n_unreviewed, 0) > 0 AS review,
       coalesce(j.n_duplicates, 0) AS n_duplicates, coalesce(j.n_failed, 0) AS n_failed,
       coalesce(j.n_penalty, 0) AS n_penalty, coalesce(j.n_overbilled, 0) AS n_overbilled,
       coalesce(j.n_topups, 0) AS n_topups, coalesce(j.n_orphans, 0) AS n_orphans,
       coalesce(j.n_unreviewed, 0) AS n_unreviewed
FROM joined AS j
LEFT JOIN plans AS p ON p.user_id = j.user_id
ORDER BY j.user_id, j.currency
"""


def _unit(currency: str | None) -> Decimal:
    c = (currency or "").lower()
    if c == "usd":
        return Decimal("0.01")
    if c == "credits":
        return Decimal("0.000001")
    return Decimal("1")


def round_credit(amount: Decimal, currency: str | None) -> Decimal:
    """Half-up to the currency's unit: cents for usd, 6 places for credits, else whole."""
    return amount.quantize(_unit(currency), rounding=ROUND_HALF_UP)


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def impact(
    con: duckdb.DuckDBPyConnection, pack: Pack, policy: Policy, *, stored_findings: bool = False
) -> pa.Table:
    """Per-user impact under ``policy``.

    By default the findings are computed afresh from the data on ``con`` (so the
    answer can never be stale); ``stored_findings`` uses the ``findings`` table
    and shared relations that ``detect`` has just left on this connection.
    """
    if stored_findings:
        # one name for the findings either way: temp.findings
        row = con.execute("SELECT current_database()").fetchone()
        catalog = str(row[0]) if row else "main"
        con.execute(
            f'CREATE OR REPLACE TEMP TABLE findings AS SELECT * FROM "{catalog}".main.findings'
        )
    else:
        prepare(con, pack)
        _compute_findings(con, pack, table="findings", temp=True)
    try:
        rel = con.sql(_IMPACT_SQL, params={"start": policy.start, "end": policy.end})
        names, raw = rel.columns, rel.fetchall()
    except duckdb.Error as exc:
        raise QueryError(f"impact: {str(exc).splitlines()[0]}") from None
    out: dict[str, list[Any]] = {c: [] for c in IMPACT_COLUMNS}
    for values in raw:
        r = dict(zip(names, values, strict=True))
        r["restricted_minutes"] = int(
            (Decimal(r["restricted_micros"]) / 60_000_000).quantize(
                Decimal(1), rounding=ROUND_HALF_UP
            )
        )
        plan = (r["plan"] or "").lower()
        excluded = plan in policy.exclude_plans
        comp = {c: Decimal(r[c] or 0) for c in COMPONENTS}
        owed = sum((comp[c] for c in COMPONENTS[:4] if policy.components[c]), Decimal(0))
        credit = Decimal(0)
        if not excluded and owed > 0:
            credit = owed * (1 + policy.goodwill_percent / 100)
            floor = policy.minimum_credit.get((r["currency"] or "").lower())
            if floor is not None and credit < floor:
                credit = floor
        reimbursement = (
            comp["topup_reimbursement"]
            if policy.components["topup_reimbursement"] and not excluded
            else Decimal(0)
        )
        has_anything = (
            any(comp[c] > 0 for c in COMPONENTS)
            or r["wrongful_429s"] > 0
            or r["restricted_minutes"] > 0
            or r["review"]
        )
        if not has_anything:
            continue
        reasons = [
            text
            for n, text in (
                (r["n_duplicates"], _plural(r["n_duplicates"], "duplicate charge")),
                (
                    r["n_failed"],
                    _plural(r["n_failed"], "failed request charged", "failed requests charged"),
                ),
                (
                    r["n_penalty"],
                    _plural(
                        r["n_penalty"],
                        "charge under a false-positive penalty",
                        "charges under a false-positive penalty",
                    ),
                ),
                (r["n_overbilled"], _plural(r["n_overbilled"], "overbilled charge")),
                (
                    r["n_topups"],
                    _plural(
                        r["n_topups"],
                        "top-up to cure a wrong negative balance",
                        "top-ups to cure a wrong negative balance",
                    ),
                ),
                (r["wrongful_429s"], _plural(r["wrongful_429s"], "wrongful 429")),
                (r["restricted_minutes"], f"{r['restricted_minutes']} min wrongly restricted"),
                (r["n_orphans"], _plural(r["n_orphans"], "orphan charge") + " (review)"),
                (
                    r["n_unreviewed"],
                    _plural(
                        r["n_unreviewed"], "restriction of a new user", "restrictions of a new user"
                    )
                    + " (review)",
                ),
            )
            if n
        ]
        if excluded:
            reasons.append(f"plan {plan} excluded by policy")
        out["user_id"].append(r["user_id"])
        out["plan"].append(r["plan"])
        out["currency"].append(r["currency"])
        for c in COMPONENTS[:4]:
            out[c].append(comp[c])
        out["credit_amount"].append(round_credit(credit, r["currency"]))
        out["topup_reimbursement"].append(round_credit(reimbursement, r["currency"]))
        out["wrongful_429s"].append(int(r["wrongful_429s"]))
        out["restricted_minutes"].append(int(r["restricted_minutes"]))
        out["review"].append(bool(r["review"]))
        out["credit_id"].append(credit_id(policy.incident_id, r["user_id"], r["currency"]))
        out["reasons"].append("; ".join(reasons))
    money = pa.decimal128(18, 6)
    schema = pa.schema(
        [
            ("user_id", pa.string()),
            ("plan", pa.string()),
            ("currency", pa.string()),
            ("duplicate_excess", money),
            ("failed_request_charges", money),
            ("abuse_penalty_excess", money),
            ("overbilled", money),
            ("credit_amount", money),
            ("topup_reimbursement", money),
            ("wrongful_429s", pa.int64()),
            ("restricted_minutes", pa.int64()),
            ("review", pa.bool_()),
            ("credit_id", pa.string()),
            ("reasons", pa.string()),
        ]
    )
    return pa.table(out, schema=schema)


def affected_users(impact_rows: pa.Table) -> pa.Table:
    """The refund job's list: rows owed a credit or a reimbursement, export columns only."""
    zero = pa.scalar(Decimal(0), type=impact_rows.schema.field("credit_amount").type)
    owed = pc.or_(
        pc.greater(impact_rows.column("credit_amount"), zero),
        pc.greater(impact_rows.column("topup_reimbursement"), zero),
    )
    return impact_rows.filter(owed).select(list(EXPORT_COLUMNS))


def totals(rows: pa.Table) -> list[str]:
    """Human summary lines: users and amounts per currency."""
    by: dict[str, list[Decimal]] = {}
    users: dict[str, set[str]] = {}
    for r in rows.select(
        [
            c
            for c in ("user_id", "currency", "credit_amount", "topup_reimbursement")
            if c in rows.column_names
        ]
    ).to_pylist():
        cur = r["currency"] or "(none)"
        acc = by.setdefault(cur, [Decimal(0), Decimal(0)])
        acc[0] += r["credit_amount"]
        acc[1] += r["topup_reimbursement"]
        users.setdefault(cur, set()).add(r["user_id"])
    lines = [
        f"{len(users[c])} user(s) in {c}: credits {a[0]}, top-up reimbursements {a[1]}"
        for c, a in sorted(by.items())
    ]
    return lines or ["no user is owed anything"]
