"""The blocks a report document is made of: headings, paragraphs, facts, tables,
charts and cards, as plain text.

The outline builds one list of these, and each format renders that same list,
so the Markdown and the HTML cannot drift apart. A block holds unescaped text:
each renderer escapes for its own format.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass
class Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass
class Paragraph:
    text: str
    css: str = ""


@dataclass
class Facts:
    items: list[tuple[str, str]]  # term, definition


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    numeric: list[bool]
    #: columns holding long unbroken text (hashes, paths) that may wrap anywhere
    wrap: list[bool] = field(default_factory=list)
    #: columns never wrapped (timestamps, short spans)
    nowrap: list[bool] = field(default_factory=list)
    #: identifiers: unbroken on screen, broken anywhere in print if they must
    ids: list[bool] = field(default_factory=list)
    css: str = ""


@dataclass
class Items:
    """A list of sentences; ``ordered`` numbers them (a ranking)."""

    items: list[str]
    ordered: bool = False


@dataclass
class Chart:
    name: str
    caption: str


@dataclass
class Cards:
    items: list[tuple[str, str, str]]  # label, value, note


Block = Heading | Paragraph | Facts | Items | Table | Chart | Cards


def table(
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    numeric: Iterable[str] = (),
    wrap: Iterable[str] = (),
    nowrap: Iterable[str] = (),
    ids: Iterable[str] = (),
    css: str = "",
) -> Table:
    """A ``Table`` with its column flags given by column name; a column whose
    name says UTC holds timestamps and is never wrapped."""
    num, wr, nw, ident = set(numeric), set(wrap), set(nowrap), set(ids)
    return Table(
        list(columns),
        [list(r) for r in rows],
        [c in num for c in columns],
        [c in wr for c in columns],
        [c in nw or "UTC" in c for c in columns],
        [c in ident for c in columns],
        css,
    )
