"""Property tests for ingest: whatever the lines, nothing crashes and nothing is lost.

* (a) Any mix of good request rows, bad lines (random bytes among them) and
  blank lines, with LF or CRLF endings and with or without a final newline:
  ingest does not raise, loaded + rejected + blank = lines, every good line is
  loaded at its line number with its values intact, every bad line is rejected
  at its line number.
* (b) One instant written in every accepted timestamp form lands as one UTC value.
* (c) Money strings with up to 6 decimals (and JSON numbers below 1e9) survive
  exactly as Decimal.
* (d) The fast path and the careful path agree: the same lines ingested as they
  are, and with one invalid UTF-8 line appended (which DuckDB's JSON reader
  refuses) through the careful path and through the fast path's lenient read,
  give the same rows and the same rejects.

A test keeps one in-memory database across its examples (opening one costs
more than a small ingest) and empties it before each example.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from warroom import db, ingest
from warroom.ingest import load
from warroom.model import TABLES

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: for properties whose every example checks several values at once
FEWER = settings(SETTINGS, max_examples=25)
#: for the property whose every example loads two files
PAIRS = settings(SETTINGS, max_examples=20)  # each example ingests two files

LO = datetime(1970, 1, 1, tzinfo=UTC)
HI = datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
EPOCH = LO
MS_FROM = EPOCH + timedelta(milliseconds=100_000_000_000)  # |n| >= 1e11 reads as ms

FIELDS = (
    "ts",
    "request_id",
    "user_id",
    "org_id",
    "plan",
    "model",
    "status",
    "error_code",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "latency_ms",
)


@dataclass
class Db:
    con: duckdb.DuckDBPyConnection
    dir: Path

    def ingest(self, name: str, data: bytes) -> tuple[Any, bool]:
        """Load ``data`` as the only file of an emptied database; returns the
        file's result and whether the fast path loaded it (its first try)."""
        for table in ("sources", "rejects", *TABLES.values()):
            self.con.execute(f"DELETE FROM {table}")
        path = self.dir / name
        path.write_bytes(data)
        before = self.con.execute("SELECT nextval('source_ids')").fetchone()[0]  # type: ignore[index]
        (result,) = ingest(self.con, [path]).files
        source = self.con.execute("SELECT source_id FROM sources").fetchone()[0]  # type: ignore[index]
        return result, source == before + 1


@contextmanager
def _database() -> Iterator[Db]:
    with tempfile.TemporaryDirectory(prefix="warroom-prop-") as tmp:
        con = db.connect(":memory:")
        try:
            yield Db(con, Path(tmp))
        finally:
            con.close()


@pytest.fixture(scope="module")
def one() -> Iterator[Db]:
    with _database() as d:
        yield d


@pytest.fixture(scope="module")
def two() -> Iterator[Db]:
    with _database() as d:
        yield d


# --------------------------------------------------------------------------- timestamps

instants = st.datetimes(min_value=LO.replace(tzinfo=None), max_value=HI.replace(tzinfo=None)).map(
    lambda d: d.replace(tzinfo=UTC)
)


def _micros(t: datetime) -> int:
    return (t - EPOCH) // timedelta(microseconds=1)


def _seconds_text(t: datetime) -> str:
    us = _micros(t)
    whole, frac = divmod(us, 1_000_000)
    return f"{whole}.{frac:06d}".rstrip("0").rstrip(".") if frac else str(whole)


def _ms_text(t: datetime) -> str:
    us = _micros(t)
    whole, frac = divmod(us, 1000)
    return f"{whole}.{frac:03d}".rstrip("0").rstrip(".") if frac else str(whole)


def _iso(t: datetime, sep: str = "T") -> str:
    return t.strftime(f"%Y-%m-%d{sep}%H:%M:%S.%f")


class Raw(str):
    """Text to put into JSON as it is (a number), not as a string."""


def ts_forms(t: datetime, offset_minutes: int) -> list[Any]:
    """``t`` in every accepted form (as JSON values: str, or Raw for numbers)."""
    off = timedelta(minutes=offset_minutes)
    sign = "+" if offset_minutes >= 0 else "-"
    hh, mm = divmod(abs(offset_minutes), 60)
    forms: list[Any] = [
        _iso(t) + "Z",
        t.strftime("%Y-%m-%dT%H:%M:%SZ") if t.microsecond == 0 else _iso(t) + "Z",
        _iso(t + off) + f"{sign}{hh:02d}:{mm:02d}",
        _iso(t, " "),  # no zone: UTC
        _iso(t),
        Raw(_seconds_text(t)),  # epoch seconds, a JSON number
        _seconds_text(t),  # ... and a numeric string
    ]
    if t >= MS_FROM:
        forms += [Raw(_ms_text(t)), _ms_text(t)]
    return forms


def dumps(row: dict[str, Any], ascii_only: bool) -> str:
    """JSON of ``row``; Raw values are written as they are (numbers)."""
    parts = []
    for k, v in row.items():
        val = str(v) if isinstance(v, Raw) else json.dumps(v, ensure_ascii=ascii_only)
        parts.append(f"{json.dumps(k)}:{val}")
    return "{" + ",".join(parts) + "}"


# --------------------------------------------------------------------------- good rows


# any character a JSON string can carry: controls are escaped by json.dumps; DEL
# (which it leaves raw) is left out, as a raw control byte rejects the line
chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x7f")
plain_ids = st.from_regex(r"[a-z]{1,3}[-_][0-9]{1,6}", fullmatch=True)
ids = st.one_of(
    st.text(chars, min_size=1, max_size=12),
    plain_ids,
    # strings that look like JSON or like a number as DuckDB prints one
    st.sampled_from(["{}", "[1]", '{"a":1}', "1e+20", "1.5e-07", "null", "true", " x "]),
).filter(lambda s: s.strip() != "")


@dataclass
class Good:
    line: str  # the JSON text
    want: dict[str, Any]  # what must be loaded


@st.composite
def good_rows(draw: st.DrawFn, tricky: bool = True) -> Good:
    """A good request row; ``tricky`` ids include any text, JSON-looking ones too."""
    id_values = ids if tricky else plain_ids
    t = draw(instants)
    ts = draw(st.sampled_from(ts_forms(t, draw(st.integers(-14 * 60, 14 * 60)))))
    row: dict[str, Any] = {"ts": ts}
    want: dict[str, Any] = {"ts": t.replace(tzinfo=None)}
    for name in ("request_id", "user_id"):
        if name == "user_id" and draw(st.booleans()):
            n = draw(st.integers(-(10**15), 10**15))  # a numeric user id
            row[name], want[name] = n, str(n)
        else:
            row[name] = want[name] = draw(id_values)
    for name in ("org_id", "plan", "model", "error_code"):
        v = draw(st.none() | id_values)
        if v is not None:
            row[name] = v
        want[name] = v
    status = draw(st.integers(100, 599))
    row["status"] = draw(st.sampled_from([status, str(status)]))
    want["status"] = status
    inp = draw(st.integers(0, 10**15))
    tokens = {
        "input_tokens": inp,
        "cached_tokens": draw(st.integers(0, inp)),
        "output_tokens": draw(st.integers(0, 10**15)),
    }
    shown = {name: draw(st.booleans()) for name in tokens}
    shown["input_tokens"] |= shown["cached_tokens"]  # else cached > input (0): rejected
    for name, n in tokens.items():
        if shown[name]:
            row[name] = draw(st.sampled_from([n, str(n)]))
            want[name] = n
        else:
            want[name] = 0
    lat = draw(st.none() | st.floats(0, 1e7, allow_nan=False))
    if lat is not None:
        row["latency_ms"] = lat
    want["latency_ms"] = lat
    keys = list(row)
    order = draw(st.permutations(keys))
    return Good(dumps({k: row[k] for k in order}, draw(st.booleans())), want)


# --------------------------------------------------------------------------- bad lines

BLANK = re.compile(rb"[ \t]*\r?")


def _not_blank(b: bytes) -> bool:
    return not BLANK.fullmatch(b) and not b.startswith(b"\xef\xbb\xbf")


def _mutate(good: Good, change: dict[str, Any], drop: str | None = None) -> bytes:
    row = json.loads(good.line)
    row.update(change)
    if drop:
        row.pop(drop, None)
    return json.dumps(row).encode()


#: each way a JSON object can be wrong -> the change it makes to a good row
#: (a function of ``draw`` where the wrong value varies)
SEMANTIC_BAD: dict[str, Callable[[st.DrawFn], dict[str, Any]]] = {
    "status-abc": lambda draw: {"status": "abc"},
    "status-true": lambda draw: {"status": True},
    "status-float": lambda draw: {"status": 200.5},
    "status-range": lambda draw: {"status": draw(st.sampled_from([0, 99, 600, -200]))},
    "tokens-float": lambda draw: {"input_tokens": 12.5},
    "tokens-negative": lambda draw: {"output_tokens": -1},
    "cached-over": lambda draw: {"input_tokens": 1, "cached_tokens": 2},
    "user-object": lambda draw: {"user_id": {"a": draw(st.integers())}},
    "user-array": lambda draw: {"request_id": [draw(st.integers())]},
    "ts-junk": lambda draw: {"ts": draw(st.sampled_from(["yesterday", "2025-13-01", ""]))},
    "ts-9999": lambda draw: {"ts": "9999-01-01T00:00:00Z"},
    "ts-1969": lambda draw: {"ts": "1969-12-31T23:59:59.999999Z"},
    "ts-1e20": lambda draw: {"ts": 1e20},
    "ts-16-digits": lambda draw: {"ts": draw(st.integers(10**15, 10**16 - 1))},
    "blank-id": lambda draw: {"request_id": draw(st.sampled_from(["", "   "]))},
    "latency-junk": lambda draw: {"latency_ms": "slow"},
}


@st.composite
def semantic_bad(draw: st.DrawFn) -> bytes:
    """Lines that are JSON objects (DuckDB's JSON reader takes them) but wrong."""
    good = draw(good_rows(tricky=False))
    kind = draw(st.sampled_from([*SEMANTIC_BAD, "missing", "null", "empty-object"]))
    match kind:
        case "missing":
            return _mutate(
                good, {}, drop=draw(st.sampled_from(["ts", "request_id", "user_id", "status"]))
            )
        case "null":
            return b"null"
        case "empty-object":
            return b"{}"
        case _:
            return _mutate(good, SEMANTIC_BAD[kind](draw))


@st.composite
def syntactic_bad(draw: st.DrawFn) -> bytes:
    """Lines that are not one JSON object, or hold bytes no JSON line may hold."""
    good = draw(good_rows()).line.encode()
    kind = draw(
        st.sampled_from(["truncated", "junk", "scalar", "two", "control", "utf8", "random"])
    )
    match kind:
        case "truncated":
            return good[: draw(st.integers(1, len(good) - 1))]
        case "junk":
            return draw(
                st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30)
                .map(str.encode)
                .filter(lambda b: not b.lstrip().startswith(b"{"))
            )
        case "scalar":
            value = draw(
                st.one_of(
                    st.integers(),
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=10),
                    st.booleans(),
                    st.lists(st.integers(), max_size=3),
                )
            )
            return json.dumps(value).encode()
        case "two":
            return good + draw(st.sampled_from([b"", b" ", b"\t"])) + good
        case "control":
            at = draw(st.integers(1, len(good) - 1))
            byte = draw(
                st.sampled_from(
                    [b"\x00", b"\x01", b"\x07", b"\x0b", b"\x0c", b"\x1b", b"\x1f", b"\x7f", b"\r"]
                )
            )
            return good[:at] + byte + good[at:]
        case "utf8":
            at = draw(st.integers(0, len(good)))
            byte = draw(
                st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x80"])
            )
            return good[:at] + byte + good[at:]
        case _:
            return draw(st.binary(min_size=1, max_size=60))


bad_lines = (
    st.one_of(semantic_bad(), syntactic_bad())
    .map(lambda b: b.replace(b"\n", b""))
    .filter(_not_blank)
)


@dataclass
class Doc:
    data: bytes
    good: dict[int, dict[str, Any]]  # line -> expected values
    bad: dict[int, bytes]  # line -> its bytes
    blank: int
    lines: int


@st.composite
def documents(
    draw: st.DrawFn,
    bad: st.SearchStrategy[bytes] = bad_lines,
    newline_at_end: bool | None = None,
    blanks: bool = True,
) -> Doc:
    good = good_rows().map(lambda g: ("good", g))
    if blanks:
        kinds = [
            good,
            bad.map(lambda b: ("bad", b)),
            st.sampled_from([b"", b"  ", b"\t", b" \t "]).map(lambda b: ("blank", b)),
        ]
        eols = [b"\n", b"\r\n"]
    else:
        # Without blank lines, and with few of the other things that send a
        # file the careful way (JSON-looking ids; CRLF once there are rejects),
        # most files take the fast path.
        kinds = [
            st.integers(0, 6)
            .flatmap(lambda k: good_rows(tricky=k == 0))
            .map(lambda g: ("good", g)),
            bad.map(lambda b: ("bad", b)),
        ]
        eols = [b"\n"] * 3 + [b"\r\n"]
    items = draw(st.lists(st.one_of(*kinds), min_size=1, max_size=10))
    eol = draw(st.sampled_from(eols))
    end = draw(st.booleans()) if newline_at_end is None else newline_at_end
    good: dict[int, dict[str, Any]] = {}
    bad_: dict[int, bytes] = {}
    blank = 0
    chunks = []
    for n, (what, item) in enumerate(items, start=1):
        if what == "good":
            good[n] = item.want
            chunks.append(item.line.encode())
        elif what == "bad":
            bad_[n] = item
            chunks.append(item)
        else:
            blank += 1
            chunks.append(item)
    data = eol.join(chunks) + (eol if end else b"")
    if not end and items[-1][0] == "blank":
        # a file ending in spaces without a newline: still a (blank) line, unless empty
        if chunks[-1] == b"":
            blank -= 1
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    return Doc(data, good, bad_, blank, lines)


def _load(
    d: Db, data: bytes
) -> tuple[Any, bool, dict[int, dict[str, Any]], dict[int, tuple[str, str]]]:
    """Ingest ``data`` as a request log: its result, whether the fast path took
    it, its rows by line (without source_id), its rejects by line."""
    result, fast = d.ingest("requests.jsonl", data)
    cur = d.con.execute("SELECT * EXCLUDE (source_id) FROM requests_all ORDER BY line")
    names = [c[0] for c in cur.description]
    rows = {r[names.index("line")]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}
    rej = {
        r[0]: (r[1], r[2])
        for r in d.con.execute("SELECT line, raw, reason FROM rejects ORDER BY line").fetchall()
    }
    return result, fast, rows, rej


# --------------------------------------------------------------------------- (a)


@SETTINGS
@given(doc=documents())
def test_any_mix_of_lines_loads_or_rejects_each_one(one: Db, doc: Doc) -> None:
    _, fast, rows, rej = _load(one, doc.data)
    src = one.con.execute("SELECT rows_loaded, rows_rejected, blank_lines FROM sources").fetchone()
    assert src is not None
    assert sum(src) == doc.lines
    assert src[2] == doc.blank
    assert sorted(rows) == sorted(doc.good)
    for line, want in doc.good.items():
        got = {k: rows[line][k] for k in want}
        assert got == want, f"line {line}: {rej.get(line)}"
    assert sorted(rej) == sorted(doc.bad)
    assert all(reason for _, reason in rej.values())
    event("fast path" if fast else "careful path")


# --------------------------------------------------------------------------- (b)


@FEWER
@given(cases=st.lists(st.tuples(instants, st.integers(-14 * 60, 14 * 60)), min_size=1, max_size=6))
def test_every_timestamp_form_is_the_same_utc_instant(
    one: Db, cases: list[tuple[datetime, int]]
) -> None:
    lines, want = [], {}
    for t, offset in cases:
        for ts in ts_forms(t, offset):
            lines.append(
                dumps(
                    {"ts": ts, "request_id": f"r{len(lines)}", "user_id": "u", "status": 200}, True
                )
            )
            want[len(lines)] = t.replace(tzinfo=None)
    _, _, rows, rej = _load(one, ("\n".join(lines) + "\n").encode())
    assert rej == {}
    assert {line: r["ts"] for line, r in rows.items()} == want


# --------------------------------------------------------------------------- (c)


money = st.decimals(
    min_value=Decimal("-999999999999.999999"),
    max_value=Decimal("999999999999.999999"),
    places=6,
    allow_nan=False,
    allow_infinity=False,
)


def _money_texts(x: Decimal) -> list[tuple[str, bool]]:
    """(text, as a JSON number?) forms of ``x``: plain, trailing zeros, exponent,
    leading plus; a JSON number where it is exact (below 1e9)."""
    plain = format(x, "f")
    forms = [
        (plain, False),
        (format(x.normalize(), "f"), False),
        (f"{x:.6f}", False),
        (f"{x * 1000:f}e-3", False),
        (f"{x / 1000:f}E+3", False),
    ]
    if x >= 0:
        forms.append(("+" + plain, False))
    if abs(x) < Decimal(10) ** 9:
        forms.append((plain, True))
    return forms


@FEWER
@given(values=st.lists(st.tuples(money, money), min_size=1, max_size=6))
def test_money_survives_exactly(one: Db, values: list[tuple[Decimal, Decimal]]) -> None:
    lines, want = [], {}
    n = 0
    for amount, balance in values:
        for text_, number in _money_texts(amount):
            assert Decimal(text_) == amount
            n += 1
            value: Any = Raw(text_) if number else text_
            bal = (
                Raw(format(balance, "f"))
                if abs(balance) < 10**9 and n % 2
                else format(balance, "f")
            )
            lines.append(
                dumps(
                    {
                        "entry_id": f"e{n}",
                        "ts": "2025-06-01T10:00:00Z",
                        "user_id": "u",
                        "kind": "adjustment",
                        "amount": value,
                        "balance_after": bal,
                    },
                    True,
                )
            )
            want[n] = (amount, balance)
    one.ingest("ledger.jsonl", ("\n".join(lines) + "\n").encode())
    assert one.con.execute("SELECT line, raw, reason FROM rejects").fetchall() == []
    got = {
        r[0]: (r[1], r[2])
        for r in one.con.execute("SELECT line, amount, balance_after FROM ledger_all").fetchall()
    }
    assert got == want


# --------------------------------------------------------------------------- (d)

# mostly lines DuckDB's JSON reader takes, so that the as-is file takes the fast path
agreeing_bad = (
    st.integers(0, 8)
    .flatmap(lambda k: syntactic_bad() if k == 0 else semantic_bad())
    .map(lambda b: b.replace(b"\n", b""))
    .filter(_not_blank)
)


@PAIRS
@given(doc=documents(agreeing_bad, newline_at_end=True, blanks=False))
def test_fast_and_careful_paths_agree(one: Db, two: Db, doc: Doc) -> None:
    r1, fast, rows1, rej1 = _load(one, doc.data)
    event("as-is took the fast path" if fast else "as-is took the careful path")
    with_bad = doc.data + b'{"x":"\xff"}\n'
    # the careful path alone, then the fast path's lenient read (which reads
    # the line DuckDB refuses again on its own)
    for loaders in (("careful",), load.JSON_LOADERS):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(load, "JSON_LOADERS", loaders)
            r2, _, rows2, rej2 = _load(two, with_bad)
        assert rows1 == rows2
        assert rej2.pop(doc.lines + 1) == ('{"x":"\\xff"}', "invalid UTF-8 at byte 7")
        assert rej1 == rej2
        assert (r1.rows_loaded, r1.rows_rejected + 1, r1.blank_lines) == (
            r2.rows_loaded,
            r2.rows_rejected,
            r2.blank_lines,
        )
