"""How every ``--help`` of wsguard states a flag's default and environment variable.

``serve`` derives its flags from :class:`~wsguard.settings.Settings`; the harness's commands
declare theirs with argparse. Both state them in the one form :func:`described` writes.
"""

import argparse
from collections.abc import Mapping
from enum import Enum
from typing import Literal

Kind = Literal["value", "switch", "list"]


def described(help: str, flag: str, kind: Kind, shown_default: str, variable: str | None) -> str:
    """A flag's help line as every ``--help`` of wsguard shows it: ``help (default: D; env V)``,
    either note left out when the flag has none; ``%`` escaped for argparse."""
    notes = [f"default: {shown_default}"] if shown_default else []
    if variable is not None and kind == "switch":
        notes.append(f"env {variable}, which --no-{flag[2:]} overrides")
    elif variable is not None and kind == "list":
        notes.append(f"env {variable}, a comma-separated list")
    elif variable is not None:
        notes.append(f"env {variable}")
    repeatable = ", repeatable" if kind == "list" else ""
    parenthesis = f" ({'; '.join(notes)})" if notes else ""
    return f"{help}{repeatable}{parenthesis}".replace("%", "%%")


def shown(value: object) -> str:
    """A default as an operator reads it: ``off`` and ``on``, ``20`` for 20.0, nothing for none."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None or (isinstance(value, tuple | list) and not value):
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def describe_flags(
    parser: argparse.ArgumentParser, defaults: Mapping[str, object], variables: Mapping[str, str]
) -> None:
    """Give every flag of ``parser`` its default and variable as :func:`described` states them.

    ``defaults`` holds what a flag does when not given, for the flags whose argparse default is
    None so that a run can tell them not given; ``variables`` names the flags' variables.
    """
    for action in parser._actions:
        if (
            not action.option_strings
            or action.help is None
            or argparse.SUPPRESS in (action.default, action.help)
        ):
            continue
        default = shown(defaults.get(action.dest, action.default))
        flag = action.option_strings[-1]
        action.help = described(action.help, flag, _kind(action), default, variables.get(action.dest))


def _kind(action: argparse.Action) -> Kind:
    """A repeatable flag is a list, one that takes no value a switch."""
    if isinstance(action, argparse._AppendAction):
        return "list"
    return "switch" if action.nargs == 0 else "value"
