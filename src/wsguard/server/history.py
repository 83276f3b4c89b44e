"""``GET /api/threads/{thread_id}/events``: a thread's retained events after an offset, so that a
page draws a thread on load and then subscribes from where it stopped, without a gap.

Isolated as subscriptions are: the thread is the caller's own (another user's thread id names
the caller's own, separate thread); an admin credential reads any user's with ``user_id=``.
"""

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from wsguard import ids
from wsguard.backends.base import BackendUnavailable
from wsguard.core.frames import encode_history
from wsguard.server.api import Api
from wsguard.server.api_keys import API_KEY_IDENTITY
from wsguard.server.auth import Identity
from wsguard.server.http_errors import refusal

DEFAULT_LIMIT = 100
MAX_LIMIT = 10**3


def _number(request: Request, name: str, default: int, low: int, high: int) -> int | None:
    """The query parameter as an integer in [low, high]; None when it is not one."""
    text = request.query_params.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if low <= value <= high else None


def thread_events(api: Api) -> Callable[[Request, Identity], Awaitable[Response]]:
    async def handler(request: Request, identity: Identity) -> Response:
        if request.method not in ("GET", "HEAD"):
            return refusal(405, "use GET")
        thread_id = request.path_params["thread_id"]
        if not ids.is_thread_id(thread_id):
            return refusal(400, "thread_id must match [A-Za-z0-9._:-]{1,128}")
        since = _number(request, "since", 0, 0, 2**63 - 1)
        limit = _number(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        if since is None or limit is None:
            return refusal(400, f"since must be an integer of 0 or more, limit one of 1 to {MAX_LIMIT}")
        user_id = request.query_params.get("user_id") or identity.user_id
        if identity is API_KEY_IDENTITY and not request.query_params.get("user_id"):
            return refusal(400, "an API key has no thread of its own: give user_id")
        if user_id != identity.user_id and not identity.admin:
            return refusal(403, "user_id of another user needs an admin credential")
        try:
            history = await api.hub.history(user_id, thread_id, since, limit)
        except BackendUnavailable:
            return refusal(503, "backend unavailable", retry_after=1)
        body = encode_history(
            thread_id, history.epoch, history.last_offset, (e.frame for e in history.events), history.complete
        )
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})

    return handler
