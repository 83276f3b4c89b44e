"""The harness's client over real sockets: each reply is matched to its own request."""

from __future__ import annotations

import asyncio

import httpx

from wsguard.leaktest.client import Api, Target, open_tab
from wsguard.leaktest.runner import target_of
from wsguard.processes import ServerProcess


def test_a_second_identical_subscribed_is_matched_to_the_second_subscribe() -> None:
    """Subscribe, unsubscribe, subscribe again with nothing published: the server's two
    ``subscribed`` frames carry the same epoch, offset and counts. Finding the reply by equality
    (``list.index``) finds the first one, before the request, and waits out its timeout."""

    async def scenario(target: Target) -> None:
        async with httpx.AsyncClient(timeout=10.0) as http:
            tab = await open_tab(Api(target, http), "lt-client-user", "lt-client/tab0")
            try:
                first = await tab.subscribe("twice", timeout=5.0)
                await tab.send({"type": "unsubscribe", "thread_id": "twice"})
                await tab.wait_for(lambda f: f.get("type") == "unsubscribed", 5.0)
                second = await tab.subscribe("twice", timeout=5.0)
                replies = [f for f in tab.frames if f.get("type") == "subscribed"]
                assert len(replies) == 2, tab.frames
                assert replies[0] is first
                assert replies[1] is second
                assert {k: v for k, v in first.items() if k != "ref"} == {
                    k: v for k, v in second.items() if k != "ref"
                }
            finally:
                await tab.close()

    with ServerProcess() as server:
        asyncio.run(scenario(target_of(server)))
