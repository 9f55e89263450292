"""Ingest speed and memory: `warroom ingest` against plain DuckDB on the same file.

Run by hand (not by pytest)::

    python benchmarks/bench_ingest.py --lines 1000000
    python benchmarks/bench_ingest.py --lines 1000000 --dirty --json

It writes (once, cached under ``benchmarks/data/`` keyed by the line count and
cleanliness) a canonical request log in JSON lines, then measures in one run:

* **plain**: ``CREATE TABLE t AS SELECT * FROM read_json('<file>')`` into a
  fresh database file, in a fresh Python child process: the floor set by
  DuckDB's own reader and writer, with no checks, no provenance, no rejects;
* **warroom**: ``warroom ingest <file> --db <fresh db>`` as a child process.

Each measurement runs in its own child (so peak RSS is that child's alone), the
two alternate (plain, warroom, plain, warroom, ...) so neither always gets the
warmer cache, and each is repeated ``--repeat`` times; the best and the median
are reported. Wall time is taken around the child, peak RSS from
``/usr/bin/time -v`` (or ``getrusage(RUSAGE_CHILDREN)`` of a fresh wrapper
process when that tool is missing). Both sides pay a Python start-up (warroom's
imports cost about 0.2 s more).

``--dirty`` makes 0.1% of the lines bad (malformed JSON, invalid UTF-8, bad
field values, non-objects), which sends warroom down its careful path. Plain
``read_json`` refuses such a file, so its baseline there is
``read_json(..., ignore_errors = true)`` (which keeps a bad line as a row of
NULLs, so it reports every line as loaded) when DuckDB accepts that, else the
clean file of the same size (said in the output). Rates are input lines per
second on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
TIME_BIN = "/usr/bin/time"

PLANS = ("free", "plus", "pro", "business", "enterprise", "payg")
PLAN_WEIGHTS = (30, 25, 20, 10, 5, 10)
MODELS = ("gpt-4o", "gpt-4o-mini", "o3", "o4-mini", "claude-sonnet-4", "claude-haiku-3.5")
MODEL_WEIGHTS = (25, 35, 8, 12, 12, 8)
#: (status, error_code, weight)
OUTCOMES = (
    (200, None, 9600),
    (400, "invalid_request_error", 60),
    (429, "rate_limit_exceeded", 150),
    (429, "insufficient_quota", 60),
    (429, "usage_limit_reached", 40),
    (429, "abuse_blocked", 10),
    (500, "server_error", 50),
    (503, "overloaded", 30),
)
START = datetime(2025, 6, 1, tzinfo=UTC)
SPAN_S = 14 * 86400


# --------------------------------------------------------------------------- data


#: bump when the generator changes, so a stale cached file is not reused
GEN_VERSION = 2


def _data_path(lines: int, dirty: bool) -> Path:
    return DATA / f"requests-{lines}{'-dirty' if dirty else ''}-v{GEN_VERSION}.jsonl"


def _bad_line(rng: random.Random, good: bytes, nth: int) -> bytes:
    """The ``nth`` bad line: each of six kinds that real log shippers produce, in turn."""
    pick = nth % 6
    if pick == 0:  # a line cut short by a crash or a rotated file
        return good[: rng.randrange(10, len(good) - 5)]
    if pick == 1:  # a stray byte that is not UTF-8
        cut = rng.randrange(20, len(good) - 20)
        return good[:cut] + b"\xff\xfe" + good[cut:]
    if pick == 2:  # a value of the wrong type
        return good.replace(b'"status":', b'"status":"abc","was":', 1)
    if pick == 3:  # a timestamp that is not one
        return good.replace(b'"ts":"2025', b'"ts":"20x5', 1)
    if pick == 4:  # a JSON value, not an object
        return b'["not", "an", "object"]'
    return b'{"ts":"2025-06-01T00:00:00Z","user_id":"u"}'  # required fields missing


def generate(path: Path, lines: int, *, dirty: bool, seed: int = 7) -> None:
    """Write ``lines`` request rows (JSON lines) to ``path``, atomically."""
    rng = random.Random(seed)
    n_users = max(100, min(200_000, lines // 50))
    users = [f"user_{i:06d}" for i in range(n_users)]
    orgs = [f"org_{i:05d}" for i in range(max(10, n_users // 8))]
    user_org = [
        orgs[rng.randrange(len(orgs))] if rng.random() < 0.6 else None for _ in range(n_users)
    ]
    user_plan = rng.choices(PLANS, PLAN_WEIGHTS, k=n_users)
    outcomes = [(s, e) for s, e, _ in OUTCOMES]
    outcome_w = [w for _, _, w in OUTCOMES]
    step_ms = SPAN_S * 1000 / max(lines, 1)
    start_ms = int(START.timestamp() * 1000)
    bad_every = 1000  # 0.1%
    tmp = path.with_suffix(".tmp")
    batch = 50_000
    sec_cache: dict[int, str] = {}
    t0 = time.perf_counter()
    with open(tmp, "wb") as out:
        done = 0
        while done < lines:
            k = min(batch, lines - done)
            us = rng.choices(range(n_users), k=k)
            ms = rng.choices(MODELS, MODEL_WEIGHTS, k=k)
            oc = rng.choices(outcomes, outcome_w, k=k)
            buf = []
            for j in range(k):
                i = done + j
                t = start_ms + int(i * step_ms) + rng.randrange(0, 50)
                sec, milli = divmod(t, 1000)
                stamp = sec_cache.get(sec)
                if stamp is None:
                    if len(sec_cache) > 4096:
                        sec_cache.clear()
                    stamp = sec_cache[sec] = datetime.fromtimestamp(sec, UTC).strftime(
                        "%Y-%m-%dT%H:%M:%S"
                    )
                u = us[j]
                status, err = oc[j]
                ok = status < 400
                inp = int(rng.lognormvariate(7.0, 1.2)) if ok or rng.random() < 0.5 else 0
                row = {
                    "ts": f"{stamp}.{milli:03d}Z",
                    "request_id": f"req_{seed:02d}{i:010d}",
                    "user_id": users[u],
                    "org_id": user_org[u],
                    "plan": user_plan[u],
                    "model": ms[j],
                    "status": status,
                    "error_code": err,
                    "input_tokens": inp,
                    "cached_tokens": int(inp * rng.random() * 0.6) if inp else 0,
                    "output_tokens": int(rng.lognormvariate(5.5, 1.0)) if ok else 0,
                    "latency_ms": round(rng.lognormvariate(6.5, 0.6), 1),
                }
                line = orjson.dumps(row)
                if dirty and i % bad_every == bad_every // 2:
                    line = _bad_line(rng, line, i // bad_every)
                buf.append(line)
            buf.append(b"")
            out.write(b"\n".join(buf))
            done += k
    os.replace(tmp, path)
    mb = path.stat().st_size / 1e6
    print(
        f"generated {path} ({lines:,} lines, {mb:,.0f} MB) in {time.perf_counter() - t0:.1f}s",
        file=sys.stderr,
    )


def dataset(lines: int, dirty: bool) -> Path:
    path = _data_path(lines, dirty)
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        generate(path, lines, dirty=dirty)
    return path


# --------------------------------------------------------------------------- measuring


@dataclass
class Run:
    seconds: float
    peak_rss_mb: float
    rows: int


_PLAIN = """
import sys, duckdb
db, src, opts = sys.argv[1], sys.argv[2], sys.argv[3]
con = duckdb.connect(db)
con.execute(f"CREATE TABLE t AS SELECT * FROM read_json('{src}'{opts})")
print(con.execute("SELECT count(*) FROM t").fetchone()[0])
con.close()
"""

# a wrapper that runs one command and reports the peak RSS of its children
_RUSAGE = """
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:])
print("WR_MAXRSS_KB", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(r.returncode)
"""


def _measure(cmd: list[str], workdir: Path) -> tuple[float, float, str, str]:
    """Run ``cmd`` in a fresh child; (wall seconds, peak RSS MB, stdout, stderr)."""
    if os.path.exists(TIME_BIN):
        full = [TIME_BIN, "-v", *cmd]
    else:
        full = [sys.executable, "-c", _RUSAGE, *cmd]
    env = {**os.environ, "TZ": "UTC"}
    env.pop("WARROOM_DB", None)
    t0 = time.perf_counter()
    proc = subprocess.run(
        full, cwd=workdir, env=env, capture_output=True, text=True, errors="replace"
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(
            f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}"
        )
    rss_kb = None
    for ln in proc.stderr.splitlines():
        ln = ln.strip()
        if ln.startswith("Maximum resident set size (kbytes):"):
            rss_kb = int(ln.rsplit(":", 1)[1])
        elif ln.startswith("WR_MAXRSS_KB"):
            rss_kb = int(ln.split()[1])
    if rss_kb is None:
        raise SystemExit(f"could not read the peak RSS of: {' '.join(cmd)}")
    return wall, rss_kb / 1024, proc.stdout, proc.stderr


def _fresh_db(scratch: Path) -> Path:
    for p in scratch.glob("bench*.duckdb*"):
        p.unlink()
    return scratch / "bench.duckdb"


def run_plain(src: Path, scratch: Path, opts: str) -> Run:
    db = _fresh_db(scratch)
    wall, rss, out, _ = _measure([sys.executable, "-c", _PLAIN, str(db), str(src), opts], scratch)
    return Run(wall, rss, int(out.strip().splitlines()[-1]))


def run_warroom(src: Path, scratch: Path) -> Run:
    db = _fresh_db(scratch)
    exe = shutil.which("warroom") or str(Path(sys.executable).with_name("warroom"))
    wall, rss, _, _ = _measure([exe, "ingest", str(src), "--db", str(db)], scratch)
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute("SELECT sum(rows_loaded) FROM sources").fetchone()
    finally:
        con.close()
    return Run(wall, rss, int(row[0]) if row else 0)


def _plain_opts_for_dirty(src: Path, scratch: Path) -> tuple[str, Path] | None:
    """``ignore_errors`` options if plain DuckDB can read the dirty file with them."""
    opts = ", ignore_errors = true"
    try:
        run_plain(src, scratch, opts)
    except SystemExit:
        return None
    return opts, src


# --------------------------------------------------------------------------- report


@dataclass
class Summary:
    name: str
    rows: int  # rows loaded
    best_s: float
    median_s: float
    best_rows_per_s: float
    median_rows_per_s: float
    peak_rss_mb: float  # the largest over the repeats

    @classmethod
    def of(cls, name: str, runs: list[Run], lines: int) -> Summary:
        """Rates are input lines per second (on a dirty file, rejects count too)."""
        secs = [r.seconds for r in runs]
        best, med = min(secs), statistics.median(secs)
        return cls(
            name,
            runs[0].rows,
            round(best, 3),
            round(med, 3),
            round(lines / best),
            round(lines / med),
            round(max(r.peak_rss_mb for r in runs), 1),
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000, help="lines in the request log")
    ap.add_argument("--repeat", type=int, default=3, help="measurements of each (default 3)")
    ap.add_argument(
        "--dirty",
        action="store_true",
        help="make 0.1%% of the lines bad (forces warroom's careful path)",
    )
    ap.add_argument("--json", action="store_true", help="also print one JSON line of results")
    ap.add_argument("--only", choices=("plain", "warroom"), help="measure only one side")
    args = ap.parse_args(argv)
    if args.lines < 1 or args.repeat < 1:
        ap.error("--lines and --repeat must be >= 1")

    src = dataset(args.lines, args.dirty)
    load_before = os.getloadavg()[0]
    plain_src, plain_opts = src, ""
    plain_note = "read_json" if args.only != "warroom" else "not measured (--only warroom)"
    with tempfile.TemporaryDirectory(prefix="bench-", dir=DATA) as tmp:
        scratch = Path(tmp)
        if args.dirty and args.only != "warroom":
            found = _plain_opts_for_dirty(src, scratch)
            if found:
                plain_opts, plain_src = found
                plain_note = "read_json(ignore_errors = true) on the dirty file"
            else:
                plain_src = dataset(args.lines, False)
                plain_note = (
                    "read_json on the clean file of the same size (it refuses the dirty one)"
                )
        plain: list[Run] = []
        ours: list[Run] = []
        for i in range(args.repeat):
            if args.only != "warroom":
                plain.append(run_plain(plain_src, scratch, plain_opts))
                print(
                    f"  plain   #{i + 1}: {plain[-1].seconds:7.2f}s "
                    f"{plain[-1].peak_rss_mb:7.0f} MB",
                    file=sys.stderr,
                )
            if args.only != "plain":
                ours.append(run_warroom(src, scratch))
                print(
                    f"  warroom #{i + 1}: {ours[-1].seconds:7.2f}s {ours[-1].peak_rss_mb:7.0f} MB",
                    file=sys.stderr,
                )

    load_after = os.getloadavg()[0]
    summaries = ([Summary.of("plain duckdb", plain, args.lines)] if plain else []) + (
        [Summary.of("warroom ingest", ours, args.lines)] if ours else []
    )
    size_mb = src.stat().st_size / 1e6
    print(
        f"{args.lines:,} lines, {size_mb:,.0f} MB, {'dirty (0.1% bad)' if args.dirty else 'clean'}"
        f"; {args.repeat} run(s) each; {os.cpu_count()} CPU(s); "
        f"load average {load_before:.1f} before, {load_after:.1f} after"
    )
    print(f"plain baseline: {plain_note}")
    head = (
        f"{'':16} {'rows loaded':>11} {'best s':>8} {'median s':>9} {'best rows/s':>12} "
        f"{'median rows/s':>14} {'peak RSS MB':>12}"
    )
    print(head)
    for s in summaries:
        print(
            f"{s.name:16} {s.rows:>11,} {s.best_s:>8.2f} {s.median_s:>9.2f} "
            f"{s.best_rows_per_s:>12,} {s.median_rows_per_s:>14,} {s.peak_rss_mb:>12,.0f}"
        )
    result: dict[str, object] = {
        "lines": args.lines,
        "dirty": args.dirty,
        "bytes": src.stat().st_size,
        "repeat": args.repeat,
        "cpus": os.cpu_count(),
        "plain_baseline": plain_note,
        "loadavg_before": round(load_before, 2),
        "loadavg_after": round(load_after, 2),
        "runs": {s.name: asdict(s) for s in summaries},
    }
    if plain and ours:
        p, w = summaries
        best_ratio = w.best_rows_per_s / p.best_rows_per_s
        med_ratio = w.median_rows_per_s / p.median_rows_per_s
        print(
            f"warroom/plain rows/s: best {best_ratio:.2f}x, median {med_ratio:.2f}x "
            f"(target >= 0.75x on a clean file)"
        )
        result["ratio_best"] = round(best_ratio, 3)
        result["ratio_median"] = round(med_ratio, 3)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
