"""The HTML report's charts, drawn by matplotlib as inline SVG: the timeline of
faults, and the money given back per plan and to the users owed most.

The only module of warroom that imports matplotlib; ``render_html`` imports it
when it draws, so nothing else pays for loading matplotlib. Floats only place
bars: every amount printed on a chart is the exact decimal text.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import matplotlib
from matplotlib import dates as mdates
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.patches import Patch, Rectangle

from warroom.report.build import Report, decimal_or_zero
from warroom.report.text import credit_text, one_line, parse_timestamp_text

_SEVERITY_COLORS = {
    "critical": "#7f1d1d",
    "high": "#b91c1c",
    "medium": "#c2410c",
    "low": "#1d4ed8",
    "info": "#4b5563",
}
_CREDIT_COLOR = "#1d4ed8"
_REIMB_COLOR = "#0d9488"

#: per currency: (label, credit, the part of it paid to the card) per bar
_MoneyGroups = list[tuple[str, list[tuple[str, Decimal, Decimal]]]]


def chart_svgs(report: Report) -> dict[str, str]:
    """Inline SVG for every chart the outline places, by chart name ("" when it has no data)."""
    matplotlib.use("Agg")
    return {
        "timeline": _svg("timeline", _timeline_figure(report)) if report.timeline.num_rows else "",
        "plans": _svg("plans", _plans_figure(report)) if report.plans.num_rows else "",
        "users": _svg("users", _users_figure(report)) if report.top_users.num_rows else "",
    }


def _style(name: str) -> Any:  # matplotlib types the keys as a Literal of every rcParam
    # hashsalt makes the ids in the SVG stable (and distinct per chart); text stays
    # text (searchable, small, quick to draw); parse_math off, or a "$" in a user
    # id would be read as TeX
    return {
        "svg.hashsalt": f"warroom-{name}",
        "svg.fonttype": "none",
        "text.parse_math": False,
        "font.family": "DejaVu Sans",
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.titleweight": "bold",
        "axes.spines.top": False,
        "axes.spines.right": False,
    }


def _svg(name: str, fig: Figure) -> str:
    """``fig`` as an ``<svg>`` element to inline, its ids prefixed with ``name``."""
    buf = io.StringIO()
    with matplotlib.rc_context(_style(name)):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = re.sub(r"<\?xml[^>]*\?>\s*", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>\s*", "", text)
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    text = re.sub(r"<!--.*?-->\s*", "", text, flags=re.S)
    # ids must be unique in the whole page, and several charts share glyph ids
    text = re.sub(r'\bid="([^"]+)"', rf'id="{name}-\1"', text)
    text = re.sub(r'(xlink:href|href)="#([^"]+)"', rf'\1="#{name}-\2"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{name}-\1)", text)
    text = re.sub(
        r'<svg ([^>]*?)\s*width="[^"]*"\s*height="[^"]*"',
        rf'<svg role="img" aria-label="{name} chart" \1',
        text,
        count=1,
    )
    return text.strip()


def _new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _short_label(text: str, limit: int = 34) -> str:
    text = one_line(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _date_number(ts: datetime) -> float:
    """A time as matplotlib's date number (days since its epoch)."""
    return float(mdates.date2num(ts))  # type: ignore[no-untyped-call]


def _timeline_figure(report: Report) -> Figure:
    """One lane per fault (in the order of their windows), the bars of each lane
    scaled to its own busiest hour, on one time axis: one axes is quick to draw."""
    windows = report.windows.to_pylist()
    hours: dict[str, list[tuple[datetime, int]]] = {}
    for t in report.timeline.to_pylist():
        hours.setdefault(t["fault"], []).append((t["hour"], t["rows"]))
    stamps = report.timeline.column("hour").to_pylist()
    start, end = min(stamps), max(stamps) + timedelta(hours=1)
    data = report.manifest.get("data", {})
    if data.get("start"):
        start = min(
            start, parse_timestamp_text(data["start"]).replace(minute=0, second=0, microsecond=0)
        )
    if data.get("end"):
        end = max(end, parse_timestamp_text(data["end"]))
    n = len(windows)
    with matplotlib.rc_context(_style("timeline")):
        fig = _new_figure(11.5, 0.42 * n + 1.0)
        ax = fig.add_subplot()
        x0, x1 = _date_number(start), _date_number(end)
        for i, w in enumerate(windows):
            _timeline_lane(
                ax, n - 1 - i, w, hours.get(w["fault"], []), label_x=x1 + (x1 - x0) * 0.006
            )
            if i:
                ax.axhline(n - i - 0.5, color="#e5e7eb", linewidth=0.6)
        ax.set_yticks(
            range(n), labels=[_short_label(w["fault"], 44) for w in reversed(windows)], fontsize=8.5
        )
        ax.tick_params(axis="y", length=0)
        ax.set_ylim(-0.5, n - 0.5)
        ax.set_xlim(x0, x1)
        ax.spines["left"].set_visible(False)
        ax.spines["bottom"].set_color("#9ca3af")
        locator = mdates.AutoDateLocator(minticks=6, maxticks=14)  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
        ax.tick_params(axis="x", labelsize=8, colors="#374151")
        ax.grid(axis="x", color="#eef0f3", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.set_xlabel("UTC", fontsize=8, color="#4b5563")
    return fig


def _timeline_lane(
    ax: Any, lane: int, window: dict[str, Any], series: list[tuple[datetime, int]], label_x: float
) -> None:
    """One fault at height ``lane``: its window shaded, its hourly rows as bars
    scaled to its busiest hour, and its totals as a label right of the axis."""
    color = _SEVERITY_COLORS.get(window["severity"], "#4b5563")
    peak = max((c for _, c in series), default=0)
    base = lane - 0.42
    ws, we = _date_number(window["window_start"]), _date_number(window["window_end"])
    ax.add_patch(
        Rectangle((ws, base), max(we - ws, 1 / 96), 0.84, color=color, alpha=0.10, linewidth=0)
    )
    ax.bar(
        [_date_number(h) for h, _ in series],
        [0.8 * c / max(peak, 1) for _, c in series],
        bottom=base,
        width=1 / 24,
        align="edge",
        color=color,
        linewidth=0,
    )
    rows = "1 row" if window["rows"] == 1 else f"{window['rows']:,} rows"
    ax.text(
        label_x,
        lane,
        f"{rows}, peak {peak:,}/h",
        fontsize=7.5,
        va="center",
        ha="left",
        color="#374151",
    )


def _money_bars(name: str, groups: _MoneyGroups, title_of: Callable[[str], str]) -> Figure:
    """One panel per currency (amounts in different currencies share no axis): a
    credit bar, and a reimbursement bar when there are any, per label.

    Floats only place the bars; every amount printed is the exact decimal text,
    and the value axis has no tick labels to round anything.
    """
    paired = any(r > 0 for _, items in groups for _, _, r in items)
    cols = min(len(groups), 3)
    rows = -(-len(groups) // cols)
    slots = max(len(items) for _, items in groups)
    slot = 0.42 if paired else 0.3
    height = rows * (slots * slot + 0.5) + (0.3 if paired else 0.05)
    with matplotlib.rc_context(_style(name)):
        fig = _new_figure(11.5, height)
        axes = fig.subplots(rows, cols, squeeze=False)
        bar = 0.4 if paired else 0.62
        for i, ax in enumerate(axes.flat):
            if i >= len(groups):
                ax.set_visible(False)
                continue
            currency, items = groups[i]
            _money_panel(ax, currency, items, bar=bar, slots=slots)
            ax.set_title(title_of(currency), loc="left", fontsize=9.5)
        if paired:
            fig.legend(
                handles=[
                    Patch(color=_CREDIT_COLOR, label="credit (given once)"),
                    Patch(color=_REIMB_COLOR, label="of which to the card (top-ups)"),
                ],
                loc="outside upper left",
                ncols=2,
                frameon=False,
                fontsize=8,
            )
        layout = fig.get_layout_engine()
        assert isinstance(layout, ConstrainedLayoutEngine)
        layout.set(w_pad=0.12, wspace=0.06)
    return fig


def _money_panel(
    ax: Any, currency: str, items: list[tuple[str, Decimal, Decimal]], *, bar: float, slots: int
) -> None:
    """One currency's bars, each labelled with its exact amount."""
    ys = list(range(len(items)))
    top = max([float(c) for _, c, _ in items] + [float(r) for _, _, r in items] + [0.0]) or 1.0
    both = any(r > 0 for _, _, r in items)
    shift = bar / 2 if both else 0.0
    credits = [c for _, c, _ in items]
    reimbursements = [r for _, _, r in items]
    series = [(-shift, credits, _CREDIT_COLOR)] + (
        [(shift, reimbursements, _REIMB_COLOR)] if both else []
    )
    for offset, values, color in series:
        ax.barh(
            [y + offset for y in ys],
            [float(v) for v in values],
            height=bar,
            color=color,
            linewidth=0,
        )
        for y, v in zip(ys, values, strict=True):
            if values is reimbursements and not v:
                continue  # no reimbursement: no bar, no label
            ax.text(
                float(v) + top * 0.012,
                y + offset,
                credit_text(v, currency),
                va="center",
                ha="left",
                fontsize=7.5,
                color="#111827",
            )
    ax.set_yticks(ys, labels=[_short_label(lab, 28) for lab, _, _ in items], fontsize=8)
    ax.tick_params(axis="y", length=0)
    ax.set_ylim(slots - 0.5, -0.5)  # the same bar thickness in every panel
    ax.set_xlim(0, top * 1.3)
    ax.set_xticks([])
    ax.spines["bottom"].set_visible(False)
    ax.spines["left"].set_color("#9ca3af")


def _plans_figure(report: Report) -> Figure:
    per: dict[str, list[tuple[str, Decimal, Decimal]]] = {}
    for p in report.plans.to_pylist():
        per.setdefault(p["currency"] or "(none)", []).append(
            (
                p["plan"] or "(unknown)",
                decimal_or_zero(p["credit_amount"]),
                decimal_or_zero(p["topup_reimbursement"]),
            )
        )
    return _money_bars("plans", sorted(per.items()), lambda c: f"in {c}")


def _users_figure(report: Report) -> Figure:
    per: dict[str, list[tuple[str, Decimal, Decimal]]] = {}
    for u in report.top_users.to_pylist():
        items = per.setdefault(u["currency"] or "(none)", [])
        if len(items) < 10:
            items.append(
                (
                    u["user_id"],
                    decimal_or_zero(u["credit_amount"]),
                    decimal_or_zero(u["topup_reimbursement"]),
                )
            )
    return _money_bars("users", sorted(per.items()), lambda c: f"in {c}")
