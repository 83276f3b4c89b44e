"""Sockets kept by user id for direct messages, and in a list for broadcasts.

``leaky``: the disconnect path looks the socket up by user id. When a user holds two connections
(a second tab, or a reconnect before the old socket is noticed gone) the first to close removes
the other's socket from the list and its own closed socket stays there. ``fixed``: the disconnect
path removes the socket that closed, and the user's entry only when it is that socket.
"""

from __future__ import annotations

import contextlib

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from wsguard.probe import ProbeMiddleware


class Sockets:
    def __init__(self) -> None:
        self.all: list[WebSocket] = []
        self.by_user: dict[str, WebSocket] = {}

    def add(self, user_id: str, websocket: WebSocket) -> None:
        self.all.append(websocket)
        self.by_user[user_id] = websocket

    def remove_by_user(self, user_id: str) -> None:
        websocket = self.by_user.pop(user_id, None)
        if websocket is not None:
            self.all.remove(websocket)

    def remove(self, user_id: str, websocket: WebSocket) -> None:
        with contextlib.suppress(ValueError):
            self.all.remove(websocket)
        if self.by_user.get(user_id) is websocket:
            del self.by_user[user_id]


def build(*, fixed: bool) -> FastAPI:
    app = FastAPI()
    sockets = Sockets()
    app.add_middleware(
        ProbeMiddleware, counts={"sockets": lambda: len(sockets.all), "users": lambda: len(sockets.by_user)}
    )

    @app.websocket("/ws/{user_id}")
    async def endpoint(websocket: WebSocket, user_id: str) -> None:
        await websocket.accept()
        sockets.add(user_id, websocket)
        try:
            while True:
                text = await websocket.receive_text()
                for other in list(sockets.all):
                    with contextlib.suppress(Exception):
                        await other.send_text(text)
        except WebSocketDisconnect:
            pass
        finally:
            if fixed:
                sockets.remove(user_id, websocket)
            else:
                sockets.remove_by_user(user_id)

    return app


leaky = build(fixed=False)
fixed = build(fixed=True)
