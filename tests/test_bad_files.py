"""Whole files that are bad, and the whole catalog through the command line.

* A ``.json`` array, plain or gzip: recognised by its first element whatever the
  file's size, loaded element by element, and refused whole (nothing loaded)
  when its text is cut short, since an array that ends early would otherwise
  load the elements it has as if they were all.
* Every case of the bad-input catalog (tests/test_bad_input.py) through
  ``warroom ingest``, then ``detect``, ``impact`` and ``report`` on what it
  loaded: a documented exit code and a one-line message each, never
  "internal error" and never a traceback.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import duckdb
import pytest

from tests.conftest import Cli, write
from tests.test_bad_input import CASES, FILE_ERRORS, req
from warroom import db, ingest
from warroom.errors import InputError


def _array(n: int, **over: object) -> bytes:
    return ("[" + ",\n".join(req(i, **over) for i in range(1, n + 1)) + "]\n").encode()


@pytest.fixture
def mem() -> duckdb.DuckDBPyConnection:
    return db.connect(":memory:")


def test_a_gzip_array_is_an_array(mem: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """``x.json.gz`` holding one array loads element by element, and its kind is
    told from its first element's fields as for a plain ``.json``."""
    f = write(tmp_path / "export.json.gz", gzip.compress(_array(3)))
    (result,) = ingest(mem, [f]).files
    assert (result.kind, result.rows_loaded, result.rows_rejected) == ("requests", 3, 0)
    assert mem.execute("SELECT line, request_id FROM requests ORDER BY line").fetchall() == [
        (1, "r1"),
        (2, "r2"),
        (3, "r3"),
    ]


def test_a_large_array_is_told_by_its_first_element(
    mem: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """The first MiB of a large array does not end with ``]``: its kind still comes
    from the first element."""
    f = write(tmp_path / "export.json", _array(6000, error_code="x" * 200))
    assert f.stat().st_size > 1 << 20
    (result,) = ingest(mem, [f]).files
    assert (result.kind, result.rows_loaded) == ("requests", 6000)


def test_bytes_after_a_gzip_array_are_one_reject(
    mem: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    packed = gzip.compress(_array(4))
    f = write(tmp_path / "requests.json.gz", packed + b"\0" * 512)
    (result,) = ingest(mem, [f]).files
    assert (result.rows_loaded, result.rows_rejected) == (4, 1)
    assert mem.execute("SELECT line, raw, reason FROM rejects").fetchall() == [
        (
            5,
            "",
            f"512 bytes after the end of the gzip data (at byte {len(packed) + 1} of the file) "
            "are not gzip: not loaded",
        )
    ]


WHOLE = _array(5).decode().rstrip()
CUT_SHORT = [
    ("cut-after-a-comma", "requests.json", WHOLE[: WHOLE.index(req(4))]),
    ("cut-after-a-comma-and-newline", "requests.json", WHOLE[: WHOLE.index(req(4))] + "\n"),
    ("closing-bracket-missing", "requests.json", WHOLE[:-1]),
    ("cut-inside-an-element", "requests.json", WHOLE[: len(WHOLE) // 2]),
    ("gzip-cut-after-a-comma", "requests.json.gz", WHOLE[: WHOLE.index(req(4))]),
]


@pytest.mark.parametrize(
    ("name", "data"), [c[1:] for c in CUT_SHORT], ids=[c[0] for c in CUT_SHORT]
)
@pytest.mark.parametrize("profile", [None, "litellm"])
def test_an_array_cut_short_loads_nothing(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, name: str, data: str, profile: str | None
) -> None:
    """DuckDB's array reader takes ``[a, b,`` as the array ``[a, b]``: warroom checks
    the closing bracket itself, on the canonical and on the profile path."""
    raw = gzip.compress(data.encode()) if name.endswith(".gz") else data.encode()
    f = write(tmp_path / name, raw)
    with pytest.raises(InputError, match=re.escape(f"{f}: the JSON array ends without its")):
        ingest(con, [f], profile=profile)
    assert con.execute("SELECT count(*) FROM sources").fetchone() == (0,)


def test_a_gzip_array_cut_inside_the_stream_loads_nothing(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    packed = gzip.compress(_array(500))
    f = write(tmp_path / "requests.json.gz", packed[: len(packed) * 2 // 3])
    with pytest.raises(InputError, match="gzip stream truncated.*cut short is not loaded"):
        ingest(con, [f])
    assert con.execute("SELECT count(*) FROM requests_all").fetchone() == (0,)


# --------------------------------------------------------------------------- the catalog, by CLI


def _no_internal_error(code: int, stderr: str, allowed: tuple[int, ...]) -> None:
    assert code in allowed, stderr
    assert "internal error" not in stderr and "Traceback" not in stderr, stderr


@pytest.mark.slow
def test_every_catalog_case_through_the_command_line(tmp_path: Path, cli: Cli) -> None:
    """All line-level cases in one database (each file in a folder of its own, so
    names can repeat), then the analysis of whatever they loaded: every command
    exits 0 with its data; a row ingest accepted never stops the analysis."""
    dbf = str(tmp_path / "w.duckdb")
    by_kind: dict[str | None, list[str]] = {}
    for case in CASES:
        f = write(tmp_path / "cases" / case.id / case.name, case.data)
        by_kind.setdefault(case.kind.value if case.kind else None, []).append(str(f))
    for kind, files in by_kind.items():
        extra = ("--kind", kind) if kind else ()
        proc = cli("ingest", *files, *extra, "--db", dbf)
        _no_internal_error(proc.code, proc.stderr, (0,))
    for command in (
        ("detect",),
        ("impact", "-f", "csv"),
        ("export", "affected-users", "-f", "csv"),
        ("report", "--format", "markdown"),
        ("sources", "--rejects", "-f", "table"),
    ):
        proc = cli(*command, "--db", dbf)
        _no_internal_error(proc.code, proc.stderr, (0,))
        assert proc.stdout or command == ("detect",), command


@pytest.mark.parametrize(
    ("name", "data", "message"), [e[1:] for e in FILE_ERRORS], ids=[e[0] for e in FILE_ERRORS]
)
def test_every_file_error_is_one_line_exit_1(
    tmp_path: Path, cli: Cli, name: str, data: bytes, message: str
) -> None:
    f = write(tmp_path / name, data)
    proc = cli("ingest", str(f), "--db", str(tmp_path / "w.duckdb"))
    _no_internal_error(proc.code, proc.stderr, (1,))
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr
    assert proc.stdout == b""


def test_a_cut_short_array_by_command_line(tmp_path: Path, cli: Cli) -> None:
    f = write(tmp_path / "requests.json", json.dumps([{"a": 1}])[:-1] + ",")
    proc = cli("ingest", str(f), "--db", str(tmp_path / "w.duckdb"))
    _no_internal_error(proc.code, proc.stderr, (1,))
    assert proc.stderr.strip().endswith("the file looks cut short; nothing loaded")
