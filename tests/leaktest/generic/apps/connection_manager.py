"""The FastAPI docs' chat room: a ConnectionManager list, broadcast to every socket.

``leaky``: broadcast skips a socket whose send fails without removing it, and the endpoint's
disconnect path catches only ``WebSocketDisconnect``; when the broadcast's failed send has marked
a socket disconnected, its own next ``receive_text`` raises ``RuntimeError`` instead, so the
socket stays in the list forever. ``fixed``: broadcast removes what fails, and the endpoint
removes its socket in ``finally``.
"""

from __future__ import annotations

import contextlib

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from wsguard.probe import ProbeMiddleware


class ConnectionManager:
    def __init__(self, *, fixed: bool) -> None:
        self.active_connections: list[WebSocket] = []
        self.fixed = fixed

    async def connect(self, websocket: WebSocket) -> None:
        await websocket.accept()
        self.active_connections.append(websocket)

    def disconnect(self, websocket: WebSocket) -> None:
        with contextlib.suppress(ValueError):
            self.active_connections.remove(websocket)

    async def broadcast(self, message: str) -> None:
        for connection in list(self.active_connections):
            try:
                await connection.send_text(message)
            except Exception:
                if self.fixed:
                    self.disconnect(connection)


def build(*, fixed: bool) -> FastAPI:
    app = FastAPI()
    manager = ConnectionManager(fixed=fixed)
    app.add_middleware(
        ProbeMiddleware, counts={"active_connections": lambda: len(manager.active_connections)}
    )

    @app.websocket("/ws/{client_id}")
    async def websocket_endpoint(websocket: WebSocket, client_id: str) -> None:
        await manager.connect(websocket)
        if fixed:
            try:
                while True:
                    data = await websocket.receive_text()
                    await manager.broadcast(f"Client #{client_id} says: {data}")
            except WebSocketDisconnect:
                pass
            finally:
                manager.disconnect(websocket)
        else:
            try:
                while True:
                    data = await websocket.receive_text()
                    await manager.broadcast(f"Client #{client_id} says: {data}")
            except WebSocketDisconnect:
                manager.disconnect(websocket)

    return app


leaky = build(fixed=False)
fixed = build(fixed=True)
