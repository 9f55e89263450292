"""Files -> canonical tables, with provenance, rejects and the sources manifest.

The promise: every input row is either loaded (with its file and line) or in
``rejects`` with the raw text and a reason; each file lands whole or not at all.

How a file is read, fastest first:

* JSON lines, clean: DuckDB's ``read_json`` reads the fields as text straight
  from the file and ``convert.typed_select`` types and checks them; the line
  number is the row's ordinality. That numbering is only right when every
  physical line was a row, so it is verified against the line count taken while
  hashing the file (in a thread, overlapping the load). If it does not hold, or
  ``read_json`` refuses the file, the file is read the careful way.
* Careful: DuckDB reads every physical line as text (``read_csv`` with one
  column and no quoting), and SQL finds malformed JSON, arrays, scalars and bad
  fields. Bytes DuckDB cannot take (invalid UTF-8, control characters, overlong
  lines, a truncated gzip stream) are first found by a chunked scan in Python and
  replaced by blank lines in a temporary copy; those lines become rejects with
  their bytes visibly escaped.
* CSV/TSV take the careful path with fields split by a regular expression, one
  record per line. Parquet is read by ``read_parquet`` with its row numbers.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import os
import re
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson

from warroom.convert import install_macros, typed_select
from warroom.errors import InputError, RejectedRowsError
from warroom.model import FIELDS, IDENTITY, SIGNATURES, TABLES, FieldType, Kind

#: longest line we load; longer ones are rejected (DuckDB refuses them anyway)
LINE_LIMIT = 8 * 1024 * 1024
#: how much of an unloadable line is kept in ``rejects.raw``
RAW_LIMIT = 4096
_CHUNK = 16 * 1024 * 1024

DATA_SUFFIXES = {".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet"}
_FORMATS = {".jsonl": "json", ".ndjson": "json", ".json": "json", ".csv": "csv",
            ".tsv": "tsv", ".parquet": "parquet"}
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

ProgressFn = Callable[[str, float], None]
"""progress(label, fraction done in [0, 1]) — called from a watcher thread."""


@dataclass
class FileResult:
    """What happened to one input file."""

    path: str
    kind: str
    format: str
    compression: str | None
    sha256: str
    size_bytes: int
    rows_loaded: int = 0
    rows_rejected: int = 0
    blank_lines: int = 0
    #: ``loaded``, ``skipped`` (already ingested), ``replaced`` (--force), ``strict-rejected``
    status: str = "loaded"
    note: str = ""
    seconds: float = 0.0


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)

    @property
    def rows_loaded(self) -> int:
        return sum(f.rows_loaded for f in self.files if f.status in ("loaded", "replaced"))

    @property
    def rows_rejected(self) -> int:
        return sum(f.rows_rejected for f in self.files if f.status in ("loaded", "replaced"))


# --------------------------------------------------------------------------- paths


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files, folders (recursively; entries starting with ``_`` or ``.`` are
    skipped, and only data files are taken) and globs, sorted, without repeats.

    Raises InputError for a path that matches nothing.
    """
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(_walk(p))
            if not found:
                raise InputError(f"{p}: no data files in this folder "
                                 f"(looked for {', '.join(sorted(DATA_SUFFIXES))}, optionally .gz)")
            out.extend(found)
        elif p.exists():
            out.append(p)
        elif glob.has_magic(str(raw)):
            matched = sorted(Path(m) for m in glob.glob(str(raw), recursive=True))
            files = [m for m in matched if m.is_file()]
            if not files:
                raise InputError(f"{raw}: no file matches this pattern")
            out.extend(files)
        else:
            raise InputError(f"{p}: no such file or folder")
    seen: set[Path] = set()
    unique = []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(("_", ".")))
        for name in filenames:
            if name.startswith(("_", ".")):
                continue
            p = Path(dirpath) / name
            if _data_suffix(p):
                yield p


def _data_suffix(p: Path) -> str | None:
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in DATA_SUFFIXES:
        return suffixes[-1]
    return None


# --------------------------------------------------------------------------- sniffing


@dataclass
class _Plan:
    path: Path
    format: str  # json | csv | tsv | parquet
    compression: str | None  # gzip | None
    kind: Kind
    size: int
    json_array: bool = False
    header: list[str] = field(default_factory=list)
    header_line: int = 0
    parquet_types: dict[str, str] = field(default_factory=dict)


def _format_of(p: Path) -> tuple[str, str | None]:
    suffix = _data_suffix(p)
    if suffix is None:
        raise InputError(
            f"{p}: unknown file type; use .jsonl/.ndjson/.json, .csv/.tsv or .parquet "
            "(optionally .gz)"
        )
    gz = p.suffix.lower() == ".gz"
    if suffix == ".parquet" and gz:
        raise InputError(f"{p}: gzip-compressed Parquet is not supported; gunzip it first")
    return _FORMATS[suffix], ("gzip" if gz else None)


def _open_text(p: Path, compression: str | None):  # type: ignore[no-untyped-def]
    return gzip.open(p, "rb") if compression == "gzip" else open(p, "rb")


def _head(p: Path, compression: str | None, limit: int = 1 << 16) -> bytes:
    try:
        with _open_text(p, compression) as fh:
            return fh.read(limit)  # type: ignore[no-any-return]
    except (OSError, EOFError, zlib.error):
        return b""


def _check_magic(p: Path, fmt: str, compression: str | None) -> None:
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if compression == "gzip":
        if magic[:2] != b"\x1f\x8b":
            raise InputError(f"{p}: named .gz but is not gzip data")
        return
    if fmt == "parquet":
        if magic != b"PAR1":
            raise InputError(f"{p}: named .parquet but is not a Parquet file")
        return
    if magic[:2] == b"\x1f\x8b":
        raise InputError(f"{p}: this is gzip data; name it {p.name}.gz")
    if magic == b"PAR1":
        raise InputError(f"{p}: this is a Parquet file; name it {p.stem}.parquet")


def _kind_from_name(p: Path) -> Kind | None:
    name = p.name.lower()
    for kind in Kind:
        if name.startswith(kind.value):
            return kind
    return None


def _kind_from_fields(p: Path, names: set[str]) -> Kind:
    matches = [k for k, sig in SIGNATURES.items() if sig <= names]
    if len(matches) == 1:
        return matches[0]
    what = "matches several kinds" if matches else "matches no kind"
    raise InputError(
        f"{p}: cannot tell what this file holds (its fields {what}); "
        "name it requests*, ledger*, abuse* or prices*, or pass --kind"
    )


def _csv_fields(line: str, delim: str) -> list[str]:
    import csv

    row = next(csv.reader([line], delimiter=delim), [])
    return [c.strip().lower() for c in row]


def plan_file(con: duckdb.DuckDBPyConnection, p: Path, kind: Kind | None) -> _Plan:
    """Decide format, compression and kind of one file, reading only its head."""
    if not p.is_file():
        raise InputError(f"{p}: not a file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{p}: permission denied")
    fmt, compression = _format_of(p)
    _check_magic(p, fmt, compression) if p.stat().st_size else None
    plan = _Plan(p, fmt, compression, kind or Kind.requests, p.stat().st_size)
    named = kind or _kind_from_name(p)
    if fmt == "parquet":
        try:
            rows = con.execute(
                "SELECT name, type FROM parquet_schema(?) WHERE num_children IS NULL "
                "OR num_children = 0", [str(p)]).fetchall()
            described = con.execute(
                "DESCRIBE SELECT * FROM read_parquet(?)", [str(p)]).fetchall()
        except duckdb.Error as exc:
            raise InputError(f"{p}: not a readable Parquet file: {_one_line(exc)}") from None
        del rows
        plan.parquet_types = {str(r[0]).lower(): str(r[1]) for r in described}
        plan.kind = named or _kind_from_fields(p, set(plan.parquet_types))
        return plan
    head = _head(p, compression)
    text = head.decode("utf-8", errors="replace")
    lines = text.splitlines()
    first_idx = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if fmt in ("csv", "tsv"):
        if first_idx is None:
            plan.kind = named or Kind.requests
            return plan
        plan.header_line = first_idx + 1
        plan.header = _csv_fields(lines[first_idx], "," if fmt == "csv" else "\t")
        plan.kind = named or _kind_from_fields(p, set(plan.header))
        missing = [f.name for f in FIELDS[plan.kind] if f.required and f.name not in plan.header]
        if missing:
            raise InputError(
                f"{p}: header lacks required column(s) {', '.join(missing)} "
                f"for kind {plan.kind.value}"
            )
        return plan
    # JSON: lines, or one array of objects
    stripped = text.lstrip()
    plan.json_array = p.suffix.lower() == ".json" and stripped.startswith("[")
    if named:
        plan.kind = named
        return plan
    if first_idx is None:
        raise InputError(f"{p}: empty file and no kind in its name; name it or pass --kind")
    keys: set[str] = set()
    try:
        if plan.json_array:
            obj = con.execute(
                "SELECT json_keys(json_extract(?::JSON, '$[0]'))",
                [_first_array_element(p, compression)]).fetchone()
            keys = set(obj[0] or []) if obj else set()
        else:
            parsed = orjson.loads(lines[first_idx])
            if isinstance(parsed, dict):
                keys = set(parsed)
    except (orjson.JSONDecodeError, duckdb.Error):
        keys = set()
    plan.kind = _kind_from_fields(p, keys)
    return plan


def _first_array_element(p: Path, compression: str | None) -> str:
    head = _head(p, compression, 1 << 20).decode("utf-8", errors="replace")
    dec = orjson.loads(head) if head.rstrip().endswith("]") else None
    if isinstance(dec, list) and dec:
        return orjson.dumps(dec[:1]).decode()
    # a large array: DuckDB reads just enough of it
    return "[]"


# --------------------------------------------------------------------------- prescan


@dataclass
class _Scan:
    sha256: str
    lines: int  # physical lines of the (decompressed) text; a final unterminated one counts


def _hash_and_count(p: Path, compression: str | None) -> _Scan:
    """SHA-256 of the file's bytes and the number of lines of its text, at C speed."""
    h = hashlib.sha256()
    newlines = 0
    last = b""
    with open(p, "rb") as raw:
        if compression == "gzip":
            d = zlib.decompressobj(wbits=47)
            truncated = False
            while chunk := raw.read(_CHUNK):
                h.update(chunk)
                if truncated:
                    continue
                try:
                    out = d.decompress(chunk)
                    while d.eof and d.unused_data:  # concatenated gzip members
                        rest = d.unused_data
                        d = zlib.decompressobj(wbits=47)
                        out += d.decompress(rest)
                except zlib.error:
                    truncated = True
                    continue
                if out:
                    newlines += out.count(b"\n")
                    last = out[-1:]
        else:
            while chunk := raw.read(_CHUNK):
                h.update(chunk)
                newlines += chunk.count(b"\n")
                last = chunk[-1:]
    lines = newlines + (1 if last and last != b"\n" else 0)
    return _Scan(h.hexdigest(), lines)


# --------------------------------------------------------------------------- careful scan


@dataclass
class _BadLine:
    line: int
    raw: str
    reason: str


def _escape(b: bytes) -> str:
    """Bytes as text with every invalid or control byte visibly escaped (``\\xff``)."""
    text = b.decode("utf-8", errors="backslashreplace")
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", text)


def _bad_reason(line: bytes) -> str | None:
    if len(line) > LINE_LIMIT:
        return f"line too long: {len(line)} bytes (limit {LINE_LIMIT})"
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start + 1}"
    m = _CONTROL.search(line.rstrip(b"\r"))
    if m:
        return f"control character 0x{m.group()[0]:02x} at byte {m.start() + 1}"
    return None


def _clip(b: bytes) -> str:
    if len(b) > RAW_LIMIT:
        return _escape(b[:RAW_LIMIT]) + f"... ({len(b)} bytes)"
    return _escape(b)


def _sanitize(p: Path, compression: str | None, tmpdir: str) -> tuple[Path, list[_BadLine], int]:
    """Copy the text of ``p`` with every line DuckDB could not read blanked out.

    Returns the path DuckDB should read (``p`` itself when nothing was wrong),
    the bad lines as rejects, and the number of physical lines.
    """
    bad: list[_BadLine] = []
    out_path = Path(tmpdir) / "clean.txt"
    lineno = 0
    carry = b""
    truncated: str | None = None

    def chunks() -> Iterator[bytes]:
        nonlocal truncated
        if compression == "gzip":
            with open(p, "rb") as raw:
                d = zlib.decompressobj(wbits=47)
                while chunk := raw.read(_CHUNK):
                    try:
                        out = d.decompress(chunk)
                        while d.eof and d.unused_data:
                            rest = d.unused_data
                            d = zlib.decompressobj(wbits=47)
                            out += d.decompress(rest)
                    except zlib.error as exc:
                        truncated = f"corrupt gzip data ({exc})"
                        return
                    yield out
                if not d.eof:
                    truncated = "gzip stream truncated: the file ends before the compressed data does"
        else:
            with open(p, "rb") as raw:
                while chunk := raw.read(_CHUNK):
                    yield chunk

    with open(out_path, "wb") as out:
        for chunk in chunks():
            data = carry + chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                if len(carry) > LINE_LIMIT + RAW_LIMIT:  # keep memory bounded
                    carry = carry[: LINE_LIMIT + RAW_LIMIT]
                continue
            body, carry = data[: cut + 1], data[cut + 1 :]
            n = body.count(b"\n")
            if _chunk_ok(body):
                out.write(body)
            else:
                for i, ln in enumerate(body.split(b"\n")[:-1]):
                    reason = _bad_reason(ln)
                    if reason:
                        bad.append(_BadLine(lineno + i + 1, _clip(ln), reason))
                        out.write(b"\n")
                    else:
                        out.write(ln + b"\n")
            lineno += n
        if carry:
            lineno += 1
            if truncated:
                bad.append(_BadLine(lineno, _clip(carry), f"{truncated}; the line is incomplete"))
                out.write(b"\n")
            else:
                reason = _bad_reason(carry)
                if reason:
                    bad.append(_BadLine(lineno, _clip(carry), reason))
                    out.write(b"\n")
                else:
                    out.write(carry + b"\n")
        elif truncated:
            lineno += 1
            bad.append(_BadLine(lineno, "", f"{truncated}; the rest of the file is lost"))
            out.write(b"\n")
    return out_path, bad, lineno


def _chunk_ok(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if _CONTROL.search(body.replace(b"\r\n", b"\n")):
        return False
    if len(body) > LINE_LIMIT and max(map(len, body.split(b"\n"))) > LINE_LIMIT:
        return False
    return True


# --------------------------------------------------------------------------- SQL sources


def _lines_relation(path: Path) -> str:
    """SQL reading every physical line of a clean text file as (line, raw)."""
    del path
    return (
        "SELECT ordinality AS line, raw FROM read_csv($path, columns = {'raw': 'VARCHAR'}, "
        "delim = '\x01', quote = '', escape = '', header = false, auto_detect = false, "
        f"new_line = '\\n', max_line_size = {LINE_LIMIT + 1024}, strict_mode = false) "
        "WITH ORDINALITY"
    )


def _json_values(kind: Kind, src: str) -> str:
    """(line, raw) of JSON text -> line, raw, pre_reason, v_<field>, n_<money>."""
    fields = FIELDS[kind]
    paths = ", ".join(f"'$.\"{f.name}\"'" for f in fields)
    money = [i for i, f in enumerate(fields) if f.type is FieldType.MONEY]
    cols = [f"v[{i + 1}] AS v_{f.name}" for i, f in enumerate(fields)]
    cols += [
        f"coalesce(json_type(j[{i + 1}]) NOT IN ('VARCHAR', 'NULL'), false) AS n_{fields[i].name}"
        for i in money
    ]
    money_paths = ", ".join(f"'$.\"{fields[i].name}\"'" for i in money) or "'$.__none__'"
    return f"""
        SELECT line, raw, pre_reason, {', '.join(cols)} FROM (
            SELECT line, raw, pre_reason,
                CASE WHEN pre_reason IS NULL THEN json_extract_string(raw, [{paths}]) END AS v,
                CASE WHEN pre_reason IS NULL THEN json_extract(raw, [{money_paths}]) END AS j
            FROM (
                SELECT line, raw, CASE
                    WHEN NOT json_valid(raw) THEN 'malformed JSON'
                    WHEN json_type(raw::JSON) <> 'OBJECT'
                        THEN 'not a JSON object: a JSON ' || CASE json_type(raw::JSON)
                            WHEN 'ARRAY' THEN 'array' WHEN 'VARCHAR' THEN 'string'
                            WHEN 'BOOLEAN' THEN 'boolean' WHEN 'NULL' THEN 'null'
                            ELSE 'number' END
                    END AS pre_reason
                FROM ({src})
            )
        )"""


def _csv_values(plan: _Plan, src: str) -> str:
    fields = FIELDS[plan.kind]
    n = len(plan.header)
    if plan.format == "csv":
        split = (
            "regexp_extract_all(',' || raw, ',(\"(?:[^\"]|\"\")*\"|[^,\"]*)', 1)"
        )
        wellformed = "regexp_full_match(',' || raw, '(,(\"(?:[^\"]|\"\")*\"|[^,\"]*))*')"
    else:
        split = "string_split(raw, '\t')"
        wellformed = "true"
    cols = []
    for f in fields:
        if f.name in plan.header:
            i = plan.header.index(f.name) + 1
            cols.append(f"NULLIF(wr_csv_unquote(trim(fs[{i}])), '') AS v_{f.name}")
        else:
            cols.append(f"NULL::VARCHAR AS v_{f.name}")
    cols += [f"false AS n_{f.name}" for f in fields if f.type is FieldType.MONEY]
    return f"""
        SELECT line, raw, CASE
                WHEN NOT {wellformed} THEN 'malformed CSV: unbalanced or misplaced quotes'
                WHEN len(fs) <> {n} THEN 'expected {n} fields, got ' || len(fs)
            END AS pre_reason, {', '.join(cols)}
        FROM (SELECT line, raw, {split} AS fs FROM ({src}) WHERE line > {plan.header_line})"""


def _parquet_values(plan: _Plan) -> str:
    fields = FIELDS[plan.kind]
    cols, raw_parts = [], []
    for f in fields:
        if f.name in plan.parquet_types:
            cols.append(f'CAST("{f.name}" AS VARCHAR) AS v_{f.name}')
            raw_parts.append(f"'{f.name}': \"{f.name}\"")
        else:
            cols.append(f"NULL::VARCHAR AS v_{f.name}")
    for f in fields:
        if f.type is FieldType.MONEY:
            t = plan.parquet_types.get(f.name, "")
            via_double = "true" if t in ("DOUBLE", "FLOAT", "REAL") else "false"
            cols.append(f"{via_double} AS n_{f.name}")
    raw = f"CAST(to_json({{{', '.join(raw_parts)}}}) AS VARCHAR)" if raw_parts else "'{}'"
    return (
        f"SELECT file_row_number + 1 AS line, {raw} AS raw, NULL::VARCHAR AS pre_reason, "
        f"{', '.join(cols)} FROM read_parquet($path, file_row_number = true)"
    )


# --------------------------------------------------------------------------- loading


class _Fallback(Exception):
    """The fast path cannot load this file exactly; take the careful path."""


def _canonical_cols(kind: Kind) -> list[str]:
    return [f.name for f in FIELDS[kind]]


def _insert_good(con: duckdb.DuckDBPyConnection, kind: Kind, typed_sql: str,
                 params: dict[str, object]) -> int:
    """Insert the good rows of ``typed_sql`` into the kind's table; returns the count."""
    table = TABLES[kind]
    names = _canonical_cols(kind)
    cols = ", ".join(names)
    if kind in IDENTITY:
        key = IDENTITY[kind]
        sql = f"""
            INSERT INTO {table} (source_id, line, canonical, {cols})
            SELECT $source_id, g.line,
                   row_number() OVER (PARTITION BY g.{key} ORDER BY g.line) = 1
                       AND prev.{key} IS NULL,
                   {', '.join('g.' + n for n in names)}
            FROM ({typed_sql}) g
            LEFT JOIN (SELECT DISTINCT {key} FROM {table} WHERE canonical) prev
                ON prev.{key} = g.{key}
            WHERE g.reason IS NULL"""
    else:
        sql = f"""
            INSERT INTO {table} (source_id, line, {cols})
            SELECT $source_id, line, {cols} FROM ({typed_sql}) WHERE reason IS NULL"""
    row = con.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def _load_json_fast(con: duckdb.DuckDBPyConnection, plan: _Plan, source_id: int,
                    scan: Future[_Scan]) -> tuple[int, int]:
    fields = FIELDS[plan.kind]
    spec = ", ".join(
        f"'{f.name}': '{'JSON' if f.type is FieldType.MONEY else 'VARCHAR'}'" for f in fields
    )
    vals = []
    for f in fields:
        if f.type is FieldType.MONEY:
            vals.append(
                f"CASE WHEN left(\"{f.name}\", 1) = '\"' THEN \"{f.name}\"->>'$' "
                f"ELSE CAST(\"{f.name}\" AS VARCHAR) END AS v_{f.name}"
            )
            vals.append(f"coalesce(left(\"{f.name}\", 1) <> '\"', false) AS n_{f.name}")
        else:
            vals.append(f'"{f.name}" AS v_{f.name}')
    fmt = "array" if plan.json_array else "newline_delimited"
    src = (
        f"SELECT ordinality AS line, NULL::VARCHAR AS pre_reason, {', '.join(vals)} "
        f"FROM read_json($path, columns = {{{spec}}}, format = '{fmt}', records = true, "
        f"maximum_object_size = {LINE_LIMIT}) WITH ORDINALITY"
    )
    typed = typed_select(plan.kind, f"({src})")
    params: dict[str, object] = {"path": str(plan.path), "source_id": source_id}
    try:
        loaded = _insert_good(con, plan.kind, typed, params)
    except duckdb.Error as exc:
        raise _Fallback(str(exc)) from None
    total = scan.result().lines
    if loaded == total and not plan.json_array:
        return loaded, 0
    # Some rows were rejected (or the file has blank lines): find them; the
    # numbering holds only if every physical line was a row.
    con.execute(f"CREATE OR REPLACE TEMP TABLE wr_bad AS SELECT line, reason FROM ({typed}) "
                "WHERE reason IS NOT NULL", {"path": str(plan.path)})
    bad = _count(con, "SELECT count(*) FROM wr_bad")
    if plan.json_array:
        # rows of an array have no line of their own: keep the element as text
        con.execute(
            f"""INSERT INTO rejects SELECT $source_id, b.line, NULL, b.reason FROM wr_bad b""",
            {"source_id": source_id})
        return loaded, bad
    if loaded + bad != total:
        raise _Fallback("blank lines: ordinality is not the line number")
    con.execute(
        f"""INSERT INTO rejects SELECT $source_id, b.line, l.raw, b.reason
            FROM wr_bad b LEFT JOIN ({_lines_relation(plan.path)}) l USING (line)""",
        {"source_id": source_id, "path": str(plan.path)})
    return loaded, bad


def _load_staged(con: duckdb.DuckDBPyConnection, plan: _Plan, source_id: int,
                 values_sql: str, params: dict[str, object],
                 pre_bad: Sequence[_BadLine] = ()) -> tuple[int, int]:
    """Type ``values_sql`` once into a temp table, then split good rows from rejects."""
    typed = typed_select(plan.kind, f"({values_sql})", extra=("raw",))
    con.execute(f"CREATE OR REPLACE TEMP TABLE wr_stage AS {typed}", params)
    loaded = _insert_good(con, plan.kind, "SELECT * FROM wr_stage", {"source_id": source_id})
    bad = _count(con, "SELECT count(*) FROM wr_stage WHERE reason IS NOT NULL")
    con.execute(
        "INSERT INTO rejects SELECT $source_id, line, raw, reason FROM wr_stage "
        "WHERE reason IS NOT NULL", {"source_id": source_id})
    if pre_bad:
        con.executemany(
            "INSERT INTO rejects VALUES (?, ?, ?, ?)",
            [[source_id, b.line, b.raw, b.reason] for b in pre_bad])
    con.execute("DROP TABLE wr_stage")
    return loaded, bad + len(pre_bad)


def _load_lines(con: duckdb.DuckDBPyConnection, plan: _Plan, source_id: int) -> tuple[int, int]:
    """The careful path for text files: every physical line, scanned first."""
    with tempfile.TemporaryDirectory(prefix="warroom-") as tmp:
        clean, bad, _ = _sanitize(plan.path, plan.compression, tmp)
        lines = f"SELECT line, raw FROM ({_lines_relation(clean)}) WHERE trim(coalesce(raw, '')) <> ''"
        if plan.format == "json":
            values = _json_values(plan.kind, lines)
        else:
            values = _csv_values(plan, lines)
        return _load_staged(con, plan, source_id, values, {"path": str(clean)}, bad)


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: object = None) -> int:
    row = con.execute(sql, params).fetchone() if params else con.execute(sql).fetchone()
    return int(row[0]) if row else 0


# --------------------------------------------------------------------------- driver


def ingest(
    con: duckdb.DuckDBPyConnection,
    paths: Sequence[str | Path],
    *,
    kind: Kind | None = None,
    force: bool = False,
    strict: bool = False,
    progress: ProgressFn | None = None,
) -> IngestReport:
    """Load ``paths`` into the canonical tables, one transaction per file.

    Every file is checked (exists, readable, format, kind) before any is loaded.
    A file whose SHA-256 is already recorded is skipped unless ``force``, which
    replaces that file's rows. With ``strict``, a file with any rejected row
    loads nothing, and RejectedRowsError is raised after all files are done.

    Raises InputError for a file that cannot be read at all.
    """
    install_macros(con)
    # Rows carry their line number, so their physical order does not matter;
    # letting DuckDB write them out of order makes a numbered scan much faster.
    con.execute("SET preserve_insertion_order = false")
    con.execute(
        "CREATE OR REPLACE TEMP MACRO wr_csv_unquote(x) AS CASE WHEN left(x, 1) = '\"' "
        "AND right(x, 1) = '\"' AND length(x) >= 2 "
        "THEN replace(x[2:length(x) - 1], '\"\"', '\"') ELSE x END")
    files = expand_paths(paths)
    plans = [plan_file(con, p, kind) for p in files]
    report = IngestReport()
    strict_failures: list[FileResult] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        for plan in plans:
            result = _ingest_one(con, plan, force=force, strict=strict, pool=pool,
                                 progress=progress)
            report.files.append(result)
            if result.status == "strict-rejected":
                strict_failures.append(result)
    if strict_failures:
        names = ", ".join(f"{r.path} ({r.rows_rejected} rejected)" for r in strict_failures)
        err = RejectedRowsError(f"--strict: nothing loaded from {names}")
        err.report = report  # type: ignore[attr-defined]
        raise err
    return report


def _ingest_one(con: duckdb.DuckDBPyConnection, plan: _Plan, *, force: bool, strict: bool,
                pool: ThreadPoolExecutor, progress: ProgressFn | None) -> FileResult:
    started = time.monotonic()
    result = FileResult(str(plan.path), plan.kind.value, plan.format, plan.compression, "",
                        plan.size)
    scan: Future[_Scan] = pool.submit(_hash_and_count, plan.path, plan.compression)
    # Hashing overlaps the load; only a file the size of one already loaded could
    # be a repeat, and for that one the hash comes first.
    if _count(con, "SELECT count(*) FROM sources WHERE size_bytes = ?", [plan.size]):
        if _previous(con, scan.result().sha256) and not force:
            return _skipped(result, con, scan.result().sha256)
    loaders = ["fast", "careful"] if plan.format == "json" else ["careful"]
    for loader in loaders:
        con.execute("BEGIN TRANSACTION")
        try:
            source_id = _count(con, "SELECT nextval('source_ids')")
            with _watch(con, progress, plan.path.name):
                if loader == "fast":
                    loaded, rejected = _load_json_fast(con, plan, source_id, scan)
                else:
                    loaded, rejected = _load_careful(con, plan, source_id)
            sha = scan.result().sha256
            previous = _previous(con, sha)
            if previous and not force:
                con.execute("ROLLBACK")
                return _skipped(result, con, sha)
            for old_id, _ in previous:
                _delete_source(con, old_id)
            result.sha256 = sha
            result.status = "replaced" if previous else "loaded"
            result.rows_loaded, result.rows_rejected = loaded, rejected
            if plan.format != "parquet":
                header = 1 if plan.header else 0
                result.blank_lines = max(scan.result().lines - loaded - rejected - header, 0)
            if strict and rejected:
                con.execute("ROLLBACK")
                result.status = "strict-rejected"
                result.note = "--strict: nothing loaded from this file"
                return result
            con.execute(
                "INSERT INTO sources VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?)",
                [source_id, result.path, plan.kind.value, plan.format, plan.compression, sha,
                 plan.size, loaded, rejected, result.blank_lines,
                 datetime.now(UTC).replace(tzinfo=None)])
            con.execute("COMMIT")
        except _Fallback:
            con.execute("ROLLBACK")
            if plan.json_array:
                raise InputError(f"{plan.path}: not a well-formed JSON array of objects; "
                                 "use one JSON object per line (.jsonl)") from None
            continue
        except BaseException:
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:
                pass
            raise
        break
    result.seconds = time.monotonic() - started
    return result


def _previous(con: duckdb.DuckDBPyConnection, sha: str) -> list[tuple[int, str]]:
    rows = con.execute("SELECT source_id, path FROM sources WHERE sha256 = ? ORDER BY 1",
                       [sha]).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def _skipped(result: FileResult, con: duckdb.DuckDBPyConnection, sha: str) -> FileResult:
    result.sha256 = sha
    result.status = "skipped"
    result.note = (f"already ingested as {_previous(con, sha)[0][1]}; nothing loaded "
                   "(--force replaces it)")
    return result


def _load_careful(con: duckdb.DuckDBPyConnection, plan: _Plan,
                  source_id: int) -> tuple[int, int]:
    if plan.size == 0:
        return 0, 0
    if plan.format == "parquet":
        try:
            return _load_staged(con, plan, source_id, _parquet_values(plan),
                                {"path": str(plan.path)})
        except duckdb.Error as exc:
            raise InputError(f"{plan.path}: cannot read Parquet: {_one_line(exc)}") from None
    return _load_lines(con, plan, source_id)


def _delete_source(con: duckdb.DuckDBPyConnection, source_id: int) -> None:
    """Remove one source's rows everywhere, re-electing canonical rows it held."""
    for kind, table in TABLES.items():
        if kind in IDENTITY:
            key = IDENTITY[kind]
            con.execute(f"CREATE OR REPLACE TEMP TABLE wr_lost AS SELECT DISTINCT {key} "
                        f"FROM {table} WHERE source_id = ? AND canonical", [source_id])
            con.execute(f"DELETE FROM {table} WHERE source_id = ?", [source_id])
            con.execute(f"""
                UPDATE {table} SET canonical = true FROM (
                    SELECT {key} AS k, source_id AS s, line AS l FROM {table}
                    WHERE {key} IN (SELECT {key} FROM wr_lost)
                    QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY source_id, line) = 1
                ) first WHERE {table}.{key} = first.k AND {table}.source_id = first.s
                    AND {table}.line = first.l""")
            con.execute("DROP TABLE wr_lost")
        else:
            con.execute(f"DELETE FROM {table} WHERE source_id = ?", [source_id])
    con.execute("DELETE FROM rejects WHERE source_id = ?", [source_id])
    con.execute("DELETE FROM sources WHERE source_id = ?", [source_id])


class _watch:
    """Poll DuckDB's query progress from a thread while a file loads."""

    def __init__(self, con: duckdb.DuckDBPyConnection, fn: ProgressFn | None, label: str):
        self.con, self.fn, self.label = con, fn, label
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> _watch:
        if self.fn is not None:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        return self

    def _run(self) -> None:
        assert self.fn is not None
        while not self.stop.wait(0.2):
            try:
                pct = self.con.query_progress()
            except duckdb.Error:
                continue
            if pct is not None and pct >= 0:
                self.fn(self.label, min(float(pct) / 100.0, 1.0))

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        if self.fn is not None:
            self.fn(self.label, 1.0)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
