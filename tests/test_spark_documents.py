"""Spark reads a .json array of records itself (warroom.spark.documents) and
lands what DuckDB's ingest lands: canonical tables (values, path and element
number), rejects (element, its text as written, reason) and sources. On array
versions of the test worlds, on the catalog's text cases written as arrays and
the catalog's array cases; an array DuckDB refuses whole (cut short, not
well-formed) is refused with the same message; a ``file://`` URI of an array
is planned as the local file is. Slow: one Spark session (local[2]).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import world_logs
from tests.test_bad_files import CUT_SHORT, _array
from tests.test_bad_input import req
from tests.test_spark_ingest import TEXT_CASES, WORLDS, _land_alike
from warroom import db
from warroom.errors import InputError
from warroom.ingest import ingest
from warroom.ingest.sniff import expand_paths, plan_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from warroom.spark.session import SparkSettings, start

    yield start(SparkSettings(master="local[2]"))


def _valid(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return bool(line.strip())


def as_array(data: bytes) -> bytes:
    """The JSON lines of ``data`` that are JSON texts, as one array: each element
    as written, every fifth object pretty-printed."""
    out = []
    for i, line in enumerate(x for x in data.split(b"\n") if _valid(x)):
        value = json.loads(line)
        if i % 5 == 4 and isinstance(value, dict):
            out.append(json.dumps(value, indent=2, ensure_ascii=False).encode())
        else:
            out.append(line.strip(b" \t\r"))
    return b"[\n  " + b",\n  ".join(out) + b"\n]\n"


@pytest.mark.parametrize("world", WORLDS)
def test_spark_reads_an_array_world_as_duckdb_does(tmp_path: Path, spark: Any, world: Any) -> None:
    logs, out = world_logs(world, tmp_path), tmp_path / "arrays"
    out.mkdir()
    for i, p in enumerate(expand_paths([logs])):
        if p.suffix == ".jsonl":
            body = as_array(p.read_bytes())
            name = p.stem + ".json"
            if i % 2:  # and gzip
                body, name = gzip.compress(body), name + ".gz"
            (out / name).write_bytes(body)
        else:
            (out / p.name).write_bytes(p.read_bytes())
    assert _land_alike(spark, [out], tmp_path)["sources"][0]


def test_the_catalog_as_arrays_lands_alike(tmp_path: Path, spark: Any) -> None:
    """Each JSON-lines case of the catalog as an array, and the catalog's own
    array cases: elements rejected every way, a gzip array, bytes after its
    gzip data, an empty array."""
    cases: list[tuple[str, bytes]] = []
    for case in TEXT_CASES:
        if case.id in REFUSED_CASES or not case.name.endswith(".jsonl"):
            continue
        if any(_valid(x) for x in case.data.split(b"\n")):
            cases.append((case.name.removesuffix(".jsonl") + ".json", as_array(case.data)))
    elements = [
        req(1, user_id="{}"),
        req(2, user_id={"a": 1}),
        req(3, status="abc"),
        req(4, user_id=12),
        '{ "ts" : "yesterday", "request_id": "r5", "user_id": "u1", "status": 200 }',
        "42",
        '"text"',
        req(8)[:-1] + ',"status":500}',
        "[1, 2]",
        "null",
        '{"ts": "2025-06-01T10:00:00Z", "request_id": "r\\u00e9", "user_id": "u1", "status": 2e2}',
    ]
    cases += [
        ("requests.json", ("[" + ",\n".join(elements) + "]").encode()),
        ("export.json.gz", gzip.compress(_array(3))),
        ("requests.json.gz", gzip.compress(_array(4)) + b"\0" * 512),
        ("requests.json", b"[]\n"),
        ("requests.json", b"  [ ]  "),
        ("requests.json", b"\xef\xbb\xbf" + _array(2)),
    ]
    paths = []
    for i, (name, data) in enumerate(cases):
        folder = tmp_path / "cases" / f"{i:03d}"
        folder.mkdir(parents=True)
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    assert len(paths) >= 60
    assert _land_alike(spark, paths, tmp_path)["sources"][0]


#: catalog cases that are no array DuckDB reads once written as one (a UTF-8
#: encoded surrogate, a byte-order mark before an element): refused whole
REFUSED_CASES = {"utf8-encoded-surrogate", "byte-order-mark"}
REFUSED = [(c[0], c[1], c[2].encode()) for c in CUT_SHORT] + [
    ("text-after-the-array", "requests.json", _array(2) + b" x"),
    ("two-arrays", "requests.json", _array(2) + _array(1)),
    ("invalid-utf8", "requests.json", _array(2).replace(b"r1", b"r\xff")),
]
REFUSED += [
    (c.id, c.name.removesuffix(".jsonl") + ".json", as_array(c.data))
    for c in TEXT_CASES
    if c.id in REFUSED_CASES
]


@pytest.mark.parametrize(("name", "data"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_an_array_duckdb_refuses_whole_spark_refuses_alike(
    tmp_path: Path, spark: Any, name: str, data: bytes
) -> None:
    from warroom.spark import ingest as spark_ingest

    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    con = db.connect(tmp_path / "w.duckdb")
    try:
        with pytest.raises(InputError) as duck:
            ingest(con, [path])
        plan = plan_file(con, path, None, None)
    finally:
        con.close()
    with pytest.raises(InputError) as on_spark:
        spark_ingest.ingest(spark, [(plan, spark_ingest.uri_of(path))], tmp_path / "warehouse")
    assert str(on_spark.value) == str(duck.value)


def test_an_array_uri_is_planned_as_the_local_file(tmp_path: Path, spark: Any) -> None:
    from warroom.spark import uris as spark_uris

    path = tmp_path / "export.json"
    path.write_bytes(_array(3))
    con = db.connect(":memory:")
    local = plan_file(con, path, None, None)
    remote = spark_uris.plan_uri(spark, f"file://{path}")
    assert (remote.kind, remote.format, remote.json_array) == (
        local.kind,
        local.format,
        local.json_array,
    )
    assert remote.json_array
