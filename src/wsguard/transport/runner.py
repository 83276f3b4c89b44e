"""Serve an ASGI app on uvicorn with wsguard's WebSocket protocol and draining server."""

from __future__ import annotations

import copy
import logging.config
import math
import socket
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from wsguard.logs import formatters
from wsguard.settings import TAKEN_FROM, Settings, resolved_http_parser, taken_from
from wsguard.transport.compat import check_uvicorn, required_internals
from wsguard.transport.descriptors import LISTEN_QUEUE, raise_soft_limit
from wsguard.transport.edge import Edge, EdgeLimits
from wsguard.transport.http_limits import MAX_HEAD_BYTES
from wsguard.transport.http_protocol import http_protocol_class
from wsguard.transport.protocol import protocol_class, wire_logger
from wsguard.transport.server import Drain, WSGuardServer

logger = logging.getLogger("wsguard.transport")


@dataclass(frozen=True)
class TransportOptions:
    """The transport's share of ``wsguard serve``'s settings, with their defaults, and the
    transport's own options."""

    host: str = taken_from("host")
    port: int = taken_from("port")
    heartbeat_interval: float = taken_from("heartbeat_interval")
    heartbeat_timeout: float = taken_from("heartbeat_timeout")
    max_message_bytes: int = taken_from("max_message_bytes")
    write_timeout: float | None = None
    """Off by default, and not the ``write_timeout`` setting: wsguard's runtime times its own
    writes; set it for a plain ASGI app."""
    close_timeout: float = taken_from("close_timeout")
    compression: bool = taken_from("compression")
    forwarded_allow_ips: str = taken_from("forwarded_allow_ips")
    log_level: str = taken_from("log_level")
    log_format: str = taken_from("log_format")
    """``text`` or ``json`` (see :mod:`wsguard.logs`)."""
    loop: str = taken_from("loop")
    """``auto``, ``asyncio`` or ``uvloop``, as uvicorn's ``loop``."""
    http: str = taken_from("http")
    """``auto``, ``h11`` or ``httptools``, as uvicorn's ``http``."""
    access_log: bool = False
    send_buffer_bytes: int = 65536
    refusal_log_window: float = 10.0
    """Refused upgrades after the first are logged as one count per this many seconds."""
    shutdown_timeout: float = 5.0
    """Seconds the shutdown after the drain waits for leftover connections and tasks."""
    header_timeout: float = taken_from("header_timeout")
    """Seconds a connection has to complete its request head (408 and close past it)."""
    keep_alive_timeout: float = taken_from("keep_alive_timeout")
    """Seconds an HTTP connection may sit idle between requests."""
    max_pending_per_address: int = taken_from("max_pending_per_address")
    """Unfinished (not upgraded) connections per peer address; 0 turns the cap off."""
    ssl_certfile: str | None = taken_from("ssl_certfile")
    ssl_keyfile: str | None = taken_from("ssl_keyfile")

    @classmethod
    def from_settings(cls, settings: Settings) -> TransportOptions:
        """The options of a ``wsguard serve`` process: every field that is a setting, from
        ``settings``; the transport's own options at their defaults."""
        taken = (option for option in fields(cls) if TAKEN_FROM in option.metadata)
        return cls(**{option.name: getattr(settings, option.metadata[TAKEN_FROM]) for option in taken})

    @property
    def edge_limits(self) -> EdgeLimits:
        return EdgeLimits(
            header_timeout=self.header_timeout,
            keep_alive_timeout=self.keep_alive_timeout,
            max_pending_per_address=self.max_pending_per_address,
            forwarded_allow_ips=self.forwarded_allow_ips,
        )


def logging_config(log_level: str, log_format: str = "text") -> dict[str, Any]:
    """uvicorn's logging configuration in wsguard's format, wsguard's loggers on the same handler."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"] = formatters(log_format)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config["loggers"]["wsguard"] = {
        "handlers": ["default"],
        "level": log_level.upper(),
        "propagate": False,
    }
    config["loggers"][wire_logger.name] = {"level": "WARNING"}
    config.setdefault("filters", {})["wsguard_invalid_requests"] = {
        "()": "wsguard.transport.http_guard.QuietInvalidRequests"
    }
    config["loggers"]["uvicorn.error"]["filters"] = ["wsguard_invalid_requests"]
    return config


def accept_batch(edge: Edge) -> int:
    """How many sockets asyncio accepts in one pass before any of them is looked at (uvicorn's
    ``backlog``): a quarter of the descriptor reserve at most, so that the few passes whose
    refused sockets are still closing can never run into EMFILE together. The server widens
    the kernel's listen queue back to :data:`LISTEN_QUEUE` once it listens."""
    return max(1, min(LISTEN_QUEUE, edge.budget.reserve // 4))


def build_config(app: Any, options: TransportOptions, edge: Edge | None = None) -> uvicorn.Config:
    """The ``uvicorn.Config`` for ``app``: wsguard's protocol classes and WebSocket settings.

    ``edge`` (a new one by default) is shared by every HTTP connection of the server.
    """
    parser = resolved_http_parser(options.http)
    untested = check_uvicorn(required=required_internals(parser))
    edge = edge or Edge(options.edge_limits)
    http = http_protocol_class(
        edge,
        close_timeout=options.close_timeout,
        send_buffer_bytes=options.send_buffer_bytes,
        parser=parser,
    )
    ws = protocol_class(
        close_timeout=options.close_timeout,
        send_buffer_bytes=options.send_buffer_bytes,
        write_timeout=options.write_timeout,
        refusal_log_window=options.refusal_log_window,
    )
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        http=http,
        ws=ws,
        loop=options.loop,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        backlog=accept_batch(edge),
        timeout_keep_alive=options.keep_alive_timeout,  # type: ignore[arg-type]
        ssl_certfile=options.ssl_certfile,
        ssl_keyfile=options.ssl_keyfile,
        ws_ping_interval=options.heartbeat_interval,
        ws_ping_timeout=options.heartbeat_timeout,
        ws_max_size=options.max_message_bytes,
        ws_per_message_deflate=options.compression,
        proxy_headers=True,
        forwarded_allow_ips=options.forwarded_allow_ips,
        log_config=logging_config(options.log_level, options.log_format),
        log_level=options.log_level,
        access_log=options.access_log,
        lifespan="on",
        timeout_graceful_shutdown=max(1, math.ceil(options.shutdown_timeout)),
    )
    if untested is not None:
        logger.warning("%s", untested)
    return config


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
    The soft descriptor limit is raised to the hard limit first.
    """
    logging.config.dictConfig(logging_config(options.log_level, options.log_format))
    raise_soft_limit()  # before the config, whose descriptor reserve is taken from the limit
    WSGuardServer(build_config(app, options), drain, on_signal).run(sockets=sockets)
