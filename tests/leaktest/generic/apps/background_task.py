"""A plain Starlette endpoint with a per-connection heartbeat task.

``leaky``: the heartbeat swallows the error of a failed send and the task is never cancelled, so
every connection leaves a task (and its socket) behind. ``fixed``: the task is cancelled when the
connection ends.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from wsguard.probe import instrument

HEARTBEAT_S = 5.0


async def heartbeat(websocket: WebSocket) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_S)
        with contextlib.suppress(Exception):
            await websocket.send_text("ping")


def build(*, fixed: bool) -> Starlette:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        beating = asyncio.create_task(heartbeat(websocket))
        try:
            while True:
                await websocket.send_text(await websocket.receive_text())
        except WebSocketDisconnect:
            pass
        finally:
            if fixed:
                beating.cancel()

    return Starlette(routes=[WebSocketRoute("/ws/{user_id}", endpoint)])


leaky = instrument(build(fixed=False))
fixed = instrument(build(fixed=True))
