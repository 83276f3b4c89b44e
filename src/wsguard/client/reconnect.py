"""When to reconnect and how long to wait: docs/protocol.md section 6 as a plain, synchronous decision.

Nothing here touches a socket or a clock; the asyncio layer feeds it what happened and sleeps for
the delay it returns. That keeps every rule of the close-code table testable in microseconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from wsguard.close import CLIENT_RULES, OnClose

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
        rule = CLIENT_RULES.get(code)
        if rule is None:
            return Decision(False, 0.0, f"{code}: unknown close code, not retrying")
        why = f"{code}: {rule.why}"
        if rule.on_close is OnClose.RANDOM_DELAY:
            return Decision(True, self._rng.uniform(0, self.going_away_delay), why)
        if rule.on_close is OnClose.NEW_CREDENTIALS:
            if fresh_credentials:
                return self._backoff(f"{why}, reconnecting with fresh credentials")
            return Decision(False, 0.0, f"{why} and no way to get a fresh one")
        if rule.on_close is OnClose.BACKOFF:
            return self._backoff(why)
        return Decision(False, 0.0, why)

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
