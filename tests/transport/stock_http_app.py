"""A bare ASGI app on uvicorn's own h11 HTTP protocol with wsguard's WebSocket protocol class,
so that a head the ``websockets`` parser refuses reaches the WebSocket protocol class, and every
upgrade's head is parsed by that parser (as bytes) rather than handed over parsed.

An upgrade of ``/scope...`` is accepted and sent what the app was given of its head (path,
query, headers, subprotocols) as one JSON text, then closed. ``--guarded-http`` serves the same
app on wsguard's whole transport instead (:func:`wsguard.transport.run`).

Run as a script: ``python stock_http_app.py --dev --host H --port P [--guarded-http]``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import uvicorn

from wsguard.transport import TransportOptions, protocol_class, run


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    elif scope["type"] == "websocket":
        await receive()
        subprotocols = scope["subprotocols"]
        await send({"type": "websocket.accept", "subprotocol": subprotocols[0] if subprotocols else None})
        if scope["path"].startswith("/scope"):
            await send({"type": "websocket.send", "text": json.dumps(head_of(scope))})
        await send({"type": "websocket.close"})


def head_of(scope: dict[str, Any]) -> dict[str, Any]:
    """What the app is given of the upgrade's head, as JSON can carry it."""
    return {
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "query_string": scope["query_string"].decode("latin-1"),
        "headers": [[name.decode("latin-1"), value.decode("latin-1")] for name, value in scope["headers"]],
        "subprotocols": scope["subprotocols"],
        "http_version": scope["http_version"],
    }


async def no_drain() -> None:
    return None


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--dev", action="store_true")
    parser.add_argument("--guarded-http", action="store_true")
    parser.add_argument("--http", default="h11", help="the guarded transport's parser")
    args = parser.parse_args()
    if args.guarded_http:
        options = TransportOptions(host=args.host, port=args.port, log_level="warning", http=args.http)
        run(app, options, no_drain)
        raise SystemExit(0)
    ws = protocol_class(close_timeout=1.0, send_buffer_bytes=65536)
    uvicorn.run(app, host=args.host, port=args.port, http="h11", ws=ws, log_level="warning", lifespan="off")
