"""Shared fixtures: a fresh database per test, and helpers to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

import warroom
from warroom import db

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_logs"


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.delenv("WARROOM_DB", raising=False)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "test.duckdb"


@pytest.fixture
def con(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    c = db.connect(db_path)
    yield c
    c.close()


def run_cli(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m warroom ARGS`` in a subprocess, capturing stdout and stderr."""
    full_env = {**os.environ, "TZ": "UTC", **(env or {})}
    full_env.pop("WARROOM_DB", None) if env is None or "WARROOM_DB" not in env else None
    return subprocess.run(
        [sys.executable, "-m", "warroom", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        input=input,
        timeout=300,
    )


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


__all__ = ["ROOT", "SAMPLE", "run_cli", "write", "warroom"]
