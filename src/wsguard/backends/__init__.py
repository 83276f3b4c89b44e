"""Backends: where events are numbered, retained and fanned out. ``memory`` is the embedded default."""

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
from wsguard.extras import require_redis
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


def backend_from_settings(settings: Settings) -> Backend:
    """``memory``, or a Redis backend for a ``redis://`` URL (needs the ``redis`` extra)."""
    if settings.backend == "memory":
        return MemoryBackend(
            settings.retention_events, settings.retention_seconds, settings.max_remembered_threads
        )
    require_redis()
    from wsguard.backends.redis import RedisBackend

    return RedisBackend.from_settings(settings)
