"""The operator's endpoints: presence, instances, a user's connections, the live feed, the page.

Every data endpoint needs an admin token (``Authorization: Bearer``); the page itself is static
and holds nothing until it has one. ``GET /api/presence`` is the exception: any user may ask
about themselves.
"""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wsguard.backends.base import BackendUnavailable
from wsguard.backends.presence import Presence
from wsguard.server.api import Api
from wsguard.server.auth import Identity
from wsguard.server.http import BadRequest, Endpoint, Handler, guarded
from wsguard.server.http_errors import refusal
from wsguard.server.leakcheck_report import report_html, report_summary

STATIC = Path(__file__).parent / "static" / "admin"
TOP_USERS = 10
CLUSTER_USERS_EVERY = 5.0
"""Seconds between scans of the cluster's leases for the feed's user counts (one per instance)."""

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class _PageHeaders:
    """Adds the page's security headers to every response of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend((k.lower().encode(), v.encode()) for k, v in PAGE_HEADERS.items())
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class OnlineUsers:
    """Users online, most connections first: the registry, or the cluster's leases at most every
    few seconds (a scan of every user's leases is not a per-second job)."""

    def __init__(self, api: Api) -> None:
        self._api = api
        self._cached: list[Presence] = []
        self._at = float("-inf")

    async def get(self) -> list[Presence]:
        hub = self._api.hub
        if hub.backend.directory is None:
            return await hub.online_users()
        if time.monotonic() - self._at >= CLUSTER_USERS_EVERY:
            self._cached, self._at = await hub.online_users(), time.monotonic()
        return self._cached


def _connection_json(api: Api, connection_id: str) -> dict[str, Any] | None:
    connection = api.hub.connection(connection_id)
    if connection is None:
        return None
    context = connection.context
    return {
        "connection_id": context.connection_id,
        "session_id": context.session_id,
        "instance_id": api.hub.instance_id,
        "here": True,
        "opened_at": context.opened_at,
        "client_address": context.client_address,
        "user_agent": context.user_agent,
        "transport": context.transport,
        "subscriptions": sorted(connection.subscriptions),
        "unsent_bytes": connection.unsent_bytes,
    }


async def user_view(api: Api, user_id: str) -> dict[str, Any]:
    """The user's presence and each connection: in full when here, from its lease when elsewhere."""
    hub = api.hub
    presence = await hub.presence(user_id)
    connections = [
        found for c in hub.connections_of(user_id) if (found := _connection_json(api, c.connection_id))
    ]
    here = {c["connection_id"] for c in connections}
    directory = hub.backend.directory
    if directory is not None and any(i != hub.instance_id for i in presence.instances):
        for lease in await directory.leases_of(user_id):
            if lease.connection_id not in here and lease.instance_id != hub.instance_id:
                connections.append(
                    {
                        "connection_id": lease.connection_id,
                        "session_id": lease.session_id,
                        "instance_id": lease.instance_id,
                        "here": False,
                        "opened_at": lease.opened_at,
                    }
                )
    connections.sort(key=lambda c: (c["opened_at"], c["connection_id"]))
    return {**presence.as_json(), "connection_list": connections}


async def overview(api: Api, online: OnlineUsers) -> dict[str, Any]:
    """One frame of the feed: this instance's latest sample, the instances, the top users."""
    users = await online.get()
    instances = await api.reporter.instances()
    return {
        "instance_id": api.hub.instance_id,
        "sample": api.sampler.latest().as_json(),
        "instances": [info.as_json() for info in instances],
        "cluster": {
            "connections": sum(info.connections for info in instances),
            "users": len(users),
        },
        "top_users": [p.as_json() for p in users[:TOP_USERS]],
        "lease_ttl": api.settings.lease_ttl,
    }


def admin_routes(api: Api) -> list[BaseRoute]:
    """The dashboard page, its static files, and the endpoints it reads."""
    online = OnlineUsers(api)

    async def own_presence(request: Request, identity: Identity) -> Response:
        return JSONResponse((await api.hub.presence(identity.user_id)).as_json())

    async def presence(request: Request, identity: Identity) -> Response:
        user_id = request.query_params.get("user_id")
        if user_id is not None:
            if not user_id:
                raise BadRequest("user_id must not be empty")
            return JSONResponse((await api.hub.presence(user_id)).as_json())
        users = await api.hub.online_users()
        return JSONResponse({"users": [p.as_json() for p in users], "count": len(users)})

    async def instances(request: Request, identity: Identity) -> Response:
        return JSONResponse([info.as_json() for info in await api.reporter.instances()])

    async def user(request: Request, identity: Identity) -> Response:
        return JSONResponse(await user_view(api, request.path_params["user_id"]))

    async def close_connection(request: Request, identity: Identity) -> Response:
        """Close one connection with 4003: here, or on ``instance_id`` through Redis."""
        connection_id = request.path_params["connection_id"]
        if api.hub.disconnect(connection_id):
            return JSONResponse({"closed": 1})
        instance_id = request.query_params.get("instance_id")
        directory = api.hub.backend.directory
        if directory is None or not instance_id or instance_id == api.hub.instance_id:
            return refusal(404, "no such connection on this instance")
        try:
            sent = await directory.disconnect(instance_id, connection_id)
        except BackendUnavailable:
            return refusal(503, "backend unavailable", retry_after=1)
        if not sent:
            return refusal(404, "no such instance listening")
        return JSONResponse({"closed": 1})

    async def close_user(request: Request, identity: Identity) -> Response:
        """Close every connection of the user with 4003, on every instance."""
        try:
            closed = await api.hub.disconnect_user_everywhere(request.path_params["user_id"])
        except BackendUnavailable:
            return refusal(503, "backend unavailable", retry_after=1)
        return JSONResponse({"closed": closed})

    async def snapshot(request: Request, identity: Identity) -> Response:
        return JSONResponse(await overview(api, online))

    async def feed(request: Request, identity: Identity) -> Response:
        """Server-sent events: the history first, then one overview a second."""

        async def frames() -> AsyncIterator[str]:
            history = [sample.as_json() for sample in api.sampler.history()]
            yield f"event: history\ndata: {json.dumps(history)}\n\n"
            while not api.hub.draining:  # a drain ends the stream, so shutdown need not wait for it
                yield f"data: {json.dumps(await overview(api, online))}\n\n"
                await asyncio.sleep(api.sampler.interval)

        return StreamingResponse(
            frames(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def leakcheck(request: Request, identity: Identity) -> Response:
        """The last report's verdicts, or null without one (not an error: most servers have none)."""
        return JSONResponse(report_summary(api.settings.leakcheck_report_dir))

    async def leakcheck_html(request: Request, identity: Identity) -> Response:
        path = report_html(api.settings.leakcheck_report_dir)
        if path is None:
            return refusal(404, "no leakcheck report (see --leakcheck-report-dir)")
        return FileResponse(path, media_type="text/html", filename="leakcheck.html")

    async def about(request: Request) -> Response:
        return JSONResponse({"dev": api.settings.dev})

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    def admin(handler: Handler) -> Endpoint:
        return guarded(api, handler, admin=True)

    return [
        Route("/api/presence", guarded(api, own_presence), methods=["GET"]),
        Route("/api/admin/presence", admin(presence), methods=["GET"]),
        Route("/api/admin/instances", admin(instances), methods=["GET"]),
        Route("/api/admin/users/{user_id}", admin(user), methods=["GET"]),
        Route("/api/admin/users/{user_id}", admin(close_user), methods=["DELETE"]),
        Route("/api/admin/connections/{connection_id}", admin(close_connection), methods=["DELETE"]),
        Route("/api/admin/overview", admin(snapshot), methods=["GET"]),
        Route("/api/admin/feed", admin(feed), methods=["GET"]),
        Route("/api/admin/leakcheck", admin(leakcheck), methods=["GET"]),
        Route("/api/admin/leakcheck.html", admin(leakcheck_html), methods=["GET"]),
        Route("/api/admin/about", about, methods=["GET"]),
        Route("/admin", page, methods=["GET"]),
        Mount("/admin/static", app=_PageHeaders(StaticFiles(directory=STATIC)), name="admin-static"),
    ]
