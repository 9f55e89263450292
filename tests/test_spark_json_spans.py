"""How Spark splits a .json file into its elements or documents as written
(``spark/documents.py``): ``value_end`` reads exactly what Python's
``json.JSONDecoder().raw_decode`` reads, without its recursion, so a deeply
nested element (which DuckDB's reader takes) does not stop Spark's ingest.
Fast: no Spark here, only the splitting run on the executors."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from warroom.spark.documents import documents, elements, value_end

DATA = Path(__file__).parent / "data"
_DECODER = json.JSONDecoder()


def _decoded_end(s: str, i: int) -> int | None:
    try:
        return int(_DECODER.raw_decode(s, i)[1])
    except ValueError:
        return None


def _corpus() -> list[str]:
    texts = []
    for path in sorted(DATA.glob("json-test-suite/*.json")) + sorted(
        DATA.glob("real-formats/**/*.json*")
    ):
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            continue
    return texts


def test_every_document_of_the_suites_ends_where_pythons_reader_says() -> None:
    compared = 0
    for text in _corpus():
        for s in (text, f"[{text}]", f"[{text}, {text}]", f'{{"a": {text}}}', text[:-1]):
            try:
                expected = _decoded_end(s, 0)
            except RecursionError:
                continue
            assert value_end(s, 0) == expected, s[:80]
            compared += 1
    assert compared > 1000


#: the pieces JSON is made of, and a few it is not
_PIECES = st.sampled_from(
    ["{", "}", "[", "]", ",", ":", " ", "\n", '"', '"a"', '"\\u00e9"', '"\\x"', "\\", "0", "1",
     "-", ".", "e", "E", "+", "12", "01", "1.5", "NaN", "Infinity", "-Infinity", "null",
     "true", "fals", "\t", "\x01", "é"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=14).map("".join))
def test_any_text_ends_where_pythons_reader_says(s: str) -> None:
    assert value_end(s, 0) == _decoded_end(s, 0)


def test_nesting_deeper_than_pythons_recursion_is_read() -> None:
    deep = "[" * 5000 + '{"a": 1}' + "]" * 5000
    row = '{"request_id": "r1", "x": ' + deep + "}"
    assert elements(f"[{row}, {{}}]") == [row, "{}"]
    assert documents(f"{row}\n{row}") == [row, row]
    # cut short however deep: not well formed, and no error
    assert elements("[" * 100_000) is None
    assert documents('[{"":' * 50_000) is None
