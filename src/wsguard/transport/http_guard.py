"""What wsguard's two HTTP protocols (h11's and httptools') add to uvicorn's, whatever the parser.

Stock uvicorn reads a request head for as long as the peer takes (no timer runs until a first
response has been sent), answers a head over its parser's buffer with a bare 400 (h11) or not at
all (httptools), hands any other head to the WebSocket protocol (whose parser gives up on a line
over 8 KiB without answering, so the connection stays open), upgrades an HTTP/1.0 request, and
lets one address hold as many unfinished connections as it likes. :class:`EdgeGuard`, mixed into
each parser's protocol:

- answers a head over the limits of :mod:`.http_limits` with 400, 414 or 431, then closes;
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
from typing import TYPE_CHECKING, Any, ClassVar

from uvicorn.config import Config
from uvicorn.logging import TRACE_LOG_LEVEL
from uvicorn.server import ServerState

from wsguard.transport.control import HTTP_EXTENSION_KEY, StreamControl
from wsguard.transport.edge import EDGE_EXTENSION_KEY, Edge
from wsguard.transport.http_limits import HeadRefusal, refusal_response
from wsguard.transport.protocol import GuardedWebSocketProtocol
from wsguard.transport.tcp import limit_send_buffer, reset

HEADER_TIMEOUT_RESPONSE = refusal_response(408, "request head not received in time")
MALFORMED = HeadRefusal(400, "bad_request", "malformed request")


class _Stream:
    """A connection's :class:`StreamControl`, holding its protocol weakly: the protocol holds the
    app that hands this out, and a strong reference back would leave every closed connection in
    a reference cycle for the collector."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: EdgeGuard) -> None:
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


if TYPE_CHECKING:

    class _UvicornHttpProtocol(asyncio.Protocol):
        """The hooks both of uvicorn's HTTP protocols have, which :class:`EdgeGuard` extends."""

        def __init__(
            self,
            config: Config,
            server_state: ServerState,
            app_state: dict[str, Any],
            _loop: asyncio.AbstractEventLoop | None = None,
        ) -> None: ...
        def shutdown(self) -> None: ...
        def timeout_keep_alive_handler(self) -> None: ...

else:
    _UvicornHttpProtocol = asyncio.Protocol


class EdgeGuard(_UvicornHttpProtocol):
    """The edge's limits and timers, mixed in before a uvicorn HTTP protocol class.

    The protocol answers every head its parser refuses with :meth:`refuse_head`; connections,
    closes and timers are handled here.
    """

    parser_name: ClassVar[str]
    """The parser's name, as uvicorn's ``http`` setting spells it."""
    edge: ClassVar[Edge]
    close_timeout_seconds: ClassVar[float]
    send_buffer_bytes: ClassVar[int] = 65536
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    client: tuple[str, int] | None
    logger: logging.Logger
    config: Config
    server_state: ServerState
    app_state: dict[str, Any]
    ws_protocol_class: type[asyncio.Protocol] | None
    app: Any
    address: str | None = None
    admitted: bool = False
    header_timer: asyncio.TimerHandle | None = None
    drop_timer: asyncio.TimerHandle | None = None

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.app = _WithEdge(self.app, self.edge, _Stream(self))

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.admit(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.forget()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        super().shutdown()
        self.drop_when_closing()

    def timeout_keep_alive_handler(self) -> None:
        if not self.transport.is_closing():
            self.edge.refuse("idle_timeout")
        super().timeout_keep_alive_handler()
        self.drop_when_closing()

    def admit(self, transport: asyncio.Transport) -> None:
        """Take a place under the per-address cap and start the head's timer, or close at once."""
        sock = transport.get_extra_info("socket")
        descriptor: int | None = sock.fileno() if sock is not None else None
        self.address = self.client[0] if self.client else None
        if self.edge.admit(self.address, descriptor) is not None:
            transport.abort()
            return
        self.admitted = True
        self.arm_header_timer()

    def forget(self) -> None:
        """The connection is gone: stop its timers and give its place back."""
        self.cancel_header_timer()
        if self.drop_timer is not None:
            self.drop_timer.cancel()
            self.drop_timer = None
        self.release()

    def refuse_head(self, refusal: HeadRefusal | None) -> None:
        """Count and answer a head the parser or the limits refused, then close."""
        refusal = refusal or MALFORMED
        self.edge.refuse(refusal.reason)
        self.close_with(refusal_response(refusal.status, refusal.message))

    def parsed_upgrade_class(
        self, method: bytes, headers: list[tuple[bytes, bytes]]
    ) -> type[GuardedWebSocketProtocol] | None:
        """The head is an upgrade: the WebSocket protocol class that takes it as parsed
        (:meth:`~.protocol.GuardedWebSocketProtocol.upgrade_parsed`), or ``None`` for uvicorn's
        own hand-over, which writes the head out again for the ``websockets`` parser."""
        self.cancel_header_timer()
        self.release()
        ws_class = self.ws_protocol_class
        if (
            isinstance(ws_class, type)
            and issubclass(ws_class, GuardedWebSocketProtocol)
            and ws_class.takes_parsed(method, headers)
        ):
            return ws_class
        return None

    def hand_over(
        self, ws_class: type[GuardedWebSocketProtocol], target: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        """Switch the transport to a new ``ws_class`` protocol holding the parsed head."""
        if self.logger.level <= TRACE_LOG_LEVEL:
            prefix = f"{self.client[0]}:{self.client[1]} - " if self.client else ""
            self.logger.log(TRACE_LOG_LEVEL, "%sUpgrading to WebSocket", prefix)
        protocol = ws_class(config=self.config, server_state=self.server_state, app_state=self.app_state)
        protocol.connection_made(self.transport)
        self.transport.set_protocol(protocol)
        protocol.upgrade_parsed(target, headers)

    # The head's timer

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
