"""The rows a simulated user leaves behind: ledger entries, requests and abuse
actions, each with what the simulation meant by it, and their JSON lines."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from warroom.generate.units import ZERO, iso_us, json_money


class LedgerEntry:
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
        "initiated_by",
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
        initiated_by: str | None = None,
    ) -> None:
        self.ts = ts
        self.eid = eid
        self.kind = kind
        self.amount = amount
        self.currency = currency
        self.rid = rid
        self.tokens = tokens
        self.balance_after = balance_after
        # who ran a reset: the schedule or the operator (system), or the user, who
        # spent one of their banked resets; None for every other row
        self.initiated_by = initiated_by if initiated_by or kind != "reset" else "system"
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
        by = self.initiated_by
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
            f'{{"entry_id":"{self.eid}","ts":"{iso_us(self.ts)}","user_id":"{uid}",'
            f'"kind":"{self.kind}","amount":{json_money(amount)},'
            f'"currency":"{self.currency}",{tail},'
            f'"balance_after":{json_money(self.balance_after)},'
            + ('"initiated_by":null}' if by is None else f'"initiated_by":"{by}"}}')
        )


class RequestRow(NamedTuple):
    """A request-log row; the user's fields are added when it is written."""

    ts: int
    request_id: str
    status: int
    error_code: str | None
    model: str
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    latency_ms: float


def user_head(uid: str, org: str | None, plan: str) -> str:
    """The user's fields of a request line, formatted once per user."""
    org_json = "null" if org is None else f'"{org}"'
    return f'"user_id":"{uid}","org_id":{org_json},"plan":"{plan}"'


def request_line(r: RequestRow, head: str) -> str:
    """The JSON line, by hand like ``LedgerEntry.line``; ``head`` holds the user's fields."""
    err = "null" if r.error_code is None else f'"{r.error_code}"'
    return (
        f'{{"ts":"{iso_us(r.ts)}","request_id":"{r.request_id}",{head},"model":"{r.model}",'
        f'"status":{r.status},"error_code":{err},"input_tokens":{r.input_tokens},'
        f'"cached_tokens":{r.cached_tokens},"output_tokens":{r.output_tokens},'
        f'"latency_ms":{r.latency_ms!r}}}'
    )


@dataclass
class AbuseAction:
    """An action the abuse system plans (with the class it is meant to get) and,
    once taken, the class the rule gave it and how it ends."""

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


class AbuseRow(NamedTuple):
    """A line of abuse.jsonl, as the audit reads it back."""

    ts: int
    until: int | None
    action: str
    rule: str
    score: float | None
    multiplier: float | None


class Finding(NamedTuple):
    """One expected row of a detector, for one user."""

    detector: str
    currency: str | None
    ts: int
    request_id: str | None
    entry_id: str | None
    amount: Decimal | None
    detail: str | None
