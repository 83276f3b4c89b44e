"""Token buckets, keyed, with the clock passed in so that decisions are plain functions of time."""

from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second up to ``burst``; a take that finds no token is refused."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self, now: float) -> bool:
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def retry_after(self, now: float) -> float:
        """Seconds until one token is available."""
        self._refill(now)
        return max(0.0, (1.0 - self.tokens) / self.rate)

    def is_full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.burst


class KeyedLimiter:
    """One bucket per key (user, address). A full bucket is the same as none, so it is dropped:
    the limiter holds records only for keys that were active within ``burst / rate`` seconds."""

    def __init__(self, rate: float, burst_factor: float = 2.0) -> None:
        self.rate = rate
        self.burst = max(1.0, rate * burst_factor)
        self._buckets: dict[str, TokenBucket] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str, now: float) -> float | None:
        """None if allowed, else the seconds to wait (for ``Retry-After``)."""
        if not self.enabled:
            return None
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self.burst, now)
        if bucket.take(now):
            return None
        return bucket.retry_after(now)

    def prune(self, now: float) -> int:
        """Drop the buckets that have refilled; returns how many were dropped."""
        full = [key for key, bucket in self._buckets.items() if bucket.is_full(now)]
        for key in full:
            del self._buckets[key]
        return len(full)

    def __len__(self) -> int:
        return len(self._buckets)
