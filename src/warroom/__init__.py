"""warroom: billing-incident forensics on DuckDB.

The library behind the ``warroom`` command: open a database, ingest logs,
look at what was loaded. It never prints and never exits; errors are
``WarroomError`` subclasses that carry their exit code.
"""

from __future__ import annotations

__version__ = "0.1.0"

from warroom.db import connect  # noqa: E402
from warroom.errors import WarroomError  # noqa: E402
from warroom.ingest import IngestReport, ingest  # noqa: E402

__all__ = ["__version__", "connect", "ingest", "IngestReport", "WarroomError"]
