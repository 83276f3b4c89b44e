"""The one cancellation an await can lose, found again by the loop that lost it.

Python 3.11's ``asyncio.wait_for`` returns its awaitable's result, and drops the cancellation,
when the cancellation arrives in the loop turn that the awaitable completes in (CPython
gh-86296, fixed in 3.12). redis-py awaits every command's write with ``wait_for`` once
``socket_timeout`` is set, as wsguard's clients set it: a task cancelled at that moment goes on
as if nothing happened, and whoever awaits its end (a shutdown, a drain, the leak harness
stopping its sampler) waits forever. The task still counts the request in
``Task.cancelling()``, so a loop that checks at each turn ends as it was asked to.
"""

import asyncio


def raise_if_cancelled() -> None:
    """Raise ``CancelledError`` when the current task was asked to stop and an await lost it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
