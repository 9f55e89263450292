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

import bisect
import hashlib
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from warroom.ingest.convert import LINE_LIMIT, NOT_CONTROL, line_reason, lines_ok

#: how much of an unloadable line is kept in ``rejects.raw``
RAW_LIMIT = 4096
#: the UTF-8 byte-order mark a text file may start with
BOM = b"\xef\xbb\xbf"
_CHUNK = 16 * 1024 * 1024
#: every byte but LF, CR and the control bytes (see convert.CONTROL)
_NOT_MARK = bytes(b for b in NOT_CONTROL if b != 10 and b != 13)
#: a line that starts with a blank: it may be blank (a whitespace-only line)
_BLANK_LINE = re.compile(rb"\n[\n\r\t ]")
_BLANK_START = (b"\n", b"\r", b"\t", b" ")
#: zlib's window bits for a gzip stream
_GZIP = 47


class _Gunzip:
    """Inflates a gzip file chunk by chunk, across concatenated members. Bytes
    after a member that do not start another one (zero padding, as some log
    shippers write) end the text: ``trailing`` is then their offset in the file,
    and the rest of the file is not read as gzip (gzip and zcat do the same)."""

    def __init__(self) -> None:
        self.d = zlib.decompressobj(wbits=_GZIP)
        self.offset = 0  # bytes of the file fed so far
        self.trailing: int | None = None

    def feed(self, chunk: bytes) -> bytes:
        """The text in ``chunk``. Raises zlib.error on corrupt data."""
        start, self.offset = self.offset, self.offset + len(chunk)
        if self.trailing is not None:
            return b""
        if self.d.eof:  # the last chunk ended a member: does another follow?
            self.d = self._next(chunk, start)
            if self.trailing is not None:
                return b""
        out = self.d.decompress(chunk)
        while self.d.eof and self.d.unused_data:
            rest = self.d.unused_data
            self.d = self._next(rest, self.offset - len(rest))
            if self.trailing is not None:
                break
            out += self.d.decompress(rest)
        return out

    def _next(self, data: bytes, at: int) -> zlib._Decompress:
        if not b"\x1f\x8b".startswith(data[:2]):
            self.trailing = at
        return zlib.decompressobj(wbits=_GZIP)

    @property
    def eof(self) -> bool:
        return self.d.eof or self.trailing is not None


# --------------------------------------------------------------------------- hash and count


@dataclass
class TextScan:
    """What ``scan_file`` found in a file."""

    sha256: str = ""
    #: bytes of the file hashed (its size as the hash saw it)
    size: int = 0
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
    #: bytes after the gzip data that are not gzip (see _Gunzip)
    trailing: bool = False
    #: conservative: a line may be blank or start with a blank (DuckDB's JSON
    #: reader gives no row for a blank line, so rows would not be lines)
    maybe_blank: bool = False
    #: (offset in the text, LFs before it) at the start of every piece looked at:
    #: where to start reading for a given line (see ``read_lines``)
    index: list[tuple[int, int]] = field(default_factory=list, repr=False)
    _newlines: int = field(default=0, repr=False)
    _offset: int = field(default=0, repr=False)  # bytes of text looked at so far
    _last: bytes = field(default=b"", repr=False)  # the last byte of the text so far
    _pending_cr: bool = field(default=False, repr=False)
    _run: int = field(default=0, repr=False)  # bytes since the last LF

    def look(self, data: bytes) -> None:
        """Note what a piece of the text (pieces come in file order) holds."""
        if not data:
            return
        self.index.append((self._offset, self._newlines))
        self._offset += len(data)
        # one pass keeps the LFs, CRs and control bytes: counted apart, at C speed
        marks = data.translate(None, _NOT_MARK)
        lfs = marks.count(b"\n")
        if not self.control and len(marks) - lfs - marks.count(b"\r"):
            self.control = True
        if not self.maybe_blank:
            starts_line = not self._last or self._last == b"\n"
            self.maybe_blank = bool(
                (starts_line and data[:1] in _BLANK_START) or _BLANK_LINE.search(data)
            )
        self._newlines += lfs
        self._last = data[-1:]
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
    g = _Gunzip() if compression == "gzip" else None
    corrupt = False
    with open(p, "rb") as raw:
        while chunk := raw.read(_CHUNK):
            h.update(chunk)
            scan.size += len(chunk)
            if g is None:
                scan.look(chunk)
            elif not corrupt:
                try:
                    text = g.feed(chunk)
                except zlib.error:
                    corrupt = True
                    continue
                scan.look(text)
    scan.trailing = g is not None and g.trailing is not None
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
    says why a gzip stream ended before its end (corrupt or truncated), if it did,
    and ``trailing`` what follows the gzip data, if anything but gzip does."""

    def __init__(self, p: Path, compression: str | None):
        self.p, self.compression = p, compression
        self.broken: str | None = None
        self.trailing: str | None = None

    def __iter__(self) -> Iterator[bytes]:
        with open(self.p, "rb") as raw:
            if self.compression != "gzip":
                while chunk := raw.read(_CHUNK):
                    yield chunk
                return
            g = _Gunzip()
            while chunk := raw.read(_CHUNK):
                try:
                    out = g.feed(chunk)
                except zlib.error as exc:
                    self.broken = f"corrupt gzip data ({exc})"
                    return
                yield out
            if g.trailing is not None:
                self.trailing = (
                    f"{g.offset - g.trailing} bytes after the end of the gzip data "
                    f"(at byte {g.trailing + 1} of the file) are not gzip: not loaded"
                )
            elif not g.eof:
                self.broken = "gzip stream truncated: the file ends before the compressed data does"


class _Copier:
    """Writes the clean copy, chunk by chunk, collecting the bad lines."""

    def __init__(self, out: Path, source: Path | None):
        self.out_path, self.source = out, source
        self._out: BinaryIO | None = None
        #: bytes of ``source`` passed on unchanged and not written yet: while
        #: nothing needs cleaning, the copy is the file itself and is not made
        self.skipped = 0
        self.bad: list[BadLine] = []
        self.lineno = 0  # lines written so far
        self.carry = b""  # the start of a line the next chunk goes on with
        self.dropped = 0  # bytes cut off ``carry``, a line too long to keep whole
        self.first = True

    def feed(self, chunk: bytes) -> None:
        if self.first and chunk:
            if chunk.startswith(BOM):
                chunk = chunk.removeprefix(BOM)
                self.out.write(b"")  # the copy differs from the file: make it
            self.first = False
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
            if b"\r" in body:
                self.out.write(body.replace(b"\r\n", b"\n"))
            else:
                self._same(body)
        else:
            for i, ln in enumerate(body.split(b"\n")[:-1]):
                self._line(self.lineno + i + 1, _unterminate(ln), self.dropped if i == 0 else 0)
            self.dropped = 0
        self.lineno += body.count(b"\n")

    @property
    def out(self) -> BinaryIO:
        """The copy, made on the first byte that differs from the file's."""
        if self._out is None:
            self._out = open(self.out_path, "wb")  # noqa: SIM115 (closed by close())
            if self.skipped:
                assert self.source is not None
                with open(self.source, "rb") as src:
                    _copy_prefix(src, self._out, self.skipped)
        return self._out

    def _same(self, body: bytes) -> None:
        """``body`` is the file's next bytes, unchanged."""
        if self._out is None and self.source is not None:
            self.skipped += len(body)
        else:
            self.out.write(body)

    def close(self) -> Path:
        """The path DuckDB reads: the copy, or the file itself if nothing changed."""
        if self._out is None and self.source is not None:
            return self.source
        self.out.close()
        return self.out_path

    def _line(self, lineno: int, line: bytes, dropped: int) -> None:
        reason = line_reason(line, dropped)
        if reason:
            self.bad.append(BadLine(lineno, clip(line, dropped), reason))
            self.out.write(b"\n")
        else:
            self.out.write(line + b"\n")

    def finish(self, broken: str | None, trailing: str | None = None) -> None:
        """The text has ended (early, if ``broken`` says why): write its last line;
        bytes that followed the text (``trailing``) are one reject after it."""
        self._finish(broken)
        if trailing:
            self.lineno += 1
            self.bad.append(BadLine(self.lineno, "", trailing))
            self.out.write(b"\n")

    def _finish(self, broken: str | None) -> None:
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

    Returns the path of the copy and the bad lines as rejects. When nothing needs
    cleaning (a plain file of whole, readable LF lines, the last one ended), no
    copy is made: the path returned is ``p`` itself.
    """
    text = _Text(p, compression)
    copier = _Copier(Path(tmpdir) / "clean.txt", None if compression == "gzip" else p)
    try:
        for chunk in text:
            copier.feed(chunk)
        copier.finish(text.broken, text.trailing)
    finally:
        path = copier.close()
    return path, copier.bad


def _copy_prefix(src: BinaryIO, out: BinaryIO, n: int) -> None:
    """Copy the first ``n`` bytes of ``src`` to ``out``, chunk by chunk."""
    while n > 0:
        chunk = src.read(min(_CHUNK, n))
        if not chunk:
            raise OSError("the file shrank while it was read")
        out.write(chunk)
        n -= len(chunk)


def plain_copy(p: Path, compression: str | None, tmpdir: str) -> tuple[Path, _Text]:
    """The text of ``p`` inflated into ``tmpdir`` as it is, for a JSON array or
    document, whose lines are not rows. The returned ``_Text`` says whether the
    gzip stream broke off (``broken``) and what trailed it (``trailing``)."""
    out_path = Path(tmpdir) / "plain.txt"
    text = _Text(p, compression)
    with open(out_path, "wb") as out:
        for chunk in text:
            out.write(chunk)
    return out_path, text


# --------------------------------------------------------------------------- lines by number


def read_lines(
    p: Path, compression: str | None, wanted: Iterable[int], index: Sequence[tuple[int, int]]
) -> dict[int, bytes]:
    """The lines numbered ``wanted`` (from 1) of the text of ``p``, without their
    LF or CRLF (and line 1 without a byte-order mark), found through ``index``
    (``TextScan.index``): a plain file is read only in the pieces holding them;
    gzip text is inflated up to the last of them."""
    todo = sorted(set(wanted))
    found: dict[int, bytes] = {}
    if not todo:
        return found
    if compression == "gzip":
        for first, body in _numbered_pieces(_Text(p, compression), todo[-1]):
            _pick(body, first, todo, found)
    else:
        _read_indexed(p, todo, index, found)
    if 1 in found:
        found[1] = found[1].removeprefix(BOM)
    return found


def _read_indexed(
    p: Path, todo: Sequence[int], index: Sequence[tuple[int, int]], found: dict[int, bytes]
) -> None:
    """``read_lines`` of a plain file: line n starts after the (n-1)th LF, which
    lies in the last piece with fewer LFs before it; that piece is read whole,
    then on to the end of the line that crosses its end."""
    offsets = [o for o, _ in index]
    lfs = [n for _, n in index]
    groups: dict[int, list[int]] = {}
    for n in todo:
        groups.setdefault(max(bisect.bisect_left(lfs, n - 1) - 1, 0), []).append(n)
    with open(p, "rb") as f:
        for i, group in groups.items():
            f.seek(offsets[i])
            size = offsets[i + 1] - offsets[i] if i + 1 < len(offsets) else -1
            body = f.read(size) + f.readline()
            # the piece's first line began in an earlier piece unless it is line 1
            _pick(body, lfs[i] + 1, group, found)


def _pick(body: bytes, first: int, wanted: Sequence[int], found: dict[int, bytes]) -> None:
    """Record the wanted lines of ``body``, whose first line is numbered ``first``."""
    parts = body.split(b"\n")
    for n in wanted:
        k = n - first
        if 0 <= k < len(parts):
            found[n] = _unterminate(parts[k])


def _numbered_pieces(text: Iterable[bytes], last: int) -> Iterator[tuple[int, bytes]]:
    """The text in pieces of whole lines, each with the number of its first line,
    until line ``last`` has been given."""
    carry, first = b"", 1
    for chunk in text:
        data = carry + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            carry = data
            continue
        body, carry = data[: cut + 1], data[cut + 1 :]
        yield first, body
        first += body.count(b"\n")
        if first > last:
            return
    if carry:
        yield first, carry


#: how far back from a plain file's end its last line is looked for
TAIL_BYTES = 1 << 16


def last_line(p: Path) -> bytes | None:
    """The last line of the plain file ``p`` (without its LF or CRLF): None when
    it is longer than ``TAIL_BYTES`` or the file has a single line (nothing to
    learn before reading it whole)."""
    with open(p, "rb") as f:
        size = f.seek(0, 2)
        start = max(size - TAIL_BYTES, 0)
        f.seek(start)
        tail = f.read()
    tail = tail.removesuffix(b"\n").removesuffix(b"\r")
    cut = tail.rfind(b"\n")
    if cut < 0:
        return None
    return tail[cut + 1 :]
