"""The SQL an import profile runs (``profiles/apply.py``, ``profiles/compile.py``)
translated for Spark: the fixes it needs beyond ``translate_ingest``'s, each for
one construct SQLGlot leaves in a form Spark reads differently or not at all.

* the items of a JSON array as their texts, ``CAST(json_extract(d, '$.a[*]') AS
  VARCHAR[])``: DuckDB writes each element back as it was read (keys in their
  order, a string quoted); Spark's ``get_json_object`` + ``from_json`` as
  ``array<string>`` copies an object or array as written, and a string element
  (given unquoted) is quoted again by ``to_json``; the one value of
  ``CAST(json_extract(d, '$.a') AS VARCHAR)`` likewise (VARIANT's text would
  sort the keys);
* two ``unnest`` of a list and its positions (``unnest(items)``,
  ``unnest(range(1, len(items) + 1))``) in one SELECT -> one ``inline`` of
  (item, position) structs (Spark takes one generator per SELECT);
* ``concat`` (NULL as '') -> ``||`` of ``coalesce(x, '')``;
* ``strftime(ts, fmt)`` with a literal format -> ``date_format`` with the Java
  pattern (letters outside a field quoted);
* ``json_object(k, v, ...)`` -> ``to_json(named_struct(...))`` keeping null
  fields, as DuckDB's object does;
* ``string_agg(x, sep ORDER BY ...)`` -> Spark 4's ``listagg ... WITHIN
  GROUP`` (without an ORDER BY it is refused: the order would be each
  engine's own); a lambda over ``string_split`` -> ``transform``/``array_join``;
  ``bool_or`` as it is.
"""

from __future__ import annotations

from sqlglot import exp

from warroom.spark.translate import Untranslatable, bottom_up, variant_path

#: what the profile SQL adds (with the fixes) to the ingest's constructs
PROFILE_ALLOWED: frozenset[type[exp.Expr]] = frozenset(
    {
        exp.ArrayToString,
        exp.Explode,
        exp.GroupConcat,
        exp.LogicalOr,
        exp.Order,
        exp.Placeholder,
        exp.Transform,
        exp.WithinGroup,
    }
)
#: Spark functions the fixes write
PROFILE_FUNCTIONS = frozenset(
    {
        "date_format",
        "from_json",
        "get_json_object",
        "inline",
        "map",
        "named_struct",
        "to_json",
        "try_element_at",
    }
)

#: DuckDB strftime codes -> Java date patterns
_STRFTIME = {
    "%Y": "yyyy",
    "%m": "MM",
    "%d": "dd",
    "%H": "HH",
    "%M": "mm",
    "%S": "ss",
    "%f": "SSSSSS",
}


def _func(fname: str, *args: exp.Expr) -> exp.Anonymous:
    return exp.Anonymous(this=fname, expressions=list(args))


def _s(text: str) -> exp.Literal:
    return exp.Literal.string(text)


def _quoted(x: exp.Expr) -> exp.Expr:
    """A string's JSON text (quoted, escaped), by Spark's JSON writer."""
    arr = _func("to_json", exp.Array(expressions=[x]))
    inner = exp.Sub(this=exp.Length(this=arr.copy()), expression=exp.Literal.number(2))
    return exp.Substring(this=arr, start=exp.Literal.number(2), length=inner)


def _is_string(variant: exp.Expr) -> exp.Expr:
    return exp.Like(this=_func("schema_of_variant", variant), expression=_s("STRING%"))


def _extract_text(node: exp.Cast, name: str) -> exp.Expr | None:
    """``CAST(json_extract(doc, path) AS VARCHAR / VARCHAR[])`` as the texts
    DuckDB writes, or None when ``node`` is not one."""
    inner = node.this
    if not isinstance(inner, exp.JSONExtract) or not isinstance(inner.expression, exp.JSONPath):
        return None
    doc, parts = inner.this, list(inner.expression.expressions)
    many = node.to.is_type(exp.DataType.Type.ARRAY)
    if many:
        last = parts[-1]
        if not (
            isinstance(last, exp.JSONPathSubscript) and isinstance(last.this, exp.JSONPathWildcard)
        ):
            raise Untranslatable(f"{name}: a list of JSON texts from a path not ending in [*]")
        parts = parts[:-1]
    elif not node.to.is_type(*exp.DataType.TEXT_TYPES):
        return None
    path = variant_path(exp.JSONPath(expressions=parts), name)
    text = _func("get_json_object", doc.copy(), path)
    value = _func("try_variant_get", _func("try_parse_json", doc.copy()), path.copy())
    if not many:
        return exp.Case(
            ifs=[
                exp.If(this=exp.Is(this=value.copy(), expression=exp.Null()), true=exp.Null()),
                exp.If(this=_is_string(value), true=_quoted(text.copy())),
            ],
            default=text,
        )
    texts = _func("from_json", text, _s("array<string>"))
    kinds = _func(
        "try_variant_get",
        _func("try_parse_json", doc.copy()),
        path.copy(),
        _s("array<variant>"),
    )
    x, i = exp.to_identifier("wr_x"), exp.to_identifier("wr_i")
    one = exp.Add(this=exp.column("wr_i"), expression=exp.Literal.number(1))
    element = _func("try_element_at", kinds, one)  # (counts from 1)
    body = exp.Case(
        ifs=[
            exp.If(this=exp.Is(this=exp.column("wr_x"), expression=exp.Null()), true=_s("null")),
            exp.If(this=_is_string(element), true=_quoted(exp.column("wr_x"))),
        ],
        default=exp.column("wr_x"),
    )
    return exp.Transform(this=texts, expression=exp.Lambda(this=body, expressions=[x, i]))


def _strftime(node: exp.TimeToStr, name: str) -> exp.Expr:
    fmt = node.args.get("format")
    if not (isinstance(fmt, exp.Literal) and fmt.is_string):
        raise Untranslatable(f"{name}: strftime with a format that is not a literal")
    out, text, at = [], fmt.this, 0
    while at < len(text):
        code = text[at : at + 2]
        if code in _STRFTIME:
            out.append(_STRFTIME[code])
            at += 2
        elif text[at] == "%":
            raise Untranslatable(f"{name}: strftime code {code!r} has no Spark form here")
        else:
            ch = text[at]
            out.append(f"'{ch}'" if ch.isalpha() else ("''" if ch == "'" else ch))
            at += 1
    return _func("date_format", node.this, _s("".join(out)))


def _concat(node: exp.Concat) -> exp.Expr:
    parts = [exp.Coalesce(this=p.copy(), expressions=[_s("")]) for p in node.expressions]
    out: exp.Expr = parts[0]
    for p in parts[1:]:
        out = exp.DPipe(this=out, expression=p)
    return exp.Paren(this=out)


def _json_object(node: exp.JSONObject, name: str) -> exp.Expr:
    args: list[exp.Expr] = []
    for kv in node.expressions:
        if not isinstance(kv, exp.JSONKeyValue):
            raise Untranslatable(f"{name}: json_object takes key, value pairs")
        args += [kv.this.copy(), kv.expression.copy()]
    options = _func("map", _s("ignoreNullFields"), _s("false"))
    return _func("to_json", _func("named_struct", *args), options)


def fix_profile_calls(tree: exp.Expr, name: str) -> exp.Expr:
    """The JSON texts, ``strftime``, ``concat`` and ``json_object`` (module doc)."""

    def fix(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Cast):
            return _extract_text(node, name) or node
        if isinstance(node, exp.TimeToStr):
            return _strftime(node, name)
        if type(node) is exp.Concat:  # (not concat_ws, a subclass: Spark's is alike)
            return _concat(node)
        if isinstance(node, exp.JSONObject):
            return _json_object(node, name)
        if isinstance(node, exp.GroupConcat) and not isinstance(node.this, exp.Order):
            raise Untranslatable(f"{name}: string_agg without ORDER BY: its order is Spark's own")
        return node

    return bottom_up(tree, fix)


def _positions_of(node: exp.Expr) -> exp.Expr | None:
    """``unnest(range(1, len(X) + 1))`` -> X, else None."""
    if not isinstance(node, exp.Explode | exp.Unnest):
        return None
    seq = node.this if isinstance(node, exp.Explode) else node.expressions[0]
    if not isinstance(seq, exp.GenerateSeries | exp.Anonymous):
        return None
    end = seq.args.get("end")
    start = seq.args.get("start")
    if not (isinstance(start, exp.Literal) and start.this == "1" and isinstance(end, exp.Add)):
        return None
    size = end.this
    if isinstance(size, exp.Length | exp.ArraySize):
        return size.this if isinstance(size.this, exp.Expr) else None
    return None


def fix_unnest_pairs(tree: exp.Expr, name: str) -> exp.Expr:
    """A SELECT's ``unnest(X) AS a, unnest(range(1, len(X) + 1)) AS b`` -> one
    ``inline`` of (a, b) structs, positions from 1."""
    for select in tree.find_all(exp.Select):
        items = select.expressions
        gens = [e for e in items if isinstance(e, exp.Alias) and isinstance(e.this, exp.Explode)]
        if not gens:
            continue
        if len(gens) != 2:
            raise Untranslatable(f"{name}: unnest other than of a list and its positions")
        first, second = gens
        listed = _positions_of(second.this)
        if listed is None or listed != first.this.this:
            raise Untranslatable(f"{name}: unnest other than of a list and its positions")
        x, i = exp.to_identifier("wr_x"), exp.to_identifier("wr_i")
        one = exp.Add(this=exp.column("wr_i"), expression=exp.Literal.number(1))
        struct = _func("named_struct", _s(first.alias), exp.column("wr_x"), _s(second.alias), one)
        pairs = exp.Transform(
            this=first.this.this.copy(), expression=exp.Lambda(this=struct, expressions=[x, i])
        )
        at = items.index(first)
        kept = [e for e in items if e is not first and e is not second]
        kept.insert(at, _func("inline", pairs))
        select.set("expressions", kept)
    return tree


PROFILE_FIXES = (fix_unnest_pairs, fix_profile_calls)
