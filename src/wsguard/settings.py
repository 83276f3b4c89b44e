"""Every setting of a wsguard server, with the defaults of PROTOCOL.md section 1."""

from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

from wsguard import jwt_algorithms
from wsguard.claims import AdminClaim, check_path
from wsguard.redis_url import check_backend_url

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")
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
    REJECT = "reject"


class SettingError(ValueError):
    """A setting has a value it cannot take; the message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting


@dataclass(frozen=True)
class Settings:
    """Server configuration. Seconds may be fractional; 0 turns an optional limit off."""

    host: str = "127.0.0.1"
    port: int = 8765
    dev: bool = False
    backend: str = "memory"
    max_connections_per_user: int = 20
    limit_policy: LimitPolicy = LimitPolicy.EVICT_OLDEST
    heartbeat_interval: float = 20.0
    heartbeat_timeout: float = 20.0
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwks_file: str | None = None
    jwks_urls: tuple[str, ...] = ()
    jwt_audiences: tuple[str, ...] = ()
    jwt_issuer: str | None = None
    jwt_user_claim: str = "sub"
    jwt_admin_claim: str = "admin=true"
    jwt_algorithms: tuple[str, ...] = ()
    """Empty: HS256 for a secret; RS256, ES256, PS256 and EdDSA for public keys and JWKS."""
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    api_key_file: str | None = None
    jwt_leeway: float = 30.0
    allowed_origins: tuple[str, ...] = ()
    max_message_bytes: int = 65536
    queue_limit_bytes: int = 1048576
    write_timeout: float = 10.0
    close_timeout: float = 1.0
    drain_timeout: float = 30.0
    connect_rate_per_user: float = 50.0
    connect_rate_per_address: float = 0.0
    max_connections: int = 0
    message_rate_per_connection: float = 50.0
    retention_events: int = 1000
    retention_seconds: float = 300.0
    compression: bool = False
    demo_step_delay: float = 0.05
    lease_ttl: float = 15.0
    forwarded_allow_ips: str = "127.0.0.1"
    sweep_interval: float = 5.0
    ticket_ttl: float = 30.0
    workers: int = 1
    max_subscriptions_per_connection: int = 100
    metrics_allow_gc: bool = False
    run_rate_per_user: float = 10.0
    max_runs_per_user: int = 10
    ticket_rate_per_user: float = 10.0
    max_tickets_per_user: int = 100
    max_remembered_threads: int = 10000
    header_timeout: float = 10.0
    keep_alive_timeout: float = 5.0
    max_pending_per_address: int = 256
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    log_level: str = "info"
    log_format: str = "text"
    leakcheck_report_dir: str | None = None
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
