"""``--profile NAME|FILE`` -> a Profile: the built-ins shipped in ``defs/``, or a
user's own TOML mapping file (the same format, checked the same way).

The built-ins are package data, read with ``importlib.resources`` so they load
from a checkout and from an installed wheel alike.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pyarrow as pa

from warroom.errors import ProfileError
from warroom.profiles.model import Profile
from warroom.profiles.parse import parse_profile

#: where the built-in profiles live inside this package
_DEFS = "defs"


def builtin_names() -> list[str]:
    """The names of the shipped profiles, sorted."""
    root = resources.files("warroom.profiles").joinpath(_DEFS)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def builtin(name: str) -> Profile:
    """The shipped profile ``name``; raises ProfileError listing them if there is none."""
    if name not in builtin_names():
        raise ProfileError(
            f"unknown profile {name!r}; built-in profiles: "
            f"{', '.join(builtin_names())} (or pass a .toml mapping file)"
        )
    text = resources.files("warroom.profiles").joinpath(_DEFS, f"{name}.toml").read_text("utf-8")
    return parse_profile(
        text, source=f"built-in profile {name}", default_name=name, origin="built-in"
    )


def load_file(path: str | Path) -> Profile:
    """Read a user's TOML mapping file; raises ProfileError naming the file and key."""
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except FileNotFoundError:
        raise ProfileError(f"{p}: no such mapping file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{p}: cannot read mapping file: {exc}") from None
    return parse_profile(text, source=str(p), default_name=p.stem.lower(), origin=str(p))


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
