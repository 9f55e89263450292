"""Import profiles: foreign log formats (LiteLLM, Stripe, OpenMeter, ...) -> canonical fields.

An engineer in a war room has their gateway's and billing system's own
exports, not warroom's canonical files. A profile says how to read one such
format: for each kind of canonical row it produces (a *mapping*), which field
of the input row feeds which canonical field, and how to convert it (minor
units, sign flips, epoch timestamps, value maps, constants).

Profiles are TOML. The built-in ones ship in ``defs/`` and are written in
exactly the format a user's own mapping file uses, so every built-in exercises
the user format. The mapping itself runs in SQL: every input row arrives as
JSON text, each field spec compiles to an expression over it giving the
``v_<field>`` text that ``ingest.convert.typed_select`` types and checks, so a
row read through a profile is accepted or rejected exactly like a canonical
one. A row that feeds several mappings is loaded only if all of them succeed.

One module per step:

* ``model``: the Profile, its mappings and field specs, as frozen data.
* ``parse``: reading a profile's TOML, strictly (the format is described there).
* ``lookup``: ``--profile NAME|FILE``: the built-ins, or a user's mapping file.
* ``compile``: a mapping -> the SQL giving its ``v_<field>`` texts.
* ``apply``: running a profile on a file's rows.
"""

from __future__ import annotations

from warroom.profiles.apply import InsertGood, map_rows
from warroom.profiles.lookup import builtin, builtin_names, load_file, profiles_table, resolve
from warroom.profiles.model import Condition, FieldSpec, JsonPath, Mapping, Profile
from warroom.profiles.parse import parse_profile, with_user

__all__ = [
    "with_user",
    "Condition",
    "FieldSpec",
    "InsertGood",
    "JsonPath",
    "Mapping",
    "Profile",
    "builtin",
    "builtin_names",
    "load_file",
    "map_rows",
    "parse_profile",
    "profiles_table",
    "resolve",
]
