"""A bare ASGI app on uvicorn's own h11 HTTP protocol with wsguard's WebSocket protocol class,
so that a head the ``websockets`` parser refuses reaches the WebSocket protocol class.

Run as a script: ``python stock_http_app.py --dev --host H --port P``.
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn

from wsguard.transport import protocol_class


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close"})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--dev", action="store_true")
    args = parser.parse_args()
    ws = protocol_class(close_timeout=1.0, send_buffer_bytes=65536)
    uvicorn.run(app, host=args.host, port=args.port, http="h11", ws=ws, log_level="warning", lifespan="off")
