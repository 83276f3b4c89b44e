"""CORS for what a browser on another origin may use: the client's files and event streams.

One rule for all of them, the upgrade's (``UpgradeGate.origin_allowed``): a request without an
``Origin`` is not a browser's and needs no header; an origin the rule refuses gets none, and a
preflight from it 403.
"""

from collections.abc import Callable

from starlette.requests import HTTPConnection
from starlette.responses import Response

from wsguard.server.http_errors import refusal

OriginAllowed = Callable[[HTTPConnection], bool]
"""Whether a request's ``Origin`` may use the server: ``WSGuard.origin_allowed``."""


def cors_headers(connection: HTTPConnection, allowed: OriginAllowed) -> dict[str, str] | None:
    """The CORS headers of an answer; ``None`` for an origin that is not allowed."""
    origin = connection.headers.get("origin")
    if origin is None:
        return {}
    if not allowed(connection):
        return None
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def preflight(cors: dict[str, str] | None, methods: str) -> Response:
    """204 with the ``methods`` allowed (and, for another origin, the CORS headers), or 403."""
    if cors is None:
        return refusal(403, "origin not allowed")
    headers = {"Allow": f"{methods}, OPTIONS", **cors}
    if cors:
        headers |= {
            "Access-Control-Allow-Methods": methods,
            "Access-Control-Allow-Headers": "content-type",
            "Access-Control-Max-Age": "600",
        }
    return Response(status_code=204, headers=headers)
