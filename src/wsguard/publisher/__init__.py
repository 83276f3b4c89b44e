"""Publish events to wsguard users from worker processes: Celery, RQ, Arq, cron jobs, scripts.

    from wsguard.publisher import Publisher

    with Publisher.from_url("redis://10.0.0.5:6379/0") as publisher:
        offset = publisher.publish("user-1", "chat-1", "tool_executing", {"tool": "search"})

Through Redis directly (``redis://``, ``redis-sentinel://``, ``redis-cluster://``) on the same
path as the server's own publish, or over ``POST /api/publish`` (``http(s)://`` with an API
key) to a server on the memory backend. :class:`Publisher` blocks (redis-py's and httpx's
synchronous clients); :class:`AsyncPublisher` is the same for asyncio. Importing this package
loads no server module.
"""

from typing import TYPE_CHECKING

from wsguard.lazy import lazy_exports

if TYPE_CHECKING:
    from wsguard.core.publication import (
        BrokerUnavailable,
        EventTooLarge,
        InvalidEvent,
        PublishError,
        PublishRefused,
    )
    from wsguard.publisher.plan import PublishItem
    from wsguard.publisher.publishers import AsyncPublisher, Publisher

__all__ = [
    "AsyncPublisher",
    "BrokerUnavailable",
    "EventTooLarge",
    "InvalidEvent",
    "PublishError",
    "PublishItem",
    "PublishRefused",
    "Publisher",
]

_ERRORS = "wsguard.core.publication"
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "AsyncPublisher": "wsguard.publisher.publishers",
        "BrokerUnavailable": _ERRORS,
        "EventTooLarge": _ERRORS,
        "InvalidEvent": _ERRORS,
        "PublishError": _ERRORS,
        "PublishItem": "wsguard.publisher.plan",
        "PublishRefused": _ERRORS,
        "Publisher": "wsguard.publisher.publishers",
    },
    globals(),
)
