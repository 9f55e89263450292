"""The war room's standing view: ``warroom timeline``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from warroom import db, render
from warroom.atomic import write_atomic
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
from warroom.errors import UsageError


class Every(str, Enum):
    hour = "hour"
    day = "day"


_CHART_SUFFIXES = {".png": "png", ".svg": "svg"}


@app.command("timeline")
def timeline_cmd(
    every: Annotated[
        Every,
        typer.Option("--every", "--by", help="Count per clock hour or per UTC day."),
    ] = Every.hour,
    compare: Annotated[
        str | None,
        typer.Option(
            "--compare",
            help="Put the counts of the same period this long before beside each: "
            "1d (the day before) or 7d (the week before); columns *_prev.",
        ),
    ] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only this user's rows.")] = None,
    plan: Annotated[
        str | None,
        typer.Option("--plan", help="Only the rows of users on this plan (as impact reports it)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Only requests of this model, and their charges."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only the periods that start at or after this time (ISO-8601, UTC unless "
            "it says); the compared ones may lie before it.",
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Only the periods that start before this time.")
    ] = None,
    chart: Annotated[
        Path | None,
        typer.Option("--chart", help="Also draw the timeline to this file (.png or .svg)."),
    ] = None,
    queries_dir: QueriesDirOption = None,
    fmt: FormatOption = None,
    out: OutOption = None,
    db_path: DbOption = DEFAULT_DB,
    memory_limit: MemoryOption = None,
) -> None:
    """Counts per hour (or day) and currency: requests, 429s by error code, charges,
    erroneous excess, wrongful 429s; --compare 1d|7d puts the same hours a day or a week
    earlier beside them."""
    from warroom.pack import load_pack
    from warroom.timeline import TimelineOptions, parse_compare, timeline

    chart_format = None
    if chart is not None:
        chart_format = _CHART_SUFFIXES.get(chart.suffix.lower())
        if chart_format is None:
            raise UsageError(f"--chart {chart}: name the file .png or .svg")
    options = TimelineOptions(
        every=every.value,
        compare_days=parse_compare(compare) if compare is not None else None,
        user_id=user,
        plan=plan,
        model=model,
        since=since,
        until=until,
    )
    pack = load_pack(queries_dir)
    with db.connect(db_path, read_only=True, memory_limit=memory_limit) as con:
        table = timeline(con, pack, options)
    title = _title(options)
    if table.num_rows == 0:
        render.note("no rows in these periods" + (f" for {title}" if title else ""))
    emit(table, fmt, out, title=f"timeline per {options.every}" + (f", {title}" if title else ""))
    if chart is not None and chart_format is not None:
        if table.num_rows == 0:
            render.note(f"nothing to chart: {chart} not written")
            return
        from warroom.report.timeline_chart import timeline_chart

        heading = f"timeline per {options.every}" + (f", {title}" if title else "")
        write_atomic(chart, timeline_chart(table, chart_format, every=options.every, title=heading))
        render.note(f"wrote the chart to {chart}")


def _title(options: object) -> str:
    """Whose rows, in words: "user u1, plan payg"."""
    parts = []
    for label, attr in (("user", "user_id"), ("plan", "plan"), ("model", "model")):
        value = getattr(options, attr)
        if value is not None:
            parts.append(f"{label} {value}")
    return ", ".join(parts)
