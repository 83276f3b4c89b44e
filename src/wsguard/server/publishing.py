"""``POST /api/publish``: one event, or a batch ``{"events": [...]}`` in one request, each with
an optional idempotency key; the same checks as :mod:`wsguard.publisher` (one module decides
what a valid event is: :mod:`wsguard.core.publication`)."""

from typing import Any

from starlette.responses import JSONResponse, Response

from wsguard.backends.base import BackendUnavailable
from wsguard.core.publication import EventTooLarge, InvalidEvent, batch_from_json, from_json
from wsguard.server.api import Api
from wsguard.server.http_errors import refusal


async def publish_body(api: Api, body: dict[str, Any]) -> Response:
    """Every event is checked before any is published (400, 413); a batch that meets a backend
    failure part-way answers 503, and a retry with the same idempotency keys publishes only the
    rest."""
    try:
        batch = batch_from_json(body)
        events = batch if batch is not None else [from_json(body)]
    except InvalidEvent as error:
        return refusal(400, str(error))
    try:
        published = await api.hub.publish_many(events)
    except EventTooLarge as error:
        return refusal(413, str(error))
    except BackendUnavailable:
        return refusal(503, "backend unavailable", retry_after=1)
    offsets = [each.offset for each in published]
    return JSONResponse({"offsets": offsets} if batch is not None else {"offset": offsets[0]})
