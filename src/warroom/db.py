"""Open, lock and create the schema of one warroom DuckDB file.

Every connection runs in UTC, so a ``TIMESTAMP`` always means UTC. DuckDB
itself locks the file: a second writer gets ``DatabaseLockedError`` (exit 4).
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from warroom.errors import DatabaseError, DatabaseLockedError, NoDatabaseError
from warroom.model import CONTENT_IDENTITY, FIELDS, IDENTITY, TABLES, Kind

DEFAULT_DB = "warroom.duckdb"
SCHEMA_VERSION = "1"


def default_db_path() -> Path:
    return Path(os.environ.get("WARROOM_DB") or DEFAULT_DB)


def connect(
    path: str | Path,
    *,
    read_only: bool = False,
    memory_limit: str | None = None,
    create: bool = True,
) -> duckdb.DuckDBPyConnection:
    """Open the database at ``path`` (creating its schema unless ``read_only``).

    ``$WARROOM_THREADS`` caps DuckDB's threads (default: one per core), for a
    machine shared with other work. ``memory_limit`` is DuckDB's (e.g. ``1GB``);
    a database file gets ``default_memory_limit()`` without one.

    Raises DatabaseLockedError when another process holds the file, and
    DatabaseError when it cannot be opened or is not a warroom database.
    """
    path = Path(path)
    if read_only and not path.exists():
        raise NoDatabaseError(str(path))
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise DatabaseLockedError(
                f"{path} is in use by another warroom process; wait for it to finish"
            ) from None
        raise DatabaseError(f"{path}: cannot open database: {_first_line(exc)}") from None
    except duckdb.Error as exc:
        raise DatabaseError(f"{path}: cannot open database: {_first_line(exc)}") from None
    con.execute("SET TimeZone = 'UTC'")
    # keep query progress for our own bars, but never let DuckDB print its own
    con.execute("SET enable_progress_bar = true")
    con.execute("SET enable_progress_bar_print = false")
    threads = os.environ.get("WARROOM_THREADS")
    if threads:
        if not threads.isdigit() or int(threads) < 1:
            con.close()
            raise DatabaseError(f"WARROOM_THREADS={threads!r}: expected a whole number, 1 or more")
        con.execute(f"SET threads = {int(threads)}")
    if path.name != ":memory:" or memory_limit:
        try:
            con.execute("SET memory_limit = ?", [memory_limit or default_memory_limit()])
        except duckdb.Error as exc:
            con.close()
            raise DatabaseError(f"bad memory limit {memory_limit!r}: {_first_line(exc)}") from None
    if not read_only and create:
        ensure_schema(con)
    return con


#: the default memory limit's share of the machine's memory, and its bounds
_MEMORY_SHARE = 16
_MEMORY_FLOOR = 256 * 1024**2
_MEMORY_CEILING = 1536 * 1024**2


def default_memory_limit() -> str:
    """DuckDB's memory limit when none is given: a sixteenth of the memory this
    process may use (the machine's, or its control group's limit if lower),
    between 256 MB and 1.5 GB. DuckDB's own default (80% of the machine) lets
    one large investigation take the memory of everything else on it; past the
    limit DuckDB spills to disk, which costs little at this share (see
    benchmarks/README.md). The process's peak stays within about 2 GB."""
    total = _memory_available()
    limit = min(max(total // _MEMORY_SHARE, _MEMORY_FLOOR), _MEMORY_CEILING)
    return f"{limit // 1024**2}MiB"


def _memory_available() -> int:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 1024**3
    try:
        cap = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        cap = "max"
    if cap.isdigit():
        total = min(total, int(cap))
    return total


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the canonical tables and views if they are not there yet."""
    con.execute("BEGIN")
    try:
        _migrate(con)
        for stmt in schema_statements():
            con.execute(stmt)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _migrate(con: duckdb.DuckDBPyConnection) -> None:
    """A database made before abuse events counted once per content holds them in
    a table named like the view that now shows them: it becomes ``*_all``."""
    for kind, view in CONTENT_IDENTITY.items():
        found = {
            str(r[0]): str(r[1])
            for r in con.execute(
                "SELECT table_name, table_type FROM information_schema.tables "
                "WHERE table_schema = 'main' AND table_name IN (?, ?)",
                [view, TABLES[kind]],
            ).fetchall()
        }
        if found.get(view) == "BASE TABLE" and TABLES[kind] not in found:
            con.execute(f"ALTER TABLE {view} RENAME TO {TABLES[kind]}")


def schema_statements() -> list[str]:
    stmts = [
        "CREATE TABLE IF NOT EXISTS warroom_meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
        f"INSERT OR IGNORE INTO warroom_meta VALUES ('schema_version', '{SCHEMA_VERSION}')",
        "CREATE SEQUENCE IF NOT EXISTS source_ids START 1",
        """CREATE TABLE IF NOT EXISTS sources (
            source_id INTEGER PRIMARY KEY,
            path VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            format VARCHAR NOT NULL,
            compression VARCHAR,
            profile VARCHAR,
            sha256 VARCHAR NOT NULL,
            size_bytes BIGINT NOT NULL,
            rows_loaded BIGINT NOT NULL,
            rows_rejected BIGINT NOT NULL,
            blank_lines BIGINT NOT NULL,
            ingested_at TIMESTAMP NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS rejects (
            source_id INTEGER NOT NULL,
            line BIGINT NOT NULL,
            raw VARCHAR,
            reason VARCHAR NOT NULL
        )""",
    ]
    for kind, fields in FIELDS.items():
        table = TABLES[kind]
        cols = ["source_id INTEGER NOT NULL", "line BIGINT NOT NULL"]
        if kind in IDENTITY:
            cols.append("canonical BOOLEAN NOT NULL")
        cols += [f"{f.name} {f.type.value}" for f in fields]
        stmts.append(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(cols)})")
    for kind in IDENTITY:
        view = kind.value
        names = ", ".join(["source_id", "line"] + [f.name for f in FIELDS[kind]])
        stmts.append(
            f"CREATE VIEW IF NOT EXISTS {view} AS SELECT {names} FROM {TABLES[kind]} "
            "WHERE canonical"
        )
    for kind, view in CONTENT_IDENTITY.items():
        names = ", ".join(f.name for f in FIELDS[kind])
        stmts.append(
            f"CREATE VIEW IF NOT EXISTS {view} AS SELECT source_id, line, {names} "
            f"FROM {TABLES[kind]} QUALIFY row_number() OVER "
            f"(PARTITION BY {names} ORDER BY source_id, line) = 1"
        )
    stmts.append(
        """CREATE VIEW IF NOT EXISTS rejects_view AS
           SELECT s.path, r.line, r.reason, r.raw, s.kind, r.source_id
           FROM rejects r JOIN sources s USING (source_id)"""
    )
    return stmts


def table_for(kind: Kind) -> str:
    return TABLES[kind]
