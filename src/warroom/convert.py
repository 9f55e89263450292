"""Text -> canonical values, in SQL, with a reason for every value that fails.

Every input format (JSON lines, CSV, Parquet, and the profiles) is first turned
into a relation of text columns ``v_<field>`` plus ``line``; this module builds
the one SELECT that turns those texts into typed canonical columns and a
``reason`` (NULL when the row is good). Keeping the rules in one place is what
makes every format accept and reject exactly the same values.

The rules are those of DESIGN.md section 2 and docs/DECISIONS.md.
"""

from __future__ import annotations

import duckdb

from warroom.model import FIELDS, Field, FieldType, Kind

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
    r"""CREATE OR REPLACE TEMP MACRO wr_quote(v) AS
        '''' || CASE WHEN length(v) > 40 THEN left(v, 40) || '...' ELSE v END || ''''""",
]


def install_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Define the conversion macros on this connection (idempotent)."""
    for stmt in _MACROS:
        con.execute(stmt)


def _typed(f: Field) -> str:
    """Expression typing ``v_<name>``; NULL where the text is not a valid value."""
    v = f"v_{f.name}"
    match f.type:
        case FieldType.TIMESTAMP:
            return (
                f"CASE WHEN {v} LIKE '____-__-__%' "
                f"THEN TRY_CAST(TRY_CAST({v} AS TIMESTAMPTZ) AS TIMESTAMP) "
                f"ELSE wr_epoch({v}) END"
            )
        case FieldType.INT:
            return (
                f"CASE WHEN regexp_full_match({v}, '-?[0-9]{{1,9}}') "
                f"THEN TRY_CAST({v} AS INTEGER) END"
            )
        case FieldType.BIGINT:
            return (
                f"CASE WHEN regexp_full_match({v}, '-?[0-9]{{1,18}}') "
                f"THEN TRY_CAST({v} AS BIGINT) END"
            )
        case FieldType.MONEY:
            return f"wr_dec({v})"
        case FieldType.DOUBLE:
            return f"TRY_CAST({v} AS DOUBLE)"
        case FieldType.STRING:
            return f"lower({v})" if f.choices or f.name == "currency" else v
    raise AssertionError(f.type)  # pragma: no cover


def _checks(f: Field, containers: bool = False) -> list[tuple[str, str]]:
    """(failure condition, reason) pairs for one field, in the order they are tried.

    Conditions see ``v_<name>`` (the text) and ``t_<name>`` (its typed value),
    and with ``containers`` the ``c_<name>`` of a string field (see typed_select).
    """
    v, t, n = f"v_{f.name}", f"t_{f.name}", f"'{f.name}'"
    out: list[tuple[str, str]] = []
    if f.required:
        blank = f"{v} IS NULL" + (f" OR trim({v}) = ''" if f.type is FieldType.STRING else "")
        out.append((blank, f"{n} || ': missing'"))
    present = f"{v} IS NOT NULL"
    match f.type:
        case FieldType.TIMESTAMP:
            out.append(
                (f"{present} AND {t} IS NULL", f"{n} || ': not a timestamp: ' || wr_quote({v})")
            )
            out.append(
                (
                    f"{t} < TIMESTAMP '{TS_MIN}' OR {t} >= TIMESTAMP '{TS_MAX}'",
                    f"{n} || ': out of range: ' || wr_quote({v})",
                )
            )
        case FieldType.INT | FieldType.BIGINT:
            out.append(
                (f"{present} AND {t} IS NULL", f"{n} || ': not an integer: ' || wr_quote({v})")
            )
            if f.name == "status":
                out.append(
                    (
                        f"{t} NOT BETWEEN 100 AND 599",
                        f"{n} || ': not an HTTP status: ' || wr_quote({v})",
                    )
                )
            else:
                out.append((f"{t} < 0", f"{n} || ': negative: ' || wr_quote({v})"))
        case FieldType.MONEY:
            out.append(
                (f"{present} AND {t} IS NULL", f"{n} || ': not a number: ' || wr_quote({v})")
            )
            # the typed value holds 12 places: digits past them are caught in the
            # text, and for an exponent form (1e-13) by a wider cast
            out.append(
                (
                    f"{t} <> CAST({t} AS DECIMAL(38,6)) "
                    rf"OR regexp_matches({v}, '\.[0-9]{{12}}[0-9]*[1-9]') "
                    f"OR (contains(lower({v}), 'e') AND "
                    f"(TRY_CAST(trim({v}) AS DECIMAL(38,30)) <> "
                    f"CAST(TRY_CAST(trim({v}) AS DECIMAL(38,30)) AS DECIMAL(38,6)) "
                    f"OR ({t} = 0 AND TRY_CAST(trim({v}) AS DOUBLE) <> 0)))",
                    f"{n} || ': more than 6 decimal places: ' || wr_quote({v})",
                )
            )
            out.append(
                (f"abs({t}) >= 1000000000000", f"{n} || ': out of range: ' || wr_quote({v})")
            )
            out.append(
                (
                    f"n_{f.name} AND abs({t}) >= 1000000000",
                    f"{n} || ': too large for an exact binary number; quote it as a string'",
                )
            )
        case FieldType.DOUBLE:
            out.append(
                (
                    f"{present} AND ({t} IS NULL OR NOT isfinite({t}))",
                    f"{n} || ': not a number: ' || wr_quote({v})",
                )
            )
        case FieldType.STRING if containers:
            out.append(
                (f"c_{f.name} IS NOT NULL", f"{n} || ': expected a string, got ' || c_{f.name}")
            )
        case FieldType.STRING:
            out.append(
                (
                    f"left({v}, 1) IN ('{{', '[') AND coalesce(json_valid({v}), false)",
                    f"{n} || ': expected a string, got ' || CASE WHEN left({v}, 1) = '{{' "
                    "THEN 'an object' ELSE 'an array' END",
                )
            )
    if f.type is FieldType.STRING and f.choices:
        allowed = ", ".join(f"'{c}'" for c in f.choices)
        out.append(
            (
                f"{t} NOT IN ({allowed})",
                f"{n} || ': unknown value ' || wr_quote({v}) || "
                f"' (expected one of {'|'.join(f.choices)})'",
            )
        )
    return out


_ROW_RULES: dict[Kind, list[tuple[str, str]]] = {
    Kind.requests: [
        (
            "t_cached_tokens > coalesce(t_input_tokens, 0)",
            "'cached_tokens: more than input_tokens'",
        ),
    ],
    Kind.ledger: [
        ("v_amount IS NULL AND t_kind IS DISTINCT FROM 'reset'", "'amount: missing'"),
        (
            "t_kind = 'reset' AND v_balance_after IS NULL",
            "'balance_after: missing (required for a reset)'",
        ),
        (
            "t_kind = 'charge' AND (v_request_id IS NULL OR trim(v_request_id) = '')",
            "'request_id: missing (required for a charge)'",
        ),
        ("t_kind = 'charge' AND t_amount > 0", "'amount: a charge must not be positive'"),
        (
            "t_kind IN ('refund', 'topup', 'grant') AND t_amount < 0",
            "'amount: a ' || t_kind || ' must not be negative'",
        ),
        (
            "t_cached_tokens > coalesce(t_input_tokens, 0)",
            "'cached_tokens: more than input_tokens'",
        ),
    ],
    Kind.abuse: [
        ("t_until < t_ts", "'until: before ts'"),
        ("t_multiplier <= 0", "'multiplier: not positive'"),
    ],
    Kind.prices: [
        (
            "t_input_per_mtok < 0 OR t_cached_per_mtok < 0 OR t_output_per_mtok < 0",
            "'price: negative'",
        ),
    ],
}


def typed_select(
    kind: Kind, source: str, *, extra: tuple[str, ...] = (), containers: bool = False
) -> str:
    """The SELECT turning ``source`` into ``line``, ``extra``, the canonical
    columns of ``kind`` and ``reason`` (NULL for a good row).

    ``source`` has the columns ``line``, ``pre_reason`` (a reason found before
    the fields were read, e.g. malformed JSON; it wins over field checks), a text
    column ``v_<field>`` per canonical field (NULL when absent), and for each
    money field a boolean ``n_<field>``: true where the value was read through a
    binary double (a JSON number), which is exact only to 15 digits.

    With ``containers``, ``source`` also has for each string field a column
    ``c_<field>``: ``'an object'`` or ``'an array'`` where the value was one
    (rejected), else NULL, so a string whose text happens to be JSON (``"[1]"``)
    is kept. Without it, such a text is taken for an object or array: right
    only for a source that cannot tell the two apart.

    Each value is typed once; the reason text is built only for bad rows.
    """
    fields = FIELDS[kind]
    typed = ", ".join(f"{_typed(f)} AS t_{f.name}" for f in fields)
    checks = [c for f in fields for c in _checks(f, containers)] + _ROW_RULES[kind]
    # coalesce(cond, false): a NULL condition (a comparison with a missing
    # optional value) is not a failure
    bad = " OR ".join(f"coalesce({cond}, false)" for cond, _ in checks)
    reasons = ", ".join(f"CASE WHEN coalesce({cond}, false) THEN {why} END" for cond, why in checks)
    cols = []
    for f in fields:
        expr = f"t_{f.name}"
        if kind is Kind.prices and f.name == "cached_per_mtok":
            expr = "coalesce(t_cached_per_mtok, t_input_per_mtok)"
        if f.type is FieldType.MONEY:
            # TRY_: a rejected row's value may not fit (its reason says so)
            expr = f"TRY_CAST({expr} AS DECIMAL(18,6))"
        if f.default is not None:
            expr = f"coalesce({expr}, {f.default})"
        cols.append(f"{expr} AS {f.name}")
    extra_cols = "".join(f", {c}" for c in extra)
    reason = (
        f"CASE WHEN pre_reason IS NOT NULL THEN pre_reason "
        f"WHEN {bad} THEN concat_ws('; ', {reasons}) END"
    )
    return (
        f"SELECT line{extra_cols}, {', '.join(cols)}, {reason} AS reason "
        f"FROM (SELECT *, {typed} FROM {source})"
    )
