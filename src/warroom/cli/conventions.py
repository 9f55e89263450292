"""How the command line looks and answers a typo, the same for every command.

``WarroomGroup`` is the application's click group. It tidies each command's
parameters before they are shown (help and usage: ``--db FILE``, ``--kind
[requests|ledger|abuse|prices]``, ``PATH...``; a flag shows no value at all) and
replaces click's guess for an unknown option by the closest real one, or none
when nothing is close (click compares ``--bogus`` with ``--out`` dashes and all,
and suggests it).
"""

from __future__ import annotations

import difflib
import functools
from typing import Any

# typer 0.29 carries its own copy of click: its commands, contexts and errors are those
from typer._click import core as click_core
from typer._click.exceptions import NoSuchOption
from typer.core import TyperArgument, TyperGroup, TyperOption

#: the value a type reads, as help shows it (typer's own ``<str>``, ``<path>`` ...)
_METAVARS = {
    "<str>": "TEXT",
    "<path>": "PATH",
    "<int>": "INTEGER",
    "<int range>": "INTEGER",
    "<float>": "NUMBER",
    "<float range>": "NUMBER",
    "<list[Path]>": "PATH",
    "<list[str]>": "TEXT",
}


def _metavar(param: TyperOption, ctx: click_core.Context) -> str:
    shown = param.display_type(ctx)
    if shown in _METAVARS:
        return _METAVARS[shown]
    if shown.startswith("<") and "|" in shown:  # a choice: [a|b|c], as click writes it
        return "[" + shown[1:-1] + "]"
    return shown.strip("<>").upper()


def _no_type(ctx: click_core.Context) -> None:
    return None


def tidy(command: click_core.Command, ctx: click_core.Context) -> None:
    """Give every parameter of ``command`` a plain metavar (once): options a value
    name (their own ``metavar=`` if they set one), flags none, arguments their
    name in capitals."""
    if getattr(command, "_warroom_tidy", False):
        return
    for param in command.params:
        if isinstance(param, TyperOption) and not (param.is_flag or param.count):
            if param.metavar is None:
                param.metavar = _metavar(param, ctx)
        elif isinstance(param, TyperArgument):
            name = (param.metavar or param.name or "value").upper()
            shown = name + ("..." if param.nargs != 1 else "")
            param.metavar = shown
            # typer draws a type beside an argument's name and braces around it in
            # the usage line; the name says it all
            param.display_type_rich = _no_type  # type: ignore[method-assign]
            usage = shown if param.required else f"[{shown}]"
            param._usage_display_name = functools.partial(str, usage)  # type: ignore[method-assign]
    command._warroom_tidy = True  # type: ignore[attr-defined]


def closest_options(typed: str, command: click_core.Command) -> list[str]:
    """The real options of ``command`` a typo ``typed`` most likely meant: those it is a
    prefix of when there is one, else the closest by spelling (dashes aside), else none."""
    options = [p for p in command.params if p.param_type_name == "option"]
    longs = [n for p in options for n in (*p.opts, *p.secondary_opts) if n.startswith("--")]
    bare = typed.lstrip("-")
    if not bare:
        return []
    prefixed = [n for n in longs if n[2:].startswith(bare)]
    if len(prefixed) == 1:
        return prefixed
    by_name = {n[2:]: n for n in longs}
    return [by_name[m] for m in difflib.get_close_matches(bare, list(by_name), n=3, cutoff=0.6)]


def _suggest(exc: NoSuchOption) -> None:
    command = exc.ctx.command if exc.ctx is not None else None
    if command is not None:
        exc.possibilities = closest_options(exc.option_name, command)


class WarroomGroup(TyperGroup):
    """The application's group: tidy help for every command, close option suggestions."""

    def get_command(self, ctx: click_core.Context, cmd_name: str) -> click_core.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            tidy(command, ctx)
        return command

    def parse_args(self, ctx: click_core.Context, args: list[str]) -> list[str]:
        tidy(self, ctx)
        try:
            return super().parse_args(ctx, args)
        except NoSuchOption as exc:
            _suggest(exc)
            raise

    def invoke(self, ctx: click_core.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NoSuchOption as exc:
            _suggest(exc)
            raise
