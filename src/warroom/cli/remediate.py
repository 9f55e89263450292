"""Commands that say what to give back: impact, export, report, investigate."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

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
)
from warroom.cli.engine import (
    Engine,
    EngineOption,
    SparkConfOption,
    SparkMasterOption,
    WarehouseOption,
    spark_settings,
)
from warroom.cli.load import ingest_summary
from warroom.errors import UsageError
from warroom.export import Format
from warroom.ingest import ingest as run_ingest


@app.command("impact")
def impact_cmd(
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
    emit(table, fmt, out, title=f"impact of {named}")
    _totals(table)


def _totals(table: pa.Table) -> None:
    from warroom.impact import totals

    for line in totals(table):
        render.note(line)


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
            "json, jsonl or parquet; with --out, taken from the file's extension.",
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
    incident: IncidentIdOption = None,
    queries_dir: QueriesDirOption = None,
    db_path: DbOption = DEFAULT_DB,
    memory_limit: MemoryOption = None,
    engine: EngineOption = Engine.duckdb,
    spark_master: SparkMasterOption = "local[*]",
    spark_conf: SparkConfOption = None,
    warehouse: WarehouseOption = None,
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
    pol = load_policy(policy, incident_id=incident)
    pack = load_pack(queries_dir)
    spark = spark_settings(engine, spark_master, spark_conf, warehouse, db_path.parent)
    with db.connect(db_path, read_only=True, memory_limit=memory_limit) as con:
        with render.ProgressBars().running() as bars:
            if spark:
                built = engines.report(con, spark, pack, pol, bars.update)
            else:
                built = build_report(con, pack, pol, progress=bars.update)
    data = RENDERERS[chosen.value](built).encode()
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    write_atomic(out, data)
    render.note(f"wrote the {chosen.value} report to {out}")


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
            envvar="WARROOM_DB",
            help="The DuckDB file to use (default: OUT_DIR/warroom.duckdb).",
        ),
    ] = None,
    memory_limit: MemoryOption = None,
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
    pack = load_pack(queries_dir)
    files = investigation_inputs(paths, out_dir)
    spark = spark_settings(engine, spark_master, spark_conf, warehouse, out_dir)
    make_folder(out_dir)
    db_file = db_path or out_dir / "warroom.duckdb"
    with db.connect(db_file, memory_limit=memory_limit) as con:
        with render.ProgressBars().running() as bars:
            loaded = run_ingest(con, files, progress=bars.update)
        ingest_summary(loaded)
        with render.ProgressBars().running() as bars:
            if spark:
                found = engines.detect(con, spark, pack, None, None, bars.update)
            else:
                found = detect(con, pack, progress=bars.update)
        render.note(
            f"{sum(d.rows for d in found.detectors):,} findings from "
            f"{len(found.detectors)} detections in {found.seconds:.1f}s"
        )
        with render.ProgressBars().running() as bars:
            if spark:
                built = engines.report(con, spark, pack, pol, bars.update, detected=True)
            else:
                built = build_report(con, pack, pol, progress=bars.update, stored_findings=True)
    bundle = write_bundle(built, out_dir)
    render.note("")
    for line in summary_lines(built):
        render.note(line)
    render.note(f"report: {bundle.markdown}, {bundle.html}")
    render.note(f"refund and support list: {bundle.affected_users} ({bundle.affected_rows:,} rows)")
    render.note(f"impact of every user: {bundle.impact}")
    render.note(f"database: {db_file}")
    render.note(f"done in {time.monotonic() - started:.1f}s")
