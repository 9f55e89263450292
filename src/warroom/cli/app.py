"""The application, its shared options, and the entry point.

``main(argv) -> int`` runs the command line and maps library errors to the exit
codes of DESIGN.md section 5: one line on stderr, a traceback only with ``--debug``.
The commands live beside this module, one file per stage of the work (load,
analyse, remediate), and register themselves on ``app``.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import duckdb
import pyarrow as pa
import typer

from warroom import __version__, db, render
from warroom.atomic import write_atomic
from warroom.cli.conventions import WarroomGroup
from warroom.errors import ExitCode, NoDatabaseError, UsageError, WarroomError
from warroom.export import Format, write

app = typer.Typer(
    cls=WarroomGroup,
    name="warroom",
    help="Billing-incident forensics: who was charged wrongly, when, by how much, "
    "and what to give back.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state: dict[str, Any] = {"debug": False, "db": None}

#: typer reads $WARROOM_DB itself (envvar=); this is the default without it
DEFAULT_DB = Path(db.DEFAULT_DB)


def _choose_db(ctx: typer.Context, param: typer.CallbackParam, value: Path) -> Path:
    """The database a command uses: its own ``--db``, else the one given before the
    command (``warroom --db FILE CMD``), else ``$WARROOM_DB``, else warroom.duckdb."""
    given = _state["db"]
    source = ctx.get_parameter_source(param.name or "db_path")
    if source is not None and source.name == "COMMANDLINE":
        if given is not None and Path(given) != value:
            render.note(f"--db given twice: using the command's own, {value}")
        return value
    return Path(given) if given is not None else value


def global_db() -> Path | None:
    """The ``--db`` given before the command, if any."""
    return None if _state["db"] is None else Path(_state["db"])


DbOption = Annotated[
    Path,
    typer.Option(
        "--db",
        envvar="WARROOM_DB",
        metavar="FILE",
        callback=_choose_db,
        help="The DuckDB file to use (also before the command: warroom --db FILE CMD).",
        show_default=True,
    ),
]
FormatOption = Annotated[
    Format | None,
    typer.Option(
        "--format",
        "-f",
        help="Output format (default: table on a terminal, else "
        "csv; with --out, taken from the file's extension).",
    ),
]
OutOption = Annotated[
    Path | None,
    typer.Option(
        "--out", "-o", metavar="FILE", help="Write the rows to this file instead of stdout."
    ),
]
MemoryOption = Annotated[
    str | None,
    typer.Option(
        "--memory-limit",
        metavar="SIZE",
        help="DuckDB memory limit, e.g. 1GB (spills to disk); "
        "default: a sixteenth of the machine's memory, 256MB to 1.5GB.",
    ),
]

_SUFFIX_FORMATS = {
    ".csv": Format.csv,
    ".json": Format.json,
    ".jsonl": Format.jsonl,
    ".ndjson": Format.jsonl,
    ".parquet": Format.parquet,
    ".md": Format.markdown,
}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"warroom {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    db_path: Annotated[
        Path | None,
        typer.Option(
            "--db",
            metavar="FILE",
            help="The DuckDB file every command uses (a command's own --db wins).",
        ),
    ] = None,
) -> None:
    _state["debug"] = debug or bool(os.environ.get("WARROOM_DEBUG"))
    _state["db"] = db_path


def output_format(fmt: Format | None, out: Path | None) -> Format:
    """The format rows are written in: ``--format``, else ``--out``'s extension (an
    extension no format has is refused), else table on a terminal and csv in a pipe."""
    if fmt is not None:
        return fmt
    if out is None:
        return Format.table if render.stdout_is_terminal() else Format.csv
    chosen = _SUFFIX_FORMATS.get(out.suffix.lower())
    if chosen is None and out.is_dir():
        return Format.csv  # the write says what is wrong: a folder, not a file
    if chosen is None:
        known = ", ".join(sorted(_SUFFIX_FORMATS))
        raise UsageError(
            f"--out {out}: no format writes {out.suffix or 'a file without an extension'}; "
            f"name it {known}, or give --format"
        )
    return chosen


def emit(
    table: pa.Table, fmt: Format | None, out: Path | None, *, title: str | None = None
) -> None:
    """Send rows to stdout or ``--out`` in the chosen format."""
    fmt = output_format(fmt, out)
    if fmt is Format.table:
        if out is not None:
            raise UsageError(
                "--format table draws on the terminal; pick csv, json, jsonl, "
                "parquet or markdown with --out"
            )
        render.draw_table(table, title=title)
        return
    if out is not None:
        buf = io.BytesIO()
        write(table, fmt, buf)
        write_atomic(out, buf.getvalue())
        render.note(f"wrote {table.num_rows} rows to {out}")
        return
    if fmt is Format.parquet and render.stdout_is_terminal():
        raise UsageError(
            "--format parquet is binary: redirect stdout to a file (> rows.parquet) "
            "or give --out FILE"
        )
    stream: BinaryIO = sys.stdout.buffer
    write(table, fmt, stream)
    stream.flush()


def _db_hint(exc: NoDatabaseError) -> str:
    """Where the database the user wanted probably is."""
    made = Path("warroom-out") / "warroom.duckdb"
    if made.exists() and Path(exc.path).resolve() != made.resolve():
        return (
            f"; `warroom investigate` wrote {made}: add --db {made} "
            f"(before or after the command) or set WARROOM_DB={made}"
        )
    return (
        "; run `warroom ingest` or `warroom investigate` first, or name the database "
        "with --db FILE or $WARROOM_DB"
    )


QueriesDirOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--queries-dir",
        envvar=None,
        metavar="DIR",
        help="A folder of your own .sql queries to add to the pack (also $WARROOM_QUERIES).",
    ),
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="TIME",
        help="Only rows at or after this time (ISO-8601, UTC unless it says).",
    ),
]
UntilOption = Annotated[
    str | None, typer.Option("--until", metavar="TIME", help="Only rows before this time.")
]

IncidentIdOption = Annotated[
    str | None,
    typer.Option(
        "--incident-id",
        metavar="ID",
        help="The incident's id, in every credit_id (default: the policy's, else the one "
        "stored by detect, else named from the data: date and hash of the largest episode).",
    ),
]
PolicyOption = Annotated[
    Path | None,
    typer.Option(
        "--policy",
        metavar="FILE",
        help="Credit policy (TOML); default: the built-in policy (`warroom policy --default` "
        "prints it, to start a file from).",
    ),
]


def main(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv``) and return its exit code.

    The console script and ``python -m warroom`` exit with this code; tests call it
    in-process. Library errors become one line on stderr and the exit code of
    DESIGN.md section 5; ``--debug`` lets the traceback through instead.
    """
    _state["debug"] = False
    _state["db"] = None
    render.stderr = render.stderr_console()  # the stderr of this run, not of the import
    try:
        app(args=argv, prog_name=None if argv is None else "warroom")
    except SystemExit as exc:
        return _exit_code(exc.code)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except WarroomError as exc:
        if _state["debug"]:
            raise
        render.error(str(exc) + (_db_hint(exc) if isinstance(exc, NoDatabaseError) else ""))
        return int(exc.exit_code)
    except duckdb.Error as exc:
        if _state["debug"]:
            raise
        text = str(exc).strip().splitlines()
        render.error(f"database error: {text[0] if text else type(exc).__name__}")
        return int(ExitCode.ERROR)
    except KeyboardInterrupt:
        render.error("interrupted")
        return 130
    except BrokenPipeError:
        # the reader of stdout went away (e.g. `| head`): not an error
        sys.stderr.close()
        return 0
    except Exception as exc:  # a bug: say so in one line, keep the traceback for --debug
        if _state["debug"]:
            raise
        render.error(
            f"internal error: {type(exc).__name__}: {exc} (rerun with --debug "
            "for the traceback, and please report it)"
        )
        return int(ExitCode.ERROR)
    return 0


def _exit_code(code: object) -> int:
    """The status ``sys.exit(code)`` would give the process (a message is printed, status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
