"""The report as GitHub-flavoured Markdown: headings, lists and tables, no HTML.

Every piece of text goes through ``md_escape``, so user-derived text (user ids,
plans, file names, details) cannot open markup, break out into HTML or split a
table cell.
"""

from __future__ import annotations

import re

from warroom.report.blocks import Facts, Heading, Paragraph, Table
from warroom.report.build import Report
from warroom.report.outline import outline
from warroom.report.text import one_line

_MD_ALWAYS = re.compile(r"([\\`*\[\]<>|~])")
#: an underscore that could open or close emphasis (not inside a word)
_MD_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_MD_ENTITY = re.compile(r"&(?=#?[0-9A-Za-z]+;)")


def md_escape(text: str) -> str:
    """Plain text -> GitHub-flavoured Markdown that shows exactly that text.

    Backslash-escapes what could start markup (emphasis, code, links, HTML or
    autolinks, table cells, strikethrough, entities); newlines become spaces.
    """
    text = _MD_ALWAYS.sub(r"\\\1", one_line(text))
    text = _MD_UNDERSCORE.sub(r"\\_", text)
    return _MD_ENTITY.sub(r"\\&", text)


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
