"""The ways a file's rows reach the canonical tables, inside the caller's transaction:
the fast path (DuckDB's own JSON reader over the file), the careful path (a clean
copy read line by line, staged, each bad line a reject) and a profile's mapping.
``insert_good`` writes the good rows and elects the canonical ones.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa

from warroom import profiles
from warroom.errors import InputError
from warroom.ingest import relations
from warroom.ingest.convert import line_reason, typed_select
from warroom.ingest.scan import (
    BadLine,
    TextScan,
    clean_copy,
    clip,
    last_line,
    plain_copy,
    read_lines,
)
from warroom.ingest.sniff import FilePlan, one_line
from warroom.model import FIELDS, IDENTITY, TABLES, Kind


def count_rows(con: duckdb.DuckDBPyConnection, sql: str, params: object = None) -> int:
    row = con.execute(sql, params).fetchone() if params else con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def insert_good(
    con: duckdb.DuckDBPyConnection,
    kind: Kind,
    typed_sql: str,
    params: dict[str, object],
    order: str | None = None,
) -> int:
    """Insert the good rows of ``typed_sql`` into the kind's table; returns the count.

    ``order`` (columns of ``typed_sql``) numbers the elements of one line (the
    items of a saved page, all on one line): of an id repeated there, the first
    element is canonical."""
    table = TABLES[kind]
    names = [f.name for f in FIELDS[kind]]
    cols = ", ".join(names)
    if kind not in IDENTITY:
        sql = f"""
            INSERT INTO {table} (source_id, line, {cols})
            SELECT $source_id, line, {cols} FROM ({typed_sql}) WHERE reason IS NULL"""
        row = con.execute(sql, params).fetchone()
        return int(row[0]) if row else 0
    key = IDENTITY[kind]
    # Canonical = the first ingested row of an id. Rows whose id an earlier
    # file already holds are not; canonical ids are unique, so the earlier
    # ones join without a DISTINCT. Repeats within this file are rare:
    # find them with a hash aggregate instead of sorting every row.
    first = (
        f" AND row_number() OVER (PARTITION BY g.{key}, g.line ORDER BY {order}) = 1"
        if order
        else ""
    )
    sql = f"""
            INSERT INTO {table} (source_id, line, canonical, {cols})
            SELECT $source_id, g.line, prev.{key} IS NULL{first},
                   {", ".join("g." + n for n in names)}
            FROM ({typed_sql}) g
            LEFT JOIN (SELECT {key} FROM {table} WHERE canonical) prev
                ON prev.{key} = g.{key}
            WHERE g.reason IS NULL"""
    row = con.execute(sql, params).fetchone()
    source_id = params["source_id"]
    assert isinstance(source_id, int)
    _demote_repeats(con, kind, source_id)
    return int(row[0]) if row else 0


def elect(con: duckdb.DuckDBPyConnection, kind: Kind, source_id: int) -> None:
    """Settle ``canonical`` for the rows of a file inserted all canonical: an id an
    earlier file holds is not; of an id repeated in the file, its first line is."""
    table, key = TABLES[kind], IDENTITY[kind]
    con.execute(
        f"""UPDATE {table} SET canonical = false
            WHERE source_id = $source_id AND canonical AND {key} IN (
                SELECT {key} FROM {table} WHERE canonical AND source_id <> $source_id)""",
        {"source_id": source_id},
    )
    _demote_repeats(con, kind, source_id)


def _demote_repeats(con: duckdb.DuckDBPyConnection, kind: Kind, source_id: int) -> None:
    """Of an id on several canonical rows of one file, keep its first line's."""
    table, key = TABLES[kind], IDENTITY[kind]
    con.execute(
        f"""
            UPDATE {table} SET canonical = false
            FROM (SELECT {key} AS k, min(line) AS first_line FROM {table}
                  WHERE source_id = $source_id AND canonical
                  GROUP BY {key} HAVING count(*) > 1) AS repeated
            WHERE {table}.source_id = $source_id AND {table}.canonical
              AND {table}.{key} = repeated.k AND {table}.line > repeated.first_line""",
        {"source_id": source_id},
    )


def _load_staged(
    con: duckdb.DuckDBPyConnection,
    plan: FilePlan,
    source_id: int,
    values_sql: str,
    params: dict[str, object],
    pre_bad: Sequence[BadLine] = (),
) -> tuple[int, int]:
    """Type ``values_sql`` once into a temp table, then split good rows from rejects."""
    typed = typed_select(plan.kind, f"({values_sql})", extra=("raw",))
    # a good row's raw text is not kept: the stage holds the typed rows only
    con.execute(
        "CREATE OR REPLACE TEMP TABLE wr_stage AS SELECT * REPLACE "
        f"(CASE WHEN reason IS NOT NULL THEN raw END AS raw) FROM ({typed})",
        params,
    )
    loaded = insert_good(con, plan.kind, "SELECT * FROM wr_stage", {"source_id": source_id})
    bad = count_rows(con, "SELECT count(*) FROM wr_stage WHERE reason IS NOT NULL")
    con.execute(
        "INSERT INTO rejects SELECT $source_id, line, raw, reason FROM wr_stage "
        "WHERE reason IS NOT NULL",
        {"source_id": source_id},
    )
    if pre_bad:
        con.executemany(
            "INSERT INTO rejects VALUES (?, ?, ?, ?)",
            [[source_id, b.line, b.raw, b.reason] for b in pre_bad],
        )
    con.execute("DROP TABLE wr_stage")
    return loaded, bad + len(pre_bad)


# --------------------------------------------------------------------------- the fast path


class Fallback(Exception):
    """The fast path cannot load this file exactly; take the careful path, or
    first a lenient fast read if ``lenient_may_help``."""

    def __init__(self, reason: str, *, lenient_may_help: bool = False) -> None:
        super().__init__(reason)
        self.lenient_may_help = lenient_may_help


#: more lines than this to read again one by one (rejected, or values the JSON
#: reader cannot give back exactly): the careful path reads the whole file
REDO_LIMIT = 100_000


def load_json_fast(
    con: duckdb.DuckDBPyConnection,
    plan: FilePlan,
    source_id: int,
    scan: Future[TextScan],
    *,
    lenient: bool = False,
) -> tuple[int, int]:
    """JSON lines (or an array) read by DuckDB's ``read_json``, typed on the way.
    ``lenient``: a line DuckDB cannot read is a row of NULLs, read again alone,
    instead of an error. Raises Fallback when this would not be exactly what
    the careful path loads: see the package's docstring."""
    if plan.json_array:
        return _load_array_fast(con, plan, source_id, scan)
    if not lenient and _ends_mid_record(plan):
        # the strict read would refuse that line only after reading all the others
        raise Fallback("the last line is not a JSON object", lenient_may_help=True)
    table = TABLES[plan.kind]
    params: dict[str, object] = {"path": str(plan.path), "source_id": source_id}
    # Every row goes into the table in the file's order (a parallel read: a
    # row's position is its line number, checked below), line 0 for a good
    # row and -1 for one to read again; canonical is settled afterwards.
    values = relations.json_fast_values(plan, numbered=False, lenient=lenient)
    typed = typed_select(plan.kind, f"({values})")
    names = ", ".join(f.name for f in FIELDS[plan.kind])
    canonical = ("canonical, ", "reason IS NULL, ") if plan.kind in IDENTITY else ("", "")
    con.execute("SET preserve_insertion_order = true")
    try:
        con.execute(
            f"INSERT INTO {table} (source_id, line, {canonical[0]}{names}) "
            f"SELECT $source_id, CASE WHEN reason IS NULL THEN 0 ELSE -1 END, "
            f"{canonical[1]}{names} FROM ({typed})",
            params,
        )
    except duckdb.Error as exc:
        # a line DuckDB's reader refuses: a lenient read may take the file,
        # unless the text rules the fast path out already. That is known once
        # the scan is done, which is not waited for: the lenient read checks it
        # too, and meanwhile it overlaps the scan's last part
        hopeless = scan.done() and _not_fast(scan.result()) is not None
        raise Fallback(str(exc), lenient_may_help=not lenient and not hopeless) from None
    con.execute("SET preserve_insertion_order = false")
    return _number_and_redo(con, plan, source_id, scan.result(), lenient)


def _ends_mid_record(plan: FilePlan) -> bool:
    """Whether a plain JSON lines file's last line is plainly not one JSON object:
    a log copied while it was being written ends mid-record. Only a shortcut: a
    line this passes may still be refused, and one it fails is read leniently,
    which loads the same rows."""
    if plan.compression is not None:
        return False
    line = last_line(plan.path)
    if line is None:
        return False
    try:
        return not isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return True


def _number_and_redo(
    con: duckdb.DuckDBPyConnection, plan: FilePlan, source_id: int, scanned: TextScan, lenient: bool
) -> tuple[int, int]:
    """Number the file's rows by their position, read the lines the fast read
    could not read exactly again the careful way, insert their good rows and
    rejects, and elect the canonical rows."""
    why = _not_fast(scanned)
    if why:
        raise Fallback(why)
    table = TABLES[plan.kind]
    mine = {"source_id": source_id}
    row = con.execute(
        f"SELECT count(*), coalesce(min(rowid), 0), coalesce(max(rowid), -1) FROM {table} "
        "WHERE source_id = $source_id",
        mine,
    ).fetchone()
    rows, first, last = (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, -1)
    if rows != scanned.lines:
        # no line may be blank (checked above): every line gave one row
        raise Fallback("not one row per line: the rows' order is not the line number")
    if last - first + 1 != rows:
        raise Fallback("the rows' positions are not consecutive")
    if lenient and _duplicate_keys(con, plan):
        raise Fallback("a key twice on a line, which the lenient read does not see")
    numbered = {**mine, "base": first - 1}
    redo = [
        int(r[0])
        for r in con.execute(
            f"SELECT rowid - $base FROM {table} WHERE source_id = $source_id AND line = -1",
            numbered,
        ).fetchall()
    ]
    if len(redo) > REDO_LIMIT:
        raise Fallback("too many lines to read again one by one")
    if redo:
        con.execute(f"DELETE FROM {table} WHERE source_id = $source_id AND line = -1", mine)
    con.execute(f"UPDATE {table} SET line = rowid - $base WHERE source_id = $source_id", numbered)
    pre_bad = _redo_lines(con, plan, scanned, redo)
    names = ", ".join(f.name for f in FIELDS[plan.kind])
    canonical = ("canonical, ", "true, ") if plan.kind in IDENTITY else ("", "")
    con.execute(
        f"INSERT INTO {table} (source_id, line, {canonical[0]}{names}) "
        f"SELECT $source_id, line, {canonical[1]}{names} FROM wr_redo WHERE reason IS NULL",
        mine,
    )
    if plan.kind in IDENTITY:
        elect(con, plan.kind, source_id)
    con.execute(
        "INSERT INTO rejects SELECT $source_id, line, raw, reason FROM wr_redo "
        "WHERE reason IS NOT NULL",
        mine,
    )
    if pre_bad:
        con.executemany(
            "INSERT INTO rejects VALUES (?, ?, ?, ?)",
            [[source_id, b.line, b.raw, b.reason] for b in pre_bad],
        )
    bad = count_rows(con, "SELECT count(*) FROM wr_redo WHERE reason IS NOT NULL")
    con.execute("DROP TABLE wr_redo")
    # of the rows read, those read again are loaded only if good now
    return rows - bad - len(pre_bad), bad + len(pre_bad)


def _not_fast(scanned: TextScan) -> str | None:
    """Why the text of a JSON lines file rules the fast path out, if it does."""
    if scanned.trailing:
        return "bytes after the gzip data: the careful path rejects them"
    if scanned.control or scanned.lone_cr or scanned.long_line:
        # DuckDB's JSON reader takes some control bytes (DEL in a string, form
        # feed as blank) and lines somewhat over its maximum_object_size, which
        # the careful path rejects line by line
        return "control bytes, a lone CR or a very long line in the text"
    if scanned.maybe_blank:
        # a blank line gives no row: the rows' order would not be the line number
        return "blank lines: the rows' order is not the line number"
    return None


def _duplicate_keys(con: duckdb.DuckDBPyConnection, plan: FilePlan) -> bool:
    """Whether a line of the file names a field twice (or cannot be told)."""
    try:
        return count_rows(con, relations.duplicate_key_lines(plan), {"path": str(plan.path)}) > 0
    except duckdb.Error:
        return True


def _redo_lines(
    con: duckdb.DuckDBPyConnection, plan: FilePlan, scanned: TextScan, redo: list[int]
) -> list[BadLine]:
    """Read the lines ``redo`` again from the file, the careful way, into the temp
    table ``wr_redo`` (line, raw, the canonical columns, reason); returns the
    lines DuckDB cannot take at all (invalid UTF-8), as rejects."""
    raws = read_lines(plan.path, plan.compression, redo, scanned.index)
    if len(raws) != len(redo):
        raise Fallback("a line to read again is not where its number says")
    bad: list[BadLine] = []
    texts: list[tuple[int, str]] = []
    for n in redo:
        reason = line_reason(raws[n])
        if reason:
            bad.append(BadLine(n, clip(raws[n]), reason))
        else:
            texts.append((n, raws[n].decode("utf-8")))
    # handed to DuckDB as one Arrow table, not row by row
    lines = pa.table(
        {"line": [n for n, _ in texts], "raw": [t for _, t in texts]},
        schema=pa.schema([("line", pa.int64()), ("raw", pa.string())]),
    )
    con.register("wr_lines", lines)
    try:
        values = relations.json_record_values(plan.kind, "SELECT line, raw FROM wr_lines")
        typed = typed_select(plan.kind, f"({values})", extra=("raw",))
        con.execute(f"CREATE OR REPLACE TEMP TABLE wr_redo AS {typed}")
    finally:
        con.unregister("wr_lines")
    return bad


def _load_array_fast(
    con: duckdb.DuckDBPyConnection, plan: FilePlan, source_id: int, scan: Future[TextScan]
) -> tuple[int, int]:
    """A JSON array read by ``read_json``, its elements numbered by ordinality."""
    if plan.compression or not _closed(plan.path):
        raise Fallback("an array's end is checked on its text: see _inflated")
    typed = typed_select(plan.kind, f"({relations.json_fast_values(plan)})")
    params: dict[str, object] = {"path": str(plan.path), "source_id": source_id}
    try:
        loaded = insert_good(con, plan.kind, typed, params)
    except duckdb.Error as exc:
        raise Fallback(str(exc)) from None
    if scan.result().trailing:
        raise Fallback("bytes after the gzip data: the careful path rejects them")
    bad = f"SELECT count(*) FROM ({typed}) WHERE reason IS NOT NULL"
    if count_rows(con, bad, {"path": str(plan.path)}):
        # the careful path keeps each rejected element's JSON text as raw
        raise Fallback("rejected elements of an array")
    return loaded, 0


# --------------------------------------------------------------------------- the careful path


_SCRATCH = re.compile(r"warroom-(\d+)-[a-z0-9_]{8}")


def _scratch_dir() -> tempfile.TemporaryDirectory[str]:
    """A scratch folder (for the careful path's clean copy of a file) named after
    this process. The ones a killed warroom left behind are removed first: their
    process is gone, so nothing can be using them."""
    base = Path(tempfile.gettempdir())
    for old in base.glob("warroom-*-*"):
        m = _SCRATCH.fullmatch(old.name)
        if m and old.is_dir() and not _alive(int(m.group(1))):
            shutil.rmtree(old, ignore_errors=True)
    return tempfile.TemporaryDirectory(prefix=f"warroom-{os.getpid()}-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: not ours to judge
        return True
    return True


def _inflated(plan: FilePlan, tmp: str) -> tuple[Path, str | None]:
    """Where DuckDB reads a JSON array or document from: the file itself or, for
    gzip, its text inflated into ``tmp`` (DuckDB's reader takes neither bytes after
    the gzip data nor a stream cut short exactly). Returns that path and the reason
    for the trailing bytes' reject, if the file has such bytes. A stream cut short
    is refused whole: an array or document that ends early cannot be loaded exactly."""
    if plan.compression != "gzip":
        path, trailing = plan.path, None
    else:
        path, text = plain_copy(plan.path, plan.compression, tmp)
        if text.broken:
            raise InputError(
                f"{plan.path}: {text.broken}; a JSON array or document cut short is not "
                "loaded (nothing loaded): fetch the file again"
            )
        trailing = text.trailing
    if plan.json_array and not _closed(path):
        raise InputError(
            f"{plan.path}: the JSON array ends without its closing `]`: "
            "the file looks cut short; nothing loaded"
        )
    return path, trailing


def _closed(path: Path) -> bool:
    """Whether the text at ``path`` ends (blanks aside) with ``]``: DuckDB's array
    reader takes an array cut short after a comma as whole."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - 4096))
        return f.read().rstrip(b" \t\r\n").endswith(b"]")


def load_careful(con: duckdb.DuckDBPyConnection, plan: FilePlan, source_id: int) -> tuple[int, int]:
    """Every physical line of a text file, its bytes scanned first; or a Parquet file."""
    if plan.size == 0:
        return 0, 0
    if plan.format == "parquet":
        try:
            return _load_staged(
                con, plan, source_id, relations.parquet_values(plan), {"path": str(plan.path)}
            )
        except duckdb.Error as exc:
            raise InputError(f"{plan.path}: cannot read Parquet: {one_line(exc)}") from None
    if plan.json_array:
        with _scratch_dir() as tmp:
            path, trailing = _inflated(plan, tmp)
            try:
                values = relations.array_values(plan)
                loaded, bad = _load_staged(con, plan, source_id, values, {"path": str(path)})
            except duckdb.Error:
                raise InputError(
                    f"{plan.path}: not a well-formed JSON array of objects; "
                    "use one JSON object per line (.jsonl)"
                ) from None
        if trailing:  # one reject after the last element
            con.execute(
                "INSERT INTO rejects VALUES (?, ?, '', ?)", [source_id, loaded + bad + 1, trailing]
            )
            bad += 1
        return loaded, bad
    with _scratch_dir() as tmp:
        clean, bad_lines = clean_copy(plan.path, plan.compression, tmp)
        values = relations.lines_values(plan)
        return _load_staged(con, plan, source_id, values, {"path": str(clean)}, bad_lines)


def load_profile(
    con: duckdb.DuckDBPyConnection, plan: FilePlan, source_id: int
) -> tuple[int, int, int]:
    """A file read through an import profile: its rows as JSON text, then mapped in
    SQL by ``profiles.map_rows`` (which also writes its rejects); returns (rows
    loaded, rejects, rows rejected whole): an element of a page is rejected alone."""
    assert plan.profile is not None
    if plan.size == 0:
        return 0, 0, 0
    with _scratch_dir() as tmp:
        bad: list[BadLine] = []
        path, trailing = plan.path, None
        if plan.format == "parquet":
            rows = relations.parquet_rows(plan)
        elif plan.json_array or plan.json_document:
            path, trailing = _inflated(plan, tmp)
            rows = relations.document_rows(plan)
        else:
            path, bad = clean_copy(plan.path, plan.compression, tmp)
            rows = relations.lines_rows(plan)
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE wr_prow AS {rows}", {"path": str(path)})
        except duckdb.Error as exc:
            what = {"parquet": "Parquet"}.get(plan.format, "JSON")
            raise InputError(f"{plan.path}: cannot read {what}: {one_line(exc)}") from None
        pre_bad = [(b.line, b.raw, b.reason) for b in bad]
        if trailing:  # one reject after the last element or document
            pre_bad.append((count_rows(con, "SELECT count(*) FROM wr_prow") + 1, "", trailing))
        try:
            return profiles.map_rows(con, plan.profile, source_id, insert_good, pre_bad)
        finally:
            con.execute("DROP TABLE IF EXISTS wr_prow")
