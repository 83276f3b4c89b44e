"""The standalone server's outermost app: an upgrade of the WebSocket path goes straight to the
endpoint, everything else to the Starlette app.

Why: a connection's task stays suspended for the connection's life in every coroutine between
the server and the endpoint. Through Starlette those are the app, its two exception-handling
layers, the router, the route and the route's own exception wrapper, with their closures: about
38 of the 118 objects a held connection gives the cyclic garbage collector to walk at each full
collection (docs/performance.md). None of them acts on this path: the endpoint raises no
``WebSocketException`` and handles its own failures, and an exception that escapes it reaches
the server either way, which answers 500 before the upgrade and closes with 1011 after it.
"""

from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

WebSocketEndpoint = Callable[[WebSocket], Awaitable[None]]


class DirectWebSocket:
    """``app`` for every scope but a WebSocket one on ``path``, which ``endpoint`` serves."""

    def __init__(self, app: ASGIApp, path: str, endpoint: WebSocketEndpoint) -> None:
        self.app = app
        self.path = path
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == self.path:
            scope["app"] = self.app
            await self.endpoint(WebSocket(scope, receive, send))
            return
        await self.app(scope, receive, send)
