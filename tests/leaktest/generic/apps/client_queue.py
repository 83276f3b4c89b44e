"""A broadcaster feeding an asyncio.Queue per client, a writer task per client draining it.

``leaky``: the queues are unbounded, so a client that stops reading makes the application hold
every message for it. ``fixed``: each queue holds at most ``QUEUE_LIMIT`` messages; a client
whose queue is full is closed (1013, try again later) and its queue dropped.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from wsguard.probe import ProbeMiddleware

QUEUE_LIMIT = 64
TRY_AGAIN_LATER = 1013


def build(*, fixed: bool) -> FastAPI:
    app = FastAPI()
    queues: dict[WebSocket, asyncio.Queue[str]] = {}
    closing: set[asyncio.Task[None]] = set()
    app.add_middleware(
        ProbeMiddleware,
        counts={"clients": lambda: len(queues), "queued": lambda: sum(q.qsize() for q in queues.values())},
    )

    async def write(websocket: WebSocket, queue: asyncio.Queue[str]) -> None:
        while True:
            await websocket.send_text(await queue.get())

    def broadcast(text: str) -> None:
        for websocket, queue in list(queues.items()):
            try:
                queue.put_nowait(text)
            except asyncio.QueueFull:
                del queues[websocket]
                task = asyncio.create_task(websocket.close(TRY_AGAIN_LATER))
                closing.add(task)
                task.add_done_callback(closing.discard)

    @app.websocket("/ws/{user_id}")
    async def endpoint(websocket: WebSocket, user_id: str) -> None:
        await websocket.accept()
        queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_LIMIT if fixed else 0)
        queues[websocket] = queue
        writer = asyncio.create_task(write(websocket, queue))
        try:
            while True:
                broadcast(await websocket.receive_text())
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            queues.pop(websocket, None)
            writer.cancel()
            with contextlib.suppress(BaseException):
                await writer

    return app


leaky = build(fixed=False)
fixed = build(fixed=True)
