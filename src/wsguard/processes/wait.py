"""Wait on a condition with a deadline, and fail with what was last seen."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from wsguard.errors import WSGuardError

T = TypeVar("T")


class ConditionTimeout(WSGuardError, AssertionError):
    """A condition did not hold before its deadline; the message says what was last seen."""


def eventually(
    probe: Callable[[], T],
    condition: Callable[[T], bool],
    *,
    timeout: float,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until ``condition(value)`` holds; return that value or raise with the last one."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if condition(value):
            return value
        if time.monotonic() >= deadline:
            raise ConditionTimeout(f"{what} did not hold within {timeout}s; last seen: {value!r}")
        time.sleep(interval)


async def eventually_async(
    probe: Callable[[], Awaitable[T]],
    condition: Callable[[T], bool],
    *,
    timeout: float,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """The asyncio form of :func:`eventually`: the probe is awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if condition(value):
            return value
        if time.monotonic() >= deadline:
            raise ConditionTimeout(f"{what} did not hold within {timeout}s; last seen: {value!r}")
        await asyncio.sleep(interval)
