"""Every ingest rule, once: when a line, a record, a value or a row is rejected,
and the reason the reject gives.

"Where do I change an ingest rule?" Here, and nowhere else. The rules come in
four layers, in the order the data meets them:

* **lines** (bytes): too long, not UTF-8, a control character. The careful path
  checks them in Python (``line_reason``) while it scans a file, because DuckDB
  cannot read such a line at all.
* **records**: a JSON line that is not an object, a CSV line that is not one
  well-formed record with the header's number of fields (``json_record_reason``,
  ``csv_record_reason``: SQL).
* **values**: per field type, how its text is typed and when it is rejected
  (``_timestamp``, ``_integer``, ``_money``, ``_double``, ``_string``), plus
  required fields and closed choices.
* **rows**: rules across the fields of one row (``_ROW_RULES``).

Every input format (JSON lines, CSV, Parquet, and the profiles) is first turned
into a relation of text columns ``v_<field>`` plus ``line``; ``typed_select``
builds the one SELECT that types those texts into canonical columns and gives a
``reason`` (NULL when the row is good). Keeping the rules in one place is what
makes every format accept and reject exactly the same values.

The rules are those of DESIGN.md section 2 and docs/DECISIONS.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

import duckdb

from warroom.model import FIELDS, Field, FieldType, Kind

# --------------------------------------------------------------------------- lines

#: longest line we load; longer ones are rejected (DuckDB refuses them anyway)
LINE_LIMIT = 8 * 1024 * 1024
#: control bytes a line may not hold: all but TAB and LF, and CR unless it ends
#: the line (CRLF); DuckDB's line reader would split a line at a lone CR
CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")


#: every byte but those of CONTROL, and CR (a lone CR is found apart):
#: ``b.translate(None, NOT_CONTROL)`` keeps just the control bytes, at C speed
NOT_CONTROL = bytes(b for b in range(256) if b == 13 or not CONTROL.match(bytes([b])))


def line_reason(line: bytes, dropped: int = 0) -> str | None:
    """Why DuckDB cannot take ``line`` (without its LF or CRLF, and ``dropped``
    bytes of it already cut off), or None."""
    if len(line) + dropped > LINE_LIMIT:
        return f"line too long: {len(line) + dropped} bytes (limit {LINE_LIMIT})"
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start + 1}"
    m = CONTROL.search(line)
    if m:
        return f"control character 0x{m.group()[0]:02x} at byte {m.start() + 1}"
    return None


def lines_ok(body: bytes) -> bool:
    """Whether every line of ``body`` (whole lines, each ending in LF or CRLF)
    passes ``line_reason``: the same rules over many lines at once, at C speed."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if body.translate(None, NOT_CONTROL) or body.count(b"\r") != body.count(b"\r\n"):
        return False
    if len(body) > LINE_LIMIT and max(map(len, body.split(b"\n"))) > LINE_LIMIT:
        return False
    return True


# --------------------------------------------------------------------------- records

#: a record must be a JSON object; the reason goes on to name what it is instead
NOT_AN_OBJECT = "not a JSON object: a JSON "


def json_record_reason(doc: str, not_object: str, read: Sequence[str] | None = None) -> str:
    """SQL: why the JSON text ``doc`` is not a record (malformed, not an object,
    or an object with a key twice: Python and JavaScript read the last value,
    DuckDB the first), or NULL. ``not_object`` is the SQL telling a valid ``doc``
    is not an object: each source uses the test that is cheapest for it. With
    ``read``, only those keys count (the others are not read, so a repeat of
    one changes nothing); else every key does."""
    keys = f"json_keys({doc})"
    suspect = "true"
    if read is not None:
        names = ", ".join(f"'{k}'" for k in read)
        keys = f"list_filter(json_keys({doc}), lambda k: k IN ({names}))"
        suspect = duplicate_suspect(doc, read)
    return f"""CASE
        WHEN NOT json_valid({doc}) THEN 'malformed JSON'
        WHEN {not_object}
            THEN '{NOT_AN_OBJECT}' || CASE json_type({doc}::JSON)
                WHEN 'ARRAY' THEN 'array' WHEN 'VARCHAR' THEN 'string'
                WHEN 'BOOLEAN' THEN 'boolean' WHEN 'NULL' THEN 'null'
                ELSE 'number' END
        WHEN {suspect} AND array_length({keys}) <> array_length(list_distinct({keys}))
            THEN 'duplicate key ' || wr_quote(list_filter({keys},
                lambda k, i: list_position({keys}, k) < i)[1])
                || ': JSON readers disagree on which value counts'
        END"""


def duplicate_suspect(doc: str, read: Sequence[str]) -> str:
    """SQL: whether the text ``doc`` may name one of the keys ``read`` twice.
    Listing the keys is slow: only a text naming a key twice (or spelling a key
    with escapes) can hold one twice."""
    twice = "|".join(f'"{k}"[ \t]*:.*"{k}"[ \t]*:' for k in read)
    return f"(regexp_matches({doc}, '{twice}') OR contains({doc}, '\\u'))"


def csv_record_reason(fmt: str, n: int) -> str:
    """SQL: why the line ``raw`` of a CSV or TSV file, split into ``fs``, is not a
    record of the header's ``n`` fields, or NULL. A CSV field is bare (no quote
    in it) or quoted whole, with quotes inside doubled; TSV has no quoting."""
    if fmt == "csv":
        wellformed = 'regexp_full_match(\',\' || raw, \'(,("(?:[^"]|"")*"|[^,"]*))*\')'
    else:
        wellformed = "true"
    return f"""CASE
        WHEN NOT {wellformed} THEN 'malformed CSV: unbalanced or misplaced quotes'
        WHEN array_length(fs) <> {n} THEN 'expected {n} fields, got ' || array_length(fs)
    END"""


# --------------------------------------------------------------------------- values

#: earliest and latest (exclusive) timestamps we accept; outside is a data error
TS_MIN = "1970-01-01"
TS_MAX = "2100-01-01"

# Macros are expanded inline by DuckDB: they cost nothing at run time and keep
# the generated SQL readable.
_MACROS = [
    # epoch seconds, or milliseconds when |n| >= 1e11, as text (any number form,
    # e.g. 1e20 as a JSON reader renders it) -> UTC timestamp, to the microsecond.
    # A number far outside [TS_MIN, TS_MAX) is clamped to just outside it, so it
    # is rejected as out of range instead of overflowing the query.
    r"""CREATE OR REPLACE TEMP MACRO wr_epoch(v) AS CASE
        WHEN regexp_full_match(trim(v), '[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?')
        THEN make_timestamp(CAST(CASE
            WHEN TRY_CAST(trim(v) AS DECIMAL(38,6)) IS NULL
                OR abs(TRY_CAST(trim(v) AS DOUBLE)) >= 1e15
            THEN CASE WHEN TRY_CAST(trim(v) AS DOUBLE) > 0 THEN 4102444800000000 ELSE -1 END
            ELSE greatest(least(round(TRY_CAST(trim(v) AS DECIMAL(38,6))
                * CASE WHEN abs(TRY_CAST(trim(v) AS DECIMAL(38,6))) >= 100000000000
                       THEN 1000 ELSE 1000000 END), 4102444800000000), -1)
            END AS BIGINT))
        END""",
    # text -> exact decimal at 12 places (precision is checked separately)
    r"""CREATE OR REPLACE TEMP MACRO wr_dec(v) AS CASE
        WHEN regexp_full_match(trim(v), '[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?')
        THEN TRY_CAST(trim(v) AS DECIMAL(38,12)) END""",
    # the decimal places an exponent form (1.5e-7) needs, counted on its text:
    # exact at any exponent, where a cast rounds (1e-400 casts to 0)
    r"""CREATE OR REPLACE TEMP MACRO wr_exp_places(v) AS CASE
        WHEN NOT regexp_matches(regexp_extract(trim(v), '^[+-]?([0-9.]*)', 1), '[1-9]') THEN 0
        WHEN TRY_CAST(regexp_extract(trim(v), '[eE]([+-]?[0-9]+)$', 1) AS INTEGER) IS NULL
        THEN CASE WHEN regexp_matches(v, '[eE]-') THEN 1000000 ELSE 0 END
        ELSE length(regexp_extract(trim(v), '^[+-]?[0-9]*\.([0-9]*)', 1))
            - CAST(regexp_extract(trim(v), '[eE]([+-]?[0-9]+)$', 1) AS INTEGER)
            - (length(replace(regexp_extract(trim(v), '^[+-]?([0-9.]*)', 1), '.', ''))
               - length(rtrim(replace(regexp_extract(trim(v), '^[+-]?([0-9.]*)', 1), '.', ''),
                              '0')))
        END""",
    r"""CREATE OR REPLACE TEMP MACRO wr_quote(v) AS
        '''' || CASE WHEN length(v) > 40 THEN left(v, 40) || '...' ELSE v END || ''''""",
]


def install_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Define the conversion macros on this connection (idempotent)."""
    for stmt in _MACROS:
        con.execute(stmt)


class Rule(NamedTuple):
    """One way a value or a row fails: an SQL condition, and the SQL of its reason.
    ``guard``, if any, is a cheap condition that holds wherever ``fails`` does:
    the costly test (a regular expression) then runs only on the rows it admits."""

    fails: str
    reason: str
    guard: str | None = None

    def sql(self) -> str:
        """The condition as one boolean, never NULL (NULL is not a failure)."""
        if self.guard is None:
            return f"coalesce({self.fails}, false)"
        return f"CASE WHEN {self.guard} THEN coalesce({self.fails}, false) ELSE false END"


class _Value(NamedTuple):
    """The columns a value rule reads: ``v`` the text, ``t`` its typed value, ``n``
    the field's name as an SQL string (reasons start with it)."""

    v: str
    t: str
    n: str


#: an ISO 8601 date and time without its zone, as DuckDB reads it
_ISO = r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?"
#: the zones we take: Z, or an offset within +-14:00 (the widest in use)
_ZONE = r"(Z|[+-]((0[0-9]|1[0-3])(:?[0-5][0-9])?|14(:?00)?))?"


def _timestamp(f: Field, x: _Value) -> tuple[str, list[Rule]]:
    """ISO 8601 text (Z, an offset within +-14:00, or no zone meaning UTC), or
    epoch seconds or milliseconds; within [TS_MIN, TS_MAX). A zone name or
    abbreviation (PST, Europe/Paris) is rejected: DuckDB would read it, but
    abbreviations are ambiguous and a named zone's local time can be ambiguous
    or nonexistent at a DST change (docs/DECISIONS.md)."""
    typed = (
        f"CASE WHEN {x.v} LIKE '____-__-__%' "
        f"THEN CASE WHEN regexp_full_match({x.v}, '{_ISO}{_ZONE}[ ]*') "
        f"THEN TRY_CAST(TRY_CAST({x.v} AS TIMESTAMPTZ) AS TIMESTAMP) END "
        f"ELSE wr_epoch({x.v}) END"
    )
    unparsed = f"{x.v} IS NOT NULL AND {x.t} IS NULL"
    offset = f"regexp_full_match({x.v}, '{_ISO}[ ]*[+-][0-9]{{2}}:?[0-9]{{2}}[ ]*')"
    name = (
        f"regexp_full_match({x.v}, '{_ISO}[ ]*[A-Za-z][A-Za-z0-9/_+-]*[ ]*') "
        f"AND NOT regexp_full_match({x.v}, '{_ISO}Z[ ]*')"
    )
    return typed, [
        Rule(
            f"{unparsed} AND {offset}",
            f"{x.n} || ': offset beyond +-14:00: ' || wr_quote({x.v})",
            unparsed,
        ),
        Rule(
            f"{unparsed} AND {name}",
            f"{x.n} || ': a zone name is not accepted (write Z or an offset such as "
            f"+02:00): ' || wr_quote({x.v})",
            unparsed,
        ),
        Rule(
            f"{unparsed} AND NOT ({offset}) AND NOT ({name})",
            f"{x.n} || ': not a timestamp: ' || wr_quote({x.v})",
            unparsed,
        ),
        Rule(
            f"{x.t} < TIMESTAMP '{TS_MIN}' OR {x.t} >= TIMESTAMP '{TS_MAX}'",
            f"{x.n} || ': out of range: ' || wr_quote({x.v})",
        ),
    ]


def _integer(f: Field, x: _Value) -> tuple[str, list[Rule]]:
    """Plain decimal digits that fit the type; ``status`` an HTTP status, any
    other count not negative."""
    digits, sql_type = (9, "INTEGER") if f.type is FieldType.INT else (18, "BIGINT")
    typed = (
        f"CASE WHEN regexp_full_match({x.v}, '-?[0-9]{{1,{digits}}}') "
        f"THEN TRY_CAST({x.v} AS {sql_type}) END"
    )
    rules = [
        Rule(
            f"{x.v} IS NOT NULL AND {x.t} IS NULL",
            f"{x.n} || ': not an integer: ' || wr_quote({x.v})",
        )
    ]
    if f.name == "status":
        rules.append(
            Rule(
                f"{x.t} NOT BETWEEN 100 AND 599",
                f"{x.n} || ': not an HTTP status: ' || wr_quote({x.v})",
            )
        )
    else:
        rules.append(Rule(f"{x.t} < 0", f"{x.n} || ': negative: ' || wr_quote({x.v})"))
    return typed, rules


def _money(f: Field, x: _Value) -> tuple[str, list[Rule]]:
    """An exact decimal with at most 6 places, below 10^12 in size. A value read
    through a binary double (a JSON number: ``n_<field>``) must be below 10^9, so
    that its 15 significant digits hold all 6 places."""
    v, t = x.v, x.t
    return f"wr_dec({v})", [
        Rule(f"{v} IS NOT NULL AND {t} IS NULL", f"{x.n} || ': not a number: ' || wr_quote({v})"),
        # the typed value holds 12 places: digits past them are caught in the
        # text, and for an exponent form (1e-13, 1e-400) counted on its text
        Rule(
            # (rounded, then back at 12 places: Spark compares a DECIMAL(38,12)
            # with its own DECIMAL(38,6) cast as equal)
            f"{t} <> CAST(CAST({t} AS DECIMAL(38,6)) AS DECIMAL(38,12)) "
            rf"OR regexp_matches({v}, '\.[0-9]{{12}}[0-9]*[1-9]') "
            f"OR (contains(lower({v}), 'e') AND wr_exp_places({v}) > 6)",
            f"{x.n} || ': more than 6 decimal places: ' || wr_quote({v})",
            # more than 6 places need 7 characters after the first dot (the
            # pattern 13), or an exponent: an e or E
            f"length({v}) - strpos({v}, '.') > 6 OR contains({v}, 'e') OR contains({v}, 'E')",
        ),
        Rule(f"abs({t}) >= 1000000000000", f"{x.n} || ': out of range: ' || wr_quote({v})"),
        Rule(
            f"n_{f.name} AND abs({t}) >= 1000000000",
            f"{x.n} || ': too large for an exact binary number; quote it as a string'",
        ),
    ]


def _double(f: Field, x: _Value) -> tuple[str, list[Rule]]:
    """Any finite number."""
    return f"TRY_CAST({x.v} AS DOUBLE)", [
        Rule(
            f"{x.v} IS NOT NULL AND ({x.t} IS NULL OR NOT isfinite({x.t}))",
            f"{x.n} || ': not a number: ' || wr_quote({x.v})",
        )
    ]


def _string(f: Field, x: _Value) -> tuple[str, list[Rule]]:
    """Any text, but not a JSON object or array (``c_<field>`` says the value was
    one); a closed choice or a currency is kept lower-case, and a choice must be
    one of its values."""
    typed = f"lower({x.v})" if f.choices or f.name == "currency" else x.v
    rules = [Rule(f"c_{f.name} IS NOT NULL", f"{x.n} || ': expected a string, got ' || c_{f.name}")]
    if f.choices:
        allowed = ", ".join(f"'{c}'" for c in f.choices)
        rules.append(
            Rule(
                f"{x.t} NOT IN ({allowed})",
                f"{x.n} || ': unknown value ' || wr_quote({x.v}) || "
                f"' (expected one of {'|'.join(f.choices)})'",
            )
        )
    return typed, rules


_BY_TYPE: dict[FieldType, Callable[[Field, _Value], tuple[str, list[Rule]]]] = {
    FieldType.TIMESTAMP: _timestamp,
    FieldType.INT: _integer,
    FieldType.BIGINT: _integer,
    FieldType.MONEY: _money,
    FieldType.DOUBLE: _double,
    FieldType.STRING: _string,
}


def _value_rules(f: Field) -> tuple[str, list[Rule]]:
    """The expression typing ``v_<name>`` (NULL where the text is not a valid
    value) and the rules of the field, in the order they are tried."""
    x = _Value(f"v_{f.name}", f"t_{f.name}", f"'{f.name}'")
    typed, rules = _BY_TYPE[f.type](f, x)
    if f.required:
        blank = f"{x.v} IS NULL" + (f" OR trim({x.v}) = ''" if f.type is FieldType.STRING else "")
        rules.insert(0, Rule(blank, f"{x.n} || ': missing'"))
    return typed, rules


# --------------------------------------------------------------------------- rows

_ROW_RULES: dict[Kind, list[Rule]] = {
    Kind.requests: [
        Rule(
            "t_cached_tokens > coalesce(t_input_tokens, 0)",
            "'cached_tokens: more than input_tokens'",
        ),
    ],
    Kind.ledger: [
        Rule("v_amount IS NULL AND t_kind IS DISTINCT FROM 'reset'", "'amount: missing'"),
        Rule(
            "t_kind = 'reset' AND v_balance_after IS NULL",
            "'balance_after: missing (required for a reset)'",
        ),
        Rule(
            "t_kind = 'charge' AND (v_request_id IS NULL OR trim(v_request_id) = '')",
            "'request_id: missing (required for a charge)'",
        ),
        Rule("t_kind = 'charge' AND t_amount > 0", "'amount: a charge must not be positive'"),
        Rule(
            "t_kind IN ('refund', 'topup', 'grant') AND t_amount < 0",
            "'amount: a ' || t_kind || ' must not be negative'",
        ),
        Rule(
            "t_cached_tokens > coalesce(t_input_tokens, 0)",
            "'cached_tokens: more than input_tokens'",
        ),
    ],
    Kind.abuse: [
        Rule("t_until < t_ts", "'until: before ts'"),
        Rule("t_multiplier <= 0", "'multiplier: not positive'"),
    ],
    Kind.prices: [
        Rule(
            "t_input_per_mtok < 0 OR t_cached_per_mtok < 0 OR t_output_per_mtok < 0",
            "'price: negative'",
        ),
    ],
}


def _stored_money(name: str) -> str:
    """A money field's stored DECIMAL(18, 6). Its text cast straight to that type
    is the value wherever it equals the exact value ``t_<name>`` (a good row's
    always does: at most 6 places, below 10^12), and costs a sixth of narrowing
    the DECIMAL(38, 12), which stays where they differ. TRY_: a rejected row's
    value may not fit (its reason says so)."""
    text = f"TRY_CAST(trim(v_{name}) AS DECIMAL(18,6))"
    return f"CASE WHEN {text} = t_{name} THEN {text} ELSE TRY_CAST(t_{name} AS DECIMAL(18,6)) END"


def _canonical(kind: Kind, f: Field) -> str:
    """The stored value of a field: the typed one, with its default where absent."""
    expr = _stored_money(f.name) if f.type is FieldType.MONEY else f"t_{f.name}"
    if kind is Kind.prices and f.name == "cached_per_mtok":
        # no cache discount unless the price list says so
        expr = f"coalesce({expr}, {_stored_money('input_per_mtok')})"
    if f.default is not None:
        expr = f"coalesce({expr}, {f.default})"
    return f"{expr} AS {f.name}"


# --------------------------------------------------------------------------- the SELECT


def typed_select(kind: Kind, source: str, *, extra: tuple[str, ...] = ()) -> str:
    """The SELECT turning ``source`` into ``line``, ``extra``, the canonical
    columns of ``kind`` and ``reason`` (NULL for a good row).

    ``source`` has the columns ``line``, ``pre_reason`` (a reason found before
    the fields were read, e.g. malformed JSON; it wins over field checks), a text
    column ``v_<field>`` per canonical field (NULL when absent); for each money
    field a boolean ``n_<field>``: true where the value was read through a
    binary double (a JSON number), which is exact only to 15 digits; and for
    each string field a column ``c_<field>``: ``'an object'`` or ``'an array'``
    where the value was one (rejected), else NULL, so a string whose text
    happens to be JSON (``"[1]"``) is kept.

    Each value is typed once; the reason text is built only for bad rows.
    """
    fields = FIELDS[kind]
    typed, checks = [], []
    for f in fields:
        expr, rules = _value_rules(f)
        typed.append(f"{expr} AS t_{f.name}")
        checks += rules
    checks += _ROW_RULES[kind]
    # coalesce(cond, false): a NULL condition (a comparison with a missing
    # optional value) is not a failure
    bad = " OR ".join(r.sql() for r in checks)
    reasons = ", ".join(f"CASE WHEN {r.sql()} THEN {r.reason} END" for r in checks)
    cols = ", ".join(_canonical(kind, f) for f in fields)
    extra_cols = "".join(f", {c}" for c in extra)
    reason = (
        f"CASE WHEN pre_reason IS NOT NULL THEN pre_reason "
        f"WHEN {bad} THEN concat_ws('; ', {reasons}) END"
    )
    return (
        f"SELECT line{extra_cols}, {cols}, {reason} AS reason "
        f"FROM (SELECT *, {', '.join(typed)} FROM {source})"
    )
