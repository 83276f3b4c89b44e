"""``WSGuard``: the per-user WebSocket endpoint, its HTTP API and its lifespan, ready to mount.

``create_app`` serves it alone; an application embeds it by adding :meth:`WSGuard.routes` to its
own Starlette or FastAPI app, with its own ``authenticate`` and hooks, and running
:meth:`WSGuard.lifespan` inside its own.
"""

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.types import ASGIApp
from starlette.websockets import WebSocket

from wsguard.backends import Backend, backend_from_settings
from wsguard.runtime.commands import CommandHooks, Commands
from wsguard.runtime.hub import Hub
from wsguard.runtime.sweeper import Sweeper
from wsguard.server.admin import admin_routes
from wsguard.server.admission import UpgradeGate
from wsguard.server.api import Api
from wsguard.server.api_keys import ApiKeys
from wsguard.server.auth import Authenticate, TokenAuthority
from wsguard.server.banner import log_backend, log_start
from wsguard.server.direct import DirectWebSocket
from wsguard.server.http import http_routes
from wsguard.server.http_errors import refusal
from wsguard.server.sse import EventStreams
from wsguard.server.static import client_routes, demo_routes
from wsguard.settings import Settings


class WSGuard:
    """Everything one instance needs, wired once."""

    def __init__(
        self,
        settings: Settings,
        *,
        authenticate: Authenticate | None = None,
        hooks: CommandHooks | None = None,
        backend: Backend | None = None,
    ) -> None:
        self.settings, self.websocket_path = settings, "/ws"
        dev_secret = secrets.token_urlsafe(32)
        self.tokens = TokenAuthority.from_settings(settings, dev_secret)
        self.api_keys = ApiKeys.from_settings(settings)
        hooks = hooks or CommandHooks()
        if hooks.verify_refresh is None and authenticate is None:
            hooks = replace(hooks, verify_refresh=self.tokens.verify_refresh)
        self.backend = backend or backend_from_settings(settings)
        self.hub = Hub(settings, self.backend)
        self.commands = Commands(self.hub, hooks)
        self._handle_text = self.commands.handle  # bound once: every connection's task shares it
        authenticate = authenticate or self.tokens.authenticate
        self.gate = gate = UpgradeGate(settings, self.hub, authenticate, settings.jwt_secret or dev_secret)
        self.tickets, self.session_key, self.sessions = gate.tickets, gate.session_key, gate.sessions
        self.identify, self.origin_allowed = gate.identify, gate.origin_allowed
        self.api = api = Api.create(settings, gate, self.api_keys, self.tokens, hooks.demo_runs)
        self.reporter, self.sampler = api.reporter, api.sampler
        self.streams = EventStreams(settings, gate, self.hub, self._handle_text)
        prunes = [*gate.prunes, *api.prunes, self.tokens.prune]
        chores = [lambda now: self.hub.repair(), self.backend.expire, *prunes]
        self.sweeper = Sweeper(settings.sweep_interval, chores, [self.session_key.refresh])

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Start the backend and the sweeper; on the way out, drain and stop them."""
        log_start(self.settings, self.websocket_path)
        await self.hub.start()
        log_backend(self.settings, self.backend)
        await self.session_key.refresh()
        self.sweeper.start()
        self.tokens.start()
        self.sampler.start()
        self.reporter.start()
        try:
            yield
        finally:
            await self.drain()
            await self.reporter.stop()
            await self.sampler.stop()
            await self.sweeper.stop()
            await self.tokens.stop()
            await self.hub.close()

    def stop_admitting(self) -> None:
        """Answer ``/readyz`` and new upgrades with 503 from now on (safe in a signal handler)."""
        self.hub.draining = True

    async def drain(self) -> None:
        """Refuse new upgrades, close every connection with 1001, wait up to the drain timeout."""
        await self.hub.drain(self.settings.drain_timeout)

    async def websocket_endpoint(self, websocket: WebSocket) -> None:
        """Refuse before the upgrade, or admit, serve and release the connection, all in this one
        coroutine: every open connection holds the frames its task is suspended in."""
        if self.hub.draining:
            await websocket.send_denial_response(refusal(503, "draining", retry_after=5))
            return
        with self.hub.serving():
            identity = await self.gate.check(websocket)
            if isinstance(identity, Response):
                await websocket.send_denial_response(identity)
                return
            context, takeover = self.gate.context_of(websocket, identity)
            admitted = self.gate.admitted(context, websocket, websocket.accept, takeover=takeover)
            async with admitted as connection:
                if connection is None:
                    await self.gate.turn_away(websocket)
                    return
                connection.send(self.gate.welcome(context))
                await connection.run(self._handle_text)

    def app(self) -> Starlette:
        """A Starlette app of its own: ``/ws``, the HTTP API and the lifespan."""
        app = Starlette(routes=self.routes(), lifespan=self.lifespan)
        app.state.wsguard = self
        return app

    def server_app(self) -> ASGIApp:
        """What the standalone server serves: :meth:`app`, with the upgrades of the WebSocket
        path handed straight to the endpoint (see :mod:`wsguard.server.direct`)."""
        return DirectWebSocket(self.app(), self.websocket_path, self.websocket_endpoint)

    def routes(self, websocket_path: str = "/ws", *, api: bool = True) -> list[BaseRoute]:
        """The WebSocket route, the event streams (``/sse``), the browser client (``/client/``)
        and, with ``api``, docs/protocol.md section 4's HTTP API, the dashboard and ``--dev``'s demo.

        The HTTP API comes first, ``POST /api/publish`` at its head: Starlette tries the routes in
        turn, and a publish is the request a busy server answers most. No path of one group
        matches a path of another, so the order decides nothing else."""
        self.websocket_path = websocket_path
        routes: list[BaseRoute] = [WebSocketRoute(websocket_path, self.websocket_endpoint)]
        if api:
            routes.extend(http_routes(self.api))
        routes.extend([*self.streams.routes(), *client_routes(self.origin_allowed)])
        if api:
            routes.extend(admin_routes(self.api))
            if self.settings.dev:
                routes.extend(demo_routes())
        return routes


def create_app(settings: Settings, **options: Any) -> Starlette:
    """The standalone server: ``/ws`` and the HTTP API, with JWT auth."""
    return WSGuard(settings, **options).app()
