"""What the speed work (issue 14) relies on: the careful path reads a file that
needs no cleaning in place, and a copy is made only when a byte must change."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

from warroom import db, render
from warroom.ingest import ingest, load, relations, scan
from warroom.ingest.scan import clean_copy

CLEAN = b'{"a": "1"}\n{"a": "2"}\n'


def test_a_clean_file_is_read_in_place(tmp_path: Path) -> None:
    src = tmp_path / "x.jsonl"
    src.write_bytes(CLEAN)
    path, bad = clean_copy(src, None, str(tmp_path))
    assert path == src and bad == []
    assert not (tmp_path / "clean.txt").exists()


@pytest.mark.parametrize(
    ("data", "want", "bad_lines"),
    [
        (CLEAN + b'{"a": "\xff"}\n' + CLEAN, CLEAN + b"\n" + CLEAN, [3]),
        (b"\xef\xbb\xbf" + CLEAN, CLEAN, []),
        (CLEAN + b'{"a": "3"}\r\n', CLEAN + b'{"a": "3"}\n', []),
        (CLEAN + b'{"a": "3"}', CLEAN + b'{"a": "3"}\n', []),
    ],
    ids=["bad-line-after-clean-ones", "bom", "crlf", "no-final-newline"],
)
@pytest.mark.parametrize("chunk", [16 * 1024 * 1024, 7])
def test_a_copy_is_made_when_a_byte_changes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    data: bytes,
    want: bytes,
    bad_lines: list[int],
    chunk: int,
) -> None:
    # small chunks: the clean lines before the first change are copied late
    monkeypatch.setattr(scan, "_CHUNK", chunk)
    src = tmp_path / "x.jsonl"
    src.write_bytes(data)
    path, bad = clean_copy(src, None, str(tmp_path))
    assert path == tmp_path / "clean.txt"
    assert path.read_bytes() == want
    assert [b.line for b in bad] == bad_lines


def test_gzip_is_always_inflated_into_a_copy(tmp_path: Path) -> None:
    src = tmp_path / "x.jsonl.gz"
    src.write_bytes(gzip.compress(CLEAN))
    path, bad = clean_copy(src, "gzip", str(tmp_path))
    assert path.read_bytes() == CLEAN and bad == []


def test_a_database_file_gets_the_default_memory_limit(tmp_path: Path) -> None:
    want = db.default_memory_limit()
    mb = int(want.removesuffix("MiB"))
    assert 256 <= mb <= 1536
    with db.connect(tmp_path / "w.duckdb") as con:
        got = con.execute("SELECT current_setting('memory_limit')").fetchone()
    assert got is not None and _mib(str(got[0])) == pytest.approx(mb, rel=0.05)
    with db.connect(tmp_path / "w.duckdb", memory_limit="300MB") as con:
        got = con.execute("SELECT current_setting('memory_limit')").fetchone()
    assert got is not None and _mib(str(got[0])) == pytest.approx(300 * 1000**2 / 1024**2, rel=0.05)


def _mib(text: str) -> float:
    """DuckDB's rendering (to one decimal) of a memory size (``1.4 GiB``, ``286.1 MiB``) in MiB."""
    number, unit = text.split()
    return float(number) * {"MiB": 1, "GiB": 1024}[unit]


def test_the_investigation_progress_line(tmp_path: Path) -> None:
    a, b = tmp_path / "requests.jsonl", tmp_path / "ledger.jsonl"
    a.write_bytes(b"x" * 3000)
    b.write_bytes(b"x" * 1000)
    shown = render.InvestigationProgress([a, b])
    shown.enabled = True  # as on a terminal
    shown.ingest("ledger.jsonl", 1.0)
    shown.file_done(10)
    shown.ingest("requests.jsonl", 0.5)
    text = shown.describe()
    assert text.startswith("ingest 1/2 files, 2.5 kB of 4.0 kB, ")
    assert "rows/s" in text and text.endswith(" left")
    assert shown.overall() == pytest.approx(0.55 * 2500 / 4000)
    shown.detect("detect: balance_timeline", 0.5)
    assert shown.describe().startswith("detect: balance_timeline, about ")
    assert shown.overall() == pytest.approx(0.55 + 0.35 * 0.5)
    shown.report("report", 1.0)
    assert shown.overall() == pytest.approx(1.0)


def test_no_progress_line_off_a_terminal(cli: Any, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "requests.jsonl").write_bytes(
        b'{"ts": "2025-06-01T00:00:00Z", "request_id": "r1", "user_id": "u1", '
        b'"plan": "free", "model": "m", "status": 200}\n'
    )
    code, out, err = cli("investigate", str(logs), "--out-dir", str(tmp_path / "out"))
    assert code == 0 and out == b""
    assert "rows/s" not in err and "left" not in err


# --------------------------------------------------------------------------- the fast path's numbering


def _numbered_log(lines: int, bad: dict[int, bytes]) -> bytes:
    """A request log whose line n holds request ``r<n>`` (or ``bad[n]``)."""
    out = []
    for n in range(1, lines + 1):
        if n in bad:
            out.append(bad[n])
        else:
            out.append(
                b'{"ts":"2025-06-01T10:00:00Z","request_id":"r%d","user_id":"u%d",'
                b'"status":200,"input_tokens":%d}' % (n, n % 97, n)
            )
    return b"\n".join(out) + b"\n"


@pytest.mark.parametrize(
    "lines", [3000, pytest.param(300_000, marks=pytest.mark.slow)], ids=["small", "large"]
)
@pytest.mark.parametrize("compression", [None, "gzip"])
def test_the_fast_path_numbers_rows_by_their_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: int, compression: str | None
) -> None:
    """Lines DuckDB's reader refuses (malformed, invalid UTF-8, not an object)
    make the fast path read leniently, each such line a row of NULLs read again
    alone: every row keeps its line number and every reject its raw text and the
    careful path's reason, across the reader's parallel buffers, with no
    fallback to the careful path."""

    def no_careful(*args: object) -> None:
        raise AssertionError("the careful path was taken")

    monkeypatch.setattr(load, "load_careful", no_careful)
    bad = {
        7: b'{"ts":"2025-06-01T10:00:00Z","request_id":"r7"',
        lines
        // 3: b'{"ts":"2025-06-01T10:00:00Z","request_id":"x\xff","user_id":"u","status":200}',
        lines // 2: b"[1, 2]",
        lines - 1: b'{"ts":"2025-06-01T10:00:00Z","request_id":"bad","user_id":"u","status":"abc"}',
    }
    data = _numbered_log(lines, bad)
    name = "requests.jsonl" + (".gz" if compression else "")
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if compression else data)
    con = db.connect(tmp_path / "w.duckdb")
    try:
        (result,) = ingest(con, [path]).files
        assert (result.rows_loaded, result.rows_rejected) == (lines - 4, 4)
        wrong = con.execute(
            "SELECT count(*) FROM requests_all WHERE request_id <> 'r' || line "
            "OR input_tokens <> line"
        ).fetchone()
        assert wrong == (0,)
        rejects = con.execute("SELECT line, raw, reason FROM rejects ORDER BY line").fetchall()
    finally:
        con.close()
    assert rejects == [
        (7, '{"ts":"2025-06-01T10:00:00Z","request_id":"r7"', "malformed JSON"),
        (
            lines // 3,
            '{"ts":"2025-06-01T10:00:00Z","request_id":"x\\xff","user_id":"u","status":200}',
            "invalid UTF-8 at byte 45",
        ),
        (lines // 2, "[1, 2]", "not a JSON object: a JSON array"),
        (
            lines - 1,
            '{"ts":"2025-06-01T10:00:00Z","request_id":"bad","user_id":"u","status":"abc"}',
            "status: not an integer: 'abc'",
        ),
    ]


def test_a_log_cut_mid_record_is_read_leniently_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log copied while it was being written ends mid-record: its last line is
    seen before the read, and the file is read once, leniently (the strict read
    would have refused that line only after reading every other), with the same
    rows and rejects as the careful path."""
    reads: list[bool] = []
    real = relations.json_fast_values

    def spy(plan: object, *, numbered: bool = True, lenient: bool = False) -> str:
        reads.append(lenient)
        return real(plan, numbered=numbered, lenient=lenient)  # type: ignore[arg-type]

    monkeypatch.setattr(relations, "json_fast_values", spy)
    cut = b'{"ts":"2025-06-01T10:00:00Z","request_id":"r3000","user_id":"u'
    data = _numbered_log(2999, {5: b'{"ts":"2025-06-01T10:00:00Z","status":"abc"}'}) + cut
    (tmp_path / "requests.jsonl").write_bytes(data)
    tables = {}
    for loaders in (load.JSON_LOADERS, ("careful",)):
        monkeypatch.setattr(load, "JSON_LOADERS", loaders)
        con = db.connect(tmp_path / f"{len(loaders)}.duckdb")
        try:
            (result,) = ingest(con, [tmp_path / "requests.jsonl"]).files
            tables[loaders] = (
                (result.rows_loaded, result.rows_rejected),
                # (the source id may differ: an attempt given up takes one)
                con.execute(
                    "SELECT * EXCLUDE (source_id) FROM requests_all ORDER BY line"
                ).fetchall(),
                con.execute("SELECT line, raw, reason FROM rejects ORDER BY line").fetchall(),
            )
        finally:
            con.close()
    assert reads == [True]
    fast, careful = tables.values()
    assert fast == careful
    assert fast[0] == (2998, 2)
    assert [(line, reason) for line, _, reason in fast[2]] == [
        (5, "request_id: missing; user_id: missing; status: not an integer: 'abc'"),
        (3000, "malformed JSON"),
    ]
