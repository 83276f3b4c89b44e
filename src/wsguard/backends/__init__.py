"""Backends: where events are numbered, retained and fanned out. ``memory`` is the embedded default.

The names are imported on first use, so that a worker importing only the Redis publishing
modules (:mod:`wsguard.publisher`) loads neither the memory backend nor the server's settings.
"""

from typing import TYPE_CHECKING

from wsguard.lazy import lazy_exports

if TYPE_CHECKING:
    from wsguard.backends.base import (
        Backend,
        BackendUnavailable,
        ClusterClose,
        ClusterDecision,
        ClusterMember,
        Envelope,
        Published,
    )
    from wsguard.backends.memory import MemoryBackend
    from wsguard.settings import Settings

__all__ = [
    "Backend",
    "BackendUnavailable",
    "ClusterClose",
    "ClusterDecision",
    "ClusterMember",
    "Envelope",
    "MemoryBackend",
    "Published",
    "backend_from_settings",
]

_BASE = "wsguard.backends.base"
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Backend": _BASE,
        "BackendUnavailable": _BASE,
        "ClusterClose": _BASE,
        "ClusterDecision": _BASE,
        "ClusterMember": _BASE,
        "Envelope": _BASE,
        "Published": _BASE,
        "MemoryBackend": "wsguard.backends.memory",
    },
    globals(),
)


def backend_from_settings(settings: "Settings") -> "Backend":
    """``memory``, or a Redis backend for a ``redis://`` URL (needs the ``redis`` extra)."""
    if settings.backend == "memory":
        from wsguard.backends.memory import MemoryBackend

        return MemoryBackend(
            settings.retention_events, settings.retention_seconds, settings.max_remembered_threads
        )
    from wsguard.extras import require_redis

    require_redis()
    from wsguard.backends.redis import RedisBackend

    return RedisBackend.from_settings(settings)
