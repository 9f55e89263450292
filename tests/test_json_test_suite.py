"""The public JSONTestSuite (tests/data/json-test-suite: ``y_`` documents a JSON
parser must accept, ``n_`` ones it must refuse, ``i_`` ones left to it) through
ingest, as part of the bad-input catalog.

* Every document that fits on one line, as one line of a request log: none is a
  request row, so every one is rejected (an empty or blank line is a blank line),
  with its text kept, and a valid document is never called malformed.
* Every document that is one string in an array, its string literal as a
  request's ``user_id``: it loads with exactly the string Python's ``json``
  decodes, or is rejected with a reason that says why.
* Every document as a whole ``.json`` file: refused whole or rejected element by
  element; never a crash, never a row.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pytest

from tests.conftest import write
from warroom import db, ingest
from warroom.errors import InputError

SUITE = Path(__file__).parent / "data" / "json-test-suite"
DOCS = {f.name: f.read_bytes() for f in sorted(SUITE.glob("[yni]_*.json"))}
ONE_LINE = {
    name: data.rstrip(b"\n")
    for name, data in DOCS.items()
    if b"\n" not in data.rstrip(b"\n") and b"\r" not in data
}
#: ``n_`` documents DuckDB's JSON reader takes (trailing commas, NaN, Infinity):
#: still rejected, as not objects or for missing fields, never loaded
LENIENT = {
    "n_array_extra_comma.json",
    "n_array_number_and_comma.json",
    "n_number_-NaN.json",
    "n_number_Inf.json",
    "n_number_NaN.json",
    "n_number_infinity.json",
    "n_number_minus_infinity.json",
    "n_object_trailing_comma.json",
}
#: ``y_`` strings warroom refuses as ids: an empty id, and DEL (valid JSON, a control character)
REFUSED_Y_STRINGS = {
    "y_array_empty-string.json": "user_id: missing",  # an empty id is no id
    "y_string_unescaped_char_delete.json": "control character 0x7f",
    "y_string_with_del_character.json": "control character 0x7f",
}
ONE_STRING = re.compile(rb'\[\s*("(?:[^"\\]|\\.)*")\s*\]\s*', re.DOTALL)


@pytest.fixture
def mem() -> duckdb.DuckDBPyConnection:
    return db.connect(":memory:")


def test_the_suite_is_whole() -> None:
    assert len(DOCS) == 318
    assert {n[0] for n in DOCS} == {"y", "n", "i"}
    assert len(ONE_LINE) == 313


def test_every_one_line_document_is_rejected_with_its_text(
    mem: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    names = list(ONE_LINE)
    f = write(tmp_path / "requests.jsonl", b"".join(ONE_LINE[n] + b"\n" for n in names))
    (result,) = ingest(mem, [f]).files
    blank = {n for n in names if not ONE_LINE[n].strip()}
    assert blank == {"n_single_space.json", "n_structure_no_data.json"}
    assert (result.rows_loaded, result.rows_rejected, result.blank_lines) == (0, 311, 2)
    rejects = {
        names[line - 1]: (raw, reason)
        for line, raw, reason in mem.execute("SELECT line, raw, reason FROM rejects").fetchall()
    }
    assert set(rejects) == set(names) - blank
    for name, (raw, reason) in rejects.items():
        doc = ONE_LINE[name]
        if name.startswith("y_"):
            assert reason != "malformed JSON", name
        if name.startswith("n_") and name not in LENIENT:
            assert reason == "malformed JSON" or reason.startswith(
                ("invalid UTF-8", "control character")
            ), (name, reason)
        if name in LENIENT:
            assert reason.startswith(("not a JSON object", "ts: missing")), (name, reason)
        if reason in ("malformed JSON", "not a JSON object: a JSON array"):
            # the text as written (controls and bad bytes would show escaped)
            assert raw == doc.decode(), name


def _strings() -> dict[str, bytes]:
    found = {}
    for name, data in DOCS.items():
        m = ONE_STRING.fullmatch(data)
        if name[0] in "yi" and m:
            found[name] = m.group(1)
    return found


STRINGS = _strings()


def test_every_string_literal_as_an_id_is_exact_or_rejected(
    mem: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    names = list(STRINGS)
    assert len(names) == 64
    lines = [
        b'{"ts":"2025-06-01T10:00:00Z","request_id":"r%d","user_id":%s,"status":200}'
        % (i, STRINGS[n])
        for i, n in enumerate(names, 1)
    ]
    f = write(tmp_path / "requests.jsonl", b"\n".join(lines) + b"\n")
    ingest(mem, [f])
    loaded = dict(mem.execute("SELECT line, user_id FROM requests_all").fetchall())
    rejected = dict(mem.execute("SELECT line, reason FROM rejects").fetchall())
    assert set(loaded) | set(rejected) == set(range(1, 65))
    assert len(loaded) == 42
    for i, name in enumerate(names, 1):
        if i in loaded:
            assert loaded[i] == json.loads(STRINGS[name]), name
        elif name.startswith("y_"):
            assert REFUSED_Y_STRINGS[name] in rejected[i], (name, rejected[i])
        else:
            assert rejected[i].startswith(("invalid UTF-8", "user_id: ", "malformed JSON")), (
                name,
                rejected[i],
            )
    assert {names[i - 1] for i in rejected if names[i - 1].startswith("y_")} == set(
        REFUSED_Y_STRINGS
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DOCS))
def test_every_document_as_a_json_file(tmp_path: Path, name: str) -> None:
    """As ``requests.json``: refused whole with an InputError (nothing loaded), or
    read as an array whose elements are all rejected (none is a request row)."""
    f = write(tmp_path / "requests.json", DOCS[name])
    with db.connect(tmp_path / "w.duckdb") as con:
        try:
            ingest(con, [f])
        except InputError as exc:
            assert "\n" not in str(exc)
            assert con.execute("SELECT count(*) FROM sources").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM requests_all").fetchone() == (0,)
