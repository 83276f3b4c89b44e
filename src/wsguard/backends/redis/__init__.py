"""The Redis backend: many instances, one server (needs the ``redis`` extra)."""

from wsguard.backends.redis.backend import RedisBackend

__all__ = ["RedisBackend"]
