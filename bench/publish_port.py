"""The publish endpoint on a second port, for the peers whose WebSocket server answers no request
with a body (websockets_server.py, sansio_server.py), and how such a peer is started.

``POST /publish`` is the same Starlette endpoint on stock uvicorn as bare_server.py's, in the
same event loop as the WebSocket server: publishing costs what it costs bare Starlette, and only
the WebSocket side differs.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from bare_server import event_loop, http_parser

Listen = Callable[[str, int], Awaitable[AbstractAsyncContextManager[Any]]]
"""Opens the peer's WebSocket listener on (host, port); it closes when the context ends."""

_server: uvicorn.Server | None = None


def publish_started() -> bool:
    """Whether the publish port is up: a peer's ``/healthz`` is ready only then."""
    return _server is not None and _server.started


async def serve_both(listen: Listen, app: ASGIApp, host: str, port: int, publish_port: int) -> None:
    """The WebSocket listener, and ``app`` on the publish port until uvicorn stops on SIGTERM or
    SIGINT: uvicorn without WebSocket, lifespan or access log."""
    global _server
    async with await listen(host, port):
        config = uvicorn.Config(
            app,
            host=host,
            port=publish_port,
            http=http_parser(),
            ws="none",
            lifespan="off",
            log_level="warning",
            access_log=False,
        )
        _server = uvicorn.Server(config)
        await _server.serve()


def run_peer(listen: Listen, app: ASGIApp, argv: list[str]) -> int:
    """``--host H --port P --publish-port Q`` (and ``--dev``, ignored), on the loop of the run."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--publish-port", type=int, default=8769)
    parser.add_argument("--dev", action="store_true", help="accepted and ignored")
    args = parser.parse_args(argv)
    serving = serve_both(listen, app, args.host, args.port, args.publish_port)
    if event_loop() == "uvloop":
        import uvloop

        uvloop.run(serving)
    else:
        asyncio.run(serving)
    return 0
