"""Running a profile on a file's rows: expand ``each`` levels into items, map
them through every mapping, and load a row only if all that apply succeed.

The rows arrive in the temp table ``wr_prow`` (see ``ingest.relations``); the
good ones go into the canonical tables through the caller's ``insert_good``,
the bad ones into ``rejects`` with every reason found, prefixed by the
profile's name. The statements run on an ``Executor``: DuckDB's connection, or
Spark's, which runs them translated (``spark/profiles.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from warroom.ingest.convert import typed_select
from warroom.model import Kind
from warroom.profiles.compile import (
    duck_path,
    install_dtext_macro,
    lit,
    mapping_values,
    money_sources,
    reject_values,
    relabel,
)
from warroom.profiles.model import JsonPath, Levels, Profile


class Executor(Protocol):
    """Where the mapping's statements run: a DuckDB connection, or Spark's
    (``spark/profiles.py``: the same statements, translated)."""

    def execute(self, query: str, parameters: Any = None, /) -> Any: ...

    def executemany(self, query: str, parameters: Any, /) -> Any: ...


InsertGood = Callable[[Any, Kind, str, dict[str, object], str | None], int]
"""insert_good(executor, kind, typed SELECT, params, element order) -> rows inserted:
see ingest.loaders."""


@dataclass
class _Expansion:
    """One distinct ``each`` of the profile: the table of items it expands rows
    into, and the mappings (by index) that read them."""

    levels: Levels
    table: str
    mappings: list[int] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        return [f"k_{lvl}" for lvl, _ in self.levels]

    def unit(self, n: int, prefix: str = "") -> str:
        """SQL: the item's unit, ``<n>:k1.k2``: it loads or is rejected on its own."""
        keys = " || '.' || ".join(f"{prefix}{k}" for k in self.keys)
        return f"'{n}:' || {keys}"


def _level_types(doc: str, paths: Sequence[JsonPath]) -> str:
    """SQL: the JSON types of a level's paths in ``doc`` (one parse for all)."""
    return f"json_type({doc}, [{', '.join(lit(duck_path(p.segments)) for p in paths)}])"


def _level_items(doc: str, types: str, paths: Sequence[JsonPath], first: bool) -> str:
    """The items of one level (JSON texts): the elements of the array found first,
    or the object (the document itself for ``$``: nothing re-read). Below the
    first level, an item without one holds a single NULL item, which no mapping
    takes: it is rejected, never silently dropped (an empty array is an empty
    list, and holds no item)."""
    whens = []
    for i, p in enumerate(paths, 1):
        path = duck_path(p.segments)
        obj = doc if not p.segments else f"CAST(json_extract({doc}, {lit(path)}) AS VARCHAR)"
        whens.append(
            f"WHEN {types}[{i}] = 'ARRAY' THEN "
            f"CAST(json_extract({doc}, {lit(path + '[*]')}) AS VARCHAR[]) "
            f"WHEN {types}[{i}] = 'OBJECT' THEN [{obj}]"
        )
    none = "" if first else " ELSE [NULL::VARCHAR]"
    return f"CASE {' '.join(whens)}{none} END"


def _expand(con: Executor, exp: _Expansion) -> None:
    """Rows -> the items of ``exp``, numbered (k_<level>, from 1), with ``pos``
    ("bucket 2, result 1") and ``item`` (its JSON text) where a row holds more than
    one item."""
    prev_cols = ["line"]
    sql = "SELECT line, d AS l_row FROM wr_prow WHERE pre_reason IS NULL"
    prev_doc = "l_row"
    for n, (lvl, paths) in enumerate(exp.levels):
        carry = ", ".join(prev_cols)
        items = _level_items(prev_doc, "ty", paths, n == 0)
        sql = (
            f"SELECT {carry}, unnest(items) AS l_{lvl}, "
            f"unnest(range(1, len(items) + 1)) AS k_{lvl} FROM ("
            f"SELECT {carry}, {items} AS items FROM ("
            f"SELECT *, {_level_types(prev_doc, paths)} AS ty FROM ({sql})))"
        )
        prev_cols += [f"l_{lvl}", f"k_{lvl}"]
        prev_doc = f"l_{lvl}"
    pos = " || ', ' || ".join(f"'{lvl} ' || k_{lvl}" for lvl, _ in exp.levels)
    several = "count(*) OVER (PARTITION BY line) > 1"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {exp.table} AS SELECT *, "
        f"CASE WHEN {several} THEN {pos} END AS pos, "
        f"CASE WHEN {several} THEN {prev_doc} END AS item "
        f"FROM ({sql})"
    )
    first_paths = exp.levels[0][1]
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {exp.table}_rows AS SELECT line FROM wr_prow "
        f"WHERE pre_reason IS NULL AND "
        f"list_has_any({_level_types('d', first_paths)}, ['ARRAY', 'OBJECT'])"
    )


def _none_applies(desc: str) -> str:
    """The reason of a row or item no mapping took, naming the mappings' conditions."""
    return lit("no mapping applies (" + desc + ")")


#: wr_pparts: the parts of the reasons of bad rows and items. ``unit`` is NULL for
#: a whole row, else the item's (see _Expansion.unit); ``final`` parts come from a
#: mapping that rejects, and stand alone; ``item`` is the item's JSON text
_PARTS = (
    "CREATE OR REPLACE TEMP TABLE wr_pparts (line BIGINT, unit VARCHAR, ord INTEGER, "
    "final BOOLEAN, reason VARCHAR, item VARCHAR)"
)


def _map_one(con: Executor, profile: Profile, i: int, exp: tuple[int, _Expansion] | None) -> None:
    """Mapping ``i`` over its rows (or ``exp``'s items) into ``wr_pm<i>``, typed and
    checked; the reasons of its bad ones into ``wr_pparts``."""
    m = profile.mappings[i]
    if exp is None:
        keys: list[str] = []
        source = (
            "(SELECT *, NULL::VARCHAR AS pos, NULL::VARCHAR AS item FROM wr_prow "
            "WHERE pre_reason IS NULL)"
        )
        doc_cols: dict[str | None, str] = {None: "d"}
        unit = "NULL::VARCHAR"
    else:
        n, expansion = exp
        keys = expansion.keys
        source = expansion.table
        doc_cols = {lvl: f"l_{lvl}" for lvl, _ in m.each}
        unit = expansion.unit(n)
    carried = [*keys, "item"]
    if m.reject is not None:
        values = reject_values(m, source, carried, doc_cols)
        con.execute(f"CREATE OR REPLACE TEMP TABLE wr_pm{i} AS {values}")
        con.execute(
            f"INSERT INTO wr_pparts SELECT line, {unit}, {i + 1}, true, "
            f"coalesce(pos || ': ', '') || reason, item FROM wr_pm{i}"
        )
        return
    values = mapping_values(m, source, carried, doc_cols)
    extra = (*carried, "pos", *(f"src_{n}" for n in money_sources(m)))
    typed = typed_select(m.kind, f"({values})", extra=extra)
    con.execute(f"CREATE OR REPLACE TEMP TABLE wr_pm{i} AS {typed}")
    reason = relabel(m, "reason")
    con.execute(
        f"INSERT INTO wr_pparts SELECT line, {unit}, {i + 1}, false, "
        f"coalesce(pos || ': ', '') || {reason}, item FROM wr_pm{i} "
        "WHERE reason IS NOT NULL"
    )


def _note_unmapped(
    con: Executor,
    profile: Profile,
    expansions: Sequence[_Expansion],
    plain: Sequence[int],
) -> None:
    """The reasons of rows and items no mapping took, into ``wr_pparts``."""
    for n, exp in enumerate(expansions):
        taken = " UNION ".join(
            f"SELECT line, {', '.join(exp.keys)} FROM wr_pm{i}" for i in exp.mappings
        )
        desc = "; ".join(profile.mappings[i].describe() for i in exp.mappings)
        on = " AND ".join(f"t.{k} = e.{k}" for k in ["line", *exp.keys])
        con.execute(
            f"INSERT INTO wr_pparts SELECT e.line, {exp.unit(n, 'e.')}, {1000 + n}, false, "
            f"coalesce(e.pos || ': ', '') || {_none_applies(desc)}, e.item FROM {exp.table} e "
            f"WHERE NOT EXISTS (SELECT 1 FROM ({taken}) t WHERE {on})"
        )
    handled = [f"SELECT line FROM {e.table}_rows" for e in expansions]
    handled += [f"SELECT line FROM wr_pm{i}" for i in plain]
    desc = "; ".join(m.describe() for m in profile.mappings)
    unhandled = (
        f"NOT IN (SELECT line FROM ({' UNION '.join(handled)}))" if handled else "IS NOT NULL"
    )
    con.execute(
        f"INSERT INTO wr_pparts SELECT line, NULL, 2000, false, "
        f"{_none_applies(desc)}, NULL FROM wr_prow "
        f"WHERE pre_reason IS NULL AND line {unhandled}"
    )


def map_rows(
    con: Executor,
    profile: Profile,
    source_id: int,
    insert_good: InsertGood,
    pre_bad: Sequence[tuple[int, str, str]] = (),
) -> tuple[int, int, int]:
    """Map the rows of the temp table ``wr_prow`` through ``profile`` into the
    canonical tables; returns (rows loaded, rejects written, rows rejected whole).

    ``wr_prow`` has ``line``, ``raw`` (the text kept for a reject), ``d`` (the row
    as JSON text) and ``pre_reason`` (why the row is not a JSON object, or NULL).
    ``pre_bad`` are (line, raw, reason) of lines that could not even be read.
    A row is loaded when every mapping that applies to it succeeds, and rejected
    as a whole (one reject, reasons joined) otherwise, or when none applies. An
    item of an ``each`` (a page's element) is loaded or rejected on its own in
    the same way: one bad element does not sink its page.
    """
    install_dtext_macro(con)
    by_each: dict[Levels, _Expansion] = {}
    plain: list[int] = []
    for i, m in enumerate(profile.mappings):
        if m.each:
            exp = by_each.setdefault(m.each, _Expansion(m.each, f"wr_each{len(by_each)}"))
            exp.mappings.append(i)
        else:
            plain.append(i)
    expansions = list(by_each.values())
    for exp in expansions:
        _expand(con, exp)
    con.execute(_PARTS)
    con.execute(
        "INSERT INTO wr_pparts SELECT line, NULL, 0, false, pre_reason, NULL FROM wr_prow "
        "WHERE pre_reason IS NOT NULL"
    )
    exp_of = {i: (n, e) for n, e in enumerate(expansions) for i in e.mappings}
    for i in range(len(profile.mappings)):
        _map_one(con, profile, i, exp_of.get(i))
    _note_unmapped(con, profile, expansions, plain)
    _bad_units(con, profile)
    counts = _write(con, profile, source_id, insert_good, pre_bad, exp_of)
    for i in range(len(profile.mappings)):
        con.execute(f"DROP TABLE wr_pm{i}")
    for exp in expansions:
        con.execute(f"DROP TABLE {exp.table}")
        con.execute(f"DROP TABLE {exp.table}_rows")
    for table in ("wr_pparts", "wr_pbad", "wr_pgood"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return counts


def _bad_units(con: Executor, profile: Profile) -> None:
    """``wr_pbad``: one reject per bad row (``unit`` NULL) or item, its reasons
    joined (a rejecting mapping's reason alone); the items of a row rejected whole
    are not rejected again."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE wr_pbad AS
            SELECT line, unit, {lit(profile.name + ": ")} || string_agg(reason, '; '
                ORDER BY ord, reason) AS reason, max(item) AS item
            FROM (SELECT *, bool_or(final) OVER (PARTITION BY line, unit) AS any_final
                  FROM (SELECT line, unit, reason, min(ord) AS ord, bool_or(final) AS final,
                               max(item) AS item
                        FROM wr_pparts GROUP BY line, unit, reason))
            WHERE final = any_final AND (unit IS NULL OR line NOT IN
                (SELECT line FROM wr_pparts WHERE unit IS NULL))
            GROUP BY line, unit"""
    )


def _write(
    con: Executor,
    profile: Profile,
    source_id: int,
    insert_good: InsertGood,
    pre_bad: Sequence[tuple[int, str, str]],
    exp_of: dict[int, tuple[int, _Expansion]],
) -> tuple[int, int, int]:
    """Good rows into the canonical tables, bad ones (``wr_pbad``) into rejects;
    returns (rows loaded, rejects written, rows rejected whole)."""
    params: dict[str, object] = {"source_id": source_id}
    good: list[str] = []
    for i, m in enumerate(profile.mappings):
        if m.reject is not None:
            continue
        keep = "line NOT IN (SELECT line FROM wr_pbad WHERE unit IS NULL)"
        order = None
        if i in exp_of:
            n, exp = exp_of[i]
            keep += (
                " AND NOT EXISTS (SELECT 1 FROM wr_pbad b WHERE b.line = g.line "
                f"AND b.unit = {exp.unit(n, 'g.')})"
            )
            order = ", ".join(exp.keys)
        rows = f"SELECT * FROM wr_pm{i} g WHERE reason IS NULL AND {keep}"
        insert_good(con, m.kind, rows, params, order)
        good.append(f"SELECT line FROM ({rows})")
    # a row is loaded unless it is rejected whole, or all its items are
    con.execute(
        "CREATE OR REPLACE TEMP TABLE wr_pgood AS SELECT line FROM wr_prow "
        "WHERE line NOT IN (SELECT line FROM wr_pbad) " + "".join(f"UNION {g} " for g in good)
    )
    con.execute(
        "INSERT INTO rejects SELECT $source_id, b.line, "
        "CASE WHEN b.unit IS NULL OR b.item IS NULL THEN r.raw "
        "ELSE regexp_replace(b.item, '\"\\\\u0001([^\"]*)\"', '\\1', 'g') END, b.reason "
        "FROM wr_pbad b JOIN wr_prow r USING (line)",
        params,
    )
    if pre_bad:
        con.executemany(
            "INSERT INTO rejects VALUES (?, ?, ?, ?)",
            [[source_id, line, raw, f"{profile.name}: {why}"] for line, raw, why in pre_bad],
        )
    row = con.execute(
        "SELECT (SELECT count(*) FROM wr_pgood), (SELECT count(*) FROM wr_pbad), "
        "(SELECT count(*) FROM wr_prow WHERE line NOT IN (SELECT line FROM wr_pgood))"
    ).fetchone()
    loaded, bad, whole = (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)
    return loaded, bad + len(pre_bad), whole + len(pre_bad)
