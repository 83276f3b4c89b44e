"""What a published event is, checked the same way by the hub, ``POST /api/publish`` and
:mod:`wsguard.publisher`, and the errors a publisher can meet.

Standard library only: a worker process that publishes imports this without the server.
"""

from dataclasses import dataclass, field
from typing import Any

from wsguard.core.frames import JSON, compact_json, utf8_size
from wsguard.errors import WSGuardError
from wsguard.ids import is_thread_id

MAX_IDEMPOTENCY_KEY = 256
"""Longest idempotency key, in characters (it is hashed before it is stored)."""
IDEMPOTENCY_SECONDS = 300.0
"""How long an idempotency key is remembered: a retry within it returns the first offset."""
MAX_BATCH = 10**3
"""Most events in one ``publish_many`` request over HTTP."""


class PublishError(WSGuardError):
    """An event was not published (or cannot be known to have been): never a silent drop."""


class EventTooLarge(PublishError, ValueError):
    """The event's name plus its ``data`` as compact JSON is over ``max_message_bytes``."""


class InvalidEvent(PublishError, ValueError):
    """The event is malformed: no user, a bad thread id, ``data`` not a JSON object."""


class BrokerUnavailable(PublishError):
    """The broker (Redis, or the server) could not take the event within the timeout. The event
    may or may not have been published: retry with the same idempotency key."""


class PublishRefused(PublishError):
    """The server refused the credentials (401, 403) or the request for another reason."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Publication:
    """One event to publish: whose, which thread (None: every connection of the user), what."""

    user_id: str
    thread_id: str | None
    event: str
    data: JSON = field(default_factory=dict)
    run_id: str | None = None
    request_id: str | None = None
    idempotency_key: str | None = None

    def as_json(self) -> JSON:
        """The body of ``POST /api/publish`` for this event (optional fields left out when None)."""
        body: JSON = {
            "user_id": self.user_id,
            "thread_id": self.thread_id,
            "event": self.event,
            "data": self.data,
        }
        for name in ("run_id", "request_id", "idempotency_key"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        return body


def event_size(event: str, data: JSON) -> int:
    """The bytes ``max_message_bytes`` counts: the name plus ``data`` as compact JSON, in UTF-8."""
    return utf8_size(event) + utf8_size(compact_json(data))


def check_size(event: str, data: JSON, limit: int) -> None:
    size = event_size(event, data)
    if size > limit:
        raise EventTooLarge(f"event is {size} bytes, over {limit}")


def publication(
    user_id: object,
    thread_id: object,
    event: object,
    data: object = None,
    *,
    run_id: object = None,
    request_id: object = None,
    idempotency_key: object = None,
) -> Publication:
    """A checked :class:`Publication`; :class:`InvalidEvent` naming the first bad field."""
    if not isinstance(user_id, str) or not user_id:
        raise InvalidEvent("user_id must be a non-empty string")
    if thread_id is not None and not is_thread_id(thread_id):
        raise InvalidEvent("thread_id must be null or match [A-Za-z0-9._:-]{1,128}")
    if not isinstance(event, str) or not event:
        raise InvalidEvent("event must be a non-empty string")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise InvalidEvent("data must be an object")
    for name, value in (("run_id", run_id), ("request_id", request_id)):
        if value is not None and not isinstance(value, str):
            raise InvalidEvent(f"{name} must be null or a string")
    if idempotency_key is not None and (
        not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY
    ):
        raise InvalidEvent(
            f"idempotency_key must be null or a string of 1 to {MAX_IDEMPOTENCY_KEY} characters"
        )
    assert thread_id is None or isinstance(thread_id, str)
    assert run_id is None or isinstance(run_id, str)
    assert request_id is None or isinstance(request_id, str)
    return Publication(user_id, thread_id, event, data, run_id, request_id, idempotency_key)


def from_json(body: dict[str, Any]) -> Publication:
    """One event of a ``POST /api/publish`` body."""
    return publication(
        body.get("user_id"),
        body.get("thread_id"),
        body.get("event"),
        body.get("data"),
        run_id=body.get("run_id"),
        request_id=body.get("request_id"),
        idempotency_key=body.get("idempotency_key"),
    )


def batch_from_json(body: dict[str, Any]) -> list[Publication] | None:
    """The events of a batch body ``{"events": [...]}``; None when the body is one event."""
    if "events" not in body:
        return None
    events = body["events"]
    if not isinstance(events, list) or not 0 < len(events) <= MAX_BATCH:
        raise InvalidEvent(f"events must be a list of 1 to {MAX_BATCH} events")
    found = []
    for index, item in enumerate(events):
        if not isinstance(item, dict):
            raise InvalidEvent(f"events[{index}] must be an object")
        try:
            found.append(from_json(item))
        except InvalidEvent as error:
            raise InvalidEvent(f"events[{index}]: {error}") from None
    return found
