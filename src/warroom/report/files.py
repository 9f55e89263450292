"""The report's files: a renderer per format, and the bundle
``investigate`` leaves in its output folder (report.md, report.html,
affected-users.csv and impact.csv), which it must not read back as logs."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from warroom.atomic import write_bundle_atomic
from warroom.errors import InputError
from warroom.export import Format, write
from warroom.report.build import Report
from warroom.report.html import render_html
from warroom.report.markdown import render_markdown
from warroom.report.statuspage import render_statuspage, render_statuspage_text

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
AFFECTED_CSV = "affected-users.csv"
IMPACT_CSV = "impact.csv"

RENDERERS: dict[str, Callable[[Report], str]] = {
    "markdown": render_markdown,
    "html": render_html,
    "statuspage": render_statuspage,
    "statuspage-text": render_statuspage_text,
}


@dataclass(frozen=True)
class Bundle:
    """Where ``write_bundle`` put the report and the export."""

    markdown: Path
    html: Path
    affected_users: Path
    affected_rows: int
    impact: Path


def write_bundle(report: Report, out_dir: Path) -> Bundle:
    """Write report.md, report.html, affected-users.csv and impact.csv into ``out_dir``,
    all or none: a failure (a full disk) leaves the old bundle whole. Raises OutputError."""
    files = {
        REPORT_MD: render_markdown(report).encode(),
        REPORT_HTML: render_html(report).encode(),
    }
    for name, table in ((AFFECTED_CSV, report.affected_users), (IMPACT_CSV, report.impact)):
        buf = io.BytesIO()
        write(table, Format.csv, buf)
        files[name] = buf.getvalue()
    write_bundle_atomic(out_dir, files)
    return Bundle(
        out_dir / REPORT_MD,
        out_dir / REPORT_HTML,
        out_dir / AFFECTED_CSV,
        report.affected_users.num_rows,
        out_dir / IMPACT_CSV,
    )


def investigation_inputs(paths: Sequence[str | Path], out_dir: Path) -> list[Path]:
    """The files ``investigate`` loads: ingest's expansion of ``paths``, less those
    inside ``out_dir`` (its own outputs, such as affected-users.csv, are not logs).

    Raises InputError for a path that matches nothing, or when nothing is left.
    """
    from warroom.ingest import expand_paths

    skip = out_dir.resolve()
    files = [p for p in expand_paths(paths) if not p.resolve().is_relative_to(skip)]
    if not files:
        raise InputError(f"nothing to load: every file given is inside the output folder {out_dir}")
    return files
