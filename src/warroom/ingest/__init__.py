"""Files -> canonical tables, with provenance, rejects and the sources manifest.

The promise: every input row is either loaded (with its file and line) or in
``rejects`` with the raw text and a reason; each file lands whole or not at all.

Along the data path, one module per stage:

* ``sniff``: which files the paths name, and what each is (format,
  compression, kind), from its name and the fields of its head.
* ``scan``: the bytes, in Python at C speed: the file's hash and line count,
  and for the careful path a clean copy DuckDB can read.
* ``relations``: each format as an SQL relation of text fields.
* ``convert``: every rule that rejects a line, a record, a value or a row, with
  its reason; the one SELECT typing the text fields into canonical columns.
* ``load``: the transaction per file, its rejects and its ``sources`` row.

How a file is read, fastest first:

* JSON lines: DuckDB's ``read_json`` reads the fields as text straight from
  the file, in parallel, and ``convert.typed_select`` types and checks them
  into the table in the file's order; a row's position there is its line
  number (set once all are in). That numbering is only right when every physical line gave one
  row, so it is verified against the line count taken while hashing the file
  (in a thread, overlapping the load), which also notes what ``read_json``
  takes but the careful path rejects or numbers otherwise (control bytes,
  stray CRs, very long lines, lines that may be blank). If ``read_json``
  refuses a line (malformed JSON, invalid UTF-8), the file is read again
  leniently: each such line is a row of NULLs; a lenient read cannot see a key
  named twice, so one pass over the raw lines looks for one. Every row that is
  rejected, or whose text ``read_json`` cannot give back exactly (a number in
  exponent form, an object where a string belongs), is read again from its raw
  line, found through the scan's index, the careful way: its reject has the
  careful path's raw text and reason. If the numbering does not hold, any of
  those turns up, or too many lines need reading again, the file is read the
  careful way.
* Careful: DuckDB reads every physical line as text (``read_csv`` with one
  column and no quoting), and SQL finds malformed JSON, arrays, scalars and bad
  fields. Bytes DuckDB cannot take (invalid UTF-8, control characters, overlong
  lines, a truncated gzip stream) are first found by a chunked scan in Python and
  replaced by blank lines in a temporary copy (which also has CRLF endings made
  LF and a leading byte-order mark dropped); those lines become rejects with
  their bytes visibly escaped.
* CSV/TSV take the careful path with fields split by a regular expression, one
  record per line. Parquet is read by ``read_parquet`` with its row numbers.
* A file read through an import profile (``warroom.profiles``) becomes JSON
  rows that the profile maps to canonical fields, then the same rules apply.
"""

from __future__ import annotations

from warroom.ingest.convert import LINE_LIMIT
from warroom.ingest.load import FileResult, IngestReport, ProgressFn, RejectedRowsError, ingest
from warroom.ingest.scan import RAW_LIMIT
from warroom.ingest.sniff import expand_paths

__all__ = [
    "RejectedRowsError",
    "LINE_LIMIT",
    "RAW_LIMIT",
    "FileResult",
    "IngestReport",
    "ProgressFn",
    "expand_paths",
    "ingest",
]
