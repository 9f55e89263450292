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

from warroom.pack import Pack, bind, run

_META_KEY = "incident_id"


def derive_incident_id(con: duckdb.DuckDBPyConnection, pack: Pack) -> str | None:
    """The id named by the largest episode in ``findings`` on ``con``; None when no fault."""
    episodes = pack.queries["incident_episodes"]
    rows = run(con, episodes, bind(episodes, {})).slice(0, 1).to_pylist()
    if not rows:
        return None
    start, key = rows[0]["episode_start"], str(rows[0]["first_row_key"])
    return f"{start:%Y-%m-%d}-{hashlib.sha256(key.encode()).hexdigest()[:6]}"


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
