"""The lines a server logs as it starts: what runs, with which limits, and on which backend."""

import logging
import os

from wsguard.backends.base import Backend
from wsguard.redis_url import redact_url
from wsguard.settings import Settings
from wsguard.version import __version__

logger = logging.getLogger("wsguard")


def _off_or(value: float, text: str) -> str:
    return text if value else "off"


def log_start(settings: Settings, websocket_path: str) -> None:
    """Version, endpoints, the limits in force, and a warning when ``--dev`` is on."""
    logger.info(
        "wsguard %s starting (pid %d): WebSocket at %s, admin dashboard at /admin",
        __version__,
        os.getpid(),
        websocket_path,
    )
    logger.info(
        "limits: %d connections per user (%s), instance cap %s, messages up to %d bytes, "
        "%d unsent bytes per connection, heartbeat every %gs (timeout %gs), "
        "connect rate per user %s, per address %s, inbound messages per connection %s",
        settings.max_connections_per_user,
        settings.limit_policy.value,
        _off_or(settings.max_connections, str(settings.max_connections)),
        settings.max_message_bytes,
        settings.queue_limit_bytes,
        settings.heartbeat_interval,
        settings.heartbeat_timeout,
        _off_or(settings.connect_rate_per_user, f"{settings.connect_rate_per_user:g}/s"),
        _off_or(settings.connect_rate_per_address, f"{settings.connect_rate_per_address:g}/s"),
        _off_or(settings.message_rate_per_connection, f"{settings.message_rate_per_connection:g}/s"),
    )
    if settings.dev:
        logger.warning(
            "--dev is on: POST /api/dev/tokens gives any caller a token (admin too)%s, and every "
            "origin is allowed; never run --dev where others can reach it",
            "" if settings.has_jwt_key else " signed with a random secret",
        )


def log_backend(settings: Settings, backend: Backend) -> None:
    """The backend and whether it is reachable now; Redis logs being up, and each later change."""
    if settings.backend == "memory":
        logger.info("backend: memory (this process only)")
    elif not backend.up:
        logger.warning(
            "backend: %s, unreachable; admission runs on the local limit until it is back",
            redact_url(settings.backend),
        )
