"""Every setting is defined once, in :class:`~wsguard.settings.Settings`: the command line, the
transport's options and the docs' tables take their defaults from it, and a changed default
changes them all.

A default written a second time (a literal in ``TransportOptions``, an argparse default, a docs
row) is caught here: the modules are loaded again against a ``Settings`` whose every default
differs, and must follow it.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import pytest

import wsguard.cli
import wsguard.settings
import wsguard.transport.compat
import wsguard.transport.runner
from wsguard.cli import SERVE_OPTIONS, Option, configure_serve, settings_from
from wsguard.core.connection import ConnectionLimits
from wsguard.errors import WSGuardError
from wsguard.flags import shown
from wsguard.settings import DOC, LimitPolicy, SettingDoc, SettingError, Settings
from wsguard.settings import TAKEN_FROM as SETTING
from wsguard.transport.compat import UnsupportedUvicorn
from wsguard.transport.edge import EdgeLimits
from wsguard.transport.runner import TransportOptions

ROOT = Path(__file__).resolve().parents[2]
EMBEDDING_ONLY = {"sweep_interval", "ticket_ttl"}
"""Settings with no flag: the docs state them as fixed (a sweep every 5 s, a ticket lives 30 s),
and only an embedding or a test changes them."""
TRANSPORT_OWN = {"write_timeout"}
"""``TransportOptions`` fields named like a setting that are not it: the transport's write
timeout is off unless asked for, because wsguard's runtime times its own writes."""
OWN_MODULES = [wsguard.settings, wsguard.cli, wsguard.transport.runner, wsguard.transport.compat]


def _doc(field: dataclasses.Field[Any]) -> SettingDoc:
    return cast(SettingDoc, field.metadata[DOC])


def _changed(value: object) -> object:
    """A default unlike ``value`` (never validated: only read as a default)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, LimitPolicy):
        return next(policy for policy in LimitPolicy if policy is not value)
    if isinstance(value, int):
        return value + 7
    if isinstance(value, float):
        return value + 0.25
    if isinstance(value, str):
        return f"{value}-changed"
    if value is None:
        return "changed"
    assert value == (), value
    return ("changed",)


def _settings_with_other_defaults() -> type[Settings]:
    """A ``Settings`` whose every default differs, with the same fields and metadata."""
    namespace: dict[str, Any] = {
        "__annotations__": {field.name: field.type for field in dataclasses.fields(Settings)},
        "__module__": Settings.__module__,
    }
    for field in dataclasses.fields(Settings):
        namespace[field.name] = dataclasses.field(
            default=_changed(field.default), repr=field.repr, metadata=field.metadata
        )
    return dataclasses.dataclass(frozen=True)(type("Settings", (Settings,), namespace))


def _loaded_against(module: ModuleType, settings: type[Settings], monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh copy of ``module``, executed while ``wsguard.settings.Settings`` is ``settings``."""
    name = f"{module.__name__}_against_other_defaults"
    spec = importlib.util.spec_from_file_location(name, cast(str, module.__file__))
    assert spec is not None
    assert spec.loader is not None
    copy = importlib.util.module_from_spec(spec)
    monkeypatch.setattr(wsguard.settings, "Settings", settings)
    monkeypatch.setitem(sys.modules, name, copy)
    spec.loader.exec_module(copy)
    return copy


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    configure_serve(parser)
    return parser


def test_every_setting_is_declared_with_its_doc() -> None:
    for field in dataclasses.fields(Settings):
        assert isinstance(field.metadata.get(DOC), SettingDoc), f"{field.name} is not declared with setting()"
        assert _doc(field).help, field.name
        assert "default" not in _doc(field).help, f"{field.name}: help adds the default itself"


def test_every_setting_has_exactly_one_flag_and_one_variable() -> None:
    on_command_line = {field.name for field in dataclasses.fields(Settings) if _doc(field).command_line}
    assert {field.name for field in dataclasses.fields(Settings)} - on_command_line == EMBEDDING_ONLY
    assert sorted(option.field for option in SERVE_OPTIONS) == sorted(on_command_line)
    flags = [option.flag for option in SERVE_OPTIONS]
    variables = [option.variable for option in SERVE_OPTIONS]
    assert len(set(flags)) == len(flags)
    assert len(set(variables)) == len(variables)
    assert all(variable.startswith("WSGUARD_") for variable in variables)
    assert {action.dest for action in _parser()._actions if action.option_strings} - {
        "help"
    } == on_command_line


def test_an_option_not_given_takes_the_settings_default() -> None:
    """No argparse default stands between an option and its variable, or its variable and the
    ``Settings`` default."""
    args = _parser().parse_args([])
    assert all(getattr(args, option.field) is None for option in SERVE_OPTIONS)
    assert settings_from(args, {"WSGUARD_DEV": "1"}) == Settings(dev=True)


def test_serve_help_shows_every_default_and_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "2000")
    with pytest.raises(SystemExit) as done:
        wsguard.cli.main(["serve", "--help"])
    assert done.value.code == 0
    entries: dict[str, str] = {}
    flag = ""
    for line in capsys.readouterr().out.partition("\noptions:\n")[2].splitlines():
        if line.startswith("  -"):
            flag = line.split()[0].rstrip(",")
            entries[flag] = line
        else:
            entries[flag] += " " + line.strip()
    for option in SERVE_OPTIONS:
        line = entries[option.flag]
        assert f"env {option.variable}" in line, line
        if option.shown_default:
            assert f"default: {option.shown_default}" in line, line
        if option.kind == "switch":
            assert f"--no-{option.flag[2:]}" in line, line


def test_transport_options_take_the_settings_they_share() -> None:
    settings = {field.name: field for field in dataclasses.fields(Settings)}
    shared = [option for option in dataclasses.fields(TransportOptions) if option.name in settings]
    taken = {option.name for option in shared if SETTING in option.metadata}
    assert {option.name for option in shared} - taken == TRANSPORT_OWN
    for option in shared:
        if option.name in taken:
            assert option.metadata[SETTING] == option.name
            assert option.default == settings[option.name].default, option.name


def test_from_settings_copies_every_shared_setting() -> None:
    base = Settings()
    given: dict[str, Any] = {
        "host": "0.0.0.0",
        "port": 9999,
        "heartbeat_interval": 1.5,
        "heartbeat_timeout": 2.5,
        "max_message_bytes": 1000,
        "write_timeout": 3.5,
        "close_timeout": 4.5,
        "compression": True,
        "forwarded_allow_ips": "10.0.0.1",
        "log_level": "debug",
        "log_format": "json",
        "loop": "asyncio",
        "http": "h11",
        "header_timeout": 5.5,
        "keep_alive_timeout": 6.5,
        "max_pending_per_address": 7,
        "ssl_certfile": "cert.pem",
        "ssl_keyfile": "key.pem",
    }
    assert all(value != getattr(base, name) for name, value in given.items())
    options = TransportOptions.from_settings(Settings(dev=True, **given))
    defaults = TransportOptions()
    for option in dataclasses.fields(TransportOptions):
        if SETTING in option.metadata:
            assert getattr(options, option.name) == given[option.name], option.name
        else:
            assert getattr(options, option.name) == getattr(defaults, option.name), option.name
    assert options.write_timeout is None


def test_a_changed_settings_default_changes_the_transport_and_the_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = _settings_with_other_defaults()
    other_defaults = {field.name: field.default for field in dataclasses.fields(other)}
    docs = {field.name: _doc(field) for field in dataclasses.fields(other)}
    assert all(other_defaults[field.name] != field.default for field in dataclasses.fields(Settings)), (
        "every default must differ for this test to prove anything"
    )

    runner = _loaded_against(wsguard.transport.runner, other, monkeypatch)
    for transport_field in dataclasses.fields(runner.TransportOptions):
        if SETTING in transport_field.metadata:
            name = transport_field.name
            assert transport_field.default == other_defaults[name], f"TransportOptions.{name}"

    cli = _loaded_against(wsguard.cli, other, monkeypatch)
    options: list[Option] = cli.SERVE_OPTIONS
    assert [option.field for option in options] == [option.field for option in SERVE_OPTIONS]
    parser = argparse.ArgumentParser()
    cli.configure_serve(parser)
    args = parser.parse_args([])
    for option in options:
        assert option.default == other_defaults[option.field], option.flag
        assert getattr(args, option.field) is None, option.flag
        if docs[option.field].shown_default is None:
            assert option.shown_default == shown(other_defaults[option.field]), option.flag


def _table(path: Path, after: str) -> list[list[str]]:
    """The cells of each row of the first ``| flag | variable | default | meaning |`` table after
    the line ``after``."""
    text = path.read_text(encoding="utf-8").partition(f"\n{after}\n")[2]
    header = "| flag | variable | default | meaning |"
    assert header in text, f"{path.name}: no settings table after {after!r}"
    body = text.partition(header)[2].split("\n\n")[0]
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|", 3)]
        for line in body.strip().splitlines()[1:]
    ]


def _documented(path: Path, after: str) -> dict[str, tuple[str, str]]:
    """``{flag: (variable, default)}`` as the table states them (``--no-`` forms left out)."""
    documented: dict[str, tuple[str, str]] = {}
    for flag_cell, variable_cell, default_cell, _ in _table(path, after):
        flags = [flag for flag in re.findall(r"`(--[a-z0-9-]+)", flag_cell) if not flag.startswith("--no-")]
        variables = re.findall(r"`(WSGUARD_[A-Z0-9_]+)`", variable_cell)
        assert len(variables) == len(flags), f"{path.name}: {flag_cell} has variables {variables}"
        cell = re.sub(r" \(off\)$", "", default_cell.replace("`", ""))
        defaults = cell.split(", ") if cell and len(flags) > 1 else [cell] * len(flags)
        assert len(defaults) == len(flags), f"{path.name}: {flag_cell} has defaults {default_cell!r}"
        for flag, variable, default in zip(flags, variables, defaults, strict=True):
            assert flag not in documented, f"{path.name}: {flag} is listed twice"
            documented[flag] = (variable, default)
    return documented


@pytest.mark.parametrize(
    ("document", "after"),
    [("docs/protocol.md", "## 1. Starting a server"), ("docs/configuration.md", "## Flags and variables")],
)
def test_the_docs_tables_list_every_flag_variable_and_default(document: str, after: str) -> None:
    documented = _documented(ROOT / document, after)
    expected = {option.flag: (option.variable, option.shown_default) for option in SERVE_OPTIONS}
    assert sorted(documented) == sorted(expected), f"{document}: flags differ from wsguard serve's"
    for flag, (variable, default) in expected.items():
        assert documented[flag] == (variable, default), f"{document}: {flag}"


def test_the_configuration_page_states_each_setting_without_a_flag_and_its_default() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    defaults = {field.name: field.default for field in dataclasses.fields(Settings)}
    for name in sorted(EMBEDDING_ONLY):
        section = text.partition(f"\n### `{name}`\n")[2].partition("\n#")[0]
        assert section, f"docs/configuration.md: no section on {name}"
        default = defaults[name]
        assert isinstance(default, float), name
        assert f"{default:g} by default" in section, f"docs/configuration.md: {name}'s default"


def test_the_usage_line_of_protocol_md_states_the_defaults() -> None:
    section = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8").partition("## 1.")[2]
    usage = section.partition("\n\n")[2].partition("\n\n")[0]
    stated = dict(re.findall(r"\[(--[a-z0-9-]+) ([a-z0-9.]+)[\] ]", usage))
    assert stated, usage
    by_flag = {option.flag: option for option in SERVE_OPTIONS}
    for flag, value in stated.items():
        assert value == by_flag[flag].shown_default, flag


def test_every_exception_of_these_modules_is_a_wsguard_error() -> None:
    assert issubclass(SettingError, ValueError)
    assert issubclass(UnsupportedUvicorn, RuntimeError)
    defined = [
        value
        for module in OWN_MODULES
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == module.__name__
    ]
    assert {error.__name__ for error in defined} == {"SettingError", "UsageError", "UnsupportedUvicorn"}
    for error in defined:
        assert issubclass(error, WSGuardError), f"{error.__module__}.{error.__name__}"


def test_other_layers_limits_take_the_settings_they_share() -> None:
    """The edge's limits default to the settings' own; a connection's limits have no default at
    all and are built from ``Settings`` in one place."""
    settings = {field.name: field for field in dataclasses.fields(Settings)}
    for edge_field in dataclasses.fields(EdgeLimits):
        assert edge_field.metadata.get(SETTING) == edge_field.name, edge_field.name
        assert edge_field.default == settings[edge_field.name].default, edge_field.name
    for limit in dataclasses.fields(ConnectionLimits):
        assert limit.default is dataclasses.MISSING, limit.name
    given = Settings(dev=True, queue_limit_bytes=12345, max_subscriptions_per_connection=7)
    limits = ConnectionLimits.from_settings(given)
    assert (limits.queue_limit_bytes, limits.max_subscriptions) == (12345, 7)
