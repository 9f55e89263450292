"""The report as GitHub-flavoured Markdown: headings, lists and tables, no HTML.

Every piece of text goes through ``warroom.escape.md_escape`` (as ``--format
markdown`` does), so user-derived text (user ids,
plans, file names, details) cannot open markup, break out into HTML or split a
table cell.
"""

from __future__ import annotations

from warroom.escape import md_escape
from warroom.report.blocks import Facts, Heading, Items, Paragraph, Table
from warroom.report.build import Report
from warroom.report.outline import outline


def render_markdown(report: Report) -> str:
    """The report as GitHub-flavoured Markdown: headings, lists and tables, no HTML."""
    out: list[str] = []
    for block in outline(report, charts=False):
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {md_escape(block.text)}")
        elif isinstance(block, Paragraph):
            out.append(
                md_escape(block.text)
                if block.css != "generated"
                else f"**{md_escape(block.text)}**"
            )
        elif isinstance(block, Facts):
            out.append("\n".join(f"- **{md_escape(k)}:** {md_escape(v)}" for k, v in block.items))
        elif isinstance(block, Items):
            out.append(
                "\n".join(
                    f"{f'{i}.' if block.ordered else '-'} {md_escape(t)}"
                    for i, t in enumerate(block.items, 1)
                )
            )
        elif isinstance(block, Table):
            out.append(_markdown_table(block))
    return "\n\n".join(out) + "\n"


def _markdown_table(t: Table) -> str:
    lines = [
        "| " + " | ".join(md_escape(c) for c in t.columns) + " |",
        "|" + "|".join("---:" if n else "---" for n in t.numeric) + "|",
    ]
    for row in t.rows:
        lines.append("| " + " | ".join(md_escape(v) for v in row) + " |")
    return "\n".join(lines)
