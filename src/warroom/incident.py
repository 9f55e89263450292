"""The incident's id: named once from the data, stored, and reused (DESIGN.md section 7.1).

``<UTC date of the first erroneous row of the largest episode>-<first 6 hex of the
SHA-256 of that row's entry_id>``, e.g. ``2025-06-05-3f9a2c``. ``detect`` stores it in
the database the first time it finds a fault; later runs (as more logs arrive)
reuse it, so a ``credit_id`` never changes under a refund job. ``--incident-id`` or
the policy's ``[incident] id`` overrides it.
"""

from __future__ import annotations

import hashlib

import duckdb

from warroom.episodes import episodes
from warroom.pack import Pack

_META_KEY = "incident_id"


def derive_incident_id(con: duckdb.DuckDBPyConnection, pack: Pack) -> str | None:
    """The id named by the largest episode in ``findings`` on ``con`` (ranked by
    ``warroom.episodes.rank``: users, rows, money per currency); None when no fault."""
    ranked = episodes(con, pack, brackets=False)
    if not ranked:
        return None
    largest = ranked[0]
    digest = hashlib.sha256(largest.first_row_key.encode()).hexdigest()[:6]
    return f"{largest.first:%Y-%m-%d}-{digest}"


def stored_incident_id(con: duckdb.DuckDBPyConnection) -> str | None:
    """The id an earlier ``detect`` stored in this database, if any."""
    found = con.execute(
        "SELECT value FROM warroom_meta WHERE key = $key", {"key": _META_KEY}
    ).fetchall()
    return str(found[0][0]) if found else None


def store_incident_id(con: duckdb.DuckDBPyConnection, pack: Pack) -> None:
    """Name the incident from the findings just stored, unless it already has a name."""
    if stored_incident_id(con) is not None:
        return
    derived = derive_incident_id(con, pack)
    if derived is not None:
        con.execute(
            "INSERT INTO warroom_meta VALUES ($key, $value)", {"key": _META_KEY, "value": derived}
        )


def incident_id(con: duckdb.DuckDBPyConnection, pack: Pack, chosen: str | None) -> str:
    """The incident id to use: the one chosen (flag or policy), else the stored one, else
    one derived from the findings on ``con`` now, else ``no-fault``."""
    return chosen or stored_incident_id(con) or derive_incident_id(con, pack) or "no-fault"
