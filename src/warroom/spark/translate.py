"""The pack's DuckDB-dialect SQL, translated for Spark SQL (DESIGN.md section 6).

One SQL source: every query, shared relation and the impact arithmetic is
written once, for DuckDB, and carried to Spark by SQLGlot
(``sqlglot.transpile(..., read="duckdb", write="spark")``) plus the small layer
of fixes below, each for one thing SQLGlot leaves in a form Spark reads
differently or not at all. Everything else is checked against a list of the
constructs known to mean the same on both engines (``ALLOWED``): a construct
outside it is refused with its name and the file, so a new query cannot
silently change meaning on the Spark path (``tests/test_spark_translate.py``
translates every file of the pack).

The fixes:

* ``last_value(x IGNORE NULLS)`` / ``first_value``: Spark's own two-argument
  form (``last_value(x, true)``), which every Spark 3.x and 4.x reads;
* ``epoch_us(ts)``: Spark's ``unix_micros(ts)``;
* ``$name`` parameters: Spark's named parameter markers (``:name``), bound by
  ``spark.sql(text, args=...)``, never formatted into the text;
* a ``RANGE`` frame must have the same unit on both ends (DESIGN.md section 6)
  and an interval bound must be a single-unit literal;
* ``median`` / ``quantile*`` / ``percentile*`` are refused: DuckDB's median
  interpolates and Spark's percentile is a double; the pack writes the lower
  median (DESIGN.md section 7.2) with ``row_number`` and ``count``, which both
  engines compute exactly;
* comments are dropped (the header lines are DuckDB's business).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from warroom.errors import QueryError


class Untranslatable(QueryError):
    """The SQL holds a construct the Spark translation does not carry over."""


#: expressions that mean the same in DuckDB and in Spark once SQLGlot has
#: written them (with the fixes below); anything else is refused
ALLOWED: frozenset[type[exp.Expr]] = frozenset(
    {
        exp.Abs,
        exp.Add,
        exp.Alias,
        exp.And,
        exp.Between,
        exp.Boolean,
        exp.Case,
        exp.Cast,
        exp.Coalesce,
        exp.Column,
        exp.ConcatWs,
        exp.Count,
        exp.CTE,
        exp.DataType,
        exp.DataTypeParam,
        exp.Distinct,
        exp.DPipe,
        exp.EQ,
        exp.Except,
        exp.Exists,
        exp.FirstValue,
        exp.From,
        exp.Greatest,
        exp.Group,
        exp.GT,
        exp.GTE,
        exp.Having,
        exp.Identifier,
        exp.If,
        exp.In,
        exp.Interval,
        exp.Intersect,
        exp.Is,
        exp.Join,
        exp.Lag,
        exp.LastValue,
        exp.Lead,
        exp.Least,
        exp.Length,
        exp.Limit,
        exp.Literal,
        exp.Lower,
        exp.LT,
        exp.LTE,
        exp.Max,
        exp.Min,
        exp.Mul,
        exp.Neg,
        exp.NEQ,
        exp.Not,
        exp.Null,
        exp.Nullif,
        exp.NullSafeEQ,
        exp.NullSafeNEQ,
        exp.Or,
        exp.Order,
        exp.Ordered,
        exp.Paren,
        exp.Placeholder,
        exp.Round,
        exp.RowNumber,
        exp.Select,
        exp.Star,
        exp.Sub,
        exp.Subquery,
        exp.Sum,
        exp.Table,
        exp.TableAlias,
        exp.TimestampTrunc,
        exp.Trim,
        exp.Union,
        exp.Upper,
        exp.Var,
        exp.Where,
        exp.Window,
        exp.WindowSpec,
        exp.With,
        # produced by the fixes
        exp.IgnoreNulls,
        exp.UnixMicros,
    }
)

#: the units an interval literal may have (same name, same length on both engines)
INTERVAL_UNITS = frozenset({"SECOND", "MINUTE", "HOUR", "DAY"})


def to_spark(sql: str, *, name: str = "query") -> str:
    """``sql`` (one DuckDB-dialect statement of the pack) as Spark SQL text.

    ``name`` (the file) starts the message of an ``Untranslatable`` error."""
    text = sql.strip().rstrip(";").strip()
    try:
        tree = sqlglot.parse_one(text, read="duckdb")
    except ParseError as exc:
        raise Untranslatable(f"{name}: SQLGlot cannot read it: {_first_line(exc)}") from None
    for fix in FIXES:
        tree = fix(tree, name)
    check(tree, name)
    return tree.sql(dialect="spark", comments=False)


# --------------------------------------------------------------------------- fixes


def fix_ignore_nulls(tree: exp.Expr, name: str) -> exp.Expr:
    """``last_value(x IGNORE NULLS)`` (DuckDB's spelling; SQLGlot writes it as
    ``last_value(x) IGNORE NULLS``) -> ``last_value(x, true)``: Spark's own form
    of the same aggregate. Only first_value and last_value take it here."""

    def fix(node: exp.Expr) -> exp.Expr:
        if not isinstance(node, exp.IgnoreNulls):
            return node
        inner = node.this
        if isinstance(inner, exp.FirstValue | exp.LastValue):
            func = "first_value" if isinstance(inner, exp.FirstValue) else "last_value"
            return exp.Anonymous(this=func, expressions=[inner.this, exp.true()])
        raise Untranslatable(
            f"{name}: IGNORE NULLS is carried to Spark for first_value and last_value only "
            f"(got {inner.sql('duckdb')[:60]})"
        )

    return tree.transform(fix)


def fix_epoch_us(tree: exp.Expr, name: str) -> exp.Expr:
    """``epoch_us(ts)`` (microseconds since the epoch) -> ``unix_micros(ts)``."""

    def fix(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Anonymous) and str(node.this).lower() == "epoch_us":
            if len(node.expressions) != 1:
                raise Untranslatable(f"{name}: epoch_us takes one argument")
            return exp.UnixMicros(this=node.expressions[0])
        return node

    return tree.transform(fix)


def fix_parameters(tree: exp.Expr, name: str) -> exp.Expr:
    """``$name`` -> the named marker ``:name`` (SQLGlot reads DuckDB's ``$name``
    as a placeholder; ``$1`` positional ones are refused: the pack names its
    parameters)."""
    for node in tree.find_all(exp.Placeholder, exp.Parameter):
        if isinstance(node, exp.Parameter) or not node.name or node.name.isdigit():
            raise Untranslatable(
                f"{name}: parameter {node.sql('duckdb')} must be named ($name) to carry to Spark"
            )
    return tree


def fix_frames(tree: exp.Expr, name: str) -> exp.Expr:
    """A ``RANGE`` frame: the same interval unit on both ends, each bound a
    literal interval, UNBOUNDED or CURRENT ROW (Spark refuses or misreads the
    rest)."""
    for spec in tree.find_all(exp.WindowSpec):
        if str(spec.args.get("kind") or "").upper() != "RANGE":
            continue
        units = set()
        for side in ("start", "end"):
            bound = spec.args.get(side)
            if isinstance(bound, exp.Interval):
                units.add(_interval_unit(bound, name))
            elif bound is not None and str(bound).upper() not in ("UNBOUNDED", "CURRENT ROW"):
                raise Untranslatable(
                    f"{name}: a RANGE frame bound must be an interval literal, "
                    f"UNBOUNDED or CURRENT ROW (got {bound.sql('duckdb')})"
                )
        if len(units) > 1:
            raise Untranslatable(
                f"{name}: a RANGE frame needs the same unit on both ends (got {sorted(units)})"
            )
    return tree


def fix_medians(tree: exp.Expr, name: str) -> exp.Expr:
    """Refuse DuckDB's median and quantiles: they interpolate where the pack
    means the lower median, and Spark's percentile answers in doubles."""
    for agg in tree.find_all(
        exp.Median, exp.Quantile, exp.PercentileCont, exp.PercentileDisc, exp.ApproxQuantile
    ):
        raise Untranslatable(
            f"{name}: {agg.sql('duckdb')[:40]}: write the lower median with row_number() and "
            "count() (DESIGN.md 7.2); median and quantiles do not carry to Spark exactly"
        )
    for call in tree.find_all(exp.Anonymous):
        if str(call.this).lower().startswith(("quantile", "percentile", "median")):
            raise Untranslatable(
                f"{name}: {call.this}(...): write the lower median with row_number() and count()"
            )
    return tree


FIXES: tuple[Callable[[exp.Expr, str], exp.Expr], ...] = (
    fix_medians,
    fix_parameters,
    fix_frames,
    fix_epoch_us,
    fix_ignore_nulls,
)


# --------------------------------------------------------------------------- the check


#: the functions the fixes write as plain calls
FUNCTIONS = frozenset({"first_value", "last_value"})


def check(
    tree: exp.Expr,
    name: str,
    allowed: frozenset[type[exp.Expr]] = ALLOWED,
    functions: frozenset[str] = frozenset(),
) -> None:
    """Raise ``Untranslatable`` for the first construct outside ``allowed`` (and
    a plain call of a function outside ``FUNCTIONS`` and ``functions``)."""
    for node in tree.walk():
        if isinstance(node, exp.Anonymous):
            if str(node.this).lower() in FUNCTIONS | functions:
                continue
            raise Untranslatable(
                f"{name}: function {node.this}() is not known to mean the same on Spark"
            )
        if type(node) not in allowed:
            raise Untranslatable(
                f"{name}: {type(node).__name__} ({node.sql('duckdb')[:60]}) "
                "is not known to mean the same on Spark"
            )
        if isinstance(node, exp.Interval):
            _interval_unit(node, name)
        if isinstance(node, exp.Join):
            _check_join(node, name)


#: the joins both engines read alike (SEMI, ANTI, ASOF, POSITIONAL are DuckDB's)
JOIN_KINDS = frozenset({"", "INNER", "OUTER", "CROSS"})
JOIN_SIDES = frozenset({"", "LEFT", "RIGHT", "FULL"})


def _check_join(node: exp.Join, name: str) -> None:
    method = str(node.args.get("method") or "").upper()
    kind = str(node.args.get("kind") or "").upper()
    side = str(node.args.get("side") or "").upper()
    if method or kind not in JOIN_KINDS or side not in JOIN_SIDES:
        raise Untranslatable(
            f"{name}: {' '.join(x for x in (method, side, kind) if x)} JOIN is not known to "
            "mean the same on Spark"
        )


def _interval_unit(node: exp.Interval, name: str) -> str:
    unit = node.args.get("unit")
    text = unit.name.upper() if unit is not None else ""
    if text not in INTERVAL_UNITS or not isinstance(node.this, exp.Literal):
        raise Untranslatable(
            f"{name}: interval {node.sql('duckdb')}: write INTERVAL 'N' "
            f"{'|'.join(sorted(INTERVAL_UNITS))}"
        )
    return text


# --------------------------------------------------------------------------- tree helpers


def bottom_up(tree: exp.Expr, fix: Callable[[exp.Expr], exp.Expr]) -> exp.Expr:
    """``fix`` applied to every node, children before their parent (so a fix
    that wraps a node's argument wraps it fixed), each node once."""
    nodes = list(tree.walk(bfs=False))
    for node in reversed(nodes):
        new = fix(node)
        if new is not node:
            if node is tree:
                tree = new
            else:
                node.replace(new)
    return tree


def variant_path(path: exp.Expr, name: str) -> exp.Literal:
    """A DuckDB JSON path (``$``, ``$."key"``, ``$.key``, ``[0]`` indexes) as
    Spark's ``$['key'][0]``."""
    if isinstance(path, exp.JSONPath):
        parts = path.expressions[1:]
        if not all(isinstance(p, exp.JSONPathKey | exp.JSONPathSubscript) for p in parts) or any(
            isinstance(p, exp.JSONPathSubscript) and not isinstance(p.this, int) for p in parts
        ):
            raise Untranslatable(f"{name}: JSON path {path.sql('duckdb')}: keys and indexes only")
        steps = [p.this if isinstance(p, exp.JSONPathSubscript) else str(p.this) for p in parts]
    elif isinstance(path, exp.Literal) and path.is_string:
        steps = _path_steps(path.this, name)
    else:
        raise Untranslatable(f"{name}: a JSON path must be a literal")
    return exp.Literal.string("$" + "".join(_step(k, name) for k in steps))


_PATH_STEP = re.compile(r'\.(?:"([^"]*)"|([A-Za-z_][A-Za-z0-9_]*))|\[([0-9]+)\]')


def _path_steps(text: str, name: str) -> list[str | int]:
    """The keys and indexes of a DuckDB JSON path's text."""
    if not text.startswith("$"):
        raise Untranslatable(f'{name}: JSON path {text!r}: write $."key"')
    steps: list[str | int] = []
    at = 1
    while at < len(text):
        m = _PATH_STEP.match(text, at)
        if not m:
            raise Untranslatable(f'{name}: JSON path {text!r}: write $."key"')
        steps.append(int(m.group(3)) if m.group(3) is not None else m.group(1) or m.group(2) or "")
        at = m.end()
    return steps


def _step(key: str | int, name: str) -> str:
    if isinstance(key, int):
        return f"[{key}]"
    if "'" in key or "\\" in key:
        raise Untranslatable(f"{name}: JSON key {key!r}: a quote or backslash in a key")
    return f"['{key}']"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
