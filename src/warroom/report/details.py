"""The report's sections on its episodes after the first screen: the status-page
draft, every episode with its bracketed window, the mass resets and markers."""

from __future__ import annotations

from warroom.report.blocks import Block, Heading, Items, Paragraph, table
from warroom.report.build import Report
from warroom.report.statuspage import statuspage_lines
from warroom.report.story import check_sentence
from warroom.report.text import amounts_text, count_text, second_text


def statuspage_section(report: Report) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "Status-page draft", "statuspage"),
        Paragraph(
            "A draft update from this run's numbers (`warroom report --format statuspage`, "
            "`--tz` for a local time): check the wording, never the figures."
        ),
    ]
    items: list[str] = []
    for kind, text in statuspage_lines(report):
        if kind == "item":
            items.append(text)
            continue
        if items:
            blocks.append(Items(items))
            items = []
        blocks.append(Paragraph(text, css="statuspage-title" if kind == "title" else "statuspage"))
    if items:
        blocks.append(Items(items))
    return blocks


def episodes_section(report: Report) -> list[Block]:
    heading = Heading(2, "Episodes", "episodes")
    if not report.episodes:
        return [heading, Paragraph("No erroneous rows were found.")]
    rows = (
        [
            count_text(rank),
            e.fault,
            second_text(e.clean_before) or "(none)",
            second_text(e.first),
            second_text(e.last),
            second_text(e.clean_after) or "(none)",
            count_text(e.users),
            count_text(e.rows),
            amounts_text(sorted(e.amounts.items())),
        ]
        for rank, e in enumerate(report.episodes, 1)
    )
    columns = [
        "#",
        "fault",
        "clean before (UTC)",
        "first (UTC)",
        "last (UTC)",
        "clean after (UTC)",
        "users",
        "rows",
        "excess",
    ]
    return [
        heading,
        Paragraph(
            f"Every episode of every fault (a pause of more than {report.gap_hours} h between "
            "two erroneous rows starts a new one), ranked by users affected, then rows, then "
            "money per currency. The window lies between the clean comparable row before "
            "the first erroneous row and the one after the last."
        ),
        table(columns, rows, numeric=["#", "users", "rows"], wrap=["fault"], css="wide"),
    ]


def checks_section(report: Report) -> list[Block]:
    if not report.checks:
        return []
    rows = (
        [
            c.kind,
            second_text(c.ts),
            c.label,
            c.currency or "all",
            count_text(c.before),
            count_text(c.after),
            amounts_text(sorted(c.before_amounts.items())),
            amounts_text(sorted(c.after_amounts.items())),
        ]
        for c in report.checks
    )
    figures = ["24 h before", "24 h after", "excess before", "excess after"]
    return [
        Heading(2, "Mass resets and markers", "checks"),
        Paragraph(
            "Each system reset of at least half of a quota currency's users within an hour, "
            "and each --marker, with the erroneous charges (duplicates, charged failed "
            "requests, penalty charges, overbilling) in the 24 h before and after it."
        ),
        table(["kind", "at (UTC)", "what", "currency", *figures], rows, numeric=figures),
        Items([check_sentence(c) for c in report.checks]),
    ]
