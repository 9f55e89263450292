"""Time `warroom investigate` against plain DuckDB loading the same files, in one run.

    python benchmarks/bench_investigate.py                       # 1M, 5M and 10M rows
    python benchmarks/bench_investigate.py --sizes 1 --repeat 3  # 1M rows, three runs each
    python benchmarks/bench_investigate.py --with-50m            # and 50M under --memory-limit 4GB
    python benchmarks/bench_investigate.py --memory-limit 1GB    # every warroom run under 1 GB

Each size is a generated world (`warroom generate --days 14
--requests-per-user-day 72 --seed 1`, users = rows / 2000: 5,000 users is about
10M rows, half requests and half ledger), written once under --data
(default benchmarks/data/, git-ignored) and reused. For each size, in turn and in
fresh child processes with fresh database files:

* plain: DuckDB's own reader and writer, `CREATE TABLE t AS SELECT * FROM
  read_json(file, ignore_errors = true)` for every JSON lines file of the world
  (read_csv for the price list): the floor;
* warroom: `warroom investigate WORLD --db FRESH --out-dir FRESH`, the whole job
  (ingest with every check, detect, impact, report).

Reported per run: wall seconds, rows per second, peak RSS of the child (from
wait4's resource usage), and for warroom the time of each step as investigate
prints it (ingest: the files' times; detect; the rest: impact, report and
writing the bundle); the ratio of warroom's ingest to plain DuckDB's load.
Every run is also one JSON line on stdout (and appended to --json-out).
Not run by pytest or CI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

PLAIN = r"""
import duckdb, json, sys, time
con = duckdb.connect(sys.argv[1])
con.execute("SET enable_progress_bar = false")
if sys.argv[2]:
    con.execute("SET memory_limit = ?", [sys.argv[2]])
rows = 0
started = time.monotonic()
for i, f in enumerate(sys.argv[3:]):
    reader = "read_csv" if f.endswith(".csv") else "read_json"
    con.execute(f"CREATE TABLE t{i} AS SELECT * FROM {reader}(?, ignore_errors = true)", [f])
    rows += con.execute(f"SELECT count(*) FROM t{i}").fetchone()[0]
print(json.dumps({"seconds": time.monotonic() - started, "rows": rows}))
"""


def _world(data: Path, millions: int) -> Path:
    users = millions * 500
    out = data / f"world-{users}u-14d-72r-1s"
    if not (out / "_truth" / "summary.json").exists():
        started = time.monotonic()
        cmd = [sys.executable, "-m", "warroom", "generate", str(out), "--users", str(users)]
        cmd += ["--days", "14", "--requests-per-user-day", "72", "--seed", "1"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        print(f"generated {out} in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return out


def _run(cmd: list[str], log: Path) -> tuple[float, int, int, str]:
    """Run ``cmd``; its wall seconds, exit code, peak RSS (kB) and stderr."""
    with open(log, "w") as err, tempfile.TemporaryFile() as out:
        started = time.monotonic()
        child = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.monotonic() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        stdout = out.read().decode()
    return wall, child.returncode, usage.ru_maxrss, stdout + log.read_text()


def _plain(world: Path, scratch: Path, limit: str) -> dict[str, Any]:
    files = sorted(str(p) for p in world.iterdir() if p.suffix in (".jsonl", ".csv"))
    db = scratch / "plain.duckdb"
    db.unlink(missing_ok=True)
    cmd = [sys.executable, "-c", PLAIN, str(db), limit, *files]
    wall, code, rss, text = _run(cmd, scratch / "plain.log")
    if code:
        raise SystemExit(f"plain DuckDB failed:\n{text}")
    inner = json.loads(next(ln for ln in text.splitlines() if ln.startswith("{")))
    db.unlink(missing_ok=True)
    return {"wall_s": wall, "load_s": inner["seconds"], "rows": inner["rows"], "peak_rss_kb": rss}


_FILE = re.compile(r"^loaded .*: ([\d,]+) rows(?:, ([\d,]+) rejected)?(?: in ([\d.]+)s)?$")
_DETECT = re.compile(r"^([\d,]+) findings from \d+ detections in ([\d.]+)s$")
_TOTAL = re.compile(r"^([\d,]+) rows loaded, ([\d,]+) rejected")


def _warroom(world: Path, scratch: Path, limit: str) -> dict[str, Any]:
    db, out = scratch / "warroom.duckdb", scratch / "out"
    db.unlink(missing_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "warroom", "investigate", str(world)]
    cmd += ["--db", str(db), "--out-dir", str(out)]
    if limit:
        cmd += ["--memory-limit", limit]
    wall, code, rss, text = _run(cmd, scratch / "warroom.log")
    if code:
        raise SystemExit(f"warroom investigate failed (exit {code}):\n{text[-3000:]}")
    ingest_s, detect_s, rows, rejected, files = 0.0, 0.0, 0, 0, {}
    for line in text.splitlines():
        if m := _FILE.match(line):
            seconds = float(m.group(3) or 0)
            ingest_s += seconds
            files[line.split(" ")[1]] = seconds
        elif m := _DETECT.match(line):
            detect_s = float(m.group(2))
        elif m := _TOTAL.match(line):
            rows, rejected = int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))
    db.unlink(missing_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    return {
        "wall_s": wall,
        "rows": rows,
        "rejected": rejected,
        "peak_rss_kb": rss,
        "steps": {"ingest_s": ingest_s, "detect_s": detect_s, "rest_s": wall - ingest_s - detect_s},
        "files_s": files,
    }


def _machine() -> dict[str, Any]:
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        mem = 0
    import duckdb

    return {
        "cores": os.cpu_count(),
        "memory_gb": round(mem / 1024**3, 1),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "load_avg": os.getloadavg()[0],
    }


def _line(size: int, limit: str, plain: dict[str, Any], war: dict[str, Any]) -> dict[str, Any]:
    rows = war["rows"] + war["rejected"]
    return {
        "bench": "investigate",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "size_m": size,
        "memory_limit": limit or "default",
        "rows": rows,
        "plain": {**plain, "rows_per_s": plain["rows"] / plain["load_s"]},
        "warroom": {**war, "rows_per_s": rows / war["wall_s"]},
        "ingest_ratio": war["steps"]["ingest_s"] / plain["load_s"],
    }


def _table(results: list[dict[str, Any]]) -> str:
    head = (
        "| rows | limit | plain load s | warroom ingest s | ingest / plain | detect s | rest s | "
        "investigate s | rows/s | plain RSS MB | warroom RSS MB |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    out = [head]
    for r in results:
        w, p = r["warroom"], r["plain"]
        out.append(
            f"| {r['rows']:,} | {r['memory_limit']} | {p['load_s']:.1f} | "
            f"{w['steps']['ingest_s']:.1f} | {r['ingest_ratio']:.2f} | "
            f"{w['steps']['detect_s']:.1f} | {w['steps']['rest_s']:.1f} | {w['wall_s']:.1f} | "
            f"{w['rows_per_s']:,.0f} | {p['peak_rss_kb'] / 1024:,.0f} | "
            f"{w['peak_rss_kb'] / 1024:,.0f} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,5,10", help="millions of rows, e.g. 1,5,10")
    ap.add_argument("--with-50m", action="store_true", help="also 50M rows under 4GB")
    ap.add_argument("--memory-limit", default="", help="for every warroom run but the 50M one")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each side per size")
    ap.add_argument("--data", type=Path, default=HERE / "data", help="where worlds are kept")
    ap.add_argument("--json-out", type=Path, help="append each run's JSON line here too")
    args = ap.parse_args()
    sizes = [(int(s), args.memory_limit) for s in args.sizes.split(",") if s]
    if args.with_50m:
        sizes.append((50, "4GB"))
    args.data.mkdir(parents=True, exist_ok=True)
    results = []
    for size, limit in sizes:
        world = _world(args.data, size)
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory(dir=args.data) as tmp:
                plain = _plain(world, Path(tmp), limit)
                war = _warroom(world, Path(tmp), limit)
            line = _line(size, limit, plain, war)
            results.append(line)
            text = json.dumps(line)
            print(text, flush=True)
            if args.json_out:
                with open(args.json_out, "a") as f:
                    f.write(text + "\n")
            print(_table(results[-1:]).splitlines()[-1], file=sys.stderr)
    print(_table(results), file=sys.stderr)


if __name__ == "__main__":
    main()
