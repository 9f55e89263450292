"""What a profile is, once read: its mappings, and for each canonical field
where its value comes from and how it is converted.

Plain frozen data: ``parse`` builds it from TOML and checks it, ``compile``
turns a mapping into SQL, ``apply`` runs them on a file's rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from warroom.errors import ProfileError
from warroom.model import Field, Kind


@dataclass(frozen=True)
class JsonPath:
    """A path into a row (``$.a.b[0]``), or with ``each`` into one of its levels."""

    text: str
    segments: tuple[str | int, ...]
    #: the ``each`` level the path starts from; None for the row itself
    level: str | None = None
    #: the mapping has this one level only: messages name the path inside its
    #: element (``customer_id``, as the file spells it), not the level
    quiet: bool = False

    @property
    def label(self) -> str:
        """How messages name the source field: the path without ``$.``."""
        text = self.text
        if self.quiet and self.level is not None:
            text = "$" + text[len(self.level) + 2 :]
        body = text[2:] if text.startswith("$.") else text[1:]
        return body or "(the row)"


#: a mapping's ``each``: (level name, the paths that may hold its array or
#: object), outermost first
Levels = tuple[tuple[str, tuple[JsonPath, ...]], ...]


@dataclass(frozen=True)
class Condition:
    """A mapping's ``when``: one test of the value at a path."""

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
    #: appended to this field's reasons: what the user can do about them
    hint: str | None = None

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
    """One kind of canonical row a profile produces, and from which input rows."""

    name: str
    kind: Kind
    fields: dict[str, FieldSpec]
    when: tuple[Condition, ...] = ()
    each: Levels = ()
    #: a mapping that rejects the rows it applies to with this reason (literal
    #: text and placeholders, as a template) instead of loading them
    reject: tuple[str | tuple[JsonPath, bool], ...] | None = None

    def describe(self) -> str:
        cond = " and ".join(c.describe() for c in self.when) or "any row"
        return f"{self.name}: {cond}"


@dataclass(frozen=True)
class Profile:
    """An import profile: a foreign format, read through its mappings."""

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
