"""How every ``--help`` of wsguard states a flag's default and environment variable, and how a
variable stands in for its flag.

``serve`` derives its flags from :class:`~wsguard.settings.Settings`; the harness's commands
declare theirs with argparse. Both state them in the one form :func:`described` writes, and
name their variables by :func:`variable_of`.
"""

import argparse
from collections.abc import Mapping
from enum import Enum
from typing import Any, Literal

Kind = Literal["value", "switch", "list", "lines"]
"""One value; on or off; repeatable, its variable a comma-separated list; repeatable, its
variable one value per line (values that may hold commas: a header, a JSON message)."""


def variable_of(flag: str, prefix: str = "WSGUARD_") -> str:
    """A flag's environment variable: ``--max-connections-per-user`` is
    ``WSGUARD_MAX_CONNECTIONS_PER_USER``. A command other than ``serve`` passes a prefix with its
    own name, so that its variables cannot be taken for a server's."""
    return prefix + flag.removeprefix("--").replace("-", "_").upper()


def parse_switch(text: str) -> bool:
    """A switch's variable: ``1``, ``true``, ``yes``, ``on`` or ``0``, ``false``, ``no``, ``off``,
    empty."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


class AppendLines(argparse._AppendAction):
    """A repeatable flag whose values may hold commas, so that its variable takes one value per
    line rather than a comma-separated list."""


def described(help: str, flag: str, kind: Kind, shown_default: str, variable: str | None) -> str:
    """A flag's help line as every ``--help`` of wsguard shows it: ``help (default: D; env V)``,
    either note left out when the flag has none; ``%`` escaped for argparse."""
    notes = [f"default: {shown_default}"] if shown_default else []
    if variable is not None and kind == "switch":
        notes.append(f"env {variable}, which --no-{flag[2:]} overrides")
    elif variable is not None and kind == "list":
        notes.append(f"env {variable}, a comma-separated list")
    elif variable is not None and kind == "lines":
        notes.append(f"env {variable}, one per line")
    elif variable is not None:
        notes.append(f"env {variable}")
    repeatable = ", repeatable" if kind in ("list", "lines") else ""
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
        variable = variables.get(action.dest)
        action.help = described(action.help, _flag(action), _kind(action), default, variable)


def from_environment(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    variables: Mapping[str, str],
    environ: Mapping[str, str],
) -> None:
    """Give each flag of ``parser`` that was not given (None in ``args``) its variable's value,
    read as the flag's own value would be: the variable is the flag's default, so that the flag
    beats it, as ``serve``'s do.

    Raises ``ValueError`` with one line naming the flag and the variable for a bad value.
    """
    for action in parser._actions:
        variable = variables.get(action.dest)
        if variable is None or getattr(args, action.dest, None) is not None:
            continue
        raw = environ.get(variable)
        if raw is None:
            continue
        try:
            value = _parsed(action, raw)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as error:
            raise ValueError(f"{_flag(action)} ({variable}): invalid value {raw!r}") from error
        setattr(args, action.dest, value)


def _parsed(action: argparse.Action, raw: str) -> object:
    """A variable's value as the flag would take it: its type, its choices, its items."""
    kind = _kind(action)
    if kind == "switch":
        return parse_switch(raw)
    if kind == "value":
        return _item(action, raw)
    parts = raw.splitlines() if kind == "lines" else raw.split(",")
    return [_item(action, part.strip()) for part in parts if part.strip()]


def _item(action: argparse.Action, text: str) -> Any:
    value = action.type(text) if callable(action.type) else text
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{value!r} is not one of {', '.join(map(str, action.choices))}")
    return value


def _flag(action: argparse.Action) -> str:
    """The flag's name: its first long option (``--quiet``, not ``--no-quiet``)."""
    longs = [option for option in action.option_strings if option.startswith("--")]
    return longs[0] if longs else action.option_strings[-1]


def _kind(action: argparse.Action) -> Kind:
    """A repeatable flag is a list (lines with :class:`AppendLines`), one that takes no value a
    switch."""
    if isinstance(action, AppendLines):
        return "lines"
    if isinstance(action, argparse._AppendAction):
        return "list"
    return "switch" if action.nargs == 0 else "value"
