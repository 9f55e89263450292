"""The transaction per file: load it the fast way or the careful way, record its
rejects and its row in the ``sources`` manifest, replace or skip a repeat.

A file lands whole or not at all: every path below writes into one transaction
that commits only with the file's ``sources`` row. JSON lines try the fast path
first; when it cannot load a file exactly (see ``load_json_fast``) that
transaction is rolled back and the careful path starts afresh.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from warroom import profiles
from warroom.errors import ExitCode, InputError, WarroomError
from warroom.ingest import relations
from warroom.ingest.convert import install_macros
from warroom.ingest.loaders import Fallback, count_rows, load_careful, load_json_fast, load_profile
from warroom.ingest.scan import TextScan, scan_file
from warroom.ingest.sniff import FilePlan, expand_paths, plan_file
from warroom.model import IDENTITY, TABLES, Kind
from warroom.profiles import Profile

#: the ways a canonical JSON file is tried, in turn (a test may keep one); a
#: lenient fast read is tried only when the strict one met a line it refuses
JSON_LOADERS = ("fast", "lenient", "careful")

ProgressFn = Callable[[str, float], None]
"""progress(label, fraction done in [0, 1]) — called from a watcher thread."""


class RejectedRowsError(WarroomError):
    """Rows were rejected while ``--strict`` was set; nothing was loaded from those files.

    ``report`` is the whole ingest's report (the files that did load are in it too).
    """

    exit_code = ExitCode.REJECTED

    def __init__(self, message: str, report: IngestReport | None = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class FileResult:
    """What happened to one input file."""

    path: str
    kind: str
    format: str
    compression: str | None
    sha256: str
    size_bytes: int
    rows_loaded: int = 0
    rows_rejected: int = 0
    blank_lines: int = 0
    #: ``loaded``, ``skipped`` (already ingested), ``replaced`` (--force), ``strict-rejected``
    status: str = "loaded"
    #: the import profile the file was read through, if any
    profile: str | None = None
    #: ``line: reason`` of the first rejected row of a profile-read file
    first_reject: str = ""
    note: str = ""
    seconds: float = 0.0


@dataclass
class IngestReport:
    """What ingest did, file by file."""

    files: list[FileResult] = field(default_factory=list)

    @property
    def rows_loaded(self) -> int:
        return sum(f.rows_loaded for f in self.files if f.status in ("loaded", "replaced"))

    @property
    def rows_rejected(self) -> int:
        return sum(f.rows_rejected for f in self.files if f.status in ("loaded", "replaced"))


# --------------------------------------------------------------------------- the driver


def ingest(
    con: duckdb.DuckDBPyConnection,
    paths: Sequence[str | Path],
    *,
    kind: Kind | None = None,
    force: bool = False,
    strict: bool = False,
    progress: ProgressFn | None = None,
    profile: str | Path | Profile | None = None,
    on_file: Callable[[FileResult], None] | None = None,
) -> IngestReport:
    """Load ``paths`` into the canonical tables, one transaction per file.

    Every file is checked (exists, readable, format, kind) before any is loaded.
    A file whose SHA-256 is already recorded is skipped unless ``force``, which
    replaces that file's rows. With ``strict``, a file with any rejected row
    loads nothing, and RejectedRowsError is raised after all files are done.
    With ``profile`` (a built-in name, a .toml mapping file, or a Profile) the
    files are read in that foreign format; ``kind`` then keeps only the
    profile's mappings of that kind. ``on_file`` is told each file's result as
    soon as the file is done (a progress display counts its rows).

    Raises InputError for a file that cannot be read at all, ProfileError for
    an unknown profile or a bad mapping file.
    """
    prof = profiles.resolve(profile) if profile is not None else None
    if prof is not None and kind is not None:
        prof = prof.only(kind)
    install_macros(con)
    # Casting a zoned timestamp to TIMESTAMP, and reading one without a zone,
    # use the session's zone: ours is UTC whoever opened the connection.
    con.execute("SET TimeZone = 'UTC'")
    # Rows carry their line number, so their physical order does not matter;
    # letting DuckDB write them out of order makes a numbered scan much faster.
    # The caller's setting comes back when we are done.
    row = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()
    keep_order = bool(row[0]) if row else True
    con.execute("SET preserve_insertion_order = false")
    try:
        return _ingest_all(con, paths, kind, prof, force, strict, progress, on_file)
    finally:
        con.execute(f"SET preserve_insertion_order = {str(keep_order).lower()}")


def _ingest_all(
    con: duckdb.DuckDBPyConnection,
    paths: Sequence[str | Path],
    kind: Kind | None,
    prof: Profile | None,
    force: bool,
    strict: bool,
    progress: ProgressFn | None,
    on_file: Callable[[FileResult], None] | None = None,
) -> IngestReport:
    relations.install_csv_macro(con)
    files = expand_paths(paths)
    plans = [plan_file(con, p, kind, prof) for p in files]
    report = IngestReport()
    strict_failures: list[FileResult] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        for plan in plans:
            result = _ingest_one(
                con, plan, force=force, strict=strict, pool=pool, progress=progress
            )
            report.files.append(result)
            if on_file is not None:
                on_file(result)
            if result.status == "strict-rejected":
                strict_failures.append(result)
    if strict_failures:
        names = ", ".join(f"{r.path} ({r.rows_rejected} rejected)" for r in strict_failures)
        raise RejectedRowsError(f"--strict: nothing loaded from {names}", report)
    return report


@dataclass(frozen=True)
class _Options:
    force: bool
    strict: bool
    progress: ProgressFn | None


def _ingest_one(
    con: duckdb.DuckDBPyConnection,
    plan: FilePlan,
    *,
    force: bool,
    strict: bool,
    pool: ThreadPoolExecutor,
    progress: ProgressFn | None,
) -> FileResult:
    started = time.monotonic()
    result = FileResult(
        str(plan.path),
        plan.profile.kind_label if plan.profile else plan.kind.value,
        plan.format,
        plan.compression,
        "",
        plan.size,
        profile=plan.profile.name if plan.profile else None,
    )
    scan: Future[TextScan] = pool.submit(scan_file, plan.path, plan.compression)
    # Hashing overlaps the load; only a file the size of one already loaded could
    # be a repeat, and for that one the hash comes first.
    if count_rows(con, "SELECT count(*) FROM sources WHERE size_bytes = ?", [plan.size]):
        if _previous(con, scan.result().sha256) and not force:
            return _skipped(result, con, scan.result().sha256)
    loaders = list(JSON_LOADERS) if plan.format == "json" else ["careful"]
    if plan.profile is not None:
        loaders = ["profile"]
    options = _Options(force, strict, progress)
    skip_lenient = True
    for loader in loaders:
        if loader == "lenient" and skip_lenient:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            if _attempt(con, plan, loader, scan, result, options):
                return result
        except Fallback as fallback:
            con.execute("ROLLBACK")
            con.execute("SET preserve_insertion_order = false")
            skip_lenient = not fallback.lenient_may_help
            continue
        except BaseException:
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:
                pass
            raise
        break
    result.seconds = time.monotonic() - started
    return result


def _attempt(
    con: duckdb.DuckDBPyConnection,
    plan: FilePlan,
    loader: str,
    scan: Future[TextScan],
    result: FileResult,
    options: _Options,
) -> bool:
    """Load the file with ``loader`` in the open transaction and commit it; or roll
    it back and return True when the file ends here unloaded (a repeat, or
    ``--strict`` with rejects). Raises Fallback when the fast path cannot."""
    source_id = count_rows(con, "SELECT nextval('source_ids')")
    replaced = _replaced(con, plan, scan) if options.force else []
    if replaced:
        # The file keeps its place in ingest order: its rows go back under its
        # old source id, so the canonical row of an id (the first ingested,
        # lowest source id then line) is the same before and after --force.
        for old_id in replaced:
            _delete_source(con, old_id, reelect=False)
        source_id = replaced[0]
    with _Watch(con, options.progress, plan.path.name):
        if loader in ("fast", "lenient"):
            lenient = loader == "lenient"
            loaded, rejected = load_json_fast(con, plan, source_id, scan, lenient=lenient)
        elif loader == "profile":
            loaded, rejected, rejected_rows = load_profile(con, plan, source_id)
        else:
            loaded, rejected = load_careful(con, plan, source_id)
    if loader != "profile":
        rejected_rows = rejected
    _check_unchanged(plan, scan.result())
    sha = scan.result().sha256
    previous = _previous(con, sha)
    if previous and not options.force:
        con.execute("ROLLBACK")
        _skipped(result, con, sha)
        return True
    for old_id, _ in previous:
        _delete_source(con, old_id)
    if replaced:
        _elect_orphans(con)
    result.sha256 = sha
    result.status = "replaced" if previous or replaced else "loaded"
    result.rows_loaded, result.rows_rejected = loaded, rejected
    if plan.profile is not None and rejected:
        first = con.execute(
            "SELECT line, reason FROM rejects WHERE source_id = ? ORDER BY line LIMIT 1",
            [source_id],
        ).fetchone()
        result.first_reject = f"{first[0]}: {first[1]}" if first else ""
    # the rows of a JSON array or document are elements, not lines
    if plan.format != "parquet" and not (plan.profile and plan.json_array or plan.json_document):
        header = 1 if plan.header else 0
        result.blank_lines = max(scan.result().lines - loaded - rejected_rows - header, 0)
    if options.strict and rejected:
        con.execute("ROLLBACK")
        result.status = "strict-rejected"
        result.note = "--strict: nothing loaded from this file"
        return True
    con.execute(
        "INSERT INTO sources VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            source_id,
            result.path,
            result.kind,
            plan.format,
            plan.compression,
            result.profile,
            sha,
            plan.size,
            loaded,
            rejected,
            result.blank_lines,
            datetime.now(UTC).replace(tzinfo=None),
        ],
    )
    con.execute("COMMIT")
    return False


def _check_unchanged(plan: FilePlan, scan: TextScan) -> None:
    """Raise InputError (the open transaction is then rolled back: nothing of the
    file loads) if the file changed between its planning and the end of its load,
    e.g. a log still being written: its hash, size and rows would describe
    different states of it."""
    try:
        st = plan.path.stat()
        now: tuple[int, int] = (st.st_size, st.st_mtime_ns)
    except OSError:
        now = (-1, 0)
    if scan.size != plan.size or now != (plan.size, plan.mtime_ns):
        size = max(now[0], scan.size)
        raise InputError(
            f"{plan.path}: the file changed while it was being ingested "
            f"({plan.size} bytes when ingest began, {size} now); nothing loaded from it; "
            "ingest it again once it is complete"
        )


def _previous(con: duckdb.DuckDBPyConnection, sha: str) -> list[tuple[int, str]]:
    rows = con.execute(
        "SELECT source_id, path FROM sources WHERE sha256 = ? ORDER BY 1", [sha]
    ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def _skipped(result: FileResult, con: duckdb.DuckDBPyConnection, sha: str) -> FileResult:
    result.sha256 = sha
    result.status = "skipped"
    result.note = (
        f"already ingested as {_previous(con, sha)[0][1]}; nothing loaded (--force replaces it)"
    )
    return result


def _replaced(con: duckdb.DuckDBPyConnection, plan: FilePlan, scan: Future[TextScan]) -> list[int]:
    """The source ids holding this file's bytes already (to be replaced: --force)."""
    # only a file of the same size can have the same hash: no wait for it otherwise
    if not count_rows(con, "SELECT count(*) FROM sources WHERE size_bytes = ?", [plan.size]):
        return []
    return [old_id for old_id, _ in _previous(con, scan.result().sha256)]


def _elect_orphans(con: duckdb.DuckDBPyConnection) -> None:
    """Make the first row (lowest source id, then line) of every id that has no
    canonical row canonical: after a replaced file no longer holds an id. Of rows
    on one line (the elements of a saved page) one is elected: their order within
    the line is not stored."""
    for kind, key in IDENTITY.items():
        table = TABLES[kind]
        con.execute(f"""
            UPDATE {table} SET canonical = true FROM (
                SELECT rowid AS r FROM {table}
                WHERE {key} IN (
                    SELECT {key} FROM {table} GROUP BY {key} HAVING NOT bool_or(canonical)
                )
                QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY source_id, line, rowid) = 1
            ) first WHERE {table}.rowid = first.r""")


def _delete_source(con: duckdb.DuckDBPyConnection, source_id: int, *, reelect: bool = True) -> None:
    """Remove one source's rows everywhere, re-electing canonical rows it held
    (unless ``reelect`` is False: the caller loads the file again in its place)."""
    for kind, table in TABLES.items():
        if kind in IDENTITY and reelect:
            key = IDENTITY[kind]
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE wr_lost AS SELECT DISTINCT {key} "
                f"FROM {table} WHERE source_id = ? AND canonical",
                [source_id],
            )
            con.execute(f"DELETE FROM {table} WHERE source_id = ?", [source_id])
            con.execute(f"""
                UPDATE {table} SET canonical = true FROM (
                    SELECT rowid AS r FROM {table}
                    WHERE {key} IN (SELECT {key} FROM wr_lost)
                    QUALIFY row_number() OVER (
                        PARTITION BY {key} ORDER BY source_id, line, rowid) = 1
                ) first WHERE {table}.rowid = first.r""")
            con.execute("DROP TABLE wr_lost")
        else:
            con.execute(f"DELETE FROM {table} WHERE source_id = ?", [source_id])
    con.execute("DELETE FROM rejects WHERE source_id = ?", [source_id])
    con.execute("DELETE FROM sources WHERE source_id = ?", [source_id])


class _Watch:
    """Poll DuckDB's query progress from a thread while a file loads."""

    def __init__(self, con: duckdb.DuckDBPyConnection, fn: ProgressFn | None, label: str):
        self.con, self.fn, self.label = con, fn, label
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> _Watch:
        if self.fn is not None:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        return self

    def _run(self) -> None:
        assert self.fn is not None
        while not self.stop.wait(0.2):
            try:
                pct = self.con.query_progress()
            except duckdb.Error:
                continue
            if pct is not None and pct >= 0:
                self.fn(self.label, min(float(pct) / 100.0, 1.0))

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        if self.fn is not None:
            self.fn(self.label, 1.0)
