"""Commands that load and look at the data: ingest, sources, sql, generate, profiles."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from warroom import db, render
from warroom.cli.app import (
    DEFAULT_DB,
    DbOption,
    FormatOption,
    MemoryOption,
    OutOption,
    QueriesDirOption,
    app,
    emit,
)
from warroom.ingest import IngestReport, RejectedRowsError
from warroom.ingest import ingest as run_ingest
from warroom.model import Kind

if TYPE_CHECKING:
    from warroom.profiles import Profile


ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        help="Read the files in a "
        "foreign format: a built-in profile (see `warroom profiles`) or a "
        ".toml mapping file. With --kind, only its mappings of that kind.",
    ),
]
UserFromOption = Annotated[
    str | None,
    typer.Option(
        "--user-from",
        help="With --profile: the account of rows whose own fields name none: a "
        "name (e.g. proxy), or a JSON path into the row ($.metadata.user_api_key_alias).",
    ),
]


def chosen_profile(profile: str | None, user_from: str | None) -> Profile | None:
    """``--profile`` and ``--user-from`` -> the Profile to read the files with (or
    None); raises ProfileError for a bad one, before any database is touched."""
    from warroom.errors import ProfileError
    from warroom.profiles import resolve, with_user

    chosen = resolve(profile) if profile is not None else None
    if user_from is not None:
        if chosen is None:
            raise ProfileError("--user-from applies to a --profile: name the profile too")
        chosen = with_user(chosen, user_from)
    return chosen


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
    profile: ProfileOption = None,
    user_from: UserFromOption = None,
    db_path: DbOption = DEFAULT_DB,
    memory_limit: MemoryOption = None,
) -> None:
    """Load request logs, ledgers, abuse decisions and price lists into the database."""
    # a bad profile is reported before the database is touched
    chosen = chosen_profile(profile, user_from)
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
            ingest_summary(exc.report)
        raise
    ingest_summary(report)


def ingest_summary(report: IngestReport) -> None:
    for f in report.files:
        if f.status == "skipped":
            render.note(("skipped", "yellow"), f" {f.path}: {f.note}")
            continue
        via = f", profile {f.profile}" if f.profile else ""
        if f.status == "strict-rejected":
            render.note(
                f"refused {f.path} ({f.kind}, {f.format}{via}): ",
                (f"{f.rows_rejected:,} rejected", "red"),
                f", so none of its {f.rows_loaded:,} good rows loaded (--strict)",
            )
        else:
            render.note(
                f"{f.status} {f.path} ({f.kind}, {f.format}{via}): {f.rows_loaded:,} rows",
                ", " if f.rows_rejected else "",
                (f"{f.rows_rejected:,} rejected", "red") if f.rows_rejected else "",
                f" in {f.seconds:.1f}s" if f.seconds >= 0.1 else "",
            )
        if f.first_reject:
            render.note(f"  first rejected row: {f.path}:{f.first_reject}")
    render.note(_totals_line(report))


def _totals_line(report: IngestReport) -> str:
    """The last line: what was loaded, and what was refused, never one as the other."""
    refused = [f for f in report.files if f.status == "strict-rejected"]
    others = len(report.files) - len(refused)
    line = f"{report.rows_loaded:,} rows loaded, {report.rows_rejected:,} rejected"
    line = line + f" from {others} file(s)" if others or not refused else "nothing loaded"
    if refused:
        line += (
            f"; {len(refused)} file(s) refused under --strict "
            f"({sum(f.rows_rejected for f in refused):,} rejected rows)"
        )
    if report.rows_rejected:
        line += "; see `warroom sources --rejects`"
    return line


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
        ingest_summary(report)


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
