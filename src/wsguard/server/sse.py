"""Server-Sent Events: the same sessions as ``/ws`` over a ``text/event-stream`` response
(docs/protocol.md section 2, Server-Sent Events).

``GET /sse`` passes the upgrade gate, is registered by the hub like a socket and served by the
same :class:`~wsguard.runtime.connection.Connection` (an
:class:`~wsguard.runtime.sse.EventStream` in the socket's place). Commands come by ``POST`` to a
path the ``welcome`` gives: a capability naming the stream and its user, signed with the session
key, so that any instance can check it and, on Redis, forward the command to the instance that
holds the stream.
"""

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
from wsguard.core.positions import decode_positions
from wsguard.logs import log_context
from wsguard.runtime.connection import Connection, TextHandler
from wsguard.runtime.hub import Hub
from wsguard.runtime.sse import EventStream, Receive, Scope, Send
from wsguard.server.admission import UpgradeGate
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
            gate.admitting += 1
            admitting = True
            try:
                with log_context(
                    connection_id=context.connection_id,
                    user_id=context.user_id,
                    session_id=context.session_id,
                ):
                    await stream.start()
                    async with hub.open(context, stream, takeover=takeover) as connection:
                        gate.admitting -= 1
                        admitting = False
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
                if admitting:
                    gate.admitting -= 1
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
        """Carry out a command for a stream of this instance, under the stream's inbound limits;
        False when the stream is not here (or is not that user's)."""
        connection = self.hub.connection(connection_id)
        if connection is None or connection.user_id != user_id or connection.close_request is not None:
            return False
        if connection.accepts(text):
            await self.handle_text(connection, text)
        return True


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
