"""How a value is shown to a person: one escaping function per output kind.

Logs are hostile input. A value can hold terminal escapes (ESC ] 52 sets the
clipboard), bidirectional controls (U+202E reverses what follows, so an id or
an amount reads backwards), rich or Markdown markup, raw HTML, or a spreadsheet
formula. Machine formats (json, jsonl, parquet, csv) keep the exact value (csv
only defuses formulas); every human-facing output shows it through one of these:

* ``visible``: the terminal (tables, summaries, notes, errors) and the base of
  the others: each control, bidi or invisible format character becomes a
  visible escape (``\\x1b``, ``\\u202e``);
* ``md_escape``: Markdown (``report.md`` and ``--format markdown``);
* ``html_escape``: HTML (``report.html``).

Library modules use these; none of them imports a terminal toolkit.
"""

from __future__ import annotations

import re
from html import escape as _html_escape

#: C0 and C1 controls, DEL, and the format characters that reorder or hide text:
#: ALM, ZWSP..RLM, line/paragraph separators, LRE..RLO, word joiner..invisible
#: plus, LRI..PDI, deprecated format controls, BOM, interlinear annotations
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064"
    "\u2066-\u206f\ufeff\ufff9-\ufffb]"
)


def _code(match: re.Match[str]) -> str:
    n = ord(match.group())
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


def visible(text: str) -> str:
    """``text`` with every control, bidi or invisible format character as a visible
    escape (``\\x1b``, ``\\x0a`` for a line break, ``\\u202e``); all else as is."""
    return _UNSAFE.sub(_code, text)


def has_unsafe(text: str) -> bool:
    """Whether ``visible`` would change ``text``."""
    return _UNSAFE.search(text) is not None


_MD_ALWAYS = re.compile(r"([\\`*\[\]<>|~])")
#: an underscore that could open or close emphasis (not inside a word)
_MD_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_MD_ENTITY = re.compile(r"&(?=#?[0-9A-Za-z]+;)")


def md_escape(text: str) -> str:
    """Plain text -> GitHub-flavoured Markdown that shows exactly that text, on one line.

    Controls and bidi characters become visible escapes (``visible``); then a
    backslash escapes what could start markup (emphasis, code, links, HTML or
    autolinks, table cells, strikethrough, entities). No HTML is ever produced.
    """
    text = _MD_ALWAYS.sub(r"\\\1", visible(text))
    text = _MD_UNDERSCORE.sub(r"\\_", text)
    return _MD_ENTITY.sub(r"\\&", text)


def html_escape(text: str) -> str:
    """Plain text -> HTML text (or attribute value) that shows it, controls visible."""
    return _html_escape(visible(text), quote=True)
