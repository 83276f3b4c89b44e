"""The bounded hand-off between the reading task and the application."""

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from wsguard.client.inbox import Inbox, InboxClosed

T = TypeVar("T")


async def _run_until_it_waits(coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Start ``coroutine`` as a task and return once it has run as far as it can without waiting:
    it is then either done or suspended on something only another task can give it."""
    entered = asyncio.Event()

    async def run() -> T:
        entered.set()
        return await coroutine

    task = asyncio.create_task(run())
    await entered.wait()  # resumes only after the task's first step, which runs to its first wait
    return task


def test_a_full_inbox_makes_the_reader_wait_until_the_application_takes_an_item() -> None:
    async def scenario() -> None:
        inbox: Inbox[int] = Inbox(2)
        await inbox.put(1)
        await inbox.put(2)
        third = await _run_until_it_waits(inbox.put(3))
        assert not third.done(), "a put into a full inbox must wait"
        assert len(inbox) == 2
        assert await inbox.get() == 1
        await asyncio.wait_for(third, 1.0)
        assert [await inbox.get(), await inbox.get()] == [2, 3]

    asyncio.run(scenario())


def test_close_drains_what_is_left_then_ends_and_wakes_waiters() -> None:
    async def scenario() -> None:
        inbox: Inbox[int] = Inbox(1)
        await inbox.put(1)
        blocked_put = await _run_until_it_waits(inbox.put(2))
        assert not blocked_put.done()
        inbox.close()
        await asyncio.wait_for(blocked_put, 1.0)
        assert await inbox.get() == 1
        with pytest.raises(InboxClosed):
            await inbox.get()
        waiting: Inbox[int] = Inbox(1)
        getter = await _run_until_it_waits(waiting.get())
        assert not getter.done()
        waiting.close()
        with pytest.raises(InboxClosed):
            await asyncio.wait_for(getter, 1.0)

    asyncio.run(scenario())
