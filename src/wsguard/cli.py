"""The ``wsguard`` command: ``serve`` runs a server; ``leakcheck`` runs the leak harness.

``wsguard --version`` prints the installed version (``wsguard X.Y.Z``).

Every ``serve`` flag has an environment variable ``WSGUARD_<FLAG_IN_UPPER_SNAKE>``; a flag beats
its variable. The port has a third source below those two: ``PORT``, the variable that Cloud
Run, Render and Heroku set. A bad value exits with status 2 and one line naming the setting.
"""

import argparse
import os
import ssl
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from jwt import PyJWKSetError

import wsguard
from wsguard import jwt_algorithms
from wsguard.extras import MissingExtra, require_redis
from wsguard.redis_url import CLUSTER_FORM, SENTINEL_FORM
from wsguard.server.api_keys import read_key_file
from wsguard.server.jwt_keys import JwksFile, PublicKeyFile
from wsguard.settings import LimitPolicy, SettingError, Settings


@dataclass(frozen=True)
class Option:
    flag: str
    field: str
    parse: Callable[[str], Any]
    help: str
    env: str | None = None
    """The variable, when it is not ``WSGUARD_<FLAG>`` (``WSGUARD_API_KEYS``)."""

    @property
    def variable(self) -> str:
        return self.env or "WSGUARD_" + self.flag.lstrip("-").replace("-", "_").upper()


def _seconds(text: str) -> float:
    return float(text)


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _origins(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


OPTIONS = [
    Option("--host", "host", str, "address to listen on"),
    Option(
        "--port",
        "port",
        int,
        f"port to listen on (0 picks a free one); else WSGUARD_PORT, else PORT, else {Settings.port}",
    ),
    Option(
        "--backend",
        "backend",
        str,
        f"memory, redis://HOST:PORT/DB, {SENTINEL_FORM} or {CLUSTER_FORM}",
    ),
    Option("--max-connections-per-user", "max_connections_per_user", int, "per-user limit"),
    Option("--limit-policy", "limit_policy", LimitPolicy, "evict_oldest or reject"),
    Option("--heartbeat-interval", "heartbeat_interval", _seconds, "seconds between pings"),
    Option("--heartbeat-timeout", "heartbeat_timeout", _seconds, "seconds to wait for a pong"),
    Option("--jwt-secret", "jwt_secret", str, "HS256 secret"),
    Option("--jwt-public-key", "jwt_public_key", str, "PEM public key file (RSA, EC, Ed25519)"),
    Option("--jwks-file", "jwks_file", str, "JWKS file"),
    Option("--jwt-issuer", "jwt_issuer", str, "required iss, compared exactly"),
    Option("--jwt-user-claim", "jwt_user_claim", str, "claim path of the user id (default sub)"),
    Option(
        "--jwt-admin-claim",
        "jwt_admin_claim",
        str,
        "PATH=VALUE: admin when the claim equals VALUE or is a list holding it (default admin=true)",
    ),
    Option("--api-key-file", "api_key_file", str, "file of API keys, one a line (# comments)"),
    Option("--jwt-leeway", "jwt_leeway", _seconds, "seconds of clock skew allowed on exp"),
    Option("--max-message-bytes", "max_message_bytes", int, "largest frame and event"),
    Option("--queue-limit-bytes", "queue_limit_bytes", int, "unsent bytes before 4008"),
    Option("--write-timeout", "write_timeout", _seconds, "seconds a write may stall"),
    Option("--close-timeout", "close_timeout", _seconds, "seconds to wait for a close reply"),
    Option("--drain-timeout", "drain_timeout", _seconds, "seconds to close all on shutdown"),
    Option("--connect-rate-per-user", "connect_rate_per_user", float, "upgrades/s per user"),
    Option("--connect-rate-per-address", "connect_rate_per_address", float, "upgrades/s per IP"),
    Option("--max-connections", "max_connections", int, "global cap per instance (0 = off)"),
    Option(
        "--message-rate-per-connection",
        "message_rate_per_connection",
        float,
        "inbound frames per second per connection, burst twice that; 0 = off",
    ),
    Option(
        "--max-subscriptions-per-connection",
        "max_subscriptions_per_connection",
        int,
        "threads one connection may subscribe to at once",
    ),
    Option("--run-rate-per-user", "run_rate_per_user", float, "runs started/s per user; 0 = off"),
    Option("--max-runs-per-user", "max_runs_per_user", int, "runs at once per user; 0 = off"),
    Option("--ticket-rate-per-user", "ticket_rate_per_user", float, "tickets/s per user; 0 = off"),
    Option("--max-tickets-per-user", "max_tickets_per_user", int, "unused tickets per user; 0 = off"),
    Option("--retention-events", "retention_events", int, "events kept per thread"),
    Option("--retention-seconds", "retention_seconds", _seconds, "seconds events are kept"),
    Option(
        "--max-remembered-threads",
        "max_remembered_threads",
        int,
        "memory backend: expired threads whose last offset is kept",
    ),
    Option("--demo-step-delay", "demo_step_delay", _seconds, "seconds between demo events"),
    Option("--lease-ttl", "lease_ttl", _seconds, "redis: seconds before leases expire"),
    Option("--log-level", "log_level", str.lower, "debug, info (default), warning, error"),
    Option("--log-format", "log_format", str.lower, "text (default) or json, one object a line"),
    Option(
        "--leakcheck-report-dir",
        "leakcheck_report_dir",
        str,
        "directory of this server's last leakcheck report (shown on /admin)",
    ),
    Option("--forwarded-allow-ips", "forwarded_allow_ips", str, "proxies trusted for X-Forwarded"),
    Option("--workers", "workers", int, "worker processes on one port (needs a Redis backend)"),
    Option("--header-timeout", "header_timeout", _seconds, "seconds to receive a request head"),
    Option("--keep-alive-timeout", "keep_alive_timeout", _seconds, "seconds an idle HTTP connection stays"),
    Option(
        "--max-pending-per-address",
        "max_pending_per_address",
        int,
        "connections per peer address not yet upgraded (0 = off; --forwarded-allow-ips exempt)",
    ),
    Option("--ssl-certfile", "ssl_certfile", str, "TLS certificate chain (PEM): serve wss://"),
    Option("--ssl-keyfile", "ssl_keyfile", str, "TLS private key (PEM), if not in the certificate file"),
]
FLAGS = [
    Option("--dev", "dev", _bool, "dev token endpoint; random secret when no key is given"),
    Option("--compression", "compression", _bool, "permessage-deflate"),
    Option("--metrics-allow-gc", "metrics_allow_gc", _bool, "honour /metrics?collect_garbage=1"),
]
ORIGINS = Option("--allowed-origin", "allowed_origins", _origins, "allowed Origin (repeatable)")
LISTS = [
    ORIGINS,
    Option("--jwks-url", "jwks_urls", _origins, "JWKS URL of an identity provider (repeatable)"),
    Option("--jwt-audience", "jwt_audiences", _origins, "accepted aud; aud then required (repeatable)"),
    Option(
        "--jwt-algorithm",
        "jwt_algorithms",
        _origins,
        f"allowed algorithm (repeatable); default {', '.join(jwt_algorithms.DEFAULT_SECRET)} for a "
        f"secret, {', '.join(jwt_algorithms.DEFAULT_PUBLIC)} for public keys",
    ),
    Option(
        "--api-key",
        "api_keys",
        _origins,
        "API key for /api/publish and /api/admin/* (repeatable)",
        env="WSGUARD_API_KEYS",
    ),
]
"""Repeatable flags; each variable takes a comma-separated list."""
PLATFORM_PORT = "PORT"
"""The port a platform (Cloud Run, Render, Heroku) gives its container; used when neither
``--port`` nor ``WSGUARD_PORT`` is given."""


class UsageError(Exception):
    """One line for the operator, naming the setting."""


def _flag_of(field: str) -> str:
    for option in [*OPTIONS, *FLAGS, *LISTS]:
        if option.field == field:
            return option.flag
    return field


def configure_serve(parser: argparse.ArgumentParser) -> None:
    for option in OPTIONS:
        parser.add_argument(option.flag, dest=option.field, help=option.help)
    for option in FLAGS:
        parser.add_argument(
            option.flag,
            dest=option.field,
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"{option.help} (--no-{option.flag[2:]} overrides {option.variable})",
        )
    for option in LISTS:
        parser.add_argument(option.flag, dest=option.field, action="append", help=option.help)


def settings_from(args: argparse.Namespace, environ: dict[str, str]) -> Settings:
    """Flags over environment over defaults; raises :class:`UsageError` naming the bad setting.

    The port alone has a platform's ``PORT`` between its variable and its default.
    """
    values: dict[str, Any] = {}
    named: dict[str, str] = {}  # how an error names a setting taken from neither flag nor variable
    for option in [*OPTIONS, *FLAGS, *LISTS]:
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
    from wsguard.transport.compat import UnsupportedUvicorn, check_uvicorn

    try:
        check_uvicorn()
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


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="wsguard", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {wsguard.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    configure_serve(commands.add_parser("serve", help="run a wsguard server"))
    leakcheck = commands.add_parser("leakcheck", help="run the production-scenario leak harness")
    if arguments[:1] == ["leakcheck"]:
        return _leakcheck(leakcheck, parser, arguments)
    args = parser.parse_args(arguments)
    try:
        settings = settings_from(args, dict(os.environ))
    except UsageError as error:
        print(f"wsguard: {error}", file=sys.stderr)
        return 2
    return serve(settings)


def _leakcheck(
    subparser: argparse.ArgumentParser, parser: argparse.ArgumentParser, arguments: list[str]
) -> int:
    """The harness is imported only when asked for, so that ``serve`` starts without it."""
    from wsguard.leaktest import cli as leaktest_cli

    leaktest_cli.configure_parser(subparser)
    return leaktest_cli.run(parser.parse_args(arguments))


if __name__ == "__main__":
    sys.exit(main())
