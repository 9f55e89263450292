"""The typer command line: parse options, call one library function, render, map errors.

No SQL, parsing or serialisation lives here. ``app.py`` holds the application, the
options every command shares and the entry point ``main``; the commands are
grouped by stage: ``load.py`` (ingest, sources, sql, generate, profiles),
``analyse.py`` (queries, run, detect, user), ``remediate.py`` (impact, export,
report, investigate), ``timeline.py`` (timeline).
"""

# the commands register on `app` in this order, which is the order `--help` lists them
from warroom.cli import load, analyse, remediate, timeline  # noqa: I001
from warroom.cli.app import app, main

__all__ = ["analyse", "app", "load", "main", "remediate", "timeline"]
