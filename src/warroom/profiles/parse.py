"""Reading a profile's TOML, strictly: every key known, every value checked,
and every error naming the file and the key (``mapping[2].fields.amount.scale:
...``), so a user's mapping file fails on load, not halfway through a file.

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
from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from typing import Any

from warroom.errors import ProfileError
from warroom.model import FIELDS, Field, FieldType, Kind
from warroom.profiles.model import Condition, FieldSpec, JsonPath, Levels, Mapping, Profile

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_LEVEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOP_KEYS = ("name", "description", "export", "mapping")
_MAPPING_KEYS = ("name", "kind", "when", "each", "fields", "reject")
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
    "hint",
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


def parse_profile(text: str, *, source: str, default_name: str, origin: str) -> Profile:
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
    if "reject" in raw:
        if "fields" in raw:
            raise where.at("reject").error("a mapping that rejects has no fields")
        reason = _reason(raw["reject"], where.at("reject"), levels)
        return Mapping(name, kind, {}, when, each, reason)
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


def _each(raw: object, where: _Where) -> Levels:
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
        return JsonPath(text, tuple(segs[1:]), str(segs[0]), quiet=len(levels) == 1)
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
    """One ``[mapping.fields]`` entry: a path (or list of paths) alone, or a table."""
    if isinstance(raw, str) and not raw.startswith("$"):
        raise where.error(
            f"{raw!r} is not a JSON path (a path starts with $, e.g. $.user.id); "
            f"for a fixed value write {f.name} = {{ const = {_toml_str(raw)} }}"
        )
    if isinstance(raw, (str, list)):
        raw = {"path": raw}
    _known(raw, _FIELD_KEYS, where)
    assert isinstance(raw, dict)
    spec = _field_source(raw, where, levels)
    _check_conversions_apply(f, raw, where)
    spec.update(_field_conversions(raw, where, levels))
    return FieldSpec(f, **spec)


def _field_source(raw: dict[str, Any], where: _Where, levels: tuple[str, ...]) -> dict[str, Any]:
    """Where the value comes from (path, const or template), with its map and default."""
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
    if "hint" in raw:
        if not isinstance(raw["hint"], str) or not raw["hint"]:
            raise where.at("hint").error("expected a non-empty string")
        spec["hint"] = raw["hint"]
    return spec


def _check_conversions_apply(f: Field, raw: dict[str, Any], where: _Where) -> None:
    """Money conversions only on money fields, ``epoch`` only on timestamps."""
    money = f.type is FieldType.MONEY
    for key in ("scale", "minor_units", "negate", "round"):
        if key in raw and not money:
            raise where.at(key).error(f"only for money fields ({f.name} is not one)")
    if "epoch" in raw and f.type is not FieldType.TIMESTAMP:
        raise where.at("epoch").error(f"only for timestamp fields ({f.name} is not one)")
    if "scale" in raw and "minor_units" in raw:
        raise where.error("give scale or minor_units, not both")


def _field_conversions(
    raw: dict[str, Any], where: _Where, levels: tuple[str, ...]
) -> dict[str, Any]:
    """``scale``, ``minor_units``, ``negate``, ``round`` and ``epoch``, checked."""
    spec: dict[str, Any] = {}
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
    return spec


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


def _toml_str(text: str) -> str:
    """``text`` as a TOML basic string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _reason(
    raw: object, where: _Where, levels: tuple[str, ...]
) -> tuple[str | tuple[JsonPath, bool], ...]:
    """A ``reject`` reason: text, with ``{$.path}`` placeholders if it likes."""
    if not isinstance(raw, str) or not raw.strip():
        raise where.error("expected the reason, a non-empty string")
    if "{$" not in raw:
        return (raw,)
    return _template(raw, where, levels)


def user_source(user: str, each: Levels) -> JsonPath | str:
    """``--user-from``: a path (relative to the innermost ``each`` level) or a constant.

    Raises ProfileError for a path that cannot be read."""
    if not user.startswith("$"):
        if not user.strip():
            raise ProfileError("--user-from: expected a name or a JSON path ($.field)")
        return user
    where = _Where("--user-from")
    path = parse_path(user, where)
    if not each:
        return path
    level = each[-1][0]
    return JsonPath(f"$.{level}{user[1:]}", path.segments, level, quiet=len(each) == 1)


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


def with_user(profile: Profile, user: str) -> Profile:
    """``profile`` with ``user`` as the account where its own fields name none
    (``--user-from``): a JSON path into the row (read from the record an ``each``
    maps, its innermost level) when it starts with ``$``, else a constant.

    Raises ProfileError for a path that cannot be read.
    """
    mappings = []
    for m in profile.mappings:
        spec = m.fields.get("user_id")
        if spec is not None and spec.paths:
            extra = user_source(user, m.each)
            if isinstance(extra, JsonPath):
                spec = replace(spec, paths=(*spec.paths, extra))
            else:
                spec = replace(spec, default=spec.default or extra)
            m = replace(m, fields={**m.fields, "user_id": spec})
        mappings.append(m)
    return replace(profile, mappings=tuple(mappings))
