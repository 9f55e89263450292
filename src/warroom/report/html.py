"""The report as one self-contained HTML file: CSS inline, charts as inline SVG,
nothing fetched when it is viewed (no scripts, fonts, images or styles from elsewhere).

Every piece of text is HTML-escaped, so user-derived text cannot run anything.
Long tokens get break opportunities (``<wbr>``) so tables narrow to a printed page;
a cell longer than ``CELL_LIMIT`` characters (a 20,000-character user id) is cut,
with its whole value in the cell's title.
"""

from __future__ import annotations

import re

from warroom.escape import html_escape
from warroom.pack import SEVERITIES
from warroom.report.blocks import Block, Cards, Chart, Facts, Heading, Items, Paragraph, Table
from warroom.report.build import Report
from warroom.report.outline import outline


def render_html(report: Report) -> str:
    """The report as one self-contained HTML file with inline SVG charts.

    Nothing is fetched when it is viewed: no scripts, fonts, images or styles
    from elsewhere. It reads on screen and prints on A4 or Letter.
    """
    # matplotlib is loaded only when a chart is drawn, not whenever the report is imported
    from warroom.report.charts import chart_svgs

    svgs = chart_svgs(report)
    blocks = outline(report, charts=True)
    toc = [(b.anchor, b.text) for b in blocks if isinstance(b, Heading) and b.level == 2]
    body = [_block_html(block, svgs, toc) for block in blocks]
    title = f"Post-incident report: {report.incident_id}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + "\n</main>\n</body>\n</html>\n"
    )


_escape = html_escape

#: a text cell longer than this is cut, with the whole value in its title (tooltip)
CELL_LIMIT = 120


def _block_html(block: Block, svgs: dict[str, str], toc: list[tuple[str, str]]) -> str:
    """One block as HTML; the title opens the page's header, and the lede closes it
    with the table of contents."""
    if isinstance(block, Heading):
        if block.level == 1:
            return f"<header><h1>{_escape(block.text)}</h1>"
        anchor = f' id="{_escape(block.anchor)}"' if block.anchor else ""
        return f"<h{block.level}{anchor}>{_escape(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        css = f' class="{block.css}"' if block.css else ""
        paragraph = f"<p{css}>{_escape(block.text)}</p>"
        if block.css != "lede":
            return paragraph
        links = "".join(f'<li><a href="#{_escape(a)}">{_escape(t)}</a></li>' for a, t in toc)
        return f"{paragraph}\n<nav><ol>{links}</ol></nav></header>"
    if isinstance(block, Facts):
        items = "".join(f"<dt>{_escape(k)}</dt><dd>{_escape(v)}</dd>" for k, v in block.items)
        return f"<dl>{items}</dl>"
    if isinstance(block, Items):
        tag = "ol" if block.ordered else "ul"
        items = "".join(f"<li>{_escape(t)}</li>" for t in block.items)
        return f'<{tag} class="items">{items}</{tag}>'
    if isinstance(block, Cards):
        return _cards_html(block)
    if isinstance(block, Table):
        return _table_html(block)
    return _chart_html(block, svgs)


def _chart_html(chart: Chart, svgs: dict[str, str]) -> str:
    return (
        f'<figure class="chart chart-{chart.name}">{svgs[chart.name]}'
        f"<figcaption>{_escape(chart.caption)}</figcaption></figure>"
    )


def _cards_html(cards: Cards) -> str:
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="label">{_escape(label)}</div>'
            f'<div class="value">{_escape(value)}</div>'
            f'<div class="note">{_escape(note)}</div></div>'
            for label, value, note in cards.items
        )
        + "</div>"
    )


def _table_html(t: Table) -> str:
    severity = t.columns.index("severity") if "severity" in t.columns else -1
    head = "".join(f"<th{_class_attr(t, i)}>{_escape(c)}</th>" for i, c in enumerate(t.columns))
    rows = []
    for row in t.rows:
        cells = []
        for i, v in enumerate(row):
            text = _escape(v if len(v) <= CELL_LIMIT else v[: CELL_LIMIT - 1])
            if i == severity and v in SEVERITIES:
                text = f'<span class="sev sev-{v}">{text}</span>'
            elif not t.numeric[i]:
                text = _with_breaks(text, times=t.nowrap[i])
            if len(v) > CELL_LIMIT:
                text = f'<span class="cut" title="{_escape(v)}">{text}\u2026</span>'
            cells.append(f"<td{_class_attr(t, i)}>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    css = f' class="{t.css}"' if t.css else ""
    return (
        f'<div class="table"><table{css}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


_BREAKS = re.compile(r"([/_:\-])(?=[^\s/_:\-])|(?<=\d)(?=T\d)")
_TIME_BREAK = re.compile(r"(?<=\d)(?=T\d)")


def _with_breaks(escaped: str, *, times: bool = False) -> str:
    """Break opportunities inside long tokens (paths, ids, fault names; a timestamp
    only between its date and time), so a table can narrow to a printed page
    without cutting a word anywhere. They add no character: copying the text
    gives it back unchanged."""
    if times:
        return _TIME_BREAK.sub("<wbr>", escaped)
    return _BREAKS.sub(lambda m: (m.group(1) or "") + "<wbr>", escaped)


def _class_attr(t: Table, i: int) -> str:
    names = [
        n
        for n, on in (
            ("num", t.numeric[i]),
            ("wrap", t.wrap[i]),
            ("nowrap", t.nowrap[i]),
            ("id", t.ids[i]),
        )
        if on
    ]
    return f' class="{" ".join(names)}"' if names else ""


_CSS = """
:root { --ink: #111827; --muted: #4b5563; --line: #e5e7eb; --soft: #f8fafc; --accent: #1d4ed8; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 64px; }
header { border-bottom: 3px solid var(--ink); margin-bottom: 8px; padding-bottom: 8px; }
h1 { font-size: 28px; line-height: 1.2; margin: 0 0 6px; overflow-wrap: anywhere; }
h2 { font-size: 21px; margin: 36px 0 10px; padding-bottom: 4px;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 24px 0 6px; overflow-wrap: anywhere; }
p { margin: 6px 0 10px; max-width: 80ch; overflow-wrap: anywhere; }
p.generated { color: var(--muted); font-size: 13px; margin: 0 0 6px; }
p.lede { color: var(--muted); }
nav ol { display: flex; flex-wrap: wrap; gap: 4px 18px; margin: 8px 0 0; padding: 0;
  list-style: none; font-size: 14px; }
nav a { color: var(--accent); text-decoration: none; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(165px, 1fr));
  gap: 12px; margin: 12px 0 16px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px;
  background: var(--soft); break-inside: avoid; }
.card .label { font-size: 12px; text-transform: uppercase; letter-spacing: .04em;
  color: var(--muted); }
.card .value { font-size: 26px; font-weight: 650; font-variant-numeric: tabular-nums;
  overflow-wrap: anywhere; }
.card .note { font-size: 12.5px; color: var(--muted); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 8px 0 14px; }
dt { font-weight: 600; }
dd { margin: 0; overflow-wrap: anywhere; }
.table { overflow-x: auto; margin: 8px 0 14px; }
table { border-collapse: collapse; font-size: 13.5px; }
table.wide { width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 5px 9px;
  border-bottom: 1px solid var(--line); overflow-wrap: break-word; }
th { background: var(--soft); font-weight: 600; border-bottom: 2px solid #d1d5db; }
tbody tr:nth-child(even) td { background: #fcfcfd; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num, td.nowrap, td.id { white-space: nowrap; }
td.wrap { overflow-wrap: anywhere; min-width: 14ch; }
td .cut { white-space: normal; overflow-wrap: anywhere; }
table.hashes td.wrap, table.method td.wrap { font-family: ui-monospace, SFMono-Regular,
  Menlo, Consolas, monospace; font-size: 12px; }
table.method td:nth-child(4) { min-width: 24ch; }
table.method td.wrap { min-width: 16ch; }
table.rows { font-size: 12.5px; }
.sev { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px;
  font-weight: 600; color: #fff; white-space: nowrap; }
.sev-critical { background: #7f1d1d; } .sev-high { background: #b91c1c; }
.sev-medium { background: #c2410c; } .sev-low { background: #1d4ed8; }
.sev-info { background: #4b5563; }
figure { margin: 12px 0 18px; break-inside: avoid; }
figure svg { display: block; width: 100%; height: auto; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 4px; }
@page { size: auto; margin: 14mm 12mm; }
@media print {
  body { font-size: 10.5pt; }
  main { max-width: none; padding: 0; }
  nav { display: none; }
  h2 { break-after: avoid; page-break-after: avoid; }
  h3 { break-after: avoid; page-break-after: avoid; }
  .table { overflow: visible; }
  table { font-size: 8.5pt; }
  table.rows { font-size: 8pt; }
  th, td { padding: 3px 5px; }
  thead { display: table-header-group; }
  td.id, td.nowrap { white-space: normal; }
  tr, .card, figure { break-inside: avoid; page-break-inside: avoid; }
  .sev { color: #000; background: none !important; border: 1px solid #999; }
  a { color: inherit; text-decoration: none; }
}
""".strip()
