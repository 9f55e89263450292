"""Credits v2 (DESIGN.md sections 4 and 7): rounding, the incident id, what the policy
accepts, and the export a refund job and a support team consume.

The amounts of each rule at its edges are hand-computed cases in tests/cases/impact.yml;
these tests pin what is not a row of impact.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.test_fixtures import charge, led, req, world
from warroom.detect import detect
from warroom.impact import Policy, PolicyError, impact, load_policy
from warroom.impact.policy import currency_places, round_owed
from warroom.incident import derive_incident_id, stored_incident_id
from warroom.pack import load_pack


@pytest.mark.parametrize(
    "currency, places",
    [
        ("usd", 2),
        ("USD", 2),
        ("eur", 2),
        ("jpy", 0),
        ("krw", 0),
        ("isk", 0),  # ISO 4217, not a payment processor's table
        ("mga", 2),
        ("kwd", 3),
        ("bhd", 3),
        ("iqd", 3),
        ("clf", 4),
        ("credits", 6),  # not a currency: 6 places
        ("units", 6),
        ("tokens", 6),
        ("xau", 6),  # gold has no minor unit
        ("", 6),
    ],
)
def test_currency_places_follow_iso_4217(currency: str, places: int) -> None:
    assert currency_places(currency) == places


@pytest.mark.parametrize(
    "amount, places, rounded",
    [
        ("0.0000004", 6, "0.000001"),  # owed, rounds to 0: the minor unit
        ("0.004", 2, "0.01"),
        ("0.005", 2, "0.01"),  # half-up
        ("0.014999", 2, "0.01"),
        ("12.5", 0, "13"),
        ("0", 2, "0.00"),  # nothing owed stays 0
    ],
)
def test_an_amount_owed_never_rounds_to_zero(amount: str, places: int, rounded: str) -> None:
    got = round_owed(Decimal(amount), places)
    assert got == Decimal(rounded) and str(got) == rounded


@pytest.mark.parametrize(
    "text, message",
    [
        ('[credits]\nper_wrongful_429 = "0.05"\n', "per_wrongful_429 must be a table"),
        ("[credits]\nper_restricted_hour = { usd = 0.5 }\n", "never a float"),
        ("[credits]\ngrant_banked_resets = -1\n", "grant_banked_resets must be a whole number"),
        ("[credits]\ngrant_banked_resets = true\n", "grant_banked_resets must be a whole number"),
        ("[rounding]\nunits = 7\n", "[rounding] units must be a number of decimal places"),
        ('[rounding]\nunits = "2"\n', "[rounding] units must be a number of decimal places"),
        ('[incident]\nid = ""\n', "[incident] id must be a non-empty string"),
    ],
)
def test_new_policy_keys_are_checked_strictly(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "p.toml").write_text(text)
    with pytest.raises(PolicyError) as err:
        load_policy(tmp_path / "p.toml")
    assert message in str(err.value)


def test_policy_keys_are_read(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(
        "[credits]\n"
        'per_wrongful_429 = { USD = "0.05" }\n'
        "per_restricted_hour = { usd = 1 }\n"
        "grant_banked_resets = 1\n"
        "[rounding]\n"
        "Units = 0\n"
    )
    policy = load_policy(tmp_path / "p.toml")
    assert policy.per_wrongful_429 == {"usd": Decimal("0.05")}
    assert policy.per_restricted_hour == {"usd": Decimal(1)}
    assert policy.grant_banked_resets == 1
    assert policy.places("units") == 0 and policy.places("usd") == 2
    assert policy.incident_id is None  # named from the data
    assert load_policy(tmp_path / "p.toml", incident_id="inc-7").incident_id == "inc-7"


def _duplicate_world(tmp_path: Path):  # type: ignore[no-untyped-def]
    return world(
        tmp_path,
        [req("r1", "2025-06-10T10:00:00Z"), req("r2", "2025-06-11T10:00:00Z")],
        [
            led("g", "2025-06-10T09:00:00Z", "grant", amount="1"),
            charge("e1", "2025-06-10T10:00:01Z", "r1"),
            charge("e2", "2025-06-10T10:00:02Z", "r1"),
        ],
    )


def test_the_incident_is_named_from_its_largest_episode_and_kept(tmp_path: Path) -> None:
    con = _duplicate_world(tmp_path)
    pack = load_pack()
    assert stored_incident_id(con) is None
    detect(con, pack)
    # the only fault: duplicate e2 at 2025-06-10T10:00:02
    expected = "2025-06-10-" + hashlib.sha256(b"e2").hexdigest()[:6]
    assert stored_incident_id(con) == expected
    rows = impact(con, pack, Policy()).to_pylist()
    assert [r["credit_id"] for r in rows] == [
        "cr_" + hashlib.sha256(f"{expected}\x1fu1\x1fusd".encode()).hexdigest()[:24]
    ]
    # more logs arrive with a larger fault (three users charged twice); the id, and so
    # every credit_id, stays what the first run named it
    more = tmp_path / "more"
    more.mkdir()
    (more / "ledger-late.jsonl").write_text(
        "".join(
            f'{{"entry_id": "d{i}{n}", "ts": "2025-06-12T0{i}:00:0{n}Z", "user_id": "v{i}", '
            f'"kind": "charge", "amount": "-0.002", "request_id": "q{i}"}}\n'
            for i in range(3)
            for n in range(2)
        )
    )
    from warroom.ingest import ingest

    ingest(con, [more])
    detect(con, pack)
    assert derive_incident_id(con, pack) == "2025-06-12-" + hashlib.sha256(b"d01").hexdigest()[:6]
    assert stored_incident_id(con) == expected
    assert [r["credit_id"] for r in impact(con, pack, Policy()).to_pylist()][0] == (
        rows[0]["credit_id"]
    )


def test_two_incidents_never_share_a_credit_id(tmp_path: Path) -> None:
    con = _duplicate_world(tmp_path)
    pack = load_pack()
    a = impact(con, pack, Policy(incident_id="one")).to_pylist()
    b = impact(con, pack, Policy(incident_id="two")).to_pylist()
    assert a[0]["credit_id"] != b[0]["credit_id"]


@pytest.mark.slow  # a whole investigation or a second process: make slow runs it
def test_export_filters_by_action_and_investigate_writes_impact_csv(
    tmp_path: Path, cli: Cli
) -> None:
    from warroom.generate import generate

    generate(tmp_path / "logs", users=40, days=9, seed=1)
    out = tmp_path / "out"
    done = cli("investigate", str(tmp_path / "logs"), "--out-dir", str(out))
    assert done.code == 0, done.stderr
    assert re.search(r"incident id: 2025-\d\d-\d\d-[0-9a-f]{6}", done.stderr)
    every = list(csv.DictReader(io.StringIO((out / "impact.csv").read_text())))
    exported = list(csv.DictReader(io.StringIO((out / "affected-users.csv").read_text())))
    assert [r["credit_id"] for r in every] == [r["credit_id"] for r in exported]
    actions = {r["action"] for r in every}
    assert {"credit", "notify"} <= actions <= {"credit", "notify", "review"}
    for r in every:  # the credit is given once
        paid = Decimal(r["balance_credit"]) + Decimal(r["topup_reimbursement"])
        assert paid == Decimal(r["credit_amount"]), r["user_id"]
    db = str(out / "warroom.duckdb")
    # a user owed a banked reset: their timeline says which resets they spent themselves
    restored = next(r for r in every if int(r["banked_resets"]) > 0)
    timeline = cli("user", restored["user_id"], "--db", db, "-f", "csv")
    resets = [
        r
        for r in csv.DictReader(io.StringIO(timeline.stdout.decode()))
        if r["what"].startswith("reset ")
    ]
    assert any(r["detail"].endswith("by=user") for r in resets)
    assert any(r["detail"].endswith("by=system") for r in resets)
    for action in ("credit", "notify", "review"):
        got = cli("export", "affected-users", "--db", db, "--action", action, "-f", "csv")
        assert got.code == 0, got.stderr
        rows = list(csv.DictReader(io.StringIO(got.stdout.decode())))
        assert rows == [r for r in exported if r["action"] == action]
    chosen = cli("export", "affected-users", "--db", db, "--incident-id", "inc-2", "-f", "csv")
    first = next(csv.DictReader(io.StringIO(chosen.stdout.decode())))
    assert first["credit_id"] == (
        "cr_"
        + hashlib.sha256(
            "\x1f".join(["inc-2", first["user_id"], first["currency"]]).encode()
        ).hexdigest()[:24]
    )
