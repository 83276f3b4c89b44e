"""A peer: python-socketio on stock uvicorn, doing what bare_server.py does in Socket.IO's terms.

A connection joins a room named after its user (``?user=`` on the handshake URL) in the connect
handler, so the connect acknowledgement (``40{"sid": ...}``) plays the welcome frame. ``POST
/publish`` (a Starlette app behind ``socketio.ASGIApp``) emits the event to that room. Socket.IO
and Engine.IO settings are the library's defaults (pings every 25 s); compression is off at the
WebSocket level, as for the others. Started by ``bench/run.py`` as ``python socketio_server.py
--host H --port P``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any
from urllib.parse import parse_qs

import socketio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bare_server import serve_on_stock_uvicorn

sio = socketio.AsyncServer(async_mode="asgi")


async def connect(sid: str, environ: dict[str, Any], auth: object) -> None:
    """The room named after the user is the per-user dict of the other servers."""
    user_id = parse_qs(environ.get("QUERY_STRING", "")).get("user", ["anonymous"])[0]
    await sio.enter_room(sid, user_id)


sio.on("connect", connect)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def publish(request: Request) -> Response:
    body = await request.json()
    await sio.emit(body["event"], body["data"], room=body["user_id"])
    return JSONResponse({"offset": None})


async def stats(request: Request) -> Response:
    """What the server holds: every count 0 once all clients are gone (tasks: back to the baseline)."""
    rooms: dict[str, dict[object, object]] = sio.manager.rooms
    return JSONResponse(
        {
            "engineio_sockets": len(sio.eio.sockets),
            "socketio_rooms": sum(len(named) for named in rooms.values()),
            "tasks": len(asyncio.all_tasks()),
        }
    )


app = socketio.ASGIApp(
    sio,
    other_asgi_app=Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/stats", stats),
            Route("/publish", publish, methods=["POST"]),
        ]
    ),
)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8768)
    parser.add_argument("--dev", action="store_true", help="accepted and ignored")
    args = parser.parse_args(argv)
    serve_on_stock_uvicorn(app, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
