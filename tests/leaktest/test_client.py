"""The harness's client over real sockets and streams: each reply is matched to its own request,
a stream tab resumes as ``EventSource`` does."""

from __future__ import annotations

import asyncio

import httpx

from wsguard.leaktest.client import Api, Target, open_tab
from wsguard.leaktest.runner import target_of
from wsguard.processes import ServerProcess

HEARTBEAT_S = 0.1


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


def test_a_stream_tab_reconnects_from_its_last_event_id_and_gets_the_gap_once() -> None:
    """Over ``--transport sse`` a tab that resumes its session sends the last ``id:`` its session
    read as ``Last-Event-ID``: the server subscribes the thread again from there, so ``subscribe``
    answers with that subscription, not a second one that would replay the gap twice."""

    async def scenario(target: Target) -> None:
        async with httpx.AsyncClient(timeout=10.0) as http:
            api = Api(target, http, transport="sse")
            first = await open_tab(api, "lt-stream-user", "lt-stream/tab0")
            try:
                subscribed = await first.subscribe("gap")
                offset = await api.publish("lt-stream-user", "gap", "seen", {"n": 1})
                await first.wait_for(lambda f: f.get("offset") == offset, 5.0)
                first.drop()
                assert await first.wait_closed(5.0) == 1006
                gap = [await api.publish("lt-stream-user", "gap", "missed", {"n": n}) for n in (2, 3)]
                second = await open_tab(api, "lt-stream-user", "lt-stream/tab1", resume=first.session_id)
                try:
                    assert second.session_id == first.session_id
                    since = {"epoch": subscribed["epoch"], "offset": offset}
                    resumed = await second.subscribe("gap", since=since)
                    assert (resumed["recovered"], resumed["replayed"]) == (True, 2), resumed
                    assert [e["offset"] for e in second.events] == gap
                finally:
                    await second.close()
                assert second.close_code == 1000
            finally:
                if not first.is_closed:
                    first.drop()

    with ServerProcess() as server:
        asyncio.run(scenario(target_of(server)))
        metrics = server.wait_idle(timeout=5.0)
    left = ("client_closed", "connection_lost")
    assert sum(metrics.get(f'wsguard_connections_closed_total{{reason="{r}"}}', 0) for r in left) == 2


def test_a_stream_tab_reads_on_past_heartbeat_comments() -> None:
    """httpx-sse dispatches a heartbeat comment as a message without data once any ``id:`` was
    read; the stream client skips it, as the SSE spec does, rather than failing on it."""

    async def scenario(target: Target) -> None:
        async with httpx.AsyncClient(timeout=10.0) as http:
            api = Api(target, http, transport="sse")
            tab = await open_tab(api, "lt-beat-user", "lt-beat/tab0")
            try:
                await tab.subscribe("beat")
                assert await tab.wait_closed(3 * HEARTBEAT_S) is None, tab.describe_close()
                offset = await api.publish("lt-beat-user", "beat", "after", {})
                await tab.wait_for(lambda f: f.get("offset") == offset, 5.0)
            finally:
                await tab.close()

    with ServerProcess("--heartbeat-interval", str(HEARTBEAT_S)) as server:
        asyncio.run(scenario(target_of(server)))
