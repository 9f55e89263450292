"""Import profiles: foreign log formats (LiteLLM, Stripe, OpenMeter, ...) -> canonical fields.

An engineer in a war room has their gateway's and billing system's own
exports, not warroom's canonical files. A profile says how to read one such
format: for each kind of canonical row it produces (a *mapping*), which field
of the input row feeds which canonical field, and how to convert it (minor
units, sign flips, epoch timestamps, value maps, constants).

Profiles are TOML. The built-in ones ship in ``warroom/profile_defs/`` and are
written in exactly the format a user's own mapping file uses, so every
built-in exercises the user format. The mapping itself runs in SQL: every input
row arrives as JSON text, each field spec compiles to an expression over it
giving the ``v_<field>`` text that ``convert.typed_select`` types and checks, so
a row read through a profile is accepted or rejected exactly like a canonical
one. A row that feeds several mappings is loaded only if all of them succeed.

The format (see README.md, "Import profiles", for a worked example)::

    name = "mygateway"            # a user file defaults to its file name
    description = "..."
    export = "what to export from the system"

    [[mapping]]
    kind = "requests"             # requests | ledger | abuse | prices
    name = "request"              # optional, used in messages
    when = { path = "$.spend", nonzero = true }   # optional; a list means all of them
    each = { bucket = "$.data", result = ["$.results", "$.result"] }  # optional

    [mapping.fields]
    ts = "$.startTime"                         # a JSON path
    user_id = ["$.user", "$.end_user"]         # the first of these that is set
    status = { path = "$.status", map = { success = "200", "*" = "500" } }
    amount = { path = "$.amount", minor_units = "$.currency", negate = true }
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from warroom.convert import typed_select
from warroom.errors import ProfileError
from warroom.model import FIELDS, Field, FieldType, Kind

#: where the built-in profiles live inside the package
_DEFS = "profile_defs"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_LEVEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: ISO 4217 currencies whose minor unit is not 1/100, as Stripe counts them:
#: zero-decimal currencies and three-decimal ones
ZERO_DECIMAL = (
    "bif",
    "clp",
    "djf",
    "gnf",
    "jpy",
    "kmf",
    "krw",
    "mga",
    "pyg",
    "rwf",
    "ugx",
    "vnd",
    "vuv",
    "xaf",
    "xof",
    "xpf",
)
THREE_DECIMAL = ("bhd", "jod", "kwd", "omr", "tnd")

_NUMBER = r"'[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?'"

# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class JsonPath:
    """A path into a row (``$.a.b[0]``), or with ``each`` into one of its levels."""

    text: str
    segments: tuple[str | int, ...]
    #: the ``each`` level the path starts from; None for the row itself
    level: str | None = None

    @property
    def label(self) -> str:
        """How messages name the source field: the path without ``$.``."""
        body = self.text[2:] if self.text.startswith("$.") else self.text[1:]
        return body or "(the row)"


@dataclass(frozen=True)
class Condition:
    path: JsonPath
    op: str  # equals | in | not_in | present | nonzero | matches
    values: tuple[str, ...] = ()
    flag: bool = True

    def describe(self) -> str:
        name = self.path.label
        match self.op:
            case "equals":
                return f"{name} = {self.values[0]}"
            case "in":
                return f"{name} in ({', '.join(self.values)})"
            case "not_in":
                return f"{name} not in ({', '.join(self.values)})"
            case "present":
                return f"{name} {'present' if self.flag else 'absent'}"
            case "nonzero":
                return f"{name} {'non-zero' if self.flag else 'zero or absent'}"
            case _:
                return f"{name} matches {self.values[0]}"


@dataclass(frozen=True)
class FieldSpec:
    """Where one canonical field comes from, and how it is converted."""

    field: Field
    paths: tuple[JsonPath, ...] = ()
    const: str | None = None
    #: literal text and placeholders (path, optional) in order
    template: tuple[str | tuple[JsonPath, bool], ...] | None = None
    map: tuple[tuple[str, str], ...] = ()
    default: str | None = None
    #: multiply by 10 ** scale_exp (money)
    scale_exp: int | None = None
    #: money in the minor unit of the ISO currency found at this path
    minor_units: JsonPath | None = None
    negate: bool = False
    round: int | None = None
    epoch: str | None = None  # s | ms

    @property
    def label(self) -> str | None:
        """The source named in reasons; None when the canonical name says it."""
        if self.paths:
            return " or ".join(p.label for p in self.paths)
        if self.template is not None:
            return "".join(p if isinstance(p, str) else p[0].label for p in self.template)
        return None


@dataclass(frozen=True)
class Mapping:
    name: str
    kind: Kind
    fields: dict[str, FieldSpec]
    when: tuple[Condition, ...] = ()
    #: (level name, the paths that may hold its array or object), outermost first
    each: tuple[tuple[str, tuple[JsonPath, ...]], ...] = ()

    def describe(self) -> str:
        cond = " and ".join(c.describe() for c in self.when) or "any row"
        return f"{self.name}: {cond}"


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    export: str
    mappings: tuple[Mapping, ...]
    #: the file it was read from (``built-in`` for the shipped ones)
    source: str = "built-in"

    @property
    def kinds(self) -> tuple[Kind, ...]:
        return tuple(dict.fromkeys(m.kind for m in self.mappings))

    @property
    def kind_label(self) -> str:
        """What ``sources.kind`` records for a file read through this profile."""
        return "+".join(k.value for k in self.kinds)

    def only(self, kind: Kind) -> Profile:
        """This profile with only its mappings producing ``kind`` (``--kind``).

        Raises ProfileError when it produces no such rows.
        """
        kept = tuple(m for m in self.mappings if m.kind is kind)
        if not kept:
            raise ProfileError(
                f"profile {self.name} produces no {kind.value} rows "
                f"(it produces {', '.join(k.value for k in self.kinds)})"
            )
        return replace(self, mappings=kept)


# --------------------------------------------------------------------------- finding profiles


def builtin_names() -> list[str]:
    """The names of the shipped profiles, sorted."""
    root = resources.files("warroom").joinpath(_DEFS)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def builtin(name: str) -> Profile:
    """The shipped profile ``name``; raises ProfileError listing them if there is none."""
    if name not in builtin_names():
        raise ProfileError(
            f"unknown profile {name!r}; built-in profiles: "
            f"{', '.join(builtin_names())} (or pass a .toml mapping file)"
        )
    text = resources.files("warroom").joinpath(_DEFS, f"{name}.toml").read_text("utf-8")
    return parse(text, source=f"built-in profile {name}", default_name=name, origin="built-in")


def load_file(path: str | Path) -> Profile:
    """Read a user's TOML mapping file; raises ProfileError naming the file and key."""
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except FileNotFoundError:
        raise ProfileError(f"{p}: no such mapping file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{p}: cannot read mapping file: {exc}") from None
    return parse(text, source=str(p), default_name=p.stem.lower(), origin=str(p))


def resolve(spec: str | Path | Profile) -> Profile:
    """``--profile NAME|FILE``: a built-in name, or the path of a .toml mapping file."""
    if isinstance(spec, Profile):
        return spec
    text = str(spec)
    if (
        isinstance(spec, Path)
        or text.lower().endswith(".toml")
        or "/" in text
        or "\\" in text
        or Path(text).is_file()
    ):
        return load_file(text)
    return builtin(text)


def profiles_table() -> pa.Table:
    """``warroom profiles``: name, kinds produced, description and what to export."""
    rows = [builtin(n) for n in builtin_names()]
    return pa.table(
        {
            "name": [p.name for p in rows],
            "kinds": [", ".join(k.value for k in p.kinds) for p in rows],
            "description": [p.description for p in rows],
            "export": [p.export for p in rows],
        }
    )


# --------------------------------------------------------------------------- parsing


_TOP_KEYS = ("name", "description", "export", "mapping")
_MAPPING_KEYS = ("name", "kind", "when", "each", "fields")
_FIELD_KEYS = (
    "path",
    "const",
    "template",
    "map",
    "default",
    "scale",
    "minor_units",
    "negate",
    "round",
    "epoch",
)
_COND_OPS = ("equals", "in", "not_in", "present", "nonzero", "matches")


class _Where:
    """Builds ProfileErrors that name the file and the key."""

    def __init__(self, source: str, key: str = ""):
        self.source, self.key = source, key

    def at(self, key: str) -> _Where:
        return _Where(self.source, f"{self.key}.{key}" if self.key else key)

    def error(self, message: str) -> ProfileError:
        where = f"{self.source}: {self.key}" if self.key else self.source
        return ProfileError(f"{where}: {message}")


def parse(text: str, *, source: str, default_name: str, origin: str) -> Profile:
    """Parse and check a profile's TOML text; raises ProfileError naming ``source``."""
    where = _Where(source)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise where.error(f"not valid TOML: {exc}") from None
    _known(doc, _TOP_KEYS, where)
    name = doc.get("name", default_name)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise where.at("name").error(
            f"{name!r} is not a profile name (lower-case letters, digits, - and _)"
        )
    mappings_raw = doc.get("mapping")
    if not isinstance(mappings_raw, list) or not mappings_raw:
        raise where.error("no [[mapping]]: a profile needs at least one")
    mappings = tuple(_mapping(m, where.at(f"mapping[{i + 1}]")) for i, m in enumerate(mappings_raw))
    names = [m.name for m in mappings]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise where.error(f"mapping name(s) {', '.join(dup)} used twice; give each a name")
    for key in ("description", "export"):
        if not isinstance(doc.get(key, ""), str):
            raise where.at(key).error("expected a string")
    return Profile(name, doc.get("description", ""), doc.get("export", ""), mappings, origin)


def _known(table: object, keys: Sequence[str], where: _Where) -> None:
    if not isinstance(table, dict):
        raise where.error("expected a table")
    for k in table:
        if k not in keys:
            raise where.at(str(k)).error(f"unknown key (expected one of {', '.join(keys)})")


def _mapping(raw: object, where: _Where) -> Mapping:
    _known(raw, _MAPPING_KEYS, where)
    assert isinstance(raw, dict)
    try:
        kind = Kind(raw.get("kind"))
    except ValueError:
        raise where.at("kind").error(
            f"{raw.get('kind')!r} is not a kind (requests, ledger, abuse or prices)"
        ) from None
    name = raw.get("name", kind.value)
    if not isinstance(name, str) or not name:
        raise where.at("name").error("expected a non-empty string")
    each = _each(raw.get("each"), where.at("each"))
    levels = tuple(lvl for lvl, _ in each)
    when_raw = raw.get("when", [])
    when_list = [when_raw] if isinstance(when_raw, dict) else when_raw
    if not isinstance(when_list, list):
        raise where.at("when").error("expected a table or a list of tables")
    when = tuple(_condition(c, where.at(f"when[{i + 1}]"), levels) for i, c in enumerate(when_list))
    fields_raw = raw.get("fields")
    if not isinstance(fields_raw, dict) or not fields_raw:
        raise where.at("fields").error("missing: map at least the required canonical fields")
    by_name = {f.name: f for f in FIELDS[kind]}
    specs: dict[str, FieldSpec] = {}
    for fname, spec in fields_raw.items():
        if fname not in by_name:
            raise where.at(f"fields.{fname}").error(
                f"not a field of {kind.value} (fields: {', '.join(by_name)})"
            )
        specs[fname] = _field(by_name[fname], spec, where.at(f"fields.{fname}"), levels)
    missing = [f.name for f in FIELDS[kind] if f.required and f.name not in specs]
    if missing:
        raise where.at("fields").error(
            f"required field(s) {', '.join(missing)} of {kind.value} not mapped "
            "(give a path, or const = ...)"
        )
    return Mapping(name, kind, specs, when, each)


def _each(raw: object, where: _Where) -> tuple[tuple[str, tuple[JsonPath, ...]], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not raw:
        raise where.error('expected a table of level = path (e.g. { item = "$.data" })')
    out: list[tuple[str, tuple[JsonPath, ...]]] = []
    for lvl, paths in raw.items():
        if not _LEVEL.fullmatch(lvl):
            raise where.at(lvl).error("a level name is letters, digits and _")
        # each level's paths are read from the item of the level before it
        out.append((lvl, _paths(paths, where.at(lvl), (), relative=True)))
    return tuple(out)


def _paths(
    raw: object, where: _Where, levels: tuple[str, ...], *, relative: bool = False
) -> tuple[JsonPath, ...]:
    items = raw if isinstance(raw, list) else [raw]
    texts = [p for p in items if isinstance(p, str)]
    if not items or len(texts) != len(items):
        raise where.error('expected a JSON path ("$.a.b") or a list of them')
    return tuple(parse_path(p, where, () if relative else levels) for p in texts)


_SEGMENT = re.compile(
    r"""\.(?:"((?:[^"\\]|\\.)*)"|([^.\[\]"']+))|\[(?:(\d+)|"([^"]*)"|'([^']*)')\]"""
)


def parse_path(text: str, where: _Where, levels: tuple[str, ...] = ()) -> JsonPath:
    """``$.a."b c"[0]['d']`` -> segments; with ``levels`` the first names one of them."""
    if not text.startswith("$"):
        raise where.error(f"{text!r} is not a JSON path (it starts with $, e.g. $.user.id)")
    pos = 1
    segs: list[str | int] = []
    while pos < len(text):
        m = _SEGMENT.match(text, pos)
        if not m:
            raise where.error(f"{text!r}: cannot read the path at {text[pos:]!r}")
        quoted, plain, index, dq, sq = m.groups()
        if index is not None:
            segs.append(int(index))
        else:
            name = next(s for s in (quoted, plain, dq, sq) if s is not None)
            name = name.replace('\\"', '"')
            if '"' in name:
                raise where.error(f"{text!r}: a key may not hold a double quote")
            segs.append(name)
        pos = m.end()
    if levels:
        if not segs or segs[0] not in levels:
            raise where.error(
                f"{text!r}: with each, a path starts with a level "
                f"({', '.join('$.' + lvl for lvl in levels)})"
            )
        return JsonPath(text, tuple(segs[1:]), str(segs[0]))
    return JsonPath(text, tuple(segs))


def _condition(raw: object, where: _Where, levels: tuple[str, ...]) -> Condition:
    _known(raw, ("path", *_COND_OPS), where)
    assert isinstance(raw, dict)
    if "path" not in raw or not isinstance(raw["path"], str):
        raise where.at("path").error("missing: the JSON path the condition tests")
    path = parse_path(raw["path"], where.at("path"), levels)
    ops = [k for k in raw if k != "path"]
    if len(ops) != 1:
        raise where.error(f"give exactly one test: {', '.join(_COND_OPS)}")
    op, value = ops[0], raw[ops[0]]
    if op in ("present", "nonzero"):
        if not isinstance(value, bool):
            raise where.at(op).error("expected true or false")
        return Condition(path, op, flag=value)
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise where.at(op).error("expected a non-empty list")
        return Condition(path, op, tuple(_scalar(v, where.at(op)) for v in value))
    text = _scalar(value, where.at(op))
    if op == "matches":
        try:
            re.compile(text)
        except re.error as exc:
            raise where.at(op).error(f"not a regular expression: {exc}") from None
    return Condition(path, op, (text,))


def _scalar(value: object, where: _Where) -> str:
    """A TOML value used as text: strings, integers and booleans (never floats)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int)):
        return str(value)
    if isinstance(value, float):
        raise where.error('write decimal numbers as strings ("0.01"), so they stay exact')
    raise where.error("expected a string or an integer")


def _field(f: Field, raw: object, where: _Where, levels: tuple[str, ...]) -> FieldSpec:
    if isinstance(raw, (str, list)):
        raw = {"path": raw}
    _known(raw, _FIELD_KEYS, where)
    assert isinstance(raw, dict)
    sources = [k for k in ("path", "const", "template") if k in raw]
    if len(sources) != 1:
        raise where.error("give exactly one of path, const or template")
    spec: dict[str, Any] = {}
    if "path" in raw:
        spec["paths"] = _paths(raw["path"], where.at("path"), levels)
    elif "const" in raw:
        spec["const"] = _scalar(raw["const"], where.at("const"))
    else:
        spec["template"] = _template(raw["template"], where.at("template"), levels)
    if "map" in raw:
        if not isinstance(raw["map"], dict) or not raw["map"]:
            raise where.at("map").error("expected a table of source value = canonical value")
        spec["map"] = tuple(
            (str(k), _scalar(v, where.at(f"map.{k}"))) for k, v in raw["map"].items()
        )
    if "default" in raw:
        spec["default"] = _scalar(raw["default"], where.at("default"))
    money = f.type is FieldType.MONEY
    for key in ("scale", "minor_units", "negate", "round"):
        if key in raw and not money:
            raise where.at(key).error(f"only for money fields ({f.name} is not one)")
    if "epoch" in raw and f.type is not FieldType.TIMESTAMP:
        raise where.at("epoch").error(f"only for timestamp fields ({f.name} is not one)")
    if "scale" in raw and "minor_units" in raw:
        raise where.error("give scale or minor_units, not both")
    if "scale" in raw:
        spec["scale_exp"] = _scale_exp(raw["scale"], where.at("scale"))
    if "minor_units" in raw:
        if not isinstance(raw["minor_units"], str):
            raise where.at("minor_units").error("expected the path of the currency code")
        spec["minor_units"] = parse_path(raw["minor_units"], where.at("minor_units"), levels)
    if "negate" in raw:
        if not isinstance(raw["negate"], bool):
            raise where.at("negate").error("expected true or false")
        spec["negate"] = raw["negate"]
    if "round" in raw:
        r = raw["round"]
        if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r <= 6:
            raise where.at("round").error("expected the number of decimal places, 0 to 6")
        spec["round"] = r
    if "epoch" in raw:
        if raw["epoch"] not in ("s", "ms"):
            raise where.at("epoch").error('expected "s" or "ms"')
        spec["epoch"] = raw["epoch"]
    return FieldSpec(f, **spec)


def _scale_exp(raw: object, where: _Where) -> int:
    """``scale`` is a power of ten ("0.01", "1000"): exact DECIMAL arithmetic, no rounding."""
    text = _scalar(raw, where)
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise where.error(f"{text!r} is not a number") from None
    if d <= 0 or d.normalize().as_tuple().digits != (1,):
        raise where.error(f'{text!r}: scale is a power of ten, e.g. "0.01" for cents')
    exp = int(d.normalize().as_tuple().exponent)
    if not -12 <= exp <= 6:
        raise where.error(f"{text!r}: scale must lie between 1e-12 and 1e6")
    return exp


_PLACEHOLDER = re.compile(r"\{(\$[^{}]*?)(\?)?\}")


def _template(
    raw: object, where: _Where, levels: tuple[str, ...]
) -> tuple[str | tuple[JsonPath, bool], ...]:
    if not isinstance(raw, str):
        raise where.error('expected a string such as "{$.source}/{$.id}"')
    parts: list[str | tuple[JsonPath, bool]] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(raw):
        if m.start() > pos:
            parts.append(raw[pos : m.start()])
        parts.append((parse_path(m.group(1), where, levels), m.group(2) == "?"))
        pos = m.end()
    if pos < len(raw):
        parts.append(raw[pos:])
    if not any(isinstance(p, tuple) for p in parts):
        raise where.error("a template needs at least one {$.path} placeholder (or use const)")
    return tuple(parts)


# --------------------------------------------------------------------------- SQL


_MACROS = [
    # an exact decimal as short text (no trailing zeros)
    r"""CREATE OR REPLACE TEMP MACRO wr_dtext(d) AS
        regexp_replace(regexp_replace(CAST(d AS VARCHAR), '(\.[0-9]*?)0+$', '\1'), '\.$', '')""",
]


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _duck(segments: Sequence[str | int]) -> str:
    out = "$"
    for s in segments:
        out += f"[{s}]" if isinstance(s, int) else f'."{s}"'
    return out


class _Docs:
    """The JSON documents one mapping reads. Each document is parsed twice in all
    (every path's text, every path's JSON type), however many paths it has."""

    def __init__(self, doc_cols: dict[str | None, str]):
        self.doc_cols = doc_cols
        self.paths: dict[str | None, list[str]] = {lvl: [] for lvl in doc_cols}
        #: every JsonPath read, in order: its columns are p<k>_t (text), p<k>_y (type)
        self.read: list[JsonPath] = []

    @staticmethod
    def _lists(level: str | None) -> tuple[str, str]:
        tag = "row" if level is None else level
        return f"es_{tag}", f"ey_{tag}"

    def _ref(self, level: str | None, duck_path: str) -> tuple[str, str]:
        lst = self.paths[level]
        if duck_path not in lst:
            lst.append(duck_path)
        i = lst.index(duck_path) + 1
        es, ey = self._lists(level)
        return f"{es}[{i}]", f"{ey}[{i}]"

    def col(self, p: JsonPath) -> int:
        """Register ``p``; its text and JSON type are the columns p<k>_t, p<k>_y."""
        if p not in self.read:
            self.read.append(p)
        return self.read.index(p)

    def _value(self, p: JsonPath) -> tuple[str, str]:
        """Text and JSON type of the value at ``p``. A top-level value holding a JSON
        object or array as a string (a JSON column exported as text, e.g. LiteLLM's
        ``metadata``) is looked into as well, parsed only where the path is not found
        directly."""
        t, y = self._ref(p.level, _duck(p.segments))
        if len(p.segments) < 2:
            return t, y
        pt, py = self._ref(p.level, _duck(p.segments[:1]))
        held = f"{py} = 'VARCHAR' AND left(ltrim({pt}), 1) IN ('{{', '[')"
        inner, rest = f"TRY_CAST({pt} AS JSON)", _lit(_duck(p.segments[1:]))
        ok = _set(t, y)
        return (
            f"CASE WHEN {ok} THEN {t} WHEN {held} THEN json_extract_string({inner}, {rest}) END",
            f"CASE WHEN {ok} THEN {y} WHEN {held} THEN json_type({inner}, {rest}) END",
        )

    def reads(self) -> str:
        """Stage 2: the p<k>_t / p<k>_y columns of every registered path."""
        cols = []
        for k, p in enumerate(self.read):
            t, y = self._value(p)
            cols.append(f"{t} AS p{k}_t, {y} AS p{k}_y")
        return ", ".join(cols)

    def extraction(self) -> str:
        """Stage 1: per document, the texts and the types of all its paths."""
        cols = []
        for lvl, doc in self.doc_cols.items():
            if self.paths[lvl]:
                lst = ", ".join(_lit(p) for p in self.paths[lvl])
                es, ey = self._lists(lvl)
                cols.append(
                    f"json_extract_string({doc}, [{lst}]) AS {es}, "
                    f"json_type({doc}, [{lst}]) AS {ey}"
                )
        return ", ".join(cols)


def _set(t: str, y: str) -> str:
    """SQL: the value is set (present, not a JSON null, not an empty string)."""
    return f"({y} IS NOT NULL AND {y} <> 'NULL' AND NOT ({y} = 'VARCHAR' AND {t} = ''))"


def _pick(ks: Sequence[int], part: str) -> str:
    """The text (``part`` t) or type (y) of the first of the paths ``ks`` that is set."""
    whens = " ".join(f"WHEN {_set(f'p{k}_t', f'p{k}_y')} THEN p{k}_{part}" for k in ks)
    return f"CASE {whens} END"


def _condition_sql(c: Condition, text: str) -> str:
    match c.op:
        case "equals":
            return f"coalesce({text} = {_lit(c.values[0])}, false)"
        case "in":
            return f"coalesce({text} IN ({', '.join(map(_lit, c.values))}), false)"
        case "not_in":
            return f"coalesce({text} NOT IN ({', '.join(map(_lit, c.values))}), true)"
        case "present":
            return f"({text} IS {'NOT ' if c.flag else ''}NULL)"
        case "nonzero":
            zero = (
                f"coalesce(regexp_full_match(trim({text}), {_NUMBER}) AND "
                f"TRY_CAST(trim({text}) AS DOUBLE) = 0, false)"
            )
            nonzero = f"({text} IS NOT NULL AND NOT {zero})"
            return nonzero if c.flag else f"NOT {nonzero}"
        case _:
            return f"coalesce(regexp_full_match({text}, {_lit(c.values[0])}), false)"
    raise AssertionError(c.op)  # pragma: no cover


def _money_sql(spec: FieldSpec, s: str, d: str, cur: str) -> str:
    """``s`` (text; ``d`` its DECIMAL(38,18) value, ``cur`` the currency for minor units)
    through scale or minor units, sign flip and rounding, in exact DECIMAL arithmetic."""
    # |d| is bounded by the CASE below, so the DECIMAL products cannot overflow
    limit = 15 - max(spec.scale_exp or 0, 0)
    bound = f"CAST('{10**limit}' AS DECIMAL(38,18))"
    y = f"greatest(least({d}, {bound}), -{bound})"
    if spec.scale_exp is not None:
        e = spec.scale_exp
        digits = max(-e, 0)
        factor = f"CAST('{Decimal(10) ** e:f}' AS DECIMAL({max(e, 0) + 1 + digits},{digits}))"
        y = f"({y} * {factor})"
    if spec.minor_units is not None:
        zero = ", ".join(map(_lit, ZERO_DECIMAL))
        three = ", ".join(map(_lit, THREE_DECIMAL))
        factor = (
            f"CAST(CASE WHEN {cur} IN ({zero}) THEN '1' WHEN {cur} IN ({three}) "
            "THEN '0.001' ELSE '0.01' END AS DECIMAL(4,3))"
        )
        y = f"({y} * {factor})"
    if spec.negate:
        y = f"(-{y})"
    if spec.round is not None:
        y = f"round({y}, {spec.round})"
    keep = f"{d} IS NULL OR abs({d}) >= {bound}"
    if spec.round is None:
        # Digits past the 18th decimal place (or an exponent form not exact there)
        # cannot be converted without rounding: without an explicit `round` the text
        # goes through as it is, and is rejected for its decimal places.
        keep += (
            rf" OR regexp_matches({s}, '\.[0-9]{{18}}[0-9]*[1-9]') OR "
            f"(contains(lower({s}), 'e') AND TRY_CAST(trim({s}) AS DOUBLE) <> "
            f"CAST({d} AS DOUBLE))"
        )
    return f"CASE WHEN {keep} THEN {s} ELSE wr_dtext({y}) END"


def _epoch_sql(spec: FieldSpec, s: str, d: str) -> str:
    """Epoch seconds or milliseconds (``d``, the number in ``s``) -> ISO text; any
    other text unchanged."""
    assert spec.epoch is not None
    secs = d if spec.epoch == "s" else f"({d} * CAST('0.001' AS DECIMAL(4,3)))"
    clamped = f"greatest(least({secs}, 4102444800), 0)"
    iso = (
        f"strftime(make_timestamp(CAST(round({clamped} * 1000000) AS BIGINT)), "
        "'%Y-%m-%dT%H:%M:%S.%fZ')"
    )
    return (
        f"CASE WHEN {d} IS NULL THEN {s} "
        f"WHEN {secs} >= 0 AND {secs} < 4102444800 THEN {iso} "
        f"ELSE {s} || ' (epoch {spec.epoch}, out of range)' END"
    )


def _converts(spec: FieldSpec | None) -> bool:
    return spec is not None and (
        spec.epoch is not None
        or spec.scale_exp is not None
        or spec.minor_units is not None
        or spec.negate
        or spec.round is not None
    )


def mapping_values(
    m: Mapping, source: str, keys: Sequence[str], doc_cols: dict[str | None, str]
) -> str:
    """SELECT ``line``, ``keys``, ``pos``, ``pre_reason`` and the ``v_/n_/c_`` columns
    ``convert.typed_select`` reads, for the rows of ``source`` that ``m`` applies to.

    Built in stages, so that every value is read or computed once per row: the
    documents' paths (one parse per document), the source texts, map and
    default, the numbers, the conversions.
    """
    docs = _Docs(doc_cols)
    fields = FIELDS[m.kind]
    specs = {f.name: m.fields.get(f.name) for f in fields}
    picks: list[str] = []  # stage 3: the value of each field and test, from its paths
    for f in fields:
        spec = specs[f.name]
        if spec is None:
            continue
        if spec.paths:
            ks = [docs.col(p) for p in spec.paths]
            picks.append(f"{_pick(ks, 't')} AS x_{f.name}_t, {_pick(ks, 'y')} AS x_{f.name}_y")
        elif spec.template is not None:
            for i, part in enumerate(spec.template):
                if not isinstance(part, str):
                    picks.append(f"{_pick([docs.col(part[0])], 't')} AS t_{f.name}_{i}")
        if spec.minor_units is not None:
            picks.append(f"lower({_pick([docs.col(spec.minor_units)], 't')}) AS cur_{f.name}")
    for i, cond in enumerate(m.when):
        picks.append(f"{_pick([docs.col(cond.path)], 't')} AS w_{i}")
    base: list[str] = []  # stage 4: the source text, whether it is a JSON number or container
    mapped: list[str] = []  # stage 5: after map and default
    for f in fields:
        spec, name = specs[f.name], f.name
        carry_cur = f", cur_{name}" if spec is not None and spec.minor_units else ""
        if spec is None:
            base.append(f"NULL::VARCHAR AS b_{name}, false AS n0_{name}, NULL::VARCHAR AS c_{name}")
            mapped.append(f"b_{name} AS s_{name}, n0_{name} AS n_{name}, c_{name}")
            continue
        if spec.paths:
            y = f"x_{name}_y"
            base.append(
                f"x_{name}_t AS b_{name}, "
                f"coalesce({y} NOT IN ('VARCHAR', 'NULL'), false) AS n0_{name}, "
                f"CASE {y} WHEN 'OBJECT' THEN 'an object' "
                f"WHEN 'ARRAY' THEN 'an array' END AS c_{name}" + carry_cur
            )
        elif spec.const is not None:
            base.append(
                f"{_lit(spec.const)} AS b_{name}, false AS n0_{name}, "
                f"NULL::VARCHAR AS c_{name}" + carry_cur
            )
        else:
            assert spec.template is not None
            texts = [
                _lit(p)
                if isinstance(p, str)
                else (f"coalesce(t_{name}_{i}, '')" if p[1] else f"t_{name}_{i}")
                for i, p in enumerate(spec.template)
            ]
            required = [
                f"t_{name}_{i}"
                for i, p in enumerate(spec.template)
                if not isinstance(p, str) and not p[1]
            ]
            missing = " OR ".join(f"{r} IS NULL" for r in required) or "false"
            base.append(
                f"CASE WHEN {missing} THEN NULL ELSE concat({', '.join(texts)}) END "
                f"AS b_{name}, false AS n0_{name}, NULL::VARCHAR AS c_{name}" + carry_cur
            )
        b, n = f"b_{name}", f"n0_{name}"
        text = b
        if spec.map:
            explicit = [(k, v) for k, v in spec.map if k != "*"]
            wild = dict(spec.map).get("*")
            whens = "".join(f" WHEN {b} = {_lit(k)} THEN {_lit(v)}" for k, v in explicit)
            other = _lit(wild) if wild is not None else b
            if wild is not None:
                n = "false"
            elif explicit:
                n = (
                    f"CASE WHEN {b} IN ({', '.join(_lit(k) for k, _ in explicit)}) "
                    f"THEN false ELSE {n} END"
                )
            text = f"CASE WHEN {b} IS NULL THEN NULL{whens} ELSE {other} END"
        if spec.default is not None:
            n = f"CASE WHEN {b} IS NULL THEN false ELSE {n} END"
            text = f"coalesce({text}, {_lit(spec.default)})"
        mapped.append(f"{text} AS s_{name}, {n} AS n_{name}, c_{name}" + carry_cur)
    numbers: list[str] = []  # stage 6: the number in a text that gets converted
    final: list[str] = []  # stage 7: conversions, and the columns typed_select reads
    for f in fields:
        spec, name = specs[f.name], f.name
        v = f"s_{name}"
        if spec is not None and _converts(spec):
            scale = 6 if f.type is FieldType.TIMESTAMP else 18
            numbers.append(
                f"CASE WHEN regexp_full_match(trim(s_{name}), {_NUMBER}) "
                f"THEN TRY_CAST(trim(s_{name}) AS DECIMAL(38,{scale})) END "
                f"AS d_{name}"
            )
            if f.type is FieldType.TIMESTAMP:
                v = _epoch_sql(spec, f"s_{name}", f"d_{name}")
            else:
                v = _money_sql(spec, f"s_{name}", f"d_{name}", f"cur_{name}")
        final.append(f"{v} AS v_{name}")
        if f.type is FieldType.MONEY:
            final.append(f"n_{name}")
        if f.type is FieldType.STRING:
            final.append(f"c_{name}")
    where = " AND ".join(_condition_sql(cond, f"w_{i}") for i, cond in enumerate(m.when)) or "true"
    carry = ", ".join(["line", *keys, "pos"])
    reads = docs.reads()  # registers the documents' paths: before the extraction
    extraction = docs.extraction()
    s1 = f"SELECT {carry}" + (f", {extraction}" if extraction else "") + f" FROM {source}"
    s2 = f"SELECT {carry}" + (f", {reads}" if reads else "") + f" FROM ({s1})"
    s3 = f"SELECT {carry}" + "".join(f", {x}" for x in picks) + f" FROM ({s2})"
    s4 = f"SELECT {carry}, {', '.join(base)} FROM ({s3}) WHERE {where}"
    s5 = f"SELECT {carry}, {', '.join(mapped)} FROM ({s4})"
    s6 = f"SELECT *{''.join(f', {x}' for x in numbers)} FROM ({s5})"
    return f"SELECT {carry}, NULL::VARCHAR AS pre_reason, {', '.join(final)} FROM ({s6})"


def _relabel(m: Mapping, reason: str) -> str:
    """Reasons name the source field (``startTime: missing``), not the canonical one."""
    cases = []
    for name, spec in m.fields.items():
        label = spec.label
        if label is None or label == name:
            continue
        prefix = f"{name}: "
        cases.append(
            f"WHEN starts_with(p, {_lit(prefix)}) THEN {_lit(label + ': ')} || "
            f"p[{len(prefix) + 1}:]"
        )
    if not cases:
        return reason
    return (
        f"array_to_string(list_transform(string_split({reason}, '; '), "
        f"lambda p: CASE {' '.join(cases)} ELSE p END), '; ')"
    )


# --------------------------------------------------------------------------- loading

InsertGood = Callable[[duckdb.DuckDBPyConnection, Kind, str, dict[str, object]], int]


@dataclass
class _Spec:
    """One distinct ``each`` of the profile: the items it expands rows into."""

    levels: tuple[tuple[str, tuple[JsonPath, ...]], ...]
    table: str
    mappings: list[int] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        return [f"k_{lvl}" for lvl, _ in self.levels]


def _level_items(prev: str, paths: Sequence[JsonPath]) -> str:
    """The items of one level: the array found first (its elements), or an object."""
    vals = [f"json_extract({prev}, {_lit(_duck(p.segments))})" for p in paths]
    chosen = (
        "coalesce("
        + ", ".join(f"CASE WHEN json_type({v}) IN ('ARRAY', 'OBJECT') THEN {v} END" for v in vals)
        + ")"
    )
    return (
        f"CASE json_type({chosen}) WHEN 'ARRAY' THEN json_extract({chosen}, '$[*]') "
        f"WHEN 'OBJECT' THEN [{chosen}] END"
    )


def _expand(con: duckdb.DuckDBPyConnection, spec: _Spec) -> None:
    """Rows -> the items of ``spec``, numbered (k_<level>, from 1) and with ``pos``
    ("bucket 2, result 1") where a row holds more than one item."""
    prev_cols = ["line"]
    sql = "SELECT line, d::JSON AS l_row FROM wr_prow WHERE pre_reason IS NULL"
    prev_doc = "l_row"
    for lvl, paths in spec.levels:
        carry = ", ".join(prev_cols)
        sql = (
            f"SELECT {carry}, unnest(items) AS l_{lvl}, "
            f"unnest(range(1, len(items) + 1)) AS k_{lvl} FROM ("
            f"SELECT {carry}, {_level_items(prev_doc, paths)} AS items FROM ({sql}))"
        )
        prev_cols += [f"l_{lvl}", f"k_{lvl}"]
        prev_doc = f"l_{lvl}"
    pos = " || ', ' || ".join(f"'{lvl} ' || k_{lvl}" for lvl, _ in spec.levels)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {spec.table} AS SELECT *, "
        f"CASE WHEN count(*) OVER (PARTITION BY line) > 1 THEN {pos} END AS pos "
        f"FROM ({sql})"
    )
    first_paths = spec.levels[0][1]
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {spec.table}_rows AS SELECT line FROM wr_prow "
        f"WHERE pre_reason IS NULL AND "
        f"{_level_items('d::JSON', first_paths)} IS NOT NULL"
    )


def install_macros(con: duckdb.DuckDBPyConnection) -> None:
    for stmt in _MACROS:
        con.execute(stmt)


def apply(
    con: duckdb.DuckDBPyConnection,
    profile: Profile,
    source_id: int,
    insert_good: InsertGood,
    pre_bad: Sequence[tuple[int, str, str]] = (),
) -> tuple[int, int]:
    """Map the rows of the temp table ``wr_prow`` through ``profile`` into the
    canonical tables; returns (rows loaded, rows rejected).

    ``wr_prow`` has ``line``, ``raw`` (the text kept for a reject), ``d`` (the row
    as JSON text) and ``pre_reason`` (why the row is not a JSON object, or NULL).
    ``pre_bad`` are (line, raw, reason) of lines that could not even be read.
    A row is loaded when every mapping that applies to it succeeds, and rejected
    as a whole (one reject, reasons joined) otherwise, or when none applies.
    """
    install_macros(con)
    specs: dict[tuple[tuple[str, tuple[JsonPath, ...]], ...], _Spec] = {}
    plain: list[int] = []
    for i, m in enumerate(profile.mappings):
        if m.each:
            spec = specs.setdefault(m.each, _Spec(m.each, f"wr_each{len(specs)}"))
            spec.mappings.append(i)
        else:
            plain.append(i)
    for spec in specs.values():
        _expand(con, spec)
    # parts of the reasons of bad rows: (line, order, text)
    con.execute("CREATE OR REPLACE TEMP TABLE wr_pparts (line BIGINT, ord INTEGER, reason VARCHAR)")
    con.execute(
        "INSERT INTO wr_pparts SELECT line, 0, pre_reason FROM wr_prow WHERE pre_reason IS NOT NULL"
    )
    spec_of: dict[int, _Spec] = {i: s for s in specs.values() for i in s.mappings}
    for i, m in enumerate(profile.mappings):
        spec_or_none = spec_of.get(i)
        if spec_or_none is None:
            keys: list[str] = []
            source = "(SELECT *, NULL::VARCHAR AS pos FROM wr_prow WHERE pre_reason IS NULL)"
            doc_cols: dict[str | None, str] = {None: "d"}
        else:
            keys = spec_or_none.keys
            source = spec_or_none.table
            doc_cols = {lvl: f"l_{lvl}" for lvl, _ in m.each}
        values = mapping_values(m, source, keys, doc_cols)
        typed = typed_select(m.kind, f"({values})", extra=(*keys, "pos"), containers=True)
        con.execute(f"CREATE OR REPLACE TEMP TABLE wr_pm{i} AS {typed}")
        reason = _relabel(m, "reason")
        con.execute(
            f"INSERT INTO wr_pparts SELECT line, {i + 1}, "
            f"coalesce(pos || ': ', '') || {reason} FROM wr_pm{i} "
            "WHERE reason IS NOT NULL"
        )
    # rows and items no mapping took
    for n, spec in enumerate(specs.values()):
        taken = " UNION ".join(
            f"SELECT line, {', '.join(spec.keys)} FROM wr_pm{i}" for i in spec.mappings
        )
        desc = "; ".join(profile.mappings[i].describe() for i in spec.mappings)
        on = " AND ".join(f"t.{k} = e.{k}" for k in ["line", *spec.keys])
        con.execute(
            f"INSERT INTO wr_pparts SELECT e.line, {1000 + n}, coalesce(e.pos || ': ', '') || "
            f"{_lit('no mapping applies (' + desc + ')')} FROM {spec.table} e "
            f"WHERE NOT EXISTS (SELECT 1 FROM ({taken}) t WHERE {on})"
        )
    handled = [f"SELECT line FROM {s.table}_rows" for s in specs.values()]
    handled += [f"SELECT line FROM wr_pm{i}" for i in plain]
    desc = "; ".join(m.describe() for m in profile.mappings)
    unhandled = (
        f"NOT IN (SELECT line FROM ({' UNION '.join(handled)}))" if handled else "IS NOT NULL"
    )
    con.execute(
        f"INSERT INTO wr_pparts SELECT line, 2000, "
        f"{_lit('no mapping applies (' + desc + ')')} FROM wr_prow "
        f"WHERE pre_reason IS NULL AND line {unhandled}"
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE wr_pbad AS
            SELECT line, {_lit(profile.name + ": ")} || string_agg(reason, '; '
                ORDER BY ord, reason) AS reason
            FROM (SELECT line, reason, min(ord) AS ord FROM wr_pparts GROUP BY line, reason)
            GROUP BY line"""
    )
    params: dict[str, object] = {"source_id": source_id}
    for i, m in enumerate(profile.mappings):
        insert_good(
            con,
            m.kind,
            f"SELECT * FROM wr_pm{i} WHERE line NOT IN (SELECT line FROM wr_pbad)",
            params,
        )
    con.execute(
        "INSERT INTO rejects SELECT $source_id, b.line, r.raw, b.reason "
        "FROM wr_pbad b JOIN wr_prow r USING (line)",
        params,
    )
    if pre_bad:
        con.executemany(
            "INSERT INTO rejects VALUES (?, ?, ?, ?)",
            [[source_id, line, raw, f"{profile.name}: {why}"] for line, raw, why in pre_bad],
        )
    row = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE line IN (SELECT line FROM wr_pbad)) FROM wr_prow"
    ).fetchone()
    total, bad = (int(row[0]), int(row[1])) if row else (0, 0)
    for i in range(len(profile.mappings)):
        con.execute(f"DROP TABLE wr_pm{i}")
    for spec in specs.values():
        con.execute(f"DROP TABLE {spec.table}")
        con.execute(f"DROP TABLE {spec.table}_rows")
    con.execute("DROP TABLE wr_pparts")
    con.execute("DROP TABLE wr_pbad")
    return total - bad, bad + len(pre_bad)
