"""Atomic writes: every file warroom writes (``--out``, ``report --out``, the
``investigate`` bundle) goes through here, so a reader sees the old file or
the new one, never half of one, and a failed write is one clear error.

A file is written to a temporary name beside its target, flushed to disk and
renamed over it; a bundle of files is written to a temporary folder inside its
target folder and its files are renamed in only once all are whole.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from warroom.errors import OutputError


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it.

    Raises OutputError (and leaves ``path`` as it was) when ``path`` is a folder,
    its folder does not exist, or the write fails (a full disk, no permission).
    """
    _check_target(path)
    # open() rather than mkstemp, so the file gets the usual permissions (umask)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        _dump(tmp, data)
        os.replace(tmp, path)
    except OSError as exc:
        _unlink(tmp)
        raise _error(path, exc) from None
    except BaseException:
        _unlink(tmp)
        raise


def write_bundle_atomic(folder: Path, files: Mapping[str, bytes]) -> None:
    """Write ``files`` (name -> bytes) into ``folder``, created if need be.

    All are written whole into a temporary folder inside ``folder`` first and
    renamed in at the end, so a failure (a full disk) leaves the old files whole
    and none of the new. Raises OutputError.
    """
    make_folder(folder)
    try:
        staging = Path(tempfile.mkdtemp(prefix=".warroom-", suffix=".tmp", dir=folder))
    except OSError as exc:
        raise _error(folder, exc) from None
    try:
        for name, data in files.items():
            _check_target(folder / name)
            try:
                _dump(staging / name, data)
            except OSError as exc:
                raise _error(folder / name, exc) from None
        for name in files:
            try:
                os.replace(staging / name, folder / name)
            except OSError as exc:
                raise _error(folder / name, exc) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def make_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) unless it exists. Raises OutputError when
    it cannot be made or is a file."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: not a folder; name a folder for the output")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot make the folder: {_reason(exc)}") from None


def _dump(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file at ``path`` and flush it to the disk."""
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _check_target(path: Path) -> None:
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; name a file to write")
    parent = path.parent
    if not parent.is_dir():
        what = "not a folder" if parent.exists() else "no such folder"
        raise OutputError(f"{path}: cannot write: {parent}: {what}")


def _error(path: Path, exc: OSError) -> OutputError:
    return OutputError(f"{path}: cannot write: {_reason(exc)}")


def _reason(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device (nothing was replaced)"
    return exc.strerror or str(exc) or type(exc).__name__


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
