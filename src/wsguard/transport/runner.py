"""Serve an ASGI app on uvicorn with wsguard's WebSocket protocol and draining server."""

from __future__ import annotations

import copy
import math
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from wsguard.transport.compat import check_uvicorn_version
from wsguard.transport.protocol import protocol_class, wire_logger
from wsguard.transport.server import Drain, WSGuardServer

if TYPE_CHECKING:
    from wsguard.settings import Settings


@dataclass(frozen=True)
class TransportOptions:
    """The transport's share of ``wsguard serve``'s settings (defaults as in the contract)."""

    host: str = "127.0.0.1"
    port: int = 8765
    heartbeat_interval: float = 20.0
    heartbeat_timeout: float = 20.0
    max_message_bytes: int = 65536
    write_timeout: float | None = None
    """Off by default: wsguard's runtime times its own writes; set it for a plain ASGI app."""
    close_timeout: float = 1.0
    compression: bool = False
    forwarded_allow_ips: str = "127.0.0.1"
    log_level: str = "info"
    access_log: bool = False
    send_buffer_bytes: int = 65536
    refusal_log_window: float = 10.0
    """Refused upgrades after the first are logged as one count per this many seconds."""
    shutdown_timeout: float = 5.0
    """Seconds the shutdown after the drain waits for leftover connections and tasks."""

    @classmethod
    def from_settings(cls, settings: Settings, *, log_level: str = "info") -> TransportOptions:
        """The options of a ``wsguard serve`` process."""
        return cls(
            host=settings.host,
            port=settings.port,
            heartbeat_interval=settings.heartbeat_interval,
            heartbeat_timeout=settings.heartbeat_timeout,
            max_message_bytes=settings.max_message_bytes,
            close_timeout=settings.close_timeout,
            compression=settings.compression,
            forwarded_allow_ips=settings.forwarded_allow_ips,
            log_level=log_level,
        )


def logging_config(log_level: str) -> dict[str, Any]:
    """uvicorn's logging configuration, with wsguard's loggers on the same handler."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["wsguard"] = {
        "handlers": ["default"],
        "level": log_level.upper(),
        "propagate": False,
    }
    config["loggers"][wire_logger.name] = {"level": "WARNING"}
    return config


def build_config(app: Any, options: TransportOptions) -> uvicorn.Config:
    """The ``uvicorn.Config`` for ``app``: wsguard's protocol class and WebSocket settings."""
    check_uvicorn_version()
    ws = protocol_class(
        close_timeout=options.close_timeout,
        send_buffer_bytes=options.send_buffer_bytes,
        write_timeout=options.write_timeout,
        refusal_log_window=options.refusal_log_window,
    )
    return uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        ws=ws,
        ws_ping_interval=options.heartbeat_interval,
        ws_ping_timeout=options.heartbeat_timeout,
        ws_max_size=options.max_message_bytes,
        ws_per_message_deflate=options.compression,
        proxy_headers=True,
        forwarded_allow_ips=options.forwarded_allow_ips,
        log_config=logging_config(options.log_level),
        log_level=options.log_level,
        access_log=options.access_log,
        lifespan="on",
        timeout_graceful_shutdown=max(1, math.ceil(options.shutdown_timeout)),
    )


def run(
    app: Any,
    options: TransportOptions,
    drain: Drain,
    sockets: list[socket.socket] | None = None,
    on_signal: Callable[[], None] | None = None,
) -> None:
    """Serve ``app`` until SIGTERM or SIGINT; ``drain`` runs first, then a normal shutdown.

    ``sockets``: listen on these (bound by a parent that runs several workers) instead of
    binding ``options.host`` and ``options.port``. ``on_signal`` runs inside the handler of the
    first signal (it must only set a flag). Returns normally after a signal (exit status 0 is
    the caller's ``return 0``); a start-up failure exits the process with uvicorn's status 3.
    """
    WSGuardServer(build_config(app, options), drain, on_signal).run(sockets=sockets)
