"""The uvicorn internals the transport overrides, checked before it starts.

The protocol classes and the server subclass uvicorn's (the sans-I/O WebSocket protocol's
``send``, ``keepalive_timeout``, ``connection_lost`` and close timer, which took their present
shape in uvicorn 0.52.1; the h11 and httptools protocols' upgrade and keep-alive hooks; the server's
``on_tick``, ``handle_exit``, ``capture_signals`` and ``_log_started_message``). uvicorn's
releases are not bound from above, so that an application can upgrade its server: a version in
the tested range runs; a newer one runs when every internal below is still there, with a
warning naming the tested range; a version older than the range, or one that lacks an
internal, is refused. Nothing here imports those internals, so that the check can run (and
refuse in one line) before the modules that subclass them are loaded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import import_module

import uvicorn

from wsguard.errors import WSGuardError

TESTED_UVICORN = ((0, 52, 1), (0, 56, 0))
"""The lowest tested version, and the first release series not tested."""

REQUIRED_INTERNALS: tuple[tuple[str, str], ...] = (
    ("uvicorn._types", "ASGISendEvent"),
    ("uvicorn.config", "LOGGING_CONFIG"),
    ("uvicorn.logging", "DefaultFormatter"),
    ("uvicorn.middleware.proxy_headers", "_TrustedHosts"),
    ("uvicorn.protocols.utils", "ClientDisconnected"),
    ("uvicorn.protocols.utils", "get_client_addr"),
    ("uvicorn.protocols.websockets.websockets_sansio_impl", "STATUS_PHRASES"),
    *(
        ("uvicorn.protocols.websockets.websockets_sansio_impl", f"WebSocketsSansIOProtocol.{name}")
        for name in (
            "connection_made",
            "connection_lost",
            "data_received",
            "handle_connect",
            "handle_close",
            "handle_parser_exception",
            "shutdown",
            "run_asgi",
            "keepalive_timeout",
            "start_keepalive",
            "stop_keepalive",
            "send",
        )
    ),
    *(
        ("uvicorn.protocols.http.h11_impl", f"H11Protocol.{name}")
        for name in (
            "connection_made",
            "connection_lost",
            "data_received",
            "on_response_complete",
            "handle_websocket_upgrade",
            "send_400_response",
            "shutdown",
            "timeout_keep_alive_handler",
        )
    ),
    ("uvicorn.server", "ServerState"),
    *(
        ("uvicorn.server", f"Server.{name}")
        for name in ("_log_started_message", "handle_exit", "on_tick", "startup", "capture_signals")
    ),
)
"""``(module, attribute path)`` for everything the transport subclasses, overrides or calls."""

HTTPTOOLS_INTERNALS: tuple[tuple[str, str], ...] = tuple(
    ("uvicorn.protocols.http.httptools_impl", f"HttpToolsProtocol.{name}")
    for name in (
        "connection_made",
        "connection_lost",
        "data_received",
        "on_message_begin",
        "on_headers_complete",
        "on_message_complete",
        "handle_websocket_upgrade",
        "send_400_response",
        "shutdown",
        "timeout_keep_alive_handler",
    )
)
"""What the httptools protocol overrides, required when it is the parser."""


def required_internals(http_parser: str) -> tuple[tuple[str, str], ...]:
    """The internals a server with ``http_parser`` (``h11`` or ``httptools``) overrides."""
    return REQUIRED_INTERNALS + (HTTPTOOLS_INTERNALS if http_parser == "httptools" else ())


class UnsupportedUvicorn(WSGuardError, RuntimeError):
    """The installed uvicorn lacks something the transport needs; the message is one line."""


def release(version: str) -> tuple[int, int, int]:
    """``(major, minor, patch)`` of a version string such as ``0.55.0`` or ``0.56.0rc1``."""
    parts = [int(match) for match in re.findall(r"\d+", version.split("+")[0])[:3]]
    major, minor, patch = [*parts, 0, 0, 0][:3]
    return major, minor, patch


def _dotted(numbers: tuple[int, int, int]) -> str:
    return ".".join(map(str, numbers))


def tested_range() -> str:
    lowest, first_untested = TESTED_UVICORN
    return f">={_dotted(lowest)},<{_dotted(first_untested)}"


def missing_internals(required: Sequence[tuple[str, str]] = REQUIRED_INTERNALS) -> list[str]:
    """The ``module:attribute`` names of ``required`` that the installed uvicorn lacks."""
    missing: list[str] = []
    for module_name, path in required:
        try:
            value: object = import_module(module_name)
        except ImportError:
            missing.append(f"{module_name}:{path}")
            continue
        for name in path.split("."):
            if not hasattr(value, name):
                missing.append(f"{module_name}:{path}")
                break
            value = getattr(value, name)
    return missing


def check_uvicorn(
    version: str | None = None, required: Sequence[tuple[str, str]] = REQUIRED_INTERNALS
) -> str | None:
    """``None`` for a tested uvicorn, a warning to log for a newer one that has every internal.

    Raises :class:`UnsupportedUvicorn` for a version older than the tested range, or for any
    version that lacks one of ``required``.
    """
    version = uvicorn.__version__ if version is None else version
    lowest, first_untested = TESTED_UVICORN
    if release(version) < lowest:
        raise UnsupportedUvicorn(
            f"wsguard's transport needs uvicorn {tested_range()} (tested); uvicorn {version} is installed"
        )
    missing = missing_internals(required)
    if missing:
        raise UnsupportedUvicorn(
            f"wsguard's transport cannot run on uvicorn {version}: it lacks {', '.join(missing)} "
            f"(tested: uvicorn {tested_range()})"
        )
    if release(version) >= first_untested:
        return (
            f"uvicorn {version} is newer than the versions wsguard's transport is tested with "
            f"({tested_range()}); every internal it overrides is present, so it runs"
        )
    return None
