"""uvicorn's h11 HTTP protocol, with the limits an internet-facing upgrade endpoint needs.

Stock uvicorn reads a request head for as long as the peer takes (no timer runs until a first
response has been sent), answers a head over h11's buffer with a bare 400, hands any other head
to the WebSocket protocol (whose parser gives up on a line over 8 KiB without answering, so the
connection stays open), upgrades an HTTP/1.0 request, and lets one address hold as many
unfinished connections as it likes. This subclass:

- bounds the head (:mod:`.http_limits`) and answers 400, 414 or 431, then closes;
- closes a connection whose head is not complete within ``header_timeout`` (408) and counts an
  idle keep-alive connection closed by uvicorn's ``timeout_keep_alive``;
- closes at once a new connection past the per-address cap or inside the descriptor reserve
  (:class:`~wsguard.transport.edge.Edge`);
- drops TCP ``close_timeout`` seconds after any close it starts (a refusal, a timeout, the
  server's shutdown), whether or not the peer reads or answers TLS's close_notify;
- gives a response that is a stream (:class:`StreamControl`) a socket's modest kernel send
  buffer, its unsent bytes, and a reset for a peer that stopped reading.

Every refusal is counted in ``wsguard_http_refused_total{reason}``.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, ClassVar

import h11
from uvicorn.config import Config
from uvicorn.logging import TRACE_LOG_LEVEL
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from wsguard.transport.control import HTTP_EXTENSION_KEY, StreamControl
from wsguard.transport.edge import EDGE_EXTENSION_KEY, Edge
from wsguard.transport.http_limits import MAX_HEAD_BYTES, HeadRefusal, check_head, refusal_response
from wsguard.transport.protocol import GuardedWebSocketProtocol
from wsguard.transport.tcp import limit_send_buffer, reset

HEADER_TIMEOUT_RESPONSE = refusal_response(408, "request head not received in time")


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


class _Stream:
    """A connection's :class:`StreamControl`, holding its protocol weakly: the protocol holds the
    app that hands this out, and a strong reference back would leave every closed connection in
    a reference cycle for the collector."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: GuardedHttpProtocol) -> None:
        self._protocol = weakref.ref(protocol)

    def stream_started(self) -> None:
        protocol = self._protocol()
        if protocol is not None:
            protocol.release()
            limit_send_buffer(protocol.transport, protocol.send_buffer_bytes)

    def unsent_bytes(self) -> int:
        protocol = self._protocol()
        return protocol.transport.get_write_buffer_size() if protocol is not None else 0

    def abort(self) -> None:
        protocol = self._protocol()
        if protocol is not None:
            reset(protocol.transport)


class _WithEdge:
    """The app, with the edge and the connection's :class:`StreamControl` in
    ``scope["extensions"]`` of every HTTP request."""

    __slots__ = ("app", "control", "edge")

    def __init__(self, app: Any, edge: Edge, control: StreamControl) -> None:
        self.app = app
        self.edge = edge
        self.control = control

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        extensions = scope.get("extensions", {})
        scope["extensions"] = {**extensions, EDGE_EXTENSION_KEY: self.edge, HTTP_EXTENSION_KEY: self.control}
        await self.app(scope, receive, send)


class QuietInvalidRequests(logging.Filter):
    """Drop uvicorn's warning for each invalid request: a flood of them would flood the log;
    ``wsguard_http_refused_total`` counts them instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Invalid HTTP request received."


class GuardedHttpProtocol(H11Protocol):
    """Configured by :func:`http_protocol_class`; do not pass this base class to uvicorn directly."""

    edge: ClassVar[Edge]
    close_timeout_seconds: ClassVar[float]
    send_buffer_bytes: ClassVar[int] = 65536
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
        self.app = _WithEdge(self.app, self.edge, _Stream(self))
        self.address: str | None = None
        self.admitted = False
        self.header_timer: asyncio.TimerHandle | None = None
        self.drop_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        descriptor: int | None = sock.fileno() if sock is not None else None
        self.address = self.client[0] if self.client else None
        if self.edge.admit(self.address, descriptor) is not None:
            transport.abort()
            return
        self.admitted = True
        self.arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_header_timer()
        if self.drop_timer is not None:
            self.drop_timer.cancel()
            self.drop_timer = None
        self.release()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.follow_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.follow_head()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        """uvicorn's upgrade, handing the head to wsguard's WebSocket protocol as h11 parsed it
        (:meth:`~.protocol.GuardedWebSocketProtocol.upgrade_parsed`) rather than as bytes to
        parse again, when that protocol takes it."""
        self.cancel_header_timer()
        self.release()
        ws_class = self.ws_protocol_class
        if not (
            isinstance(ws_class, type)
            and issubclass(ws_class, GuardedWebSocketProtocol)
            and ws_class.takes_parsed(event.method, self.headers)
        ):
            super().handle_websocket_upgrade(event)
            return
        if self.logger.level <= TRACE_LOG_LEVEL:
            prefix = f"{self.client[0]}:{self.client[1]} - " if self.client else ""
            self.logger.log(TRACE_LOG_LEVEL, "%sUpgrading to WebSocket", prefix)
        self.connections.discard(self)
        protocol = ws_class(config=self.config, server_state=self.server_state, app_state=self.app_state)
        protocol.connection_made(self.transport)
        self.transport.set_protocol(protocol)
        protocol.upgrade_parsed(event.target, self.headers)

    def send_400_response(self, msg: str) -> None:
        refusal = self.conn.refusal or HeadRefusal(400, "bad_request", "malformed request")
        self.edge.refuse(refusal.reason)
        self.close_with(refusal_response(refusal.status, refusal.message))

    def shutdown(self) -> None:
        super().shutdown()
        self.drop_when_closing()

    def timeout_keep_alive_handler(self) -> None:
        if not self.transport.is_closing():
            self.edge.refuse("idle_timeout")
        super().timeout_keep_alive_handler()
        self.drop_when_closing()

    # The head's timer

    def follow_head(self) -> None:
        """A head is awaited while h11 waits for a request and bytes of one have arrived."""
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            self.cancel_header_timer()
        elif self.conn.trailing_data[0]:
            self.arm_header_timer()

    def arm_header_timer(self) -> None:
        if self.header_timer is None:
            timeout = self.edge.limits.header_timeout
            self.header_timer = self.loop.call_later(timeout, self.header_timeout)

    def cancel_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def header_timeout(self) -> None:
        self.header_timer = None
        if self.transport.is_closing():
            return
        self.edge.refuse("header_timeout")
        self.close_with(HEADER_TIMEOUT_RESPONSE)

    # Closing

    def release(self) -> None:
        """Give the connection's place under the per-address cap back, once."""
        if self.admitted:
            self.admitted = False
            self.edge.release(self.address)

    def close_with(self, response: bytes) -> None:
        """Write ``response`` and close; drop TCP after ``close_timeout`` if it has not gone."""
        self.cancel_header_timer()
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()
        self.drop_when_closing()

    def drop_when_closing(self) -> None:
        if self.drop_timer is None and self.transport.is_closing():
            self.drop_timer = self.loop.call_later(self.close_timeout_seconds, self.transport.abort)


def http_protocol_class(
    edge: Edge, *, close_timeout: float, send_buffer_bytes: int
) -> type[GuardedHttpProtocol]:
    """A configured HTTP protocol class for ``uvicorn.Config(http=...)``, sharing ``edge``;
    ``send_buffer_bytes`` is a stream's kernel send buffer (``SO_SNDBUF``)."""
    if close_timeout <= 0:
        raise ValueError("close_timeout must be positive")
    attributes: dict[str, Any] = {
        "edge": edge,
        "close_timeout_seconds": close_timeout,
        "send_buffer_bytes": send_buffer_bytes,
    }
    return type("WSGuardHttpProtocol", (GuardedHttpProtocol,), attributes)
