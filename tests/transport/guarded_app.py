"""A tiny Starlette app served through wsguard's transport, for the transport's own tests.

Run as a script: ``python guarded_app.py --host H --port P [--dev] [options]``. It records how
each WebSocket ended (``GET /log``) and answers a few text commands:

- ``flood``: send 16 KiB binary frames until the send fails, tracking the largest
  ``unsent_bytes()`` seen;
- ``close``: close with 1000 (the call must return even behind a full write buffer);
- anything else is echoed.

On SIGTERM it drains like the real server: ``/readyz`` and new upgrades answer 503, and open
connections are closed with 1001 ``going_away`` in batches.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import itertools
import os
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from wsguard.transport import EXTENSION_KEY, TransportControl, TransportOptions, run

FLOOD_FRAME = b"x" * 16384


class GuardedApp:
    """State of the test app: open sockets, how closed ones ended, and whether it drains."""

    def __init__(self, drain_batch: int, drain_pause: float, drain_hang: bool) -> None:
        self.open: dict[int, WebSocket] = {}
        self.open_records: dict[int, dict[str, Any]] = {}
        self.log: list[dict[str, Any]] = []
        self.draining = False
        self.drain_batch = drain_batch
        self.drain_pause = drain_pause
        self.drain_hang = drain_hang
        self.ids = itertools.count(1)
        self.tasks: set[asyncio.Task[None]] = set()

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(self, request: Request) -> Response:
        if self.draining:
            return PlainTextResponse("draining", status_code=503, headers={"Retry-After": "1"})
        return PlainTextResponse("ready")

    async def closed(self, request: Request) -> Response:
        return JSONResponse({"open": list(self.open_records.values()), "closed": self.log})

    async def garbage(self, request: Request) -> Response:
        """Collect, and count by type what only the cyclic collector could free (reference cycles)."""
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            found = collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        return JSONResponse(dict(found))

    async def denied(self, websocket: WebSocket) -> None:
        await websocket.send_denial_response(PlainTextResponse("no", status_code=401))

    async def ws(self, websocket: WebSocket) -> None:
        if self.draining:
            response = PlainTextResponse("draining", status_code=503, headers={"Retry-After": "1"})
            await websocket.send_denial_response(response)
            return
        control = websocket.scope["extensions"][EXTENSION_KEY]
        assert isinstance(control, TransportControl)
        await websocket.accept()
        connection_id = next(self.ids)
        self.open[connection_id] = websocket
        record: dict[str, Any] = {
            "id": connection_id,
            "client_port": websocket.client.port if websocket.client else None,
            "closed_at_while_open": control.closed_at,
            "sent": 0,
            "max_unsent": 0,
            "max_in_kernel": 0,
        }
        self.open_records[connection_id] = record
        try:
            await self.serve(websocket, control, record)
        finally:
            del self.open[connection_id]
            del self.open_records[connection_id]
            self.log.append(record)

    async def serve(self, websocket: WebSocket, control: TransportControl, record: dict[str, Any]) -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                closed_at = control.closed_at
                record["code"] = message.get("code")
                record["reason"] = message.get("reason", "")
                record["cleanup_seconds"] = None if closed_at is None else time.monotonic() - closed_at
                return
            text = message.get("text")
            if text == "flood":
                self.spawn(self.flood(websocket, control, record))
            elif text == "close":
                started = time.monotonic()
                await websocket.close(1000)
                record["close_call_seconds"] = time.monotonic() - started
            elif text is not None:
                await websocket.send_text(text)

    async def flood(self, websocket: WebSocket, control: TransportControl, record: dict[str, Any]) -> None:
        try:
            while True:
                await websocket.send_bytes(FLOOD_FRAME)
                record["sent"] += len(FLOOD_FRAME)
                unsent = control.unsent_bytes()
                record["max_unsent"] = max(record["max_unsent"], unsent)
                record["max_in_kernel"] = max(record["max_in_kernel"], record["sent"] - unsent)
        except (WebSocketDisconnect, OSError, RuntimeError) as error:
            record["flood_ended"] = type(error).__name__

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drain(self) -> None:
        self.draining = True
        if self.drain_hang:
            await asyncio.Event().wait()
        while self.open:
            batch = list(self.open.values())[: self.drain_batch]
            await asyncio.gather(*(ws.close(1001, "going_away") for ws in batch), return_exceptions=True)
            await asyncio.sleep(self.drain_pause)

    def starlette(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/healthz", self.healthz),
                Route("/readyz", self.readyz),
                Route("/log", self.closed),
                Route("/garbage", self.garbage),
                WebSocketRoute("/ws", self.ws),
                WebSocketRoute("/denied", self.denied),
            ]
        )


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--dev", action="store_true")
    parser.add_argument("--heartbeat-interval", type=float, default=20.0)
    parser.add_argument("--heartbeat-timeout", type=float, default=20.0)
    parser.add_argument("--close-timeout", type=float, default=1.0)
    parser.add_argument("--write-timeout", type=float, default=None)
    parser.add_argument("--max-message-bytes", type=int, default=65536)
    parser.add_argument("--compression", action="store_true")
    parser.add_argument(
        "--http", default=os.environ.get("WSGUARD_HTTP", "auto"), help="the HTTP parser, as wsguard serve's"
    )
    parser.add_argument("--send-buffer-bytes", type=int, default=65536)
    parser.add_argument("--drain-batch", type=int, default=50)
    parser.add_argument("--drain-pause", type=float, default=0.05)
    parser.add_argument("--drain-hang", action="store_true")
    parser.add_argument("--refusal-log-window", type=float, default=10.0)
    parser.add_argument("--stderr-file")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.stderr_file:
        log_fd = os.open(args.stderr_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log_fd, 2)
    app = GuardedApp(args.drain_batch, args.drain_pause, args.drain_hang)
    options = TransportOptions(
        host=args.host,
        port=args.port,
        heartbeat_interval=args.heartbeat_interval,
        heartbeat_timeout=args.heartbeat_timeout,
        close_timeout=args.close_timeout,
        write_timeout=args.write_timeout,
        max_message_bytes=args.max_message_bytes,
        compression=args.compression,
        send_buffer_bytes=args.send_buffer_bytes,
        refusal_log_window=args.refusal_log_window,
        http=args.http,
    )
    drain: Callable[[], Coroutine[Any, Any, None]] = app.drain
    with contextlib.suppress(KeyboardInterrupt):
        run(app.starlette(), options, drain)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
