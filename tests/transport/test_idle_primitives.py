"""The transport's receive queue and writable flag, which stand in for asyncio's Queue and Event
so that an idle connection holds no deque: they must behave as uvicorn expects of those."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from wsguard.transport.protocol import _AppQueue, _Writable

WAIT = 2.0


def _queue() -> _AppQueue:
    """A queue without a control yet (as before ``connection_made``)."""
    return _AppQueue()


def test_the_queue_hands_out_items_in_order_and_holds_nothing_once_empty() -> None:
    async def scenario() -> None:
        queue = _queue()
        assert queue.empty()
        queue.put_nowait({"n": 1})
        queue.put_nowait({"n": 2})
        assert queue.qsize() == 2
        assert [await queue.get(), await queue.get()] == [{"n": 1}, {"n": 2}]
        assert queue.empty()
        assert (queue._items, queue._getters) == (None, None)
        with pytest.raises(asyncio.QueueEmpty):
            queue.get_nowait()

    asyncio.run(scenario())


def test_waiting_getters_are_served_in_the_order_they_came() -> None:
    async def scenario() -> None:
        queue = _queue()
        first = asyncio.create_task(queue.get())
        second = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        queue.put_nowait({"n": 1})
        queue.put_nowait({"n": 2})
        assert list(await asyncio.wait_for(asyncio.gather(first, second), WAIT)) == [{"n": 1}, {"n": 2}]
        assert queue._getters is None

    asyncio.run(scenario())


def test_a_getter_cancelled_after_its_wake_up_passes_the_item_on() -> None:
    """As ``asyncio.Queue``: the item it was woken for is not stranded while another waits."""

    async def scenario() -> None:
        queue = _queue()
        cancelled = asyncio.create_task(queue.get())
        waiting = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        queue.put_nowait({"n": 1})
        cancelled.cancel()
        assert await asyncio.wait_for(waiting, WAIT) == {"n": 1}
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert queue.empty()
        assert queue._getters is None

    asyncio.run(scenario())


def test_the_writable_flag_wakes_every_waiter_and_keeps_none_after() -> None:
    async def scenario() -> None:
        writable = _Writable()
        assert writable.is_set()
        assert await writable.wait()
        writable.clear()
        waiters: list[asyncio.Task[Any]] = [asyncio.create_task(writable.wait()) for _ in range(2)]
        await asyncio.sleep(0)
        assert not any(waiter.done() for waiter in waiters)
        writable.set()
        assert await asyncio.wait_for(asyncio.gather(*waiters), WAIT) == [True, True]
        assert writable._waiters is None

    asyncio.run(scenario())


def test_a_cancelled_wait_for_the_writable_flag_leaves_no_waiter_behind() -> None:
    async def scenario() -> None:
        writable = _Writable()
        writable.clear()
        waiter = asyncio.create_task(writable.wait())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert writable._waiters is None
        writable.set()
        assert writable.is_set()

    asyncio.run(scenario())
