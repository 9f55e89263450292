"""The query pack: find .sql files, read their headers, bind parameters, run.

A pack is a folder of ``.sql`` files, each one detection or report table, with
a header of ``-- key: value`` lines::

    -- title: Duplicate charges
    -- description: distinct entry_ids charging one request ...
    -- severity: high
    -- param: tolerance DECIMAL 0.000001  allowed difference before a charge is wrong

Every query also takes ``$since`` and ``$until`` (TIMESTAMP, default NULL =
unbounded). Parameters are bound by DuckDB, never formatted into the SQL.

A detection may read another's rows by naming it in its header
(``-- uses: wrongful_rejections``): the one it uses runs first, over all the
data (``$since``/``$until`` bound only the rows each returns), and its rows are
readable under its name. ``-- uses: findings`` (report tables) reads them all.

``shared/`` holds relations the detections build on (the charge attribution,
the replayed and counterfactual balance, ...), one per file, named after the
file without its numeric prefix, built in file order; before a query runs, the
ones it reads are created as temporary tables (``prepare``).

A few shared relations are a sequential pass that SQL states badly (whether a
429 was wrongful depends on the earlier ones): a *group step* (``GroupStep``,
registered in ``GROUP_STEPS``) computes such a relation in Python from a SQL
input, one group of rows (a user and currency, ...) at a time. It sits in the
pack like any shared relation (``Pack.needs``, ``prepare``), right after the
relations its input reads; the Spark engine can run the same function per group
(``applyInPandas``).

The built-in pack ships inside the package; ``--queries-dir`` and
``$WARROOM_QUERIES`` add a user's folders. A user's query with the name of a
built-in one replaces it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

import warroom
from warroom.errors import QueryError

SEVERITIES = ("info", "low", "medium", "high", "critical")
PARAM_TYPES = ("TIMESTAMP", "DECIMAL", "INTEGER", "DOUBLE", "VARCHAR", "BOOLEAN")
_HEADER = re.compile(r"^--\s?([a-z_]+)\s*:\s*(.*?)\s*$")
#: a header value goes on over following lines indented by two or more spaces
_HEADER_MORE = re.compile(r"^--\s{2,}(\S.*?)\s*$")
_PARAM_REF = re.compile(r"\$([a-z_][a-z0-9_]*)")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | None
    help: str = ""


@dataclass(frozen=True)
class Query:
    name: str
    path: Path
    sql: str
    title: str
    description: str
    severity: str
    params: tuple[Param, ...] = ()
    #: true when its rows are findings (the common columns of DESIGN.md section 3)
    findings: bool = True
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class GroupStep:
    """A shared relation computed in Python, group by group, from a SQL input.

    ``source`` is the SQL the step reads (it names shared relations like any
    query); its rows are split into groups by ``keys`` (NULL is a value of its
    own), each ordered by ``order``, and ``function`` turns one group (an Arrow
    table) into that group's output rows. ``function`` must also accept an
    empty table (it gives the output's schema). Nothing but the input's rows
    reaches Python, so the input should be few rows (candidates, not a ledger).
    """

    name: str
    source: str
    keys: tuple[str, ...]
    order: tuple[str, ...]
    function: Callable[[pa.Table], pa.Table]
    #: the file that defines ``function`` (its text is part of the pack's hash)
    module_path: Path


@dataclass(frozen=True)
class Shared:
    name: str
    path: Path
    sql: str
    #: set for a relation computed by a Python step; ``sql`` is then its input
    step: GroupStep | None = None

    @property
    def sha256(self) -> str:
        text = self.sql
        if self.step is not None:
            text += self.step.module_path.read_text(encoding="utf-8")
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Pack:
    queries: dict[str, Query]
    shared: list[Shared]

    def get(self, name: str) -> Query:
        try:
            return self.queries[name]
        except KeyError:
            known = ", ".join(sorted(self.queries))
            raise QueryError(f"unknown query {name!r}; the pack has: {known}") from None

    def needs(self, sql: str) -> list[str]:
        """The shared relations ``sql`` reads, directly or through another, in pack order."""
        by_name = {s.name: s for s in self.shared}
        wanted: set[str] = set()
        todo = [sql]
        while todo:
            text = _strip_comments(todo.pop())
            for name, s in by_name.items():
                if name not in wanted and re.search(rf"\b{re.escape(name)}\b", text):
                    wanted.add(name)
                    todo.append(s.sql)
        return [s.name for s in self.shared if s.name in wanted]

    def uses(self, query: Query) -> list[str]:
        """The detections whose rows ``query`` reads (``-- uses: NAME ...``; the word
        ``findings`` there means every detection's, and is not one of them)."""
        names = [n for n in query.headers.get("uses", "").split() if n != "findings"]
        for n in names:
            if n not in self.queries or not self.queries[n].findings:
                raise QueryError(
                    f"{query.path.name}: '-- uses: {n}' names no detection of the pack"
                )
        return names

    def detections(self) -> list[Query]:
        """Every detection, by name, except that each comes after those it uses."""
        done: dict[str, Query] = {}

        def visit(q: Query, path: tuple[str, ...]) -> None:
            if q.name in done:
                return
            if q.name in path:
                cycle = " -> ".join(path[path.index(q.name) :] + (q.name,))
                raise QueryError(f"{q.path.name}: detections use each other in a cycle: {cycle}")
            for n in self.uses(q):
                visit(self.queries[n], (*path, q.name))
            done[q.name] = q

        for q in sorted(self.queries.values(), key=lambda q: q.name):
            if q.findings:
                visit(q, ())
        return list(done.values())


COMMON = ("since", "until")


def builtin_dir() -> Path:
    """The built-in pack: inside an installed wheel, else the checkout's queries/."""
    inside = resources.files("warroom") / "queries"
    if inside.is_dir():
        return Path(str(inside))
    return Path(warroom.__file__).resolve().parents[2] / "queries"


def load_pack(extra_dirs: list[Path] | None = None) -> Pack:
    """Read the built-in pack plus ``extra_dirs`` and ``$WARROOM_QUERIES`` (os.pathsep list)."""
    dirs = [builtin_dir()]
    env = os.environ.get("WARROOM_QUERIES")
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs += list(extra_dirs or [])
    queries: dict[str, Query] = {}
    shared: dict[str, Shared] = {}
    for d in dirs:
        if not d.is_dir():
            raise QueryError(f"{d}: no such queries folder")
        for path in sorted(d.glob("*.sql")):
            q = parse_query(path)
            queries[q.name] = q
        if (d / "shared").is_dir():
            for path in sorted((d / "shared").glob("*.sql")):
                s = Shared(_shared_name(path), path, path.read_text(encoding="utf-8"))
                shared[s.name] = s
    return Pack(queries, _with_steps(sorted(shared.values(), key=lambda s: s.path.name)))


def _group_steps() -> dict[str, GroupStep]:
    """name -> the group steps of the built-in pack (imported here: they are Python)."""
    from warroom.served import SERVED_REJECTIONS

    return {SERVED_REJECTIONS.name: SERVED_REJECTIONS}


def _with_steps(shared: list[Shared]) -> list[Shared]:
    """The SQL relations with each group step placed right after the last one
    its input reads (a step whose input is missing from the pack is left out)."""
    out = list(shared)
    for step in _group_steps().values():
        text = _strip_comments(step.source)
        read = [i for i, s in enumerate(out) if re.search(rf"\b{re.escape(s.name)}\b", text)]
        if not read:
            continue
        out.insert(max(read) + 1, Shared(step.name, step.module_path, step.source, step))
    return out


def _shared_name(path: Path) -> str:
    return re.sub(r"^\d+_", "", path.stem)


def parse_query(path: Path) -> Query:
    """Parse one query file; QueryError names the file and the bad line."""
    try:
        sql = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise QueryError(f"{path}: cannot read: {exc}") from None
    headers: dict[str, str] = {}
    params: list[Param] = []
    last: str | None = None
    for lineno, line in enumerate(sql.splitlines(), 1):
        if not line.startswith("--"):
            if line.strip():
                break
            continue
        more = _HEADER_MORE.match(line)
        if more and last is not None:
            headers[last] += " " + more.group(1)
            continue
        m = _HEADER.match(line)
        last = None
        if not m:
            continue
        key, value = m.groups()
        if key == "param":
            params.append(_parse_param(path, lineno, value))
        else:
            headers[key] = value if key not in headers else headers[key] + " " + value
            last = key
    for key in ("title", "description", "severity"):
        if not headers.get(key):
            raise QueryError(f"{path}: header lacks '-- {key}: ...'")
    severity = headers["severity"].lower()
    if severity not in SEVERITIES:
        raise QueryError(
            f"{path}: severity {headers['severity']!r} is not one of {', '.join(SEVERITIES)}"
        )
    declared = {p.name for p in params} | set(COMMON)
    used = set(_PARAM_REF.findall(_strip_comments(sql)))
    if used - declared:
        raise QueryError(
            f"{path}: uses undeclared parameter(s) "
            f"{', '.join('$' + u for u in sorted(used - declared))}; "
            "declare each with '-- param: NAME TYPE DEFAULT'"
        )
    findings = headers.get("findings", "yes").lower() not in ("no", "false")
    return Query(
        path.stem,
        path,
        sql,
        headers["title"],
        headers["description"],
        severity,
        tuple(params),
        findings,
        headers,
    )


def _parse_param(path: Path, lineno: int, value: str) -> Param:
    parts = value.split(None, 3)
    if len(parts) < 3:
        raise QueryError(f"{path}:{lineno}: a parameter needs 'NAME TYPE DEFAULT [help]'")
    name, typ, default = parts[0], parts[1].upper(), parts[2]
    if typ not in PARAM_TYPES:
        raise QueryError(
            f"{path}:{lineno}: parameter type {typ} is not one of {', '.join(PARAM_TYPES)}"
        )
    if name in COMMON:
        raise QueryError(f"{path}:{lineno}: ${name} is given to every query; do not declare it")
    return Param(
        name,
        typ,
        None if default.upper() == "NULL" else default,
        parts[3] if len(parts) > 3 else "",
    )


def _strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def convert_param(name: str, typ: str, text: str | None) -> Any:
    """A parameter's text -> the Python value DuckDB binds (exact decimals, UTC times)."""
    if text is None:
        return None
    try:
        match typ:
            case "TIMESTAMP":
                return parse_timestamp(text)
            case "DECIMAL":
                return Decimal(text)
            case "INTEGER":
                return int(text)
            case "DOUBLE":
                return float(text)
            case "BOOLEAN":
                if text.lower() in ("true", "1", "yes"):
                    return True
                if text.lower() in ("false", "0", "no"):
                    return False
                raise ValueError(text)
            case _:
                return text
    except (ValueError, InvalidOperation):
        raise QueryError(f"parameter {name}: {text!r} is not a valid {typ}") from None


def parse_timestamp(text: str) -> datetime:
    """ISO-8601 (Z, offset or none = UTC) -> naive UTC datetime."""
    from datetime import UTC

    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise QueryError(
            f"{text!r} is not a timestamp (use ISO-8601, e.g. 2025-06-01T16:00:00Z)"
        ) from None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt


def bind(
    query: Query, given: dict[str, str], since: str | None = None, until: str | None = None
) -> dict[str, Any]:
    """The named parameters ``query`` uses, from ``given`` texts or their defaults."""
    known = {p.name: p for p in query.params}
    unknown = set(given) - set(known)
    if unknown:
        names = ", ".join(sorted(known)) or "none besides --since/--until"
        raise QueryError(
            f"query {query.name} has no parameter {', '.join(sorted(unknown))} (it takes: {names})"
        )
    values: dict[str, Any] = {
        "since": parse_timestamp(since) if since else None,
        "until": parse_timestamp(until) if until else None,
    }
    for p in query.params:
        values[p.name] = convert_param(p.name, p.type, given.get(p.name, p.default))
    used = set(_PARAM_REF.findall(_strip_comments(query.sql)))
    return {k: v for k, v in values.items() if k in used}


def prepare(
    con: duckdb.DuckDBPyConnection,
    pack: Pack,
    *,
    only: list[str] | None = None,
    on_step: Callable[[int], None] | None = None,
    fault_window: tuple[datetime | None, datetime | None] = (None, None),
) -> list[tuple[str, float]]:
    """Create the pack's shared relations on ``con`` as temporary tables (a view
    read by several queries would be computed once per read).

    ``only`` limits them to those named (``Pack.needs`` tells which a query
    reads). ``fault_window`` (``$fault_start``, ``$fault_end``; unbounded by
    default) selects the faults the counterfactual undoes: erroneous charges and
    false-positive abuse actions with ts in [start, end) (DESIGN.md section 7.4).
    Returns each relation's name and the seconds it took to create; ``on_step`` is
    told how many are done after each one.
    """
    # Every query orders its own rows, so a materialised relation needs no
    # physical order; not keeping it lets DuckDB stream (and spill) them.
    row = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()
    keep_order = bool(row[0]) if row else True
    con.execute("SET preserve_insertion_order = false")
    try:
        shared = [x for x in pack.shared if only is None or x.name in only]
        window = {"fault_start": fault_window[0], "fault_end": fault_window[1]}
        return _create_shared(con, shared, on_step, window)
    finally:
        con.execute(f"SET preserve_insertion_order = {str(keep_order).lower()}")


#: the parameters a shared relation may read (bound by ``prepare``)
SHARED_PARAMS = ("fault_start", "fault_end")


def _create_shared(
    con: duckdb.DuckDBPyConnection,
    shared: list[Shared],
    on_step: Callable[[int], None] | None,
    params: dict[str, Any],
) -> list[tuple[str, float]]:
    timings = []
    for i, s in enumerate(shared):
        started = time.monotonic()
        body = _strip_trailing_semicolon(s.sql)
        try:
            if s.step is not None:
                _run_group_step(con, s.step, params)
            else:
                with profiled(con, s.name):
                    con.execute(
                        f"CREATE OR REPLACE TEMP TABLE {s.name} AS {body}", _used(body, params)
                    )
        except duckdb.Error as exc:
            raise QueryError(f"{s.path}: {_first_line(exc)}") from None
        timings.append((s.name, time.monotonic() - started))
        if on_step:
            on_step(i + 1)
    return timings


#: a folder: each shared relation and query writes DuckDB's profile of its run there
PROFILE_ENV = "WARROOM_PROFILE"


@contextlib.contextmanager
def profiled(con: duckdb.DuckDBPyConnection, name: str) -> Iterator[None]:
    """With ``$WARROOM_PROFILE`` set to a folder, DuckDB's profile of the statements
    run inside (the operator tree with each operator's time and rows) goes to
    ``<folder>/<name>.json``; without it, nothing happens."""
    folder = os.environ.get(PROFILE_ENV)
    if not folder:
        yield
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    con.execute("SET enable_profiling = 'json'")
    con.execute("SET profiling_output = ?", [str(Path(folder) / f"{name}.json")])
    try:
        yield
    finally:
        con.execute("PRAGMA disable_profiling")


def _used(sql: str, params: dict[str, Any]) -> dict[str, Any]:
    """The ``params`` that ``sql`` reads (DuckDB refuses one it does not)."""
    used = set(_PARAM_REF.findall(_strip_comments(sql)))
    return {k: v for k, v in params.items() if k in used}


def _run_group_step(
    con: duckdb.DuckDBPyConnection, step: GroupStep, params: dict[str, Any]
) -> None:
    """Read the step's input as Arrow, ordered by its keys and order, run its
    function on each group, and write the rows as the temp table ``step.name``."""
    order = ", ".join(f"{c} ASC NULLS FIRST" for c in (*step.keys, *step.order))
    source = _strip_trailing_semicolon(step.source)
    rows = con.sql(
        f"SELECT * FROM ({source}) AS step_input ORDER BY {order}",
        params=_used(source, params),
    ).to_arrow_table()
    parts = [step.function(rows.slice(lo, hi - lo)) for lo, hi in _group_bounds(rows, step.keys)]
    out = pa.concat_tables(parts) if parts else step.function(rows.slice(0, 0))
    con.register("group_step_output", out)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {step.name} AS SELECT * FROM group_step_output")
    finally:
        con.unregister("group_step_output")


def _group_bounds(rows: pa.Table, keys: tuple[str, ...]) -> list[tuple[int, int]]:
    """[lo, hi) of each run of equal keys in ``rows`` (sorted by them)."""
    n = rows.num_rows
    if n == 0:
        return []
    starts = [0]
    columns = [rows.column(k).to_pylist() for k in keys]
    starts += [i for i in range(1, n) if any(c[i] != c[i - 1] for c in columns)]
    return list(zip(starts, [*starts[1:], n], strict=True))


def run(con: duckdb.DuckDBPyConnection, query: Query, params: dict[str, Any]) -> pa.Table:
    """Run one query (after ``prepare``) and return its rows."""
    try:
        with profiled(con, query.name):
            return con.sql(_strip_trailing_semicolon(query.sql), params=params).to_arrow_table()
    except duckdb.Error as exc:
        raise QueryError(f"{query.path.name}: {_first_line(exc)}") from None


def _strip_trailing_semicolon(sql: str) -> str:
    return sql.strip().rstrip(";").strip()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
