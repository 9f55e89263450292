"""Shared fixtures: a fresh database per test, and helpers to run the CLI."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import duckdb
import pytest

import warroom
from warroom import db
from warroom.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_logs"


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.delenv("WARROOM_DB", raising=False)
    # the suite runs a worker per core: one DuckDB thread each, not one per core each
    monkeypatch.setenv("WARROOM_THREADS", "1")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "test.duckdb"


@pytest.fixture
def con(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    c = db.connect(db_path)
    yield c
    c.close()


class CliResult(NamedTuple):
    """What a run of the command line left: its exit code, stdout as bytes, stderr as text."""

    code: int
    stdout: bytes
    stderr: str


def run_cli(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
) -> CliResult:
    """Run ``warroom ARGS`` in this process, as a shell would: own streams, env, cwd.

    stdin, stdout and stderr are fresh pipes-that-are-not-terminals; ``env`` is laid
    over the environment (TZ=UTC, no WARROOM_DB unless given) and everything is put
    back afterwards, so one run cannot leak into the next.
    """
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    stderr = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    os.environ.pop("WARROOM_DB", None)
    os.environ.update({"TZ": "UTC", **(env or {})})
    time.tzset()
    try:
        if cwd is not None:
            os.chdir(cwd)
        sys.stdin = io.TextIOWrapper(io.BytesIO(input or b""), encoding="utf-8")
        sys.stdout, sys.stderr = stdout, stderr
        code = main(list(args))
        for stream in (stdout, stderr):
            if not stream.closed:
                stream.flush()
        return CliResult(code, stdout.buffer.getvalue(), stderr.buffer.getvalue().decode("utf-8"))
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        time.tzset()


#: the type of the ``cli`` fixture
Cli = Callable[..., CliResult]


@pytest.fixture
def cli() -> Cli:
    """``cli("ingest", path, "--db", db)`` runs the command line in-process."""
    return run_cli


def run_process(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m warroom ARGS`` in a subprocess: for what needs a process of its own."""
    full_env = {**os.environ, "TZ": "UTC", **(env or {})}
    if env is None or "WARROOM_DB" not in env:
        full_env.pop("WARROOM_DB", None)
    return subprocess.run(
        [sys.executable, "-m", "warroom", *args], env=full_env, capture_output=True, timeout=300
    )


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


CHROMIUM = Path("/usr/bin/chromium")


def world_logs(world: tuple[int, int, int] | None, root: Path) -> Path:
    """The logs of a test world: the sample logs (``world`` None), or a world
    generated under ``root`` from its (seed, users, days)."""
    if world is None:
        return SAMPLE
    from warroom.generate import generate

    seed, users, days = world
    logs = root / "logs"
    generate(logs, users=users, days=days, seed=seed)
    return logs


def need_chromium() -> None:
    """Skip where Debian's chromium is missing, but fail under CI (.ci/run installs it)."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess[bytes]:
    """Headless Chromium with a throwaway profile and nothing fetched from the network."""
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
            f"--user-data-dir={tmp / 'chromium-profile'}",
            *args,
        ],
        capture_output=True,
        timeout=180,
    )


__all__ = [
    "CHROMIUM",
    "chromium",
    "need_chromium",
    "ROOT",
    "SAMPLE",
    "Cli",
    "CliResult",
    "run_cli",
    "run_process",
    "write",
    "warroom",
]
