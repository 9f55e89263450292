"""Commands that run the pack: queries, run, detect, user."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from warroom import db, render
from warroom.cli import engine as engines
from warroom.cli.app import (
    DEFAULT_DB,
    DbOption,
    FormatOption,
    MemoryOption,
    OutOption,
    QueriesDirOption,
    SinceOption,
    UntilOption,
    app,
    emit,
    output_format,
)
from warroom.cli.engine import (
    Engine,
    EngineOption,
    SparkConfOption,
    SparkMasterOption,
    WarehouseOption,
    spark_settings,
)
from warroom.errors import ExitCode, UsageError
from warroom.export import Format


class Severity(str, Enum):
    info = "info"
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


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
    engine: EngineOption = Engine.duckdb,
    spark_master: SparkMasterOption = "local[*]",
    spark_conf: SparkConfOption = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Run one query of the pack and print its rows (with file:line in table and
    markdown; source_id and line in the machine formats)."""
    from warroom.catalog import with_origin
    from warroom.detect import run_one
    from warroom.pack import load_pack

    given: dict[str, str] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {item!r}: expected K=V")
        given[key.strip()] = value
    pack = load_pack(queries_dir)
    chosen = output_format(fmt, out)
    spark = spark_settings(engine, spark_master, spark_conf, warehouse, db_path.parent)
    with db.connect(db_path, read_only=True, memory_limit=memory_limit) as con:
        if spark:
            table = engines.run_query(con, spark, pack, name, given, since, until)
        else:
            table = run_one(con, pack, name, given, since, until)
        if chosen in (Format.table, Format.markdown):  # people read file:line
            table = with_origin(con, table)
    emit(table, chosen, out, title=pack.get(name).title)


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
    engine: EngineOption = Engine.duckdb,
    spark_master: SparkMasterOption = "local[*]",
    spark_conf: SparkConfOption = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Run every detection, store the findings, print a summary (stderr)."""
    from warroom.detect import detect, summary_table
    from warroom.pack import load_pack

    pack = load_pack(queries_dir)
    bars = render.ProgressBars()
    spark = spark_settings(engine, spark_master, spark_conf, warehouse, db_path.parent)
    with db.connect(db_path, memory_limit=memory_limit) as con:
        with bars.running():
            if spark:
                result = engines.detect(con, spark, pack, since, until, bars.update)
            else:
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
    since: SinceOption = None,
    until: UntilOption = None,
    queries_dir: QueriesDirOption = None,
    fmt: FormatOption = None,
    out: OutOption = None,
    db_path: DbOption = DEFAULT_DB,
    memory_limit: MemoryOption = None,
) -> None:
    """One user's timeline: requests, ledger with replayed, counterfactual and served balance,
    abuse events, findings; then a summary line on stderr (requests, 429s, wrongful ones,
    excess, credit). Exit 1 for an id no row mentions."""
    from warroom.impact.user import user_story
    from warroom.pack import load_pack

    with db.connect(db_path, read_only=True, memory_limit=memory_limit) as con:
        story = user_story(con, load_pack(queries_dir), user_id, since=since, until=until)
    if story.timeline.num_rows == 0:
        render.note(f"no rows for user {user_id!r} in this window")
    emit(story.timeline, fmt, out, title=f"user {user_id}")
    render.note(story.summary)
