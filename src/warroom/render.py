"""Rich tables and progress for the terminal; the only library module that imports rich.

Tables go to stdout (they are the data, drawn for a person); progress bars,
notes and summaries go to stderr, and only when stderr is a terminal.

Nothing that comes from data, a file name or an argument is ever read as rich
markup: every value reaches rich as a ``Text``, through ``warroom.escape.visible``
(so ``[/x]`` is shown, not parsed, and a terminal escape or a bidi control is
shown as ``\x1b`` or ``\u202e``, not obeyed).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
from rich.cells import cell_len
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from warroom.escape import visible
from warroom.export import text_table

#: rows drawn by the table format before it truncates (and says so)
TABLE_ROWS = 200


def stderr_console() -> Console:
    """Notes, errors and summaries; whether stderr is a terminal is looked at once, here."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


stderr = stderr_console()


def stdout_is_terminal() -> bool:
    """Whether stdout is a terminal (a person reads it) rather than a pipe or a file."""
    return sys.stdout.isatty()


def stdout_console() -> Console:
    return Console(highlight=False)


def draw_table(table: pa.Table, *, title: str | None = None, limit: int = TABLE_ROWS) -> None:
    """Draw ``table`` on stdout; announce on stderr when rows were left out.

    A table too wide for the terminal to fold readably (``_too_wide``) is drawn one
    row per block instead, a ``name = value`` line per column (as ``duckdb -line``
    does), so no cell is folded to a few characters; stderr says so."""
    shown = text_table(table.slice(0, limit))
    out = Table(title=_text(title), show_lines=False, header_style="bold")
    for f in table.schema:
        num = (
            pa.types.is_integer(f.type)
            or pa.types.is_floating(f.type)
            or pa.types.is_decimal(f.type)
        )
        out.add_column(Text(visible(f.name)), justify="right" if num else "left", overflow="fold")
    rows = [[_cell(v) for v in row.values()] for row in shown.to_pylist()]
    for cells in rows:
        out.add_row(*cells)
    console = stdout_console()
    wide = _too_wide(console.width, [visible(n) for n in table.column_names], rows)
    if wide:
        _draw_records(console, [visible(n) for n in table.column_names], rows, title)
    else:
        console.print(out)
    if table.num_rows > limit:
        stderr.print(
            f"[yellow]showing {limit} of {table.num_rows} rows[/]; "
            "use --format csv/json/parquet or --out FILE for all of them"
        )
    if wide:
        note(
            f"{table.num_columns} columns do not fit in {console.width} characters: one row "
            "per block; --format csv or markdown for a table"
        )


#: fewer characters than this per column, on average, and a table is drawn as blocks
MIN_COLUMN = 12


def _too_wide(width: int, names: list[str], rows: list[list[Text]]) -> bool:
    """Whether the table does not fit in ``width`` and folding it would leave its
    columns under ``MIN_COLUMN`` characters on average (13 columns in 120)."""
    natural = [cell_len(n) for n in names]
    for cells in rows:
        natural = [max(w, cell_len(c.plain)) for w, c in zip(natural, cells, strict=True)]
    borders = 3 * len(names) + 1
    if sum(natural) + borders <= width:
        return False
    return (width - borders) < MIN_COLUMN * len(names)


def _draw_records(
    console: Console, names: list[str], rows: list[list[Text]], title: str | None
) -> None:
    """One block per row, ``name = value`` per line, names aligned, a blank line between."""
    width = max((len(n) for n in names), default=0)
    if title is not None:
        console.print(Text(visible(title), style="bold"), soft_wrap=True)
    for i, cells in enumerate(rows):
        if i or title is not None:
            console.print()
        for name, cell in zip(names, cells, strict=True):
            console.print(Text.assemble((name.rjust(width), "bold"), " = ", cell), soft_wrap=True)


def draw_summary(table: pa.Table, *, title: str | None = None) -> None:
    """A summary is not data: draw it on stderr so stdout stays clean."""
    out = Table(title=_text(title), header_style="bold")
    for f in table.schema:
        num = pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
        out.add_column(Text(visible(f.name)), justify="right" if num else "left")
    for row in text_table(table).to_pylist():
        out.add_row(*(_cell(v) for v in row.values()))
    stderr.print(out)


def _text(value: str | None) -> Text | None:
    return None if value is None else Text(visible(value))


def _cell(v: object) -> Text:
    if v is None:
        return Text("")
    if isinstance(v, Decimal):
        return Text(format(v, "f"))
    if isinstance(v, datetime | date):
        return Text(v.isoformat(sep=" ") if isinstance(v, datetime) else v.isoformat())
    return Text(visible(str(v)))


#: a piece of a note: plain text, or (text, rich style) for a coloured word
Part = str | tuple[str, str]


def note(*parts: Part) -> None:
    """One line on stderr, every part shown as text (never as markup)."""
    stderr.print(
        Text.assemble(
            *((visible(p), "") if isinstance(p, str) else (visible(p[0]), p[1]) for p in parts)
        )
    )


def error(message: str) -> None:
    stderr.print(Text.assemble(("error:", "bold red"), " ", visible(message)))


class ProgressBars:
    """Per-file progress bars on stderr (a no-op when stderr is not a terminal)."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
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
        # "detect: step" is one bar, "detect", whose text names the step
        key = label.split(": ", 1)[0]
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(visible(label), total=1.0)
        self.progress.update(self.tasks[key], completed=fraction, description=visible(label))

    @contextmanager
    def running(self) -> Iterator[ProgressBars]:
        if not self.enabled:
            yield self
            return
        with self.progress:
            yield self


#: the share of an investigation's time each stage takes (measured at 1M to 10M
#: rows, benchmarks/README.md): the weights of the estimate of time left
_STAGE_SHARE = {"ingest": 0.55, "detect": 0.35, "report": 0.10}


class InvestigationProgress:
    """One line on stderr for a whole investigation (only on a terminal): the
    files and bytes ingested, rows per second, the step detect is at, and an
    estimate of the time left. ``ingest``, ``detect`` and ``report`` take a
    progress callback's (label, fraction); ``file_done`` takes a loaded file's
    row count."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.enabled = sys.stderr.isatty()
        self.sizes = {p.name: _size(p) for p in paths}
        self.total_bytes = max(sum(self.sizes.values()), 1)
        self.done_files: set[str] = set()
        self.current = ("", 0.0)  # the file loading and its fraction
        self.rows = 0
        self.started = time.monotonic()
        self.stage, self.step, self.stage_fraction = "ingest", "", 0.0
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=20),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=stderr,
            transient=True,
        )
        self.task = self.progress.add_task("investigate", total=1.0)

    def ingest(self, label: str, fraction: float) -> None:
        if fraction >= 1.0:
            self.done_files.add(label)
        self.current = (label, fraction)
        done = sum(self.sizes.get(n, 0) for n in self.done_files)
        if label not in self.done_files:
            done += int(self.sizes.get(label, 0) * fraction)
        self._show("ingest", label, done / self.total_bytes)

    def file_done(self, rows: int) -> None:
        self.rows += rows

    def detect(self, label: str, fraction: float) -> None:
        self._show("detect", label.split(": ", 1)[-1] if ": " in label else "", fraction)

    def report(self, label: str, fraction: float) -> None:
        self._show("report", "", fraction)

    def _show(self, stage: str, step: str, fraction: float) -> None:
        if not self.enabled:
            return
        self.stage, self.step, self.stage_fraction = stage, step, min(max(fraction, 0.0), 1.0)
        overall = self.overall()
        self.progress.update(self.task, completed=overall, description=visible(self.describe()))

    def overall(self) -> float:
        """The fraction of the whole investigation done, by the stages' shares."""
        before = 0.0
        for name, share in _STAGE_SHARE.items():
            if name == self.stage:
                return before + share * self.stage_fraction
            before += share
        return before

    def describe(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        if self.stage == "ingest":
            done = sum(self.sizes.get(n, 0) for n in self.done_files)
            label, fraction = self.current
            if label not in self.done_files:
                done += int(self.sizes.get(label, 0) * fraction)
            text = (
                f"ingest {len(self.done_files)}/{len(self.sizes)} files, "
                f"{_bytes(done)} of {_bytes(self.total_bytes)}"
                + (f", {self.rows / elapsed:,.0f} rows/s" if self.rows else "")
            )
        elif self.stage == "detect":
            text = f"detect: {self.step}" if self.step else "detect"
        else:
            text = "report"
        overall = self.overall()
        if overall > 0.02:
            left = elapsed / overall - elapsed
            text += f", about {_duration(left)} left"
        return text

    @contextmanager
    def running(self) -> Iterator[InvestigationProgress]:
        if not self.enabled:
            yield self
            return
        with self.progress:
            yield self


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def _bytes(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _duration(seconds: float) -> str:
    s = int(seconds + 0.5)
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"
