"""What the files are, before any is loaded: which files a path names, and for
each its format, compression and kind, from its name and the fields of its head.

Every file is sniffed before the first one loads, so a typo in the last path of
a long list fails the command before it has changed anything.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import orjson

from warroom.errors import InputError
from warroom.ingest.scan import BOM, _Gunzip
from warroom.model import FIELDS, SIGNATURES, Kind
from warroom.profiles import Profile

DATA_SUFFIXES = {".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet"}
_FORMATS = {
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
}


def one_line(exc: BaseException) -> str:
    """The first line of an error's message (DuckDB's go on for several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
                raise InputError(
                    f"{p}: no data files in this folder "
                    f"(looked for {', '.join(sorted(DATA_SUFFIXES))}, optionally .gz)"
                )
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


# --------------------------------------------------------------------------- one file


@dataclass
class FilePlan:
    """How one input file is to be read: what ``plan_file`` found in it."""

    path: Path
    format: str  # json | csv | tsv | parquet
    compression: str | None  # gzip | None
    kind: Kind
    size: int
    json_array: bool = False
    header: list[str] = field(default_factory=list)
    header_line: int = 0
    parquet_types: dict[str, str] = field(default_factory=dict)
    #: a Parquet file's columns in order, names as written, and their DuckDB types
    parquet_columns: list[tuple[str, str]] = field(default_factory=list)
    #: read through this import profile instead of as a canonical file
    profile: Profile | None = None
    #: a profile's .json file holding pretty-printed JSON documents, not one per line
    json_document: bool = False
    #: the file's modification time when planned: a file that changes while it
    #: is ingested is refused (see load._check_unchanged)
    mtime_ns: int = 0


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


def _head(p: Path, compression: str | None, limit: int = 1 << 16) -> bytes:
    """The first ``limit`` bytes of the file's text; empty if it cannot be read."""
    try:
        with open(p, "rb") as fh:
            if compression != "gzip":
                return fh.read(limit)
            g, out = _Gunzip(), b""  # as ingest reads it: trailing bytes end the text
            while len(out) < limit and (chunk := fh.read(1 << 16)):
                out += g.feed(chunk)
            return out[:limit]
    except (OSError, zlib.error):
        return b""


def _head_lines(p: Path, compression: str | None) -> tuple[str, list[str], int | None]:
    """The head's text (without a byte-order mark), its lines, and the index of
    the first line that is not blank (None if there is none)."""
    text = _head(p, compression).removeprefix(BOM).decode("utf-8", errors="replace")
    lines = text.splitlines()
    return text, lines, next((i for i, ln in enumerate(lines) if ln.strip()), None)


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
    if magic == b"PAR1" and _ends_like_parquet(p):
        raise InputError(f"{p}: this is a Parquet file; name it {p.stem}.parquet")


def _ends_like_parquet(p: Path) -> bool:
    """A Parquet file ends with its footer's length and PAR1 too (12 bytes at least):
    a text line that merely starts with PAR1 is a line, loaded or rejected as such."""
    size = p.stat().st_size
    if size < 12:
        return False
    with open(p, "rb") as fh:
        fh.seek(size - 4)
        return fh.read(4) == b"PAR1"


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
    what = "match several kinds" if matches else "match no kind"
    raise InputError(
        f"{p}: cannot tell what this file holds (its fields {what}); "
        "name it requests*, ledger*, abuse* or prices*, or pass --kind"
    )


def _csv_header(line: str, fmt: str) -> list[str]:
    """The column names of a CSV or TSV header line, stripped, as written."""
    row = next(csv.reader([line], delimiter="," if fmt == "csv" else "\t"), [])
    return [c.strip() for c in row]


def plan_file(
    con: duckdb.DuckDBPyConnection, p: Path, kind: Kind | None, profile: Profile | None = None
) -> FilePlan:
    """Decide format, compression and kind of one file, reading only its head.

    Raises InputError for a file that is missing, unreadable, misnamed, of an
    unknown kind, or a CSV without the kind's required columns.
    """
    if not p.is_file():
        raise InputError(f"{p}: not a file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{p}: permission denied")
    fmt, compression = _format_of(p)
    _check_magic(p, fmt, compression) if p.stat().st_size else None
    st = p.stat()
    plan = FilePlan(p, fmt, compression, kind or Kind.requests, st.st_size, mtime_ns=st.st_mtime_ns)
    if fmt == "parquet" and (plan.size or profile is None):
        try:
            described = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(p)]).fetchall()
        except duckdb.Error as exc:
            raise InputError(f"{p}: not a readable Parquet file: {one_line(exc)}") from None
        plan.parquet_columns = [(str(r[0]), str(r[1])) for r in described]
        plan.parquet_types = {name.lower(): t for name, t in plan.parquet_columns}
    if profile is not None:
        return _plan_profile(plan, profile)
    named = kind or _kind_from_name(p)
    if fmt == "parquet":
        plan.kind = named or _kind_from_fields(p, set(plan.parquet_types))
        return plan
    text, lines, first_idx = _head_lines(p, compression)
    if fmt in ("csv", "tsv"):
        if first_idx is not None:
            _plan_csv(plan, named, lines, first_idx)
        else:
            plan.kind = named or Kind.requests
        return plan
    # JSON: lines, or one array of objects
    plan.json_array = _data_suffix(p) == ".json" and text.lstrip().startswith("[")
    if named:
        plan.kind = named
        return plan
    if first_idx is None:
        raise InputError(f"{p}: empty file and no kind in its name; name it or pass --kind")
    plan.kind = _kind_from_fields(p, _json_keys(con, plan, lines[first_idx]))
    return plan


def _plan_csv(plan: FilePlan, named: Kind | None, lines: list[str], first_idx: int) -> None:
    """A canonical CSV/TSV file: its header (names lower-case) tells its kind."""
    plan.header_line = first_idx + 1
    plan.header = [c.lower() for c in _csv_header(lines[first_idx], plan.format)]
    dup = sorted({c for c in plan.header if plan.header.count(c) > 1})
    if dup:
        raise InputError(
            f"{plan.path}: column(s) {', '.join(dup)} appear twice in the header "
            "(names are case-insensitive)"
        )
    plan.kind = named or _kind_from_fields(plan.path, set(plan.header))
    missing = [f.name for f in FIELDS[plan.kind] if f.required and f.name not in plan.header]
    if missing:
        raise InputError(
            f"{plan.path}: header lacks required column(s) {', '.join(missing)} "
            f"for kind {plan.kind.value}"
        )


def _json_keys(con: duckdb.DuckDBPyConnection, plan: FilePlan, first: str) -> set[str]:
    """The keys of a JSON file's first object (none if it is not one)."""
    try:
        if plan.json_array:
            obj = con.execute(
                "SELECT json_keys(json_extract(?::JSON, '$[0]'))",
                [_first_array_element(plan.path, plan.compression)],
            ).fetchone()
            return set(obj[0] or []) if obj else set()
        parsed = orjson.loads(first)
        return set(parsed) if isinstance(parsed, dict) else set()
    except (orjson.JSONDecodeError, duckdb.Error):
        return set()


def _plan_profile(plan: FilePlan, profile: Profile) -> FilePlan:
    """A file read through a profile: what it holds is the profile's business; here
    only how its rows are found (CSV header names keep their case)."""
    plan.profile = profile
    plan.kind = profile.kinds[0]
    if plan.format == "parquet" or plan.size == 0:
        return plan
    _, lines, first_idx = _head_lines(plan.path, plan.compression)
    if first_idx is None:
        return plan
    first = lines[first_idx]
    if plan.format in ("csv", "tsv"):
        plan.header_line = first_idx + 1
        plan.header = _csv_header(first, plan.format)
        dup = sorted({c for c in plan.header if plan.header.count(c) > 1})
        if dup:
            raise InputError(f"{plan.path}: column(s) {', '.join(dup)} appear twice in the header")
        return plan
    if _data_suffix(plan.path) == ".json":
        if first.lstrip().startswith("["):
            plan.json_array = True
        else:
            try:
                orjson.loads(first)
            except orjson.JSONDecodeError:
                plan.json_document = True  # pretty-printed: one or more whole documents
    return plan


def _first_array_element(p: Path, compression: str | None) -> str:
    """The first element of a JSON array file, as a one-element array (``[]`` if it
    cannot be read from the file's first MiB): the rest of the file may be large
    or cut short."""
    head = _head(p, compression, 1 << 20).decode("utf-8", errors="replace")
    start = head.lstrip("\ufeff \t\r\n")
    try:
        first, _ = json.JSONDecoder().raw_decode(start[1:].lstrip())
    except (ValueError, IndexError):
        return "[]"
    return orjson.dumps([first]).decode()
