"""wsguard's HTTP protocols for uvicorn: h11's, and httptools' (:mod:`.http_httptools`) where it
is installed, each with the edge's limits and timers (:class:`~.http_guard.EdgeGuard`).

:func:`http_protocol_class` picks and configures one for ``uvicorn.Config(http=...)``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from wsguard.settings import resolved_http_parser
from wsguard.transport.edge import Edge
from wsguard.transport.http_guard import EdgeGuard
from wsguard.transport.http_limits import MAX_HEAD_BYTES, HeadRefusal, check_head


class _Connection(h11.Connection):
    """h11's server side, refusing a parsed head that is over wsguard's limits."""

    def __init__(self) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.refusal: HeadRefusal | None = None

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as error:
            if self.refusal is None:
                too_large = error.error_status_hint == 431
                self.refusal = HeadRefusal(
                    error.error_status_hint,
                    "head_too_large" if too_large else "bad_request",
                    f"request head over {MAX_HEAD_BYTES} bytes" if too_large else "malformed request",
                )
            raise
        if isinstance(event, h11.Request):
            refusal = check_head(event.method, event.target, event.http_version, list(event.headers))
            if refusal is not None:
                self.refusal = refusal
                raise h11.RemoteProtocolError(refusal.message, refusal.status)
        return event


class GuardedHttpProtocol(EdgeGuard, H11Protocol):
    """h11's protocol, configured by :func:`http_protocol_class`; do not pass this base class to
    uvicorn directly."""

    parser_name = "h11"
    conn: _Connection

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.conn = _Connection()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.follow_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.follow_head()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        """uvicorn's upgrade, handing the head to wsguard's WebSocket protocol as h11 parsed it
        when that protocol takes it."""
        ws_class = self.parsed_upgrade_class(event.method, self.headers)
        if ws_class is None:
            super().handle_websocket_upgrade(event)
            return
        self.connections.discard(self)
        self.hand_over(ws_class, event.target, self.headers)

    def send_400_response(self, msg: str) -> None:
        self.refuse_head(self.conn.refusal)

    def follow_head(self) -> None:
        """A head is awaited while h11 waits for a request and bytes of one have arrived."""
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            self.cancel_header_timer()
        elif self.conn.trailing_data[0]:
            self.arm_header_timer()


def http_protocol_class(
    edge: Edge, *, close_timeout: float, send_buffer_bytes: int, parser: str = "auto"
) -> type[EdgeGuard]:
    """A configured HTTP protocol class for ``uvicorn.Config(http=...)``, sharing ``edge``;
    ``send_buffer_bytes`` is a stream's kernel send buffer (``SO_SNDBUF``); ``parser`` is one of
    :data:`~wsguard.settings.HTTP_PARSERS`."""
    if close_timeout <= 0:
        raise ValueError("close_timeout must be positive")
    base: type[EdgeGuard] = GuardedHttpProtocol
    if resolved_http_parser(parser) == "httptools":
        from wsguard.transport.http_httptools import GuardedHttpToolsProtocol

        base = GuardedHttpToolsProtocol
    attributes: dict[str, Any] = {
        "edge": edge,
        "close_timeout_seconds": close_timeout,
        "send_buffer_bytes": send_buffer_bytes,
    }
    return type(f"WSGuard{base.__name__.removeprefix('Guarded')}", (base,), attributes)
