"""The post-incident report: what went wrong, when, to whom, what we give back, and
how anyone can reproduce those numbers.

``build_report`` computes everything on one connection, from findings taken
fresh (as ``impact`` does), into a ``Report`` of Arrow tables and a run manifest
(versions, the policy as used, the SHA-256 of every input file and every query
file). ``render_markdown`` and ``render_html`` turn one ``Report`` into a
document; both walk the same outline, so the two always say the same thing.

Promises:

* Money is printed exactly: decimal text, never through a float (the charts
  place their bars with floats, but every figure printed on them is the exact
  decimal text).
* Deterministic: the same database and policy give byte-identical documents,
  except the one line that says when the report was generated (injectable, and
  ``$SOURCE_DATE_EPOCH`` pins it).
* User-derived text (user ids, plans, file names, details, the incident id) is
  escaped: Markdown cannot be broken out of (no HTML, no table splitting), and
  the HTML cannot run anything.
* The HTML is one self-contained file: CSS inline, charts as inline SVG drawn by
  matplotlib with their glyphs as paths, no fonts, scripts or images fetched.

The parts, in the order a report is made:

* ``build``: the data, ``Report``, and the SQL that fills it.
* ``text``: timestamps, durations, counts and amounts as text.
* ``blocks``: what a document is made of (headings, paragraphs, tables, ...).
* ``outline``: the document as blocks, one function per section.
* ``markdown``, ``html``: one format each; ``charts``: the HTML's SVG (matplotlib).
* ``files``: renderers by format, investigate's bundle (written by warroom.atomic).
* ``summary``: the few lines ``investigate`` prints on the terminal.
"""

from __future__ import annotations

from warroom.atomic import write_atomic
from warroom.escape import md_escape
from warroom.report.build import Report, ReportError, build_report, default_generated_at
from warroom.report.files import (
    RENDERERS,
    Bundle,
    investigation_inputs,
    write_bundle,
)
from warroom.report.html import render_html
from warroom.report.markdown import render_markdown
from warroom.report.summary import summary_lines
from warroom.report.text import credit_text

__all__ = [
    "Bundle",
    "Report",
    "ReportError",
    "build_report",
    "credit_text",
    "default_generated_at",
    "investigation_inputs",
    "md_escape",
    "render_html",
    "render_markdown",
    "summary_lines",
    "write_atomic",
    "write_bundle",
    "RENDERERS",
]
