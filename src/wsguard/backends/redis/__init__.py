"""The Redis backend: many instances, one server (needs the ``redis`` extra).

:class:`RedisBackend` is loaded on first use, so that the pure modules here (key names) import
without the extra: the leak harness reads lease keys by their names.
"""

from typing import TYPE_CHECKING

from wsguard.lazy import lazy_exports

if TYPE_CHECKING:
    from wsguard.backends.redis.backend import RedisBackend

__all__ = ["RedisBackend"]

__getattr__, __dir__ = lazy_exports(__name__, {"RedisBackend": "wsguard.backends.redis.backend"}, globals())
