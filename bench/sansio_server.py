"""A floor: ``websockets``' sans-I/O protocol on a bare ``asyncio.Protocol``, no ASGI, no task.

What the least WebSocket server in Python on asyncio costs, the lower bound of a protocol of a
server's own that would call its app without ASGI: each connection is one ``asyncio.Protocol``
that feeds the bytes to ``websockets.server.ServerProtocol`` and writes what it answers. The
endpoints of websockets_server.py: ``/ws?user=`` with its welcome, ``GET /healthz`` and ``GET
/stats`` answered before any upgrade, and ``POST /publish`` on ``--publish-port`` by the same
Starlette endpoint on uvicorn, in the same event loop. A keepalive ping every 20 s per
connection, as every other server of the benchmark has one. Started by ``bench/run.py
--servers sansio`` as ``python sansio_server.py --host H --port P --publish-port Q``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import defaultdict
from collections.abc import Awaitable
from contextlib import AbstractAsyncContextManager
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from websockets.http11 import Request as HandshakeRequest
from websockets.protocol import State
from websockets.server import ServerProtocol

from publish_port import publish_started, run_peer

KEEPALIVE_SECONDS = 20.0

users: defaultdict[str, set[Connection]] = defaultdict(set)
connections: set[Connection] = set()


class Connection(asyncio.Protocol):
    """One TCP connection: the handshake, the welcome, and what ``websockets`` answers to frames."""

    def __init__(self) -> None:
        self.wire = ServerProtocol()
        self.transport: asyncio.Transport | None = None
        self.user_id: str | None = None
        self.keepalive: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.wire.receive_data(data)
        for event in self.wire.events_received():
            # Frames need nothing of ours: websockets itself answers a ping and a close.
            if isinstance(event, HandshakeRequest):
                self.handshake(event)
        self.flush()

    def eof_received(self) -> None:
        self.wire.receive_eof()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        connections.discard(self)
        if self.keepalive is not None:
            self.keepalive.cancel()
            self.keepalive = None
        if self.user_id is not None:
            sockets = users[self.user_id]
            sockets.discard(self)
            if not sockets:
                del users[self.user_id]

    def handshake(self, request: HandshakeRequest) -> None:
        path = urlsplit(request.path)
        if path.path == "/healthz":
            up = publish_started()
            self.wire.send_response(self.wire.reject(200 if up else 503, "ok\n" if up else "starting\n"))
            return
        if path.path == "/stats":
            self.wire.send_response(self.wire.reject(200, json.dumps(stats())))
            return
        response = self.wire.accept(request)
        self.wire.send_response(response)
        if response.status_code != 101:
            return
        self.user_id = parse_qs(path.query).get("user", ["anonymous"])[0]
        users[self.user_id].add(self)
        self.wire.send_text(json.dumps({"type": "welcome", "user_id": self.user_id}).encode())
        self.keepalive = asyncio.get_running_loop().call_later(KEEPALIVE_SECONDS, self.ping)

    def ping(self) -> None:
        if self.wire.state is State.OPEN:
            self.wire.send_ping(b"")
            self.flush()
        self.keepalive = asyncio.get_running_loop().call_later(KEEPALIVE_SECONDS, self.ping)

    def send(self, frame: bytes) -> None:
        if self.wire.state is State.OPEN:
            self.wire.send_text(frame)
            self.flush()

    def flush(self) -> None:
        """Write what the protocol has to send; its empty bytes (the end of the stream) close."""
        assert self.transport is not None
        for data in self.wire.data_to_send():
            if data:
                self.transport.write(data)
            else:
                self.transport.close()


def stats() -> dict[str, int]:
    """What the server holds: every count 0 once all clients are gone (tasks: back to the baseline).

    ``sansio_connections`` counts every TCP connection but the one that asks.
    """
    return {
        "connections": sum(len(sockets) for sockets in users.values()),
        "users": len(users),
        "sansio_connections": len(connections) - 1,
        "tasks": len(asyncio.all_tasks()),
    }


async def publish(request: Request) -> Response:
    body = await request.json()
    frame = json.dumps({"type": "event", "event": body["event"], "data": body["data"]}).encode()
    for connection in list(users.get(body["user_id"], ())):
        connection.send(frame)
    return JSONResponse({"offset": None})


publish_app = Starlette(routes=[Route("/publish", publish, methods=["POST"])])


def listen(host: str, port: int) -> Awaitable[AbstractAsyncContextManager[Any]]:
    return asyncio.get_running_loop().create_server(Connection, host, port, backlog=2048)


def main(argv: list[str]) -> int:
    return run_peer(listen, publish_app, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
