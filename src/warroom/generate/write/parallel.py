"""Users in worker processes, for large worlds: chunks of whole blocks of
users, each written to files of its own and appended in order, so the output
is the same bytes whatever the number of workers."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import warroom
from warroom.generate.users import WorldConfig
from warroom.generate.write.files import STREAMS
from warroom.generate.write.sink import BLOCK, Sink

#: blocks of users handed to a worker at a time
CHUNK_BLOCKS = 8
_WORKER_CODE = "from warroom.generate.write.parallel import worker; worker()"


def run_users(
    cfg: WorldConfig,
    total: Sink,
    bad_after: list[int],
    workers: int | None,
    truth: Path,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Every user of the world into ``total``: in this process, or (more than
    one chunk of users and workers) in ``workers`` processes (None: one per CPU,
    up to 8)."""
    chunk = BLOCK * CHUNK_BLOCKS
    n_chunks = -(-cfg.users // chunk)
    if workers is None:
        workers = min(os.cpu_count() or 1, 8, n_chunks)
    workers = min(workers, n_chunks)
    if workers <= 1:
        total.run(0, cfg.users, progress)
    else:
        _run_parallel(cfg, total, bad_after, workers, chunk, truth, progress)


def _run_parallel(
    cfg: WorldConfig,
    total: Sink,
    bad_after: list[int],
    workers: int,
    chunk: int,
    truth: Path,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Chunks of users in worker processes, appended in order as each completes.

    Workers are fresh interpreters started with ``python -c``, not a
    multiprocessing pool: the caller's main module is never re-imported (a
    script without a ``__main__`` guard still works) and nothing is forked
    from a process that may run threads.
    """
    tmp = Path(tempfile.mkdtemp(prefix=".chunks-", dir=truth))
    bounds = [(lo, min(lo + chunk, cfg.users)) for lo in range(0, cfg.users, chunk)]
    env = dict(os.environ)
    # so the worker imports this very package
    here = str(Path(warroom.__file__).resolve().parents[1])
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for w in range(workers):
            err = tmp / f"worker-{w}.log"
            with open(err, "wb") as err_fh:
                proc = subprocess.Popen(
                    [sys.executable, "-c", _WORKER_CODE],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=err_fh,
                    env=env,
                )
            assert proc.stdin is not None
            proc.stdin.write(pickle.dumps((cfg, bounds[w::workers], bad_after, str(tmp))))
            proc.stdin.close()
            procs.append((proc, err))
        for k, (lo, _) in enumerate(bounds):
            d = tmp / f"{lo:012d}"
            result = d / "result.pickle"
            proc, err = procs[k % workers]
            while not result.exists():
                if proc.poll() is not None and not result.exists():
                    tail = err.read_text(errors="replace").strip().splitlines()[-1:]
                    raise RuntimeError(f"a generate worker failed: {' '.join(tail)}")
                time.sleep(0.01)
            total.absorb(pickle.loads(result.read_bytes()), d)
            if progress is not None:
                progress(total.done, cfg.users)
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def worker() -> None:
    """Entry point of a worker process: its chunks, in order, from a job on stdin."""
    cfg, bounds, bad_after, tmp = pickle.load(sys.stdin.buffer)
    for lo, hi in bounds:
        sink, d = _run_chunk(cfg, lo, hi, bad_after, tmp)
        part = Path(d) / "result.part"
        part.write_bytes(pickle.dumps(sink))
        part.replace(Path(d) / "result.pickle")


def _run_chunk(
    cfg: WorldConfig, lo: int, hi: int, bad_after: list[int], tmp: str
) -> tuple[Sink, str]:
    """Users lo..hi-1 into files of their own, under tmp."""
    d = Path(tmp) / f"{lo:012d}"
    d.mkdir()
    files: dict[str, IO[bytes]] = {name: open(d / name, "wb") for name in STREAMS}  # noqa: SIM115
    try:
        sink = Sink(cfg, files, bad_after)
        sink.run(lo, hi, None)
    finally:
        for fh in files.values():
            fh.close()
    sink.files = {}
    return sink, str(d)
