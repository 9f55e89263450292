"""Time `warroom detect` (and `impact`) on a large generated incident.

    python benchmarks/bench_detect.py --users 5000 --days 14 --rate 72   # ~5M requests
    python benchmarks/bench_detect.py --memory-limit 1GB                  # with spilling

Generates the world once and ingests it once (both cached under benchmarks/data/;
delete them to start over), then runs the whole pack in a fresh child process per
setting and reports the time of each shared relation and each detection, the
total, the child's peak RSS, and `impact` on the stored findings (as `report` and
`investigate` run it). Not run by pytest.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"

CHILD = r"""
import json, resource, sys, time
from warroom import db
from warroom.detect import detect
from warroom.impact import Policy, impact
from warroom.pack import load_pack
path, limit = sys.argv[1], (sys.argv[2] or None)
con = db.connect(path, memory_limit=limit)
pack = load_pack()
t = time.monotonic()
result = detect(con, pack)
detect_s = time.monotonic() - t
t = time.monotonic()
rows = impact(con, pack, Policy(), stored_findings=True).num_rows
impact_s = time.monotonic() - t
print(json.dumps({"detect_s": detect_s, "impact_s": impact_s, "impact_rows": rows,
                  "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "shared": [[n, round(s, 3)] for n, s in result.shared],
                  "queries": {d.name: [d.rows, round(d.seconds, 3)] for d in result.detectors}}))
"""


def _world(users: int, days: int, rate: float, seed: int) -> Path:
    out = DATA / f"world-{users}u-{days}d-{rate:g}r-{seed}s-v2"  # v2: with the billing outage
    if not (out / "_truth" / "summary.json").exists():
        t = time.monotonic()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "warroom",
                "generate",
                str(out),
                "--users",
                str(users),
                "--days",
                str(days),
                "--seed",
                str(seed),
                "--requests-per-user-day",
                str(rate),
            ],
            check=True,
        )
        print(f"generated {out} in {time.monotonic() - t:.1f}s", file=sys.stderr)
    return out


def _rows(world: Path) -> dict[str, int]:
    summary = json.loads((world / "_truth" / "summary.json").read_text())
    return {k: int(v) for k, v in summary["files"].items()}


def _child(db_path: Path, limit: str | None) -> tuple[dict[str, object], float, int]:
    t = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(db_path), limit or ""],
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - t
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return res, wall, int(res.pop("peak_rss_kb"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--rate", type=float, default=72.0, help="requests per user-day")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--memory-limit",
        action="append",
        default=None,
        help="run again under this DuckDB memory limit (repeatable)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each setting this many times and keep the fastest detect",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON line at the end")
    args = ap.parse_args()
    world = _world(args.users, args.days, args.rate, args.seed)
    rows = _rows(world)
    db_path = world.with_suffix(".duckdb")
    if not db_path.exists():
        t = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "warroom", "ingest", str(world), "--db", str(db_path)],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        print(f"ingested in {time.monotonic() - t:.1f}s", file=sys.stderr)
    print(
        f"world: {sum(v for k, v in rows.items() if k.startswith('requests')):,} requests, "
        f"{sum(v for k, v in rows.items() if k.startswith('ledger')):,} ledger lines"
    )
    results = []
    for limit in [None] + (args.memory_limit or []):
        # each setting in its own child, which reports its own peak RSS
        runs = [_child(db_path, limit) for _ in range(max(args.repeat, 1))]
        res, wall, peak = min(runs, key=lambda r: r[0]["detect_s"])  # type: ignore[arg-type,return-value]
        if len(runs) > 1:
            print(
                f"detect over {len(runs)} runs: "
                + ", ".join(f"{r[0]['detect_s']:.2f}s" for r in runs),
                file=sys.stderr,
            )
        results.append(
            {
                "memory_limit": limit,
                "wall_s": round(wall, 2),
                "peak_rss_mb": round(peak / 1024),
                **res,
            }
        )
        print(
            f"\nmemory limit {limit or 'none'}: detect {res['detect_s']:.2f}s, "
            f"impact {res['impact_s']:.2f}s, child wall {wall:.2f}s, "
            f"peak RSS {peak / 1024:.0f} MB"
        )
        print("  shared relations (built first, in this order):")
        for name, s in res["shared"]:  # type: ignore[union-attr]
            print(f"    {name:24s} {s:8.3f}s")
        print("  detections:")
        for name, (n, s) in sorted(res["queries"].items()):  # type: ignore[union-attr]
            print(f"    {name:24s} {n:>9,} rows {s:8.3f}s")
    if args.json:
        print(json.dumps({"rows": rows, "results": results}))


if __name__ == "__main__":
    main()
