"""The HTTP endpoints of docs/protocol.md section 4."""

import gc
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, request_response
from starlette.types import ASGIApp

from wsguard import ids
from wsguard.backends import BackendUnavailable
from wsguard.errors import WSGuardError
from wsguard.logs import log_context
from wsguard.runtime.demo import new_run, start_demo_run
from wsguard.server.api import Api
from wsguard.server.auth import Identity, Unauthorized
from wsguard.server.history import thread_events
from wsguard.server.http_errors import refusal
from wsguard.server.publishing import publish_body
from wsguard.transport.edge import EDGE_EXTENSION_KEY, Edge

Endpoint = Callable[[Request], Awaitable[Response]]


class BadRequest(WSGuardError):
    """The request's input is wrong; answered 400 with the message."""


def _edge(request: Request) -> Edge | None:
    """The transport's HTTP edge, when wsguard's own transport serves the request."""
    edge = request.scope.get("extensions", {}).get(EDGE_EXTENSION_KEY)
    return edge if isinstance(edge, Edge) else None


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as error:
        raise BadRequest("body is not valid JSON") from error
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def _cross_origin(api: Api, endpoint: Endpoint, method: str = "POST") -> ASGIApp:
    """CORS for the ticket and history endpoints, so that a browser app on an allowed origin can
    get a ticket and draw a thread."""
    return CORSMiddleware(
        request_response(endpoint),
        allow_origins=["*"] if api.settings.dev else list(api.settings.allowed_origins),
        allow_methods=[method],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )


Handler = Callable[[Request, Identity], Awaitable[Response]]


def guarded(api: Api, handler: Handler, *, admin: bool = False, api_key: bool = False) -> Endpoint:
    """``handler`` behind the server's authentication: 401 without a valid token, 403 without
    admin rights when ``admin``, 400 for a :class:`BadRequest`. An ``admin`` endpoint (or one
    with ``api_key``) also takes an API key (:mod:`wsguard.server.api_keys`)."""

    async def endpoint(request: Request) -> Response:
        try:
            identity = api.api_keys.identify(request) if admin or api_key else None
            if identity is None:
                identity = await api.identify(request)
        except Unauthorized as error:
            return refusal(401, str(error))
        if admin and not identity.admin:
            return refusal(403, "admin token required")
        try:
            return await handler(request, identity)
        except BadRequest as error:
            return refusal(400, str(error))

    return endpoint


def http_routes(api: Api) -> list[BaseRoute]:
    """Bind each endpoint to ``api``; ``POST /api/publish``, the request a busy server answers
    most, first."""

    def authenticated(handler: Handler, *, admin: bool = False) -> Endpoint:
        return guarded(api, handler, admin=admin)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        if api.hub.draining:
            return PlainTextResponse("draining", status_code=503)
        edge = _edge(request)
        if edge is not None and edge.descriptors_low():
            return PlainTextResponse("file descriptors low", status_code=503)
        return PlainTextResponse("ready")

    async def metrics(request: Request) -> Response:
        """Prometheus text; ``?collect_garbage=1`` collects garbage first (for exact block counts).

        A full collection pauses the loop, so it is refused (403) unless ``--dev`` or
        ``--metrics-allow-gc`` allows it: anyone who can reach the port could ask for it.
        """
        if request.query_params.get("collect_garbage") == "1":
            if not (api.settings.dev or api.settings.metrics_allow_gc):
                return refusal(403, "collect_garbage needs --dev or --metrics-allow-gc")
            gc.collect()
        edge = _edge(request)
        text = api.hub.metrics.render() + (edge.render() if edge is not None else b"")
        return Response(text, media_type="text/plain; version=0.0.4")

    async def tickets(request: Request, identity: Identity) -> Response:
        if request.method != "POST":
            return refusal(405, "use POST")
        wait = api.ticket_requests.take(identity.user_id, time.monotonic())
        if wait is not None:
            return refusal(429, "too many ticket requests", retry_after=wait)
        try:
            ticket = await api.tickets.issue(identity)
        except BackendUnavailable:
            return refusal(503, "backend unavailable: no ticket can be kept", retry_after=1)
        if ticket is None:
            return refusal(429, "too many unused tickets", retry_after=api.settings.ticket_ttl)
        return JSONResponse({"ticket": ticket})

    async def new_thread(request: Request, identity: Identity) -> Response:
        return JSONResponse({"thread_id": ids.new_id(ids.THREAD)})

    async def start_run(request: Request, identity: Identity) -> Response:
        thread_id = request.path_params["thread_id"]
        if not ids.is_thread_id(thread_id):
            raise BadRequest("thread_id must match [A-Za-z0-9._:-]{1,128}")
        text = (await _json_body(request)).get("text", "")
        if not isinstance(text, str):
            raise BadRequest("text must be a string")
        if not api.demo_runs:
            return refusal(404, "runs are not enabled here")
        wait = api.run_starts.take(identity.user_id, time.monotonic())
        if wait is not None:
            return refusal(429, "too many runs started", retry_after=wait)
        run = new_run(identity.user_id, thread_id)
        with log_context(user_id=identity.user_id, request_id=run.request_id):
            started = start_demo_run(api.hub, run, text)
        if not started:
            return refusal(429, "too many runs at once", retry_after=1)
        return JSONResponse({"thread_id": run.thread_id, "run_id": run.run_id, "request_id": run.request_id})

    async def publish(request: Request, identity: Identity) -> Response:
        return await publish_body(api, await _json_body(request))

    async def list_connections(request: Request, identity: Identity) -> Response:
        user_id = request.path_params["user_id"]
        return JSONResponse(
            [
                {
                    "connection_id": c.connection_id,
                    "session_id": c.context.session_id,
                    "opened_at": c.context.opened_at,
                    "subscriptions": sorted(c.subscriptions),
                    "queue_bytes": c.unsent_bytes,
                }
                for c in api.hub.connections_of(user_id)
            ]
        )

    async def disconnect(request: Request, identity: Identity) -> Response:
        """Every connection of the user, on every instance (as ``DELETE /api/admin/users/{id}``)."""
        try:
            closed = await api.hub.disconnect_user_everywhere(request.path_params["user_id"])
        except BackendUnavailable:
            return refusal(503, "backend unavailable", retry_after=1)
        return JSONResponse({"closed": closed})

    async def dev_token(request: Request) -> Response:
        if not api.settings.dev:
            return refusal(404, "not found")
        try:
            body = await _json_body(request)
        except BadRequest as error:
            return refusal(400, str(error))
        user_id, admin, ttl = body.get("user_id"), body.get("admin", False), body.get("ttl", 3600)
        if not isinstance(user_id, str) or not user_id:
            return refusal(400, "user_id must be a non-empty string")
        if not isinstance(admin, bool) or not isinstance(ttl, int | float) or isinstance(ttl, bool):
            return refusal(400, "admin must be a boolean and ttl a number")
        return JSONResponse({"token": api.tokens.issue(user_id, admin=admin, ttl=float(ttl))})

    admin_path = "/api/admin/users/{user_id}/connections"
    return [
        Route("/api/publish", authenticated(publish, admin=True), methods=["POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/api/tickets", _cross_origin(api, authenticated(tickets))),
        Route("/api/threads", authenticated(new_thread), methods=["POST"]),
        Route("/api/threads/{thread_id}/runs", authenticated(start_run), methods=["POST"]),
        Route(
            "/api/threads/{thread_id}/events",
            _cross_origin(api, guarded(api, thread_events(api), api_key=True), "GET"),
        ),
        Route(admin_path, authenticated(list_connections, admin=True), methods=["GET"]),
        Route(admin_path, authenticated(disconnect, admin=True), methods=["DELETE"]),
        Route("/api/dev/tokens", dev_token, methods=["POST"]),
    ]
