"""The bounded hand-off between the reading task and the application."""

import asyncio

import pytest

from wsguard.client.inbox import Inbox, InboxClosed


def test_a_full_inbox_makes_the_reader_wait_until_the_application_takes_an_item() -> None:
    async def scenario() -> None:
        inbox: Inbox[int] = Inbox(2)
        await inbox.put(1)
        await inbox.put(2)
        third = asyncio.create_task(inbox.put(3))
        await asyncio.sleep(0.01)
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
        blocked_put = asyncio.create_task(inbox.put(2))
        await asyncio.sleep(0.01)
        inbox.close()
        await asyncio.wait_for(blocked_put, 1.0)
        assert await inbox.get() == 1
        with pytest.raises(InboxClosed):
            await inbox.get()
        waiting: Inbox[int] = Inbox(1)
        getter = asyncio.create_task(waiting.get())
        await asyncio.sleep(0.01)
        waiting.close()
        with pytest.raises(InboxClosed):
            await asyncio.wait_for(getter, 1.0)

    asyncio.run(scenario())
