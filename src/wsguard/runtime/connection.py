"""One admitted WebSocket: read in the ASGI task, written at once or from a bounded queue.

This is the I/O around a :class:`~wsguard.core.connection.ConnectionState`, which makes every
decision about what the connection sends: it feeds the state what happened (a frame read, an
event published, a history fetched) and carries out what the state returns.

A connection never blocks its publishers: :meth:`Connection.send` writes the frame straight to
the transport while its write buffer is below the high-water mark, and otherwise appends it to
the queue, which a writer task (started only then, gone once the queue is empty) drains. An
idle connection thus holds one task, its ASGI task, which reads. When the unsent bytes pass the
limit, or a write stalls past the write timeout, the connection closes with 4008 instead of
growing. Any close the server asks for interrupts a stalled write and the read.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.websockets import WebSocketDisconnect

from wsguard import close
from wsguard.context import ConnectionContext
from wsguard.core import frames
from wsguard.core.connection import RATE_LIMITED as RATE_LIMITED
from wsguard.core.connection import ConnectionLimits as ConnectionLimits
from wsguard.core.connection import ConnectionState
from wsguard.core.registry import Handle
from wsguard.transport.control import EXTENSION_KEY, HTTP_EXTENSION_KEY, StreamControl, TransportControl

logger = logging.getLogger("wsguard")

_SOCKET_GONE = (WebSocketDisconnect, RuntimeError, OSError)


@dataclass(frozen=True, slots=True)
class ConnectionHooks:
    """What a connection tells its owner; one instance is shared by all of the owner's connections."""

    release: Callable[[Handle], bool]
    """Give back the connection's slot; True if it was held."""
    ended: Callable[["Connection"], None]
    """The connection is over: release every record of it (idempotent)."""
    delivered: Callable[[], None]
    """One frame was handed to the socket."""


class Socket(Protocol):
    """What a connection reads from and writes to: a Starlette ``WebSocket``, or a
    :class:`~wsguard.runtime.sse.EventStream` that behaves as one."""

    @property
    def scope(self) -> MutableMapping[str, Any]: ...

    async def receive(self) -> MutableMapping[str, Any]: ...

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


TextHandler = Callable[["Connection", str], Awaitable[None]]
"""What the connection's task does with each text frame it reads."""


class Connection:
    """The asyncio side of one connection. The hub owns its registration, ``state`` its
    decisions; this owns its I/O.

    Every attribute an idle connection does not need (its outbound queue, and in its state its
    inbound rate bucket and its subscriptions) is created when first needed, so that many idle
    connections cost little.
    """

    __slots__ = (
        "_hooks",
        "_interrupted",
        "_outbound",
        "_queued_bytes",
        "_reading",
        "_room",
        "_sending",
        "_task",
        "_writer",
        "close_request",
        "closed_label",
        "context",
        "expiry_timer",
        "handle",
        "socket",
        "socket_closed_at",
        "state",
        "stream",
        "transport",
    )

    def __init__(
        self,
        context: ConnectionContext,
        handle: Handle,
        socket: Socket,
        limits: ConnectionLimits,
        hooks: ConnectionHooks,
    ) -> None:
        self.context = context
        self.handle = handle
        self.socket = socket
        self.state = ConnectionState(limits)
        extensions = socket.scope.get("extensions") or {}
        self.transport: TransportControl | None = extensions.get(EXTENSION_KEY)
        self.stream: StreamControl | None = None if self.transport else extensions.get(HTTP_EXTENSION_KEY)
        """An event stream's side of its HTTP connection (wsguard's transport only)."""
        self._hooks = hooks
        self._outbound: list[str] | None = None
        self._queued_bytes = 0
        self._task: asyncio.Task[object] | None = None
        self._reading = False
        self._interrupted = False
        self._room: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._sending = False
        self.close_request: close.Close | None = None
        self.closed_label: str | None = None
        self.socket_closed_at: float | None = None
        self.expiry_timer: asyncio.TimerHandle | None = None
        if self.transport is not None:
            self.transport.on_closed(self._socket_ended)

    @property
    def connection_id(self) -> str:
        return self.context.connection_id

    @property
    def user_id(self) -> str:
        return self.context.user_id

    @property
    def limits(self) -> ConnectionLimits:
        """The limits the state enforces; the I/O's timeouts are among them."""
        return self.state.limits

    @property
    def subscriptions(self) -> Mapping[str, int]:
        """Subscribed thread -> the last offset delivered to this connection."""
        return self.state.subscriptions

    @property
    def unsent_bytes(self) -> int:
        """The server's queue and the socket's (or stream's) write buffer together."""
        return self._queued_bytes + self._buffered()

    def _buffered(self) -> int:
        """The bytes the transport holds, not yet handed to the kernel."""
        if self.transport:
            return self.transport.unsent_bytes()
        return self.stream.unsent_bytes() if self.stream else 0

    def send(self, frame: str) -> None:
        """Queue ``frame``, unless the state refuses it (over the byte limit: a slow consumer)."""
        if self.close_request is not None:
            return
        refusal = self.state.admit(frame, self.unsent_bytes)
        if refusal is not None:
            self.request_close(refusal)
            return
        self._enqueue(frame)

    def deliver_thread_event(self, offset: int | None, frame: str, thread_id: str) -> None:
        """A live event of one of the user's threads: sent if the state says so."""
        decided = self.state.thread_event(offset, frame, thread_id)
        if decided is None:
            return
        if isinstance(decided, str):
            self.send(decided)
        else:
            self.request_close(decided)

    def _enqueue(self, frame: str) -> None:
        """Write ``frame`` now if nothing is queued before it and the transport has room; else
        queue it for a writer task, started if none runs.

        The write now is written out here rather than in a helper: it is every delivery's path.
        A frame it could not write because the socket is gone, or whose write failed (which
        closes the connection), is dropped.
        """
        if not self._outbound and self._writer is None and self.transport is not None:
            try:
                written = self.transport.send_text_now(frame)
            except _SOCKET_GONE:
                if self.close_request is None and self.closed_label is None:
                    self.closed_label = close.CONNECTION_LOST
                return
            except Exception as error:
                self.failed("writer", error)
                return
            if written:
                self._hooks.delivered()
                return
        if self._outbound is None:
            self._outbound = []
        self._outbound.append(frame)
        self._queued_bytes += frames.utf8_size(frame)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())
            self._writer.add_done_callback(self._writer_done)

    def _writer_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.failed("writer", task.exception())

    def failed(self, part: str, error: BaseException | None) -> None:
        """A bug in ``part`` of the connection (its writer, its reader, a command): logged with
        its traceback, and the connection closed with 1011 rather than left half-served."""
        logger.error("connection %s %s failed", self.connection_id, part, exc_info=error)
        self.request_close(close.INTERNAL_ERROR)

    def request_close(self, reason: close.Close) -> None:
        """Release the connection's slot at once, then close; the first request wins."""
        self._hooks.release(self.handle)
        if self.close_request is None:
            self.close_request = reason
            self._outbound = None
            self._queued_bytes = 0
            _wake_up(self._room)
            if self._writer is not None and self._sending:
                self._writer.cancel()
            if self._reading:
                if self._task is asyncio.current_task():
                    asyncio.get_running_loop().call_soon(self._interrupt_read)
                else:
                    self._interrupt_read()

    def _interrupt_read(self) -> None:
        """Cut the ASGI task's read short (it is suspended in it), so that it carries out the close."""
        if self._reading and not self._interrupted and self._task is not None:
            self._interrupted = True
            self._task.cancel()

    async def run(self, on_text: TextHandler) -> None:
        """Read until the socket ends or a close is requested, then carry out the close; never
        raises for socket errors. ``on_text(self, text)`` handles each text frame.

        A close requested while the read waits cancels the read (and only the read). The hooks'
        ``ended`` releases every record of the connection the moment it ends, before any task
        is awaited or any close handshake is attempted. The read loop is written out here
        rather than in helpers, so that an idle connection's task holds one coroutine frame of
        this class, not three.
        """
        task = self._task = asyncio.current_task()
        assert task is not None
        self._reading = True
        try:
            while self.close_request is None:
                message = await self.socket.receive()
                if message["type"] == "websocket.disconnect":
                    self._socket_ended(message.get("code", 1005), message.get("reason") or "")
                    break
                text = message.get("text")
                if text is None:
                    self.request_close(close.UNSUPPORTED_DATA)
                elif self.accepts(text):
                    await on_text(self, text)
                    await asyncio.sleep(0)  # a burst of frames must not starve the writers or other sockets
        except asyncio.CancelledError:
            if not self._interrupted:
                raise
        except Exception as error:
            self.failed("reader", error)
        finally:
            self._reading = False
            if self._interrupted:
                self._interrupted = False
                task.uncancel()
            self._task = None
            await self._end()

    def accepts(self, text: str) -> bool:
        """Whether the state lets a text frame read (or, on a stream, posted) be handled; if
        not, carry out what it says instead (an answer, or a close). Apart from the read loop,
        so that its frame, which every idle connection holds, keeps no local for it."""
        decided = self.state.receive(text, time.monotonic())
        if decided is None:
            return True
        if isinstance(decided, str):
            self.send(decided)
        else:
            self.request_close(decided)
        return False

    async def _end(self) -> None:
        """Release, stop the writer, and send the close frame if the server asked for the close."""
        must_close = self.close_request is not None and self.closed_label is None
        if self.close_request is not None and must_close:
            self.closed_label = self.close_request.reason
        self._hooks.ended(self)
        writer = self._writer
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        if self.close_request is not None and must_close:
            await self._close_socket(self.close_request)

    def _socket_ended(self, code: int, reason: str) -> None:
        """The socket is gone: label why and release every record now (idempotent)."""
        if self.socket_closed_at is None:
            closed_at = self.transport.closed_at if self.transport else None
            self.socket_closed_at = closed_at or time.monotonic()
            if self.close_request is None:
                self.closed_label = close.peer_close_label(code, reason)
            else:
                self.closed_label = self.close_request.reason
        self._hooks.ended(self)

    async def _write(self) -> None:
        """Drain the queue, then end; a close request ends it, and cuts a stalled write short.

        The queue is taken a batch at a time (a list swapped for an empty one). The writer
        forgets itself before it ends, so that the next frame is written at once again.
        """
        try:
            while self.close_request is None and self._outbound:
                batch, self._outbound = self._outbound, None
                for frame in batch:
                    if self.close_request is not None:
                        return
                    self._queued_bytes -= frames.utf8_size(frame)
                    self._sending = True
                    async with asyncio.timeout(self.limits.write_timeout):
                        await self.socket.send_text(frame)
                    self._sending = False
                    _wake_up(self._room)
                    if frame:
                        self._hooks.delivered()
        except TimeoutError:
            self._sending = False
            self.request_close(close.SLOW_CONSUMER)
        except _SOCKET_GONE:
            if self.close_request is None and self.closed_label is None:
                self.closed_label = close.CONNECTION_LOST
        finally:
            self._sending = False
            if self._writer is asyncio.current_task():
                self._writer = None

    async def _close_socket(self, reason: close.Close) -> None:
        """Send the close frame; a peer that does not take it within the close timeout is cut off.

        A stream closed as a slow consumer while its transport still holds bytes is cut off at
        once: its close message could only wait behind the bytes its peer is not taking.
        """
        control = self.transport or self.stream
        if reason == close.SLOW_CONSUMER and self.stream is not None and self.stream.unsent_bytes():
            self.stream.abort()
            return
        try:
            async with asyncio.timeout(self.limits.close_timeout):
                await self.socket.close(reason.code, reason.reason)
        except TimeoutError:
            if control is not None:
                control.abort()
        except _SOCKET_GONE:
            pass

    async def send_when_room(self, frame: str) -> bool:
        """Queue ``frame`` once the writer has handed everything before it to the socket.

        A replay larger than the queue limit thus streams at the client's pace, one frame ahead
        of the socket's buffer, and a client that stops reading still meets the write timeout.
        Returns False if the connection closes first. It yields to the event loop at least once,
        so that the transport hands the socket what it takes before the next frame is written.
        """
        await asyncio.sleep(0)
        while self.close_request is None and (self._queued_bytes > 0 or self._sending):
            self._room = asyncio.get_running_loop().create_future()
            await self._room
        if self.close_request is not None:
            return False
        refusal = self.state.admit(frame, 0)  # nothing is queued before it: judged alone
        if refusal is not None:
            self.request_close(refusal)
            return False
        self._enqueue(frame)
        return True

    def flush_buffered(self, thread_id: str) -> None:
        """Deliver what arrived during the replay, after the ``subscribed`` frame."""
        for frame in self.state.end_replay(thread_id):
            self.send(frame)


def _wake_up(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
