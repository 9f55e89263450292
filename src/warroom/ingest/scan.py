"""The bytes of a file, read in Python at C speed before (or while) DuckDB reads it.

Two passes, both chunked so memory stays bounded whatever the file's size:

* ``scan_file`` hashes the file (its SHA-256 is how a repeat is recognised) and
  counts the lines of its text, noting what the fast path cannot load exactly
  (control bytes, CRs, very long lines). It runs in a thread, overlapping the load.
* ``clean_copy`` is the careful path's first step: a copy of the text that DuckDB
  can read whole, with every line it could not read (see ``convert.line_reason``)
  blanked out and kept as a reject with its bytes visibly escaped.

Both read gzip text as it inflates, across concatenated gzip members.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from warroom.ingest.convert import LINE_LIMIT, NOT_CONTROL, line_reason, lines_ok

#: how much of an unloadable line is kept in ``rejects.raw``
RAW_LIMIT = 4096
#: the UTF-8 byte-order mark a text file may start with
BOM = b"\xef\xbb\xbf"
_CHUNK = 16 * 1024 * 1024
#: zlib's window bits for a gzip stream
_GZIP = 47


def _inflate(d: zlib._Decompress, chunk: bytes) -> tuple[zlib._Decompress, bytes]:
    """Decompress one chunk of a gzip file, across concatenated members; returns
    the decompressor for the next chunk. Raises zlib.error on corrupt data."""
    out = d.decompress(chunk)
    while d.eof and d.unused_data:
        rest = d.unused_data
        d = zlib.decompressobj(wbits=_GZIP)
        out += d.decompress(rest)
    return d, out


# --------------------------------------------------------------------------- hash and count


@dataclass
class TextScan:
    """What ``scan_file`` found in a file."""

    sha256: str = ""
    #: physical lines of the (decompressed) text; a final unterminated one counts
    lines: int = 0
    #: What the fast path cannot load exactly: control bytes (see
    #: convert.CONTROL) and overlong lines, which DuckDB's JSON reader may take
    #: but the careful path rejects line by line; any CR, which DuckDB's line
    #: reader numbers differently; a CR that does not end a line.
    control: bool = False
    cr: bool = False
    lone_cr: bool = False
    long_line: bool = False  # conservative: a line of LINE_LIMIT / 2 bytes or more
    _newlines: int = field(default=0, repr=False)
    _last: bytes = field(default=b"", repr=False)  # the last byte of the text so far
    _pending_cr: bool = field(default=False, repr=False)
    _run: int = field(default=0, repr=False)  # bytes since the last LF

    def look(self, data: bytes) -> None:
        """Note what a piece of the text (pieces come in file order) holds."""
        if not data:
            return
        self._newlines += data.count(b"\n")
        self._last = data[-1:]
        if not self.control and data.translate(None, NOT_CONTROL):
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

    def finish(self, sha256: str) -> None:
        """The text has been seen whole: settle the line count."""
        if self._pending_cr:  # a CR ends the file: not a line ending DuckDB and we agree on
            self.lone_cr = True
        self.sha256 = sha256
        self.lines = self._newlines + (1 if self._last and self._last != b"\n" else 0)


def scan_file(p: Path, compression: str | None) -> TextScan:
    """SHA-256 of the file's bytes and the number of lines of its text, at C speed,
    and whether the text holds control bytes or CRs (see TextScan). A corrupt gzip
    stream ends the text, not the hash."""
    h = hashlib.sha256()
    scan = TextScan()
    d = zlib.decompressobj(wbits=_GZIP) if compression == "gzip" else None
    corrupt = False
    with open(p, "rb") as raw:
        while chunk := raw.read(_CHUNK):
            h.update(chunk)
            if d is None:
                scan.look(chunk)
            elif not corrupt:
                try:
                    d, text = _inflate(d, chunk)
                except zlib.error:
                    corrupt = True
                    continue
                scan.look(text)
    scan.finish(h.hexdigest())
    return scan


# --------------------------------------------------------------------------- the clean copy


@dataclass
class BadLine:
    """A line DuckDB could not read, as a reject."""

    line: int
    raw: str
    reason: str


def escape(b: bytes) -> str:
    """Bytes as text with every invalid or control byte visibly escaped (``\\xff``)."""
    text = b.decode("utf-8", errors="backslashreplace")
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", text)


def clip(b: bytes, dropped: int = 0) -> str:
    """A rejected line as ``rejects.raw`` keeps it: escaped, at most RAW_LIMIT bytes."""
    if len(b) + dropped > RAW_LIMIT:
        return escape(b[:RAW_LIMIT]) + f"... ({len(b) + dropped} bytes)"
    return escape(b)


def _unterminate(line: bytes) -> bytes:
    """``line`` without the CR of a CRLF ending."""
    return line[:-1] if line.endswith(b"\r") else line


class _Text:
    """The text of a file in chunks, inflated if it is gzip. Once read, ``broken``
    says why a gzip stream ended before its end (corrupt or truncated), if it did."""

    def __init__(self, p: Path, compression: str | None):
        self.p, self.compression = p, compression
        self.broken: str | None = None

    def __iter__(self) -> Iterator[bytes]:
        with open(self.p, "rb") as raw:
            if self.compression != "gzip":
                while chunk := raw.read(_CHUNK):
                    yield chunk
                return
            d = zlib.decompressobj(wbits=_GZIP)
            while chunk := raw.read(_CHUNK):
                try:
                    d, out = _inflate(d, chunk)
                except zlib.error as exc:
                    self.broken = f"corrupt gzip data ({exc})"
                    return
                yield out
            if not d.eof:
                self.broken = "gzip stream truncated: the file ends before the compressed data does"


class _Copier:
    """Writes the clean copy, chunk by chunk, collecting the bad lines."""

    def __init__(self, out: BinaryIO):
        self.out = out
        self.bad: list[BadLine] = []
        self.lineno = 0  # lines written so far
        self.carry = b""  # the start of a line the next chunk goes on with
        self.dropped = 0  # bytes cut off ``carry``, a line too long to keep whole
        self.first = True

    def feed(self, chunk: bytes) -> None:
        if self.first and chunk:
            chunk, self.first = chunk.removeprefix(BOM), False
        data = self.carry + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            self.carry = data
            if len(self.carry) > LINE_LIMIT + RAW_LIMIT:  # keep memory bounded
                self.dropped += len(self.carry) - (LINE_LIMIT + RAW_LIMIT)
                self.carry = self.carry[: LINE_LIMIT + RAW_LIMIT]
            return
        body, self.carry = data[: cut + 1], data[cut + 1 :]
        if not self.dropped and lines_ok(body):
            self.out.write(body.replace(b"\r\n", b"\n") if b"\r" in body else body)
        else:
            for i, ln in enumerate(body.split(b"\n")[:-1]):
                self._line(self.lineno + i + 1, _unterminate(ln), self.dropped if i == 0 else 0)
            self.dropped = 0
        self.lineno += body.count(b"\n")

    def _line(self, lineno: int, line: bytes, dropped: int) -> None:
        reason = line_reason(line, dropped)
        if reason:
            self.bad.append(BadLine(lineno, clip(line, dropped), reason))
            self.out.write(b"\n")
        else:
            self.out.write(line + b"\n")

    def finish(self, broken: str | None) -> None:
        """The text has ended (early, if ``broken`` says why): write its last line."""
        if self.carry:
            self.lineno += 1
            last = _unterminate(self.carry)
            if broken:
                reason = f"{broken}; the line is incomplete"
                self.bad.append(BadLine(self.lineno, clip(last, self.dropped), reason))
                self.out.write(b"\n")
            else:
                self._line(self.lineno, last, self.dropped)
        elif broken:
            self.lineno += 1
            self.bad.append(BadLine(self.lineno, "", f"{broken}; the rest of the file is lost"))
            self.out.write(b"\n")


def clean_copy(p: Path, compression: str | None, tmpdir: str) -> tuple[Path, list[BadLine]]:
    """Copy the text of ``p`` into ``tmpdir`` with every line DuckDB could not read
    blanked out, CRLF endings made LF and a leading UTF-8 byte-order mark dropped.

    Returns the path of the copy and the bad lines as rejects.
    """
    out_path = Path(tmpdir) / "clean.txt"
    text = _Text(p, compression)
    with open(out_path, "wb") as out:
        copier = _Copier(out)
        for chunk in text:
            copier.feed(chunk)
        copier.finish(text.broken)
    return out_path, copier.bad
