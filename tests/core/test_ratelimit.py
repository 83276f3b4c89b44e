"""Token buckets with an explicit clock."""

from wsguard.core.ratelimit import KeyedLimiter


def test_burst_then_refusal_then_refill() -> None:
    limiter = KeyedLimiter(rate=10, burst_factor=2)
    assert all(limiter.take("u", now=0.0) is None for _ in range(20))
    wait = limiter.take("u", now=0.0)
    assert wait is not None
    assert 0 < wait <= 0.1
    assert limiter.take("u", now=0.1) is None


def test_full_buckets_are_pruned() -> None:
    limiter = KeyedLimiter(rate=10)
    limiter.take("u", now=0.0)
    assert len(limiter) == 1
    assert limiter.prune(now=0.01) == 0
    assert limiter.prune(now=1.0) == 1
    assert len(limiter) == 0


def test_rate_zero_is_off() -> None:
    limiter = KeyedLimiter(rate=0)
    assert all(limiter.take("u", now=0.0) is None for _ in range(1000))
    assert len(limiter) == 0
