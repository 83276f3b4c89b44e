"""The publish endpoint on a second port, for the peers whose WebSocket server answers no request
with a body (websockets_server.py, sansio_server.py), and how such a peer is started.

``POST /publish`` is the same Starlette endpoint on stock uvicorn as bare_server.py's, in the
same event loop as the WebSocket server: publishing costs what it costs bare Starlette, and only
the WebSocket side differs.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from bare_server import event_loop, http_parser

ServeBoth = Callable[[str, int, int], Coroutine[Any, Any, None]]
"""Serves the WebSocket port and the publish port (host, port, publish port) until SIGTERM."""


def uvicorn_server(app: ASGIApp, host: str, port: int) -> uvicorn.Server:
    """uvicorn with the publish app: no WebSocket, no lifespan, no access log."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=http_parser(),
        ws="none",
        lifespan="off",
        log_level="warning",
        access_log=False,
    )
    return uvicorn.Server(config)


def run_peer(serve_both: ServeBoth, argv: list[str]) -> int:
    """``--host H --port P --publish-port Q`` (and ``--dev``, ignored), on the loop of the run."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--publish-port", type=int, default=8769)
    parser.add_argument("--dev", action="store_true", help="accepted and ignored")
    args = parser.parse_args(argv)
    if event_loop() == "uvloop":
        import uvloop

        uvloop.run(serve_both(args.host, args.port, args.publish_port))
    else:
        asyncio.run(serve_both(args.host, args.port, args.publish_port))
    return 0
