"""uvicorn's sans-I/O WebSocket protocol, with the guarantees wsguard's contract needs.

Stock uvicorn (``websockets-sansio``) reports a heartbeat timeout as a plain disconnect, waits
10 s for a close handshake and then only half-closes a socket whose peer does not read, lets a
``websocket.close`` wait behind a full write buffer, and logs every upgrade. This subclass:

- reports a heartbeat timeout to the app as ``websocket.disconnect`` 1011 ``heartbeat_timeout``
  and sends the peer the same close frame before dropping TCP;
- drops TCP (abort, not a flushing close) ``close_timeout`` seconds after any close it starts,
  whether or not the peer answers or reads;
- sends ``websocket.close`` at once, even while the write buffer is full;
- optionally closes a connection whose write stalls past ``write_timeout`` with 4008
  ``slow_consumer``;
- keeps the socket's kernel send buffer modest, so that the bytes the app can count (the
  transport's buffer) are nearly all the unsent bytes;
- stamps when the server learned that the socket closed, for ``wsguard_cleanup_seconds``;
- reports a lost TCP connection as 1006 and a frame over ``ws_max_size`` as 1009 ``too_big``;
- answers a request head that the ``websockets`` parser refuses, and closes the connection;
- logs accepted upgrades at debug level and summarises refusals (see :mod:`.refusals`).

Each connection's :class:`~wsguard.transport.control.TransportControl` is in
``scope["extensions"]["wsguard.transport"]``.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
import weakref
from asyncio.transports import BaseTransport
from http import HTTPStatus
from typing import Any, ClassVar, cast

from uvicorn._types import ASGISendEvent, WebSocketDisconnectEvent
from uvicorn.config import Config
from uvicorn.protocols.utils import ClientDisconnected, get_client_addr
from uvicorn.protocols.websockets.websockets_sansio_impl import (
    STATUS_PHRASES,
    WebSocketsSansIOProtocol,
)
from uvicorn.server import ServerState
from websockets.datastructures import Headers
from websockets.exceptions import InvalidState
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol
from websockets.version import version as websockets_version

from wsguard.close import ABNORMAL, HEARTBEAT_TIMEOUT, SLOW_CONSUMER, TOO_BIG
from wsguard.transport.control import EXTENSION_KEY, CloseListener
from wsguard.transport.http_limits import refusal_response
from wsguard.transport.refusal_log import RefusalLog
from wsguard.transport.tcp import limit_send_buffer, reset

logger = logging.getLogger("wsguard.transport")
wire_logger = logging.getLogger("wsguard.transport.wire")
"""The ``websockets`` state machine's own logger: one INFO line per upgrade, so quiet by default."""
wire_logger.setLevel(logging.WARNING)


class _WireProtocol(ServerProtocol):
    """The ``websockets`` state machine, with the close reasons of wsguard's wire protocol."""

    def fail(self, code: CloseCode | int, reason: str = "") -> None:
        if code == CloseCode.MESSAGE_TOO_BIG:
            reason = TOO_BIG.reason
        super().fail(code, reason)


_BODY_HEADERS = (b"content-length", b"transfer-encoding")
"""Headers of a head with a body or a transfer coding: the ``websockets`` parser decides on
those (14 refuses any ``Content-Length``, 17 accepts one of 0)."""
_HEADER_VALUE_DECODING = (
    ("latin-1", "strict") if int(websockets_version.split(".")[0]) >= 17 else ("ascii", "surrogateescape")
)
"""How the ``websockets`` parser decodes a header value (ISO-8859-1 from version 17, surrogate
escapes before), which uvicorn encodes back the same way for the app's scope."""


class _Control:
    """The :class:`TransportControl` of one connection.

    It holds the asyncio transport and only a weak reference to the protocol: asyncio clears the
    transport's reference to the protocol once the connection is lost, so no reference cycle
    outlives the socket.
    """

    __slots__ = ("_listener", "_protocol", "_transport", "closed_at")

    def __init__(self, transport: asyncio.Transport, protocol: GuardedWebSocketProtocol) -> None:
        self._transport = transport
        self._protocol = weakref.ref(protocol)
        self._listener: CloseListener | None = None
        self.closed_at: float | None = None

    def unsent_bytes(self) -> int:
        return self._transport.get_write_buffer_size()

    def send_text_now(self, text: str) -> bool:
        protocol = self._protocol()
        if protocol is None or not protocol.may_send_now():
            return False
        protocol.send_text_frame(text)
        protocol.drop_when_closing()
        return True

    def abort(self) -> None:
        reset(self._transport)

    def on_closed(self, listener: CloseListener) -> None:
        self._listener = listener

    def notify_closed(self, code: int, reason: str) -> None:
        """Tell the listener once, then forget it (no reference outlives the socket)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener(code, reason)


class _SharedFrame:
    """The last text frame serialized, kept for the next connection that sends the same text.

    A server's frames are not masked, so without an extension (compression is off by default)
    a text's frame is the same bytes on every connection: a fan-out hands each recipient the
    one ``str`` it encoded once per event, and serializes it once instead of once per socket.
    One frame is kept (the same ``str`` object, compared by identity), never more; text and
    frame are one tuple, so that event loops in several threads never pair one's text with
    another's frame.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[str | None, bytes] = (None, b"")

    def of(self, text: str) -> bytes:
        last_text, frame = self._last
        if text is not last_text:
            frame = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
            self._last = (text, frame)
        return frame


_shared_frame = _SharedFrame()


class _AppQueue:
    """The app's receive queue: a disconnect put in it also reaches the control's listener at
    once, so that the app can release the connection before its own task is even scheduled.

    It does what uvicorn asks of its ``asyncio.Queue`` (``put_nowait``, ``get``, ``empty``) and
    holds nothing while it is empty and nobody waits: an ``asyncio.Queue`` keeps three deques
    and an event (about 3 KB) for each connection, for a queue that holds one or two events at
    a time (uvicorn stops reading the socket until the app takes each message).
    """

    __slots__ = ("_getters", "_items", "control")

    def __init__(self) -> None:
        self.control: _Control | None = None
        """Told of the disconnect; set once the transport exists. Not the protocol, which holds
        this queue: a cycle would leave every closed connection to the garbage collector."""
        self._items: list[Any] | None = None
        self._getters: list[asyncio.Future[None]] | None = None

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = []
        self._items.append(item)
        self._wake_next_getter()
        control = self.control
        if item.get("type") == "websocket.disconnect" and control is not None:
            control.notify_closed(item.get("code", ABNORMAL), item.get("reason") or "")

    def get_nowait(self) -> Any:
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.pop(0)
        if not self._items:
            self._items = None
        return item

    async def get(self) -> Any:
        """The next item, waiting for it; a cancelled getter passes its wake-up on, as
        ``asyncio.Queue.get`` does."""
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                self._forget_getter(getter)
                if self._items and not getter.cancelled():
                    self._wake_next_getter()
                raise
            self._forget_getter(getter)
        return self.get_nowait()

    def _forget_getter(self, getter: asyncio.Future[None]) -> None:
        if self._getters is not None and getter in self._getters:
            self._getters.remove(getter)
            if not self._getters:
                self._getters = None

    def _wake_next_getter(self) -> None:
        while self._getters:
            getter = self._getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                break
        if not self._getters:
            self._getters = None


class _Writable:
    """Whether the transport's write buffer is below its high-water mark, as uvicorn's
    ``asyncio.Event`` ``writable`` (``set``, ``clear``, ``is_set``, ``wait``), without the
    event's deque of waiters (0.8 KB a connection): the list of waiters exists only while
    someone waits for the buffer to drain."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
                if not self._waiters:
                    self._waiters = None


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """Configured by :func:`protocol_class`; do not pass this base class to uvicorn directly."""

    close_timeout_seconds: ClassVar[float]
    send_buffer_bytes: ClassVar[int] = 65536
    write_timeout_seconds: ClassVar[float | None] = None
    refusals: ClassVar[RefusalLog] = RefusalLog(logger)

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.close_timeout = self.close_timeout_seconds
        self.conn = _WireProtocol(
            extensions=self.conn.available_extensions,
            max_size=config.ws_max_size,
            logger=wire_logger,
        )
        self.control: _Control | None = None
        self.drop_timer: asyncio.TimerHandle | None = None
        # Lighter stand-ins for uvicorn's asyncio.Queue and asyncio.Event, with the methods
        # uvicorn and this class call on them.
        self.queue = _AppQueue()  # type: ignore[assignment]
        self.writable = _Writable()  # type: ignore[assignment]

    # Connection lifecycle

    def connection_made(self, transport: BaseTransport) -> None:
        super().connection_made(transport)
        limit_send_buffer(self.transport, self.send_buffer_bytes)
        self.control = cast(_AppQueue, self.queue).control = _Control(self.transport, self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.stamp_closed()
        self.stop_keepalive()
        self.queue.put_nowait({"type": "websocket.disconnect", "code": ABNORMAL})
        self.connections.discard(self)
        self.handshake_complete = True
        self.disconnected = True
        # A send() waiting on `writable` must wake up: asyncio never resumes writing on a
        # transport that was lost while paused.
        self.writable.set()
        for timer in (self.close_timer, self.drop_timer):
            if timer is not None:
                timer.cancel()
        self.close_timer = None
        self.drop_timer = None
        if exc is None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.refuse_unparsed_request()
        self.drop_when_closing()

    def handle_connect(self, event: Request) -> None:
        """After uvicorn's: forget the parsed request head (about 3 KB with its headers).

        It is not read again (the scope carries what the app needs), but uvicorn keeps it for
        the life of the connection, and so does the ``websockets`` parser (a local variable of
        its generator, which runs until the socket closes): hence its headers are emptied.
        """
        super().handle_connect(event)
        event.headers.clear()
        del self.request

    @classmethod
    def takes_parsed(cls, method: bytes, headers: list[tuple[bytes, bytes]]) -> bool:
        """Whether :meth:`upgrade_parsed` can take this head: a ``GET`` without a
        ``Content-Length`` or ``Transfer-Encoding`` (the ``websockets`` parser's own answer to
        those is kept), while that parser's debug log is off (it logs each head it reads)."""
        if method != b"GET" or wire_logger.isEnabledFor(logging.DEBUG):
            return False
        return not any(name in _BODY_HEADERS for name, _ in headers)

    def upgrade_parsed(self, target: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """Take a head that uvicorn's h11 parser has read (see :meth:`takes_parsed`), without
        parsing it again.

        Stock uvicorn writes the head back out as bytes for the ``websockets`` parser, which
        reads it again: a few percent of a connect/close cycle. The :class:`Request` built here is
        the one that parser returns for the same head (h11 has checked its syntax, and
        :mod:`.http_limits` its sizes), and the state machine goes straight to reading frames.
        """
        encoding, errors = _HEADER_VALUE_DECODING
        fields = [(name.decode("ascii"), value.decode(encoding, errors)) for name, value in headers]
        request = Request(target.decode("ascii"), Headers(fields))
        self.conn.parser = Protocol.parse(self.conn)
        next(self.conn.parser)
        self.handle_connect(request)
        self.drop_when_closing()

    def refuse_unparsed_request(self) -> None:
        """When the ``websockets`` parser gave up on the request head, send its answer (414 or
        431) or a 400, and close: stock uvicorn sends nothing and keeps the socket open."""
        if self.handshake_initiated or self.conn.handshake_exc is None or self.transport.is_closing():
            return
        answer = b"".join(self.conn.data_to_send())
        self.transport.write(answer or refusal_response(400, "malformed request"))
        self.handshake_complete = True
        self.close_sent = True
        self.transport.close()

    def shutdown(self) -> None:
        self.stamp_closed()
        super().shutdown()
        self.drop_when_closing()

    async def run_asgi(self) -> None:
        assert self.control is not None
        extensions = cast(dict[str, Any], self.scope["extensions"])
        extensions[EXTENSION_KEY] = self.control
        await super().run_asgi()
        self.drop_when_closing()

    # Closing

    def stamp_closed(self) -> None:
        """Record the first moment the server knew this socket was done."""
        if self.control is not None and self.control.closed_at is None:
            self.control.closed_at = time.monotonic()

    def drop_when_closing(self) -> None:
        """Once the transport is closing, make sure it is gone within ``close_timeout``.

        ``transport.close()`` waits for the write buffer to drain, which never happens when the
        peer stopped reading; the reset after the deadline releases the file descriptor and the
        kernel's buffer.
        """
        if self.drop_timer is None and not self.disconnected and self.transport.is_closing():
            self.drop_timer = self.loop.call_later(self.close_timeout, reset, self.transport)

    def handle_close(self, event: Any) -> None:
        self.stamp_closed()
        super().handle_close(event)

    def handle_parser_exception(self) -> None:
        self.stamp_closed()
        super().handle_parser_exception()

    def keepalive_timeout(self) -> None:
        self.pong_timer = None
        self.pending_ping_payload = None
        if self.close_sent or self.transport.is_closing():
            return
        self.stamp_closed()
        self.close_on_behalf_of_app(HEARTBEAT_TIMEOUT.code, HEARTBEAT_TIMEOUT.reason)
        self.transport.close()
        self.drop_when_closing()

    def close_on_behalf_of_app(self, code: int, reason: str) -> None:
        """Tell the app the connection is over, and start the close handshake with the peer."""
        event: WebSocketDisconnectEvent = {
            "type": "websocket.disconnect",
            "code": code,
            "reason": reason,
        }
        self.queue.put_nowait(event)
        self.send_close_frame(code, reason)

    def send_close_frame(self, code: int, reason: str) -> None:
        """Write a close frame even behind a full buffer, and drop TCP after ``close_timeout``."""
        self.stop_keepalive()
        self.close_sent = True
        if self.transport.is_closing():
            return
        try:
            self.conn.send_close(code, reason)
        except InvalidState:
            self.transport.abort()
            return
        self.transport.write(b"".join(self.conn.data_to_send()))
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, reset, self.transport)

    # ASGI send

    async def send(self, message: ASGISendEvent) -> None:
        kind = message["type"]
        if kind == "websocket.close" and self.handshake_complete and self.initial_response is None:
            await self.send_close(cast(dict[str, Any], message))
            return
        if not self.writable.is_set():
            await self.wait_writable()
        if self.disconnected:
            raise ClientDisconnected()
        if not self.handshake_complete and self.initial_response is None:
            self.send_before_handshake(message)
        elif self.initial_response is None:
            self.send_message(message)
        else:
            self.send_response_body(message)
        self.drop_when_closing()

    def may_send_now(self) -> bool:
        """An open, upgraded socket whose write buffer is below its high-water mark."""
        return (
            self.writable.is_set()
            and self.handshake_complete
            and self.initial_response is None
            and not self.close_sent
            and not self.disconnected
        )

    async def send_close(self, message: dict[str, Any]) -> None:
        """The app's close: never waits for the write buffer, and is idempotent."""
        if self.disconnected:
            raise ClientDisconnected()
        if self.close_sent:
            return
        code: int = message.get("code", 1000)
        reason: str = message.get("reason") or ""
        disconnect: WebSocketDisconnectEvent = {
            "type": "websocket.disconnect",
            "code": code,
            "reason": reason,
        }
        self.queue.put_nowait(disconnect)
        self.send_close_frame(code, reason)

    async def wait_writable(self) -> None:
        """Wait for the write buffer to drain; past ``write_timeout``, close with 4008."""
        if self.write_timeout_seconds is None:
            await self.writable.wait()
            return
        try:
            async with asyncio.timeout(self.write_timeout_seconds):
                await self.writable.wait()
        except TimeoutError:
            if not self.close_sent and not self.disconnected:
                self.stamp_closed()
                self.close_on_behalf_of_app(SLOW_CONSUMER.code, SLOW_CONSUMER.reason)
            raise ClientDisconnected() from None

    def send_message(self, message: ASGISendEvent) -> None:
        if message["type"] != "websocket.send":
            raise RuntimeError(
                f"Expected ASGI message 'websocket.send' or 'websocket.close', but got '{message['type']}'."
            )
        if self.close_sent:
            raise ClientDisconnected()
        try:
            data = message.get("bytes")
            if data is not None:
                self.conn.send_binary(data)
            else:
                self.conn.send_text(cast(str, message.get("text", "")).encode())
        except InvalidState:
            raise ClientDisconnected() from None
        self.transport.write(b"".join(self.conn.data_to_send()))

    def send_text_frame(self, text: str) -> None:
        """What :meth:`send_message` does for a text, with the frame's bytes shared with every
        other connection that sends the same ``str`` next (see :class:`_SharedFrame`); through
        the ``websockets`` state machine when an extension, a fragmented message, pending bytes
        or its debug log make a connection's frame its own."""
        conn = self.conn
        if self.close_sent or conn.state is not State.OPEN:
            raise ClientDisconnected()
        if conn.extensions or conn.expect_continuation_frame or conn.writes or conn.debug:
            self.send_message({"type": "websocket.send", "text": text})
            return
        self.transport.write(_shared_frame.of(text))

    def send_before_handshake(self, message: ASGISendEvent) -> None:
        path = self.scope["path"]
        client = get_client_addr(self.scope)
        if message["type"] == "websocket.accept":
            logger.debug('%s - "WebSocket %s" [accepted]', client, path)
            headers = [
                (name.decode("latin-1").lower(), value.decode("latin-1"))
                for name, value in (self.default_headers + list(message.get("headers", [])))
            ]
            subprotocol = message.get("subprotocol")
            if subprotocol:
                headers.append(("Sec-WebSocket-Protocol", subprotocol))
            del self.response.headers["Date"]
            self.response.headers.update(headers)
            if not self.transport.is_closing():
                self.handshake_complete = True
                self.conn.send_response(self.response)
                self.transport.write(b"".join(self.conn.data_to_send()))
                del self.response  # written, and never read again (uvicorn would keep it)
                self.start_keepalive()
        elif message["type"] == "websocket.close":
            self.queue.put_nowait({"type": "websocket.disconnect", "code": ABNORMAL})
            self.refusals.record(HTTPStatus.FORBIDDEN, client, path)
            self.conn.send_response(self.conn.reject(HTTPStatus.FORBIDDEN, ""))
            self.close_sent = True
            self.handshake_complete = True
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()
        elif message["type"] == "websocket.http.response.start":
            status = message["status"]
            if not 100 <= status < 600:
                raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
            self.refusals.record(status, client, path)
            headers = [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in message.get("headers", [])
            ]
            self.initial_response = (status, headers, b"")
        else:
            raise RuntimeError(
                "Expected ASGI message 'websocket.accept', 'websocket.close' "
                f"or 'websocket.http.response.start' but got '{message['type']}'."
            )

    def send_response_body(self, message: ASGISendEvent) -> None:
        if message["type"] != "websocket.http.response.body":
            raise RuntimeError(
                f"Expected ASGI message 'websocket.http.response.body' but got '{message['type']}'."
            )
        assert self.initial_response is not None
        status, headers, body = self.initial_response
        body += message["body"]
        self.initial_response = (status, headers, body)
        if message.get("more_body", False):
            return
        response_headers = Headers(headers)
        response_headers.setdefault("Date", email.utils.formatdate(usegmt=True))
        response_headers.setdefault("Connection", "close")
        response_headers.setdefault("Content-Length", str(len(body)))
        response_headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        self.queue.put_nowait({"type": "websocket.disconnect", "code": ABNORMAL})
        self.conn.send_response(Response(status, STATUS_PHRASES[status], response_headers, body))
        # Stock uvicorn leaves this unset here and then logs an error for every refusal.
        self.handshake_complete = True
        self.close_sent = True
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.transport.close()


def protocol_class(
    *,
    close_timeout: float,
    send_buffer_bytes: int,
    write_timeout: float | None = None,
    refusal_log_window: float = 10.0,
) -> type[asyncio.Protocol]:
    """A protocol class for ``uvicorn.Config(ws=...)`` with these settings.

    Heartbeat, frame size limit and compression come from uvicorn's own ``Config``
    (``ws_ping_interval``, ``ws_ping_timeout``, ``ws_max_size``, ``ws_per_message_deflate``).
    """
    if close_timeout <= 0:
        raise ValueError("close_timeout must be positive")
    if send_buffer_bytes <= 0:
        raise ValueError("send_buffer_bytes must be positive")
    if write_timeout is not None and write_timeout <= 0:
        raise ValueError("write_timeout must be positive or None")
    attributes: dict[str, Any] = {
        "close_timeout_seconds": close_timeout,
        "send_buffer_bytes": send_buffer_bytes,
        "write_timeout_seconds": write_timeout,
        "refusals": RefusalLog(logger, refusal_log_window),
    }
    return type("WSGuardWebSocketProtocol", (GuardedWebSocketProtocol,), attributes)
