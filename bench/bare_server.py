"""The baseline: a bare Starlette WebSocket server on stock uvicorn, doing the least it can.

It has what a first implementation has: a dict of each user's sockets, a welcome frame, and a
publish endpoint that sends to every socket of a user in turn. No auth, no limits, no queues,
no replay, no metrics (``GET /stats`` only reports the dict's sizes and the asyncio tasks, for
the benchmark's cleanup figure). Compression is off, as in wsguard's default, so that the two compare
like for like. Started by ``bench/run.py`` as ``python bare_server.py --host H --port P``.

With ``--transport`` the same app is served through ``wsguard.transport`` instead of stock
uvicorn: what the transport alone costs or saves, apart from wsguard's own state. With
``--protocol-frames`` its event frames carry the fields of wsguard's (ids, offset, epoch,
timestamp), about 100 bytes more: what the wire format alone costs a fan-out, mostly in the
client that parses it. With ``--asgi`` the same endpoints are a plain ASGI app, without
Starlette: the least any ASGI app pays on the server it runs on (with ``--transport`` too, on
wsguard's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections import defaultdict
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

users: defaultdict[str, set[WebSocket]] = defaultdict(set)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def stats(request: Request) -> Response:
    """What the server holds: every count 0 once all clients are gone (tasks: back to the baseline)."""
    return JSONResponse(
        {
            "connections": sum(len(sockets) for sockets in users.values()),
            "users": len(users),
            "tasks": len(asyncio.all_tasks()),
        }
    )


PROTOCOL_FIELDS: dict[str, object] = {}
"""With ``--protocol-frames``, the fields that wsguard's event frame carries besides the event and
its data (protocol.md), with values of the same length, so that the frames weigh the same."""
separators = (", ", ": ")
"""``json.dumps``'s own; wsguard's compact ones with ``--protocol-frames``."""


async def publish(request: Request) -> Response:
    body = await request.json()
    fields = {"type": "event", "event": body["event"], **PROTOCOL_FIELDS, "data": body["data"]}
    frame = json.dumps(fields, separators=separators)
    for websocket in list(users.get(body["user_id"], ())):
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await websocket.send_text(frame)
    return JSONResponse({"offset": None})


async def ws(websocket: WebSocket) -> None:
    user_id = websocket.query_params.get("user", "anonymous")
    await websocket.accept()
    sockets = users[user_id]
    sockets.add(websocket)
    try:
        await websocket.send_text(json.dumps({"type": "welcome", "user_id": user_id}))
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        sockets.discard(websocket)
        if not sockets:
            users.pop(user_id, None)


plain_users: defaultdict[str, set[Send]] = defaultdict(set)
"""``--asgi``'s own dict: each user's connections, as the ``send`` of each."""


async def plain_app(scope: Scope, receive: Receive, send: Send) -> None:
    """``--asgi``: ``/ws?user=``, ``POST /publish``, ``GET /stats`` and the lifespan, with no
    framework between the server and the endpoints."""
    if scope["type"] == "websocket":
        await plain_websocket(scope, receive, send)
    elif scope["type"] == "http":
        await plain_http(scope, receive, send)
    else:
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})


async def plain_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    user_id = parse_qs(scope["query_string"].decode()).get("user", ["anonymous"])[0]
    await receive()
    await send({"type": "websocket.accept"})
    sockets = plain_users[user_id]
    sockets.add(send)
    try:
        await send({"type": "websocket.send", "text": json.dumps({"type": "welcome", "user_id": user_id})})
        while (await receive())["type"] != "websocket.disconnect":
            pass
    finally:
        sockets.discard(send)
        if not sockets:
            plain_users.pop(user_id, None)


async def plain_http(scope: Scope, receive: Receive, send: Send) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/publish":
        request = json.loads(body)
        fields = {"type": "event", "event": request["event"], **PROTOCOL_FIELDS, "data": request["data"]}
        frame = json.dumps(fields, separators=separators)
        for socket_send in list(plain_users.get(request["user_id"], ())):
            with contextlib.suppress(OSError, RuntimeError):
                await socket_send({"type": "websocket.send", "text": frame})
        answer = b'{"offset": null}'
    elif scope["path"] == "/stats":
        connections = sum(len(sockets) for sockets in plain_users.values())
        counts = {"connections": connections, "users": len(plain_users), "tasks": len(asyncio.all_tasks())}
        answer = json.dumps(counts).encode()
    else:
        answer = b'"ok"'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


app = Starlette(
    routes=[
        Route("/healthz", healthz),
        Route("/stats", stats),
        Route("/publish", publish, methods=["POST"]),
        WebSocketRoute("/ws", ws),
    ]
)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--dev", action="store_true", help="accepted and ignored")
    parser.add_argument("--transport", action="store_true", help="serve through wsguard.transport")
    parser.add_argument("--asgi", action="store_true", help="a plain ASGI app, without Starlette")
    parser.add_argument(
        "--protocol-frames", action="store_true", help="event frames as long as wsguard's (its fields)"
    )
    args = parser.parse_args(argv)
    if args.protocol_frames:
        global separators
        separators = (",", ":")
        PROTOCOL_FIELDS.update(
            thread_id=None,
            run_id=None,
            request_id=None,
            offset=None,
            epoch="ep_01JDXQ2V7R8M3K9T0ABCDEFGH",
            ts="2026-11-30T19:30:01.948Z",
        )
    served: ASGIApp = plain_app if args.asgi else app
    if args.transport:
        from wsguard.transport import TransportOptions, run

        async def no_drain() -> None:
            return None

        options = TransportOptions(
            host=args.host, port=args.port, log_level="warning", loop=event_loop(), http=http_parser()
        )
        run(served, options, no_drain)
        return 0
    serve_on_stock_uvicorn(served, args.host, args.port)
    return 0


def event_loop() -> str:
    """The loop ``bench/run.py`` gives every server of a run (``--loop``)."""
    return os.environ.get("WSGUARD_LOOP", "asyncio")


def http_parser() -> str:
    """The HTTP parser ``bench/run.py`` gives every server on uvicorn (``--http``)."""
    return os.environ.get("WSGUARD_HTTP", "h11")


def serve_on_stock_uvicorn(asgi_app: ASGIApp, host: str, port: int) -> None:
    """Stock uvicorn as every peer on it runs: its sans-I/O WebSocket protocol, compression off
    (wsguard's default), no access log."""
    uvicorn.run(
        asgi_app,
        host=host,
        port=port,
        loop=event_loop(),
        http=http_parser(),
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
