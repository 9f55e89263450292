"""Prove two versions of warroom give the same answers on one world.

    OLD/.venv/bin/python benchmarks/compare_pack.py side WORLD old.duckdb
    NEW/.venv/bin/python benchmarks/compare_pack.py side WORLD new.duckdb
    python benchmarks/compare_pack.py compare old.duckdb new.duckdb

``side`` (run with each version's Python) ingests WORLD into a fresh database,
runs detect, and keeps every shared relation (``cmp_shared_*``) and every
query's rows (``cmp_q_*``) as tables. ``compare`` takes every table of the
first database and counts its rows missing from the second and the other way
(``EXCEPT ALL`` both ways, columns that hold times or paths left out), and
exits 1 on any difference. Not run by pytest.
"""

from __future__ import annotations

import sys
import time

import duckdb


def side(world: str, path: str) -> None:
    from warroom import db
    from warroom.detect import _run_using, detect
    from warroom.ingest import ingest
    from warroom.pack import bind, load_pack

    con = db.connect(path)
    t = time.monotonic()
    ingest(con, [world])
    print(f"ingest {time.monotonic() - t:.1f}s", file=sys.stderr)
    pack = load_pack()
    t = time.monotonic()
    detect(con, pack)
    print(f"detect {time.monotonic() - t:.1f}s", file=sys.stderr)
    for s in pack.shared:
        con.execute(f"CREATE OR REPLACE TABLE main.cmp_shared_{s.name} AS FROM temp.{s.name}")
    rows_of = {}
    for q in pack.detections():
        rows_of[q.name] = _run_using(con, pack, q, bind(q, {}), rows_of)
    for name, q in pack.queries.items():
        if name not in rows_of:
            rows_of[name] = _run_using(con, pack, q, bind(q, {}), rows_of)
    for name, rows in rows_of.items():
        con.register("wr_rows", rows)
        con.execute(f"CREATE OR REPLACE TABLE main.cmp_q_{name} AS FROM wr_rows")
        con.unregister("wr_rows")
    con.close()


def compare(a: str, b: str) -> int:
    con = duckdb.connect()
    con.execute("ATTACH ? AS a (READ_ONLY)", [a])
    con.execute("ATTACH ? AS b (READ_ONLY)", [b])
    tables = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = 'a' "
        "AND schema_name = 'main' ORDER BY 1"
    ).fetchall()
    differ = 0
    for (t,) in tables:
        cols = con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = 'a' "
            "AND schema_name = 'main' AND table_name = ? ORDER BY column_index",
            [t],
        ).fetchall()
        sel = ", ".join(f'"{c}"' for (c,) in cols if c not in ("ingested_at", "path", "seconds"))
        counts = []
        for x, y in (("a", "b"), ("b", "a")):
            row = con.execute(
                f"SELECT count(*) FROM (SELECT {sel} FROM {x}.{t} EXCEPT ALL "
                f"SELECT {sel} FROM {y}.{t})"
            ).fetchone()
            counts.append(row[0] if row else 0)
        row = con.execute(f"SELECT count(*) FROM a.{t}").fetchone()
        print(f"{t}: {row[0] if row else 0:,} rows; old-new {counts[0]}, new-old {counts[1]}")
        differ += any(counts)
    print(f"{differ} table(s) differ" if differ else "identical")
    return 1 if differ else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["side"] and len(sys.argv) == 4:
        side(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["compare"] and len(sys.argv) == 4:
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
