"""Optional dependencies, imported only when a feature that needs them is asked for.

``pip install wsguard`` has no Redis client: the memory backend, the leak harness and its pytest
plugin work without it. Asking for a Redis backend or ``--cluster`` then fails with one line
that names the extra to install, not a traceback.
"""

from wsguard.errors import WSGuardError

REDIS_EXTRA = "pip install 'wsguard[redis]'"


class MissingExtra(WSGuardError, ImportError):
    """An optional dependency is not installed; the message is one line naming the extra."""


def require_redis(feature: str = "a Redis backend") -> None:
    """Raise :class:`MissingExtra` unless the ``redis`` package can be imported."""
    try:
        import redis  # noqa: F401
    except ImportError as error:
        raise MissingExtra(f"{feature} needs the redis package: {REDIS_EXTRA}") from error
