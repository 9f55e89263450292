"""The conformance corpus: every file of tests/data/real-formats/ (copied from
../shared/real-formats/, each folder with its SOURCE.md) either loads with
exactly the canonical rows its SOURCE.md implies, or is rejected with a reason
that tells the user what to do.

The expected values are checked by hand against the files and SOURCE.md: ids,
users, UTC timestamps, tokens, and amounts to the last decimal (floats rounded
half-up to 6 places where the profile says so). Every loaded row must be the
canonical row of its id: a file holds no id twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from tests.conftest import ROOT, Cli, write
from warroom import db, profiles
from warroom.errors import ProfileError
from warroom.ingest import ingest
from warroom.model import Kind

CORPUS = ROOT / "tests" / "data" / "real-formats"
D = Decimal
T = datetime

#: (line, ts, request_id, user_id, model, status, error_code, input, cached, output)
Req = tuple[int, datetime, str, str, str | None, int, str | None, int, int, int]
#: (line, entry_id, ts, user_id, kind, amount, currency, request_id, balance_after)
Led = tuple[int, str, datetime, str, str, Decimal, str, str | None, Decimal | None]


@dataclass(frozen=True)
class Expect:
    file: str  # vendor/name under CORPUS
    profile: str
    counts: tuple[int, int]  # rows loaded, rows rejected (as `sources` records them)
    requests: tuple[Req, ...] = ()
    ledger: tuple[Led, ...] = ()
    rejects: tuple[tuple[int, str], ...] = ()  # (line, reason)
    user_from: str | None = None


# --------------------------------------------------------------------------- LiteLLM

_A = "chatcmpl-2283081b-dc89-41f6-93e6-d4f914774027"
_B = "chatcmpl-9ZKMURhVYSi9D6r6PJ9vLcayIK0Vm"
_C = "chatcmpl-BfA1c2d3e4f5g6h7i8j9k0LmNoPq"
_F429 = "6c1d3f6e-5e0b-4a57-8d7e-0d3b8d3f2a11"
_FTIMEOUT = "0b7f2d9c-1f44-4c1e-b3a0-7e2c9d5a6b22"
_HIT = _A + "_cache_hit1737710446.85"


def _litellm_requests(first: int, step: int = 1) -> tuple[Req, ...]:
    """The six spend-log rows, at lines first, first + step, ..."""
    rows = [
        (T(2025, 1, 24, 9, 20, 46, 847000), _A, "u-alice", "gpt-4o", 200, None, 10, 0, 20),
        # user "" -> the caller's end user
        (T(2025, 1, 24, 9, 21, 3, 2000), _B, "cust-42", "gpt-4o-mini", 200, None, 15, 0, 3),
        # usage_object's prompt_tokens_details.cached_tokens
        (T(2025, 1, 24, 9, 22, 10, 500000), _C, "u-alice", "gpt-4o", 200, None, 1200, 1024, 100),
        # failure: error_code "429", error_class RateLimitError
        (T(2025, 1, 24, 9, 23), _F429, "u-alice", "gpt-4o", 429, "rate_limit_exceeded", 0, 0, 0),
        # failure: error_code "" (an exception without a status) -> status "failure" -> 500
        (T(2025, 1, 24, 9, 24), _FTIMEOUT, "u-alice", "gpt-4o", 500, "Timeout", 0, 0, 0),
        # a cache hit: a request, spend 0, no charge
        (T(2025, 1, 24, 9, 20, 46, 850000), _HIT, "u-alice", "gpt-4o", 200, None, 10, 0, 20),
    ]
    return tuple((first + i * step, *r) for i, r in enumerate(rows))  # type: ignore[misc]


def _litellm_ledger(lines: tuple[int, int, int]) -> tuple[Led, ...]:
    # spend 0.00022500000000000002 -> 0.000225; 2.25e-05 -> 0.000023 (half-up); 0.00272
    return (
        (lines[0], _A, T(2025, 1, 24, 9, 20, 46, 847000), "u-alice", "charge", D("-0.000225"),
         "usd", _A, None),
        (lines[1], _B, T(2025, 1, 24, 9, 21, 3, 2000), "cust-42", "charge", D("-0.000023"),
         "usd", _B, None),
        (lines[2], _C, T(2025, 1, 24, 9, 22, 10, 500000), "u-alice", "charge", D("-0.00272"),
         "usd", _C, None),
    )  # fmt: skip


_NO_KEYS = (
    "litellm: user or end_user or team_id or api_key: missing (a proxy without virtual "
    "keys names no account: ingest with --user-from NAME, or --user-from '$.field' "
    "naming the field that holds the user)"
)

LITELLM = [
    # a proxy without virtual keys: no account can be named
    Expect("litellm/spend_logs_payload.json", "litellm", (0, 1), rejects=((1, _NO_KEYS),)),
    # ... unless the user says which one: a constant
    Expect(
        "litellm/spend_logs_payload.json",
        "litellm",
        (1, 0),
        requests=(
            (1, T(2025, 1, 24, 9, 20, 46, 847371), _A, "proxy", "gpt-4o", 200, None, 10, 0, 20),
        ),
        ledger=(
            (
                1,
                _A,
                T(2025, 1, 24, 9, 20, 46, 847371),
                "proxy",
                "charge",
                D("-0.000225"),
                "usd",
                _A,
                None,
            ),
        ),  # fmt: skip
        user_from="proxy",
    ),
    Expect(
        "litellm/spendlogs_psql_timestamp3.csv",
        "litellm",
        (6, 0),
        _litellm_requests(2),
        _litellm_ledger((2, 3, 4)),
    ),
    Expect(
        "litellm/spendlogs_psql_timestamptz.csv",
        "litellm",
        (6, 0),
        _litellm_requests(2),
        _litellm_ledger((2, 3, 4)),
    ),
    Expect(
        "litellm/spend_logs_api.json",
        "litellm",
        (6, 0),
        _litellm_requests(1),
        _litellm_ledger((1, 2, 3)),
    ),
    # the /spend/logs/v2 envelope: one document, its rows are the elements of data
    Expect(
        "litellm/spend_logs_v2_page.json",
        "litellm",
        (1, 0),
        _litellm_requests(1, 0),
        _litellm_ledger((1, 1, 1)),
    ),
]

# --------------------------------------------------------------------------- OpenAI

_U = "organization.usage.completions.result/"
_C0 = "organization.costs.result/"


def _usage(line: int, start: int, ts: datetime, tokens: tuple[int, int, int], tail: str) -> Req:
    rid = f"{_U}{start}/{tail}"
    return (line, ts, rid, "organization", None, 200, None, *tokens)


def _cost(line: int, start: int, ts: datetime, amount: str, tail: str = "//") -> Led:
    rid = f"{_C0}{start}/{tail}"
    return (line, rid, ts, "organization", "charge", D(amount), "usd", rid, None)


_COOKBOOK = (
    (1736616660, T(2025, 1, 11, 17, 31), (141201, 0, 9756)),  # unaligned first bucket
    (1736640000, T(2025, 1, 12), (45949, 0, 282)),
    (1736726400, T(2025, 1, 13), (3718360, 76544, 97756)),
)
_ALL_NULL = "/" * 8  # project, user, key, model, batch, service tier, size, source

OPENAI = [
    Expect(
        "openai-usage/usage_completions_reference_page.json",
        "openai-usage",
        (1, 0),
        requests=(_usage(1, 1730419200, T(2024, 11, 1), (1000, 800, 500), _ALL_NULL[1:]),),
    ),
    Expect(
        "openai-usage/usage_cookbook_pages.jsonl",
        "openai-usage",
        (2, 0),
        requests=tuple(
            _usage(line, s, ts, tok, _ALL_NULL[1:])
            for line, (s, ts, tok) in zip((1, 1, 2), _COOKBOOK, strict=True)
        ),
    ),
    # the cookbook's get_data() saves a list of buckets: each element is a bucket
    # (the last one has no results: it loads, with no rows)
    Expect(
        "openai-usage/usage_cookbook_bucket_list.json",
        "openai-usage",
        (4, 0),
        requests=tuple(
            _usage(line, s, ts, tok, _ALL_NULL[1:])
            for line, (s, ts, tok) in zip((1, 2, 3), _COOKBOOK, strict=True)
        ),
    ),
    Expect(
        "openai-usage/costs_cookbook_pages.jsonl",
        "openai-usage",
        (1, 0),
        ledger=(
            _cost(1, 1736553600, T(2025, 1, 11), "-0.130804"),  # 0.13080438340307526
            _cost(1, 1736640000, T(2025, 1, 12), "-0.122704"),  # 0.12270423340307525
            _cost(1, 1736726400, T(2025, 1, 13), "-9.888144"),  # 9.888144383403077
            _cost(1, 1736985600, T(2025, 1, 16), "-0.009255"),  # 0.00925485477848094
        ),
    ),
    # grouped by model and service tier: flex and default are two results
    Expect(
        "openai-usage/usage_grouped_model_service_tier.json",
        "openai-usage",
        (1, 0),
        requests=(
            (
                1,
                T(2025, 6, 19),
                f"{_U}1750291200////o3-2025-04-16//default//",
                "organization",
                "o3-2025-04-16",
                200,
                None,
                400000,
                0,
                0,
            ),
            (
                1,
                T(2025, 6, 19),
                f"{_U}1750291200////o3-2025-04-16//flex//",
                "organization",
                "o3-2025-04-16",
                200,
                None,
                1600000,
                0,
                0,
            ),
        ),  # fmt: skip
    ),
    # two cost results that differ only by API key: two charges
    Expect(
        "openai-usage/costs_grouped_project_line_item_api_key.json",
        "openai-usage",
        (1, 0),
        ledger=(
            (
                1,
                f"{_C0}1750291200/proj_abc/gpt-4o-2024-08-06, input/key_AAA",
                T(2025, 6, 19),
                "proj_abc",
                "charge",
                D("-1.25"),
                "usd",
                f"{_C0}1750291200/proj_abc/gpt-4o-2024-08-06, input/key_AAA",
                None,
            ),
            (
                1,
                f"{_C0}1750291200/proj_abc/gpt-4o-2024-08-06, input/key_BBB",
                T(2025, 6, 19),
                "proj_abc",
                "charge",
                D("-0.5"),
                "usd",
                f"{_C0}1750291200/proj_abc/gpt-4o-2024-08-06, input/key_BBB",
                None,
            ),
        ),  # fmt: skip
    ),
]

# --------------------------------------------------------------------------- OpenMeter

_NO_TIME = (
    "openmeter: a CloudEvent without time (OpenMeter stamps the time it receives it): "
    "export the stored events (GET /api/v1/events or /api/v2/events) instead"
)
_V1 = (
    (T(2023, 1, 1, 1, 1, 1, 1000), "service-name/5c10fade-1c9e-4d6c-8275-c52c36731d3c",
     "customer-id", "gpt4-turbo", 200, None, 123456, 0, 0),
    (T(2023, 1, 1, 1, 1, 1, 1000), "service-name/7e4b2a10-3c1d-4f5e-9a8b-1c2d3e4f5a6c",
     "customer-id", "gpt4-turbo", 200, None, 0, 0, 4096),
    (T(2025, 6, 7, 16, 0, 0, 500000), "quickstart/quickstart-curl-1", "quickstart-curl", None,
     200, None, 0, 0, 0),
)  # fmt: skip

OPENMETER = [
    Expect(
        "openmeter/events_as_sent.jsonl",
        "openmeter",
        (5, 1),
        requests=(
            (
                2,
                T(2023, 1, 1, 0, 0, 0, 1000),
                "service-0/00001",
                "customer-1",
                None,
                200,
                None,
                0,
                0,
                0,
            ),
            (
                3,
                T(2023, 1, 1, 0, 0, 0, 1000),
                "service-0/00002",
                "customer-1",
                None,
                200,
                None,
                0,
                0,
                0,
            ),
            (
                4,
                T(2025, 6, 7, 16, 2, 34, 123456),
                "my-app/7e4b2a10-3c1d-4f5e-9a8b-1c2d3e4f5a6b",
                "customer-1",
                "gpt-4o",
                200,
                None,
                100,
                0,
                0,
            ),
            # 18:02:34.123456789+02:00: UTC, to the microsecond
            (
                5,
                T(2025, 6, 7, 16, 2, 34, 123456),
                "demo-org-seeder/b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e",
                "demo-subject-17",
                "gpt-4o-mini",
                200,
                None,
                0,
                0,
                731,
            ),
            (
                6,
                T(2025, 6, 7, 16, 5, 0, 250113),
                f"litellm-proxy/{_B}",
                "u-alice",
                "gpt-4o",
                200,
                None,
                1200,
                0,
                100,
            ),
        ),  # fmt: skip
        rejects=((1, _NO_TIME),),
    ),
    Expect(
        "openmeter/list_events_v1.json",
        "openmeter",
        (3, 1),
        requests=tuple((i + 1, *r) for i, r in enumerate(_V1)),  # type: ignore[misc]
        rejects=(
            (
                4,
                "openmeter: event.data.prompt_tokens or event.data.input_tokens or "
                "event.data.tokens: not an integer: 'abc'",
            ),
        ),
    ),
    Expect(
        "openmeter/list_events_v2_page.json",
        "openmeter",
        (1, 0),
        requests=tuple((1, *r) for r in _V1),  # type: ignore[misc]
    ),
]

# --------------------------------------------------------------------------- Lago

_WALLET = "1a901a90-1a90-1a90-1a90-1a901a901a90"
_WT = "1a901a90-1a90-1a90-1a90-1a901a90000"
_SETTLED = (
    (f"{_WT}1", T(2022, 4, 29, 8, 59, 51), "topup", D("100")),
    (f"{_WT}2", T(2022, 4, 29, 9, 0), "grant", D("50")),
    (f"{_WT}3", T(2022, 5, 1), "adjustment", D("-12.5")),
)
_PENDING = (
    "lago: status pending: a wallet transaction that is not settled changed no balance "
    "(it loads once settled)"
)
_NO_TS = (
    "lago: an event as sent to Lago has no timestamp (Lago stamps the time it receives "
    "it): export the events from Lago (GET /api/v1/events) instead"
)


def _wallet(lines: tuple[int, int, int]) -> tuple[Led, ...]:
    return tuple(
        (line, eid, ts, _WALLET, kind, amount, "credits", None, None)
        for line, (eid, ts, kind, amount) in zip(lines, _SETTLED, strict=True)
    )


LAGO = [
    Expect(
        "lago/events_page.json",
        "lago",
        (1, 0),
        requests=(
            (
                1,
                T(2022, 4, 29, 8, 59, 51, 123000),
                "transaction_1234567890",
                "sub_1234567890",
                None,
                200,
                None,
                0,
                0,
                0,
            ),
            (
                1,
                T(2025, 6, 7, 16, 2, 34, 123000),
                "4f6b0c5e-9d2a-4c1b-8e3f-7a6b5c4d3e2f",
                "cust-42",
                "gpt-4o",
                200,
                None,
                1200,
                0,
                100,
            ),
        ),  # fmt: skip
    ),
    Expect(
        "lago/litellm_callback_bodies.jsonl", "lago", (0, 2), rejects=((1, _NO_TS), (2, _NO_TS))
    ),
    Expect(
        "lago/wallet_transactions_page_settled_only.json",
        "lago",
        (1, 0),
        ledger=_wallet((1, 1, 1)),
    ),
    Expect(
        "lago/wallet_transactions.jsonl",
        "lago",
        (3, 1),
        ledger=_wallet((1, 2, 3)),
        rejects=((4, _PENDING),),
    ),
    # a pending transaction in a saved page is rejected alone: the settled ones load
    Expect(
        "lago/wallet_transactions_page.json",
        "lago",
        (1, 1),
        ledger=_wallet((1, 1, 1)),
        rejects=((1, _PENDING.replace("lago: ", "lago: record 4: ")),),
    ),
]

# --------------------------------------------------------------------------- Stripe

_REPORT_COLUMNS = (
    "stripe: the Dashboard's default itemized columns name no customer_id and no "
    "created_utc: download the report with the columns customer_id and created_utc "
    "(Dashboard: Reports > Balance > Download, Columns), or run the Reporting API's "
    "balance_change_from_activity.itemized.3 with them"
)
_NOT_A_CUSTOMER = (
    "stripe: a fee, payout, transfer or other row of your Stripe account's balance: no "
    "customer's balance changed"
)
_ACCOUNT_TXN = (
    "stripe: a balance transaction of your Stripe account names no customer: export the "
    "customers' balance transactions (GET /v1/customers/{id}/balance_transactions) or the "
    "itemized balance report with customer_id"
)
_ALL_ACTIVITY = (
    "stripe: the Dashboard's Balances 'All activity' export names no customer: download "
    "the itemized balance report (Reports > Balance) with the columns customer_id and "
    "created_utc"
)
_METER = (
    "stripe: a billing meter event is usage, not a balance change: read it with "
    "--profile stripe-meter"
)

STRIPE = [
    Expect(
        "stripe/customer_balance_transactions_list.json",
        "stripe",
        (1, 0),
        ledger=(
            # Stripe's -500 cents (a credit the customer holds) is +5.00 the customer holds
            (
                1,
                "cbtxn_1Pgc75B7WZ01zgkWgM0DfYYl",
                T(2009, 2, 13, 23, 31, 30),
                "cus_QXg1o8vcGmoR32",
                "adjustment",
                D("5"),
                "usd",
                None,
                D("5"),
            ),
        ),  # fmt: skip
    ),
    Expect(
        "stripe/itemized3_api_with_customer.csv",
        "stripe",
        (3, 1),
        ledger=(
            (
                2,
                "txn_3PgaxNB7WZ01zgkWEV3TLf40",
                T(2025, 6, 1, 9, 30),
                "cus_QXg1o8vcGmoR32",
                "topup",
                D("50"),
                "usd",
                None,
                None,
            ),
            (
                3,
                "txn_3PhbyOB7WZ01zgkWa1b2c3d4",
                T(2025, 6, 2, 15, 0),
                "cus_QXg1o8vcGmoR32",
                "adjustment",
                D("-12.34"),
                "usd",
                None,
                None,
            ),
            # gross is in major units: 1500 yen
            (
                5,
                "txn_3PhdBBB7WZ01zgkWjpy00001",
                T(2025, 6, 3, 11, 0),
                "cus_RaB2c3D4e5F6g7",
                "topup",
                D("1500"),
                "jpy",
                None,
                None,
            ),
        ),  # fmt: skip
        rejects=((4, _NOT_A_CUSTOMER),),
    ),
    Expect(
        "stripe/itemized3_dashboard_default.csv",
        "stripe",
        (0, 2),
        rejects=((2, _REPORT_COLUMNS), (3, _REPORT_COLUMNS)),
    ),
    Expect("stripe/balance_transactions_list.json", "stripe", (0, 1), rejects=((1, _ACCOUNT_TXN),)),
    Expect(
        "stripe/dashboard_all_activity.csv",
        "stripe",
        (0, 2),
        rejects=((2, _ALL_ACTIVITY), (3, _ALL_ACTIVITY)),
    ),
    Expect("stripe/billing_meter_events.json", "stripe", (0, 1), rejects=((1, _METER),)),
    # usage-based billing's own format: one request per meter event
    Expect(
        "stripe/billing_meter_events.json",
        "stripe-meter",
        (1, 0),
        requests=(
            (
                1,
                T(2009, 2, 13, 23, 31, 30),
                "1234-1234",
                "cus_123",
                "api_request",
                200,
                None,
                25,
                0,
                0,
            ),
        ),  # fmt: skip
    ),
]

# --------------------------------------------------------------------------- OpenRouter

_GEN = "gen-1771967973-0hZ8J5kY7qLMOKbPx0u3"
OPENROUTER = [
    # a user's own mapping file, written from the README alone
    Expect(
        "openrouter/generation_trick_question_bench.json",
        "openrouter/openrouter.toml",
        (1, 0),
        requests=(
            (
                1,
                T(2026, 2, 24, 21, 19, 33, 705000),
                _GEN,
                "2872617",
                "meta-llama/llama-4-scout-17b-16e-instruct",
                200,
                None,
                64,
                0,
                98,
            ),
        ),
        # total_cost 0.00003452, negated, round = 6 (half-up)
        ledger=(
            (
                1,
                _GEN,
                T(2026, 2, 24, 21, 19, 33, 705000),
                "2872617",
                "charge",
                D("-0.000035"),
                "usd",
                _GEN,
                None,
            ),
        ),
    ),  # fmt: skip
]

ALL = LITELLM + OPENAI + OPENMETER + LAGO + STRIPE + OPENROUTER


def _id(e: Expect) -> str:
    return f"{e.file}:{Path(e.profile).stem}" + (f":{e.user_from}" if e.user_from else "")


class _Loaded:
    """The corpus files loaded by one profile (and --user-from), one database per
    profile: each file's rows are told apart by their source."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.dbs: dict[tuple[str, str | None], tuple[duckdb.DuckDBPyConnection, dict[str, int]]]
        self.dbs = {}
        #: path -> (rows loaded, rows rejected) as `sources` records them
        self.counts: dict[str, tuple[int, int]] = {}

    def source(self, e: Expect) -> tuple[duckdb.DuckDBPyConnection, int, tuple[int, int]]:
        key = (e.profile, e.user_from)
        if key not in self.dbs:
            con = db.connect(self.tmp / f"{len(self.dbs)}.duckdb")
            spec = str(CORPUS / e.profile) if e.profile.endswith(".toml") else e.profile
            profile = profiles.resolve(spec)
            if e.user_from is not None:
                profile = profiles.with_user(profile, e.user_from)
            files = [x.file for x in ALL if (x.profile, x.user_from) == key]
            report = ingest(con, [CORPUS / f for f in files], profile=profile)
            ids = dict(con.execute("SELECT path, source_id FROM sources").fetchall())
            self.dbs[key] = con, {f: ids[str(CORPUS / f)] for f in files}
            self.counts.update(
                {str(r.path): (r.rows_loaded, r.rows_rejected) for r in report.files}
            )
        con, ids = self.dbs[key]
        return con, ids[e.file], self.counts[str(CORPUS / e.file)]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Loaded]:
    cache = _Loaded(tmp_path_factory.mktemp("corpus"))
    yield cache
    for con, _ in cache.dbs.values():
        con.close()


@pytest.mark.parametrize("expect", ALL, ids=[_id(e) for e in ALL])
def test_corpus_file_loads_exactly_or_says_what_to_do(expect: Expect, loaded: _Loaded) -> None:
    con, source, counts = loaded.source(expect)
    got_requests = con.execute(
        "SELECT line, ts, request_id, user_id, model, status, error_code, input_tokens, "
        "cached_tokens, output_tokens FROM requests_all WHERE source_id = ? "
        "ORDER BY line, request_id",
        [source],
    ).fetchall()
    got_ledger = con.execute(
        "SELECT line, entry_id, ts, user_id, kind, amount, currency, request_id, "
        "balance_after FROM ledger_all WHERE source_id = ? ORDER BY line, entry_id",
        [source],
    ).fetchall()
    got_rejects = con.execute(
        "SELECT line, reason FROM rejects WHERE source_id = ? ORDER BY line", [source]
    ).fetchall()
    # a file holds no id twice (its rows are distinct requests and charges)
    repeated = con.execute(
        "SELECT (SELECT count(*) - count(DISTINCT request_id) FROM requests_all "
        "WHERE source_id = $s) + (SELECT count(*) - count(DISTINCT entry_id) FROM ledger_all "
        "WHERE source_id = $s)",
        {"s": source},
    ).fetchone()
    assert got_requests == sorted(expect.requests, key=lambda r: (r[0], r[2]))
    assert got_ledger == sorted(expect.ledger, key=lambda r: (r[0], r[1]))
    assert got_rejects == list(expect.rejects)
    assert counts == expect.counts
    assert repeated == (0,)


def test_every_corpus_file_has_a_case() -> None:
    files = {
        str(p.relative_to(CORPUS))
        for p in CORPUS.rglob("*")
        if p.is_file() and p.suffix in (".json", ".jsonl", ".csv")
    }
    assert files == {e.file for e in ALL}
    assert all((CORPUS / d / "SOURCE.md").is_file() for d in {Path(f).parent for f in files})


# --------------------------------------------------------------------------- the defects, one by one


def test_an_id_repeated_inside_one_saved_page_is_canonical_once(tmp_path: Path) -> None:
    """Every element of a saved page has the same line: the first element is the
    canonical row of its id, as the first line would be."""
    page = json.loads((CORPUS / "lago" / "events_page.json").read_text())
    first, second = page["events"]
    second["transaction_id"] = first["transaction_id"]  # a retried send, listed twice
    path = write(tmp_path / "events.json", json.dumps(page, indent=2))
    con = db.connect(tmp_path / "c.duckdb")
    try:
        ingest(con, [path], profile="lago")
        all_rows = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE canonical) FROM requests_all"
        ).fetchone()
        canonical = con.execute("SELECT request_id, user_id FROM requests").fetchall()
    finally:
        con.close()
    assert all_rows == (2, 1)
    assert canonical == [("transaction_1234567890", "sub_1234567890")]


def test_an_id_repeated_inside_one_page_is_re_elected_once(tmp_path: Path) -> None:
    """The file that held the canonical row is loaded again (--force) without that
    row (--kind ledger): the id's rows in the page that repeats it elect one, not
    both."""
    page = json.loads((CORPUS / "lago" / "events_page.json").read_text())
    first = write(tmp_path / "a.json", json.dumps({"events": page["events"][:1]}))
    page["events"][1]["transaction_id"] = page["events"][0]["transaction_id"]
    twice = write(tmp_path / "b.json", json.dumps(page))
    con = db.connect(tmp_path / "c.duckdb")
    try:
        ingest(con, [first, twice], profile="lago")
        ingest(con, [first], profile="lago", kind=Kind.ledger, force=True)
        got = con.execute(
            "SELECT count(*) FROM requests WHERE request_id = 'transaction_1234567890'"
        ).fetchone()
    finally:
        con.close()
    assert got == (1,)


def test_user_from_is_a_cli_option_of_ingest(tmp_path: Path, cli: Cli) -> None:
    payload = str(CORPUS / "litellm" / "spend_logs_payload.json")
    dbf = str(tmp_path / "x.duckdb")
    res = cli("ingest", payload, "--profile", "litellm", "--user-from", "$.session_id", "--db", dbf)
    assert res.code == 0, res.stderr
    got = cli("sql", "SELECT user_id FROM requests", "--db", dbf, "-f", "csv")
    assert got.stdout.decode().splitlines() == ['"user_id"', '"1234567890"']
    res = cli("ingest", payload, "--user-from", "proxy", "--db", str(tmp_path / "y.duckdb"))
    assert res.code == 1
    assert res.stderr.strip() == "error: --user-from applies to a --profile: name the profile too"


def test_a_bare_string_where_a_path_belongs_suggests_const() -> None:
    naive = CORPUS / "openrouter" / "openrouter_naive.toml"
    with pytest.raises(ProfileError) as err:
        profiles.resolve(str(naive))
    assert str(err.value) == (
        f"{naive}: mapping[2].fields.kind: 'charge' is not a JSON path (a path starts "
        'with $, e.g. $.user.id); for a fixed value write kind = { const = "charge" }'
    )


def test_too_many_decimal_places_after_negate_show_the_source_and_suggest_round(
    tmp_path: Path,
) -> None:
    """The second attempt of SOURCE.md: const fixed, no ``round``."""
    text = (CORPUS / "openrouter" / "openrouter.toml").read_text()
    second = write(tmp_path / "openrouter.toml", text.replace(", round = 6", ""))
    con = db.connect(tmp_path / "c.duckdb")
    try:
        report = ingest(
            con, [CORPUS / "openrouter" / "generation_trick_question_bench.json"], profile=second
        )
        got = con.execute("SELECT line, reason FROM rejects").fetchall()
    finally:
        con.close()
    assert (report.files[0].rows_loaded, report.files[0].rows_rejected) == (0, 1)
    assert got == [
        (
            1,
            "openrouter: data.total_cost: more than 6 decimal places: '0.00003452' "
            "(after negate: '-0.00003452'); add round = 6 to amount to round it half-up "
            "to 6 places",
        )
    ]


@pytest.mark.slow  # runs the whole pack: make slow / CI
def test_an_export_goes_straight_to_investigate(tmp_path: Path, cli: Cli) -> None:
    """A new user's path: the LiteLLM export, its profile, one command. The cache
    hit (a successful request with spend 0) is the one finding."""
    out = tmp_path / "incident"
    res = cli(
        "investigate",
        str(CORPUS / "litellm" / "spendlogs_psql_timestamp3.csv"),
        "--profile",
        "litellm",
        "--out-dir",
        str(out),
    )
    assert res.code == 0, res.stderr
    assert res.stdout == b""
    con = duckdb.connect(str(out / "warroom.duckdb"), read_only=True)
    try:
        found = con.execute("SELECT detector, request_id FROM findings").fetchall()
    finally:
        con.close()
    assert found == [("unbilled_requests", _HIT)]
    assert (out / "report.md").is_file()


def test_a_page_with_a_rejected_element_counts_as_loaded_and_its_reject(tmp_path: Path) -> None:
    """rows_loaded: rows of which something loaded (an empty page too); rows_rejected:
    the rejects written (an element, or a row); blank lines from the rows left."""
    page = (
        '{"object":"page","data":[{"object":"bucket","start_time":1,"results":['
        '{"object":"organization.costs.result","amount":{"value":0.5,"currency":"usd"}},'
        '{"object":"weird","x":0.1000000000000000055}]}]}'
    )
    path = write(tmp_path / "costs.jsonl", f'{page}\n\n{{"object":"page","data":[]}}\nnope\n')
    con = db.connect(tmp_path / "c.duckdb")
    try:
        report = ingest(con, [path], profile="openai-usage")
        got = con.execute("SELECT line, raw FROM rejects ORDER BY line").fetchall()
        amounts = con.execute("SELECT line, amount FROM ledger_all").fetchall()
    finally:
        con.close()
    f = report.files[0]
    assert (f.rows_loaded, f.rows_rejected, f.blank_lines) == (2, 2, 1)
    # the element's own text, its number as written
    assert got == [(1, '{"object":"weird","x":0.1000000000000000055}'), (4, "nope")]
    assert amounts == [(1, D("-0.5"))]
