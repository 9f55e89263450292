"""Ingest's typing and reject rules (``ingest/convert.py``, ``ingest/relations.py``),
translated for Spark SQL: the same DuckDB-dialect SQL, never a second copy.

``ingest_to_spark`` runs the pack's translation (``translate.FIXES``) plus the
fixes below, each for one construct of the ingest SQL that SQLGlot leaves in a
form Spark reads differently or not at all, then checks the result against
``translate.ALLOWED`` widened by ``INGEST_ALLOWED``: anything else is refused
(``tests/test_spark_translate.py`` translates every rule of every kind and
format). The fixes:

* DuckDB macros (``wr_epoch``, ``wr_dec``, ``wr_exp_places``, ``wr_quote``,
  ``wr_csv_unquote``, a profile's ``wr_dtext``) are expanded inline from their very definitions;
* regular expressions: RE2 (DuckDB) and Java (Spark) agree on the syntax the
  rules use; Java's ``.`` and ``$`` also stop at CR and other line ends, so each
  pattern gets ``(?d)`` (only LF ends a line, as in RE2), and a JSON string's
  body ``(?:[^"\\]|\\.)*`` its unrolled possessive form (the same strings,
  without Java's recursion per character); a full match is
  ``^(?:p)\\z``; ``regexp_replace``'s ``'g'`` is Spark's only way (a pattern
  anchored at its end by ``$`` matches once: with or without ``'g'``), its
  ``\\1`` Java's ``$1``; POSIX classes (``[[:alpha:]]``, which Java reads as a
  plain set) and RE2's ``(?P<name>`` are refused;
* a string slice ``x[a:b]`` -> ``substring``; ``len``/``array_length`` ->
  ``array_size``; ``list_position`` -> ``array_position``; a two-argument
  ``list_filter`` lambda counts from 1 as DuckDB does (Spark counts from 0);
  ``list_has_any`` -> ``arrays_overlap``;
* JSON: DuckDB's JSON values are Spark's VARIANT (parsed with duplicate keys
  allowed; ``json_record_reason`` finds them first): ``x::JSON`` ->
  ``try_parse_json``, ``json_extract``/``json_extract_string`` (one path or a
  list) -> ``try_variant_get``, ``json_type`` -> DuckDB's type names from
  ``schema_of_variant``, ``json_keys`` -> ``json_object_keys``, ``json_valid``
  -> the text parses as the one element of an array (Spark's parser stops after
  the first value: ``{} x`` would pass alone);
* ``isfinite`` -> not NaN nor infinite; ``TRY_CAST(x AS DOUBLE)`` only on a
  decimal number's text (Java's reader also takes ``1.5d`` and hex floats,
  which DuckDB refuses);
* a Parquet column's text (``types``: the file's DuckDB column types):
  ``CAST(col AS VARCHAR)``, ``to_json(col)`` and the row's ``to_json({...})``
  become Spark SQL giving DuckDB's very text (``spark/duck_text.py``: doubles,
  decimals, timestamps with a zone, nested values, NULL fields), written in
  after the check.
"""

from __future__ import annotations

import re
from functools import cache

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from warroom.ingest.relations import json_key
from warroom.spark import duck_text
from warroom.spark.translate import (
    ALLOWED,
    FIXES,
    Untranslatable,
    bottom_up,
    check,
    variant_path,
)

#: what the ingest SQL adds to the pack's portable constructs (with the fixes)
INGEST_ALLOWED: frozenset[type[exp.Expr]] = ALLOWED | frozenset(
    {
        exp.Array,
        exp.ArrayFilter,
        exp.ArrayDistinct,
        exp.Bracket,
        exp.Chr,
        exp.Contains,
        exp.Div,
        exp.JSONKeys,
        exp.Lambda,
        exp.Left,
        exp.Like,
        exp.RegexpExtract,
        exp.RegexpExtractAll,
        exp.RegexpLike,
        exp.RegexpReplace,
        exp.Replace,
        exp.Right,
        exp.Split,
        exp.StartsWith,
        exp.StrPosition,
        exp.Substring,
        exp.TryCast,
        exp.UnixToTime,
    }
)
#: Spark functions the fixes write
INGEST_FUNCTIONS = frozenset(
    {
        "array_position",
        "array_size",
        "arrays_overlap",
        "isnan",
        "json_array_length",
        "schema_of_variant",
        "try_parse_json",
        "try_variant_get",
    }
)

#: a decimal number's text, as DuckDB's cast to DOUBLE reads it (blanks around)
_NUMBER = r"[ \t\n\r]*[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?[ \t\n\r]*"
_MACRO = re.compile(
    r"CREATE\s+OR\s+REPLACE\s+TEMP\s+MACRO\s+(\w+)\s*\(([^)]*)\)\s+AS\s+(.*)\Z", re.S | re.I
)


def ingest_to_spark(sql: str, *, name: str = "ingest", types: dict[str, str] | None = None) -> str:
    """The DuckDB-dialect ingest SQL ``sql`` as Spark SQL text; ``types``: the
    DuckDB types of the Parquet columns it reads."""
    try:
        tree = sqlglot.parse_one(sql.strip().rstrip(";"), read="duckdb")
    except ParseError as exc:
        raise Untranslatable(f"{name}: SQLGlot cannot read it: {exc}".splitlines()[0]) from None
    rendered: list[str] = []
    if types is not None:
        tree = fix_parquet_text(tree, types, rendered)
    from warroom.spark.translate_profiles import PROFILE_ALLOWED, PROFILE_FIXES, PROFILE_FUNCTIONS

    for fix in (expand_macros, *PROFILE_FIXES, *FIXES, *INGEST_FIXES):
        tree = fix(tree, name)
    check(
        tree,
        name,
        INGEST_ALLOWED | PROFILE_ALLOWED,
        INGEST_FUNCTIONS | PROFILE_FUNCTIONS | {_PLACE},
    )
    text = tree.sql(dialect="spark", comments=False)
    return re.sub(rf"{_PLACE}\((\d+)\)", lambda m: rendered[int(m.group(1))], text, flags=re.I)


# --------------------------------------------------------------------------- macros


@cache
def macros() -> dict[str, tuple[tuple[str, ...], exp.Expr]]:
    """Every ingest macro: its parameters and its body, read from its definition."""
    from warroom.ingest.convert import _MACROS
    from warroom.ingest.relations import CSV_UNQUOTE_MACRO
    from warroom.profiles.compile import DTEXT_MACRO

    out = {}
    for text in [*_MACROS, CSV_UNQUOTE_MACRO, DTEXT_MACRO]:
        m = _MACRO.match(text.strip())
        if not m:
            raise Untranslatable(f"a macro the translation cannot read: {text[:60]}")
        params = tuple(p.strip().lower() for p in m.group(2).split(","))
        out[m.group(1).lower()] = (params, sqlglot.parse_one(m.group(3), read="duckdb"))
    return out


def expand_macros(tree: exp.Expr, name: str) -> exp.Expr:
    """Each call of an ingest macro replaced by its body, its parameters by the
    call's arguments (parenthesised): what DuckDB does when it binds a macro."""
    known = macros()

    def fix(node: exp.Expr) -> exp.Expr:
        if not isinstance(node, exp.Anonymous) or str(node.this).lower() not in known:
            return node
        params, body = known[str(node.this).lower()]
        if len(node.expressions) != len(params):
            raise Untranslatable(f"{name}: {node.this} takes {len(params)} argument(s)")
        args = dict(zip(params, node.expressions, strict=True))

        def bind(inner: exp.Expr) -> exp.Expr:
            if isinstance(inner, exp.Column) and not inner.table and inner.name.lower() in args:
                return exp.Paren(this=args[inner.name.lower()].copy())
            return inner

        return body.copy().transform(bind)

    return tree.transform(fix)


# --------------------------------------------------------------------------- regexes


#: a JSON string's body as the rules match it (any character but a quote or a
#: backslash, or an escape), and the same language unrolled and possessive:
#: Java's matcher recurses once per iteration of a group with alternation, and a
#: long string (a spend log's message) overflows its stack; here it recurses
#: once per escape only
_JSON_STRING_BODY = '(?:[^"\\\\]|\\\\.)*'
_JSON_STRING_BODY_JAVA = '[^"\\\\]*+(?:\\\\.[^"\\\\]*+)*+'


def _java(pattern: exp.Expr, name: str, full: bool = False) -> exp.Expr:
    """A pattern for Java: only LF ends a line (``(?d)``), as in RE2."""
    for lit in pattern.find_all(exp.Literal):
        if lit.is_string and ("[[:" in lit.this or "(?P<" in lit.this):
            raise Untranslatable(
                f"{name}: regular expression {lit.this[:40]!r}: POSIX classes and (?P<name> "
                "read differently in Java; write [a-z] or (?:...)"
            )
    if isinstance(pattern, exp.Literal) and pattern.is_string:
        body = pattern.this.replace(_JSON_STRING_BODY, _JSON_STRING_BODY_JAVA)
        text = f"(?d)^(?:{body})\\z" if full else f"(?d){body}"
        return exp.Literal.string(text)
    parts = [exp.Literal.string("(?d)^(?:" if full else "(?d)"), exp.Paren(this=pattern)]
    if full:
        parts.append(exp.Literal.string(")\\z"))
    out: exp.Expr = parts[0]
    for p in parts[1:]:
        out = exp.DPipe(this=out, expression=p)
    return out


def _replacement(node: exp.Expr) -> exp.Expr:
    """RE2's ``\\1`` as Java's ``$1``; a literal ``$`` escaped."""

    def fix(lit: exp.Expr) -> exp.Expr:
        if isinstance(lit, exp.Literal) and lit.is_string:
            text = lit.this.replace("$", "\\$")
            return exp.Literal.string(re.sub(r"\\([0-9])", r"$\1", text))
        return lit

    return node.copy().transform(fix)


def _end_anchored(pattern: exp.Expr) -> bool:
    """A literal pattern ending in an unescaped ``$`` with no alternation."""
    if not (isinstance(pattern, exp.Literal) and pattern.is_string):
        return False
    text = pattern.this
    return text.endswith("$") and not text.endswith("\\$") and "|" not in text


def fix_regexes(tree: exp.Expr, name: str) -> exp.Expr:
    def fix(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.RegexpFullMatch):
            return exp.RegexpLike(this=node.this, expression=_java(node.expression, name, True))
        if isinstance(node, exp.RegexpLike | exp.RegexpExtract | exp.RegexpExtractAll):
            if node.args.get("flag") is not None:
                raise Untranslatable(f"{name}: regular expression options do not carry to Spark")
            node.set("expression", _java(node.expression, name))
            return node
        if isinstance(node, exp.RegexpReplace):
            mods = node.args.get("modifiers")
            pattern = node.expression
            if mods is None and _end_anchored(pattern):
                # one match at most, at the end: the first is all ('g' alike);
                # Java's $ would also match before a last LF: \z
                pattern = exp.Literal.string(pattern.this[:-1] + "\\z")
            elif not (isinstance(mods, exp.Literal) and mods.this == "g"):
                raise Untranslatable(
                    f"{name}: regexp_replace without 'g' (the first match only) has no Spark form"
                )
            return exp.RegexpReplace(
                this=node.this,
                expression=_java(pattern, name),
                replacement=_replacement(node.args["replacement"]),
            )
        return node

    return bottom_up(tree, fix)


# --------------------------------------------------------------------------- lists, strings


def _func(fname: str, *args: exp.Expr) -> exp.Anonymous:
    return exp.Anonymous(this=fname, expressions=list(args))


def fix_lists(tree: exp.Expr, name: str) -> exp.Expr:
    def fix(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Bracket) and len(node.expressions) == 1:
            sl = node.expressions[0]
            if isinstance(sl, exp.Slice):  # a string slice: substring
                start, end = sl.this, sl.expression
                if end is None:
                    return exp.Substring(this=node.this, start=start)
                length = exp.Add(
                    this=exp.Sub(this=exp.Paren(this=end), expression=exp.Paren(this=start)),
                    expression=exp.Literal.number(1),
                )
                return exp.Substring(this=node.this, start=start, length=length)
        if isinstance(node, exp.Length | exp.ArraySize) and _is_list(node.this):
            return _func("array_size", node.this)
        if isinstance(node, exp.ArraySize):
            return _func("array_size", node.this)
        if isinstance(node, exp.Anonymous) and str(node.this).lower() == "list_position":
            return _func("array_position", *node.expressions)
        if isinstance(node, exp.ArrayOverlaps):
            return _func("arrays_overlap", node.this, node.expression)
        if isinstance(node, exp.ArrayFilter):
            _count_from_one(node.expression)
        return node

    return bottom_up(tree, fix)


def _is_list(node: exp.Expr) -> bool:
    return isinstance(node, exp.Array | exp.ArrayFilter | exp.ArrayDistinct | exp.JSONKeys)


def _count_from_one(lam: exp.Expr) -> None:
    """A lambda's second parameter (the element's index): DuckDB counts from 1."""
    if not isinstance(lam, exp.Lambda) or len(lam.expressions) < 2:
        return
    index = lam.expressions[1].name

    def shift(n: exp.Expr) -> exp.Expr:
        bare = isinstance(n, exp.Identifier) and not isinstance(n.parent, exp.Column)
        if (bare or isinstance(n, exp.Column) and not n.table) and n.name == index:
            return exp.Paren(this=exp.Add(this=n.copy(), expression=exp.Literal.number(1)))
        return n

    body = lam.this.transform(shift)
    lam.set("this", body)


# --------------------------------------------------------------------------- JSON


def _paths(node: exp.Expr) -> list[exp.Expr] | None:
    """The paths of a list form (``[p1, p2]``), or None for one path."""
    return list(node.expressions) if isinstance(node, exp.Array) else None


def _variant(doc: exp.Expr) -> exp.Expr:
    """``doc`` as a VARIANT (a ``::JSON`` cast already is one)."""
    if isinstance(doc, exp.Anonymous) and str(doc.this).lower() == "try_parse_json":
        return doc
    return _func("try_parse_json", doc)


def _json_type(value: exp.Expr) -> exp.Expr:
    """DuckDB's json_type names for a VARIANT: an integer is 'BIGINT' (DuckDB says
    'UBIGINT' for one >= 0: the rules never tell those apart), any other number
    'DOUBLE' (as DuckDB reads a fraction or an exponent)."""
    schema = _func("schema_of_variant", value)

    def when(prefix: str, out: str) -> exp.If:
        return exp.If(
            this=exp.Like(this=schema.copy(), expression=exp.Literal.string(prefix + "%")),
            true=exp.Literal.string(out),
        )

    return exp.Case(
        ifs=[
            when("OBJECT", "OBJECT"),
            when("ARRAY", "ARRAY"),
            when("STRING", "VARCHAR"),
            when("BOOLEAN", "BOOLEAN"),
            when("VOID", "NULL"),
            *[when(t, "BIGINT") for t in ("BIGINT", "INT", "SMALLINT", "TINYINT")],
            exp.If(
                this=exp.RegexpLike(
                    this=schema.copy(), expression=exp.Literal.string("^DECIMAL\\([0-9]+,0\\)$")
                ),
                true=exp.Literal.string("BIGINT"),
            ),
            exp.If(
                this=exp.Not(this=exp.Is(this=schema.copy(), expression=exp.Null())),
                true=exp.Literal.string("DOUBLE"),
            ),
        ]
    )


def _get(doc: exp.Expr, path: exp.Expr, name: str, as_text: bool) -> exp.Expr:
    args = [_variant(doc.copy()), variant_path(path, name)]
    if as_text:
        args.append(exp.Literal.string("string"))
    return _func("try_variant_get", *args)


def fix_json(tree: exp.Expr, name: str) -> exp.Expr:
    def fix(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Cast) and node.to.is_type(exp.DataType.Type.JSON):
            return _variant(node.this)
        if isinstance(node, exp.Anonymous) and str(node.this).lower() == "json_valid":
            wrapped = exp.DPipe(
                this=exp.DPipe(this=exp.Literal.string("["), expression=node.expressions[0]),
                expression=exp.Literal.string("]"),
            )
            return exp.Paren(
                this=exp.And(
                    this=exp.Not(this=exp.Is(this=_variant(wrapped), expression=exp.Null())),
                    expression=exp.EQ(
                        this=_func("json_array_length", wrapped.copy()),
                        expression=exp.Literal.number(1),
                    ),
                )
            )
        if isinstance(node, exp.JSONExtract | exp.JSONExtractScalar | exp.JSONType):
            return _json_call(node, name)
        if isinstance(node, exp.Anonymous) and str(node.this).lower() == "isfinite":
            x = node.expressions[0]
            inf = exp.Cast(this=exp.Literal.string("Infinity"), to=exp.DataType.build("DOUBLE"))
            return exp.Not(
                this=exp.Paren(
                    this=exp.Or(
                        this=_func("isnan", x.copy()),
                        expression=exp.EQ(this=exp.Abs(this=x.copy()), expression=inf),
                    )
                )
            )
        if isinstance(node, exp.TryCast) and node.to.is_type(exp.DataType.Type.DOUBLE):
            return exp.Case(
                ifs=[
                    exp.If(
                        this=exp.RegexpLike(
                            this=node.this.copy(),
                            expression=exp.Literal.string(f"(?d)^(?:{_NUMBER})\\z"),
                        ),
                        true=node.copy(),
                    )
                ]
            )
        return node

    return bottom_up(tree, fix)


def _json_call(node: exp.Expr, name: str) -> exp.Expr:
    path = node.expression
    if isinstance(node, exp.JSONType) and path is None:
        return _json_type(node.this)  # a JSON value already (a ::JSON cast, an extract)
    if path is None:
        raise Untranslatable(f"{name}: {node.sql('duckdb')[:40]}: a JSON path is needed")
    one = not isinstance(path, exp.Array)
    paths = [path] if one else list(path.expressions)
    text = isinstance(node, exp.JSONExtractScalar)
    values = [_get(node.this, p, name, text) for p in paths]
    if isinstance(node, exp.JSONType):
        values = [_json_type(v) for v in values]
    return values[0] if one else exp.Array(expressions=values)


INGEST_FIXES = (fix_regexes, fix_lists, fix_json)


# --------------------------------------------------------------------------- Parquet

#: the placeholder of a Parquet column's rendered text until the SQL is written
_PLACE = "wr_parquet_text"


def fix_parquet_text(tree: exp.Expr, types: dict[str, str], rendered: list[str]) -> exp.Expr:
    """``CAST(col AS VARCHAR)`` of a Parquet column, and ``to_json`` of the row's
    struct, as placeholders for the Spark SQL giving DuckDB's text
    (``duck_text.text_sql``, ``duck_text.json_sql``), kept in ``rendered``."""

    def place(sql: str) -> exp.Expr:
        rendered.append(f"({sql})")
        return _func(_PLACE, exp.Literal.number(len(rendered) - 1))

    def fix(node: exp.Expr) -> exp.Expr:
        if (
            isinstance(node, exp.Cast)
            and node.to.is_type(*exp.DataType.TEXT_TYPES)
            and isinstance(node.this, exp.Column)
            and node.this.name.lower() in types
        ):
            return place(
                duck_text.text_sql(duck_text.quoted(node.this.name), types[node.this.name.lower()])
            )
        if isinstance(node, exp.Anonymous) and str(node.this).lower() == "to_json":
            (arg,) = node.expressions
            if isinstance(arg, exp.Column):  # one column's value
                return place(
                    duck_text.json_sql(duck_text.quoted(arg.name), types[arg.name.lower()])
                )
            parts = []
            for item in arg.expressions:  # the row's struct
                key, col = item.this.name, item.expression.name
                value = duck_text.json_sql(duck_text.quoted(col), types[col.lower()])
                parts.append(f"{duck_text.lit(json_key(key) + ':')} || {value}")
            return place("'{' || " + " || ',' || ".join(parts) + " || '}'")
        return node

    return bottom_up(tree, fix)
