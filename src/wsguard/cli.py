"""The ``wsguard`` command: ``serve`` runs a server; ``leakcheck`` runs the leak harness.

``wsguard --version`` prints the installed version (``wsguard X.Y.Z``).

Every ``serve`` flag has an environment variable ``WSGUARD_<FLAG_IN_UPPER_SNAKE>``; a flag beats
its variable. Both are derived from the fields of :class:`~wsguard.settings.Settings`, which hold
each default and help line, so that a setting is added there alone. The port has a third source
below those two: ``PORT``, the variable that Cloud Run, Render and Heroku set. A bad value exits
with status 2 and one line naming the setting. Every ``leakcheck`` flag has one too, under a
prefix of its own, ``WSGUARD_LEAKCHECK_<FLAG>`` (``--profile``'s is ``WSGUARD_PROFILE``), read
the same way. Every command's ``--help`` states each flag's default and variable in one form,
:func:`described`'s.
"""

import argparse
import dataclasses
import os
import ssl
import sys
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import NoneType, UnionType
from typing import Any

from jwt import PyJWKSetError

import wsguard
from wsguard import jwt_algorithms
from wsguard.errors import WSGuardError
from wsguard.extras import MissingExtra, require_redis
from wsguard.flags import Kind, described, parse_switch, shown, variable_of
from wsguard.server.api_keys import read_key_file
from wsguard.server.jwt_keys import JwksFile, PublicKeyFile
from wsguard.settings import DOC, SettingDoc, SettingError, Settings, resolved_http_parser


@dataclass(frozen=True)
class Option:
    """One ``serve`` flag and its variable, as :func:`serve_options` derives them from a field."""

    flag: str
    field: str
    parse: Callable[[str], Any]
    help: str
    variable: str
    kind: Kind
    default: object
    shown_default: str
    """The default as help and the docs' tables state it; empty for none."""

    @property
    def described(self) -> str:
        """The help line with the default and the variable, for ``--help``."""
        return described(self.help, self.flag, self.kind, self.shown_default, self.variable)

    @property
    def metavar(self) -> str:
        """``ALLOWED_ORIGIN``: what one flag takes, for ``--help``."""
        return self.flag[2:].replace("-", "_").upper()


def _origins(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _doc_of(field: dataclasses.Field[Any]) -> SettingDoc:
    doc = field.metadata.get(DOC)
    if not isinstance(doc, SettingDoc):
        raise TypeError(f"Settings.{field.name} is not declared with wsguard.settings.setting()")
    return doc


def _option(field: dataclasses.Field[Any], annotation: Any) -> Option:
    """The option of one :class:`Settings` field: ``--name`` and ``WSGUARD_NAME``; a tuple is a
    repeatable flag named for one item (``allowed_origins``: ``--allowed-origin``)."""
    doc = _doc_of(field)
    if isinstance(annotation, UnionType):
        (annotation,) = (member for member in typing.get_args(annotation) if member is not NoneType)
    kind: Kind = "value"
    parse: Callable[[str], Any] = annotation
    name = field.name
    if annotation is bool:
        kind, parse = "switch", parse_switch
    elif typing.get_origin(annotation) is tuple:
        kind, parse, name = "list", _origins, name.removesuffix("s")
    flag = "--" + name.replace("_", "-")
    return Option(
        flag=flag,
        field=field.name,
        parse=doc.parse or parse,
        help=doc.help,
        variable=doc.variable or variable_of(flag),
        kind=kind,
        default=field.default,
        shown_default=doc.shown_default or shown(field.default),
    )


def serve_options() -> list[Option]:
    """Every ``serve`` option, in the order of :class:`Settings`' fields."""
    hints = typing.get_type_hints(Settings)
    return [
        _option(field, hints[field.name])
        for field in dataclasses.fields(Settings)
        if _doc_of(field).command_line
    ]


SERVE_OPTIONS = serve_options()
OPTIONS = [option for option in SERVE_OPTIONS if option.kind == "value"]
"""The options that take one value."""
FLAGS = [option for option in SERVE_OPTIONS if option.kind == "switch"]
"""On and off: ``--dev`` and ``--no-dev``; the variable takes true or false."""
LISTS = [option for option in SERVE_OPTIONS if option.kind == "list"]
"""Repeatable flags; each variable takes a comma-separated list."""
BY_FIELD = {option.field: option for option in SERVE_OPTIONS}
ORIGINS = BY_FIELD["allowed_origins"]
PLATFORM_PORT = "PORT"
"""The port a platform (Cloud Run, Render, Heroku) gives its container; used when neither
``--port`` nor ``WSGUARD_PORT`` is given."""


DESCRIPTION = __doc__.splitlines()[0].replace("``", "")
"""The module docstring's first line without its reST literals, which ``--help`` would print."""


class UsageError(WSGuardError):
    """One line for the operator, naming the setting."""


def _flag_of(field: str) -> str:
    option = BY_FIELD.get(field)
    return option.flag if option is not None else field


def configure_serve(parser: argparse.ArgumentParser) -> None:
    """Add every ``serve`` option; none has an argparse default, so that an option not given
    falls to its variable and then to the :class:`Settings` default."""
    for option in SERVE_OPTIONS:
        if option.kind == "switch":
            parser.add_argument(
                option.flag,
                dest=option.field,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=option.described,
            )
        elif option.kind == "list":
            parser.add_argument(
                option.flag,
                dest=option.field,
                action="append",
                metavar=option.metavar,
                help=option.described,
            )
        else:
            parser.add_argument(option.flag, dest=option.field, metavar=option.metavar, help=option.described)


def settings_from(args: argparse.Namespace, environ: dict[str, str]) -> Settings:
    """Flags over environment over defaults; raises :class:`UsageError` naming the bad setting.

    The port alone has a platform's ``PORT`` between its variable and its default.
    """
    values: dict[str, Any] = {}
    named: dict[str, str] = {}  # how an error names a setting taken from neither flag nor variable
    for option in SERVE_OPTIONS:
        given = getattr(args, option.field, None)
        if isinstance(given, list):
            values[option.field] = tuple(o for item in given for o in _origins(item))
            continue
        if isinstance(given, bool):
            values[option.field] = given
            continue
        raw, source = given if given is not None else environ.get(option.variable), option.variable
        if raw is None and option.field == "port" and PLATFORM_PORT in environ:
            raw, source = environ[PLATFORM_PORT], PLATFORM_PORT
            named["port"] = f"{option.flag} ({PLATFORM_PORT})"
        if raw is None:
            continue
        try:
            values[option.field] = option.parse(raw)
        except ValueError as error:
            raise UsageError(f"{option.flag} ({source}): invalid value {raw!r}") from error
    try:
        settings = Settings(**values)
    except SettingError as error:
        name = named.get(error.setting) or _flag_of(error.setting)
        raise UsageError(f"{name}: {str(error).partition(': ')[2]}") from error
    if settings.backend != "memory":
        try:
            require_redis()
        except MissingExtra as error:
            raise UsageError(f"--backend (WSGUARD_BACKEND): {error}") from error
    _check_files(settings)
    if settings.ssl_certfile:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                settings.ssl_certfile, settings.ssl_keyfile
            )
        except (OSError, ssl.SSLError) as error:
            raise UsageError(f"--ssl-certfile: cannot use {settings.ssl_certfile}: {error}") from error
    if not settings.dev and not settings.has_jwt_key:
        raise UsageError(
            "--jwt-secret (WSGUARD_JWT_SECRET) is required without --dev: "
            "set it, --jwt-public-key, --jwks-file or --jwks-url"
        )
    return settings


def _check_files(settings: Settings) -> None:
    """The key files named by the settings can be read and used with the allowed algorithms."""
    public = jwt_algorithms.for_public(settings.jwt_algorithms)
    loaders: list[tuple[str, str | None, Callable[[str], object]]] = [
        ("--jwt-public-key", settings.jwt_public_key, lambda path: PublicKeyFile(path, public)),
        ("--jwks-file", settings.jwks_file, lambda path: JwksFile(path, public)),
        ("--api-key-file", settings.api_key_file, read_key_file),
    ]
    for flag, path, loader in loaders:
        if path:
            try:
                loader(path)
            except (OSError, ValueError, PyJWKSetError) as error:
                raise UsageError(f"{flag}: cannot use {path}: {error}") from error


def serve(settings: Settings) -> int:
    """Run the standalone server until SIGTERM or SIGINT; returns the exit status.

    A uvicorn that lacks what the transport overrides is refused in one line (status 2) before
    the modules that subclass it are imported.
    """
    from wsguard.transport.compat import UnsupportedUvicorn, check_uvicorn, required_internals

    try:
        check_uvicorn(required=required_internals(resolved_http_parser(settings.http)))
    except UnsupportedUvicorn as error:
        print(f"wsguard: {error}", file=sys.stderr)
        return 2
    if settings.workers > 1:
        from wsguard.server.workers import run_workers

        return run_workers(settings)
    from wsguard.server.guard import WSGuard
    from wsguard.server.run import run_server

    guard = WSGuard(settings)
    return run_server(guard.server_app(), settings, guard.drain, guard.stop_admitting)


def build_parser(*, leakcheck: bool = True) -> argparse.ArgumentParser:
    """The ``wsguard`` command line; without ``leakcheck``, the harness's options are left out,
    so that ``serve`` starts without importing it."""
    parser = argparse.ArgumentParser(prog="wsguard", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {wsguard.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    configure_serve(commands.add_parser("serve", help="run a wsguard server"))
    harness = commands.add_parser("leakcheck", help="run the production-scenario leak harness")
    if leakcheck:
        from wsguard.leaktest import cli as leaktest_cli

        leaktest_cli.configure_parser(harness)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(leakcheck=arguments[:1] == ["leakcheck"]).parse_args(arguments)
    if args.command == "leakcheck":
        from wsguard.leaktest import cli as leaktest_cli

        return leaktest_cli.run(args)
    try:
        settings = settings_from(args, dict(os.environ))
    except UsageError as error:
        print(f"wsguard: {error}", file=sys.stderr)
        return 2
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
