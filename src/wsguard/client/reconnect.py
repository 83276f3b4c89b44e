"""When to reconnect and how long to wait: PROTOCOL.md section 6 as a plain, synchronous decision.

Nothing here touches a socket or a clock; the asyncio layer feeds it what happened and sleeps for
the delay it returns. That keeps every rule of the close-code table testable in microseconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

NORMAL = 1000
GOING_AWAY = 1001
ABNORMAL = 1006
INTERNAL_ERROR = 1011
SUPERSEDED = 4001
REPLACED = 4002
DISCONNECTED_BY_SERVER = 4003
SLOW_CONSUMER = 4008
TOO_MANY_CONNECTIONS = 4029
TOKEN_EXPIRED = 4401

# Close codes after which the protocol says to come back with backoff. 1005 (a close frame
# without a code) and 1012 to 1014 (restart, try again later, bad gateway) are transient too.
_BACKOFF_CODES = frozenset({1005, ABNORMAL, INTERNAL_ERROR, 1012, 1013, 1014, SLOW_CONSUMER})

# Close codes after which reconnecting would only repeat the failure or fight the server.
_STOP_CODES: dict[int, str] = {
    NORMAL: "the server closed the connection normally",
    1002: "protocol error (a client bug)",
    1003: "the server refused a binary frame",
    1007: "invalid UTF-8 (a client bug)",
    1008: "policy violation: too many commands",
    1009: "a frame was larger than the server allows",
    SUPERSEDED: "superseded: the per-user connection limit evicted this connection",
    REPLACED: "replaced: another connection resumed this session",
    DISCONNECTED_BY_SERVER: "disconnected by the server's administrator",
    TOO_MANY_CONNECTIONS: "too many connections: the per-user limit refused this one",
}

# HTTP refusals of the upgrade worth retrying: rate limit, draining, overloaded proxies.
_RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class Decision:
    """Reconnect after ``delay`` seconds, or stop; ``why`` says which rule decided."""

    reconnect: bool
    delay: float
    why: str


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta-seconds or HTTP-date); ``None`` if absent."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class ReconnectPolicy:
    """Decides, after each failed or closed connection, whether to try again and after how long.

    Backoff is exponential with equal jitter: attempt ``n`` waits between half and all of
    ``min(max_delay, base_delay * factor**n)``. A connection that proved healthy (the client
    calls :meth:`connected` once every resubscription is answered) resets the attempt count.
    ``max_attempts`` bounds consecutive failures (``None``: no bound).
    """

    def __init__(
        self,
        *,
        base_delay: float = 0.1,
        factor: float = 2.0,
        max_delay: float = 10.0,
        going_away_delay: float = 5.0,
        max_attempts: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if base_delay < 0 or factor < 1 or max_delay < base_delay:
            raise ValueError("need 0 <= base_delay <= max_delay and factor >= 1")
        self.base_delay = base_delay
        self.factor = factor
        self.max_delay = max_delay
        self.going_away_delay = going_away_delay
        self.max_attempts = max_attempts
        self.attempts = 0
        self._rng = rng or random.Random()

    def connected(self) -> None:
        """A connection recovered: the next failure starts the backoff from the bottom."""
        self.attempts = 0

    def _ceiling(self) -> float:
        return float(min(self.max_delay, self.base_delay * self.factor**self.attempts))

    def _backoff(self, why: str) -> Decision:
        if self.max_attempts is not None and self.attempts >= self.max_attempts:
            return Decision(False, 0.0, f"gave up after {self.attempts} attempts ({why})")
        ceiling = self._ceiling()
        self.attempts += 1
        return Decision(True, ceiling / 2 + self._rng.uniform(0, ceiling / 2), why)

    def after_close(self, code: int, *, fresh_credentials: bool = False) -> Decision:
        """After a connection closed with ``code`` (1006 when the network dropped it).

        ``fresh_credentials`` says whether the next attempt would carry a new token or ticket;
        only then is reconnecting after 4401 ``token_expired`` worth it.
        """
        if code in _STOP_CODES:
            return Decision(False, 0.0, f"{code}: {_STOP_CODES[code]}")
        if code == GOING_AWAY:
            delay = self._rng.uniform(0, self.going_away_delay)
            return Decision(True, delay, "1001: the server is shutting down")
        if code == TOKEN_EXPIRED:
            if fresh_credentials:
                return self._backoff("4401: token expired, reconnecting with fresh credentials")
            return Decision(False, 0.0, "4401: token expired and no way to get a fresh one")
        if code in _BACKOFF_CODES:
            return self._backoff(f"{code}: transient")
        return Decision(False, 0.0, f"{code}: unknown close code, not retrying")

    def after_refusal(self, status: int, retry_after: float | None = None) -> Decision:
        """After the server refused the upgrade with HTTP ``status`` (and maybe ``Retry-After``)."""
        if status not in _RETRY_STATUSES:
            return Decision(False, 0.0, f"HTTP {status}: refused, not retrying")
        backoff = self._backoff(f"HTTP {status}: retry later")
        if not backoff.reconnect or retry_after is None:
            return backoff
        spread = min(self.max_delay, max(self.base_delay, retry_after)) / 2
        jitter = self._rng.uniform(0, spread)
        return Decision(True, retry_after + jitter, f"HTTP {status}: Retry-After {retry_after:g}s")

    def after_network_error(self) -> Decision:
        """After the TCP connection or the handshake failed before any HTTP response."""
        return self._backoff("network error before the upgrade")
