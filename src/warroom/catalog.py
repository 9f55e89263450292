"""Read-side views of what was loaded: the sources manifest, the rejects, ad-hoc SQL."""

from __future__ import annotations

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


def run_sql(con: duckdb.DuckDBPyConnection, query: str) -> pa.Table:
    """Run ``query`` (the connection should be read-only) and return its rows.

    Raises QueryError with DuckDB's first line of explanation.
    """
    try:
        rel = con.sql(query)
        if rel is None:
            return pa.table({})
        return rel.to_arrow_table()
    except duckdb.Error as exc:
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        if "read-only" in text or "read only" in text:
            first = "the database is opened read-only here; `warroom sql` cannot change it"
        raise QueryError(first) from None
