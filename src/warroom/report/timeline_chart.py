"""The chart of ``warroom timeline --chart FILE.png|FILE.svg``, drawn by matplotlib.

Imported only when a chart is asked for (matplotlib is slow to load). As in the
report's charts (``charts.py``), floats only place lines and bars: every number
printed on the chart (totals, peaks) is the exact integer or decimal text, and the
money axes carry no tick labels that would round an amount.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import matplotlib
import pyarrow as pa
from matplotlib import dates as mdates
from matplotlib.figure import Figure

from warroom.report.charts import _style
from warroom.report.text import one_line

#: the count panels: (title, [(column, label, colour), ...])
_COUNT_PANELS = (
    ("requests per {every} (UTC), every currency", (("requests", "requests", "#1d4ed8"),)),
    (
        "429s per {every} (UTC), every currency",
        (("http_429", "429s", "#b91c1c"), ("wrongful_429s", "wrongful 429s", "#7c3aed")),
    ),
)
_EXCESS_COLOR = "#c2410c"
FORMATS = ("png", "svg")


def timeline_chart(table: pa.Table, fmt: str, *, every: str = "hour", title: str = "") -> bytes:
    """The timeline as a PNG or SVG: requests, 429s and wrongful 429s per period (all
    currencies), then the erroneous excess per period, one panel per currency that has
    any; with the ``*_prev`` columns, the same counts of the earlier period dashed."""
    if fmt not in FORMATS:
        raise ValueError(f"chart format {fmt!r}: expected png or svg")
    matplotlib.use("Agg")
    rows = table.to_pylist()
    compared = "prev_period_start" in table.column_names
    periods = sorted({r["period_start"] for r in rows})
    currencies = sorted(
        {
            r["currency"]
            for r in rows
            if r["erroneous_excess"] or (compared and r["erroneous_excess_prev"])
        },
        key=lambda c: c or "",
    )
    with matplotlib.rc_context(_style("timeline")):
        n = len(_COUNT_PANELS) + len(currencies)
        fig = Figure(figsize=(11.5, 0.6 + 1.9 * n), layout="constrained")
        axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
        width = 1 / 24 if every == "hour" else 1.0
        for ax, (heading, series) in zip(axes, _COUNT_PANELS, strict=False):
            _counts_panel(ax, rows, periods, series, compared, width)
            ax.set_title(heading.format(every=every), loc="left")
        for ax, currency in zip(axes[len(_COUNT_PANELS) :], currencies, strict=True):
            _excess_panel(ax, rows, periods, currency, compared, width, every)
        if not currencies:
            axes[-1].set_xlabel("UTC (no erroneous excess in these periods)", fontsize=8)
        else:
            axes[-1].set_xlabel("UTC", fontsize=8)
        _time_axis(axes[-1])
        if title:
            fig.suptitle(one_line(title), fontsize=10, fontweight="bold", x=0.01, ha="left")
        return _save(fig, fmt)


def _sum_by_period(
    rows: Sequence[dict[str, Any]], column: str, currency: object = ...
) -> dict[datetime, Any]:
    out: dict[datetime, Any] = {}
    for r in rows:
        if currency is not ... and r["currency"] != currency:
            continue
        out[r["period_start"]] = out.get(r["period_start"], 0) + (r[column] or 0)
    return out


def _counts_panel(
    ax: Any,
    rows: list[dict[str, Any]],
    periods: list[datetime],
    series: tuple[tuple[str, str, str], ...],
    compared: bool,
    width: float,
) -> None:
    """Each count as a step line, its total in the legend; the earlier period dashed."""
    xs = [mdates.date2num(p) for p in periods]  # type: ignore[no-untyped-call]
    for column, label, color in series:
        now = _sum_by_period(rows, column)
        _steps(
            ax,
            xs,
            [now.get(p, 0) for p in periods],
            width,
            color=color,
            linewidth=1.3,
            label=f"{label} (total {sum(now.values()):,})",
        )
        if compared:
            before = _sum_by_period(rows, column + "_prev")
            _steps(
                ax,
                xs,
                [before.get(p, 0) for p in periods],
                width,
                color=color,
                linewidth=1.0,
                linestyle=(0, (3, 2)),
                alpha=0.7,
                label=f"{label}, {_earlier(rows)} (total {sum(before.values()):,})",
            )
    ax.set_ylim(bottom=0)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7.5, frameon=False)
    ax.grid(axis="y", color="#eef0f3", linewidth=0.6)


def _steps(ax: Any, xs: list[float], ys: Sequence[float], width: float, **style: Any) -> None:
    """A step line over whole periods: the last one drawn to its end too."""
    if xs:
        ax.step([*xs, xs[-1] + width], [*ys, ys[-1]], where="post", **style)


def _excess_panel(
    ax: Any,
    rows: list[dict[str, Any]],
    periods: list[datetime],
    currency: str | None,
    compared: bool,
    width: float,
    every: str,
) -> None:
    now = _sum_by_period(rows, "erroneous_excess", currency)
    values = [Decimal(now.get(p, 0)) for p in periods]
    xs = [mdates.date2num(p) for p in periods]  # type: ignore[no-untyped-call]
    ax.bar(
        xs, [float(v) for v in values], width=width, align="edge", color=_EXCESS_COLOR, linewidth=0
    )
    name = currency or "(no currency)"
    peak = max(values, default=Decimal(0))
    text = (
        f"erroneous excess in {name} per {every}: total {_amount(sum(values, Decimal(0)))}, "
        f"peak {_amount(peak)}"
    )
    if compared:
        before = _sum_by_period(rows, "erroneous_excess_prev", currency)
        prev = [Decimal(before.get(p, 0)) for p in periods]
        _steps(
            ax,
            xs,
            [float(v) for v in prev],
            width,
            color="#374151",
            linewidth=1.0,
            linestyle=(0, (3, 2)),
        )
        text += f"; {_earlier(rows)} (dashed): total {_amount(sum(prev, Decimal(0)))}"
    ax.set_title(one_line(text), loc="left", fontsize=9)
    ax.set_yticks([])
    ax.spines["left"].set_visible(False)


def _earlier(rows: list[dict[str, Any]]) -> str:
    """How far back the comparison looks, in words ("1 day earlier", "7 days earlier")."""
    for r in rows:
        if r.get("prev_period_start") is not None:
            days = (r["period_start"] - r["prev_period_start"]).days
            return "1 day earlier" if days == 1 else f"{days} days earlier"
    return "earlier"


def _amount(value: Decimal) -> str:
    return format(value, "f")


def _time_axis(ax: Any) -> None:
    locator = mdates.AutoDateLocator(minticks=6, maxticks=14)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax.tick_params(axis="x", labelsize=8, colors="#374151")


def _save(fig: Figure, fmt: str) -> bytes:
    """The figure's bytes: SVG with its text as text, PNG at 150 dpi; no date in either,
    so the same table gives the same file."""
    buf = io.BytesIO()
    if fmt == "svg":
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    else:
        fig.savefig(buf, format="png", dpi=150, metadata={"Software": None})
    return buf.getvalue()
