"""The report's files: a renderer per format, atomic writes, and the bundle
``investigate`` leaves in its output folder (report.md, report.html,
affected-users.csv and impact.csv), which it must not read back as logs."""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from warroom.errors import InputError
from warroom.export import Format, write
from warroom.report.build import Report
from warroom.report.html import render_html
from warroom.report.markdown import render_markdown

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
AFFECTED_CSV = "affected-users.csv"
IMPACT_CSV = "impact.csv"

RENDERERS: dict[str, Callable[[Report], str]] = {
    "markdown": render_markdown,
    "html": render_html,
}


@dataclass(frozen=True)
class Bundle:
    """Where ``write_bundle`` put the report and the export."""

    markdown: Path
    html: Path
    affected_users: Path
    affected_rows: int
    impact: Path


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, so a reader never sees half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # open() rather than mkstemp, so the file gets the usual permissions (umask)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bundle(report: Report, out_dir: Path) -> Bundle:
    """Write report.md, report.html, affected-users.csv and impact.csv into ``out_dir``."""
    md, page = out_dir / REPORT_MD, out_dir / REPORT_HTML
    csv_path, impact_path = out_dir / AFFECTED_CSV, out_dir / IMPACT_CSV
    write_atomic(md, render_markdown(report).encode())
    write_atomic(page, render_html(report).encode())
    rows = report.affected_users
    for table, path in ((rows, csv_path), (report.impact, impact_path)):
        buf = io.BytesIO()
        write(table, Format.csv, buf)
        write_atomic(path, buf.getvalue())
    return Bundle(md, page, csv_path, rows.num_rows, impact_path)


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
