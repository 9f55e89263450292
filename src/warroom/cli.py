"""The typer command line: parse options, call one library function, render, map errors.

No SQL, parsing or serialisation lives here. Errors from the library arrive as
``WarroomError`` and leave as one line on stderr and the exit code of
DESIGN.md section 5; a traceback only with ``--debug``.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, BinaryIO

import duckdb
import pyarrow as pa
import typer

from warroom import __version__, db, render
from warroom.errors import ExitCode, RejectedRowsError, UsageError, WarroomError
from warroom.export import Format, write
from warroom.ingest import IngestReport
from warroom.ingest import ingest as run_ingest
from warroom.model import Kind

app = typer.Typer(
    name="warroom",
    help="Billing-incident forensics: who was charged wrongly, when, by how much, "
    "and what to give back.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": False}

#: typer reads $WARROOM_DB itself (envvar=); this is the default without it
DEFAULT_DB = Path(db.DEFAULT_DB)

DbOption = Annotated[
    Path,
    typer.Option("--db", envvar="WARROOM_DB", help="The DuckDB file to use.", show_default=True),
]
FormatOption = Annotated[
    Format | None,
    typer.Option(
        "--format",
        "-f",
        help="Output format (default: table on a terminal, else "
        "csv; with --out, taken from the file's extension).",
    ),
]
OutOption = Annotated[
    Path | None, typer.Option("--out", "-o", help="Write the rows to this file instead of stdout.")
]
MemoryOption = Annotated[
    str | None,
    typer.Option("--memory-limit", help="DuckDB memory limit, e.g. 1GB (spills to disk)."),
]

_SUFFIX_FORMATS = {
    ".csv": Format.csv,
    ".json": Format.json,
    ".jsonl": Format.jsonl,
    ".ndjson": Format.jsonl,
    ".parquet": Format.parquet,
    ".md": Format.markdown,
}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"warroom {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    _state["debug"] = debug or bool(os.environ.get("WARROOM_DEBUG"))


def emit(
    table: pa.Table, fmt: Format | None, out: Path | None, *, title: str | None = None
) -> None:
    """Send rows to stdout or ``--out`` in the chosen format."""
    if fmt is None:
        if out is not None:
            fmt = _SUFFIX_FORMATS.get(out.suffix.lower(), Format.csv)
        else:
            fmt = Format.table if sys.stdout.isatty() else Format.csv
    if fmt is Format.table:
        if out is not None:
            raise UsageError(
                "--format table draws on the terminal; pick csv, json, jsonl, "
                "parquet or markdown with --out"
            )
        render.draw_table(table, title=title)
        return
    if out is not None:
        with open(out, "wb") as fh:
            write(table, fmt, fh)
        render.note(f"wrote {table.num_rows} rows to {out}")
        return
    stream: BinaryIO = sys.stdout.buffer
    write(table, fmt, stream)
    stream.flush()


# --------------------------------------------------------------------------- commands


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Files, folders or globs to load.")],
    kind: Annotated[
        Kind | None,
        typer.Option(
            "--kind",
            help="What the files hold (default: from the file name, else from its fields).",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the rows of a file that was already ingested.")
    ] = False,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Load nothing from a file with rejected rows, and exit 3."),
    ] = False,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            help="Read the files in a "
            "foreign format: a built-in profile (see `warroom profiles`) or a "
            ".toml mapping file. With --kind, only its mappings of that kind.",
        ),
    ] = None,
    db_path: DbOption = DEFAULT_DB,
    memory_limit: MemoryOption = None,
) -> None:
    """Load request logs, ledgers, abuse decisions and price lists into the database."""
    from warroom.profiles import resolve

    # a bad profile is reported before the database is touched
    chosen = resolve(profile) if profile is not None else None
    bars = render.ProgressBars()
    try:
        with db.connect(db_path, memory_limit=memory_limit) as con, bars.running():
            report = run_ingest(
                con,
                paths,
                kind=kind,
                force=force,
                strict=strict,
                progress=bars.update,
                profile=chosen,
            )
    except RejectedRowsError as exc:
        if exc.report is not None:
            _ingest_summary(exc.report)
        raise
    _ingest_summary(report)


def _ingest_summary(report: IngestReport) -> None:
    for f in report.files:
        if f.status == "skipped":
            render.note(f"[yellow]skipped[/] {f.path}: {f.note}")
            continue
        verb = {"loaded": "loaded", "replaced": "replaced", "strict-rejected": "refused"}[f.status]
        rej = f", [red]{f.rows_rejected:,} rejected[/]" if f.rows_rejected else ""
        via = f", profile {f.profile}" if f.profile else ""
        render.note(
            f"{verb} {f.path} ({f.kind}, {f.format}{via}): {f.rows_loaded:,} rows{rej}"
            + (f" in {f.seconds:.1f}s" if f.seconds >= 0.1 else "")
        )
        if f.first_reject:
            render.note(_plain(f"  first rejected row: {f.path}:{f.first_reject}"))
    render.note(
        f"{report.rows_loaded:,} rows loaded, {report.rows_rejected:,} rejected "
        f"from {len(report.files)} file(s)"
        + ("; see `warroom sources --rejects`" if report.rows_rejected else "")
    )


@app.command()
def sources(
    rejects: Annotated[
        bool,
        typer.Option(
            "--rejects", help="List the rejected rows (file, line, reason, raw text) instead."
        ),
    ] = False,
    fmt: FormatOption = None,
    out: OutOption = None,
    db_path: DbOption = DEFAULT_DB,
) -> None:
    """What was loaded, from which files, with hashes, rows and rejects."""
    from warroom import catalog

    with db.connect(db_path, read_only=True) as con:
        table = catalog.rejects(con) if rejects else catalog.sources(con)
    emit(table, fmt, out, title="rejected rows" if rejects else "sources")


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SQL to run (read-only).")],
    queries_dir: QueriesDirOption = None,
    fmt: FormatOption = None,
    out: OutOption = None,
    db_path: DbOption = DEFAULT_DB,
    memory_limit: MemoryOption = None,
) -> None:
    """Run ad-hoc SQL on a read-only connection. It may read the pack's shared
    relations too (balance_timeline, charge_attribution, ...): the ones it names
    are built first."""
    from warroom import catalog
    from warroom.pack import load_pack, prepare

    pack = load_pack(queries_dir)
    with db.connect(db_path, read_only=True, memory_limit=memory_limit) as con:
        needed = pack.needs(query)
        if needed:
            prepare(con, pack, only=needed)
        table = catalog.run_sql(con, query)
    emit(table, fmt, out)


@app.command()
def generate(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the logs and truth into.")],
    users: Annotated[int, typer.Option("--users", min=1, help="Number of users.")] = 200,
    days: Annotated[int, typer.Option("--days", min=1, help="Days simulated.")] = 14,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 1,
    rate: Annotated[
        float,
        typer.Option("--requests-per-user-day", min=0.1, help="Mean requests per user and day."),
    ] = 40.0,
    start: Annotated[
        str, typer.Option("--start", help="First day simulated (ISO-8601, UTC unless it says).")
    ] = "2025-06-01T00:00:00Z",
    db_path: Annotated[
        Path | None, typer.Option("--db", help="Also ingest the generated logs into this database.")
    ] = None,
) -> None:
    """Write synthetic logs with injected incidents and their ground truth."""
    from datetime import UTC

    from warroom.generate import generate as run_generate
    from warroom.pack import parse_timestamp

    first_day = parse_timestamp(start).replace(tzinfo=UTC)
    bars = render.ProgressBars()
    with bars.running():
        result = run_generate(
            out_dir,
            users=users,
            days=days,
            seed=seed,
            start=first_day,
            requests_per_user_day=rate,
            progress=lambda done, total: bars.update("users", done / total),
        )
    for name, rows in sorted(result.files.items()):
        render.note(f"wrote {out_dir / name}: {rows:,} rows")
    render.note(f"ground truth in {result.truth_dir}")
    if db_path is not None:
        with db.connect(db_path) as con:
            with bars.running():
                report = run_ingest(con, [out_dir], progress=bars.update)
        _ingest_summary(report)


QueriesDirOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--queries-dir",
        envvar=None,
        help="A folder of your own .sql queries to add to the pack (also $WARROOM_QUERIES).",
    ),
]
SinceOption = Annotated[
    str | None,
    typer.Option("--since", help="Only rows at or after this time (ISO-8601, UTC unless it says)."),
]
UntilOption = Annotated[str | None, typer.Option("--until", help="Only rows before this time.")]


class Severity(str, Enum):
    info = "info"
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


@app.command("profiles")
def profiles_cmd(
    fmt: FormatOption = None,
    out: OutOption = None,
    db_path: DbOption = DEFAULT_DB,
) -> None:
    """The built-in import profiles: name, kinds produced, description, what to export."""
    from warroom.profiles import profiles_table

    del db_path  # listing the profiles needs no database
    emit(profiles_table(), fmt, out, title="import profiles (warroom ingest --profile NAME)")


@app.command("queries")
def list_queries(
    queries_dir: QueriesDirOption = None,
    fmt: FormatOption = None,
    out: OutOption = None,
    db_path: DbOption = DEFAULT_DB,
) -> None:
    """The query pack: names, titles, severity, parameters."""
    from warroom.detect import queries_table
    from warroom.pack import load_pack

    del db_path  # listing the pack needs no database
    emit(queries_table(load_pack(queries_dir)), fmt, out, title="query pack")


@app.command("run")
def run_query(
    name: Annotated[str, typer.Argument(help="The query to run (see `warroom queries`).")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="A query parameter, K=V (repeatable).")
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    queries_dir: QueriesDirOption = None,
    fmt: FormatOption = None,
    out: OutOption = None,
    db_path: DbOption = DEFAULT_DB,
    memory_limit: MemoryOption = None,
) -> None:
    """Run one query of the pack and print its rows."""
    from warroom.detect import run_one
    from warroom.pack import load_pack

    given: dict[str, str] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {item!r}: expected K=V")
        given[key.strip()] = value
    pack = load_pack(queries_dir)
    with db.connect(db_path, read_only=True, memory_limit=memory_limit) as con:
        table = run_one(con, pack, name, given, since, until)
    emit(table, fmt, out, title=pack.get(name).title)


@app.command("detect")
def detect_cmd(
    fail_on: Annotated[
        Severity | None,
        typer.Option(
            "--fail-on", help="Exit 5 when a detection of this severity or above finds anything."
        ),
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    queries_dir: QueriesDirOption = None,
    fmt: FormatOption = None,
    out: OutOption = None,
    db_path: DbOption = DEFAULT_DB,
    memory_limit: MemoryOption = None,
) -> None:
    """Run every detection, store the findings, print a summary (stderr)."""
    from warroom.detect import detect, summary_table
    from warroom.pack import load_pack

    pack = load_pack(queries_dir)
    bars = render.ProgressBars()
    with db.connect(db_path, memory_limit=memory_limit) as con:
        with bars.running():
            result = detect(con, pack, since=since, until=until, progress=bars.update)
    table = summary_table(result)
    if fmt is None and out is None:
        render.draw_summary(table, title=f"findings ({result.seconds:.1f}s)")
    else:
        emit(table, fmt, out)
    if result.shared:
        slowest = max(result.shared, key=lambda s: s[1])
        render.note(
            f"{sum(s for _, s in result.shared):.1f}s of it building the shared "
            f"relations (slowest: {slowest[0]} {slowest[1]:.1f}s)"
        )
    if fail_on is not None:
        hits = result.worst_at_or_above(fail_on.value)
        if hits:
            render.note(
                f"{sum(h.rows for h in hits):,} finding(s) at or above {fail_on.value}: "
                + ", ".join(h.name for h in hits)
            )
            raise typer.Exit(int(ExitCode.FINDINGS))


@app.command("user")
def user_cmd(
    user_id: Annotated[str, typer.Argument(help="The user (account) id.")],
    queries_dir: QueriesDirOption = None,
    fmt: FormatOption = None,
    out: OutOption = None,
    db_path: DbOption = DEFAULT_DB,
    memory_limit: MemoryOption = None,
) -> None:
    """One user's timeline: requests, ledger with replayed and counterfactual balance,
    abuse events, findings."""
    from warroom.detect import user_timeline
    from warroom.pack import load_pack

    with db.connect(db_path, read_only=True, memory_limit=memory_limit) as con:
        table = user_timeline(con, load_pack(queries_dir), user_id)
    if table.num_rows == 0:
        render.note(f"no rows for user {user_id!r}")
    emit(table, fmt, out, title=f"user {user_id}")


PolicyOption = Annotated[
    Path | None,
    typer.Option("--policy", help="Credit policy (TOML); default: DESIGN.md's default policy."),
]


@app.command("impact")
def impact_cmd(
    policy: PolicyOption = None,
    queries_dir: QueriesDirOption = None,
    fmt: FormatOption = None,
    out: OutOption = None,
    db_path: DbOption = DEFAULT_DB,
    memory_limit: MemoryOption = None,
) -> None:
    """Per-user impact and suggested credits."""
    from warroom.impact import impact, load_policy
    from warroom.pack import load_pack

    pol = load_policy(policy)
    pack = load_pack(queries_dir)
    with db.connect(db_path, read_only=True, memory_limit=memory_limit) as con:
        table = impact(con, pack, pol)
    emit(table, fmt, out, title=f"impact of {pol.incident_id}")
    _totals(table)


def _totals(table: pa.Table) -> None:
    from warroom.impact import totals

    for line in totals(table):
        render.note(line)


class ExportWhat(str, Enum):
    affected_users = "affected-users"


class ExportFormat(str, Enum):
    csv = "csv"
    json = "json"
    jsonl = "jsonl"
    parquet = "parquet"


@app.command("export")
def export_cmd(
    what: Annotated[ExportWhat, typer.Argument(help="What to export.")],
    policy: PolicyOption = None,
    queries_dir: QueriesDirOption = None,
    fmt: Annotated[
        ExportFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="csv (default), "
            "json, jsonl or parquet; with --out, taken from the file's extension.",
        ),
    ] = None,
    out: OutOption = None,
    db_path: DbOption = DEFAULT_DB,
    memory_limit: MemoryOption = None,
) -> None:
    """The list a refund job or a support team consumes: users owed anything."""
    from warroom.impact import affected_users, impact, load_policy
    from warroom.pack import load_pack

    del what  # one export today: affected-users
    pol = load_policy(policy)
    with db.connect(db_path, read_only=True, memory_limit=memory_limit) as con:
        table = affected_users(impact(con, load_pack(queries_dir), pol))
    chosen = Format(fmt.value) if fmt is not None else None
    if chosen is None and out is None:
        chosen = Format.csv
    emit(table, chosen, out)
    _totals(table)


class ReportFormat(str, Enum):
    markdown = "markdown"
    html = "html"


_REPORT_SUFFIXES = {
    ".md": ReportFormat.markdown,
    ".markdown": ReportFormat.markdown,
    ".html": ReportFormat.html,
    ".htm": ReportFormat.html,
}


@app.command("report")
def report_cmd(
    fmt: Annotated[
        ReportFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="markdown or html (default: from --out's extension, else markdown).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Write the report to this file (.md or .html) instead of stdout."
        ),
    ] = None,
    policy: PolicyOption = None,
    queries_dir: QueriesDirOption = None,
    db_path: DbOption = DEFAULT_DB,
    memory_limit: MemoryOption = None,
) -> None:
    """The post-incident report: Markdown, or one self-contained HTML file with charts."""
    from warroom.impact import load_policy
    from warroom.pack import load_pack
    from warroom.report import RENDERERS, build_report, write_atomic

    if fmt is None and out is not None:
        fmt = _REPORT_SUFFIXES.get(out.suffix.lower())
        if fmt is None:
            raise UsageError(
                f"--out {out}: cannot tell the format from the extension; "
                "name it .md or .html, or give --format"
            )
    chosen = fmt or ReportFormat.markdown
    pol = load_policy(policy)
    pack = load_pack(queries_dir)
    with db.connect(db_path, read_only=True, memory_limit=memory_limit) as con:
        with render.ProgressBars().running() as bars:
            built = build_report(con, pack, pol, progress=bars.update)
    data = RENDERERS[chosen.value](built).encode()
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    write_atomic(out, data)
    render.note(_plain(f"wrote the {chosen.value} report to {out}"))


@app.command("investigate")
def investigate_cmd(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Files, folders or globs to load "
            "(as for ingest; files already loaded are skipped)."
        ),
    ],
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out-dir", help="Where to write report.md, report.html and affected-users.csv."
        ),
    ] = Path("warroom-out"),
    policy: PolicyOption = None,
    queries_dir: QueriesDirOption = None,
    db_path: Annotated[
        Path | None,
        typer.Option(
            "--db",
            envvar="WARROOM_DB",
            help="The DuckDB file to use (default: OUT_DIR/warroom.duckdb).",
        ),
    ] = None,
    memory_limit: MemoryOption = None,
) -> None:
    """Ingest, detect, impact and report in one go: the main job. Writes files, prints
    progress and a summary on stderr, nothing on stdout."""
    import time

    from warroom.detect import detect
    from warroom.impact import load_policy
    from warroom.pack import load_pack
    from warroom.report import build_report, investigation_inputs, summary_lines, write_bundle

    started = time.monotonic()
    # a bad policy, query pack or path fails now, not after a long ingest
    pol = load_policy(policy)
    pack = load_pack(queries_dir)
    files = investigation_inputs(paths, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    db_file = db_path or out_dir / "warroom.duckdb"
    with db.connect(db_file, memory_limit=memory_limit) as con:
        with render.ProgressBars().running() as bars:
            loaded = run_ingest(con, files, progress=bars.update)
        _ingest_summary(loaded)
        with render.ProgressBars().running() as bars:
            found = detect(con, pack, progress=bars.update)
        render.note(
            f"{sum(d.rows for d in found.detectors):,} findings from "
            f"{len(found.detectors)} detections in {found.seconds:.1f}s"
        )
        with render.ProgressBars().running() as bars:
            built = build_report(con, pack, pol, progress=bars.update, stored_findings=True)
    bundle = write_bundle(built, out_dir)
    render.note("")
    for line in summary_lines(built):
        render.note(_plain(line))
    render.note(
        _plain(
            f"report: {bundle.markdown}, {bundle.html}\n"
            f"refund list: {bundle.affected_users} ({bundle.affected_rows:,} rows)\n"
            f"database: {db_file}\n"
            f"done in {time.monotonic() - started:.1f}s"
        )
    )


def _plain(text: str) -> str:
    """Text shown as is by the stderr console (no rich markup in ids or paths)."""
    return text.replace("[", r"\[")


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv``) and return its exit code.

    The console script and ``python -m warroom`` exit with this code; tests call it
    in-process. Library errors become one line on stderr and the exit code of
    DESIGN.md section 5; ``--debug`` lets the traceback through instead.
    """
    _state["debug"] = False
    render.stderr = render.stderr_console()  # the stderr of this run, not of the import
    try:
        app(args=argv, prog_name=None if argv is None else "warroom")
    except SystemExit as exc:
        return _exit_code(exc.code)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except WarroomError as exc:
        if _state["debug"]:
            raise
        render.error(str(exc))
        return int(exc.exit_code)
    except duckdb.Error as exc:
        if _state["debug"]:
            raise
        text = str(exc).strip().splitlines()
        render.error(f"database error: {text[0] if text else type(exc).__name__}")
        return int(ExitCode.ERROR)
    except KeyboardInterrupt:
        render.error("interrupted")
        return 130
    except BrokenPipeError:
        # the reader of stdout went away (e.g. `| head`): not an error
        sys.stderr.close()
        return 0
    except Exception as exc:  # a bug: say so in one line, keep the traceback for --debug
        if _state["debug"]:
            raise
        render.error(
            f"internal error: {type(exc).__name__}: {exc} (rerun with --debug "
            "for the traceback, and please report it)"
        )
        return int(ExitCode.ERROR)
    return 0


def _exit_code(code: object) -> int:
    """The status ``sys.exit(code)`` would give the process (a message is printed, status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
