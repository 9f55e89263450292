"""One exception hierarchy for the library; each class knows its exit code.

The library raises these and never prints or exits; the CLI maps them to the
exit codes of DESIGN.md section 5 and prints their message as one line.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    REJECTED = 3
    DB_LOCKED = 4
    FINDINGS = 5


class WarroomError(Exception):
    """A clear, one-line error a user can act on."""

    exit_code: ExitCode = ExitCode.ERROR


class InputError(WarroomError):
    """An input file is missing, unreadable, or of a kind we cannot tell."""


class UsageError(WarroomError):
    """A bad argument that the command-line parser could not catch."""

    exit_code = ExitCode.USAGE


class QueryError(WarroomError):
    """An unknown query, a bad header or parameter, a query that failed, or bad ad-hoc SQL."""


class DatabaseLockedError(WarroomError):
    """Another process holds the database file."""

    exit_code = ExitCode.DB_LOCKED


class DatabaseError(WarroomError):
    """The database file is not a warroom database, or cannot be opened."""


class NoDatabaseError(DatabaseError):
    """The database file a read-only command needs does not exist."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path}: no such database")
        self.path = path


class ProfileError(WarroomError):
    """An unknown import profile, or a mapping file with a bad key or value."""


class OutputError(WarroomError):
    """An output file or folder cannot be written: a full disk, a folder named as
    the file, a missing parent folder, no permission."""
