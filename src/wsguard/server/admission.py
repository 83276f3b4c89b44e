"""The upgrade gate: the checks a WebSocket upgrade passes before it is accepted, each refused
with a plain HTTP answer (docs/protocol.md section 2), and who a connection it lets in is.

In order: the drain, the ``Origin``, the address's attempt rate, the credential (a one-time
``ticket``, else the application's ``authenticate``), the user's attempt rate, the drain again
(the credential may have been awaited), then the capacity. The capacity counts the hub's
connections and the upgrades let in whose connection the hub has not registered yet
(:attr:`UpgradeGate.admitting`), so that concurrent upgrades cannot overshoot it.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.websockets import WebSocket

from wsguard import close, ids
from wsguard.backends.base import BackendUnavailable
from wsguard.context import ConnectionContext
from wsguard.core import frames
from wsguard.core.ratelimit import KeyedLimiter
from wsguard.logs import log_context
from wsguard.runtime.connection import Connection, Socket
from wsguard.runtime.hub import Hub, Opened
from wsguard.runtime.sweeper import Chore
from wsguard.server.auth import Authenticate, Identity, Unauthorized
from wsguard.server.http_errors import refusal
from wsguard.server.sessions import SharedSessionKey
from wsguard.server.tickets import Tickets
from wsguard.settings import Settings


def connection_log_context(context: ConnectionContext) -> contextlib.AbstractContextManager[None]:
    """The log fields of everything done for one connection: its id, its user and its session."""
    return log_context(
        connection_id=context.connection_id, user_id=context.user_id, session_id=context.session_id
    )


class UpgradeGate:
    """Who may open a WebSocket on this instance, and as whom.

    Every call returns before the endpoint serves the connection, so that none of its frames is
    held for the connection's life (see ``WSGuard.websocket_endpoint``).
    """

    def __init__(self, settings: Settings, hub: Hub, authenticate: Authenticate, session_secret: str) -> None:
        """``session_secret`` is what this instance's own session key derives from (see
        :meth:`SharedSessionKey.from_secret`)."""
        self.settings = settings
        self.hub = hub
        self._authenticate = authenticate
        self.tickets = Tickets(hub.backend, settings.ticket_ttl, settings.max_tickets_per_user)
        """Redeemed here (``?ticket=``), issued by ``POST /api/tickets``."""
        self.session_key = SharedSessionKey.from_secret(session_secret, hub.backend)
        self.sessions = self.session_key.signer
        """Signs the session ids given out, and checks those a ``resume`` brings back."""
        self.user_attempts = KeyedLimiter(settings.connect_rate_per_user)
        self.address_attempts = KeyedLimiter(settings.connect_rate_per_address)
        self.admitting = 0
        """Upgrades past every check whose connection is not registered yet: they hold a slot of
        ``max_connections``. The endpoint adds one after :meth:`check` lets an upgrade in, and
        takes it back once the hub has decided (a plain count: nothing is held per upgrade)."""

    @property
    def prunes(self) -> tuple[Chore, Chore]:
        """The sweeper's chores for the attempt limits, per user then per address."""
        return self.user_attempts.prune, self.address_attempts.prune

    async def identify(self, connection: HTTPConnection) -> Identity:
        """The caller of an HTTP request or upgrade; a ``ticket`` query parameter counts too.

        Raises :class:`BackendUnavailable` when a ticket cannot be redeemed now (answered 503).
        """
        return await self._identify(connection, tickets=connection.scope["type"] == "websocket")

    async def _identify(self, connection: HTTPConnection, *, tickets: bool) -> Identity:
        """The caller; with ``tickets``, a ``ticket`` query parameter is its credential."""
        ticket = connection.query_params.get("ticket") if tickets else None
        if ticket is not None:
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

    async def check(self, websocket: HTTPConnection) -> Identity | Response:
        """The identity of an upgrade (or an event stream: the same checks) that passes every
        check, else the refusal to answer it."""
        settings, hub, now = self.settings, self.hub, time.monotonic()
        if hub.draining:
            return refusal(503, "draining", retry_after=5)
        if not self.origin_allowed(websocket):
            return refusal(403, "origin not allowed")
        address = websocket.client.host if websocket.client else "unknown"
        wait = self.address_attempts.take(address, now)
        if wait is not None:
            return refusal(429, "too many connection attempts", retry_after=wait)
        try:
            identity = await self._identify(websocket, tickets=True)
        except Unauthorized as error:
            return refusal(401, str(error))
        except BackendUnavailable:
            return refusal(503, "backend unavailable: the ticket cannot be checked", retry_after=1)
        wait = self.user_attempts.take(identity.user_id, now)
        if wait is not None:
            return refusal(429, "too many connection attempts", retry_after=wait)
        if hub.draining:
            return refusal(503, "draining", retry_after=5)
        capacity = settings.max_connections
        if capacity and hub.registry.connection_count + self.admitting >= capacity:
            return refusal(503, "at connection capacity", retry_after=1)
        return identity

    def context_of(
        self, websocket: HTTPConnection, identity: Identity, transport: str = "websocket"
    ) -> tuple[ConnectionContext, bool]:
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
            transport=transport,
        )
        return context, takeover

    def admitted(
        self,
        context: ConnectionContext,
        socket: Socket,
        accept: Callable[[], Awaitable[None]],
        *,
        takeover: bool,
    ) -> "Admitted":
        """``async with gate.admitted(...) as connection``: accept the upgrade (or start the
        stream), then the hub's :meth:`~wsguard.runtime.hub.Hub.open`, in the connection's log
        context. The slot of ``max_connections`` taken by :meth:`check` is held until the hub
        has decided, then handed to the registered connection; None when the limit refused it."""
        return Admitted(self, context, socket, accept, takeover)

    def welcome(self, context: ConnectionContext, **transport: str) -> str:
        """The first frame of a registered connection: its ids, the heartbeat and the limits, and
        what its ``transport`` adds (an event stream's ``commands`` path)."""
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
            **transport,
        )

    async def turn_away(self, websocket: WebSocket) -> None:
        """Close an accepted upgrade that the hub did not register (the per-user limit: 4029),
        waiting at most ``close_timeout`` for a client that does not answer, and never raising."""
        reason = close.TOO_MANY_CONNECTIONS
        try:
            async with asyncio.timeout(self.settings.close_timeout):
                await websocket.close(reason.code, reason.reason)
        except (TimeoutError, RuntimeError, OSError):
            pass


class Admitted:
    """What :meth:`UpgradeGate.admitted` returns: an ``async with`` on a small object rather than
    on an async generator, since every open connection holds it for as long as it lives (a
    generator, its frame and the context manager around it, which a mass drop also unwinds)."""

    __slots__ = ("_accept", "_context", "_gate", "_log", "_opened", "_socket", "_takeover")

    def __init__(
        self,
        gate: UpgradeGate,
        context: ConnectionContext,
        socket: Socket,
        accept: Callable[[], Awaitable[None]],
        takeover: bool,
    ) -> None:
        self._gate = gate
        self._context = context
        self._socket = socket
        self._accept = accept
        self._takeover = takeover
        self._log = connection_log_context(context)
        self._opened: Opened | None = None

    async def __aenter__(self) -> Connection | None:
        gate = self._gate
        gate.admitting += 1
        self._log.__enter__()
        try:
            await self._accept()
            opened = gate.hub.open(self._context, self._socket, takeover=self._takeover)
            connection = await opened.__aenter__()
        except BaseException:
            self._log.__exit__(None, None, None)
            raise
        finally:
            gate.admitting -= 1
        self._opened = opened
        return connection

    async def __aexit__(self, *exc_info: object) -> None:
        opened, self._opened = self._opened, None
        try:
            if opened is not None:
                await opened.__aexit__(*exc_info)
        finally:
            self._log.__exit__(None, None, None)
