"""Every setting of a wsguard server, with the defaults of docs/protocol.md section 1.

Each setting is one field of :class:`Settings`, written once: its default, and in the field's
metadata (:class:`SettingDoc`) the help line ``wsguard serve`` shows. The command line, the
transport's options and the runtime's limits read these fields rather than repeating them.
"""

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import urlsplit

from wsguard import jwt_algorithms
from wsguard.claims import AdminClaim, check_path
from wsguard.errors import WSGuardError
from wsguard.redis_url import CLUSTER_FORM, SENTINEL_FORM, check_backend_url

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")
EVENT_LOOPS = ("auto", "asyncio", "uvloop")
"""uvicorn's names; ``auto`` takes uvloop when it can be imported, as uvicorn does."""
HTTP_PARSERS = ("auto", "h11", "httptools")
"""uvicorn's names; ``auto`` takes httptools when it can be imported, as uvicorn does."""


def resolved_http_parser(name: str) -> str:
    """``h11`` or ``httptools`` for a name of :data:`HTTP_PARSERS`."""
    if name not in HTTP_PARSERS:
        raise ValueError(f"the HTTP parser must be one of {', '.join(HTTP_PARSERS)}, got {name!r}")
    if name == "auto":
        return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"
    return name


MIN_API_KEY_LENGTH = 16
"""Shorter keys are refused: a key must not be guessable, and the log redaction hides every
occurrence of a key's text, which must not match ordinary words."""


def api_key_problem(key: str) -> str | None:
    """Why ``key`` cannot be an API key, or None: at least 16 visible ASCII characters, none of
    them a quote, a backslash or a comma (the variable's separator)."""
    if len(key) < MIN_API_KEY_LENGTH:
        return f"an API key must be at least {MIN_API_KEY_LENGTH} characters (one has {len(key)})"
    if any(not 33 <= ord(c) <= 126 or c in "\"'\\," for c in key):
        return "an API key may hold only visible ASCII characters, and no quote, backslash or comma"
    return None


class LimitPolicy(StrEnum):
    """What to do with a connection over the per-user limit."""

    EVICT_OLDEST = "evict_oldest"
    """Admit the new connection and close the user's oldest with 4001 ``superseded``: a user
    whose old tabs were never closed is never locked out."""
    REJECT = "reject"
    """Accept the new connection and close it at once with 4029 ``too_many_connections``, no
    ``welcome``: a close code, not an HTTP status, so that a browser stops retrying."""


class SettingError(WSGuardError, ValueError):
    """A setting has a value it cannot take; the message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting


_T = TypeVar("_T")

DOC = "wsguard.setting"
"""The key of a :class:`Settings` field's metadata that holds its :class:`SettingDoc`."""


@dataclass(frozen=True)
class SettingDoc:
    """What a setting means to an operator, and only where its command line departs from the
    rules of :mod:`wsguard.cli`: field ``name`` is the flag ``--name`` and the variable
    ``WSGUARD_NAME``; a tuple ``items`` is the repeatable ``--item``."""

    help: str
    variable: str | None = None
    """The variable when it is not the flag's (``WSGUARD_API_KEYS`` for ``--api-key``)."""
    parse: Callable[[str], Any] | None = None
    """How a flag's text becomes the value, when the field's type alone does not say."""
    shown_default: str | None = None
    """How help and docs state the default, when the value alone does not say it."""
    command_line: bool = True
    """False for a setting that only an embedding (or a test) chooses: no flag, no variable."""


def setting(
    default: _T,
    help: str,
    *,
    variable: str | None = None,
    parse: Callable[[str], Any] | None = None,
    shown_default: str | None = None,
    command_line: bool = True,
    repr: bool = True,
) -> _T:
    """A :class:`Settings` field: its default and its :class:`SettingDoc`, side by side."""
    doc = SettingDoc(help, variable, parse, shown_default, command_line)
    return field(default=default, repr=repr, metadata={DOC: doc})


DEFAULT_ALGORITHMS = (
    f"{', '.join(jwt_algorithms.DEFAULT_SECRET)} for a secret; "
    f"{', '.join(jwt_algorithms.DEFAULT_PUBLIC)} for public keys and JWKS"
)
"""What an empty ``jwt_algorithms`` allows."""


@dataclass(frozen=True)
class Settings:
    """Server configuration. Seconds may be fractional; 0 turns an optional limit off.

    Every field is declared with :func:`setting`, so that ``wsguard serve``'s flag and variable,
    ``TransportOptions`` and the runtime's limits take its default from here.
    """

    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(
        8765, "port to listen on (0 picks a free one); without it or its variable, the platform's PORT"
    )
    dev: bool = setting(False, "dev token endpoint; random secret when no key is given")
    backend: str = setting("memory", f"memory, redis://HOST:PORT/DB, {SENTINEL_FORM} or {CLUSTER_FORM}")
    max_connections_per_user: int = setting(20, "per-user limit")
    limit_policy: LimitPolicy = setting(LimitPolicy.EVICT_OLDEST, "evict_oldest or reject")  # noqa: RUF009
    heartbeat_interval: float = setting(20.0, "seconds between pings")
    heartbeat_timeout: float = setting(20.0, "seconds to wait for a pong")
    jwt_secret: str | None = setting(None, "HS256 secret")
    jwt_public_key: str | None = setting(None, "PEM public key file: RSA, EC or Ed25519")
    jwks_file: str | None = setting(None, "JWKS file")
    jwks_urls: tuple[str, ...] = setting((), "JWKS URL of an identity provider")
    jwt_audiences: tuple[str, ...] = setting((), "accepted aud; aud then required")
    jwt_issuer: str | None = setting(None, "required iss, compared exactly")
    jwt_user_claim: str = setting("sub", "claim path of the user id")
    jwt_admin_claim: str = setting(
        "admin=true", "PATH=VALUE: admin when the claim equals VALUE or is a list holding it"
    )
    jwt_algorithms: tuple[str, ...] = setting((), "allowed algorithm", shown_default=DEFAULT_ALGORITHMS)
    api_keys: tuple[str, ...] = setting(
        (),
        "API key for /api/publish and /api/admin/*",
        variable="WSGUARD_API_KEYS",
        repr=False,
    )
    api_key_file: str | None = setting(None, "file of API keys, one a line (# comments)")
    jwt_leeway: float = setting(30.0, "seconds of clock skew allowed on exp")
    allowed_origins: tuple[str, ...] = setting((), "allowed Origin")
    max_message_bytes: int = setting(65536, "largest frame and event")
    queue_limit_bytes: int = setting(1048576, "unsent bytes before 4008")
    write_timeout: float = setting(10.0, "seconds a write may stall")
    close_timeout: float = setting(1.0, "seconds to wait for a close reply")
    drain_timeout: float = setting(30.0, "seconds to close all on shutdown")
    connect_rate_per_user: float = setting(50.0, "upgrades/s per user")
    connect_rate_per_address: float = setting(0.0, "upgrades/s per IP; 0 = off")
    max_connections: int = setting(0, "global cap per instance; 0 = off")
    message_rate_per_connection: float = setting(
        50.0, "inbound frames per second per connection, burst twice that; 0 = off"
    )
    retention_events: int = setting(1000, "events kept per thread")
    retention_seconds: float = setting(300.0, "seconds events are kept")
    compression: bool = setting(False, "permessage-deflate")
    demo_step_delay: float = setting(0.05, "seconds between demo events")
    lease_ttl: float = setting(15.0, "redis: seconds before leases expire")
    forwarded_allow_ips: str = setting("127.0.0.1", "proxies trusted for X-Forwarded")
    sweep_interval: float = setting(5.0, "seconds between sweeps of expired records", command_line=False)
    ticket_ttl: float = setting(30.0, "seconds a ticket stays redeemable", command_line=False)
    workers: int = setting(1, "worker processes on one port; more than 1 needs a Redis backend")
    max_subscriptions_per_connection: int = setting(100, "threads one connection may subscribe to at once")
    metrics_allow_gc: bool = setting(False, "honour /metrics?collect_garbage=1")
    run_rate_per_user: float = setting(10.0, "runs started/s per user; 0 = off")
    max_runs_per_user: int = setting(10, "runs at once per user; 0 = off")
    ticket_rate_per_user: float = setting(10.0, "tickets/s per user; 0 = off")
    max_tickets_per_user: int = setting(100, "unused tickets per user; 0 = off")
    max_remembered_threads: int = setting(10000, "memory backend: expired threads whose last offset is kept")
    header_timeout: float = setting(10.0, "seconds to receive a request head")
    keep_alive_timeout: float = setting(5.0, "seconds an idle HTTP connection stays")
    max_pending_per_address: int = setting(
        256, "connections per peer address not yet upgraded, --forwarded-allow-ips exempt; 0 = off"
    )
    ssl_certfile: str | None = setting(None, "TLS certificate chain (PEM): serve wss://")
    ssl_keyfile: str | None = setting(None, "TLS private key (PEM), if not in the certificate file")
    log_level: str = setting("info", "debug, info, warning, error", parse=str.lower)
    log_format: str = setting("text", "text or json, one object a line", parse=str.lower)
    loop: str = setting(
        "auto", "event loop: auto (uvloop when it is installed), asyncio or uvloop", parse=str.lower
    )
    http: str = setting(
        "auto", "HTTP parser: auto (httptools when it is installed), h11 or httptools", parse=str.lower
    )
    leakcheck_report_dir: str | None = setting(
        None, "directory of this server's last leakcheck report, shown on /admin"
    )
    """Where ``wsguard leakcheck --report-dir`` writes for this server; the dashboard shows it."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`SettingError` for the first value that cannot work."""
        positive = {
            "max_connections_per_user": self.max_connections_per_user,
            "heartbeat_interval": self.heartbeat_interval,
            "heartbeat_timeout": self.heartbeat_timeout,
            "max_message_bytes": self.max_message_bytes,
            "queue_limit_bytes": self.queue_limit_bytes,
            "write_timeout": self.write_timeout,
            "close_timeout": self.close_timeout,
            "drain_timeout": self.drain_timeout,
            "retention_events": self.retention_events,
            "retention_seconds": self.retention_seconds,
            "lease_ttl": self.lease_ttl,
            "sweep_interval": self.sweep_interval,
            "max_subscriptions_per_connection": self.max_subscriptions_per_connection,
            "max_remembered_threads": self.max_remembered_threads,
            "header_timeout": self.header_timeout,
            "keep_alive_timeout": self.keep_alive_timeout,
        }
        for name, value in positive.items():
            if not value > 0:
                raise SettingError(name, f"must be greater than 0, got {value}")
        non_negative = {
            "jwt_leeway": self.jwt_leeway,
            "connect_rate_per_user": self.connect_rate_per_user,
            "connect_rate_per_address": self.connect_rate_per_address,
            "max_connections": self.max_connections,
            "message_rate_per_connection": self.message_rate_per_connection,
            "demo_step_delay": self.demo_step_delay,
            "run_rate_per_user": self.run_rate_per_user,
            "max_runs_per_user": self.max_runs_per_user,
            "ticket_rate_per_user": self.ticket_rate_per_user,
            "max_tickets_per_user": self.max_tickets_per_user,
            "max_pending_per_address": self.max_pending_per_address,
        }
        for name, value in non_negative.items():
            if value < 0:
                raise SettingError(name, f"must be 0 or more, got {value}")
        if not 0 <= self.port <= 65535:
            raise SettingError("port", f"must be 0 to 65535, got {self.port}")
        if self.log_level not in LOG_LEVELS:
            raise SettingError("log_level", f"must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        if self.log_format not in LOG_FORMATS:
            raise SettingError("log_format", f"must be text or json, got {self.log_format!r}")
        if self.loop not in EVENT_LOOPS:
            raise SettingError("loop", f"must be one of {', '.join(EVENT_LOOPS)}, got {self.loop!r}")
        if self.loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
            raise SettingError("loop", "uvloop is not installed (pip install 'wsguard[uvloop]')")
        if self.http not in HTTP_PARSERS:
            raise SettingError("http", f"must be one of {', '.join(HTTP_PARSERS)}, got {self.http!r}")
        if self.http == "httptools" and importlib.util.find_spec("httptools") is None:
            raise SettingError("http", "httptools is not installed (pip install 'wsguard[httptools]')")
        try:
            check_backend_url(self.backend)
        except ValueError as error:
            raise SettingError("backend", str(error)) from error
        if self.workers < 1:
            raise SettingError("workers", f"must be 1 or more, got {self.workers}")
        if self.workers > 1 and self.backend == "memory":
            raise SettingError(
                "workers",
                "needs a Redis backend (--backend redis://HOST:PORT/DB): with the memory backend "
                "each worker would keep its own limits and events",
            )
        if self.ssl_keyfile and not self.ssl_certfile:
            raise SettingError("ssl_keyfile", "needs a certificate file too (--ssl-certfile)")
        self._validate_identity()

    def _validate_identity(self) -> None:
        """The token rules and API keys: each value on its own, then the algorithms against the keys."""
        for url in self.jwks_urls:
            parts = urlsplit(url)
            if parts.scheme not in ("https", "http") or not parts.hostname:
                raise SettingError("jwks_urls", f"must be an https:// (or http://) URL, got {url!r}")
        if any(not audience for audience in self.jwt_audiences):
            raise SettingError("jwt_audiences", "an audience must not be empty")
        if self.jwt_issuer is not None and not self.jwt_issuer:
            raise SettingError("jwt_issuer", "must not be empty")
        problem = check_path(self.jwt_user_claim)
        if problem is not None:
            raise SettingError("jwt_user_claim", problem)
        try:
            AdminClaim.parse(self.jwt_admin_claim)
        except ValueError as error:
            raise SettingError("jwt_admin_claim", str(error)) from error
        problem = jwt_algorithms.problem_with(
            self.jwt_algorithms,
            secret=bool(self.jwt_secret),
            public=bool(self.jwt_public_key or self.jwks_file or self.jwks_urls),
            dev=self.dev,
        )
        if problem is not None:
            raise SettingError("jwt_algorithms", problem)
        for key in self.api_keys:
            problem = api_key_problem(key)
            if problem is not None:
                raise SettingError("api_keys", problem)

    @property
    def has_jwt_key(self) -> bool:
        return bool(self.jwt_secret or self.jwt_public_key or self.jwks_file or self.jwks_urls)


TAKEN_FROM = "wsguard.setting_of"
"""The key of a dataclass field's metadata that names the setting it takes (see :func:`taken_from`)."""


def taken_from(name: str) -> Any:
    """A dataclass field that is the setting ``name`` in another layer's options (the transport's,
    the edge's, a connection's limits): its default is the setting's, written once, here."""
    (setting,) = (setting for setting in fields(Settings) if setting.name == name)
    return field(default=setting.default, metadata={TAKEN_FROM: name})
