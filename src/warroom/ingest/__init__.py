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
