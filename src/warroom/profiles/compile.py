"""A mapping -> SQL: the SELECT giving, for the rows a mapping applies to, the
``v_<field>`` texts (and ``n_``/``c_`` flags) that ``convert.typed_select``
types and checks, so a row read through a profile is accepted or rejected
exactly like a canonical one.

Every input row arrives as JSON text. The SELECT is built in stages, so that
every value is read or computed once per row: the documents' paths (one parse
per document), the source texts, map and default, the numbers, the conversions
(minor units, scale, sign, rounding, epoch timestamps) in exact DECIMAL
arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from warroom.model import FIELDS, Field, FieldType
from warroom.profiles.model import Condition, FieldSpec, JsonPath, Mapping

#: ISO 4217 currencies whose minor unit is not 1/100, as Stripe counts them:
#: zero-decimal currencies and three-decimal ones
ZERO_DECIMAL = (
    "bif",
    "clp",
    "djf",
    "gnf",
    "jpy",
    "kmf",
    "krw",
    "mga",
    "pyg",
    "rwf",
    "ugx",
    "vnd",
    "vuv",
    "xaf",
    "xof",
    "xpf",
)
THREE_DECIMAL = ("bhd", "jod", "kwd", "omr", "tnd")

_NUMBER = r"'[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?'"

#: an exact decimal as short text (no trailing zeros)
DTEXT_MACRO = r"""CREATE OR REPLACE TEMP MACRO wr_dtext(d) AS
        regexp_replace(regexp_replace(CAST(d AS VARCHAR), '(\.[0-9]*?)0+$', '\1'), '\.$', '')"""


def install_dtext_macro(con: Any) -> None:
    """Define ``wr_dtext``, which the money conversions use (idempotent)."""
    con.execute(DTEXT_MACRO)


def lit(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def duck_path(segments: Sequence[str | int]) -> str:
    """A path's segments as DuckDB's JSON path (``$."a"[0]``)."""
    out = "$"
    for s in segments:
        out += f"[{s}]" if isinstance(s, int) else f'."{s}"'
    return out


class _Docs:
    """The JSON documents one mapping reads. Each document is parsed twice in all
    (every path's text, every path's JSON type), however many paths it has."""

    def __init__(self, doc_cols: dict[str | None, str]):
        self.doc_cols = doc_cols
        self.paths: dict[str | None, list[str]] = {lvl: [] for lvl in doc_cols}
        #: every JsonPath read, in order: its columns are p<k>_t (text), p<k>_y (type)
        self.read: list[JsonPath] = []

    @staticmethod
    def _lists(level: str | None) -> tuple[str, str]:
        tag = "row" if level is None else level
        return f"es_{tag}", f"ey_{tag}"

    def _ref(self, level: str | None, duck_path: str) -> tuple[str, str]:
        lst = self.paths[level]
        if duck_path not in lst:
            lst.append(duck_path)
        i = lst.index(duck_path) + 1
        es, ey = self._lists(level)
        return f"{es}[{i}]", f"{ey}[{i}]"

    def col(self, p: JsonPath) -> int:
        """Register ``p``; its text and JSON type are the columns p<k>_t, p<k>_y."""
        if p not in self.read:
            self.read.append(p)
        return self.read.index(p)

    def _value(self, p: JsonPath) -> tuple[str, str]:
        """Text and JSON type of the value at ``p``. A top-level value holding a JSON
        object or array as a string (a JSON column exported as text, e.g. LiteLLM's
        ``metadata``) is looked into as well, parsed only where the path is not found
        directly."""
        t, y = _unmarked(*self._ref(p.level, duck_path(p.segments)))
        if len(p.segments) < 2:
            return t, y
        pt, py = self._ref(p.level, duck_path(p.segments[:1]))
        held = f"{py} = 'VARCHAR' AND left(ltrim({pt}), 1) IN ('{{', '[')"
        inner, rest = f"TRY_CAST({pt} AS JSON)", lit(duck_path(p.segments[1:]))
        ok = _set(t, y)
        return (
            f"CASE WHEN {ok} THEN {t} WHEN {held} THEN json_extract_string({inner}, {rest}) END",
            f"CASE WHEN {ok} THEN {y} WHEN {held} THEN json_type({inner}, {rest}) END",
        )

    def reads(self) -> str:
        """Stage 2: the p<k>_t / p<k>_y columns of every registered path."""
        cols = []
        for k, p in enumerate(self.read):
            t, y = self._value(p)
            cols.append(f"{t} AS p{k}_t, {y} AS p{k}_y")
        return ", ".join(cols)

    def extraction(self) -> str:
        """Stage 1: per document, the texts and the types of all its paths."""
        cols = []
        for lvl, doc in self.doc_cols.items():
            if self.paths[lvl]:
                lst = ", ".join(lit(p) for p in self.paths[lvl])
                es, ey = self._lists(lvl)
                cols.append(
                    f"json_extract_string({doc}, [{lst}]) AS {es}, "
                    f"json_type({doc}, [{lst}]) AS {ey}"
                )
        return ", ".join(cols)


#: what ``ingest.relations`` puts before the text of a JSON number it turned into a
#: string (so that it is read as written, never through a double); followed by
#: ``d``, the text of a Parquet DOUBLE (a number read through a double)
NUMBER_MARK = "chr(1)"


def _unmarked(t: str, y: str) -> tuple[str, str]:
    """The text and type of a value: a marked number as its text and type NUMBER,
    a marked double as its text and type DOUBLE."""
    marked = f"({y} = 'VARCHAR' AND starts_with({t}, {NUMBER_MARK}))"
    double = f"starts_with({t}, {NUMBER_MARK} || 'd')"
    return (
        f"CASE WHEN {marked} THEN CASE WHEN {double} THEN {t}[3:] ELSE {t}[2:] END ELSE {t} END",
        f"CASE WHEN {marked} THEN CASE WHEN {double} THEN 'DOUBLE' ELSE 'NUMBER' END ELSE {y} END",
    )


def _set(t: str, y: str) -> str:
    """SQL: the value is set (present, not a JSON null, not an empty string)."""
    return f"({y} IS NOT NULL AND {y} <> 'NULL' AND NOT ({y} = 'VARCHAR' AND {t} = ''))"


def _pick(ks: Sequence[int], part: str) -> str:
    """The text (``part`` t) or type (y) of the first of the paths ``ks`` that is set."""
    whens = " ".join(f"WHEN {_set(f'p{k}_t', f'p{k}_y')} THEN p{k}_{part}" for k in ks)
    return f"CASE {whens} END"


def _condition_sql(c: Condition, text: str) -> str:
    match c.op:
        case "equals":
            return f"coalesce({text} = {lit(c.values[0])}, false)"
        case "in":
            return f"coalesce({text} IN ({', '.join(map(lit, c.values))}), false)"
        case "not_in":
            return f"coalesce({text} NOT IN ({', '.join(map(lit, c.values))}), true)"
        case "present":
            return f"({text} IS {'NOT ' if c.flag else ''}NULL)"
        case "nonzero":
            zero = (
                f"coalesce(regexp_full_match(trim({text}), {_NUMBER}) AND "
                f"TRY_CAST(trim({text}) AS DOUBLE) = 0, false)"
            )
            nonzero = f"({text} IS NOT NULL AND NOT {zero})"
            return nonzero if c.flag else f"NOT {nonzero}"
        case _:
            return f"coalesce(regexp_full_match({text}, {lit(c.values[0])}), false)"
    raise AssertionError(c.op)  # pragma: no cover


def _money_sql(spec: FieldSpec, s: str, d: str, cur: str) -> str:
    """``s`` (text; ``d`` its DECIMAL(38,18) value, ``cur`` the currency for minor units)
    through scale or minor units, sign flip and rounding, in exact DECIMAL arithmetic."""
    # |d| is bounded by the CASE below, so the DECIMAL products cannot overflow
    limit = 15 - max(spec.scale_exp or 0, 0)
    bound = f"CAST('{10**limit}' AS DECIMAL(38,18))"
    y = f"greatest(least({d}, {bound}), -{bound})"
    if spec.scale_exp is not None:
        e = spec.scale_exp
        digits = max(-e, 0)
        factor = f"CAST('{Decimal(10) ** e:f}' AS DECIMAL({max(e, 0) + 1 + digits},{digits}))"
        y = f"({y} * {factor})"
    if spec.minor_units is not None:
        zero = ", ".join(map(lit, ZERO_DECIMAL))
        three = ", ".join(map(lit, THREE_DECIMAL))
        factor = (
            f"CAST(CASE WHEN {cur} IN ({zero}) THEN '1' WHEN {cur} IN ({three}) "
            "THEN '0.001' ELSE '0.01' END AS DECIMAL(4,3))"
        )
        y = f"({y} * {factor})"
    if spec.negate:
        y = f"(-{y})"
    if spec.round is not None:
        y = f"round({y}, {spec.round})"
    keep = f"{d} IS NULL OR abs({d}) >= {bound}"
    if spec.round is None:
        # Digits past the 18th decimal place (or an exponent form not exact there)
        # cannot be converted without rounding: without an explicit `round` the text
        # goes through as it is, and is rejected for its decimal places.
        keep += (
            rf" OR regexp_matches({s}, '\.[0-9]{{18}}[0-9]*[1-9]') OR "
            f"(contains(lower({s}), 'e') AND TRY_CAST(trim({s}) AS DOUBLE) <> "
            f"CAST({d} AS DOUBLE))"
        )
    return f"CASE WHEN {keep} THEN {s} ELSE wr_dtext({y}) END"


def _epoch_sql(spec: FieldSpec, s: str, d: str) -> str:
    """Epoch seconds or milliseconds (``d``, the number in ``s``) -> ISO text; any
    other text unchanged."""
    assert spec.epoch is not None
    secs = d if spec.epoch == "s" else f"({d} * CAST('0.001' AS DECIMAL(4,3)))"
    clamped = f"greatest(least({secs}, 4102444800), 0)"
    iso = (
        f"strftime(make_timestamp(CAST(round({clamped} * 1000000) AS BIGINT)), "
        "'%Y-%m-%dT%H:%M:%S.%fZ')"
    )
    return (
        f"CASE WHEN {d} IS NULL THEN {s} "
        f"WHEN {secs} >= 0 AND {secs} < 4102444800 THEN {iso} "
        f"ELSE {s} || ' (epoch {spec.epoch}, out of range)' END"
    )


def _converts(spec: FieldSpec) -> bool:
    return (
        spec.epoch is not None
        or spec.scale_exp is not None
        or spec.minor_units is not None
        or spec.negate
        or spec.round is not None
    )


def _picks(m: Mapping, docs: _Docs) -> list[str]:
    """Stage 3: the value of each field and test, from the first of its paths set."""
    picks: list[str] = []
    for f in FIELDS[m.kind]:
        spec = m.fields.get(f.name)
        if spec is None:
            continue
        if spec.paths:
            ks = [docs.col(p) for p in spec.paths]
            picks.append(f"{_pick(ks, 't')} AS x_{f.name}_t, {_pick(ks, 'y')} AS x_{f.name}_y")
        elif spec.template is not None:
            for i, part in enumerate(spec.template):
                if not isinstance(part, str):
                    picks.append(f"{_pick([docs.col(part[0])], 't')} AS t_{f.name}_{i}")
        if spec.minor_units is not None:
            picks.append(f"lower({_pick([docs.col(spec.minor_units)], 't')}) AS cur_{f.name}")
    for i, cond in enumerate(m.when):
        picks.append(f"{_pick([docs.col(cond.path)], 't')} AS w_{i}")
    return picks


def _base(name: str, spec: FieldSpec | None) -> str:
    """Stage 4: the source text ``b_``, whether it is a JSON number ``n0_``, and
    whether it is a JSON container ``c_``."""
    if spec is None:
        return f"NULL::VARCHAR AS b_{name}, false AS n0_{name}, NULL::VARCHAR AS c_{name}"
    carry_cur = f", cur_{name}" if spec.minor_units else ""
    if spec.paths:
        y = f"x_{name}_y"
        return (
            f"x_{name}_t AS b_{name}, "
            # only a number read through a double (a Parquet DOUBLE): JSON numbers
            # arrive as their text (see NUMBER_MARK), integers are exact
            f"coalesce({y} = 'DOUBLE', false) AS n0_{name}, "
            f"CASE {y} WHEN 'OBJECT' THEN 'an object' "
            f"WHEN 'ARRAY' THEN 'an array' END AS c_{name}" + carry_cur
        )
    if spec.const is not None:
        return (
            f"{lit(spec.const)} AS b_{name}, false AS n0_{name}, "
            f"NULL::VARCHAR AS c_{name}" + carry_cur
        )
    assert spec.template is not None
    texts = [
        lit(p)
        if isinstance(p, str)
        else (f"coalesce(t_{name}_{i}, '')" if p[1] else f"t_{name}_{i}")
        for i, p in enumerate(spec.template)
    ]
    required = [
        f"t_{name}_{i}" for i, p in enumerate(spec.template) if not isinstance(p, str) and not p[1]
    ]
    missing = " OR ".join(f"{r} IS NULL" for r in required) or "false"
    return (
        f"CASE WHEN {missing} THEN NULL ELSE concat({', '.join(texts)}) END "
        f"AS b_{name}, false AS n0_{name}, NULL::VARCHAR AS c_{name}" + carry_cur
    )


def _mapped(name: str, spec: FieldSpec | None) -> str:
    """Stage 5: the text ``s_`` after ``map`` and ``default``; a mapped or
    default value is text, not a JSON number (``n_``)."""
    if spec is None:
        return f"b_{name} AS s_{name}, n0_{name} AS n_{name}, c_{name}"
    carry_cur = f", cur_{name}" if spec.minor_units else ""
    b, n = f"b_{name}", f"n0_{name}"
    text = b
    if spec.map:
        explicit = [(k, v) for k, v in spec.map if k != "*"]
        wild = dict(spec.map).get("*")
        whens = "".join(f" WHEN {b} = {lit(k)} THEN {lit(v)}" for k, v in explicit)
        other = lit(wild) if wild is not None else b
        if wild is not None:
            n = "false"
        elif explicit:
            n = (
                f"CASE WHEN {b} IN ({', '.join(lit(k) for k, _ in explicit)}) "
                f"THEN false ELSE {n} END"
            )
        text = f"CASE WHEN {b} IS NULL THEN NULL{whens} ELSE {other} END"
    if spec.default is not None:
        n = f"CASE WHEN {b} IS NULL THEN false ELSE {n} END"
        text = f"coalesce({text}, {lit(spec.default)})"
    return f"{text} AS s_{name}, {n} AS n_{name}, c_{name}" + carry_cur


def _converted(f: Field, spec: FieldSpec | None) -> tuple[str | None, str]:
    """Stages 6 and 7: the number ``d_`` in a text that gets converted (or None),
    and the columns typed_select reads, conversions applied."""
    name = f.name
    number, v = None, f"s_{name}"
    if spec is not None and _converts(spec):
        scale = 6 if f.type is FieldType.TIMESTAMP else 18
        number = (
            f"CASE WHEN regexp_full_match(trim(s_{name}), {_NUMBER}) "
            f"THEN TRY_CAST(trim(s_{name}) AS DECIMAL(38,{scale})) END "
            f"AS d_{name}"
        )
        if f.type is FieldType.TIMESTAMP:
            v = _epoch_sql(spec, f"s_{name}", f"d_{name}")
        else:
            v = _money_sql(spec, f"s_{name}", f"d_{name}", f"cur_{name}")
    final = [f"{v} AS v_{name}"]
    if f.type is FieldType.MONEY:
        final.append(f"n_{name}")
    if f.type is FieldType.STRING:
        final.append(f"c_{name}")
    return number, ", ".join(final)


def money_sources(m: Mapping) -> list[str]:
    """The money fields of ``m`` whose source text a reason may show (``src_<field>``):
    those not rounded, which are rejected for more than 6 decimal places."""
    return [
        f.name
        for f in FIELDS[m.kind]
        if f.type is FieldType.MONEY
        and (spec := m.fields.get(f.name)) is not None
        and spec.round is None
        and (spec.paths or spec.template is not None)
    ]


def _stages(m: Mapping, docs: _Docs, source: str, carry: str, picks: list[str]) -> tuple[str, str]:
    """Stages 1 to 3 (the paths read, the picks) and the WHERE of ``m``'s conditions."""
    where = " AND ".join(_condition_sql(cond, f"w_{i}") for i, cond in enumerate(m.when)) or "true"
    reads = docs.reads()  # registers the documents' paths: before the extraction
    extraction = docs.extraction()
    s1 = f"SELECT {carry}" + (f", {extraction}" if extraction else "") + f" FROM {source}"
    s2 = f"SELECT {carry}" + (f", {reads}" if reads else "") + f" FROM ({s1})"
    s3 = f"SELECT {carry}" + "".join(f", {x}" for x in picks) + f" FROM ({s2})"
    return s3, where


def mapping_values(
    m: Mapping, source: str, keys: Sequence[str], doc_cols: dict[str | None, str]
) -> str:
    """SELECT ``line``, ``keys``, ``pos``, ``pre_reason`` and the ``v_/n_/c_`` columns
    ``convert.typed_select`` reads, for the rows of ``source`` that ``m`` applies to;
    with ``src_<field>`` the source text of the ``money_sources``.

    ``doc_cols`` names the column holding each document the paths read: the
    row's (key None) or, with ``each``, each level's item.
    """
    docs = _Docs(doc_cols)
    fields = FIELDS[m.kind]
    picks = _picks(m, docs)
    base = [_base(f.name, m.fields.get(f.name)) for f in fields]
    mapped = [_mapped(f.name, m.fields.get(f.name)) for f in fields]
    converted = [_converted(f, m.fields.get(f.name)) for f in fields]
    numbers = [number for number, _ in converted if number is not None]
    final = [cols for _, cols in converted]
    final += [f"s_{name} AS src_{name}" for name in money_sources(m)]
    carry = ", ".join(["line", *keys, "pos"])
    s3, where = _stages(m, docs, source, carry, picks)
    s4 = f"SELECT {carry}, {', '.join(base)} FROM ({s3}) WHERE {where}"
    s5 = f"SELECT {carry}, {', '.join(mapped)} FROM ({s4})"
    s6 = f"SELECT *{''.join(f', {x}' for x in numbers)} FROM ({s5})"
    return f"SELECT {carry}, NULL::VARCHAR AS pre_reason, {', '.join(final)} FROM ({s6})"


def reject_values(
    m: Mapping, source: str, keys: Sequence[str], doc_cols: dict[str | None, str]
) -> str:
    """SELECT ``line``, ``keys``, ``pos`` and ``reason`` (``m.reject`` with its
    placeholders filled) for the rows of ``source`` that the rejecting mapping
    ``m`` applies to."""
    assert m.reject is not None
    docs = _Docs(doc_cols)
    picks = [f"{_pick([docs.col(c.path)], 't')} AS w_{i}" for i, c in enumerate(m.when)]
    parts = []
    for i, part in enumerate(m.reject):
        if isinstance(part, str):
            parts.append(lit(part))
        else:
            picks.append(f"{_pick([docs.col(part[0])], 't')} AS r_{i}")
            parts.append(f"coalesce(r_{i}, '(none)')")
    carry = ", ".join(["line", *keys, "pos"])
    s3, where = _stages(m, docs, source, carry, picks)
    return f"SELECT {carry}, concat({', '.join(parts)}) AS reason FROM ({s3}) WHERE {where}"


def _conversions(spec: FieldSpec) -> str:
    """The conversions a money field's value went through, as a mapping file names them."""
    names = [
        ("scale", spec.scale_exp is not None),
        ("minor_units", spec.minor_units is not None),
        ("negate", spec.negate),
    ]
    return ", ".join(n for n, on in names if on)


def relabel(m: Mapping, reason: str) -> str:
    """Reasons name the source field (``startTime: missing``), not the canonical one,
    and add the field's ``hint``; a money value with too many decimal places shows
    its source text and suggests ``round``."""
    cases = []
    for name in money_sources(m):
        spec = m.fields[name]
        label = spec.label or name
        places = f"{name}: more than 6 decimal places: "
        conv = _conversions(spec)
        after = f" || ' (after {conv}: ' || p[{len(places) + 1}:] || ')'" if conv else ""
        cases.append(
            f"WHEN starts_with(p, {lit(places)}) THEN "
            f"{lit(label + ': more than 6 decimal places: ')} || wr_quote(src_{name}){after} "
            f"|| {lit(f'; add round = 6 to {name} to round it half-up to 6 places')}"
        )
    for name, spec in m.fields.items():
        label = spec.label or name
        hint = f" || {lit(' (' + spec.hint + ')')}" if spec.hint else ""
        if label == name and not hint:
            continue
        prefix = f"{name}: "
        cases.append(
            f"WHEN starts_with(p, {lit(prefix)}) THEN "
            f"{lit(label + ': ')} || p[{len(prefix) + 1}:]{hint}"
        )
    if not cases:
        return reason
    return (
        f"array_to_string(list_transform(string_split({reason}, '; '), "
        f"lambda p: CASE {' '.join(cases)} ELSE p END), '; ')"
    )
