"""The Redis backend: many instances, one server (needs the ``redis`` extra).

:class:`RedisBackend` is loaded on first use, so that the pure modules here (key names) import
without the extra: the leak harness reads lease keys by their names.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsguard.backends.redis.backend import RedisBackend

__all__ = ["RedisBackend"]


def __getattr__(name: str) -> Any:
    if name == "RedisBackend":
        from wsguard.backends.redis.backend import RedisBackend

        return RedisBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
