"""A peer: a bare ``websockets`` server (its asyncio implementation), doing what bare_server.py does.

A dict of each user's sockets, a welcome frame, and a publish endpoint that sends to every socket
of a user in turn. ``websockets`` answers only requests without a body (``GET /healthz`` and
``GET /stats`` here), so ``POST /publish`` is served on a second port, ``--publish-port``, by
the same Starlette endpoint on uvicorn as bare_server.py's, in the same event loop: publishing
costs what it costs bare Starlette, and only the WebSocket side differs. Compression is off; the
keepalive pings are websockets' defaults. Started by ``bench/run.py`` as ``python
websockets_server.py --host H --port P --publish-port Q``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import sys
from collections import defaultdict
from collections.abc import Awaitable
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as HandshakeRequest
from websockets.http11 import Response as HandshakeResponse

from publish_port import publish_started, run_peer

users: defaultdict[str, set[ServerConnection]] = defaultdict(set)


def stats(connection: ServerConnection) -> dict[str, int]:
    """What the server holds: every count 0 once all clients are gone (tasks: back to the baseline)."""
    return {
        "connections": sum(len(sockets) for sockets in users.values()),
        "users": len(users),
        "websockets_connections": len(connection.server.connections),
        "tasks": len(asyncio.all_tasks()),
    }


def process_request(connection: ServerConnection, request: HandshakeRequest) -> HandshakeResponse | None:
    path = urlsplit(request.path).path
    if path == "/healthz":
        if not publish_started():
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "the publish port is not up yet\n")
        return connection.respond(http.HTTPStatus.OK, "ok\n")
    if path == "/stats":
        return connection.respond(http.HTTPStatus.OK, json.dumps(stats(connection)))
    return None


async def handler(websocket: ServerConnection) -> None:
    assert websocket.request is not None
    user_id = parse_qs(urlsplit(websocket.request.path).query).get("user", ["anonymous"])[0]
    sockets = users[user_id]
    sockets.add(websocket)
    try:
        await websocket.send(json.dumps({"type": "welcome", "user_id": user_id}))
        async for _ in websocket:
            pass
    except ConnectionClosed:
        pass
    finally:
        sockets.discard(websocket)
        if not sockets:
            users.pop(user_id, None)


async def publish(request: Request) -> Response:
    body = await request.json()
    frame = json.dumps({"type": "event", "event": body["event"], "data": body["data"]})
    for websocket in list(users.get(body["user_id"], ())):
        with contextlib.suppress(ConnectionClosed):
            await websocket.send(frame)
    return JSONResponse({"offset": None})


publish_app = Starlette(routes=[Route("/publish", publish, methods=["POST"])])


def listen(host: str, port: int) -> Awaitable[AbstractAsyncContextManager[Any]]:
    return serve(handler, host, port, process_request=process_request, compression=None)


def main(argv: list[str]) -> int:
    return run_peer(listen, publish_app, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
