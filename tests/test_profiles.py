"""Import profiles: each built-in loads its documented format into exact canonical rows.

The fixtures in tests/fixtures/profiles/ are written from each system's public
documentation and schemas (LiteLLM's SpendLogsPayload, CloudEvents/OpenMeter,
Lago's event and wallet-transaction objects, Stripe's customer balance
transaction and Balance report, OpenAI's Usage and Costs API pages), with the
awkward records a real export holds: nulls, empty strings, missing optional
fields, metadata as a JSON string, minor vs major units, failures.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, Cli, write
from warroom import db, profiles
from warroom.detect import detect
from warroom.errors import ProfileError
from warroom.ingest import RejectedRowsError, ingest
from warroom.model import Kind
from warroom.pack import load_pack

FIX = ROOT / "tests" / "fixtures" / "profiles"
D = Decimal
T = datetime

REQ_COLS = (
    "source_id, line, ts, request_id, user_id, org_id, plan, model, status, error_code, "
    "input_tokens, cached_tokens, output_tokens"
)
LED_COLS = (
    "source_id, line, entry_id, ts, user_id, kind, amount, currency, request_id, "
    "input_tokens, cached_tokens, output_tokens, balance_after"
)


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    c = db.connect(tmp_path / "p.duckdb")
    yield c
    c.close()


def requests(con: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
    return con.execute(
        f"SELECT {REQ_COLS} FROM requests_all ORDER BY source_id, line, request_id"
    ).fetchall()


def ledger(con: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
    return con.execute(
        f"SELECT {LED_COLS} FROM ledger_all ORDER BY source_id, line, entry_id"
    ).fetchall()


def rejects(con: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
    return con.execute(
        "SELECT source_id, line, reason FROM rejects ORDER BY source_id, line, reason"
    ).fetchall()


def nothing_lost(con: duckdb.DuckDBPyConnection) -> None:
    """For every line-based file: loaded + rejected + blank (+ header) = its lines."""
    for path, fmt, loaded, rejected, blank in con.execute(
        "SELECT path, format, rows_loaded, rows_rejected, blank_lines FROM sources"
    ).fetchall():
        if str(path).endswith((".jsonl", ".csv")):
            lines = Path(path).read_text().count("\n")
            assert loaded + rejected + blank + (fmt == "csv") == lines, path


# --------------------------------------------------------------------------- litellm


def test_litellm_spend_logs_json_lines_and_csv(con) -> None:
    report = ingest(
        con, [FIX / "litellm_spendlogs.jsonl", FIX / "litellm_spendlogs.csv"], profile="litellm"
    )
    assert [(f.kind, f.rows_loaded, f.rows_rejected, f.blank_lines) for f in report.files] == [
        ("requests+ledger", 5, 3, 1),
        ("requests+ledger", 2, 1, 0),
    ]
    assert requests(con) == [
        # usage_object's cached tokens; the org from the key's metadata
        (
            1,
            1,
            T(2025, 6, 1, 10, 0, 0, 250000),
            "chatcmpl-A1b2",
            "u-alice",
            "org-acme",
            None,
            "gpt-4o",
            200,
            None,
            1200,
            1024,
            100,
        ),
        # a failure: user "" -> the caller's end user; the provider's 429 and error class
        (
            1,
            2,
            T(2025, 6, 1, 10, 5),
            "chatcmpl-C3d4",
            "cust-42",
            None,
            None,
            "gpt-4o",
            429,
            "rate_limit_exceeded",
            0,
            0,
            0,
        ),
        # +02:00 -> UTC; Anthropic-style cache reads
        (
            1,
            3,
            T(2025, 6, 1, 10, 0, 0, 123456),
            "msg_01XFDUDYJgAACzvnptvVoYEL",
            "u-bob",
            None,
            None,
            "claude-3-5-haiku-20241022",
            200,
            None,
            30,
            20,
            5,
        ),
        # metadata as a JSON string (the payload form); no status column: a success
        (
            1,
            5,
            T(2025, 6, 1, 10, 10),
            "chatcmpl-E5f6",
            "u-alice",
            "org-acme",
            None,
            "gpt-4o",
            200,
            None,
            1500,
            0,
            500,
        ),
        # a cache hit: a request of its own, no spend
        (
            1,
            6,
            T(2025, 6, 1, 10, 1),
            "chatcmpl-A1b2_cache_hit1748772060.5",
            "u-alice",
            None,
            None,
            "gpt-4o",
            200,
            None,
            1200,
            0,
            100,
        ),
        # CSV export: metadata JSON text in a quoted cell, a zone-less timestamp is UTC
        (
            2,
            2,
            T(2025, 6, 1, 11, 0, 0, 500000),
            "chatcmpl-P1",
            "u-carol",
            "org-acme",
            None,
            "gpt-4o-mini",
            200,
            None,
            200,
            128,
            20,
        ),
        (
            2,
            3,
            T(2025, 6, 1, 11, 1),
            "chatcmpl-P2",
            "u-carol",
            None,
            None,
            "gpt-4o-mini",
            400,
            "BadRequestError",
            0,
            0,
            0,
        ),
    ]
    assert ledger(con) == [
        (
            1,
            1,
            "chatcmpl-A1b2",
            T(2025, 6, 1, 10, 0, 0, 250000),
            "u-alice",
            "charge",
            D("-0.00195"),
            "usd",
            "chatcmpl-A1b2",
            1200,
            1024,
            100,
            None,
        ),
        # 0.0000225 has 7 places: rounded half-up to the ledger's 6
        (
            1,
            3,
            "msg_01XFDUDYJgAACzvnptvVoYEL",
            T(2025, 6, 1, 10, 0, 0, 123456),
            "u-bob",
            "charge",
            D("-0.000023"),
            "usd",
            "msg_01XFDUDYJgAACzvnptvVoYEL",
            30,
            20,
            5,
            None,
        ),
        (
            1,
            5,
            "chatcmpl-E5f6",
            T(2025, 6, 1, 10, 10),
            "u-alice",
            "charge",
            D("-0.0125"),
            "usd",
            "chatcmpl-E5f6",
            1500,
            0,
            500,
            None,
        ),
        (
            2,
            2,
            "chatcmpl-P1",
            T(2025, 6, 1, 11, 0, 0, 500000),
            "u-carol",
            "charge",
            D("-0.00042"),
            "usd",
            "chatcmpl-P1",
            200,
            128,
            20,
            None,
        ),
    ]
    assert rejects(con) == [
        (1, 7, "litellm: startTime: missing"),
        # the request would load, the charge cannot: the row is rejected whole
        (1, 8, "litellm: spend: a charge must not be positive"),
        (1, 9, "litellm: malformed JSON"),
        (2, 4, "litellm: startTime: missing"),
    ]
    raw = con.execute("SELECT raw FROM rejects WHERE source_id = 2").fetchone()
    assert raw is not None and str(raw[0]).startswith("chatcmpl-P3,acompletion,")
    assert con.execute("SELECT DISTINCT profile FROM sources").fetchall() == [("litellm",)]
    nothing_lost(con)


def test_litellm_spend_logs_api_array(con, tmp_path: Path) -> None:
    # /spend/logs returns a JSON array of spend-log rows: each element is a row
    rows = [
        json.loads(line) for line in (FIX / "litellm_spendlogs.jsonl").read_text().splitlines()[:3]
    ]
    f = write(tmp_path / "spend_logs.json", json.dumps(rows, indent=2))
    report = ingest(con, [f], profile="litellm")
    assert (
        report.files[0].rows_loaded,
        report.files[0].rows_rejected,
        report.files[0].blank_lines,
    ) == (3, 0, 0)
    assert [r[1:4] for r in requests(con)] == [
        (1, T(2025, 6, 1, 10, 0, 0, 250000), "chatcmpl-A1b2"),
        (2, T(2025, 6, 1, 10, 5), "chatcmpl-C3d4"),
        (3, T(2025, 6, 1, 10, 0, 0, 123456), "msg_01XFDUDYJgAACzvnptvVoYEL"),
    ]


def test_kind_keeps_only_the_profiles_mappings_of_that_kind(con) -> None:
    ingest(con, [FIX / "litellm_spendlogs.jsonl"], profile="litellm", kind=Kind.requests)
    assert len(requests(con)) == 6  # line 8 now loads: its charge is not read
    assert ledger(con) == []
    assert con.execute("SELECT kind FROM sources").fetchall() == [("requests",)]
    with pytest.raises(ProfileError, match="produces no abuse rows"):
        ingest(con, [FIX / "litellm_spendlogs.jsonl"], profile="litellm", kind=Kind.abuse)


# --------------------------------------------------------------------------- openmeter


def test_openmeter_cloudevents(con) -> None:
    report = ingest(con, [FIX / "openmeter_events.jsonl"], profile="openmeter")
    assert (report.files[0].rows_loaded, report.files[0].rows_rejected) == (6, 3)
    ts = T(2025, 6, 1, 10, 0, 0, 1000)
    assert requests(con) == [
        # LiteLLM's OpenMeter callback: one event per call, prompt/completion tokens
        (
            1,
            1,
            T(2025, 6, 1, 10, 0, 2, 100000),
            "litellm-proxy/chatcmpl-A1b2",
            "u-alice",
            None,
            None,
            "gpt-4o",
            200,
            None,
            1200,
            0,
            100,
        ),
        # OpenMeter's token meter: one event per token type, tokens as a string
        (
            1,
            2,
            ts,
            "chat-app/00001",
            "customer-1",
            None,
            None,
            "gpt4-turbo",
            200,
            None,
            123456,
            0,
            0,
        ),
        # the same id from another source is another event
        (
            1,
            3,
            ts,
            "chat-app-eu/00001",
            "customer-7",
            None,
            None,
            "gpt4-turbo",
            200,
            None,
            900,
            0,
            0,
        ),
        (1, 4, ts, "chat-app/00002", "customer-1", None, None, "gpt4-turbo", 200, None, 0, 0, 4096),
        # shipped twice: loaded with its line, counted once
        (1, 5, ts, "chat-app/00002", "customer-1", None, None, "gpt4-turbo", 200, None, 0, 0, 4096),
        # the list-events API's wrapper; an event with no tokens at all
        (
            1,
            6,
            T(2025, 6, 1, 10, 3),
            "service-0/5c10fade-1c9e-4d6c-8275-c52c36731d3c",
            "customer-2",
            None,
            None,
            None,
            200,
            None,
            0,
            0,
            0,
        ),
    ]
    assert con.execute(
        "SELECT count(*) FROM requests WHERE request_id = 'chat-app/00002'"
    ).fetchone() == (1,)
    assert rejects(con) == [
        # CloudEvents' time is optional: the reason says what to export instead
        (
            1,
            7,
            "openmeter: a CloudEvent without time (OpenMeter stamps the time it receives "
            "it): export the stored events (GET /api/v1/events or /api/v2/events) instead",
        ),
        (1, 8, "openmeter: event.subject: missing"),
        (
            1,
            9,
            "openmeter: event.data.prompt_tokens or event.data.input_tokens or "
            "event.data.tokens: negative: '-3'",
        ),
    ]
    nothing_lost(con)


# --------------------------------------------------------------------------- lago


def test_lago_events_and_wallet_transactions(con) -> None:
    report = ingest(con, [FIX / "lago.jsonl"], profile="lago")
    assert (report.files[0].rows_loaded, report.files[0].rows_rejected) == (6, 2)
    assert requests(con) == [
        # the POST body LiteLLM's Lago callback sends: Unix seconds
        (
            1,
            1,
            T(2025, 6, 1, 10, 0),
            "3c2a4e8e-6f0b-4c43-9b6e-2b1e5c7f0a11",
            "sub-alice",
            None,
            None,
            "gpt-4o",
            200,
            None,
            1200,
            0,
            100,
        ),
        # read back from Lago: ISO-8601, tokens as strings
        (
            1,
            2,
            T(2025, 6, 1, 10, 0, 5, 123000),
            "transaction_1234567890",
            "sub-bob",
            None,
            None,
            "gpt-4o-mini",
            200,
            None,
            50,
            0,
            5,
        ),
        # a non-LLM metric by customer: fractional epoch seconds as a string
        (
            1,
            3,
            T(2025, 6, 1, 10, 1, 40, 500000),
            "storage-2025-06-01-alice",
            "cust-alice",
            None,
            None,
            None,
            200,
            None,
            0,
            0,
            0,
        ),
    ]
    assert ledger(con) == [
        # one page of wallet transactions: three ledger rows from line 4
        (
            1,
            4,
            "wt-0001",
            T(2025, 6, 1, 9, 0),
            "wallet-alice",
            "topup",
            D("100"),
            "credits",
            None,
            None,
            None,
            None,
            None,
        ),
        (
            1,
            4,
            "wt-0002",
            T(2025, 6, 1, 9, 0),
            "wallet-alice",
            "grant",
            D("10"),
            "credits",
            None,
            None,
            None,
            None,
            None,
        ),
        (
            1,
            4,
            "wt-0003",
            T(2025, 6, 2, 0, 0),
            "wallet-alice",
            "adjustment",
            D("-25.5"),
            "credits",
            None,
            None,
            None,
            None,
            None,
        ),
        # voided credits leave the wallet
        (
            1,
            6,
            "wt-0005",
            T(2025, 6, 1, 12, 0),
            "wallet-bob",
            "adjustment",
            D("-5"),
            "credits",
            None,
            None,
            None,
            None,
            None,
        ),
    ]
    got = rejects(con)
    assert [r[1] for r in got] == [5, 7]
    # a pending top-up changed no balance: the reason says so
    assert got[0][2] == (
        "lago: status pending: a wallet transaction that is not settled changed no "
        "balance (it loads once settled)"
    )
    # one level of each: the reason names the path inside the element
    assert got[1][2] == "lago: timestamp or created_at: not a timestamp: 'yesterday'"
    nothing_lost(con)


# --------------------------------------------------------------------------- stripe


def test_stripe_balance_transactions_minor_units_and_sign(con) -> None:
    report = ingest(con, [FIX / "stripe_balance_transactions.json"], profile="stripe")
    # a pretty-printed API page is one document: one row, five ledger entries
    assert (
        report.files[0].rows_loaded,
        report.files[0].rows_rejected,
        report.files[0].blank_lines,
    ) == (1, 0, 0)
    assert ledger(con) == [
        (
            1,
            1,
            "cbtxn_1MrCreditNoteAlice",
            T(2025, 6, 2, 8, 0),
            "cus_alice",
            "refund",
            D("5"),
            "usd",
            None,
            None,
            None,
            None,
            D("42.66"),
        ),
        (
            1,
            1,
            "cbtxn_1MrDinar",
            T(2025, 6, 1, 7, 0),
            "cus_fahad",
            "adjustment",
            D("1.5"),
            "kwd",
            None,
            None,
            None,
            None,
            D("-0.25"),
        ),  # KWD has three decimals
        (
            1,
            1,
            "cbtxn_1MrInvoiceAlice",
            T(2025, 6, 2, 7, 0),
            "cus_alice",
            "adjustment",
            D("-12.34"),
            "usd",
            None,
            None,
            None,
            None,
            D("37.66"),
        ),  # customer expanded
        # Stripe's -5000 (a credit to the customer) is +50.00 the user holds
        (
            1,
            1,
            "cbtxn_1MrTopUpAlice",
            T(2025, 6, 1, 7, 0),
            "cus_alice",
            "adjustment",
            D("50"),
            "usd",
            None,
            None,
            None,
            None,
            D("50"),
        ),
        (
            1,
            1,
            "cbtxn_1MrYen",
            T(2025, 6, 1, 7, 0),
            "cus_kenji",
            "adjustment",
            D("1000"),
            "jpy",
            None,
            None,
            None,
            None,
            D("1000"),
        ),  # JPY is zero-decimal: 1000 is 1000 yen
    ]


def test_stripe_balance_change_from_activity_report(con) -> None:
    report = ingest(con, [FIX / "stripe_balance_change_from_activity.csv"], profile="stripe")
    assert (report.files[0].rows_loaded, report.files[0].rows_rejected) == (3, 2)
    assert ledger(con) == [
        # major units, exact: the customer's payment is a top-up
        (
            1,
            2,
            "txn_1MrCharge",
            T(2025, 6, 1, 9, 30),
            "cus_alice",
            "topup",
            D("50"),
            "usd",
            None,
            None,
            None,
            None,
            None,
        ),
        (
            1,
            3,
            "txn_1MrRefund",
            T(2025, 6, 2, 15, 0),
            "cus_alice",
            "adjustment",
            D("-12.34"),
            "usd",
            None,
            None,
            None,
            None,
            None,
        ),
        (
            1,
            5,
            "txn_1MrDispute",
            T(2025, 6, 3, 10, 0),
            "cus_bob",
            "adjustment",
            D("-20"),
            "usd",
            None,
            None,
            None,
            None,
            None,
        ),
    ]
    got = rejects(con)
    assert [r[1] for r in got] == [4, 6]
    assert got[0][2] == (  # a Stripe fee row
        "stripe: a fee, payout, transfer or other row of your Stripe account's balance: "
        "no customer's balance changed"
    )
    assert got[1][2] == "stripe: customer_id: missing"  # a guest checkout
    nothing_lost(con)


# --------------------------------------------------------------------------- openai


def test_openai_usage_and_costs_pages(con) -> None:
    report = ingest(
        con,
        [FIX / "openai_usage_completions.json", FIX / "openai_costs.jsonl"],
        profile="openai-usage",
    )
    # page 3's costs result loads; its two other results are rejected alone
    assert [(f.rows_loaded, f.rows_rejected) for f in report.files] == [(1, 0), (3, 2)]
    day = T(2025, 6, 1)
    assert requests(con) == [
        # ungrouped by project: the organization; batch=true is part of the identity
        (
            1,
            1,
            day,
            "organization.usage.completions.result/1748736000////gpt-4o-2024-08-06/true///",
            "organization",
            None,
            None,
            "gpt-4o-2024-08-06",
            200,
            None,
            20,
            0,
            2,
        ),
        (
            1,
            1,
            day,
            "organization.usage.completions.result/1748736000/proj_abc///gpt-4o-mini-2024-07-18////",
            "proj_abc",
            None,
            None,
            "gpt-4o-mini-2024-07-18",
            200,
            None,
            1000,
            800,
            500,
        ),
    ]
    cost = "organization.costs.result/"
    assert ledger(con) == [
        # amount.value is a float in major units: 1.2345675 rounds half-up to 6 places
        (
            2,
            1,
            cost + "1748736000/proj_abc/Image models/",
            day,
            "proj_abc",
            "charge",
            D("-1.234568"),
            "usd",
            cost + "1748736000/proj_abc/Image models/",
            None,
            None,
            None,
            None,
        ),
        (
            2,
            1,
            cost + "1748736000/proj_abc/gpt-4o-mini-2024-07-18, input/",
            day,
            "proj_abc",
            "charge",
            D("-0.06"),
            "usd",
            cost + "1748736000/proj_abc/gpt-4o-mini-2024-07-18, input/",
            None,
            None,
            None,
            None,
        ),
        (
            2,
            2,
            cost + "1748822400///",
            T(2025, 6, 2),
            "organization",
            "charge",
            D("-0.5"),
            "usd",
            cost + "1748822400///",
            None,
            None,
            None,
            None,
        ),
        (
            2,
            3,
            cost + "1748908800/proj_abc//",
            T(2025, 6, 3),
            "proj_abc",
            "charge",
            D("-0.25"),
            "usd",
            cost + "1748908800/proj_abc//",
            None,
            None,
            None,
            None,
        ),
    ]
    # a result no mapping knows is rejected alone (its page's costs load), and the
    # reason says which one; a vector store's bytes are no requests
    usage = (
        "(usage: result.object matches organization\\.usage\\.(completions|embeddings|"
        "moderations|images|audio_speeches|audio_transcriptions)\\.result; costs: "
        "result.object = organization.costs.result)"
    )
    assert rejects(con) == [
        (2, 3, f"openai-usage: bucket 1, result 2: no mapping applies {usage}"),
        (2, 3, f"openai-usage: bucket 1, result 3: no mapping applies {usage}"),
    ]
    raws = con.execute("SELECT raw FROM rejects ORDER BY reason").fetchall()
    assert [json.loads(r[0])["object"] for r in raws] == [
        "organization.usage.vector_stores.result",
        "organization.audit_log",
    ]


# --------------------------------------------------------------------------- user mappings

BILLING_TOML = """
name = "billing"
description = "our billing service's event log"

[[mapping]]
name = "balance event"
kind = "ledger"
when = { path = "$.evt.type", in = ["balance.debited", "balance.credited"] }

[mapping.fields]
entry_id = "$.evt.id"
ts = { path = "$.evt.occurred_at_ms", epoch = "ms" }
user_id = "$.evt.account.id"
kind = { path = "$.evt.type", map = { "balance.debited" = "charge", "balance.credited" = "topup" } }
amount = { path = "$.evt.money.amount_micros", scale = "0.000001" }
currency = "$.evt.money.currency"
request_id = "$.evt.links.request_id"
idempotency_key = { template = "{$.evt.account.id}:{$.evt.links.request_id?}" }
balance_after = { path = "$.evt.balance.after_micros", scale = "0.000001" }
"""


def billing_event(
    eid: str,
    ms: int,
    user: str | None,
    kind: str,
    micros: str,
    rid: str | None = None,
    after: str | None = None,
) -> str:
    evt: dict[str, object] = {
        "id": eid,
        "type": kind,
        "occurred_at_ms": ms,
        "account": {"id": user, "tier": "payg"} if user else {},
        "money": {"amount_micros": micros, "currency": "USD"},
    }
    if rid:
        evt["links"] = {"request_id": rid, "trace": {"span": "abc"}}
    if after is not None:
        evt["balance"] = {"after_micros": after}
    return json.dumps({"evt": evt, "v": 2}) + "\n"


def test_user_mapping_loads_a_nested_json_log(con, tmp_path: Path) -> None:
    mapping = write(tmp_path / "billing.toml", BILLING_TOML)
    log = write(
        tmp_path / "billing.jsonl",
        "".join(
            [
                billing_event(
                    "evt_1",
                    1748772000000,
                    "u-alice",
                    "balance.credited",
                    "20000000",
                    after="20000000",
                ),
                billing_event(
                    "evt_2",
                    1748772001500,
                    "u-alice",
                    "balance.debited",
                    "-2720",
                    "req-1",
                    after="19997280",
                ),
                billing_event("evt_3", 1748772002000, None, "balance.debited", "-10", "req-2"),
                billing_event("evt_4", 1748772003000, "u-alice", "balance.debited", "-1", "req-3"),
                json.dumps({"evt": {"id": "evt_5", "type": "account.created"}}) + "\n",
            ]
        ),
    )
    report = ingest(con, [log], profile=mapping)
    assert (report.files[0].kind, report.files[0].rows_loaded, report.files[0].rows_rejected) == (
        "ledger",
        3,
        2,
    )
    assert con.execute(
        f"SELECT {LED_COLS}, idempotency_key FROM ledger_all ORDER BY line"
    ).fetchall() == [
        (
            1,
            1,
            "evt_1",
            T(2025, 6, 1, 10, 0),
            "u-alice",
            "topup",
            D("20"),
            "usd",
            None,
            None,
            None,
            None,
            D("20"),
            "u-alice:",
        ),
        (
            1,
            2,
            "evt_2",
            T(2025, 6, 1, 10, 0, 1, 500000),
            "u-alice",
            "charge",
            D("-0.00272"),
            "usd",
            "req-1",
            None,
            None,
            None,
            D("19.99728"),
            "u-alice:req-1",
        ),
        # micros are exact to the ledger's 6 places: -1 micro is -0.000001
        (
            1,
            4,
            "evt_4",
            T(2025, 6, 1, 10, 0, 3),
            "u-alice",
            "charge",
            D("-0.000001"),
            "usd",
            "req-3",
            None,
            None,
            None,
            None,
            "u-alice:req-3",
        ),
    ]
    assert rejects(con) == [
        (1, 3, "billing: evt.account.id: missing"),
        (
            1,
            5,
            "billing: no mapping applies (balance event: evt.type in "
            "(balance.debited, balance.credited))",
        ),
    ]
    assert con.execute("SELECT profile FROM sources").fetchall() == [("billing",)]


def test_user_mapping_reads_parquet_with_nested_columns(con, tmp_path: Path) -> None:
    mapping = write(
        tmp_path / "gw.toml",
        """
[[mapping]]
kind = "requests"
[mapping.fields]
ts = "$.at"
request_id = "$.req.id"
user_id = "$.req.caller.account"
status = "$.resp.code"
input_tokens = "$.usage.in"
output_tokens = "$.usage.out"
""",
    )
    table = pa.table(
        {
            "at": pa.array(
                [datetime(2025, 6, 1, 10), datetime(2025, 6, 1, 11)], pa.timestamp("us")
            ),
            "req": [
                {"id": "a", "caller": {"account": "u1"}},
                {"id": "b", "caller": {"account": None}},
            ],
            "resp": [{"code": 200}, {"code": 503}],
            "usage": [{"in": 10, "out": 3}, {"in": 0, "out": 0}],
        }
    )
    pq.write_table(table, tmp_path / "gateway.parquet")
    report = ingest(con, [tmp_path / "gateway.parquet"], profile=str(mapping))
    assert (report.files[0].rows_loaded, report.files[0].rows_rejected) == (1, 1)
    assert [r[1:5] for r in requests(con)] == [(1, T(2025, 6, 1, 10), "a", "u1")]
    assert rejects(con) == [(1, 2, "gw: req.caller.account: missing")]


#: a ledger mapping over Parquet columns of every numeric type
NUMBERS_MAPPING = """
[[mapping]]
kind = "ledger"
[mapping.fields]
entry_id = "$.id"
ts = "$.at"
user_id = "$.who"
kind = { const = "adjustment" }
amount = ["$.dbl", "$.dec9", "$.dec38"]
balance_after = "$.nest.bal"
input_tokens = "$.big"
"""


def test_parquet_numbers_through_a_profile_are_read_as_duckdb_holds_them(
    con, tmp_path: Path
) -> None:
    """A DOUBLE is a number read through a double (its shortest text; past 1e9
    too large to be exact); a DECIMAL, a BIGINT and a number inside a struct are
    read as written, never through a double: 0.1000000000000000055 keeps its
    digits (and is rejected for them), 1234567890.5 as DECIMAL is exact."""
    mapping = write(tmp_path / "n.toml", NUMBERS_MAPPING)
    path = numbers_parquet(tmp_path / "numbers.parquet")
    report = ingest(con, [path], profile=str(mapping))
    assert (report.files[0].rows_loaded, report.files[0].rows_rejected) == (3, 5)
    assert [(r[2], r[6], r[9], r[12]) for r in ledger(con)] == [
        ("a", D("2"), 12345678901234567, D("0.25")),
        ("d", D("1.5"), None, None),
        ("f", D("1234567890.5"), None, D("0.5")),
    ]
    amount, places = "n: dbl or dec9 or dec38", "add round = 6 to amount to round it half-up"
    assert con.execute("SELECT line, reason, raw FROM rejects ORDER BY line").fetchall() == [
        (
            2,
            f"{amount}: more than 6 decimal places: '1e-7'; {places} to 6 places",
            _raw("b", dbl="1e-7"),
        ),
        (
            3,
            f"{amount}: too large for an exact binary number; quote it as a string",
            _raw("c", dbl="1234567890.5"),
        ),
        (
            5,
            f"{amount}: more than 6 decimal places: '0.1000000000000000055'; {places} to 6 places",
            _raw("e", dec38="0.1000000000000000055"),
        ),
        (7, f"{amount}: missing", _raw("g")),
        (
            8,
            "n: nest.bal: more than 6 decimal places: '0.1234567'; add round = 6 to "
            "balance_after to round it half-up to 6 places",
            _raw("h", dbl="3.0", nest='{"bal":0.1234567}'),
        ),
    ]


def numbers_parquet(path: Path, nested_decimal: bool = True) -> Path:
    """Ledger rows of every numeric type (test above), written by DuckDB; without
    ``nested_decimal``, the struct holds the balance as text (which Spark reads)."""
    none = "NULL::DOUBLE, NULL::DECIMAL(9,2), NULL::DECIMAL(38,19)"
    bal = (lambda v: v) if nested_decimal else (lambda v: f"'{v}'")
    rows = [
        f"('a', 2.0::DOUBLE, NULL::DECIMAL(9,2), NULL::DECIMAL(38,19), "
        f"{{'bal': {bal('0.25')}}}, 12345678901234567::BIGINT)",
        "('b', 1e-7, NULL, NULL, NULL, NULL)",
        "('c', 1234567890.5, NULL, NULL, NULL, NULL)",
        "('d', NULL, 1.50, NULL, NULL, NULL)",
        "('e', NULL, NULL, 0.1000000000000000055, NULL, NULL)",
        f"('f', NULL, NULL, 1234567890.5, {{'bal': {bal('0.5')}}}, NULL)",
        f"('g', {none}, NULL, NULL)",
        f"('h', 3.0, NULL, NULL, {{'bal': {bal('0.1234567')}}}, NULL)",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    duckdb.execute(
        "COPY (SELECT id, TIMESTAMP '2025-06-01 10:00:00' AS at, 'u1' AS who, dbl, dec9, "
        f"dec38, nest, big FROM (VALUES {', '.join(rows)}) "
        "t(id, dbl, dec9, dec38, nest, big)) "
        f"TO '{path}' (FORMAT parquet)"
    )
    return path


def _raw(key: str, dbl: str = "null", dec38: str = "null", nest: str = "null") -> str:
    """A row of numbers.parquet as DuckDB's to_json writes it."""
    return (
        f'{{"id":"{key}","at":"2025-06-01 10:00:00","who":"u1","dbl":{dbl},"dec9":null,'
        f'"dec38":{dec38},"nest":{nest},"big":null}}'
    )


# --------------------------------------------------------------------------- end to end


PRICES = (
    "model,currency,input_per_mtok,cached_per_mtok,output_per_mtok,effective_from\n"
    "gpt-4o,usd,2.50,1.25,10.00,2025-01-01T00:00:00Z\n"
)


def spend_log(rid: str, user: str, ts: str, inp: int, cached: int, out: int) -> str:
    # what LiteLLM charges at the price list's rates, as the float it logs
    spend = (D(inp - cached) * D("2.5") + D(cached) * D("1.25") + D(out) * 10) / 1_000_000
    return (
        json.dumps(
            {
                "request_id": rid,
                "call_type": "acompletion",
                "api_key": "k",
                "spend": float(spend),
                "prompt_tokens": inp,
                "completion_tokens": out,
                "startTime": ts,
                "model": "gpt-4o",
                "user": user,
                "metadata": {"usage_object": {"prompt_tokens_details": {"cached_tokens": cached}}},
                "status": "success",
            }
        )
        + "\n"
    )


def test_profile_loaded_data_flows_through_detect_and_finds_a_duplicate(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    write(logs / "prices.csv", PRICES)
    spend = []
    for i in range(12):
        user = ("u-alice", "u-bob", "u-carol")[i % 3]
        spend.append(
            spend_log(
                f"chatcmpl-{i:02d}",
                user,
                f"2025-06-01T{9 + i // 3:02d}:{(i * 7) % 60:02d}:00Z",
                1200 + 10 * i,
                512,
                100 + i,
            )
        )
    write(logs / "litellm" / "spend.jsonl", "".join(spend))
    # the billing service replayed one deduction: a second charge for chatcmpl-04
    write(tmp_path / "billing.toml", BILLING_TOML)
    write(
        logs / "billing" / "events.jsonl",
        "".join(
            [
                billing_event("evt_topup", 1748764800000, "u-bob", "balance.credited", "5000000"),
                # chatcmpl-04: (728 x 2.50 + 512 x 1.25 + 104 x 10.00) / 1M = 0.0035
                billing_event(
                    "evt_replay", 1748775600000, "u-bob", "balance.debited", "-3500", "chatcmpl-04"
                ),
            ]
        ),
    )
    con = db.connect(tmp_path / "e2e.duckdb")
    try:
        ingest(con, [logs / "prices.csv"])
        ingest(con, [logs / "litellm"], profile="litellm")
        ingest(con, [logs / "billing"], profile=tmp_path / "billing.toml")
        assert con.execute("SELECT count(*) FROM rejects").fetchone() == (0,)
        result = detect(con, load_pack())
        found = {d.name: d.rows for d in result.detectors if d.rows}
        dups = con.execute(
            "SELECT user_id, request_id, entry_id, amount FROM findings "
            "WHERE detector = 'duplicate_charges'"
        ).fetchall()
        mismatches = con.execute(
            "SELECT count(*) FROM findings WHERE detector = 'billing_mismatch'"
        ).fetchone()
    finally:
        con.close()
    # LiteLLM's own charge (entry chatcmpl-04) is the legitimate one; the replay is excess
    assert dups == [("u-bob", "chatcmpl-04", "evt_replay", D("0.0035"))]
    assert mismatches == (0,)  # LiteLLM's spend agrees with the price list everywhere
    assert "unbilled_requests" not in found


# --------------------------------------------------------------------------- ingest rules


def test_reingest_force_and_strict_hold_under_a_profile(con, tmp_path: Path) -> None:
    f = FIX / "litellm_spendlogs.jsonl"
    ingest(con, [f], profile="litellm")
    again = ingest(con, [f], profile="litellm")
    assert again.files[0].status == "skipped"
    forced = ingest(con, [f], profile="litellm", force=True)
    assert forced.files[0].status == "replaced"
    assert con.execute(
        "SELECT count(*), count(DISTINCT source_id) FROM requests_all"
    ).fetchone() == (5, 1)
    assert con.execute("SELECT count(*) FROM rejects").fetchone() == (3,)
    with pytest.raises(RejectedRowsError):
        ingest(con, [FIX / "openmeter_events.jsonl"], profile="openmeter", strict=True)
    assert con.execute("SELECT count(*) FROM sources").fetchone() == (1,)


# --------------------------------------------------------------------------- errors


def test_unknown_profile_exits_1_and_lists_the_builtins(tmp_path: Path, cli: Cli) -> None:
    res = cli(
        "ingest",
        str(FIX / "lago.jsonl"),
        "--profile",
        "chargebee",
        "--db",
        str(tmp_path / "x.duckdb"),
    )
    assert res.code == 1
    err = res.stderr
    assert "unknown profile 'chargebee'" in err
    assert "lago, litellm, openai-usage, openmeter, stripe" in err
    assert not (tmp_path / "x.duckdb").exists()


def test_mapping_file_with_an_unknown_key_names_file_and_key(tmp_path: Path, cli: Cli) -> None:
    bad = write(
        tmp_path / "bad.toml",
        BILLING_TOML.replace('scale = "0.000001" }', 'scael = "0.000001" }', 1),
    )
    with pytest.raises(ProfileError) as err:
        profiles.resolve(str(bad))
    assert str(err.value) == (
        f"{bad}: mapping[1].fields.amount.scael: unknown key (expected "
        "one of path, const, template, map, default, scale, minor_units, "
        "negate, round, epoch, hint)"
    )
    res = cli(
        "ingest", str(FIX / "lago.jsonl"), "--profile", str(bad), "--db", str(tmp_path / "x.duckdb")
    )
    assert res.code == 1 and "scael: unknown key" in res.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[mapping]]\nkind = "requests"\n[mapping.fields]\nts = "$.t"\n',
            "mapping[1].fields: required field(s) request_id, user_id, status of requests not mapped",
        ),
        (
            '[[mapping]]\nkind = "ledger"\n[mapping.fields]\nwho = "$.u"\n',
            "mapping[1].fields.who: not a field of ledger",
        ),
        (
            '[[mapping]]\nkind = "ledger"\n[mapping.fields]\namount = { path = "$.a", scale = 0.01 }\n',
            'mapping[1].fields.amount.scale: write decimal numbers as strings ("0.01")',
        ),
        (
            '[[mapping]]\nkind = "ledger"\n[mapping.fields]\namount = { path = "$.a", scale = "0.3" }\n',
            "scale is a power of ten",
        ),
        (
            '[[mapping]]\nkind = "requests"\n[mapping.fields]\nts = "startTime"\n',
            "is not a JSON path",
        ),
        (
            '[[mapping]]\nkind = "requests"\n[mapping.fields]\n'
            'user_id = { path = "$.u", negate = true }\n',
            "mapping[1].fields.user_id.negate: only for money fields",
        ),
        ('[[mapping]]\nkind = "invoices"\n', "mapping[1].kind: 'invoices' is not a kind"),
        ('name = "x"\n', "no [[mapping]]"),
        ("kind = \n", "not valid TOML"),
    ],
)
def test_bad_mapping_files_say_what_and_where(tmp_path: Path, text: str, message: str) -> None:
    f = write(tmp_path / "m.toml", text)
    with pytest.raises(ProfileError, match=None) as err:
        profiles.load_file(f)
    assert str(err.value).startswith(f"{f}: ") and message in str(err.value), str(err.value)


def test_a_missing_source_field_is_reported_with_file_and_line(tmp_path: Path, cli: Cli) -> None:
    db_file = str(tmp_path / "x.duckdb")
    f = FIX / "litellm_spendlogs.jsonl"
    res = cli("ingest", str(f), "--profile", "litellm", "--db", db_file)
    assert res.code == 0, res.stderr
    assert f"first rejected row: {f}:7: litellm: startTime: missing" in res.stderr
    assert "profile litellm" in res.stderr
    out = cli("sources", "--rejects", "--db", db_file, "--format", "jsonl")
    first = json.loads(out.stdout.splitlines()[0])
    assert (first["line"], first["reason"]) == (7, "litellm: startTime: missing")
    strict = cli(
        "ingest", str(FIX / "lago.jsonl"), "--profile", "lago", "--strict", "--db", db_file
    )
    assert strict.code == 3


def test_profiles_command_lists_every_builtin(tmp_path: Path, cli: Cli) -> None:
    res = cli("profiles", "--format", "json")
    assert res.code == 0, res.stderr
    got = json.loads(res.stdout)
    assert (
        [p["name"] for p in got]
        == profiles.builtin_names()
        == ["lago", "litellm", "openai-usage", "openmeter", "stripe", "stripe-meter"]
    )
    assert {p["name"]: p["kinds"] for p in got}["stripe"] == "ledger"
    assert all(p["description"] and p["export"] for p in got)
    assert cli("profiles", "--help").code == 0


def test_every_builtin_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in profiles.builtin_names():
        assert f"--profile {name}" in readme, name


def test_lines_that_are_not_objects_are_rejected_and_counted(con, tmp_path: Path) -> None:
    good = (FIX / "openmeter_events.jsonl").read_text().splitlines()[1]
    f = write(
        tmp_path / "events.jsonl",
        "\n".join(["[1, 2]", '"text"', "null", "\t" + good, "  ", '{"id": 1']) + "\n",
    )
    report = ingest(con, [f], profile="openmeter")
    assert (
        report.files[0].rows_loaded,
        report.files[0].rows_rejected,
        report.files[0].blank_lines,
    ) == (1, 4, 1)
    assert rejects(con) == [
        (1, 1, "openmeter: not a JSON object: a JSON array"),
        (1, 2, "openmeter: not a JSON object: a JSON string"),
        (1, 3, "openmeter: not a JSON object: a JSON null"),
        (1, 6, "openmeter: malformed JSON"),
    ]


# --------------------------------------------------------------------------- exact numbers

EXACT_TOML = """
[[mapping]]
kind = "ledger"

[mapping.fields]
entry_id = "$.id"
ts = "$.ts"
user_id = "$.user"
kind = { const = "topup" }
amount = "$.money.amount"
"""


def test_money_json_numbers_are_read_as_written_not_through_a_double(con, tmp_path) -> None:
    """A JSON number is read from its text (DuckDB's JSON functions give it back
    through a double: 0.1000000000000000055 would read as 0.1, and 1234567890.123456
    could not be trusted), whatever the spelling of its key."""
    mapping = write(tmp_path / "exact.toml", EXACT_TOML)
    ts = '"ts":"2025-06-01T10:00:00Z","user":"u1"'
    logs = write(
        tmp_path / "money.jsonl",
        f'{{"id":"e1",{ts},"money":{{"amount":0.1000000000000000055}}}}\n'
        f'{{"id":"e2",{ts},"money":{{"amount":1234567890.123456}}}}\n'
        f'{{"id":"e3",{ts},"money":{{"amount":12345678901234.123456}}}}\n'
        # the key spelled with \\u escapes: still the amount, still exact
        f'{{"id":"e4",{ts},"money":{{"\\u0061mount":999999999.999999}}}}\n'
        f'{{"id":"e5",{ts},"money":{{"amount":2.5e-7}}}}\n',
    )
    ingest(con, [logs], profile=mapping)
    assert con.execute("SELECT line, amount FROM ledger_all ORDER BY line").fetchall() == [
        (2, D("1234567890.123456")),
        (4, D("999999999.999999")),
    ]
    round_it = "; add round = 6 to amount to round it half-up to 6 places"
    assert rejects(con) == [
        (
            1,
            1,
            f"exact: money.amount: more than 6 decimal places: '0.1000000000000000055'{round_it}",
        ),
        (1, 3, "exact: money.amount: out of range: '12345678901234.123456'"),
        (1, 5, f"exact: money.amount: more than 6 decimal places: '2.5e-7'{round_it}"),
    ]
