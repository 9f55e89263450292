"""Rich tables and progress for the terminal; the only library module that imports rich.

Tables go to stdout (they are the data, drawn for a person); progress bars,
notes and summaries go to stderr, and only when stderr is a terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal

import pyarrow as pa
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from warroom.export import text_table

#: rows drawn by the table format before it truncates (and says so)
TABLE_ROWS = 200


def stderr_console() -> Console:
    """Notes, errors and summaries; whether stderr is a terminal is looked at once, here."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


stderr = stderr_console()


def stdout_console() -> Console:
    return Console(highlight=False)


def draw_table(table: pa.Table, *, title: str | None = None, limit: int = TABLE_ROWS) -> None:
    """Draw ``table`` on stdout; announce on stderr when rows were left out."""
    shown = text_table(table.slice(0, limit))
    out = Table(title=title, show_lines=False, header_style="bold")
    numeric = []
    for f in table.schema:
        num = (
            pa.types.is_integer(f.type)
            or pa.types.is_floating(f.type)
            or pa.types.is_decimal(f.type)
        )
        numeric.append(num)
        out.add_column(f.name, justify="right" if num else "left", overflow="fold")
    for row in shown.to_pylist():
        out.add_row(*(_cell(v) for v in row.values()))
    stdout_console().print(out)
    if table.num_rows > limit:
        stderr.print(
            f"[yellow]showing {limit} of {table.num_rows} rows[/]; "
            "use --format csv/json/parquet or --out FILE for all of them"
        )


def draw_summary(table: pa.Table, *, title: str | None = None) -> None:
    """A summary is not data: draw it on stderr so stdout stays clean."""
    out = Table(title=title, header_style="bold")
    for f in table.schema:
        num = pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
        out.add_column(f.name, justify="right" if num else "left")
    for row in text_table(table).to_pylist():
        out.add_row(*(_cell(v) for v in row.values()))
    stderr.print(out)


def _cell(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, datetime | date):
        return v.isoformat(sep=" ") if isinstance(v, datetime) else v.isoformat()
    return str(v).replace("[", r"\[")


def note(message: str) -> None:
    stderr.print(message)


def error(message: str) -> None:
    stderr.print(f"[bold red]error:[/] {message}", markup=True)


class ProgressBars:
    """Per-file progress bars on stderr (a no-op when stderr is not a terminal)."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=stderr,
            transient=True,
        )
        self.tasks: dict[str, TaskID] = {}

    def update(self, label: str, fraction: float) -> None:
        if not self.enabled:
            return
        if label not in self.tasks:
            self.tasks[label] = self.progress.add_task(label, total=1.0)
        self.progress.update(self.tasks[label], completed=fraction)

    @contextmanager
    def running(self) -> Iterator[ProgressBars]:
        if not self.enabled:
            yield self
            return
        with self.progress:
            yield self
