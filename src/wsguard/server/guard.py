"""``WSGuard``: the per-user WebSocket endpoint, its HTTP API and its lifespan, ready to mount.

``create_app`` serves it alone; an application embeds it by adding :meth:`WSGuard.routes` to its
own Starlette or FastAPI app, with its own ``authenticate`` and hooks, and running
:meth:`WSGuard.lifespan` inside its own.
"""

import asyncio
import hashlib
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.types import ASGIApp
from starlette.websockets import WebSocket

from wsguard import close, ids
from wsguard.backends import backend_from_settings
from wsguard.backends.base import Backend, BackendUnavailable
from wsguard.context import ConnectionContext
from wsguard.core import frames
from wsguard.core.ratelimit import KeyedLimiter
from wsguard.logs import log_context
from wsguard.runtime.commands import CommandHooks, Commands
from wsguard.runtime.hub import Hub
from wsguard.runtime.sweeper import Sweeper
from wsguard.server.admin import admin_routes
from wsguard.server.api_keys import ApiKeys
from wsguard.server.auth import Authenticate, Identity, TokenAuthority, Unauthorized
from wsguard.server.banner import log_backend, log_start
from wsguard.server.direct import DirectWebSocket
from wsguard.server.feed import FeedSampler
from wsguard.server.http import http_routes
from wsguard.server.http_errors import refusal
from wsguard.server.instances import InstanceReporter
from wsguard.server.sessions import SharedSessionKey
from wsguard.server.static import client_routes, demo_routes
from wsguard.server.tickets import Tickets
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
        self.settings = settings
        self.websocket_path = "/ws"
        dev_secret = secrets.token_urlsafe(32)
        self.tokens = TokenAuthority.from_settings(settings, dev_secret)
        self.api_keys = ApiKeys.from_settings(settings)
        """Accepted on ``POST /api/publish`` and ``/api/admin/*`` (never on ``/ws``)."""
        self._authenticate = authenticate or self.tokens.authenticate
        hooks = hooks or CommandHooks()
        if hooks.verify_refresh is None and authenticate is None:
            hooks = CommandHooks(
                hooks.authorize_subscribe, hooks.custom, self.tokens.verify_refresh, hooks.demo_runs
            )
        self.backend = backend or backend_from_settings(settings)
        self.hub = Hub(settings, self.backend)
        self.commands = Commands(self.hub, hooks)
        self._handle_text = self.commands.handle
        """Bound once: every connection's task shares it."""
        self.tickets = Tickets(self.backend, settings.ticket_ttl, settings.max_tickets_per_user)
        self.reporter = InstanceReporter(self.hub, settings.lease_ttl)
        self.sampler = FeedSampler(self.hub)
        secret = (settings.jwt_secret or dev_secret).encode()
        local_key = hashlib.sha256(b"wsguard session\x00" + secret).digest()
        self.sessions = ids.SessionSigner(local_key)
        self.session_key = SharedSessionKey(self.sessions, self.backend, local_key)
        """On a shared backend, the key every instance signs sessions with (see
        :mod:`wsguard.server.sessions`); the local one until it is read."""
        self._admitting = 0
        """Upgrades past every check whose connection is not registered yet: they hold a slot of
        ``max_connections``, so that concurrent admissions cannot overshoot it."""
        self.user_attempts = KeyedLimiter(settings.connect_rate_per_user)
        self.address_attempts = KeyedLimiter(settings.connect_rate_per_address)
        self.run_starts = KeyedLimiter(settings.run_rate_per_user)
        self.ticket_requests = KeyedLimiter(settings.ticket_rate_per_user)
        self.sweeper = Sweeper(
            settings.sweep_interval,
            [
                lambda now: self.hub.repair(),
                self.backend.expire,
                self.user_attempts.prune,
                self.address_attempts.prune,
                self.run_starts.prune,
                self.ticket_requests.prune,
                self.tokens.prune,
            ],
            [self.session_key.refresh],
        )

    # Lifespan

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

    # Authentication

    async def identify(self, connection: HTTPConnection) -> Identity:
        """The caller of an HTTP request or upgrade; a ``ticket`` query parameter counts too.

        Raises :class:`BackendUnavailable` when a ticket cannot be redeemed now (answered 503).
        """
        ticket = connection.query_params.get("ticket")
        if ticket is not None and connection.scope["type"] == "websocket":
            identity = await self.tickets.redeem(ticket)
            if identity is None:
                raise Unauthorized("unknown, used or expired ticket")
            return identity
        return await self._authenticate(connection)

    def origin_allowed(self, connection: HTTPConnection) -> bool:
        """No ``Origin`` (not a browser), ``--dev``, an allowed origin, or the server's own."""
        origin = connection.headers.get("origin")
        if origin is None or self.settings.dev or origin in self.settings.allowed_origins:
            return True
        parts = urlsplit(origin)
        secure = connection.url.scheme in ("https", "wss")
        own_host = connection.headers.get("host", "").lower()
        return parts.netloc.lower() == own_host and (parts.scheme == "https") == secure

    # The WebSocket endpoint

    async def websocket_endpoint(self, websocket: WebSocket) -> None:
        """Refuse before the upgrade, or admit, serve and release the connection.

        All of it in this one coroutine (the helpers it awaits return before the connection is
        served), since every open connection holds the frames its task is suspended in.
        """
        if self.hub.draining:
            await websocket.send_denial_response(refusal(503, "draining", retry_after=5))
            return
        with self.hub.serving():
            identity, problem = await self._check_upgrade(websocket)
            if problem is not None:
                await websocket.send_denial_response(problem)
                return
            assert identity is not None
            context, takeover = self._context_of(websocket, identity)
            self._admitting += 1
            admitting = True
            try:
                with log_context(
                    connection_id=context.connection_id,
                    user_id=context.user_id,
                    session_id=context.session_id,
                ):
                    await websocket.accept()
                    async with self.hub.open(context, websocket, takeover=takeover) as connection:
                        self._admitting -= 1
                        admitting = False
                        if connection is None:
                            await _close_quietly(websocket, close.TOO_MANY_CONNECTIONS, self.settings)
                            return
                        connection.send(self._welcome(context))
                        await connection.run(self._handle_text)
            finally:
                if admitting:
                    self._admitting -= 1

    def _context_of(self, websocket: WebSocket, identity: Identity) -> tuple[ConnectionContext, bool]:
        """Who the new connection is, and whether it takes over its session (``resume``)."""
        resume = websocket.query_params.get("resume")
        takeover = resume is not None and self.sessions.belongs_to(resume, identity.user_id)
        context = ConnectionContext(
            connection_id=ids.new_id(ids.CONNECTION),
            session_id=resume if takeover and resume else self.sessions.new_session(identity.user_id),
            user_id=identity.user_id,
            opened_at=time.time(),
            expires_at=identity.expires_at,
            client_address=websocket.client.host if websocket.client else None,
            user_agent=websocket.headers.get("user-agent"),
        )
        return context, takeover

    async def _check_upgrade(self, websocket: WebSocket) -> tuple[Identity | None, Response | None]:
        settings, now = self.settings, time.monotonic()
        if self.hub.draining:
            return None, refusal(503, "draining", retry_after=5)
        if not self.origin_allowed(websocket):
            return None, refusal(403, "origin not allowed")
        address = websocket.client.host if websocket.client else "unknown"
        wait = self.address_attempts.take(address, now)
        if wait is not None:
            return None, refusal(429, "too many connection attempts", retry_after=wait)
        try:
            identity = await self.identify(websocket)
        except Unauthorized as error:
            return None, refusal(401, str(error))
        except BackendUnavailable:
            return None, refusal(503, "backend unavailable: the ticket cannot be checked", retry_after=1)
        wait = self.user_attempts.take(identity.user_id, now)
        if wait is not None:
            return None, refusal(429, "too many connection attempts", retry_after=wait)
        if self.hub.draining:
            return None, refusal(503, "draining", retry_after=5)
        capacity = settings.max_connections
        if capacity and self.hub.registry.connection_count + self._admitting >= capacity:
            return None, refusal(503, "at connection capacity", retry_after=1)
        return identity, None

    def _welcome(self, context: ConnectionContext) -> str:
        settings = self.settings
        return frames.encode(
            "welcome",
            connection_id=context.connection_id,
            session_id=context.session_id,
            user_id=context.user_id,
            heartbeat={
                "interval": settings.heartbeat_interval,
                "timeout": settings.heartbeat_timeout,
            },
            limits={
                "max_connections_per_user": settings.max_connections_per_user,
                "max_message_bytes": settings.max_message_bytes,
            },
        )

    # Mounting

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
        """The WebSocket route, the browser client at ``/client/wsguard.js`` and, with ``api``,
        the HTTP endpoints of PROTOCOL.md section 4, the admin dashboard (``/admin``) with its
        endpoints, and the demo page at ``/demo`` with ``--dev``."""
        self.websocket_path = websocket_path
        routes: list[BaseRoute] = [WebSocketRoute(websocket_path, self.websocket_endpoint)]
        routes.extend(client_routes(self.origin_allowed))
        if api:
            routes.extend(http_routes(self))
            routes.extend(admin_routes(self))
            if self.settings.dev:
                routes.extend(demo_routes())
        return routes


async def _close_quietly(websocket: WebSocket, reason: close.Close, settings: Settings) -> None:
    try:
        async with asyncio.timeout(settings.close_timeout):
            await websocket.close(reason.code, reason.reason)
    except (TimeoutError, RuntimeError, OSError):
        pass


def create_app(settings: Settings, **options: Any) -> Starlette:
    """The standalone server: ``/ws`` and the HTTP API, with JWT auth."""
    return WSGuard(settings, **options).app()
