"""Read-side views of what was loaded: the sources manifest, the rejects, ad-hoc SQL."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import duckdb
import pyarrow as pa

from warroom.errors import QueryError


def sources(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """One row per ingested file, in the order they were loaded."""
    return con.sql(
        """SELECT path, kind, format, compression, profile, sha256, size_bytes, rows_loaded,
                  rows_rejected, blank_lines, ingested_at
           FROM sources ORDER BY source_id"""
    ).to_arrow_table()


def rejects(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Every rejected row: file, line, reason and the raw text."""
    return con.sql(
        """SELECT s.path, r.line, r.reason, r.raw
           FROM rejects r JOIN sources s USING (source_id)
           ORDER BY r.source_id, r.line"""
    ).to_arrow_table()


#: statement types that only read (DESCRIBE, SHOW and SUMMARIZE parse as SELECT)
_READ_TYPES = {duckdb.StatementType.SELECT}
#: PRAGMAs that only read; others can write files (``profiling_output``) or change settings
_READ_PRAGMAS = {
    "collations",
    "database_list",
    "database_size",
    "functions",
    "metadata_info",
    "platform",
    "show",
    "show_databases",
    "show_tables",
    "show_tables_expanded",
    "storage_info",
    "table_info",
    "user_agent",
    "version",
}
_PRAGMA_NAME = re.compile(r"\s*pragma\s+([A-Za-z_][A-Za-z0-9_]*)\s*(?:\(|;|$)", re.I)
#: EXPLAIN and its options (``ANALYZE`` runs the statement, so it is checked like one)
_EXPLAIN = re.compile(r"\s*explain\s+(?:analy[sz]e\s+|\([^)]*\)\s*)?", re.I)
_COMMENTS = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.S)


def check_read_only(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Refuse ``query`` unless each of its statements only reads.

    DuckDB's own parser splits the text and names each statement's type, so a
    write cannot hide behind a comment, a string or a second statement. Allowed:
    SELECT / WITH / VALUES / FROM / DESCRIBE / SHOW / SUMMARIZE, EXPLAIN of one
    of those, and the read-only PRAGMAs. COPY, EXPORT, INSTALL / LOAD, ATTACH,
    SET, CALL and every DDL or DML statement raise QueryError.
    """
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise QueryError(_first_line(exc)) from None
    for statement in statements:
        _check_statement(con, statement)


def _check_statement(con: duckdb.DuckDBPyConnection, statement: duckdb.Statement) -> None:
    text = _COMMENTS.sub("", statement.query)
    kind = statement.type
    if kind in _READ_TYPES:
        return
    if kind == duckdb.StatementType.PRAGMA:
        name = _PRAGMA_NAME.match(text)
        if name and name.group(1).lower() in _READ_PRAGMAS:
            return
    if kind == duckdb.StatementType.EXPLAIN:
        head = _EXPLAIN.match(text)
        inner = con.extract_statements(text[head.end() :]) if head else []
        if len(inner) == 1:
            _check_statement(con, inner[0])
            return
    word = text.split(None, 1)[0].upper() if text.strip() else kind.name
    raise QueryError(
        f"`warroom sql` only reads; {word} is refused (use SELECT, WITH, "
        "DESCRIBE, SHOW, SUMMARIZE, EXPLAIN or a read-only PRAGMA)"
    )


def _lock_extensions(con: duckdb.DuckDBPyConnection) -> None:
    """No extension is installed or loaded behind the query's back (httpfs would reach
    the network); local files stay readable."""
    row = con.execute("SELECT current_setting('lock_configuration')").fetchall()[0]
    if row and row[0]:
        return
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET allow_community_extensions = false")
    con.execute("SET lock_configuration = true")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_sql(con: duckdb.DuckDBPyConnection, query: str) -> pa.Table:
    """Run ``query`` (the connection should be read-only) and return its rows.

    Only statements that read are run (``check_read_only``), with extension
    install and autoload switched off on ``con``; reading local files
    (``read_csv('x.csv')``) stays allowed. Raises QueryError with DuckDB's first
    line of explanation.
    """
    check_read_only(con, query)
    _lock_extensions(con)
    try:
        rel = con.sql(query)
        if rel is None:
            return pa.table({})
        return rel.to_arrow_table()
    except duckdb.Error as exc:
        text = str(exc).strip()
        first = _first_line(exc)
        if "read-only" in text or "read only" in text:
            first = "the database is opened read-only here; `warroom sql` cannot change it"
        raise QueryError(first) from None


def foreign_sources(con: duckdb.DuckDBPyConnection, files: list[Path]) -> list[str]:
    """The files loaded into ``con`` that are none of ``files``: not the same path (as
    given, or resolved from here) nor the same bytes (size and SHA-256). An
    investigation re-run on the same logs, or on the same logs grown, has none."""
    try:
        loaded = con.execute("SELECT path, sha256, size_bytes FROM sources ORDER BY source_id")
        rows = loaded.fetchall()
    except duckdb.CatalogException:  # not a warroom database yet: nothing in it
        return []
    names = {str(f) for f in files} | {str(f.resolve()) for f in files}
    by_size: dict[int, list[Path]] = {}
    for f in files:
        by_size.setdefault(f.stat().st_size, []).append(f)
    hashes: dict[Path, str] = {}
    foreign = []
    for path, sha, size in rows:
        if path in names or str(Path(path).resolve()) in names:
            continue
        same_size = by_size.get(int(size), [])
        if any(_sha256(f, hashes) == sha for f in same_size):
            continue
        foreign.append(str(path))
    return foreign


def _sha256(path: Path, seen: dict[Path, str]) -> str:
    if path not in seen:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        seen[path] = digest.hexdigest()
    return seen[path]


def with_origin(con: duckdb.DuckDBPyConnection, table: pa.Table) -> pa.Table:
    """``table`` with its ``source_id`` and ``line`` columns as one ``origin`` column,
    ``file:line``, where they were (what a person reads; machine formats keep both)."""
    names = table.column_names
    if "source_id" not in names or "line" not in names:
        return table
    paths = dict(con.execute("SELECT source_id, path FROM sources").fetchall())
    origin = [
        None if sid is None else f"{paths.get(sid, f'source {sid}')}:{'' if line is None else line}"
        for sid, line in zip(
            table.column("source_id").to_pylist(), table.column("line").to_pylist(), strict=True
        )
    ]
    at = names.index("source_id")
    rest = table.drop_columns(["source_id", "line"])
    return rest.add_column(min(at, rest.num_columns), "origin", pa.array(origin, pa.string()))
