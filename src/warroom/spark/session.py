"""Starting Spark for ``--engine spark``: what is missing is said in one line.

The session is set for exact, repeatable answers: UTC session time zone,
DECIMAL arithmetic without precision loss (a product of two DECIMAL(38,6)
keeps its 12 places, as in DuckDB), and quiet: log level WARN, no progress bar
(unless ``spark.ui.showConsoleProgress=true`` is given), no web UI.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from warroom.errors import UsageError, WarroomError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: the Java release PySpark 4 needs
JAVA_MIN = 17

DEFAULT_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.decimalOperations.allowPrecisionLoss": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Parquet timestamps (DuckDB writes them without a zone) read as UTC instants
    "spark.sql.parquet.inferTimestampNTZ.enabled": "false",
    # a stage whose generated code is too large for the JVM runs without it
    # (its notice is silenced in log4j2.properties)
    "spark.sql.codegen.fallback": "true",
}
#: the JVMs' options: UTC, and our quiet log configuration (log4j2.properties)
_LOG4J = Path(__file__).with_name("log4j2.properties")
_JAVA_OPTIONS = f"-Duser.timezone=UTC -Dlog4j.configurationFile=file:{_LOG4J}"


class EngineUnavailable(WarroomError):
    """``--engine spark`` cannot start: the [spark] extra or Java 17+ is missing."""


@dataclass(frozen=True)
class SparkSettings:
    master: str = "local[*]"
    conf: dict[str, str] = field(default_factory=dict)
    #: where the canonical tables, rejects and findings are kept as Parquet
    warehouse: Path = Path("warroom-warehouse")


def parse_conf(items: list[str] | None) -> dict[str, str]:
    """``--spark-conf K=V`` items -> a dict; a malformed one is a usage error."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(
                f"--spark-conf {item!r}: write KEY=VALUE (e.g. spark.executor.memory=4g)"
            )
        out[key.strip()] = value
    return out


def java_version() -> int | None:
    """The major version of the ``java`` Spark would run ($JAVA_HOME's, else PATH's)."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        return None
    try:
        done = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def check_available() -> None:
    """Raise EngineUnavailable naming what is missing: PySpark (the extra) or Java."""
    try:
        import pyspark  # noqa: F401
        import sqlglot  # noqa: F401
    except ImportError as exc:
        raise EngineUnavailable(
            f"--engine spark needs the [spark] extra ({exc.name} is not installed): "
            'pip install -e ".[spark]"'
        ) from None
    version = java_version()
    if version is None:
        raise EngineUnavailable(
            f"--engine spark needs Java {JAVA_MIN}+ and none was found (set JAVA_HOME, or on "
            "Debian: apt-get install default-jre-headless)"
        )
    if version < JAVA_MIN:
        raise EngineUnavailable(
            f"--engine spark needs Java {JAVA_MIN}+; found Java {version} (set JAVA_HOME to a "
            "newer one, or on Debian: apt-get install default-jre-headless)"
        )


def local_memory(ram_bytes: int | None = None) -> str:
    """The JVM heap of a local master, where the driver runs every task: a
    quarter of the machine's memory, at least Spark's 1g, at most 16g. Spark's
    1g default ran a 5M-row investigation out of memory on 2 cores."""
    if ram_bytes is None:
        ram_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{min(max(ram_bytes // 4 // 2**30, 1), 16)}g"


def session_conf(settings: SparkSettings) -> dict[str, str]:
    """Every setting the session starts with: ours, then the user's (which win)."""
    conf = {
        **DEFAULT_CONF,
        "spark.driver.extraJavaOptions": _JAVA_OPTIONS,
        "spark.executor.extraJavaOptions": _JAVA_OPTIONS,
    }
    if settings.master.startswith("local"):
        conf["spark.driver.memory"] = local_memory()
    return {**conf, **settings.conf}


def worker_python(settings: SparkSettings) -> str | None:
    """The Python that Spark's workers run on a local master: the one named
    (``--spark-conf spark.pyspark.python=...``, else ``$PYSPARK_PYTHON``), else
    this very interpreter, so that they import the warroom that is running
    (PySpark would take PATH's ``python3``: with ``.venv/bin/warroom`` started
    by its path, the virtualenv not activated, one without warroom). None on a
    cluster: its workers run the cluster's Python."""
    if not settings.master.startswith("local"):
        return None
    named = settings.conf.get("spark.pyspark.python") or os.environ.get("PYSPARK_PYTHON")
    return named or sys.executable


def start(settings: SparkSettings) -> SparkSession:
    """A Spark session for ``settings`` (a running one is reused, with our settings)."""
    check_available()
    from pyspark.sql import SparkSession

    python = worker_python(settings)
    if python:  # PySpark reads it from the environment only
        os.environ["PYSPARK_PYTHON"] = python
    builder = SparkSession.builder.master(settings.master).appName("warroom")
    for key, value in session_conf(settings).items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # the JVM's failure to start, in one line
        text = str(exc).strip().splitlines()
        raise EngineUnavailable(
            f"Spark did not start ({settings.master}): {text[0] if text else type(exc).__name__}"
        ) from None
    session.sparkContext.setLogLevel("WARN")
    # PySpark logs a failed query's whole plan as JSON; our error says it in one line
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
    for key, value in {**DEFAULT_CONF, **settings.conf}.items():
        if key.startswith("spark.sql."):
            session.conf.set(key, value)
    return session
