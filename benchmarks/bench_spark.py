"""DuckDB against Spark local[N] on the same generated world: `detect` + `impact`,
or with ``--investigate`` the whole `warroom investigate` from the raw files.

    python benchmarks/bench_spark.py --users 1000 --days 14 --rate 72    # ~1M requests
    python benchmarks/bench_spark.py --users 5000 --days 14 --rate 72    # ~5M requests
    python benchmarks/bench_spark.py --users 200 --days 14 --rate 72 --master 'local[2]'
    python benchmarks/bench_spark.py --users 1000 --investigate          # ingest included

Generates and ingests the world once (cached under benchmarks/data/, shared with
bench_detect.py), then runs, each in a fresh child process: DuckDB's `detect` and
`impact` on the stored findings, and the same on Spark (`warroom.spark.run`:
export of the canonical tables to the warehouse, shared relations, detections,
impact sums; the JVM's start is timed apart). Wall time per phase, and the peak
resident memory of the child's whole process tree (the Python driver, the JVM,
Spark's Python workers), sampled from /proc every 0.2 s. The findings and impact
of both engines are compared, so a fast wrong answer cannot pass.

``--investigate`` times ``warroom investigate WORLD --out-dir DIR`` end to end, once
with DuckDB and once with ``--engine spark --spark-master MASTER`` (Spark reading
the files itself), each a fresh process, and compares their ``impact.csv`` and
``affected-users.csv`` byte for byte. Not run by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_detect import _rows, _world  # noqa: E402

CHILD = r"""
import json, sys, time
from pathlib import Path
from warroom import db
from warroom.impact import Policy, impact
from warroom.pack import load_pack
engine, path, master, warehouse = sys.argv[1:5]
con = db.connect(path)
pack = load_pack()
out = {}
if engine == "duckdb":
    from warroom.detect import detect
    t = time.monotonic(); detect(con, pack); out["detect_s"] = time.monotonic() - t
    t = time.monotonic(); rows = impact(con, pack, Policy(), stored_findings=True)
    out["impact_s"] = time.monotonic() - t
else:
    from warroom.spark import run
    from warroom.spark.session import SparkSettings, start
    t = time.monotonic(); spark = start(SparkSettings(master=master))
    out["start_s"] = time.monotonic() - t
    t = time.monotonic(); run.detect(con, spark, pack, Path(warehouse))
    out["detect_s"] = time.monotonic() - t
    t = time.monotonic()
    rows = run.impact(con, spark, pack, Policy(), Path(warehouse), fresh=False)
    out["impact_s"] = time.monotonic() - t
f = con.execute("SELECT count(*), sum(amount) FROM main.findings").fetchall()[0]
out["findings"] = [f[0], str(f[1])]
out["impact_rows"] = rows.num_rows
out["impact_sum"] = str(sum(r["credit_amount"] for r in rows.to_pylist()))
print(json.dumps(out))
"""


def _tree_rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            ppid, pages = int(fields[1]), int(fields[21])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * os.sysconf("SC_PAGE_SIZE") // 1024
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total


def _child(engine: str, db_path: Path, master: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, engine, str(db_path), master, str(Path(tmp) / "wh")],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        peak = [0]

        def sample() -> None:
            while proc.poll() is None:
                peak[0] = max(peak[0], _tree_rss_kb(proc.pid))
                time.sleep(0.2)

        watcher = threading.Thread(target=sample, daemon=True)
        watcher.start()
        stdout, _ = proc.communicate()
        watcher.join()
        if proc.returncode != 0:
            raise SystemExit(f"{engine} child failed with exit code {proc.returncode}")
        res: dict[str, object] = json.loads(stdout.strip().splitlines()[-1])
        res["wall_s"] = round(time.monotonic() - t, 1)
        res["peak_rss_mb"] = round(peak[0] / 1024)
        return res


def _watched(cmd: list[str], log: Path) -> tuple[float, int, int]:
    """Run ``cmd``, its stderr into ``log``; its wall time, exit code and the peak
    resident memory (KB) of its whole process tree."""
    t = time.monotonic()
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _tree_rss_kb(proc.pid))
            time.sleep(0.2)
    return time.monotonic() - t, proc.returncode, peak


def _investigate(world: Path, master: str) -> dict[str, object]:
    """``warroom investigate`` on both engines, end to end, outputs compared."""
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {"duckdb": Path(tmp) / "duckdb", "spark": Path(tmp) / "spark"}
        for engine, folder in dirs.items():
            cmd = [sys.executable, "-m", "warroom", "investigate", str(world)]
            cmd += ["--out-dir", str(folder)]
            if engine == "spark":
                cmd += ["--engine", "spark", "--spark-master", master]
            log = Path(tmp) / f"{engine}.stderr"
            wall, code, peak = _watched(cmd, log)
            if code != 0:
                tail = log.read_text(errors="replace").splitlines()[-20:]
                print("\n".join(tail), file=sys.stderr)
                raise SystemExit(f"{engine} investigate failed with exit code {code}")
            out[engine] = {"wall_s": round(wall, 1), "peak_rss_mb": round(peak / 1024)}
        out["same"] = all(
            (dirs["duckdb"] / name).read_bytes() == (dirs["spark"] / name).read_bytes()
            for name in ("impact.csv", "affected-users.csv")
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--rate", type=float, default=72.0, help="requests per user-day")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--json", action="store_true", help="print one JSON line at the end")
    ap.add_argument(
        "--investigate", action="store_true", help="time `investigate` end to end instead"
    )
    args = ap.parse_args()
    world = _world(args.users, args.days, args.rate, args.seed)
    rows = _rows(world)
    if args.investigate:
        print(f"world: {world.name}; load {os.getloadavg()[0]:.1f}")
        res = _investigate(world, args.master)
        for engine in ("duckdb", "spark"):
            r = res[engine]
            print(f"{engine}: investigate {r['wall_s']} s, peak RSS (tree) {r['peak_rss_mb']} MB")  # type: ignore[index]
        print(
            f"impact.csv and affected-users.csv byte for byte alike: {res['same']}; "
            f"load {os.getloadavg()[0]:.1f}"
        )
        if args.json:
            print(json.dumps({"rows": rows, **res}))
        return
    db_path = world.with_suffix(".duckdb")
    if not db_path.exists():
        subprocess.run(
            [sys.executable, "-m", "warroom", "ingest", str(world), "--db", str(db_path)],
            check=True,
            stderr=subprocess.DEVNULL,
        )
    requests = sum(v for k, v in rows.items() if k.startswith("requests"))
    ledger = sum(v for k, v in rows.items() if k.startswith("ledger"))
    print(f"world: {requests:,} requests, {ledger:,} ledger lines; load {os.getloadavg()[0]:.1f}")
    duck = _child("duckdb", db_path, args.master)
    spark = _child("spark", db_path, args.master)
    same = all(duck[k] == spark[k] for k in ("findings", "impact_rows", "impact_sum"))
    print("| engine | start | detect | impact | wall | peak RSS (tree) |")
    print("|---|---|---|---|---|---|")
    for name, r in (("DuckDB", duck), (f"Spark {args.master}", spark)):
        print(
            f"| {name} | {float(r.get('start_s', 0)):.1f} s | {float(r['detect_s']):.1f} s "  # type: ignore[arg-type]
            f"| {float(r['impact_s']):.1f} s | {r['wall_s']} s | {r['peak_rss_mb']} MB |"  # type: ignore[arg-type]
        )
    print(f"same findings and impact: {same}; load {os.getloadavg()[0]:.1f}")
    if args.json:
        print(json.dumps({"rows": rows, "duckdb": duck, "spark": spark, "same": same}))


if __name__ == "__main__":
    main()
