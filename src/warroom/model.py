"""The canonical data model of DESIGN.md section 2, as data.

Ingest, the generator and the schema all read these specs, so a field is
declared once: its name, its logical type and whether a row without it is
rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(str, Enum):
    """What a file holds; the value is how a user names it (``--kind``)."""

    requests = "requests"
    ledger = "ledger"
    abuse = "abuse"
    prices = "prices"


class FieldType(str, Enum):
    TIMESTAMP = "TIMESTAMP"
    STRING = "VARCHAR"
    INT = "INTEGER"
    BIGINT = "BIGINT"
    MONEY = "DECIMAL(18,6)"
    DOUBLE = "DOUBLE"


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    required: bool = False
    #: SQL literal used when the field is absent or null.
    default: str | None = None
    #: allowed values (stored lower-case); None means any.
    choices: tuple[str, ...] | None = None


LEDGER_KINDS = ("charge", "refund", "topup", "grant", "reset", "adjustment")
#: who started a ledger row; it means something only for a ``reset``: ``user`` when
#: the user spent one of their banked resets (subscription quotas)
INITIATORS = ("system", "user")
ABUSE_ACTIONS = ("flag", "throttle", "block", "penalty", "clear")

F = FieldType
FIELDS: dict[Kind, tuple[Field, ...]] = {
    Kind.requests: (
        Field("ts", F.TIMESTAMP, required=True),
        Field("request_id", F.STRING, required=True),
        Field("user_id", F.STRING, required=True),
        Field("org_id", F.STRING),
        Field("plan", F.STRING),
        Field("model", F.STRING),
        Field("status", F.INT, required=True),
        Field("error_code", F.STRING),
        Field("input_tokens", F.BIGINT, default="0"),
        Field("cached_tokens", F.BIGINT, default="0"),
        Field("output_tokens", F.BIGINT, default="0"),
        Field("latency_ms", F.DOUBLE),
    ),
    Kind.ledger: (
        Field("entry_id", F.STRING, required=True),
        Field("ts", F.TIMESTAMP, required=True),
        Field("user_id", F.STRING, required=True),
        Field("kind", F.STRING, required=True, choices=LEDGER_KINDS),
        # required except for resets: checked by a row rule in ingest
        Field("amount", F.MONEY),
        Field("currency", F.STRING, default="'usd'"),
        # required for charges: checked by a row rule in ingest
        Field("request_id", F.STRING),
        Field("idempotency_key", F.STRING),
        Field("input_tokens", F.BIGINT),
        Field("cached_tokens", F.BIGINT),
        Field("output_tokens", F.BIGINT),
        Field("balance_after", F.MONEY),
        Field("initiated_by", F.STRING, default="'system'", choices=INITIATORS),
    ),
    Kind.abuse: (
        Field("ts", F.TIMESTAMP, required=True),
        Field("user_id", F.STRING, required=True),
        Field("action", F.STRING, required=True, choices=ABUSE_ACTIONS),
        Field("rule", F.STRING),
        Field("score", F.DOUBLE),
        Field("until", F.TIMESTAMP),
        Field("multiplier", F.DOUBLE),
    ),
    Kind.prices: (
        Field("model", F.STRING, required=True),
        Field("currency", F.STRING, default="'usd'"),
        Field("input_per_mtok", F.MONEY, required=True),
        # defaults to input_per_mtok: no cache discount unless the list says so
        Field("cached_per_mtok", F.MONEY),
        Field("output_per_mtok", F.MONEY, required=True),
        Field("effective_from", F.TIMESTAMP, required=True),
    ),
}

#: the physical table each kind lands in
TABLES: dict[Kind, str] = {
    Kind.requests: "requests_all",
    Kind.ledger: "ledger_all",
    Kind.abuse: "abuse_events_all",
    Kind.prices: "prices",
}

#: kinds whose rows carry an identity: the same id shipped twice counts once
IDENTITY: dict[Kind, str] = {Kind.requests: "request_id", Kind.ledger: "entry_id"}

#: kinds without an id, whose identical rows (every field the same) are one event
#: shipped twice -> their logical table: a view keeping the first of each (lowest
#: source id, then line; the copies differ in provenance only)
CONTENT_IDENTITY: dict[Kind, str] = {Kind.abuse: "abuse_events"}

#: fields whose presence tells a file's kind when neither --kind nor its name does
SIGNATURES: dict[Kind, frozenset[str]] = {
    Kind.requests: frozenset({"request_id", "status"}),
    Kind.ledger: frozenset({"entry_id", "kind"}),
    Kind.abuse: frozenset({"action", "user_id"}),
    Kind.prices: frozenset({"input_per_mtok", "output_per_mtok"}),
}
