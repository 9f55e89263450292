"""A catalog of bad input: for each kind, exactly what lands where.

Every case names its file, its bytes, the lines that must load (with values
that must survive) and the lines that must be rejected (with their raw text,
invalid bytes visibly escaped, and a reason). The checks are the same for all:

* the loaded rows are exactly the expected lines, with the expected values;
* ``rejects`` holds exactly the expected lines with their exact raw text, and
  each reason contains the expected words;
* ``sources`` records the file with loaded + rejected + blank lines (+ the CSV
  header) = the lines of its (decompressed) text.

Each case the fast path loads (DuckDB's JSON reader takes the file) runs a
second time with one invalid UTF-8 line appended, which sends it the careful
way: both paths must give the same rows and rejects. File-level errors (an
undecidable file, a header without a required column, bytes that are not what
the name says) raise InputError and leave the database as it was. A handful
of cases run through the CLI for exit codes and one-line errors.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import Cli, write
from warroom import db, ingest
from warroom.errors import InputError
from warroom.ingest import load
from warroom.model import TABLES, Kind

TS = "2025-06-01T10:00:00Z"
T0 = datetime(2025, 6, 1, 10, 0)
MiB = 1024 * 1024
LINE_LIMIT = 8 * MiB  # warroom.ingest.LINE_LIMIT
RAW_LIMIT = 4096  # warroom.ingest.RAW_LIMIT


def j(**fields: Any) -> str:
    """One compact JSON object, fields in the order given."""
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


def req(i: int, **over: Any) -> str:
    """A good request row (``None`` in ``over`` drops a field)."""
    row: dict[str, Any] = {
        "ts": TS,
        "request_id": f"r{i}",
        "user_id": "u1",
        "status": 200,
        "input_tokens": 10 * i,
        "cached_tokens": i,
        "output_tokens": 5,
    }
    row.update(over)
    return j(**{k: v for k, v in row.items() if v is not None})


def ok(i: int, **values: Any) -> dict[str, Any]:
    """What a loaded ``req(i)`` holds (plus ``values``)."""
    return {
        "request_id": f"r{i}",
        "ts": T0,
        "user_id": "u1",
        "status": 200,
        "input_tokens": 10 * i,
        "cached_tokens": i,
        "output_tokens": 5,
        **values,
    }


def led(**over: Any) -> str:
    row: dict[str, Any] = {
        "entry_id": "e1",
        "ts": TS,
        "user_id": "u1",
        "kind": "charge",
        "amount": "-0.5",
        "request_id": "r1",
    }
    row.update(over)
    return j(**{k: v for k, v in row.items() if v is not None})


def abuse(**over: Any) -> str:
    row: dict[str, Any] = {"ts": TS, "user_id": "u1", "action": "throttle"}
    row.update(over)
    return j(**{k: v for k, v in row.items() if v is not None})


def price(**over: Any) -> str:
    row: dict[str, Any] = {
        "model": "m1",
        "input_per_mtok": "1.5",
        "output_per_mtok": "6",
        "effective_from": "2025-01-01T00:00:00Z",
    }
    row.update(over)
    return j(**{k: v for k, v in row.items() if v is not None})


def text(*lines: str, end: str = "\n") -> bytes:
    return (end.join(lines) + end).encode()


@dataclass
class Case:
    id: str
    name: str  # the file name (its kind and format come from it)
    data: bytes
    #: line -> the values that must survive (a subset of the row's fields)
    loaded: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: line -> (raw text, words the reason must contain)
    rejected: dict[int, tuple[str | None, str]] = field(default_factory=dict)
    kind: Kind | None = None


R1, R3 = req(1), req(3)
TRUNCATED = '{"ts":"2025-06-01T10:00:00Z","request_id":"r2","user_id":"u'
LONG_ERROR = "x" * (3 * 1000 * 1000)  # a 3 MB value: long, but allowed
HUGE = req(2, error_code="y" * (LINE_LIMIT + 100))  # over the limit
CSV_HEAD = "ts,request_id,user_id,status,input_tokens\n"


def _bad_middle(id_: str, line: str | bytes, reason: str, raw: str | None = None) -> Case:
    """A request log: good, ``line``, good; ``line`` is rejected for ``reason``
    (its raw text is ``line``, unless given)."""
    middle = line.encode() if isinstance(line, str) else line
    data = R1.encode() + b"\n" + middle + b"\n" + R3.encode() + b"\n"
    return Case(
        id_,
        "requests.jsonl",
        data,
        {1: ok(1), 3: ok(3)},
        {2: (raw if raw is not None else middle.decode(), reason)},
    )


AT = req(2).index('"u1"') + 2  # byte (1-based) of the 'u' of "u1" in req(2)


def with_user(user: bytes) -> bytes:
    """req(2) with raw bytes (not JSON-escaped) in place of its user id."""
    return req(2).encode().replace(b'"u1"', b'"' + user + b'"')


def raw_user(user: str) -> str:
    return req(2).replace('"u1"', f'"{user}"')


def _missing(id_: str, name: str, line: str, reason: str) -> Case:
    return Case(id_, name, (line + "\n").encode(), {}, {1: (line, reason)})


CASES: list[Case] = [
    # ---- not JSON, or not an object
    _bad_middle("truncated-json", TRUNCATED, "malformed JSON"),
    _bad_middle("junk-text", "hello, world", "malformed JSON"),
    _bad_middle("two-objects-on-one-line", R1 + " " + R3, "malformed JSON"),
    _bad_middle("json-array", "[1, 2, 3]", "not a JSON object: a JSON array"),
    _bad_middle("json-array-of-a-row", f"[{req(2)}]", "not a JSON object: a JSON array"),
    _bad_middle("json-number", "42", "not a JSON object: a JSON number"),
    _bad_middle("json-string", '"hello"', "not a JSON object: a JSON string"),
    _bad_middle("json-true", "true", "not a JSON object: a JSON boolean"),
    _bad_middle("json-null", "null", "not a JSON object: a JSON null"),
    _bad_middle(
        "empty-object", "{}", "ts: missing; request_id: missing; user_id: missing; status: missing"
    ),
    # ---- a required field missing, one kind at a time
    _bad_middle("requests-no-ts", req(2, ts=None), "ts: missing"),
    _bad_middle("requests-null-ts", req(2, ts=None)[:-1] + ',"ts":null}', "ts: missing"),
    _bad_middle("requests-no-request_id", req(2, request_id=None), "request_id: missing"),
    _bad_middle("requests-empty-request_id", req(2, request_id=""), "request_id: missing"),
    _bad_middle("requests-no-user_id", req(2, user_id=None), "user_id: missing"),
    _bad_middle("requests-blank-user_id", req(2, user_id="   "), "user_id: missing"),
    _bad_middle("requests-no-status", req(2, status=None), "status: missing"),
    _missing("ledger-no-entry_id", "ledger.jsonl", led(entry_id=None), "entry_id: missing"),
    _missing("ledger-no-kind", "ledger.jsonl", led(kind=None), "kind: missing"),
    _missing("ledger-charge-no-amount", "ledger.jsonl", led(amount=None), "amount: missing"),
    _missing(
        "ledger-charge-no-request_id",
        "ledger.jsonl",
        led(request_id=None),
        "request_id: missing (required for a charge)",
    ),
    _missing(
        "ledger-reset-no-balance_after",
        "ledger.jsonl",
        led(kind="reset", amount=None, request_id=None),
        "balance_after: missing (required for a reset)",
    ),
    _missing("abuse-no-action", "abuse.jsonl", abuse(action=None), "action: missing"),
    _missing("prices-no-model", "prices.jsonl", price(model=None), "model: missing"),
    _missing(
        "prices-no-effective_from",
        "prices.jsonl",
        price(effective_from=None),
        "effective_from: missing",
    ),
    Case(
        "ledger-reset-needs-no-amount",
        "ledger.jsonl",
        text(led(kind="reset", amount=None, request_id=None, balance_after="20")),
        {1: {"kind": "reset", "amount": None, "balance_after": Decimal("20")}},
    ),
    # ---- a value of the wrong type
    _bad_middle("status-abc", req(2, status="abc"), "status: not an integer: 'abc'"),
    _bad_middle("status-true", req(2, status=True), "status: not an integer: 'true'"),
    _bad_middle("status-float", req(2, status=200.5), "status: not an integer: '200.5'"),
    _bad_middle("status-exponent", req(2, status=2e20), "status: not an integer"),
    _bad_middle("status-out-of-range", req(2, status=99), "status: not an HTTP status: '99'"),
    _bad_middle(
        "input_tokens-12.5", req(2, input_tokens=12.5), "input_tokens: not an integer: '12.5'"
    ),
    _bad_middle("tokens-negative", req(2, output_tokens=-1), "output_tokens: negative: '-1'"),
    _bad_middle(
        "cached-over-input",
        req(2, input_tokens=5, cached_tokens=6),
        "cached_tokens: more than input_tokens",
    ),
    _bad_middle(
        "user_id-object", req(2, user_id={"a": 1}), "user_id: expected a string, got an object"
    ),
    _bad_middle(
        "user_id-array", req(2, user_id=[1, 2]), "user_id: expected a string, got an array"
    ),
    _bad_middle(
        "latency-not-a-number", req(2, latency_ms="fast"), "latency_ms: not a number: 'fast'"
    ),
    Case(
        "strings-holding-json-text-are-strings",
        "requests.jsonl",
        text(req(1, user_id='{"a":1}', error_code="[1]", org_id=7)),
        {1: ok(1, user_id='{"a":1}', error_code="[1]", org_id="7")},
    ),
    Case(
        "integer-strings-are-integers",
        "requests.jsonl",
        text(req(1, status="429", input_tokens="12")),
        {1: ok(1, status=429, input_tokens=12)},
    ),
    # ---- timestamps
    _bad_middle("ts-unparseable", req(2, ts="yesterday"), "ts: not a timestamp: 'yesterday'"),
    _bad_middle(
        "ts-impossible-date",
        req(2, ts="2025-13-45T10:00:00Z"),
        "ts: not a timestamp: '2025-13-45T10:00:00Z'",
    ),
    _bad_middle("ts-boolean", req(2, ts=True), "ts: not a timestamp: 'true'"),
    _bad_middle(
        "ts-year-9999",
        req(2, ts="9999-01-01T00:00:00Z"),
        "ts: out of range: '9999-01-01T00:00:00Z'",
    ),
    _bad_middle(
        "ts-1969", req(2, ts="1969-12-31T23:59:59Z"), "ts: out of range: '1969-12-31T23:59:59Z'"
    ),
    _bad_middle("ts-2100", req(2, ts="2100-01-01T00:00:00Z"), "ts: out of range"),
    _bad_middle(
        "ts-epoch-1e20",
        '{"ts":1e20,"request_id":"r2","user_id":"u1","status":200}',
        "ts: out of range",
    ),
    # offsets within +-14:00 only; no zone names or abbreviations (DECISIONS)
    _bad_middle("ts-offset-25h", req(2, ts=TS[:-1] + "+25:00"), "ts: offset beyond +-14:00"),
    _bad_middle("ts-offset-99-99", req(2, ts=TS[:-1] + "+99:99"), "ts: offset beyond +-14:00"),
    _bad_middle("ts-offset-14-01", req(2, ts=TS[:-1] + "-14:01"), "ts: offset beyond +-14:00"),
    _bad_middle("ts-offset-60-minutes", req(2, ts=TS[:-1] + "+12:60"), "ts: offset beyond"),
    _bad_middle(
        "ts-zone-abbreviation",
        req(2, ts="2025-06-01T12:00:00 PST"),
        "ts: a zone name is not accepted (write Z or an offset such as +02:00): "
        "'2025-06-01T12:00:00 PST'",
    ),
    _bad_middle("ts-zone-name", req(2, ts=TS[:-1] + " Europe/Paris"), "ts: a zone name"),
    _bad_middle("ts-zone-utc-name", req(2, ts=TS[:-1] + " UTC"), "ts: a zone name"),
    _bad_middle(
        "ts-dst-ambiguous-local-time",
        req(2, ts="2025-11-02T01:30:00 America/New_York"),
        "ts: a zone name",
    ),
    _bad_middle(
        "ts-dst-nonexistent-local-time",
        req(2, ts="2025-03-09T02:30:00 America/New_York"),
        "ts: a zone name",
    ),
    Case(
        "ts-offsets-at-the-edges",
        "requests.jsonl",
        text(
            req(1, ts="2025-06-01T10:00:00+14:00"),
            req(2, ts="2025-06-01T10:00:00-14:00"),
            req(3, ts="2025-06-01T10:00:00+13:59"),
            req(4, ts="2025-06-01T12:00:00+0200"),
            req(5, ts="2025-06-01T08:00:00-02"),
            req(6, ts="2025-06-01T10:00:00-00:00"),
        ),
        {
            1: ok(1, ts=datetime(2025, 5, 31, 20, 0)),
            2: ok(2, ts=datetime(2025, 6, 2, 0, 0)),
            3: ok(3, ts=datetime(2025, 5, 31, 20, 1)),
            4: ok(4),
            5: ok(5),
            6: ok(6),
        },
    ),
    _bad_middle("ts-epoch-negative", req(2, ts=-1), "ts: out of range: '-1'"),
    _bad_middle(
        "ts-epoch-16-digits", req(2, ts=9999999999999999), "ts: out of range: '9999999999999999'"
    ),
    _bad_middle("ts-epoch-40-digits", req(2, ts="9" * 40), "ts: out of range"),
    Case(
        "ts-edges-of-the-range",
        "requests.jsonl",
        text(
            req(1, ts="1970-01-01T00:00:00Z"),
            req(2, ts="2099-12-31T23:59:59.999999Z"),
            req(3, ts=0),
        ),
        {
            1: ok(1, ts=datetime(1970, 1, 1)),
            2: ok(2, ts=datetime(2099, 12, 31, 23, 59, 59, 999999)),
            3: ok(3, ts=datetime(1970, 1, 1)),
        },
    ),
    # ---- bytes DuckDB cannot take
    _bad_middle(
        "invalid-utf8",
        with_user(b"u\xff"),
        f"invalid UTF-8 at byte {AT + 1}",
        raw=raw_user("u\\xff"),
    ),
    _bad_middle(
        "truncated-utf8-sequence",
        with_user(b"\xe2\x82"),
        f"invalid UTF-8 at byte {AT}",
        raw=raw_user("\\xe2\\x82"),
    ),
    _bad_middle(
        "utf8-encoded-surrogate",
        with_user(b"\xed\xa0\x80"),
        f"invalid UTF-8 at byte {AT}",
        raw=raw_user("\\xed\\xa0\\x80"),
    ),
    _bad_middle(
        "nul-byte",
        with_user(b"u\x00"),
        f"control character 0x00 at byte {AT + 1}",
        raw=raw_user("u\\x00"),
    ),
    _bad_middle("bell", with_user(b"u\x07"), "control character 0x07", raw=raw_user("u\\x07")),
    _bad_middle(
        "escape-sequence",
        with_user(b"\x1b[31mu"),
        "control character 0x1b",
        raw=raw_user("\\x1b[31mu"),
    ),
    _bad_middle(
        "del-in-a-string", with_user(b"u\x7f"), "control character 0x7f", raw=raw_user("u\\x7f")
    ),
    _bad_middle("tab-in-a-string", with_user(b"u\t1"), "malformed JSON"),
    Case(
        "escaped-control-characters-are-fine",
        "requests.jsonl",
        text(req(1, user_id="u\x00\x07")),
        {1: ok(1, user_id="u\x00\x07")},
    ),
    # ---- hostile values load exactly (the outputs show them safely: test_hostile_output.py)
    Case(
        "terminal-escapes-in-values-load-exactly",
        "requests.jsonl",
        text(
            req(1, user_id="\x1b]52;c;aGk=\x07", error_code="\x1b[2J\x9b31m"),
            req(2, user_id="u\u202e00.5-", error_code="\u2066x\u2069\u200b\ufeff"),
        ),
        {
            1: ok(1, user_id="\x1b]52;c;aGk=\x07", error_code="\x1b[2J\x9b31m"),
            2: ok(2, user_id="u\u202e00.5-", error_code="\u2066x\u2069\u200b\ufeff"),
        },
    ),
    Case(
        "markup-html-and-formulas-in-values-load-exactly",
        "requests.jsonl",
        text(
            req(1, user_id="[/x][credit]", error_code="<img src=https://x/y.png>"),
            req(2, user_id=" \uff1d1+1", error_code="\n=HYPERLINK(1)"),
            req(3, user_id="u" * 20_000),
        ),
        {
            1: ok(1, user_id="[/x][credit]", error_code="<img src=https://x/y.png>"),
            2: ok(2, user_id=" \uff1d1+1", error_code="\n=HYPERLINK(1)"),
            3: ok(3, user_id="u" * 20_000),
        },
    ),
    Case(
        "hostile-values-in-a-csv-load-exactly",
        "requests.csv",
        (CSV_HEAD + f'{TS},r1,"[/x]\u202e=1",200,1\n{TS},r2,"\uff20SUM(A1)",200,2\n').encode(),
        {2: {"user_id": "[/x]\u202e=1"}, 3: {"user_id": "\uff20SUM(A1)"}},
    ),
    _bad_middle(
        "form-feed-after-the-object",
        req(2) + "\x0c",
        "control character 0x0c",
        raw=req(2) + "\\x0c",
    ),
    _bad_middle(
        "lone-cr-inside-a-line",
        req(2) + "\r" + req(4),
        "control character 0x0d",
        raw=req(2) + "\\x0d" + req(4),
    ),
    Case(
        "very-long-line",
        "requests.jsonl",
        text(R1, HUGE, R3),
        {1: ok(1), 3: ok(3)},
        {
            2: (
                HUGE[:RAW_LIMIT] + f"... ({len(HUGE)} bytes)",
                f"line too long: {len(HUGE)} bytes (limit {LINE_LIMIT})",
            )
        },
    ),
    Case(
        "long-but-allowed-line",
        "requests.jsonl",
        text(R1, req(2, error_code=LONG_ERROR)),
        {1: ok(1), 2: ok(2, error_code=LONG_ERROR)},
    ),
    # ---- enumerations and money
    _missing(
        "ledger-unknown-kind",
        "ledger.jsonl",
        led(kind="chargeback"),
        "kind: unknown value 'chargeback' (expected one of "
        "charge|refund|topup|grant|reset|adjustment)",
    ),
    _missing(
        "abuse-unknown-action", "abuse.jsonl", abuse(action="ban"), "action: unknown value 'ban'"
    ),
    Case(
        "enumerations-are-case-insensitive",
        "ledger.jsonl",
        text(led(kind="CHARGE", currency="USD")),
        {1: {"kind": "charge", "currency": "usd"}},
    ),
    # initiated_by: an enumeration like kind; it means something only for a reset,
    # and elsewhere it is checked and kept but read by nothing (DECISIONS)
    Case(
        "ledger-initiated_by",
        "ledger.jsonl",
        text(
            led(kind="reset", amount=None, request_id=None, balance_after="20"),
            led(
                entry_id="e2",
                kind="RESET",
                amount=None,
                request_id=None,
                balance_after="20",
                initiated_by="User",
            ),
            led(
                entry_id="e3",
                kind="reset",
                amount=None,
                request_id=None,
                balance_after="20",
                initiated_by="SYSTEM",
            ),
            led(entry_id="e4", initiated_by="user"),
        ),
        {
            1: {"kind": "reset", "initiated_by": "system"},
            2: {"kind": "reset", "initiated_by": "user"},
            3: {"kind": "reset", "initiated_by": "system"},
            4: {"kind": "charge", "initiated_by": "user"},
        },
    ),
    _missing(
        "ledger-unknown-initiated_by",
        "ledger.jsonl",
        led(kind="reset", amount=None, request_id=None, balance_after="20", initiated_by="admin"),
        "initiated_by: unknown value 'admin' (expected one of system|user)",
    ),
    _missing(
        "ledger-initiated_by-not-a-string",
        "ledger.jsonl",
        led(kind="reset", amount=None, request_id=None, balance_after="20", initiated_by=1),
        "initiated_by: unknown value '1'",
    ),
    _missing(
        "amount-not-numeric", "ledger.jsonl", led(amount="abc"), "amount: not a number: 'abc'"
    ),
    _missing(
        "amount-decimal-comma", "ledger.jsonl", led(amount="-1,50"), "amount: not a number: '-1,50'"
    ),
    _missing("amount-boolean", "ledger.jsonl", led(amount=True), "amount: not a number"),
    _missing(
        "amount-7-decimals",
        "ledger.jsonl",
        led(amount="-0.1234567"),
        "amount: more than 6 decimal places: '-0.1234567'",
    ),
    _missing(
        "amount-7-decimals-as-number",
        "ledger.jsonl",
        led(amount=-0.1234567),
        "amount: more than 6 decimal places",
    ),
    _missing(
        "amount-tiny-exponent",
        "ledger.jsonl",
        led(amount="-1e-13"),
        "amount: more than 6 decimal places: '-1e-13'",
    ),
    # a JSON number goes through a double: judged on its text as written
    _missing(
        "amount-number-20-significant-digits",
        "ledger.jsonl",
        led(amount="N").replace('"N"', "-1.9999999999999999999"),
        "amount: more than 6 decimal places: '-1.9999999999999999999'",
    ),
    # ... whatever the spelling of its key: \u0061mount is the amount
    _missing(
        "amount-number-key-with-unicode-escape",
        "ledger.jsonl",
        led(amount="N").replace('"amount":"N"', '"\\u0061mount":0.1000000000000000055'),
        "amount: more than 6 decimal places: '0.1000000000000000055'",
    ),
    _missing(
        "amount-number-underflows",
        "ledger.jsonl",
        led(amount="N").replace('"N"', "-1e-400"),
        "amount: more than 6 decimal places: '-1e-400'",
    ),
    Case(
        "amount-numbers-that-are-exact",
        "ledger.jsonl",
        text(
            led(amount="N").replace('"N"', "-1.50000000000000000000"),
            led(entry_id="e2", amount="N").replace('"N"', "-0.123456"),
            led(entry_id="e3", amount="N").replace('"N"', "-2"),
        ),
        {
            1: {"amount": Decimal("-1.5")},
            2: {"amount": Decimal("-0.123456")},
            3: {"amount": Decimal("-2")},
        },
    ),
    _missing(
        "amount-exponent-underflows",
        "ledger.jsonl",
        led(amount="-1e-400"),
        "amount: more than 6 decimal places: '-1e-400'",
    ),
    _missing(
        "amount-exponent-31-places",
        "ledger.jsonl",
        led(amount="-1.0000000000000000000000000000001e0"),
        "amount: more than 6 decimal places",
    ),
    _missing(
        "amount-exponent-beyond-an-integer",
        "ledger.jsonl",
        led(amount="-1.23e-99999999999"),
        "amount: more than 6 decimal places",
    ),
    Case(
        "amount-exponent-forms-that-are-exact",
        "ledger.jsonl",
        text(
            led(amount="-100.00e-8"),
            led(entry_id="e2", amount="-0e-999"),
            led(entry_id="e3", amount="-0.5E1"),
            led(entry_id="e4", amount="-1.000000e0"),
        ),
        {
            1: {"amount": Decimal("-0.000001")},
            2: {"amount": Decimal("0")},
            3: {"amount": Decimal("-5")},
            4: {"amount": Decimal("-1")},
        },
    ),
    _missing(
        "amount-number-1e9",
        "ledger.jsonl",
        led(amount=-1000000000),
        "amount: too large for an exact binary number; quote it as a string",
    ),
    _missing(
        "amount-out-of-range", "ledger.jsonl", led(amount="-1000000000000"), "amount: out of range"
    ),
    _missing(
        "charge-positive",
        "ledger.jsonl",
        led(amount="0.5"),
        "amount: a charge must not be positive",
    ),
    Case(
        "money-strings-are-exact",
        "ledger.jsonl",
        text(
            led(amount="-999999999999.999999"),
            led(entry_id="e2", amount="-1e-6"),
            # an integer JSON number is exact: the fast path takes it (one with a
            # fraction goes the careful way, which reads its text)
            led(entry_id="e3", kind="topup", amount=12, request_id=None),
        ),
        {
            1: {"amount": Decimal("-999999999999.999999")},
            2: {"amount": Decimal("-0.000001")},
            3: {"amount": Decimal("12")},
        },
    ),
    # the stored DECIMAL(18, 6) is the text cast straight to it where that equals
    # the exact value (convert._stored_money): every spelling of a value stores it
    Case(
        "money-spellings-store-their-exact-value",
        "ledger.jsonl",
        text(
            led(amount=" -2.50 "),
            led(entry_id="e2", kind="topup", amount="+0001.500000000000", request_id=None),
            led(entry_id="e3", kind="topup", amount="5.", request_id=None),
            led(entry_id="e4", kind="topup", amount=".5", request_id=None),
            led(entry_id="e5", amount="-0.000001000000000000000000000000"),
            led(entry_id="e6", kind="topup", amount="999999999999.999999", request_id=None),
            led(entry_id="e7", amount="-12E-1"),
        ),
        {
            1: {"amount": Decimal("-2.5")},
            2: {"amount": Decimal("1.5")},
            3: {"amount": Decimal("5")},
            4: {"amount": Decimal("0.5")},
            5: {"amount": Decimal("-0.000001")},
            6: {"amount": Decimal("999999999999.999999")},
            7: {"amount": Decimal("-1.2")},
        },
    ),
    # ---- empty, blank, line endings
    Case("empty-file", "requests.jsonl", b""),
    Case("only-blank-lines", "requests.jsonl", b"\n\n   \n\t\n \t \n"),
    Case(
        "blank-lines-keep-their-numbers",
        "requests.jsonl",
        text("", R1, "  ", "\t", R3, ""),
        {2: ok(1), 5: ok(3)},
    ),
    Case(
        "crlf", "requests.jsonl", text(R1, req(2), R3, end="\r\n"), {1: ok(1), 2: ok(2), 3: ok(3)}
    ),
    Case(
        "crlf-with-a-reject",
        "requests.jsonl",
        text(R1, req(2, status="abc"), R3, end="\r\n"),
        {1: ok(1), 3: ok(3)},
        {2: (req(2, status="abc"), "status: not an integer")},
    ),
    Case(
        "crlf-with-malformed-json",
        "requests.jsonl",
        text(R1, TRUNCATED, R3, end="\r\n"),
        {1: ok(1), 3: ok(3)},
        {2: (TRUNCATED, "malformed JSON")},
    ),
    Case(
        "final-line-without-newline",
        "requests.jsonl",
        (R1 + "\n" + R3).encode(),
        {1: ok(1), 2: ok(3)},
    ),
    Case(
        "final-bad-line-without-newline",
        "requests.jsonl",
        (R1 + "\n" + TRUNCATED).encode(),
        {1: ok(1)},
        {2: (TRUNCATED, "malformed JSON")},
    ),
    Case("byte-order-mark", "requests.jsonl", b"\xef\xbb\xbf" + text(R1, R3), {1: ok(1), 2: ok(3)}),
    Case(
        "duplicate-request_id",
        "requests.jsonl",
        text(R1, req(1, status=500)),
        {1: ok(1, canonical=True), 2: ok(1, status=500, canonical=False)},
    ),
    # ---- a key twice: readers disagree on which value counts (Python and
    # JavaScript take the last, DuckDB the first), so the row is a reject
    _bad_middle(
        "json-duplicate-key",
        req(2)[:-1] + ',"status":500}',
        "duplicate key 'status': JSON readers disagree on which value counts",
    ),
    _missing(
        "json-duplicate-money-key",
        "ledger.jsonl",
        led()[:-1] + ',"amount":"-5.00"}',
        "duplicate key 'amount'",
    ),
    _bad_middle(
        "json-duplicate-key-spelled-with-an-escape",
        req(2)[:-1] + ',"st\\u0061tus":500}',
        "duplicate key 'status'",
    ),
    Case(  # a key warroom does not read: a repeat changes nothing
        "json-duplicate-unknown-key",
        "requests.jsonl",
        text(req(1)[:-1] + ',"x":1,"x":2}'),
        {1: ok(1)},
    ),
    Case(
        "json-same-key-in-a-nested-object-or-another-case",
        "requests.jsonl",
        text(req(1)[:-1] + ',"Status":500,"meta":{"a":1}}'),
        {1: ok(1)},
    ),
    # ---- CSV and TSV: one record per line
    Case(
        "csv-too-few-too-many-columns",
        "requests.csv",
        (CSV_HEAD + f"{TS},r1,u1,200,10\n{TS},r2,u1,200\n{TS},r3,u1,200,30,extra\n").encode(),
        {2: {"request_id": "r1", "input_tokens": 10}},
        {
            3: (f"{TS},r2,u1,200", "expected 5 fields, got 4"),
            4: (f"{TS},r3,u1,200,30,extra", "expected 5 fields, got 6"),
        },
    ),
    Case(
        "csv-unbalanced-quotes",
        "requests.csv",
        (CSV_HEAD + f'{TS},"r1,u1,200,10\n{TS},"r,2","u""2",200,"20"\n').encode(),
        {3: {"request_id": "r,2", "user_id": 'u"2', "input_tokens": 20}},
        {2: (f'{TS},"r1,u1,200,10', "malformed CSV: unbalanced or misplaced quotes")},
    ),
    Case(
        "csv-bad-values-and-json-looking-text",
        "requests.csv",
        (CSV_HEAD + f'{TS},r1,"{{""a"":1}}",abc,10\n{TS},r2,"[1]",200,\n').encode(),
        {3: {"user_id": "[1]", "input_tokens": 0}},
        {2: (f'{TS},r1,"{{""a"":1}}",abc,10', "status: not an integer: 'abc'")},
    ),
    Case(
        "csv-crlf-and-byte-order-mark",
        "requests.csv",
        b"\xef\xbb\xbf" + (CSV_HEAD + f"{TS},r1,u1,200,10\n").replace("\n", "\r\n").encode(),
        {2: {"request_id": "r1", "status": 200}},
    ),
    Case(
        "tsv-too-few-columns",
        "abuse.tsv",
        f"ts\tuser_id\taction\n{TS}\tu1\tblock\n{TS}\tu2\n".encode(),
        {2: {"action": "block"}},
        {3: (f"{TS}\tu2", "expected 3 fields, got 2")},
    ),
    # ---- a kind given for a file whose name does not say it
    Case(
        "kind-given-for-an-unnamed-file",
        "gateway-export.jsonl",
        text(R1, '{"foo":1}'),
        {1: ok(1)},
        {2: ('{"foo":1}', "ts: missing")},
        kind=Kind.requests,
    ),
]


def _physical_lines(data: bytes) -> int:
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _rows(con: duckdb.DuckDBPyConnection, kind: str) -> dict[int, dict[str, Any]]:
    cur = con.execute(f"SELECT * FROM {TABLES[Kind(kind)]} ORDER BY line")
    names = [d[0] for d in cur.description]
    return {row[names.index("line")]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}


def check(
    con: duckdb.DuckDBPyConnection,
    case: Case,
    path: Path,
    lines: int,
    rejected: dict[int, tuple[str | None, str]],
    header: int = 0,
) -> bool:
    """Ingest ``path`` into the empty ``con`` and check every row of it; returns
    whether the fast path loaded it (at its first try)."""
    report = ingest(con, [path], kind=case.kind)
    (result,) = report.files
    got = _rows(con, result.kind)
    assert sorted(got) == sorted(case.loaded), "loaded lines"
    for line, want in case.loaded.items():
        assert {k: got[line][k] for k in want} == want, f"line {line}"
    rej = con.execute("SELECT line, raw, reason FROM rejects ORDER BY line").fetchall()
    assert [(r[0], r[1]) for r in rej] == [(n, raw) for n, (raw, _) in sorted(rejected.items())]
    for n, _, reason in rej:
        assert rejected[n][1] in reason, f"line {n}: {reason!r}"
    src = con.execute(
        "SELECT path, rows_loaded, rows_rejected, blank_lines, source_id FROM sources"
    ).fetchall()
    assert len(src) == 1 and src[0][0] == str(path)
    assert src[0][1:3] == (len(case.loaded), len(rejected))
    assert src[0][1] + src[0][2] + src[0][3] + header == lines
    # a fallback to the careful path takes a second source id
    return result.format == "json" and src[0][4] == 1


#: cases the fast path must take (the rest may go either way)
FAST = {
    "json-null",
    "empty-object",
    "requests-no-ts",
    "status-abc",
    "status-true",
    "ts-year-9999",
    "ts-epoch-16-digits",
    "amount-number-1e9",
    "money-strings-are-exact",
    "crlf",
    "long-but-allowed-line",
    "duplicate-request_id",
    "final-line-without-newline",
    "escaped-control-characters-are-fine",
}


@pytest.fixture
def mem() -> Iterator[duckdb.DuckDBPyConnection]:
    """An empty in-memory database: quicker to make than a file, as good here."""
    c = db.connect(":memory:")
    yield c
    c.close()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_lands_where_it_should(
    mem: duckdb.DuckDBPyConnection, tmp_path: Path, case: Case
) -> None:
    path = write(tmp_path / case.name, case.data)
    header = 1 if case.name.endswith((".csv", ".tsv")) else 0
    fast = check(mem, case, path, _physical_lines(case.data), case.rejected, header)
    if case.id in FAST:
        assert fast, "the fast path should take this file"
    if fast and case.data.endswith(b"\n"):
        # The careful path must agree: the same bytes plus one invalid UTF-8
        # line (which the fast path cannot read) give the same rows and
        # rejects, and that line is rejected too.
        data = case.data + b'{"user_id":"\xff"}\n'
        lines = _physical_lines(data)
        other = write(tmp_path / "careful" / case.name, data)
        rejected = {**case.rejected, lines: ('{"user_id":"\\xff"}', "invalid UTF-8 at byte 13")}
        with db.connect(":memory:") as con2, pytest.MonkeyPatch.context() as mp:
            mp.setattr(load, "JSON_LOADERS", ("careful",))
            check(con2, case, other, lines, rejected)
        # and the fast path's lenient read, which reads that line again alone
        with db.connect(":memory:") as con3:
            check(con3, case, other, lines, rejected)


# --------------------------------------------------------------------------- gzip


def _gzip_lines(n: int) -> bytes:
    return text(*(req(i) for i in range(1, n + 1)))


@pytest.mark.parametrize("cut", [0.5, 0.8])
def test_truncated_gzip_loads_the_lines_before_the_cut(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, cut: float
) -> None:
    plain = _gzip_lines(2000)
    packed = gzip.compress(plain)
    data = packed[: int(len(packed) * cut)]
    path = write(tmp_path / "requests.jsonl.gz", data)
    got = zlib.decompressobj(wbits=47).decompress(data)  # what survives the cut
    assert 0 < len(got) < len(plain)
    whole = got.count(b"\n")
    partial = got[got.rfind(b"\n") + 1 :]
    report = ingest(con, [path])
    assert con.execute("SELECT min(line), max(line), count(*) FROM requests").fetchone() == (
        1,
        whole,
        whole,
    )
    assert con.execute("SELECT request_id FROM requests WHERE line = ?", [whole]).fetchone() == (
        f"r{whole}",
    )
    rej = con.execute("SELECT line, raw, reason FROM rejects").fetchall()
    assert len(rej) == 1
    line, raw, reason = rej[0]
    assert line == whole + 1
    assert raw == partial.decode()
    assert "gzip stream truncated" in reason
    (f,) = report.files
    assert (f.rows_loaded, f.rows_rejected, f.blank_lines) == (whole, 1, 0)


def test_gzip_cut_at_a_line_end_reports_the_lost_rest(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """A stream cut (flushed) right after a line: that line loads; the rest is
    reported lost, as one reject on the next line."""
    comp = zlib.compressobj(wbits=31)
    data = comp.compress(_gzip_lines(3)) + comp.flush(zlib.Z_SYNC_FLUSH)
    path = write(tmp_path / "requests.jsonl.gz", data)
    ingest(con, [path])
    assert con.execute("SELECT line FROM requests ORDER BY line").fetchall() == [(1,), (2,), (3,)]
    rej = con.execute("SELECT line, raw, reason FROM rejects").fetchall()
    assert len(rej) == 1 and rej[0][:2] == (4, "")
    assert "the rest of the file is lost" in rej[0][2]


@pytest.mark.parametrize(
    ("name", "tail"),
    [
        ("requests.jsonl.gz", b"\0" * 4096),  # zero padding, as some log shippers write
        ("requests.jsonl.gz", b"\0"),
        ("requests.jsonl.gz", b"junk\n"),
        ("requests.csv.gz", b"\0" * 10),
    ],
)
def test_bytes_after_the_gzip_data_are_one_reject(
    mem: duckdb.DuckDBPyConnection, tmp_path: Path, name: str, tail: bytes
) -> None:
    """What zcat reads loads; the bytes after the gzip data are one reject, after
    the last line, with their offset in the file."""
    csv = name.startswith("requests.csv")
    head = CSV_HEAD if csv else ""
    rows = [f"{TS},r{i},u1,200,{i}" if csv else req(i) for i in range(1, 2001)]
    packed = gzip.compress(head.encode() + text(*rows[:700])) + gzip.compress(text(*rows[700:]))
    path = write(tmp_path / name, packed + tail)
    (f,) = ingest(mem, [path]).files
    first = 2 if csv else 1
    assert mem.execute("SELECT min(line), max(line), count(*) FROM requests").fetchone() == (
        first,
        2000 + first - 1,
        2000,
    )
    assert mem.execute("SELECT line, raw, reason FROM rejects").fetchall() == [
        (
            2000 + first,
            "",
            f"{len(tail)} bytes after the end of the gzip data (at byte {len(packed) + 1} "
            "of the file) are not gzip: not loaded",
        )
    ]
    assert (f.rows_loaded, f.rows_rejected, f.blank_lines) == (2000, 1, 0)


def test_concatenated_gzip_members_load_whole(
    mem: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """The neighbour: a second member after the first is more text, not trailing bytes."""
    data = gzip.compress(text(R1)) + gzip.compress(text(req(2))) + gzip.compress(b"")
    (f,) = ingest(mem, [write(tmp_path / "requests.jsonl.gz", data)]).files
    assert (f.rows_loaded, f.rows_rejected) == (2, 0)


def test_gzip_with_bad_lines_inside(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    plain = b"\n".join([R1.encode(), TRUNCATED.encode(), with_user(b"u\xff"), R3.encode()])
    path = write(tmp_path / "requests.ndjson.gz", gzip.compress(plain + b"\n"))
    ingest(con, [path])
    assert con.execute("SELECT line, request_id FROM requests ORDER BY line").fetchall() == [
        (1, "r1"),
        (4, "r3"),
    ]
    assert con.execute("SELECT line, raw, reason FROM rejects ORDER BY line").fetchall() == [
        (2, TRUNCATED, "malformed JSON"),
        (3, raw_user("u\\xff"), f"invalid UTF-8 at byte {AT + 1}"),
    ]


# --------------------------------------------------------------------------- Parquet


def _parquet(con: duckdb.DuckDBPyConnection, path: Path, select: str) -> Path:
    con.execute(f"COPY ({select}) TO '{path}' (FORMAT parquet)")
    return path


def test_parquet_wrong_column_types_are_row_rejects(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    scratch = duckdb.connect()
    pq = _parquet(
        scratch,
        tmp_path / "requests.parquet",
        """
        SELECT * FROM (VALUES
            (TIMESTAMP '2025-06-01 10:00:00', 'r1', 'u1', '200', {'a': 1}),
            (TIMESTAMP '2025-06-01 10:00:00', 'r2', 'u1', 'abc', NULL),
            (TIMESTAMP '2025-06-01 10:00:00', 'r3', NULL, '429', NULL))
        t(ts, request_id, user_id, status, org_id)""",
    )
    report = ingest(con, [pq])
    assert con.execute("SELECT line, request_id, status FROM requests").fetchall() == []
    rej = con.execute("SELECT line, raw, reason FROM rejects ORDER BY line").fetchall()
    assert rej == [  # raw: the row's canonical fields as JSON, in the model's order
        (
            1,
            '{"ts":"2025-06-01 10:00:00","request_id":"r1","user_id":"u1","org_id":{"a":1},'
            '"status":"200"}',
            "org_id: expected a string, got an object",
        ),
        (
            2,
            '{"ts":"2025-06-01 10:00:00","request_id":"r2","user_id":"u1","org_id":null,'
            '"status":"abc"}',
            "status: not an integer: 'abc'",
        ),
        (
            3,
            '{"ts":"2025-06-01 10:00:00","request_id":"r3","user_id":null,"org_id":null,'
            '"status":"429"}',
            "user_id: missing",
        ),
    ]
    (f,) = report.files
    assert (f.rows_loaded, f.rows_rejected) == (0, 3)


def test_parquet_text_status_and_boolean_ts(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    scratch = duckdb.connect()
    good = _parquet(
        scratch,
        tmp_path / "requests-a.parquet",
        """
        SELECT * FROM (VALUES (TIMESTAMP '2025-06-01 10:00:00', 'r1', 'u1', '200'),
                              (TIMESTAMP '2025-06-01 10:00:00', 'r2', 'u1', 'abc'))
        t(ts, request_id, user_id, status)""",
    )
    boolean_ts = _parquet(
        scratch,
        tmp_path / "requests-b.parquet",
        """
        SELECT * FROM (VALUES (true, 'r3', 'u1', 200), (false, 'r4', 'u1', 200))
        t(ts, request_id, user_id, status)""",
    )
    ingest(con, [good, boolean_ts])
    assert con.execute("SELECT line, request_id, status FROM requests").fetchall() == [
        (1, "r1", 200)
    ]
    assert con.execute("""SELECT s.path, r.line, r.reason FROM rejects r JOIN sources s
                          USING (source_id) ORDER BY 1, 2""").fetchall() == [
        (str(good), 2, "status: not an integer: 'abc'"),
        (str(boolean_ts), 1, "ts: not a timestamp: 'true'"),
        (str(boolean_ts), 2, "ts: not a timestamp: 'false'"),
    ]
    assert con.execute(
        "SELECT rows_loaded, rows_rejected FROM sources ORDER BY path"
    ).fetchall() == [(1, 1), (0, 2)]


# --------------------------------------------------------------------------- file-level errors


def _tables(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    return {
        t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
        for t in ("sources", "rejects", *TABLES.values())
    }


FILE_ERRORS = [
    (
        "csv-header-lacks-a-column",
        "requests.csv",
        b"ts,request_id,status\n2025-06-01T10:00:00Z,r1,200\n",
        "header lacks required column(s) user_id for kind requests",
    ),
    (
        "csv-header-lacks-columns-ledger",
        "ledger.csv",
        b"entry_id,ts,user_id\ne1,2025,u1\n",
        "header lacks required column(s) kind",
    ),
    ("gz-that-is-not-gzip", "requests.jsonl.gz", text(R1), "named .gz but is not gzip data"),
    (
        "gzip-named-jsonl",
        "requests.jsonl",
        gzip.compress(text(R1)),
        "this is gzip data; name it requests.jsonl.gz",
    ),
    (
        "parquet-that-is-text",
        "requests.parquet",
        text(R1),
        "named .parquet but is not a Parquet file",
    ),
    (
        "unknown-kind-of-unnamed-file",
        "export.jsonl",
        text('{"foo":1}'),
        "cannot tell what this file holds",
    ),
    ("unknown-extension", "requests.txt", text(R1), "unknown file type"),
    (
        "csv-header-with-a-column-twice",
        "ledger.csv",
        b"entry_id,ts,user_id,kind,amount,Amount\ne1,2025-06-01,u1,topup,1,5\n",
        "column(s) amount appear twice in the header",
    ),
    (
        "tsv-header-with-a-column-twice",
        "abuse.tsv",
        b"ts\tuser_id\taction\tuser_id\n2025-06-01\tu1\tblock\tu2\n",
        "column(s) user_id appear twice in the header",
    ),
]


@pytest.mark.parametrize(
    ("name", "data", "message"), [e[1:] for e in FILE_ERRORS], ids=[e[0] for e in FILE_ERRORS]
)
def test_file_level_errors_load_nothing(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, name: str, data: bytes, message: str
) -> None:
    before_file = write(tmp_path / "requests-before.jsonl", text(req(9)))
    ingest(con, [before_file])
    before = _tables(con)
    good = write(tmp_path / "requests-good.jsonl", text(R1))  # listed first: not loaded either
    bad = write(tmp_path / name, data)
    with pytest.raises(InputError, match=re.escape(message)):
        ingest(con, [good, bad])
    assert _tables(con) == before


# --------------------------------------------------------------------------- CLI


def _one_line_error(proc: Any) -> str:
    err = proc.stderr
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_cli_missing_file(tmp_path: Path, cli: Cli) -> None:
    proc = cli("ingest", str(tmp_path / "nope.jsonl"), "--db", str(tmp_path / "w.duckdb"))
    assert proc.code == 1
    assert "no such file or folder" in _one_line_error(proc)
    assert proc.stdout == b""


def test_cli_unknown_kind_is_a_usage_error(tmp_path: Path, cli: Cli) -> None:
    f = write(tmp_path / "gateway.jsonl", text(R1))
    proc = cli("ingest", str(f), "--kind", "payments", "--db", str(tmp_path / "w.duckdb"))
    assert proc.code == 2
    assert "Traceback" not in proc.stderr
    assert "payments" in proc.stderr


def test_cli_kind_for_an_unnamed_file_and_rejects(tmp_path: Path, cli: Cli) -> None:
    dbf = tmp_path / "w.duckdb"
    f = write(
        tmp_path / "gateway.jsonl",
        b"\n".join([R1.encode(), TRUNCATED.encode(), with_user(b"u\x00")]) + b"\n",
    )
    proc = cli("ingest", str(f), "--db", str(dbf))  # first line has request fields
    assert proc.code == 0, proc.stderr
    assert "1 rows loaded, 2 rejected" in proc.stderr.replace("\n", " ")
    g = write(tmp_path / "decisions.jsonl", text(abuse(), abuse(action="nope")))
    proc = cli("ingest", str(g), "--kind", "abuse", "--db", str(dbf))
    assert proc.code == 0, proc.stderr
    proc = cli(
        "sql",
        "SELECT s.kind, r.line, r.raw, r.reason FROM rejects r "
        "JOIN sources s USING (source_id) ORDER BY 1, 2",
        "--format",
        "jsonl",
        "--db",
        str(dbf),
    )
    assert proc.code == 0, proc.stderr
    got = [json.loads(x) for x in proc.stdout.decode().splitlines()]
    assert got == [
        {
            "kind": "abuse",
            "line": 2,
            "raw": abuse(action="nope"),
            "reason": "action: unknown value 'nope' (expected one of "
            "flag|throttle|block|penalty|clear)",
        },
        {"kind": "requests", "line": 2, "raw": TRUNCATED, "reason": "malformed JSON"},
        {
            "kind": "requests",
            "line": 3,
            "raw": raw_user("u\\x00"),
            "reason": f"control character 0x00 at byte {AT + 1}",
        },
    ]


def test_cli_strict_exits_3_and_header_error_exits_1(tmp_path: Path, cli: Cli) -> None:
    dbf = tmp_path / "w.duckdb"
    f = write(tmp_path / "requests.jsonl", text(R1, "[]"))
    proc = cli("ingest", str(f), "--strict", "--db", str(dbf))
    assert proc.code == 3
    assert "Traceback" not in proc.stderr
    csv = write(tmp_path / "prices.csv", "model,input_per_mtok\nm1,1\n")
    proc = cli("ingest", str(csv), "--db", str(dbf))
    assert proc.code == 1
    assert "header lacks required column(s) output_per_mtok, effective_from" in (
        _one_line_error(proc)
    )


# --------------------------------------------------------------------------- odd corners


def test_json_array_file_tells_objects_from_strings(
    mem: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """A .json file holding one array: rows are numbered by element, and a string
    that holds JSON text is a string while an object is rejected."""
    f = write(
        tmp_path / "requests.json",
        "["
        + ",\n".join(
            [
                req(1, user_id="{}"),
                req(2, user_id={"a": 1}),
                req(3, status="abc"),
                req(4, user_id=12),
            ]
        )
        + "]\n",
    )
    ingest(mem, [f])
    assert mem.execute("SELECT line, user_id FROM requests ORDER BY line").fetchall() == [
        (1, "{}"),
        (4, "12"),
    ]
    assert mem.execute("SELECT line, raw, reason FROM rejects ORDER BY line").fetchall() == [
        (2, req(2, user_id={"a": 1}), "user_id: expected a string, got an object"),
        (3, req(3, status="abc"), "status: not an integer: 'abc'"),
    ]


def test_rejected_array_elements_keep_their_json_text(
    mem: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """Every way an element of a .json array is rejected keeps the element's text
    as written (spaces, key order, number forms) in raw; a key twice is one of them."""
    elements = [
        req(1),
        '{ "ts" : "yesterday", "request_id": "r2", "user_id": "u1", "status": 200 }',
        "42",
        '"text"',
        req(5)[:-1] + ',"status":500}',
        "[1, 2]",
        req(7),
    ]
    f = write(tmp_path / "requests.json", "[" + ",\n".join(elements) + "]")
    ingest(mem, [f])
    assert mem.execute("SELECT line FROM requests ORDER BY line").fetchall() == [(1,), (7,)]
    rej = mem.execute("SELECT line, raw, reason FROM rejects ORDER BY line").fetchall()
    assert [(n, raw) for n, raw, _ in rej] == [(n, elements[n - 1]) for n in (2, 3, 4, 5, 6)]
    assert [r[2].split(":")[0] for r in rej] == [
        "ts",
        "not a JSON object",
        "not a JSON object",
        "duplicate key 'status'",
        "not a JSON object",
    ]


def test_timestamps_are_utc_whatever_the_session_zone(tmp_path: Path) -> None:
    """ingest() on a connection someone set to another zone still stores UTC."""
    f = write(
        tmp_path / "requests.jsonl",
        text(
            req(1, ts="2025-06-01T12:00:00+02:00"),
            req(2, ts="2025-06-01 10:00:00"),
            req(3, ts=1748772000),
        ),
    )
    con = duckdb.connect()
    db.ensure_schema(con)
    con.execute("SET TimeZone = 'America/New_York'")
    ingest(con, [f])
    assert con.execute("SELECT DISTINCT CAST(ts AS VARCHAR) FROM requests").fetchall() == [
        ("2025-06-01 10:00:00",)
    ]


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("requests.jsonl", "grow"),
        ("requests.jsonl", "rewrite"),
        ("requests.csv", "grow"),
        ("requests.jsonl", None),  # the neighbour: read while untouched, it loads
    ],
)
def test_a_file_that_changes_while_it_is_ingested_is_refused(
    mem: duckdb.DuckDBPyConnection, tmp_path: Path, name: str, change: str | None
) -> None:
    """A log still being written: its hash, size and rows would describe different
    states of it, so it is refused whole with a clear error (nothing loaded); once
    it is complete, it loads. The progress callback runs between the load and the
    commit, which makes the change land at a known moment."""
    csv = name.endswith(".csv")
    first = CSV_HEAD + f"{TS},r1,u1,200,1\n" if csv else R1 + "\n"
    more = f"{TS},r2,u1,200,2\n" if csv else req(2) + "\n"
    path = write(tmp_path / name, first)

    touched: list[float] = []

    def touch(label: str, done: float) -> None:
        # once: on a busy machine the progress poll may call this again
        if touched:
            return
        touched.append(done)
        if change == "grow":
            with open(path, "a") as fh:
                fh.write(more)
        elif change == "rewrite":  # same size, other bytes
            path.write_text(first.replace("u1", "u9"))
            st = path.stat()
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))

    if change is None:
        ingest(mem, [path], progress=touch)
        assert mem.execute("SELECT count(*) FROM requests").fetchone() == (1,)
        return
    with pytest.raises(InputError, match="the file changed while it was being ingested"):
        ingest(mem, [path], progress=touch)
    assert _tables(mem) == {t: [] for t in _tables(mem)}
    (f,) = ingest(mem, [path]).files
    assert f.rows_loaded == (2 if change == "grow" else 1)
    assert mem.execute("SELECT size_bytes FROM sources").fetchone() == (path.stat().st_size,)
