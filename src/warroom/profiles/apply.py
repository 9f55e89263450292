"""Running a profile on a file's rows: expand ``each`` levels into items, map
them through every mapping, and load a row only if all that apply succeed.

The rows arrive in the temp table ``wr_prow`` (see ``ingest.relations``); the
good ones go into the canonical tables through the caller's ``insert_good``,
the bad ones into ``rejects`` with every reason found, prefixed by the
profile's name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import duckdb

from warroom.ingest.convert import typed_select
from warroom.model import Kind
from warroom.profiles.compile import (
    duck_path,
    install_dtext_macro,
    lit,
    mapping_values,
    relabel,
)
from warroom.profiles.model import JsonPath, Levels, Profile

InsertGood = Callable[[duckdb.DuckDBPyConnection, Kind, str, dict[str, object]], int]
"""insert_good(con, kind, typed SELECT, params) -> rows inserted: see ingest.load."""


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


def _level_items(prev: str, paths: Sequence[JsonPath]) -> str:
    """The items of one level: the array found first (its elements), or an object."""
    vals = [f"json_extract({prev}, {lit(duck_path(p.segments))})" for p in paths]
    chosen = (
        "coalesce("
        + ", ".join(f"CASE WHEN json_type({v}) IN ('ARRAY', 'OBJECT') THEN {v} END" for v in vals)
        + ")"
    )
    return (
        f"CASE json_type({chosen}) WHEN 'ARRAY' THEN json_extract({chosen}, '$[*]') "
        f"WHEN 'OBJECT' THEN [{chosen}] END"
    )


def _expand(con: duckdb.DuckDBPyConnection, exp: _Expansion) -> None:
    """Rows -> the items of ``exp``, numbered (k_<level>, from 1) and with ``pos``
    ("bucket 2, result 1") where a row holds more than one item."""
    prev_cols = ["line"]
    sql = "SELECT line, d::JSON AS l_row FROM wr_prow WHERE pre_reason IS NULL"
    prev_doc = "l_row"
    for lvl, paths in exp.levels:
        carry = ", ".join(prev_cols)
        sql = (
            f"SELECT {carry}, unnest(items) AS l_{lvl}, "
            f"unnest(range(1, len(items) + 1)) AS k_{lvl} FROM ("
            f"SELECT {carry}, {_level_items(prev_doc, paths)} AS items FROM ({sql}))"
        )
        prev_cols += [f"l_{lvl}", f"k_{lvl}"]
        prev_doc = f"l_{lvl}"
    pos = " || ', ' || ".join(f"'{lvl} ' || k_{lvl}" for lvl, _ in exp.levels)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {exp.table} AS SELECT *, "
        f"CASE WHEN count(*) OVER (PARTITION BY line) > 1 THEN {pos} END AS pos "
        f"FROM ({sql})"
    )
    first_paths = exp.levels[0][1]
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {exp.table}_rows AS SELECT line FROM wr_prow "
        f"WHERE pre_reason IS NULL AND "
        f"{_level_items('d::JSON', first_paths)} IS NOT NULL"
    )


def _none_applies(desc: str) -> str:
    """The reason of a row or item no mapping took, naming the mappings' conditions."""
    return lit("no mapping applies (" + desc + ")")


def _map_one(
    con: duckdb.DuckDBPyConnection, profile: Profile, i: int, exp: _Expansion | None
) -> None:
    """Mapping ``i`` over its rows (or ``exp``'s items) into ``wr_pm<i>``, typed and
    checked; the reasons of its bad ones into ``wr_pparts``."""
    m = profile.mappings[i]
    if exp is None:
        keys: list[str] = []
        source = "(SELECT *, NULL::VARCHAR AS pos FROM wr_prow WHERE pre_reason IS NULL)"
        doc_cols: dict[str | None, str] = {None: "d"}
    else:
        keys = exp.keys
        source = exp.table
        doc_cols = {lvl: f"l_{lvl}" for lvl, _ in m.each}
    values = mapping_values(m, source, keys, doc_cols)
    typed = typed_select(m.kind, f"({values})", extra=(*keys, "pos"))
    con.execute(f"CREATE OR REPLACE TEMP TABLE wr_pm{i} AS {typed}")
    reason = relabel(m, "reason")
    con.execute(
        f"INSERT INTO wr_pparts SELECT line, {i + 1}, "
        f"coalesce(pos || ': ', '') || {reason} FROM wr_pm{i} "
        "WHERE reason IS NOT NULL"
    )


def _note_unmapped(
    con: duckdb.DuckDBPyConnection,
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
            f"INSERT INTO wr_pparts SELECT e.line, {1000 + n}, coalesce(e.pos || ': ', '') || "
            f"{_none_applies(desc)} FROM {exp.table} e "
            f"WHERE NOT EXISTS (SELECT 1 FROM ({taken}) t WHERE {on})"
        )
    handled = [f"SELECT line FROM {e.table}_rows" for e in expansions]
    handled += [f"SELECT line FROM wr_pm{i}" for i in plain]
    desc = "; ".join(m.describe() for m in profile.mappings)
    unhandled = (
        f"NOT IN (SELECT line FROM ({' UNION '.join(handled)}))" if handled else "IS NOT NULL"
    )
    con.execute(
        f"INSERT INTO wr_pparts SELECT line, 2000, "
        f"{_none_applies(desc)} FROM wr_prow "
        f"WHERE pre_reason IS NULL AND line {unhandled}"
    )


def map_rows(
    con: duckdb.DuckDBPyConnection,
    profile: Profile,
    source_id: int,
    insert_good: InsertGood,
    pre_bad: Sequence[tuple[int, str, str]] = (),
) -> tuple[int, int]:
    """Map the rows of the temp table ``wr_prow`` through ``profile`` into the
    canonical tables; returns (rows loaded, rows rejected).

    ``wr_prow`` has ``line``, ``raw`` (the text kept for a reject), ``d`` (the row
    as JSON text) and ``pre_reason`` (why the row is not a JSON object, or NULL).
    ``pre_bad`` are (line, raw, reason) of lines that could not even be read.
    A row is loaded when every mapping that applies to it succeeds, and rejected
    as a whole (one reject, reasons joined) otherwise, or when none applies.
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
    # parts of the reasons of bad rows: (line, order, text)
    con.execute("CREATE OR REPLACE TEMP TABLE wr_pparts (line BIGINT, ord INTEGER, reason VARCHAR)")
    con.execute(
        "INSERT INTO wr_pparts SELECT line, 0, pre_reason FROM wr_prow WHERE pre_reason IS NOT NULL"
    )
    exp_of = {i: e for e in expansions for i in e.mappings}
    for i in range(len(profile.mappings)):
        _map_one(con, profile, i, exp_of.get(i))
    _note_unmapped(con, profile, expansions, plain)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE wr_pbad AS
            SELECT line, {lit(profile.name + ": ")} || string_agg(reason, '; '
                ORDER BY ord, reason) AS reason
            FROM (SELECT line, reason, min(ord) AS ord FROM wr_pparts GROUP BY line, reason)
            GROUP BY line"""
    )
    loaded, bad = _write(con, profile, source_id, insert_good, pre_bad)
    for i in range(len(profile.mappings)):
        con.execute(f"DROP TABLE wr_pm{i}")
    for exp in expansions:
        con.execute(f"DROP TABLE {exp.table}")
        con.execute(f"DROP TABLE {exp.table}_rows")
    con.execute("DROP TABLE wr_pparts")
    con.execute("DROP TABLE wr_pbad")
    return loaded, bad


def _write(
    con: duckdb.DuckDBPyConnection,
    profile: Profile,
    source_id: int,
    insert_good: InsertGood,
    pre_bad: Sequence[tuple[int, str, str]],
) -> tuple[int, int]:
    """Good rows into the canonical tables, bad ones (``wr_pbad``) into rejects;
    returns (rows loaded, rows rejected)."""
    params: dict[str, object] = {"source_id": source_id}
    for i, m in enumerate(profile.mappings):
        insert_good(
            con,
            m.kind,
            f"SELECT * FROM wr_pm{i} WHERE line NOT IN (SELECT line FROM wr_pbad)",
            params,
        )
    con.execute(
        "INSERT INTO rejects SELECT $source_id, b.line, r.raw, b.reason "
        "FROM wr_pbad b JOIN wr_prow r USING (line)",
        params,
    )
    if pre_bad:
        con.executemany(
            "INSERT INTO rejects VALUES (?, ?, ?, ?)",
            [[source_id, line, raw, f"{profile.name}: {why}"] for line, raw, why in pre_bad],
        )
    row = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE line IN (SELECT line FROM wr_pbad)) FROM wr_prow"
    ).fetchone()
    total, bad = (int(row[0]), int(row[1])) if row else (0, 0)
    return total - bad, bad + len(pre_bad)
