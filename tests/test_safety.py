"""Crash safety and exclusion: a file lands whole or not at all, whatever happens.

* ``kill -9`` of ``warroom ingest`` at several moments (starting up, during the
  fast load, during the careful path's scan and its staged load, around the
  commit) leaves the database exactly as it was before that file, and the next
  ingest of the same file loads every line.
* A second writer gets exit code 4 and one line on stderr; the database is
  untouched.
* A bad file in the middle of a list stops the ingest before anything loads.

The kill moments are found by watching which files the child has open
(``/proc/PID/fd``): that is what makes them land in the phase they name on a
slow or a fast machine alike. Where ``/proc`` is missing those cases skip.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Cli, run_process, write
from warroom import db
from warroom import ingest as run_ingest

BIG_LINES = 100_000
BAD_LINES = 100_000  # the careful-path file
BAD_LINE = 50_001  # its invalid UTF-8 line
HAS_PROC = Path(f"/proc/{os.getpid()}/fd").is_dir()

REQ = (
    '{"ts":"2025-06-01T10:%02d:%02d.%03dZ","request_id":"%s%d","user_id":"u%d",'
    '"org_id":"o%d","plan":"pro","model":"m1","status":%d,"error_code":null,'
    '"input_tokens":%d,"cached_tokens":%d,"output_tokens":%d,"latency_ms":%d.5}\n'
)


def _requests(prefix: str, n: int, start: int = 0) -> str:
    return "".join(
        REQ
        % (
            (i // 60) % 60,
            i % 60,
            i % 1000,
            prefix,
            i,
            i % 997,
            i % 31,
            200 if i % 50 else 429,
            100 + i % 900,
            i % 100,
            i % 300,
            i % 2000,
        )
        for i in range(start, start + n)
    )


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean request log that takes a second or more to ingest (the fast path)."""
    return write(
        tmp_path_factory.mktemp("big") / "requests-big.jsonl", _requests("big-", BIG_LINES)
    )


@pytest.fixture(scope="module")
def big_bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A log with one invalid UTF-8 line, and a blank last line: it takes the
    careful path."""
    head = _requests("bad-", BAD_LINE - 1).encode()
    tail = _requests("bad-", BAD_LINES - BAD_LINE, start=BAD_LINE).encode()
    bad = b'{"ts":"2025-06-01T10:00:00Z","request_id":"x\xff","user_id":"u","status":200}\n'
    return write(
        tmp_path_factory.mktemp("bigbad") / "requests-bigbad.jsonl", head + bad + tail + b"\n"
    )


@pytest.fixture
def base_db(tmp_path: Path) -> Path:
    """A database holding one small file (with a reject) and one small ledger."""
    path = tmp_path / "safety.duckdb"
    small = write(tmp_path / "requests-small.jsonl", _requests("small-", 5) + "{oops\n")
    ledger = write(
        tmp_path / "ledger-small.jsonl",
        '{"entry_id":"e1","ts":"2025-06-01T10:00:00Z","user_id":"u1",'
        '"kind":"charge","amount":"-0.5","request_id":"small-1"}\n',
    )
    con = db.connect(path)
    try:
        run_ingest(con, [small, ledger])
    finally:
        con.close()
    return path


TABLES = ("sources", "rejects", "requests_all", "ledger_all", "abuse_events_all", "prices")


def snapshot(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, in a fixed order (the databases here are small),
    opened the way the next warroom command would (read-write: replays the WAL)."""
    con = db.connect(path)
    try:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES}
    finally:
        con.close()


def counts(path: Path) -> dict[str, int]:
    con = db.connect(path)
    try:
        return {
            t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
            for t in TABLES
        }
    finally:
        con.close()


def _env(tmp: Path) -> dict[str, str]:
    # a careful-path copy left behind by SIGKILL lands in the test's folder
    return {**os.environ, "TZ": "UTC", "TMPDIR": str(tmp)}


# --------------------------------------------------------------------------- watching a child


@dataclass(frozen=True)
class OpenFile:
    path: str
    writing: bool


def open_files(pid: int) -> list[OpenFile]:
    out = []
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return out
    for fd in fds:
        try:
            target = os.readlink(fd_dir / fd)
            flags = 0
            for ln in (Path(f"/proc/{pid}/fdinfo") / fd).read_text().splitlines():
                if ln.startswith("flags:"):
                    flags = int(ln.split()[1], 8)
        except OSError:
            continue
        out.append(OpenFile(target, bool(flags & (os.O_WRONLY | os.O_RDWR))))
    return out


Phase = Callable[[list[OpenFile], Path], bool]


def reading_input(files: list[OpenFile], src: Path) -> bool:
    return any(f.path == str(src) for f in files)


def temp_copies(files: list[OpenFile], tmp: Path) -> list[OpenFile]:
    """Files the child has open in a folder of its TMPDIR (``tmp``): the careful
    path's copy of the input (DuckDB's own spill folder is ``*.duckdb.tmp``)."""
    return [
        f
        for f in files
        if f.path.startswith(f"{tmp}{os.sep}")
        and ".duckdb" not in f.path
        and Path(f.path).parent != tmp
    ]


def wait_for(
    proc: subprocess.Popen[bytes], src: Path, phase: Phase, timeout: float = 30
) -> float | None:
    """Poll until the child is in ``phase``; its time, or None if it never got there."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if phase(open_files(proc.pid), src):
            return time.monotonic()
        time.sleep(0.003)
    return None


def start_ingest(src: Path, dbp: Path, tmp: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "warroom", "ingest", str(src), "--db", str(dbp)],
        env=_env(tmp),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


# --------------------------------------------------------------------------- kill -9


def _kill_and_check(
    src: Path,
    dbp: Path,
    tmp: Path,
    lines: int,
    rejected: int,
    wait: Callable[[subprocess.Popen[bytes]], bool],
) -> None:
    """Start an ingest of ``src``, ``wait`` (true: the kill lands inside the
    file's transaction), SIGKILL it, check the database, then ingest again."""
    before = snapshot(dbp)
    proc = start_ingest(src, dbp, tmp)
    try:
        mid_load = wait(proc)
        finished = proc.poll() is not None  # a fast machine: nothing left to kill
        if not finished:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    if finished:
        assert not mid_load and proc.returncode == 0, err
    else:
        assert proc.returncode == -signal.SIGKILL, err

    after = snapshot(dbp)
    if mid_load:
        assert after == before
    elif after != before or finished:
        # the kill came after COMMIT (or never came): then the file is there, whole
        assert len(after["sources"]) == len(before["sources"]) + 1, (
            "after kill -9 the database is neither as before nor with the whole file"
        )
        assert len(after["requests_all"]) == len(before["requests_all"]) + lines - rejected
        assert len(after["rejects"]) == len(before["rejects"]) + rejected
        new = [r for r in after["sources"] if r not in before["sources"]]
        assert [(r[1], r[8], r[9]) for r in new] == [(str(src), lines - rejected, rejected)]
        return

    # the next ingest of the same file loads all of it (in this process, to save time)
    con = db.connect(dbp)
    try:
        report = run_ingest(con, [src])
        assert [(f.status, f.rows_loaded, f.rows_rejected) for f in report.files] == [
            ("loaded", lines - rejected, rejected)
        ]
    finally:
        con.close()
    now = counts(dbp)
    assert now["sources"] == len(before["sources"]) + 1
    assert now["requests_all"] == len(before["requests_all"]) + lines - rejected
    assert now["rejects"] == len(before["rejects"]) + rejected
    assert now["ledger_all"] == len(before["ledger_all"])


@pytest.mark.slow  # a real process killed at a moment: in `make check`
@pytest.mark.parametrize("delay", [0.2, 0.6])
def test_kill_soon_after_start_leaves_the_database_as_before(
    big: Path, base_db: Path, tmp_path: Path, delay: float
) -> None:
    """SIGKILL some time after the start, whatever it is doing (imports, schema, plan)."""

    def wait(proc: subprocess.Popen[bytes]) -> bool:
        time.sleep(delay)
        return HAS_PROC and reading_input(open_files(proc.pid), big)

    _kill_and_check(big, base_db, tmp_path, BIG_LINES, 0, wait)


needs_proc = pytest.mark.skipif(not HAS_PROC, reason="needs /proc to see what the child is doing")


@pytest.mark.slow  # a real process killed at a moment: in `make check`
@needs_proc
@pytest.mark.parametrize("delay", [0.0, 0.4])
def test_kill_during_the_fast_load(big: Path, base_db: Path, tmp_path: Path, delay: float) -> None:
    """SIGKILL ``delay`` seconds after the child opened the file (hash and read_json)."""

    def wait(proc: subprocess.Popen[bytes]) -> bool:
        seen = wait_for(proc, big, reading_input)
        assert seen is not None, "the child never opened the input file"
        time.sleep(delay)
        # still reading the file: the transaction is open (a fast machine may be past it)
        return reading_input(open_files(proc.pid), big)

    _kill_and_check(big, base_db, tmp_path, BIG_LINES, 0, wait)


@pytest.mark.slow  # a real process killed at a moment: in `make check`
@needs_proc
@pytest.mark.parametrize("writing", [True, False], ids=["scanning", "staging"])
def test_kill_during_the_careful_path(
    big_bad: Path, base_db: Path, tmp_path: Path, writing: bool
) -> None:
    """The invalid UTF-8 line sends the file to the careful path: a scan that
    writes a clean temporary copy, then a staged load that reads the copy."""

    def phase(files: list[OpenFile], src: Path) -> bool:
        return any(f.writing == writing for f in temp_copies(files, tmp_path))

    def wait(proc: subprocess.Popen[bytes]) -> bool:
        seen = wait_for(proc, big_bad, phase)
        assert seen is not None, f"the child never {'wrote' if writing else 'read'} a temp copy"
        time.sleep(0.05)
        return phase(open_files(proc.pid), big_bad)

    _kill_and_check(big_bad, base_db, tmp_path, BAD_LINES, 1, wait)
    con = db.connect(base_db)
    try:
        assert con.execute(
            "SELECT r.line, r.reason FROM rejects r JOIN sources s "
            "USING (source_id) WHERE s.path = ?",
            [str(big_bad)],
        ).fetchall() == [(BAD_LINE, "invalid UTF-8 at byte 45")]
    finally:
        con.close()


@pytest.mark.slow  # a real process killed at a moment: in `make check`
@needs_proc
def test_kill_around_commit_leaves_the_file_whole_or_absent(
    big: Path, base_db: Path, tmp_path: Path
) -> None:
    """SIGKILL as the child stops reading the file: the rows are in, and the
    sources row, COMMIT and checkpoint follow. The file is all there or not at all."""

    def wait(proc: subprocess.Popen[bytes]) -> bool:
        assert wait_for(proc, big, reading_input) is not None, "never opened the input"
        assert wait_for(proc, big, lambda f, s: not reading_input(f, s)) is not None, (
            "the child ended before it closed the input"
        )
        return False

    _kill_and_check(big, base_db, tmp_path, BIG_LINES, 0, wait)


# --------------------------------------------------------------------------- a second writer

_HOLDER = """
import sys
from warroom import db
con = db.connect(sys.argv[1])
print("ready", flush=True)
sys.stdin.read()  # hold the database until the test closes our stdin
con.close()
"""


class Holder:
    """Another process holding a database open for writing, until ``release``."""

    def __init__(self, path: Path, tmp: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(path)],
            env=_env(tmp),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == b"ready\n", "the holder could not open the db"

    def release(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        if self.proc.stdout:
            self.proc.stdout.close()
        assert self.proc.returncode == 0


@pytest.mark.slow  # a whole investigation or a second process: make slow runs it
def test_second_process_gets_exit_4_one_line_and_changes_nothing(
    base_db: Path, tmp_path: Path
) -> None:
    before = snapshot(base_db)
    new = write(tmp_path / "requests-new.jsonl", _requests("new-", 10))
    old = tmp_path / "requests-small.jsonl"
    commands = [
        ["ingest", str(new)],
        ["ingest", "--force", str(old)],
        ["sources"],
    ]
    holder = Holder(base_db, tmp_path)
    try:
        results = [run_process(*cmd, "--db", str(base_db)) for cmd in commands]
    finally:
        holder.release()
    for cmd, res in zip(commands, results, strict=True):
        err = res.stderr.decode()
        assert res.returncode == 4, (cmd, err)
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, (cmd, err)
        assert "in use by another" in err, (cmd, err)
        assert res.stdout == b""
    assert snapshot(base_db) == before
    # once the holder is gone, the same command works
    again = run_process("ingest", str(new), "--db", str(base_db))
    assert again.returncode == 0, again.stderr.decode()
    assert counts(base_db)["requests_all"] == len(before["requests_all"]) + 10


# ------------------------------------------------------------------ a bad file in the middle


@pytest.mark.parametrize(
    "bad_name, bad_bytes, says",
    [
        ("requests-b.csv", b"when,who,what\n2025-06-01,u1,x\n", "header lacks required column"),
        ("requests-b.jsonl.gz", b'{"not": "gzip"}\n', "not gzip data"),
        ("mystery-b.jsonl", b'{"foo": 1}\n', "cannot tell what this file holds"),
    ],
)
def test_bad_file_in_the_middle_loads_nothing(
    base_db: Path, tmp_path: Path, bad_name: str, bad_bytes: bytes, says: str, cli: Cli
) -> None:
    before = snapshot(base_db)
    first = write(tmp_path / "in" / "requests-a.jsonl", _requests("a-", 20))
    bad = write(tmp_path / "in" / bad_name, bad_bytes)
    last = write(tmp_path / "in" / "requests-c.jsonl", _requests("c-", 20))
    res = cli("ingest", str(first), str(bad), str(last), "--db", str(base_db))
    err = res.stderr
    assert res.code == 1, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert bad.name in err and says in err, err
    assert snapshot(base_db) == before


def test_missing_file_in_the_middle_loads_nothing(base_db: Path, tmp_path: Path, cli: Cli) -> None:
    before = snapshot(base_db)
    first = write(tmp_path / "requests-a.jsonl", _requests("a-", 20))
    last = write(tmp_path / "requests-c.jsonl", _requests("c-", 20))
    res = cli(
        "ingest", str(first), str(tmp_path / "requests-b.jsonl"), str(last), "--db", str(base_db)
    )
    assert res.code == 1
    assert "no such file or folder" in res.stderr
    assert snapshot(base_db) == before


def test_the_next_ingest_removes_the_copy_a_killed_one_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 during the careful path leaves its scratch folder (named after the
    process) in TMPDIR; the next ingest removes it, and only folders whose process
    is gone."""
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = scratch / f"warroom-{gone.pid}-abcd1234"
    stale.mkdir()
    (stale / "clean.txt").write_text("a copy of someone's log\n")
    mine = scratch / f"warroom-{os.getpid()}-efgh5678"  # a live process: kept
    mine.mkdir()
    unrelated = scratch / "warroom-notapid1"  # not our naming: kept
    unrelated.mkdir()
    log = tmp_path / "requests.jsonl"  # the blank line takes the careful path
    log.write_bytes(
        b'{"ts":"2025-06-01T10:00:00Z","request_id":"r1","user_id":"u","status":200}\n\n'
        b'{"ts":"2025-06-01T10:00:01Z","request_id":"r\xff","user_id":"u","status":200}\n'
    )
    con = db.connect(tmp_path / "w.duckdb")
    try:
        report = run_ingest(con, [log])
    finally:
        con.close()
    assert [(f.rows_loaded, f.rows_rejected) for f in report.files] == [(1, 1)]
    assert not stale.exists()
    assert mine.exists() and unrelated.exists()
    assert sorted(p.name for p in scratch.iterdir()) == sorted([mine.name, unrelated.name])
