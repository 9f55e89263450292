"""The credit policy: a TOML file read strictly (DESIGN.md section 4).

Unknown keys and bad values are errors, so a typo cannot silently change who
gets what. ``round_owed`` is the policy's rounding of an amount owed: half-up to
the currency's minor unit (ISO 4217 for real currencies, 6 places for anything
else, or the policy's ``[rounding]``), never to 0 while something is owed.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import iso4217

from warroom.errors import QueryError, WarroomError
from warroom.pack import parse_timestamp

COMPONENTS = (
    "duplicate_excess",
    "failed_request_charges",
    "abuse_penalty_excess",
    "overbilled",
    "topup_reimbursement",
)


#: a policy amount fits a row's money, DECIMAL(18,6): below 10**12, at most 6 places
MONEY_LIMIT = Decimal("999999999999.999999")
MONEY_PLACES = 6
#: goodwill is a percentage of what is owed: up to ten times it
GOODWILL_LIMIT = Decimal(1000)
#: banked resets granted per user
COUNT_LIMIT = 1_000_000


class PolicyError(WarroomError):
    """The policy file is unreadable, has an unknown key, or a bad value."""


@dataclass(frozen=True)
class Policy:
    #: None: named from the data (warroom.incident), or the id stored by an earlier detect
    incident_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    exclude_plans: tuple[str, ...] = ()
    components: dict[str, bool] = field(default_factory=lambda: {c: True for c in COMPONENTS})
    goodwill_percent: Decimal = Decimal(0)
    #: currency -> smallest credit given to a row that is owed anything
    minimum_credit: dict[str, Decimal] = field(default_factory=dict)
    #: currency -> compensation per wrongful 429, and per hour of false-positive throttle/block
    per_wrongful_429: dict[str, Decimal] = field(default_factory=dict)
    per_restricted_hour: dict[str, Decimal] = field(default_factory=dict)
    #: banked resets granted to every affected user of a quota currency
    grant_banked_resets: int = 0
    #: currency -> decimal places, overriding the currency's minor unit
    rounding: dict[str, int] = field(default_factory=dict)
    #: [fx]: the currency a report states one total in, and each currency's rate to it
    fx_currency: str | None = None
    fx_rates: dict[str, Decimal] = field(default_factory=dict)
    source: str = "default"

    def places(self, currency: str | None) -> int:
        """Decimal places that amounts owed in ``currency`` are rounded to."""
        code = (currency or "").lower()
        return self.rounding[code] if code in self.rounding else currency_places(code)

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
            "per_wrongful_429": {k: str(v) for k, v in sorted(self.per_wrongful_429.items())},
            "per_restricted_hour": {k: str(v) for k, v in sorted(self.per_restricted_hour.items())},
            "grant_banked_resets": self.grant_banked_resets,
            "rounding": dict(sorted(self.rounding.items())),
        } | (
            {
                "fx": {
                    "currency": self.fx_currency,
                    "rates": {k: str(v) for k, v in sorted(self.fx_rates.items())},
                }
            }
            if self.fx_currency
            else {}
        )


_SCHEMA: dict[str, set[str]] = {
    "incident": {"id", "start", "end"},
    "credits": {
        "exclude_plans",
        "goodwill_percent",
        "minimum_credit",
        "per_wrongful_429",
        "per_restricted_hour",
        "grant_banked_resets",
        *COMPONENTS,
    },
    # currency = decimal places; any currency code may appear
    "rounding": set(),
    # the report's total in one currency: currency = "usd", rates = { units = "0.05" }
    "fx": {"currency", "rates"},
}
#: the sections whose keys are the user's own (currency codes), not a fixed set
_OPEN_SECTIONS = {"rounding"}


def load_policy(path: Path | None, *, incident_id: str | None = None) -> Policy:
    """Read a policy file; None gives the default policy of DESIGN.md section 4.
    ``incident_id`` (``--incident-id``) overrides the file's ``[incident] id``."""
    policy = _read_policy(path) if path is not None else Policy()
    if incident_id is not None:
        if not incident_id.strip():
            raise PolicyError("--incident-id must not be empty")
        policy = replace(policy, incident_id=incident_id)
    return policy


def _read_policy(path: Path) -> Policy:
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
        incident_id=read.optional_text("incident", "id"),
        start=start,
        end=end,
        exclude_plans=read.plans(),
        components={c: read.flag(c) for c in COMPONENTS},
        goodwill_percent=read.money("goodwill_percent", read.credits.get("goodwill_percent", 0)),
        minimum_credit=read.per_currency("minimum_credit"),
        per_wrongful_429=read.per_currency("per_wrongful_429"),
        per_restricted_hour=read.per_currency("per_restricted_hour"),
        grant_banked_resets=read.count("grant_banked_resets"),
        rounding=read.rounding(),
        **read.fx(),
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
                if section not in _OPEN_SECTIONS and key not in _SCHEMA[section]:
                    known = ", ".join(sorted(_SCHEMA[section]))
                    raise PolicyError(
                        f"{path}: unknown key {key!r} in [{section}] (known: {known})"
                    )
        self.incident: dict[str, Any] = data.get("incident", {})
        self.credits: dict[str, Any] = data.get("credits", {})
        self.places: dict[str, Any] = data.get("rounding", {})
        self.data = data

    def error(self, section: str, key: str, complaint: str) -> PolicyError:
        return PolicyError(f"{self.path}: [{section}] {key} {complaint}")

    def optional_text(self, section: str, key: str) -> str | None:
        value = self.incident.get(key)
        if value is None:
            return None
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

    def money(self, key: str, value: Any, section: str = "credits") -> Decimal:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.error(
                section,
                key,
                'must be a number written as a string ("0.50") or an integer, never a float',
            )
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation:
            raise PolicyError(
                f"{self.path}: [{section}] {key}: {value!r} is not a number"
            ) from None
        if not amount.is_finite():
            raise self.error(section, key, f"must be a finite number, not {value!r}")
        if amount < 0:
            raise self.error(section, key, "must not be negative")
        limit = GOODWILL_LIMIT if key == "goodwill_percent" else MONEY_LIMIT
        if amount > limit:
            raise self.error(section, key, f"must be at most {limit:,} (got {value!r})")
        if -amount.normalize().as_tuple().exponent > MONEY_PLACES:  # type: ignore[operator]
            raise self.error(section, key, f"must have at most {MONEY_PLACES} decimal places")
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

    def per_currency(self, key: str) -> dict[str, Decimal]:
        table = self.credits.get(key, {})
        if not isinstance(table, dict):
            raise self.error(
                "credits",
                key,
                f'must be a table of currency = amount, e.g. {key} = {{ usd = "1.00" }}',
            )
        return {k.lower(): self.money(f"{key}.{k}", v) for k, v in table.items()}

    def count(self, key: str) -> int:
        value = self.credits.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= COUNT_LIMIT:
            raise self.error("credits", key, f"must be a whole number from 0 to {COUNT_LIMIT:,}")
        return value

    def fx(self) -> dict[str, Any]:
        """``fx_currency`` and ``fx_rates`` from ``[fx]`` (rates exact, as strings)."""
        fx = self.data.get("fx", {})
        if not fx:
            return {}
        cur = fx.get("currency")
        if not isinstance(cur, str) or not cur.strip():
            raise self.error("fx", "currency", 'must name the currency of the total, e.g. "usd"')
        rates = fx.get("rates", {})
        if not isinstance(rates, dict):
            raise self.error(
                "fx", "rates", 'must be a table of currency = rate, e.g. { eur = "1.08" }'
            )
        parsed = {k.lower(): self.money(f"rates.{k}", v, section="fx") for k, v in rates.items()}
        parsed.setdefault(cur.strip().lower(), Decimal(1))
        return {"fx_currency": cur.strip().lower(), "fx_rates": parsed}

    def rounding(self) -> dict[str, int]:
        places: dict[str, int] = {}
        for code, value in self.places.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 6:
                raise PolicyError(
                    f"{self.path}: [rounding] {code} must be a number of decimal places, 0 to 6"
                )
            places[code.lower()] = value
        return places


def currency_places(currency: str | None) -> int:
    """The minor unit of a real currency (ISO 4217: usd 2, jpy 0, kwd 3, mga 2, isk 0, iqd 3);
    6 places for anything else (credits, quota units, tokens, funds and metals)."""
    code = (currency or "").strip().upper()
    if len(code) != 3 or not code.isalpha():
        return 6
    try:
        exponent = iso4217.Currency(code).exponent
    except ValueError:
        return 6
    return 6 if exponent is None else int(exponent)


def round_owed(amount: Decimal, places: int) -> Decimal:
    """Half-up to ``places`` decimals; an amount owed (> 0) never rounds to 0 but to the unit."""
    unit = Decimal(1).scaleb(-places)
    rounded = amount.quantize(unit, rounding=ROUND_HALF_UP)
    if amount > 0 and rounded == 0:
        return unit
    return rounded


def round_credit(amount: Decimal, currency: str | None) -> Decimal:
    """Half-up to the currency's minor unit (no policy override), never to 0 while owed."""
    return round_owed(amount, currency_places(currency))


#: what an unset [incident] key looks like, shown commented out
_EXAMPLES = {
    "id": '"2025-06-07-duplicate-deductions"   # goes into every credit_id',
    "start": '"2025-06-07T16:00:00Z"           # remediate the faults in [start, end)',
    "end": '"2025-06-08T04:00:00Z"',
}


def policy_toml(policy: Policy) -> str:
    """``policy`` as a policy file: every key, with its value (``load_policy`` reads it
    back to the same policy). Unset incident keys are shown commented out."""
    origin = "the built-in default" if policy.source == "default" else policy.source
    lines = [
        f"# warroom credit policy ({origin})",
        "# every amount is a string or an integer, never a float; see the README",
        "",
        "[incident]",
    ]
    for key, value in (("id", policy.incident_id), ("start", policy.start), ("end", policy.end)):
        if value is None:
            lines.append(f"# {key} = {_EXAMPLES[key]}")
        else:
            text = value if isinstance(value, str) else value.isoformat() + "Z"
            lines.append(f"{key} = {_toml_text(text)}")
    lines += ["", "[credits]"]
    lines.append("exclude_plans = [" + ", ".join(_toml_text(p) for p in policy.exclude_plans) + "]")
    lines += [f"{c} = {str(policy.components[c]).lower()}" for c in COMPONENTS]
    lines.append(f"goodwill_percent = {_toml_text(str(policy.goodwill_percent))}")
    for key in ("minimum_credit", "per_wrongful_429", "per_restricted_hour"):
        amounts: dict[str, Decimal] = getattr(policy, key)
        lines.append(f"{key} = {_inline({k: _toml_text(str(v)) for k, v in amounts.items()})}")
    lines.append(f"grant_banked_resets = {policy.grant_banked_resets}")
    lines += ["", "[rounding]", "# usd = 2  (decimal places, overriding the currency's minor unit)"]
    lines += [f"{_toml_key(k)} = {v}" for k, v in sorted(policy.rounding.items())]
    return "\n".join(lines) + "\n"


def _toml_text(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    import json

    return json.dumps(value, ensure_ascii=False)


def _toml_key(key: str) -> str:
    return (
        key
        if key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key)
        else _toml_text(key)
    )


def _inline(table: dict[str, str]) -> str:
    if not table:
        return "{}"
    return "{ " + ", ".join(f"{_toml_key(k)} = {v}" for k, v in sorted(table.items())) + " }"
