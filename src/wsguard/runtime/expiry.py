"""Token expiry: a timer per connection whose token expires, which closes it with 4401."""

import asyncio
import time
from dataclasses import replace

from wsguard import close
from wsguard.runtime.connection import Connection


def schedule(connection: Connection, leeway: float) -> None:
    """Close ``connection`` once its context's expiry plus ``leeway`` has passed (never, when
    it has no expiry)."""
    expires_at = connection.context.expires_at
    if expires_at is None:
        return
    delay = max(0.0, expires_at + leeway - time.time())
    connection.expiry_timer = asyncio.get_running_loop().call_later(delay, _expire, connection)


def cancel(connection: Connection) -> None:
    if connection.expiry_timer is not None:
        connection.expiry_timer.cancel()
        connection.expiry_timer = None


def extend(connection: Connection, expires_at: float | None, leeway: float) -> None:
    """A ``refresh`` moved the session's expiry."""
    cancel(connection)
    connection.context = replace(connection.context, expires_at=expires_at)
    schedule(connection, leeway)


def _expire(connection: Connection) -> None:
    """The token expired: a module function, so that the timer holds no bound method."""
    connection.request_close(close.TOKEN_EXPIRED)
