"""What a publisher sends and how it reads the answer, without I/O: shared by
:class:`~wsguard.publisher.Publisher` and :class:`~wsguard.publisher.AsyncPublisher`, over Redis
and over HTTP, so that the blocking and the asyncio publisher cannot disagree."""

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from wsguard.backends.redis.publishing import Outgoing, frame_template, parse_outcomes
from wsguard.core.frames import JSON
from wsguard.core.publication import (
    IDEMPOTENCY_SECONDS,
    MAX_BATCH,
    BrokerUnavailable,
    EventTooLarge,
    InvalidEvent,
    Publication,
    PublishError,
    PublishRefused,
    check_size,
    publication,
)

PublishItem = Publication
"""One event of :meth:`Publisher.publish_many`: ``PublishItem(user_id, thread_id, event, data,
run_id=..., request_id=..., idempotency_key=...)``."""

PUBLISH_PATH = "/api/publish"


@dataclass(frozen=True, slots=True)
class PublisherOptions:
    """What a publisher must agree on with the servers it publishes for (their flags)."""

    max_message_bytes: int = 65536
    """The servers' ``--max-message-bytes``: a larger event raises :class:`EventTooLarge`."""
    timeout: float = 5.0
    """Seconds to take an event before :class:`BrokerUnavailable`."""
    idempotency_window: float = IDEMPOTENCY_SECONDS
    """Redis: seconds an idempotency key is remembered (a server on memory keeps its own five minutes)."""
    retention_events: int = 1000
    """Redis: the servers' ``--retention-events``."""
    retention_seconds: float = 300.0
    """Redis: the servers' ``--retention-seconds``."""
    prefix: str = "wsguard"
    """Redis: the key prefix the servers use."""

    def __post_init__(self) -> None:
        for name in (
            "max_message_bytes",
            "timeout",
            "idempotency_window",
            "retention_events",
            "retention_seconds",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be more than 0")


def prepare(items: Iterable[Publication], max_message_bytes: int) -> list[Publication]:
    """Check every event before any is sent: :class:`InvalidEvent`, :class:`EventTooLarge`."""
    checked = []
    for item in items:
        if not isinstance(item, Publication):
            raise InvalidEvent(f"not a PublishItem: {item!r}")
        event = publication(
            item.user_id,
            item.thread_id,
            item.event,
            item.data,
            run_id=item.run_id,
            request_id=item.request_id,
            idempotency_key=item.idempotency_key,
        )
        check_size(event.event, event.data, max_message_bytes)
        checked.append(event)
    return checked


def chunks(items: Sequence[Publication], size: int = MAX_BATCH) -> Iterator[Sequence[Publication]]:
    """At most ``size`` events a request: one script call or one HTTP body stays bounded."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# Redis


def outgoing(items: Sequence[Publication], ts: float) -> list[Outgoing]:
    """Each event encoded once, with holes for the offset and epoch the script fills in."""
    return [
        Outgoing(
            item.user_id,
            item.thread_id,
            frame_template(
                user_id=item.user_id,
                event=item.event,
                thread_id=item.thread_id,
                run_id=item.run_id,
                request_id=item.request_id,
                data=item.data,
                ts=ts,
            ),
            item.idempotency_key,
        )
        for item in items
    ]


def redis_offsets(count: int, replies: Iterable[tuple[Sequence[int], Sequence[object]]]) -> list[int | None]:
    """Each event's offset, in the order given, from the replies of the calls that carried them."""
    offsets: list[int | None] = [None] * count
    seen = 0
    for indices, reply in replies:
        outcomes = parse_outcomes(reply)
        if len(outcomes) != len(indices):
            raise PublishError(f"redis answered {len(outcomes)} outcomes for {len(indices)} events")
        for index, outcome in zip(indices, outcomes, strict=True):
            offsets[index] = outcome.offset
        seen += len(indices)
    if seen != count:
        raise PublishError(f"redis answered for {seen} of {count} events")
    return offsets


# HTTP


def http_body(items: Sequence[Publication]) -> JSON:
    """One event as ``POST /api/publish`` has always taken it; several as ``{"events": [...]}``."""
    if len(items) == 1:
        return items[0].as_json()
    return {"events": [item.as_json() for item in items]}


def http_offsets(count: int, status: int, text: str) -> list[int | None]:
    """The offsets of a ``POST /api/publish`` answer, or the error it stands for."""
    try:
        body = json.loads(text) if text else {}
    except ValueError:
        body = {}
    message = body.get("error") if isinstance(body, dict) else None
    reason = f"HTTP {status}" + (f": {message}" if isinstance(message, str) else "")
    if status == 200 and isinstance(body, dict):
        offsets = body.get("offsets", [body.get("offset")]) if count > 1 else [body.get("offset")]
        if (
            isinstance(offsets, list)
            and len(offsets) == count
            and all(o is None or (isinstance(o, int) and not isinstance(o, bool)) for o in offsets)
        ):
            return offsets
        raise PublishError(f"unexpected answer to a publish: {text[:200]!r}")
    if status == 400:
        raise InvalidEvent(reason)
    if status == 413:
        raise EventTooLarge(reason)
    if status in (429, 502, 503, 504):
        raise BrokerUnavailable(reason)
    if status in (401, 403, 404):
        raise PublishRefused(reason, status)
    raise PublishError(reason)
