"""A Server-Sent Events response, driven by a :class:`~wsguard.runtime.connection.Connection`
the way a WebSocket is, so that a stream has the same limits, queue, release and decisions.

The connection reads it (:meth:`EventStream.receive` returns when the client goes: a stream
carries nothing inbound, commands come by ``POST``), writes frames to it (each one SSE message,
those that move a thread's position with an ``id:`` token of every thread's position), and
closes it (a last ``close`` message, then the end of the response). A timer writes a heartbeat
comment every interval through the connection's own queue, so that it is ordered and bounded
like every other write.
"""

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from wsguard import close
from wsguard.core import sse
from wsguard.core.frames import Since
from wsguard.core.positions import encode_positions
from wsguard.ids import SessionSigner
from wsguard.transport.control import HTTP_EXTENSION_KEY, StreamControl

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

HEARTBEAT_FRAME = ""
"""What the heartbeat queues on the connection: written as a comment, counted as no delivery."""

_GONE: MutableMapping[str, Any] = {"type": "websocket.disconnect", "code": close.ABNORMAL}
"""What the connection reads when the client went: no goodbye exists on this transport."""


class EventStream:
    """One ``text/event-stream`` response, with a WebSocket's ``receive``/``send_text``/``close``."""

    __slots__ = (
        "_ended",
        "_headers",
        "_heartbeat",
        "_positions",
        "_receive",
        "_send",
        "_signer",
        "_token",
        "_user_id",
        "scope",
    )

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        signer: SessionSigner,
        user_id: str,
        headers: Mapping[str, str],
    ) -> None:
        """``headers``: more response headers (CORS, for a page on another origin)."""
        self.scope = scope
        self._headers = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        self._receive = receive
        self._send = send
        self._signer = signer
        self._user_id = user_id
        self._positions: dict[str, Since] = {}
        """Thread -> where the client stands in it, the most recently advanced last."""
        self._token: str | None = None
        """The position token as of the last change of a position (signed once per change)."""
        self._ended = False
        self._heartbeat: asyncio.TimerHandle | None = None

    @property
    def control(self) -> StreamControl | None:
        """wsguard's own transport's side of the HTTP connection; None on another server."""
        extensions = self.scope.get("extensions") or {}
        control: StreamControl | None = extensions.get(HTTP_EXTENSION_KEY)
        return control

    async def start(self) -> None:
        """Send the response head; on wsguard's transport the connection stops counting as one
        waiting for its request (it is served now, like an upgraded socket)."""
        headers = [*sse.STREAM_HEADERS, *self._headers]
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})
        control = self.control
        if control is not None:
            control.stream_started()

    def beat_every(self, interval: float, send: Callable[[str], None]) -> None:
        """Queue a heartbeat with ``send`` (the connection's) every ``interval`` seconds."""
        self._heartbeat = asyncio.get_running_loop().call_later(interval, self._beat, interval, send)

    def _beat(self, interval: float, send: Callable[[str], None]) -> None:
        if not self._ended:
            send(HEARTBEAT_FRAME)
            self.beat_every(interval, send)

    async def receive(self) -> MutableMapping[str, Any]:
        """Wait until the client goes (a stream's request has no body worth reading)."""
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                return _GONE

    async def send_text(self, frame: str) -> None:
        if frame == HEARTBEAT_FRAME:
            body = sse.HEARTBEAT
        elif sse.moves_position(frame):
            body = sse.message(frame, self._advance(frame))
        else:
            body = sse.message(frame)
        await self._send({"type": "http.response.body", "body": body, "more_body": True})

    def _advance(self, frame: str) -> str:
        """The position token after ``frame`` (an event, ``subscribed`` or ``unsubscribed``)."""
        body = json.loads(frame)
        thread_id = body.get("thread_id")
        if isinstance(thread_id, str):
            self._positions.pop(thread_id, None)
            if body["type"] != "unsubscribed":
                self._positions[thread_id] = Since(str(body["epoch"]), int(body["offset"]))
            self._token = None
        if self._token is None:
            newest_first = reversed(list(self._positions.items()))
            self._token = encode_positions(self._signer, self._user_id, newest_first)
        return self._token

    async def close(self, code: int, reason: str) -> None:
        """The server closes the stream: a last ``close`` message, then the end of the response."""
        await self._send(
            {
                "type": "http.response.body",
                "body": sse.close_message(close.Close(code, reason)),
                "more_body": True,
            }
        )
        await self._end()

    async def _end(self) -> None:
        self._stop_heartbeat()
        if not self._ended:
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})
            self._ended = True

    def _stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None

    async def finish(self, timeout: float) -> None:
        """End the response if the connection did not (the client went, or the close stalled or
        was cut off): within ``timeout``, else drop the TCP connection where the transport
        allows it, and end the response once the server knows the connection is gone (ended any
        earlier, the server would count it a response left incomplete, an error)."""
        self._stop_heartbeat()
        if self._ended:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._end()
        except TimeoutError:
            control = self.control
            if control is not None:
                control.abort()
                with contextlib.suppress(TimeoutError, RuntimeError, OSError):
                    async with asyncio.timeout(timeout):
                        await self._end()
        except (RuntimeError, OSError):
            pass
