"""Files -> canonical tables, with provenance, rejects and the sources manifest.

The promise: every input row is either loaded (with its file and line) or in
``rejects`` with the raw text and a reason; each file lands whole or not at all.

How a file is read, fastest first:

* JSON lines, clean: DuckDB's ``read_json`` reads the fields as text straight
  from the file and ``convert.typed_select`` types and checks them; the line
  number is the row's ordinality. That numbering is only right when every
  physical line was a row, so it is verified against the line count taken while
  hashing the file (in a thread, overlapping the load). That pass also notes
  what ``read_json`` takes but the careful path rejects or numbers otherwise
  (control bytes, stray CRs, very long lines; CRLF endings once rejects need
  their raw lines), and rows whose text ``read_json`` cannot give back (a
  number in exponent form, an object where a string belongs) are marked. If
  the numbering does not hold, any of those turns up, or ``read_json`` refuses
  the file, the file is read the careful way.
* Careful: DuckDB reads every physical line as text (``read_csv`` with one
  column and no quoting), and SQL finds malformed JSON, arrays, scalars and bad
  fields. Bytes DuckDB cannot take (invalid UTF-8, control characters, overlong
  lines, a truncated gzip stream) are first found by a chunked scan in Python and
  replaced by blank lines in a temporary copy (which also has CRLF endings made
  LF and a leading byte-order mark dropped); those lines become rejects with
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
import shutil
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

from warroom import profiles
from warroom.convert import install_macros, typed_select
from warroom.errors import InputError, RejectedRowsError
from warroom.model import FIELDS, IDENTITY, SIGNATURES, TABLES, FieldType, Kind
from warroom.profiles import Profile

#: longest line we load; longer ones are rejected (DuckDB refuses them anyway)
LINE_LIMIT = 8 * 1024 * 1024
#: how much of an unloadable line is kept in ``rejects.raw``
RAW_LIMIT = 4096
_CHUNK = 16 * 1024 * 1024

DATA_SUFFIXES = {".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet"}
_FORMATS = {
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
}
#: control bytes a line may not hold: all but TAB and LF, and CR unless it ends
#: the line (CRLF); DuckDB's line reader would split a line at a lone CR
_CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")
#: every byte but those of _CONTROL (and CR): ``b.translate(None, _NOT_CONTROL)``
#: keeps just the control bytes, at C speed
_NOT_CONTROL = bytes(b for b in range(256) if b in (9, 10, 13) or 32 <= b < 127 or b > 127)
_BOM = b"\xef\xbb\xbf"

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
    #: the import profile the file was read through, if any
    profile: str | None = None
    #: ``line: reason`` of the first rejected row of a profile-read file
    first_reject: str = ""
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
    #: read through this import profile instead of as a canonical file
    profile: Profile | None = None
    #: a profile's .json file holding pretty-printed JSON documents, not one per line
    json_document: bool = False


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


def plan_file(
    con: duckdb.DuckDBPyConnection, p: Path, kind: Kind | None, profile: Profile | None = None
) -> _Plan:
    """Decide format, compression and kind of one file, reading only its head."""
    if not p.is_file():
        raise InputError(f"{p}: not a file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{p}: permission denied")
    fmt, compression = _format_of(p)
    _check_magic(p, fmt, compression) if p.stat().st_size else None
    plan = _Plan(p, fmt, compression, kind or Kind.requests, p.stat().st_size)
    if profile is not None:
        return _plan_profile(plan, profile)
    named = kind or _kind_from_name(p)
    if fmt == "parquet":
        try:
            described = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(p)]).fetchall()
        except duckdb.Error as exc:
            raise InputError(f"{p}: not a readable Parquet file: {_one_line(exc)}") from None
        plan.parquet_types = {str(r[0]).lower(): str(r[1]) for r in described}
        plan.kind = named or _kind_from_fields(p, set(plan.parquet_types))
        return plan
    head = _head(p, compression)
    text = head.removeprefix(_BOM).decode("utf-8", errors="replace")
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
                [_first_array_element(p, compression)],
            ).fetchone()
            keys = set(obj[0] or []) if obj else set()
        else:
            parsed = orjson.loads(lines[first_idx])
            if isinstance(parsed, dict):
                keys = set(parsed)
    except (orjson.JSONDecodeError, duckdb.Error):
        keys = set()
    plan.kind = _kind_from_fields(p, keys)
    return plan


def _plan_profile(plan: _Plan, profile: Profile) -> _Plan:
    """A file read through a profile: what it holds is the profile's business; here
    only how its rows are found (CSV header names keep their case)."""
    plan.profile = profile
    plan.kind = profile.kinds[0]
    if plan.format == "parquet" or plan.size == 0:
        return plan
    head = _head(plan.path, plan.compression).removeprefix(_BOM)
    lines = head.decode("utf-8", errors="replace").splitlines()
    first_idx = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if first_idx is None:
        return plan
    first = lines[first_idx]
    if plan.format in ("csv", "tsv"):
        import csv

        plan.header_line = first_idx + 1
        row = next(csv.reader([first], delimiter="," if plan.format == "csv" else "\t"), [])
        plan.header = [c.strip() for c in row]
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
    #: What the fast path cannot load exactly: control bytes (see _CONTROL) and
    #: overlong lines, which DuckDB's JSON reader may take but the careful path
    #: rejects line by line; any CR, which DuckDB's line reader numbers
    #: differently; a CR that does not end a line.
    control: bool = False
    cr: bool = False
    lone_cr: bool = False
    long_line: bool = False  # conservative: a line of LINE_LIMIT / 2 bytes or more
    _pending_cr: bool = field(default=False, repr=False)
    _run: int = field(default=0, repr=False)  # bytes since the last LF

    def look(self, data: bytes) -> None:
        """Note what a piece of the text (pieces come in file order) holds."""
        if not data:
            return
        if not self.control and data.translate(None, _NOT_CONTROL):
            self.control = True
        if self._pending_cr and not data.startswith(b"\n"):
            self.lone_cr = True
        self._pending_cr = False
        if b"\r" in data:
            self.cr = True
            self._pending_cr = data.endswith(b"\r")
            if data.count(b"\r") - data.count(b"\r\n") - self._pending_cr:
                self.lone_cr = True
        if not self.long_line:
            self.long_line = self._long_run(data)

    def _long_run(self, data: bytes) -> bool:
        # A gap of more than 2 * half between two LFs holds a whole aligned
        # window of ``half`` bytes without one: a memchr per window finds it.
        half = LINE_LIMIT // 2
        first = data.find(b"\n")
        if first < 0:
            self._run += len(data)
            return self._run >= half
        if self._run + first >= half:
            return True
        last = data.rfind(b"\n")
        for start in range(first, last, half):
            if data.find(b"\n", start + 1, min(start + half + 1, last + 1)) < 0:
                return True
        self._run = len(data) - last - 1
        return self._run >= half


def _hash_and_count(p: Path, compression: str | None) -> _Scan:
    """SHA-256 of the file's bytes and the number of lines of its text, at C speed,
    and whether the text holds control bytes or CRs (see _Scan)."""
    h = hashlib.sha256()
    scan = _Scan("", 0)
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
                    scan.look(out)
        else:
            while chunk := raw.read(_CHUNK):
                h.update(chunk)
                newlines += chunk.count(b"\n")
                last = chunk[-1:]
                scan.look(chunk)
    if scan._pending_cr:  # a CR ends the file: not a line ending DuckDB and we agree on
        scan.lone_cr = True
    scan.sha256 = h.hexdigest()
    scan.lines = newlines + (1 if last and last != b"\n" else 0)
    return scan


# --------------------------------------------------------------------------- careful scan


@dataclass
class _BadLine:
    line: int
    raw: str
    reason: str


def _escape(b: bytes) -> str:
    """Bytes as text with every invalid or control byte visibly escaped (``\\xff``)."""
    text = b.decode("utf-8", errors="backslashreplace")
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", text)


def _bad_reason(line: bytes, dropped: int = 0) -> str | None:
    """Why DuckDB cannot take ``line`` (without its LF or CRLF, and ``dropped``
    bytes of it already cut off), or None."""
    if len(line) + dropped > LINE_LIMIT:
        return f"line too long: {len(line) + dropped} bytes (limit {LINE_LIMIT})"
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start + 1}"
    m = _CONTROL.search(line)
    if m:
        return f"control character 0x{m.group()[0]:02x} at byte {m.start() + 1}"
    return None


def _clip(b: bytes, dropped: int = 0) -> str:
    if len(b) + dropped > RAW_LIMIT:
        return _escape(b[:RAW_LIMIT]) + f"... ({len(b) + dropped} bytes)"
    return _escape(b)


def _unterminate(line: bytes) -> bytes:
    """``line`` without the CR of a CRLF ending."""
    return line[:-1] if line.endswith(b"\r") else line


def _sanitize(p: Path, compression: str | None, tmpdir: str) -> tuple[Path, list[_BadLine], int]:
    """Copy the text of ``p`` with every line DuckDB could not read blanked out,
    CRLF endings made LF and a leading UTF-8 byte-order mark dropped.

    Returns the path of the copy, the bad lines as rejects, and the number of
    physical lines.
    """
    bad: list[_BadLine] = []
    out_path = Path(tmpdir) / "clean.txt"
    lineno = 0
    carry = b""
    dropped = 0  # bytes cut off ``carry``, a line too long to keep whole
    truncated: str | None = None
    first = True

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
                    truncated = (
                        "gzip stream truncated: the file ends before the compressed data does"
                    )
        else:
            with open(p, "rb") as raw:
                while chunk := raw.read(_CHUNK):
                    yield chunk

    with open(out_path, "wb") as out:
        for chunk in chunks():
            if first and chunk:
                chunk, first = chunk.removeprefix(_BOM), False
            data = carry + chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                if len(carry) > LINE_LIMIT + RAW_LIMIT:  # keep memory bounded
                    dropped += len(carry) - (LINE_LIMIT + RAW_LIMIT)
                    carry = carry[: LINE_LIMIT + RAW_LIMIT]
                continue
            body, carry = data[: cut + 1], data[cut + 1 :]
            n = body.count(b"\n")
            if not dropped and _chunk_ok(body):
                out.write(body.replace(b"\r\n", b"\n") if b"\r" in body else body)
            else:
                for i, ln in enumerate(body.split(b"\n")[:-1]):
                    ln = _unterminate(ln)
                    extra = dropped if i == 0 else 0
                    reason = _bad_reason(ln, extra)
                    if reason:
                        bad.append(_BadLine(lineno + i + 1, _clip(ln, extra), reason))
                        out.write(b"\n")
                    else:
                        out.write(ln + b"\n")
                dropped = 0
            lineno += n
        if carry:
            lineno += 1
            carry = _unterminate(carry)
            if truncated:
                bad.append(
                    _BadLine(lineno, _clip(carry, dropped), f"{truncated}; the line is incomplete")
                )
                out.write(b"\n")
            else:
                reason = _bad_reason(carry, dropped)
                if reason:
                    bad.append(_BadLine(lineno, _clip(carry, dropped), reason))
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
    if body.translate(None, _NOT_CONTROL) or body.count(b"\r") != body.count(b"\r\n"):
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
    """(line, raw) of JSON text -> line, raw, pre_reason, v_<field>, n_<money>,
    c_<string>."""
    fields = FIELDS[kind]
    paths = ", ".join(f"'$.\"{f.name}\"'" for f in fields)
    money = [i for i, f in enumerate(fields) if f.type is FieldType.MONEY]
    cols = [f"v[{i + 1}] AS v_{f.name}" for i, f in enumerate(fields)]
    cols += [  # j holds the money fields only, in order
        f"coalesce(json_type(j[{k + 1}]) NOT IN ('VARCHAR', 'NULL'), false) AS n_{fields[i].name}"
        for k, i in enumerate(money)
    ]
    money_paths = ", ".join(f"'$.\"{fields[i].name}\"'" for i in money) or "'$.__none__'"
    # an object or array where a string belongs: only a text starting so can be one
    cols += [
        f"CASE WHEN left(v[{i + 1}], 1) IN ('{{', '[') THEN CASE json_type(json_extract("
        f"raw, '$.\"{f.name}\"')) WHEN 'OBJECT' THEN 'an object' WHEN 'ARRAY' THEN 'an array' "
        f"END END AS c_{f.name}"
        for i, f in enumerate(fields)
        if f.type is FieldType.STRING
    ]
    return f"""
        SELECT line, raw, pre_reason, {", ".join(cols)} FROM (
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


def _csv_split(fmt: str) -> tuple[str, str]:
    """SQL splitting ``raw`` into its fields ``fs``, and SQL telling it is well-formed."""
    if fmt == "csv":
        split = 'regexp_extract_all(\',\' || raw, \',("(?:[^"]|"")*"|[^,"]*)\', 1)'
        wellformed = 'regexp_full_match(\',\' || raw, \'(,("(?:[^"]|"")*"|[^,"]*))*\')'
        return split, wellformed
    return "string_split(raw, '\t')", "true"


def _csv_values(plan: _Plan, src: str) -> str:
    fields = FIELDS[plan.kind]
    n = len(plan.header)
    split, wellformed = _csv_split(plan.format)
    cols = []
    for f in fields:
        if f.name in plan.header:
            i = plan.header.index(f.name) + 1
            cols.append(f"NULLIF(wr_csv_unquote(trim(fs[{i}])), '') AS v_{f.name}")
        else:
            cols.append(f"NULL::VARCHAR AS v_{f.name}")
    cols += [f"false AS n_{f.name}" for f in fields if f.type is FieldType.MONEY]
    cols += [f"NULL::VARCHAR AS c_{f.name}" for f in fields if f.type is FieldType.STRING]
    return f"""
        SELECT line, raw, CASE
                WHEN NOT {wellformed} THEN 'malformed CSV: unbalanced or misplaced quotes'
                WHEN len(fs) <> {n} THEN 'expected {n} fields, got ' || len(fs)
            END AS pre_reason, {", ".join(cols)}
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
        elif f.type is FieldType.STRING:
            t = plan.parquet_types.get(f.name, "")
            shape = (
                "an object"
                if t.startswith(("STRUCT", "MAP", "UNION"))
                else "an array"
                if t.endswith("]")
                else None
            )
            cols.append(
                f"CASE WHEN \"{f.name}\" IS NOT NULL THEN '{shape}' END AS c_{f.name}"
                if shape
                else f"NULL::VARCHAR AS c_{f.name}"
            )
    raw = f"CAST(to_json({{{', '.join(raw_parts)}}}) AS VARCHAR)" if raw_parts else "'{}'"
    return (
        f"SELECT file_row_number + 1 AS line, {raw} AS raw, NULL::VARCHAR AS pre_reason, "
        f"{', '.join(cols)} FROM read_parquet($path, file_row_number = true)"
    )


# --------------------------------------------------------------------------- profile rows
# A profile reads every row as JSON text: (line, raw kept for a reject, d the row
# as a JSON object, pre_reason why it is not one); profiles.apply maps them.

_NOT_OBJECT = """CASE
    WHEN NOT json_valid({d}) THEN 'malformed JSON'
    WHEN left(ltrim({d}, ' ' || chr(9) || chr(10) || chr(13)), 1) <> '{{'
        THEN 'not a JSON object: a JSON ' || CASE json_type({d}::JSON)
            WHEN 'ARRAY' THEN 'array' WHEN 'VARCHAR' THEN 'string'
            WHEN 'BOOLEAN' THEN 'boolean' WHEN 'NULL' THEN 'null' ELSE 'number' END
    END"""


def _json_rows(src: str) -> str:
    """(line, raw) of JSON lines -> profile rows."""
    return f"SELECT line, raw, raw AS d, {_NOT_OBJECT.format(d='raw')} AS pre_reason FROM ({src})"


def _csv_rows(plan: _Plan, src: str) -> str:
    """(line, raw) of CSV/TSV -> profile rows: one JSON object per record, keyed by
    the header as written; every value a string, an empty cell null."""
    n = len(plan.header)
    split, wellformed = _csv_split(plan.format)
    pairs = ", ".join(
        f"{_sql_text(name)}, NULLIF(wr_csv_unquote(trim(fs[{i + 1}])), '')"
        for i, name in enumerate(plan.header)
    )
    return f"""
        SELECT line, raw, CASE WHEN pre_reason IS NULL THEN CAST(json_object({pairs}) AS VARCHAR)
                          END AS d, pre_reason
        FROM (SELECT line, raw, fs, CASE
                WHEN NOT {wellformed} THEN 'malformed CSV: unbalanced or misplaced quotes'
                WHEN len(fs) <> {n} THEN 'expected {n} fields, got ' || len(fs)
            END AS pre_reason
            FROM (SELECT line, raw, {split} AS fs FROM ({src}) WHERE line > {plan.header_line}))"""


def _document_rows(plan: _Plan) -> str:
    """A .json array (its elements) or pretty-printed documents -> profile rows; the
    "line" is the element's or document's number."""
    fmt = "array" if plan.json_array else "unstructured"
    return (
        f"SELECT ordinality AS line, CAST(json AS VARCHAR) AS raw, "
        f"CAST(json AS VARCHAR) AS d, {_NOT_OBJECT.format(d='json')} AS pre_reason "
        f"FROM read_json_objects($path, format = '{fmt}', "
        f"maximum_object_size = {LINE_LIMIT}) WITH ORDINALITY"
    )


def _parquet_rows() -> str:
    """Parquet -> profile rows: each row as a JSON object, numbered from 1."""
    row = "json_merge_patch(to_json(t), '{\"file_row_number\": null}')"
    return (
        f"SELECT file_row_number + 1 AS line, CAST({row} AS VARCHAR) AS raw, "
        f"CAST({row} AS VARCHAR) AS d, NULL::VARCHAR AS pre_reason "
        "FROM read_parquet($path, file_row_number = true) t"
    )


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _load_profile(con: duckdb.DuckDBPyConnection, plan: _Plan, source_id: int) -> tuple[int, int]:
    """A file read through an import profile: its rows as JSON text, then mapped in
    SQL by ``profiles.apply`` (which also writes its rejects)."""
    assert plan.profile is not None
    if plan.size == 0:
        return 0, 0
    with _scratch_dir() as tmp:
        bad: list[_BadLine] = []
        path = plan.path
        if plan.format == "parquet":
            rows = _parquet_rows()
        elif plan.json_array or plan.json_document:
            rows = _document_rows(plan)
        else:
            path, bad, _ = _sanitize(plan.path, plan.compression, tmp)
            lines = (
                f"SELECT line, raw FROM ({_lines_relation(path)}) "
                "WHERE NOT regexp_full_match(coalesce(raw, ''), '[ \\t]*')"
            )
            rows = _json_rows(lines) if plan.format == "json" else _csv_rows(plan, lines)
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE wr_prow AS {rows}", {"path": str(path)})
        except duckdb.Error as exc:
            what = {"parquet": "Parquet"}.get(plan.format, "JSON")
            raise InputError(f"{plan.path}: cannot read {what}: {_one_line(exc)}") from None
        try:
            return profiles.apply(
                con, plan.profile, source_id, _insert_good, [(b.line, b.raw, b.reason) for b in bad]
            )
        finally:
            con.execute("DROP TABLE IF EXISTS wr_prow")


# --------------------------------------------------------------------------- loading


class _Fallback(Exception):
    """The fast path cannot load this file exactly; take the careful path."""


#: the fast path's mark on a row it cannot read exactly (never a stored reason)
_UNSURE = "unsure: read it the careful way"


def _canonical_cols(kind: Kind) -> list[str]:
    return [f.name for f in FIELDS[kind]]


def _insert_good(
    con: duckdb.DuckDBPyConnection, kind: Kind, typed_sql: str, params: dict[str, object]
) -> int:
    """Insert the good rows of ``typed_sql`` into the kind's table; returns the count."""
    table = TABLES[kind]
    names = _canonical_cols(kind)
    cols = ", ".join(names)
    if kind in IDENTITY:
        key = IDENTITY[kind]
        # Canonical = the first ingested row of an id. Rows whose id an earlier
        # file already holds are not; canonical ids are unique, so the earlier
        # ones join without a DISTINCT. Repeats within this file are rare:
        # find them with a hash aggregate instead of sorting every row.
        sql = f"""
            INSERT INTO {table} (source_id, line, canonical, {cols})
            SELECT $source_id, g.line, prev.{key} IS NULL,
                   {", ".join("g." + n for n in names)}
            FROM ({typed_sql}) g
            LEFT JOIN (SELECT {key} FROM {table} WHERE canonical) prev
                ON prev.{key} = g.{key}
            WHERE g.reason IS NULL"""
        row = con.execute(sql, params).fetchone()
        con.execute(
            f"""
            UPDATE {table} SET canonical = false
            FROM (SELECT {key} AS k, min(line) AS first_line FROM {table}
                  WHERE source_id = $source_id AND canonical
                  GROUP BY {key} HAVING count(*) > 1) AS repeated
            WHERE {table}.source_id = $source_id AND {table}.canonical
              AND {table}.{key} = repeated.k AND {table}.line > repeated.first_line""",
            {"source_id": params["source_id"]},
        )
        return int(row[0]) if row else 0
    sql = f"""
        INSERT INTO {table} (source_id, line, {cols})
        SELECT $source_id, line, {cols} FROM ({typed_sql}) WHERE reason IS NULL"""
    row = con.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def _load_json_fast(
    con: duckdb.DuckDBPyConnection, plan: _Plan, source_id: int, scan: Future[_Scan]
) -> tuple[int, int]:
    fields = FIELDS[plan.kind]
    # money is read as JSON to tell numbers from strings; so are the strings of
    # an array file, to tell objects from strings (lines go the careful way)
    as_json = {
        f.name
        for f in fields
        if f.type is FieldType.MONEY or (plan.json_array and f.type is FieldType.STRING)
    }
    spec = ", ".join(f"'{f.name}': '{'JSON' if f.name in as_json else 'VARCHAR'}'" for f in fields)
    vals, unsure = [], []
    for f in fields:
        col = f'"{f.name}"'
        if f.name in as_json:
            vals.append(
                f"CASE WHEN left({col}, 1) = '\"' THEN {col}->>'$' "
                f"ELSE CAST({col} AS VARCHAR) END AS v_{f.name}"
            )
        else:
            vals.append(f"{col} AS v_{f.name}")
        if f.type is FieldType.MONEY:
            vals.append(f"coalesce(left({col}, 1) <> '\"', false) AS n_{f.name}")
        elif f.type is FieldType.STRING and plan.json_array:
            vals.append(
                f"CASE left({col}, 1) WHEN '{{' THEN 'an object' "
                f"WHEN '[' THEN 'an array' END AS c_{f.name}"
            )
        elif f.type is FieldType.STRING:
            # read as text, an object and a string holding JSON text look alike
            vals.append(f"NULL::VARCHAR AS c_{f.name}")
            unsure.append(f"(left({col}, 1) IN ('{{', '[') AND json_valid({col}))")
        if f.type is not FieldType.DOUBLE and not plan.json_array:
            # a JSON number in exponent form reads as DuckDB prints a double
            # ('1e+20'), not as its text: the careful path would see another text
            unsure.append(
                f"((contains({col}, 'e+') OR contains({col}, 'e-')) AND "
                f"regexp_full_match({col}, '-?[0-9]+(\\.[0-9]+)?e[+-][0-9]+'))"
            )
    unsure_sql = f"CASE WHEN {' OR '.join(unsure)} THEN '{_UNSURE}' END" if unsure else "NULL"
    fmt = "array" if plan.json_array else "newline_delimited"
    src = (
        f"SELECT ordinality AS line, {unsure_sql}::VARCHAR AS pre_reason, {', '.join(vals)} "
        f"FROM read_json($path, columns = {{{spec}}}, format = '{fmt}', records = true, "
        f"maximum_object_size = {LINE_LIMIT}) WITH ORDINALITY"
    )
    typed = typed_select(plan.kind, f"({src})", containers=True)
    params: dict[str, object] = {"path": str(plan.path), "source_id": source_id}
    try:
        loaded = _insert_good(con, plan.kind, typed, params)
    except duckdb.Error as exc:
        raise _Fallback(str(exc)) from None
    scanned = scan.result()
    if not plan.json_array and (scanned.control or scanned.lone_cr or scanned.long_line):
        # DuckDB's JSON reader takes some control bytes (DEL in a string, form
        # feed as blank) and lines somewhat over its maximum_object_size, which
        # the careful path rejects line by line
        raise _Fallback("control bytes, a lone CR or a very long line in the text")
    total = scanned.lines
    if loaded == total and not plan.json_array:
        return loaded, 0
    # Some rows were rejected (or the file has blank lines): find them; the
    # numbering holds only if every physical line was a row.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE wr_bad AS SELECT line, reason FROM ({typed}) "
        "WHERE reason IS NOT NULL",
        {"path": str(plan.path)},
    )
    bad = _count(con, "SELECT count(*) FROM wr_bad")
    if plan.json_array:
        # rows of an array have no line of their own: keep the element as text
        con.execute(
            """INSERT INTO rejects SELECT $source_id, b.line, NULL, b.reason FROM wr_bad b""",
            {"source_id": source_id},
        )
        return loaded, bad
    if loaded + bad != total:
        raise _Fallback("blank lines: ordinality is not the line number")
    if scanned.cr:
        raise _Fallback("CRLF: DuckDB's line reader would misnumber the raw lines")
    if _count(con, f"SELECT count(*) FROM wr_bad WHERE reason = '{_UNSURE}'"):
        raise _Fallback("values the JSON reader cannot render as their text")
    # DuckDB's JSON reader takes a `null` line for a row with no fields
    con.execute(
        f"""INSERT INTO rejects SELECT $source_id, b.line, l.raw,
                CASE WHEN regexp_full_match(l.raw, '[ \\t]*null[ \\t]*')
                     THEN 'not a JSON object: a JSON null' ELSE b.reason END
            FROM wr_bad b LEFT JOIN ({_lines_relation(plan.path)}) l USING (line)""",
        {"source_id": source_id, "path": str(plan.path)},
    )
    return loaded, bad


def _load_staged(
    con: duckdb.DuckDBPyConnection,
    plan: _Plan,
    source_id: int,
    values_sql: str,
    params: dict[str, object],
    pre_bad: Sequence[_BadLine] = (),
) -> tuple[int, int]:
    """Type ``values_sql`` once into a temp table, then split good rows from rejects."""
    typed = typed_select(plan.kind, f"({values_sql})", extra=("raw",), containers=True)
    con.execute(f"CREATE OR REPLACE TEMP TABLE wr_stage AS {typed}", params)
    loaded = _insert_good(con, plan.kind, "SELECT * FROM wr_stage", {"source_id": source_id})
    bad = _count(con, "SELECT count(*) FROM wr_stage WHERE reason IS NOT NULL")
    con.execute(
        "INSERT INTO rejects SELECT $source_id, line, raw, reason FROM wr_stage "
        "WHERE reason IS NOT NULL",
        {"source_id": source_id},
    )
    if pre_bad:
        con.executemany(
            "INSERT INTO rejects VALUES (?, ?, ?, ?)",
            [[source_id, b.line, b.raw, b.reason] for b in pre_bad],
        )
    con.execute("DROP TABLE wr_stage")
    return loaded, bad + len(pre_bad)


_SCRATCH = re.compile(r"warroom-(\d+)-[a-z0-9_]{8}")


def _scratch_dir() -> tempfile.TemporaryDirectory[str]:
    """A scratch folder (for the careful path's cleaned copy of a file) named after
    this process. The ones a killed warroom left behind are removed first: their
    process is gone, so nothing can be using them."""
    base = Path(tempfile.gettempdir())
    for old in base.glob("warroom-*-*"):
        m = _SCRATCH.fullmatch(old.name)
        if m and old.is_dir() and not _alive(int(m.group(1))):
            shutil.rmtree(old, ignore_errors=True)
    return tempfile.TemporaryDirectory(prefix=f"warroom-{os.getpid()}-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: not ours to judge
        return True
    return True


def _load_lines(con: duckdb.DuckDBPyConnection, plan: _Plan, source_id: int) -> tuple[int, int]:
    """The careful path for text files: every physical line, scanned first."""
    with _scratch_dir() as tmp:
        clean, bad, _ = _sanitize(plan.path, plan.compression, tmp)
        lines = (
            f"SELECT line, raw FROM ({_lines_relation(clean)}) "
            "WHERE NOT regexp_full_match(coalesce(raw, ''), '[ \\t]*')"
        )
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
    profile: str | Path | Profile | None = None,
) -> IngestReport:
    """Load ``paths`` into the canonical tables, one transaction per file.

    Every file is checked (exists, readable, format, kind) before any is loaded.
    A file whose SHA-256 is already recorded is skipped unless ``force``, which
    replaces that file's rows. With ``strict``, a file with any rejected row
    loads nothing, and RejectedRowsError is raised after all files are done.
    With ``profile`` (a built-in name, a .toml mapping file, or a Profile) the
    files are read in that foreign format; ``kind`` then keeps only the
    profile's mappings of that kind.

    Raises InputError for a file that cannot be read at all, ProfileError for
    an unknown profile or a bad mapping file.
    """
    prof = profiles.resolve(profile) if profile is not None else None
    if prof is not None and kind is not None:
        prof = prof.only(kind)
    install_macros(con)
    # Casting a zoned timestamp to TIMESTAMP, and reading one without a zone,
    # use the session's zone: ours is UTC whoever opened the connection.
    con.execute("SET TimeZone = 'UTC'")
    # Rows carry their line number, so their physical order does not matter;
    # letting DuckDB write them out of order makes a numbered scan much faster.
    # The caller's setting comes back when we are done.
    row = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()
    keep_order = bool(row[0]) if row else True
    con.execute("SET preserve_insertion_order = false")
    try:
        return _ingest_all(con, paths, kind, prof, force, strict, progress)
    finally:
        con.execute(f"SET preserve_insertion_order = {str(keep_order).lower()}")


def _ingest_all(
    con: duckdb.DuckDBPyConnection,
    paths: Sequence[str | Path],
    kind: Kind | None,
    prof: profiles.Profile | None,
    force: bool,
    strict: bool,
    progress: ProgressFn | None,
) -> IngestReport:
    con.execute(
        "CREATE OR REPLACE TEMP MACRO wr_csv_unquote(x) AS CASE WHEN left(x, 1) = '\"' "
        "AND right(x, 1) = '\"' AND length(x) >= 2 "
        "THEN replace(x[2:length(x) - 1], '\"\"', '\"') ELSE x END"
    )
    files = expand_paths(paths)
    plans = [plan_file(con, p, kind, prof) for p in files]
    report = IngestReport()
    strict_failures: list[FileResult] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        for plan in plans:
            result = _ingest_one(
                con, plan, force=force, strict=strict, pool=pool, progress=progress
            )
            report.files.append(result)
            if result.status == "strict-rejected":
                strict_failures.append(result)
    if strict_failures:
        names = ", ".join(f"{r.path} ({r.rows_rejected} rejected)" for r in strict_failures)
        raise RejectedRowsError(f"--strict: nothing loaded from {names}", report)
    return report


def _ingest_one(
    con: duckdb.DuckDBPyConnection,
    plan: _Plan,
    *,
    force: bool,
    strict: bool,
    pool: ThreadPoolExecutor,
    progress: ProgressFn | None,
) -> FileResult:
    started = time.monotonic()
    kind_label = plan.profile.kind_label if plan.profile else plan.kind.value
    result = FileResult(
        str(plan.path),
        kind_label,
        plan.format,
        plan.compression,
        "",
        plan.size,
        profile=plan.profile.name if plan.profile else None,
    )
    scan: Future[_Scan] = pool.submit(_hash_and_count, plan.path, plan.compression)
    # Hashing overlaps the load; only a file the size of one already loaded could
    # be a repeat, and for that one the hash comes first.
    if _count(con, "SELECT count(*) FROM sources WHERE size_bytes = ?", [plan.size]):
        if _previous(con, scan.result().sha256) and not force:
            return _skipped(result, con, scan.result().sha256)
    loaders = ["fast", "careful"] if plan.format == "json" else ["careful"]
    if plan.profile is not None:
        loaders = ["profile"]
    for loader in loaders:
        con.execute("BEGIN TRANSACTION")
        try:
            source_id = _count(con, "SELECT nextval('source_ids')")
            with _watch(con, progress, plan.path.name):
                if loader == "fast":
                    loaded, rejected = _load_json_fast(con, plan, source_id, scan)
                elif loader == "profile":
                    loaded, rejected = _load_profile(con, plan, source_id)
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
            if plan.profile is not None and rejected:
                first = con.execute(
                    "SELECT line, reason FROM rejects WHERE source_id = ? ORDER BY line LIMIT 1",
                    [source_id],
                ).fetchone()
                result.first_reject = f"{first[0]}: {first[1]}" if first else ""
            # the rows of a JSON array or document are elements, not lines
            if plan.format != "parquet" and not (
                plan.profile and plan.json_array or plan.json_document
            ):
                header = 1 if plan.header else 0
                result.blank_lines = max(scan.result().lines - loaded - rejected - header, 0)
            if strict and rejected:
                con.execute("ROLLBACK")
                result.status = "strict-rejected"
                result.note = "--strict: nothing loaded from this file"
                return result
            con.execute(
                "INSERT INTO sources VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    source_id,
                    result.path,
                    kind_label,
                    plan.format,
                    plan.compression,
                    result.profile,
                    sha,
                    plan.size,
                    loaded,
                    rejected,
                    result.blank_lines,
                    datetime.now(UTC).replace(tzinfo=None),
                ],
            )
            con.execute("COMMIT")
        except _Fallback:
            con.execute("ROLLBACK")
            if plan.json_array:
                raise InputError(
                    f"{plan.path}: not a well-formed JSON array of objects; "
                    "use one JSON object per line (.jsonl)"
                ) from None
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
    rows = con.execute(
        "SELECT source_id, path FROM sources WHERE sha256 = ? ORDER BY 1", [sha]
    ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def _skipped(result: FileResult, con: duckdb.DuckDBPyConnection, sha: str) -> FileResult:
    result.sha256 = sha
    result.status = "skipped"
    result.note = (
        f"already ingested as {_previous(con, sha)[0][1]}; nothing loaded (--force replaces it)"
    )
    return result


def _load_careful(con: duckdb.DuckDBPyConnection, plan: _Plan, source_id: int) -> tuple[int, int]:
    if plan.size == 0:
        return 0, 0
    if plan.format == "parquet":
        try:
            return _load_staged(
                con, plan, source_id, _parquet_values(plan), {"path": str(plan.path)}
            )
        except duckdb.Error as exc:
            raise InputError(f"{plan.path}: cannot read Parquet: {_one_line(exc)}") from None
    return _load_lines(con, plan, source_id)


def _delete_source(con: duckdb.DuckDBPyConnection, source_id: int) -> None:
    """Remove one source's rows everywhere, re-electing canonical rows it held."""
    for kind, table in TABLES.items():
        if kind in IDENTITY:
            key = IDENTITY[kind]
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE wr_lost AS SELECT DISTINCT {key} "
                f"FROM {table} WHERE source_id = ? AND canonical",
                [source_id],
            )
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
