"""Commands that say what to give back: impact, export, report, investigate."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import typer

from warroom import db, render
from warroom.cli import engine as engines
from warroom.cli.app import (
    DEFAULT_DB,
    DbOption,
    FormatOption,
    IncidentIdOption,
    MemoryOption,
    OutOption,
    PolicyOption,
    QueriesDirOption,
    app,
    emit,
    global_db,
)
from warroom.cli.engine import (
    Engine,
    EngineOption,
    SparkConfOption,
    SparkMasterOption,
    WarehouseOption,
    spark_settings,
)
from warroom.cli.load import ProfileOption, UserFromOption, chosen_profile, ingest_summary
from warroom.errors import UsageError, WarroomError
from warroom.export import Format
from warroom.ingest import expand_paths
from warroom.ingest import ingest as run_ingest


class ImpactBy(str, Enum):
    plan = "plan"
    currency = "currency"
    detector = "detector"


class InvestigationError(WarroomError):
    """investigate would mix two incidents in one database (exit 1)."""


@app.command("impact")
def impact_cmd(
    by: Annotated[
        ImpactBy | None,
        typer.Option(
            "--by",
            help="Totals per plan, currency or detector (each per currency) instead of "
            "one row per user.",
        ),
    ] = None,
    policy: PolicyOption = None,
    incident: IncidentIdOption = None,
    queries_dir: QueriesDirOption = None,
    fmt: FormatOption = None,
    out: OutOption = None,
    db_path: DbOption = DEFAULT_DB,
    memory_limit: MemoryOption = None,
    engine: EngineOption = Engine.duckdb,
    spark_master: SparkMasterOption = "local[*]",
    spark_conf: SparkConfOption = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Per-user impact and suggested credits."""
    from warroom.impact import impact, load_policy
    from warroom.incident import incident_id
    from warroom.pack import load_pack

    pol = load_policy(policy, incident_id=incident)
    pack = load_pack(queries_dir)
    spark = spark_settings(engine, spark_master, spark_conf, warehouse, db_path.parent)
    with db.connect(db_path, read_only=True, memory_limit=memory_limit) as con:
        table = engines.impact(con, spark, pack, pol) if spark else impact(con, pack, pol)
        named = incident_id(con, pack, pol.incident_id)
        if by is not None:
            from warroom.impact.groups import impact_by, known_plans

            plans = known_plans(con) if by is ImpactBy.plan else []
            totals = impact_by(table, by.value, pol, plans=plans)
    if by is not None:
        emit(totals, fmt, out, title=f"impact of {named} by {by.value}")
        return
    emit(table, fmt, out, title=f"impact of {named}")
    _totals(table)


def _totals(table: pa.Table) -> None:
    from warroom.impact import totals

    for line in totals(table):
        render.note(line)


@app.command("policy")
def policy_cmd(
    default: Annotated[
        bool,
        typer.Option("--default", help="Print the built-in default policy (the default)."),
    ] = False,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy", metavar="FILE", help="Print this policy file as warroom reads it instead."
        ),
    ] = None,
    db_path: DbOption = DEFAULT_DB,
) -> None:
    """A credit policy as TOML: the built-in default to start a file from, or a file
    as warroom reads it (every key, with its value)."""
    from warroom.impact.policy import load_policy, policy_toml

    del db_path  # a policy needs no database
    if default and policy is not None:
        raise UsageError("--default and --policy: give one of them")
    sys.stdout.buffer.write(policy_toml(load_policy(policy)).encode())
    sys.stdout.buffer.flush()


class ExportWhat(str, Enum):
    affected_users = "affected-users"


class Action(str, Enum):
    credit = "credit"
    notify = "notify"
    review = "review"


class ExportFormat(str, Enum):
    csv = "csv"
    json = "json"
    jsonl = "jsonl"
    parquet = "parquet"
    markdown = "markdown"


@app.command("export")
def export_cmd(
    what: Annotated[ExportWhat, typer.Argument(help="What to export.")],
    policy: PolicyOption = None,
    incident: IncidentIdOption = None,
    queries_dir: QueriesDirOption = None,
    fmt: Annotated[
        ExportFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="csv (default), "
            "json, jsonl, parquet or markdown; with --out, taken from the file's extension.",
        ),
    ] = None,
    action: Annotated[
        Action | None,
        typer.Option(
            "--action",
            help="Only the rows with this action: credit (finance), notify (support), review.",
        ),
    ] = None,
    out: OutOption = None,
    db_path: DbOption = DEFAULT_DB,
    memory_limit: MemoryOption = None,
    engine: EngineOption = Engine.duckdb,
    spark_master: SparkMasterOption = "local[*]",
    spark_conf: SparkConfOption = None,
    warehouse: WarehouseOption = None,
) -> None:
    """The list a refund job and a support team consume: every affected user and currency,
    with the action each needs (credit, notify, review)."""
    from warroom.impact import affected_users, impact, load_policy
    from warroom.pack import load_pack

    del what  # one export today: affected-users
    pol = load_policy(policy, incident_id=incident)
    spark = spark_settings(engine, spark_master, spark_conf, warehouse, db_path.parent)
    pack = load_pack(queries_dir)
    with db.connect(db_path, read_only=True, memory_limit=memory_limit) as con:
        rows = engines.impact(con, spark, pack, pol) if spark else impact(con, pack, pol)
    table = affected_users(rows, action.value if action is not None else None)
    chosen = Format(fmt.value) if fmt is not None else None
    if chosen is None and out is None:
        chosen = Format.csv
    emit(table, chosen, out)
    _totals(table)


class ReportFormat(str, Enum):
    markdown = "markdown"
    html = "html"
    statuspage = "statuspage"
    statuspage_text = "statuspage-text"


_REPORT_SUFFIXES = {
    ".md": ReportFormat.markdown,
    ".markdown": ReportFormat.markdown,
    ".html": ReportFormat.html,
    ".htm": ReportFormat.html,
    ".txt": ReportFormat.statuspage_text,
}


GapHoursOption = Annotated[
    int,
    typer.Option(
        "--gap-hours",
        min=1,
        help="Hours between two erroneous rows of a fault that start a new episode.",
    ),
]
MarkerOption = Annotated[
    list[str] | None,
    typer.Option(
        "--marker",
        help="T[=LABEL]: a deploy or fix to judge (erroneous charges 24 h before and after); "
        "repeatable.",
    ),
]
TzOption = Annotated[
    str,
    typer.Option("--tz", help="Time zone for the status-page draft's window, besides UTC."),
]


def _report_options(gap_hours: int, marker: list[str] | None, tz: str) -> dict[str, Any]:
    """build_report's keyword arguments from the report options, checked now."""
    from warroom.report.checks import parse_marker
    from warroom.report.statuspage import time_zone

    time_zone(tz)
    return {
        "gap_hours": gap_hours,
        "markers": tuple(parse_marker(m) for m in marker or ()),
        "tz": tz,
    }


@app.command("report")
def report_cmd(
    fmt: Annotated[
        ReportFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="markdown, html, or the status-page draft alone: statuspage (Markdown) or "
            "statuspage-text (default: from --out's extension, .txt for statuspage-text, "
            "else markdown).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Write the report to this file (.md, .html, or .txt for the plain-text "
            "status-page draft) instead of stdout.",
        ),
    ] = None,
    policy: PolicyOption = None,
    incident: IncidentIdOption = None,
    queries_dir: QueriesDirOption = None,
    db_path: DbOption = DEFAULT_DB,
    memory_limit: MemoryOption = None,
    gap_hours: GapHoursOption = 2,
    marker: MarkerOption = None,
    tz: TzOption = "UTC",
    engine: EngineOption = Engine.duckdb,
    spark_master: SparkMasterOption = "local[*]",
    spark_conf: SparkConfOption = None,
    warehouse: WarehouseOption = None,
) -> None:
    """The post-incident report: Markdown, or one self-contained HTML file with charts;
    `statuspage` (Markdown) or `statuspage-text` for the status-page draft alone."""
    from warroom.impact import load_policy
    from warroom.pack import load_pack
    from warroom.report import RENDERERS, build_report, write_atomic

    if fmt is None and out is not None:
        fmt = _REPORT_SUFFIXES.get(out.suffix.lower())
        if fmt is None:
            raise UsageError(
                f"--out {out}: cannot tell the format from the extension; "
                "name it .md, .html or .txt (the status-page draft), or give --format"
            )
    chosen = fmt or ReportFormat.markdown
    pol = load_policy(policy, incident_id=incident)
    pack = load_pack(queries_dir)
    spark = spark_settings(engine, spark_master, spark_conf, warehouse, db_path.parent)
    with db.connect(db_path, read_only=True, memory_limit=memory_limit) as con:
        with render.ProgressBars().running() as bars:
            options = _report_options(gap_hours, marker, tz)
            if spark:
                built = engines.report(con, spark, pack, pol, bars.update, **options)
            else:
                built = build_report(con, pack, pol, progress=bars.update, **options)
    data = RENDERERS[chosen.value](built).encode()
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    write_atomic(out, data)
    render.note(f"wrote the {chosen.value} report to {out}")


def _uri_inputs(paths: list[str], engine: Engine) -> list[str]:
    """The URIs (s3a://, hdfs://, abfss://) among ``paths``: Spark reads them itself."""
    uris = [p for p in paths if "://" in p]
    if uris and engine is not Engine.spark:
        raise UsageError(f"{uris[0]}: a URI is read with --engine spark only")
    return uris


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
    incident: IncidentIdOption = None,
    queries_dir: QueriesDirOption = None,
    db_path: Annotated[
        Path | None,
        typer.Option(
            "--db",
            metavar="FILE",
            help="The DuckDB file to use (default: OUT_DIR/warroom.duckdb; $WARROOM_DB "
            "is not read here: one incident, one database).",
        ),
    ] = None,
    append: Annotated[
        bool,
        typer.Option(
            "--append",
            help="Add these logs to a database that already holds other files "
            "(refused without it, exit 1: two incidents would be mixed).",
        ),
    ] = False,
    memory_limit: MemoryOption = None,
    gap_hours: GapHoursOption = 2,
    marker: MarkerOption = None,
    tz: TzOption = "UTC",
    profile: ProfileOption = None,
    user_from: UserFromOption = None,
    engine: EngineOption = Engine.duckdb,
    spark_master: SparkMasterOption = "local[*]",
    spark_conf: SparkConfOption = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Ingest, detect, impact and report in one go: the main job. Writes files, prints
    progress and a summary on stderr, nothing on stdout."""
    import time

    from warroom.atomic import make_folder
    from warroom.detect import detect
    from warroom.impact import load_policy
    from warroom.pack import load_pack
    from warroom.report import build_report, investigation_inputs, summary_lines, write_bundle

    started = time.monotonic()
    # a bad policy, query pack or path fails now, not after a long ingest
    pol = load_policy(policy, incident_id=incident)
    options = _report_options(gap_hours, marker, tz)
    pack = load_pack(queries_dir)
    chosen = chosen_profile(profile, user_from)
    uris = _uri_inputs(paths, engine)
    files = (
        investigation_inputs([p for p in paths if "://" not in p], out_dir)
        if len(uris) < len(paths)
        else []
    )
    db_file = _investigation_db(db_path, out_dir)
    if not append:
        _refuse_mixing(db_file, files)
    spark = spark_settings(engine, spark_master, spark_conf, warehouse, out_dir)
    make_folder(out_dir)
    shown = render.InvestigationProgress(expand_paths(files))
    with db.connect(db_file, memory_limit=memory_limit) as con:
        # --engine spark: Spark reads the files itself where it can
        loaded = engines.ingest(con, spark, files, uris, chosen) if spark else None
        native = loaded is not None
        if loaded is None:
            with shown.running():
                loaded = run_ingest(
                    con,
                    files,
                    progress=shown.ingest,
                    on_file=lambda f: shown.file_done(f.rows_loaded),
                    profile=chosen,
                )
        ingest_summary(loaded)
        with shown.running():
            if spark:
                found = engines.detect(con, spark, pack, None, None, shown.detect, native)
            else:
                found = detect(con, pack, progress=shown.detect)
        rows = sum(d.rows for d in found.detectors)
        render.note(
            f"{rows:,} finding{'' if rows == 1 else 's'} from "
            f"{len(found.detectors)} detections in {found.seconds:.1f}s"
        )
        with shown.running():
            if spark:
                built = engines.report(
                    con, spark, pack, pol, shown.report, detected=True, **options
                )
            else:
                built = build_report(
                    con, pack, pol, progress=shown.report, stored_findings=True, **options
                )
    bundle = write_bundle(built, out_dir)
    render.note("")
    for line in summary_lines(built):
        render.note(line)
    render.note(f"report: {bundle.markdown}, {bundle.html}")
    render.note(f"refund and support list: {bundle.affected_users} ({bundle.affected_rows:,} rows)")
    render.note(f"impact of every user: {bundle.impact}")
    render.note(f"database: {db_file} (for every other command: warroom --db {db_file} ...)")
    render.note(f"done in {time.monotonic() - started:.1f}s")


def _investigation_db(db_path: Path | None, out_dir: Path) -> Path:
    """``--db`` on the command line (after ``investigate`` or before it), else the
    investigation's own database in ``out_dir``; ``$WARROOM_DB`` is not read
    (DESIGN.md 7.9): a database set for other work must not swallow a new incident."""
    chosen = db_path or global_db()
    if chosen is None and os.environ.get("WARROOM_DB"):
        render.note(
            f"$WARROOM_DB is not used by investigate: it works in {out_dir / 'warroom.duckdb'} "
            "(give --db to choose)"
        )
    return chosen or out_dir / "warroom.duckdb"


def _refuse_mixing(db_file: Path, files: list[Path]) -> None:
    """Refuse, before anything is written, to add logs to a database holding others."""
    from warroom.catalog import foreign_sources

    if not db_file.exists():
        return
    with db.connect(db_file, read_only=True) as con:
        others = foreign_sources(con, files)
    if others:
        more = f" and {len(others) - 1} more" if len(others) > 1 else ""
        raise InvestigationError(
            f"{db_file} already holds other files ({others[0]}{more}); give another "
            "--out-dir or --db for this incident, or --append to add these logs to it"
        )
