"""Server-Sent Events: the same sessions as ``/ws`` over a ``text/event-stream`` response
(docs/protocol.md section 2, Server-Sent Events).

``GET /sse`` passes the upgrade gate, is registered by the hub like a socket and served by the
same :class:`~wsguard.runtime.connection.Connection` (an
:class:`~wsguard.runtime.sse.EventStream` in the socket's place). Commands come by ``POST`` to a
path the ``welcome`` gives: a capability naming the stream and its user, signed with the session
key, so that any instance can check it and, on Redis, forward the command to the instance that
holds the stream.
"""

import asyncio
import base64
import binascii
import json
from collections.abc import MutableMapping
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from wsguard import close
from wsguard.backends.base import BackendUnavailable
from wsguard.core import frames
from wsguard.core.connection import RATE_LIMITED_FRAME
from wsguard.core.positions import decode_positions
from wsguard.runtime.connection import Connection, TextHandler
from wsguard.runtime.hub import Hub
from wsguard.runtime.sse import EventStream, Receive, Scope, Send
from wsguard.server.admission import UpgradeGate, connection_log_context
from wsguard.server.cors import cors_headers, preflight
from wsguard.server.http_errors import refusal
from wsguard.settings import Settings

STREAM_PATH = "/sse"
COMMANDS_PATH = "/sse/commands/{capability}"
_CAPABILITY = "sse commands\x00"
"""What a command path's mac is over, besides the connection id: no session id verifies as one."""


class EventStreams:
    """The two routes of the SSE transport, and the capability that ties them together."""

    def __init__(self, settings: Settings, gate: UpgradeGate, hub: Hub, handle_text: TextHandler) -> None:
        self.settings = settings
        self.gate = gate
        self.hub = hub
        self.handle_text = handle_text
        self._commands: dict[str, _Commands] = {}
        """Connection id -> the commands taken for its stream, while any were."""
        hub.on_forwarded_command = self.carry_out

    def routes(self) -> list[BaseRoute]:
        return [
            Route(STREAM_PATH, _Stream(self), methods=["GET"]),
            Route(COMMANDS_PATH, self.command, methods=["POST", "OPTIONS"]),
        ]

    # The capability of a stream's command path

    def capability(self, connection_id: str, user_id: str) -> str:
        user = base64.urlsafe_b64encode(user_id.encode()).decode().rstrip("=")
        mac = self.gate.sessions.sign(user_id, _CAPABILITY + connection_id)
        return f"{connection_id}.{user}.{mac}"

    def _holder_of(self, capability: str) -> tuple[str, str] | None:
        """The connection id and user a capability names, if its mac verifies."""
        connection_id, _, rest = capability.partition(".")
        user, _, mac = rest.partition(".")
        try:
            user_id = base64.urlsafe_b64decode(user + "=" * (-len(user) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        if not self.gate.sessions.verify(user_id, _CAPABILITY + connection_id, mac):
            return None
        return connection_id, user_id

    # The stream

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse, or admit, serve and release one stream, all in this coroutine (as the WebSocket
        endpoint does: an open stream holds only the frames its task is suspended in)."""
        request = HTTPConnection(scope)
        cors = cors_headers(request, self.gate.origin_allowed)
        hub, gate = self.hub, self.gate
        if hub.draining:
            await refusal(503, "draining", retry_after=5)(scope, receive, send)
            return
        with hub.serving():
            identity = await gate.check(request)
            if isinstance(identity, Response):
                identity.headers.update(cors or {})
                await identity(scope, receive, send)
                return
            context, takeover = gate.context_of(request, identity, transport="sse")
            stream = EventStream(scope, receive, send, gate.sessions, identity.user_id, cors or {})
            try:
                async with gate.admitted(context, stream, stream.start, takeover=takeover) as connection:
                    if connection is None:
                        reason = close.TOO_MANY_CONNECTIONS
                        await stream.close(reason.code, reason.reason)
                        return
                    root = scope.get("root_path", "")
                    capability = self.capability(connection.connection_id, connection.user_id)
                    commands = root + COMMANDS_PATH.format(capability=capability)
                    connection.send(gate.welcome(context, transport="sse", commands=commands))
                    stream.beat_every(self.settings.heartbeat_interval, connection.send)
                    await self._subscribe(connection, request)
                    await connection.run(self.handle_text)
            finally:
                commands = self._commands.pop(context.connection_id, None)
                if commands is not None:
                    await commands.stop()
                await stream.finish(self.settings.close_timeout)

    async def _subscribe(self, connection: Connection, request: HTTPConnection) -> None:
        """Subscribe the stream to the threads of its position token (``Last-Event-ID``, or
        ``last_event_id``) from where they were, and to the ``subscribe`` threads it does not
        hold, afresh: as ``subscribe`` commands, through the same checks."""
        token = request.headers.get("last-event-id") or request.query_params.get("last_event_id") or ""
        positions = decode_positions(self.gate.sessions, connection.user_id, token) if token else {}
        frames = [
            {"type": "subscribe", "thread_id": thread_id, "since": since.as_since()}
            for thread_id, since in positions.items()
        ]
        frames += [
            {"type": "subscribe", "thread_id": thread_id}
            for thread_id in dict.fromkeys(request.query_params.getlist("subscribe"))
            if thread_id not in positions
        ]
        for frame in frames:
            if connection.close_request is not None:
                return
            await self.handle_text(connection, json.dumps(frame, separators=(",", ":")))

    # Commands

    async def command(self, request: Request) -> Response:
        """One command for a stream, answered on the stream; here, only whether it was taken."""
        cors = cors_headers(request, self.gate.origin_allowed)
        if request.method == "OPTIONS":
            return preflight(cors, "POST")
        response = await self._command(request)
        response.headers.update(cors or {})
        return response

    async def _command(self, request: Request) -> Response:
        holder = self._holder_of(request.path_params["capability"])
        if holder is None:
            return refusal(404, "no such stream")
        connection_id, user_id = holder
        body = await _bounded_body(request, self.settings.max_message_bytes)
        if body is None:
            return refusal(413, "command over max_message_bytes")
        try:
            text = body.decode()
        except UnicodeDecodeError:
            return refusal(400, "the command is not UTF-8 text")
        if await self.carry_out(connection_id, user_id, text):
            return JSONResponse({"accepted": True}, status_code=202)
        try:
            delivered = await self.hub.forward_command(user_id, connection_id, text)
        except BackendUnavailable:
            return refusal(503, "backend unavailable: the stream's instance cannot be reached", retry_after=1)
        if not delivered:
            return refusal(404, "no such stream")
        return JSONResponse({"accepted": True}, status_code=202)

    async def carry_out(self, connection_id: str, user_id: str, text: str) -> bool:
        """Take a command for a stream of this instance, under the stream's inbound limits, to be
        carried out after those taken before it; False when the stream is not here (or is not
        that user's). It returns at once: the command's reply comes on the stream, whose writes
        may wait for its reader."""
        connection = self.hub.connection(connection_id)
        if connection is None or connection.user_id != user_id or connection.close_request is not None:
            return False
        if connection.accepts(text):
            commands = self._commands.get(connection_id)
            if commands is None:
                commands = self._commands[connection_id] = _Commands(connection, self.handle_text)
            if not commands.take(text):
                connection.send(RATE_LIMITED_FRAME)
        return True


class _Commands:
    """A stream's commands, carried out one at a time in the order they were taken, as a
    socket's reader carries out its frames: a client that posts one command after another gets
    them carried out in order, though each POST is answered before its command is. A task runs
    only while commands wait, and they hold at most ``max_message_bytes`` (at least one)."""

    __slots__ = ("_bytes", "_connection", "_handle", "_task", "_waiting")

    def __init__(self, connection: Connection, handle: TextHandler) -> None:
        self._connection = connection
        self._handle = handle
        self._waiting: list[str] | None = None
        self._bytes = 0
        self._task: asyncio.Task[None] | None = None

    def take(self, text: str) -> bool:
        """Queue ``text``; False (not queued) when the commands waiting are at their bound."""
        size = frames.utf8_size(text)
        if self._waiting is None:
            self._waiting = []
        elif self._bytes + size > self._connection.limits.max_message_bytes:
            return False
        self._waiting.append(text)
        self._bytes += size
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._carry_out())
        return True

    async def _carry_out(self) -> None:
        connection = self._connection
        try:
            with connection_log_context(connection.context):
                while self._waiting and connection.close_request is None:
                    text = self._waiting.pop(0)
                    if not self._waiting:
                        self._waiting = None
                    self._bytes -= frames.utf8_size(text)
                    await self._handle(connection, text)
                    await asyncio.sleep(0)  # a run of small commands must not starve the other streams
        except Exception as error:
            connection.failed("command", error)
        finally:
            self._task = None

    async def stop(self) -> None:
        """Drop the commands not carried out, and stop the one being carried out."""
        self._waiting = None
        self._bytes = 0
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class _Stream:
    """``GET /sse`` as a plain ASGI app: a stream is no request/response exchange."""

    __slots__ = ("_streams",)

    def __init__(self, streams: EventStreams) -> None:
        self._streams = streams

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        await self._streams.serve(scope, receive, send)


async def _bounded_body(request: Request, limit: int) -> bytes | None:
    """The request's body, or None once it passes ``limit`` bytes (read no further)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
