"""The credit policy: a TOML file read strictly (DESIGN.md section 4).

Unknown keys and bad values are errors, so a typo cannot silently change who
gets what. ``round_credit`` is the policy's rounding of an amount owed.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from warroom.errors import QueryError, WarroomError
from warroom.pack import parse_timestamp

COMPONENTS = (
    "duplicate_excess",
    "failed_request_charges",
    "abuse_penalty_excess",
    "overbilled",
    "topup_reimbursement",
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
    read = _Reader(path, data)
    start, end = read.when("start"), read.when("end")
    if start and end and end <= start:
        raise read.error("incident", "end", "must be after start")
    return Policy(
        incident_id=read.text("incident", "id", default="incident"),
        start=start,
        end=end,
        exclude_plans=read.plans(),
        components={c: read.flag(c) for c in COMPONENTS},
        goodwill_percent=read.money("goodwill_percent", read.credits.get("goodwill_percent", 0)),
        minimum_credit=read.minimum_credit(),
        source=str(path),
    )


class _Reader:
    """Checks each key of a parsed policy file; every complaint names the file, section and key."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        for section, body in data.items():
            if section not in _SCHEMA:
                known = ", ".join(sorted(_SCHEMA))
                raise PolicyError(f"{path}: unknown section [{section}] (known: {known})")
            if not isinstance(body, dict):
                raise PolicyError(f"{path}: {section} must be a table, like [{section}]")
            for key in body:
                if key not in _SCHEMA[section]:
                    known = ", ".join(sorted(_SCHEMA[section]))
                    raise PolicyError(
                        f"{path}: unknown key {key!r} in [{section}] (known: {known})"
                    )
        self.incident: dict[str, Any] = data.get("incident", {})
        self.credits: dict[str, Any] = data.get("credits", {})

    def error(self, section: str, key: str, complaint: str) -> PolicyError:
        return PolicyError(f"{self.path}: [{section}] {key} {complaint}")

    def text(self, section: str, key: str, *, default: str) -> str:
        value = self.incident.get(key, default) if section == "incident" else default
        if not isinstance(value, str) or not value.strip():
            raise self.error(section, key, "must be a non-empty string")
        return value

    def when(self, key: str) -> datetime | None:
        value = self.incident.get(key)
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        if not isinstance(value, str) or not value.strip():
            raise self.error("incident", key, "must be a non-empty string")
        try:
            return parse_timestamp(value)
        except QueryError as exc:
            raise PolicyError(f"{self.path}: [incident] {key}: {exc}") from None

    def money(self, key: str, value: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.error(
                "credits",
                key,
                'must be a number written as a string ("0.50") or an integer, never a float',
            )
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            raise PolicyError(f"{self.path}: [credits] {key}: {value!r} is not a number") from None
        if amount < 0:
            raise self.error("credits", key, "must not be negative")
        return amount

    def flag(self, key: str) -> bool:
        value = self.credits.get(key, True)
        if not isinstance(value, bool):
            raise self.error("credits", key, "must be true or false")
        return value

    def plans(self) -> tuple[str, ...]:
        plans = self.credits.get("exclude_plans", [])
        if not isinstance(plans, list) or not all(isinstance(p, str) for p in plans):
            raise self.error("credits", "exclude_plans", "must be a list of plan names")
        return tuple(p.lower() for p in plans)

    def minimum_credit(self) -> dict[str, Decimal]:
        minimum = self.credits.get("minimum_credit", {})
        if not isinstance(minimum, dict):
            raise self.error(
                "credits",
                "minimum_credit",
                'must be a table of currency = amount, e.g. minimum_credit = { usd = "1.00" }',
            )
        return {k.lower(): self.money(f"minimum_credit.{k}", v) for k, v in minimum.items()}


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
