"""``wsguard.publisher`` through Redis, from this test process (a process apart from the servers):
the user's open connection on a real instance receives each event once with the offset the
publisher returned; numbering, idempotency keys and history are the server's own; a batch is
one script call; a Redis that is gone or does not answer raises a ``PublishError`` in time.

``tests/redis/test_publisher_cluster.py`` runs these again on a Redis Cluster."""

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.redis.cluster_clients import AnyRedis, keys_of, no_more_frames, subscribe
from tests.redis.conftest import StartInstance, instance_flags
from wsguard.client import connect
from wsguard.processes import ServerProcess
from wsguard.processes.clients import Frame, open_socket, receive
from wsguard.processes.redis_server import RedisServer, SentinelGroup
from wsguard.publisher import AsyncPublisher, BrokerUnavailable, Publisher, PublishError, PublishItem

DOWN_WITHIN = 10.0


async def _subscribed(instance: ServerProcess, user: str, thread: str) -> Any:
    socket, _ = await open_socket(instance.ws_url, instance.token(user))
    assert (await subscribe(socket, thread))["type"] == "subscribed"
    return socket


async def _frames(socket: Any, count: int) -> list[Frame]:
    return [await receive(socket) for _ in range(count)]


def test_a_blocking_publisher_reaches_the_users_open_connection_with_its_offset(
    start_instance: StartInstance, redis_server: AnyRedis
) -> None:
    instance = start_instance()

    async def scenario() -> None:
        socket = await _subscribed(instance, "sync-user", "t")

        def publish() -> int | None:
            with Publisher.from_url(redis_server.url) as publisher:
                return publisher.publish(
                    "sync-user", "t", "tool_executing", {"tool": "search"}, run_id="run_1", request_id="req_1"
                )

        offset = await asyncio.to_thread(publish)
        frame = await receive(socket)
        assert offset == 1
        assert (frame["type"], frame["event"], frame["offset"], frame["thread_id"]) == (
            "event",
            "tool_executing",
            offset,
            "t",
        )
        assert (frame["data"], frame["run_id"], frame["request_id"]) == ({"tool": "search"}, "run_1", "req_1")
        assert await no_more_frames(socket)
        await socket.close()

    asyncio.run(scenario())


def test_an_async_publisher_reaches_the_users_open_connection_with_its_offset(
    start_instance: StartInstance, redis_server: AnyRedis
) -> None:
    instance = start_instance()

    async def scenario() -> None:
        socket = await _subscribed(instance, "async-user", "t")
        async with AsyncPublisher.from_url(redis_server.url) as publisher:
            offset = await publisher.publish("async-user", "t", "tool_executing", {"tool": "search"})
            assert await publisher.publish("async-user", None, "notice", {"n": 1}) is None
        thread_event, user_event = await _frames(socket, 2)
        assert (thread_event["event"], thread_event["offset"]) == ("tool_executing", offset)
        assert offset == 1
        assert (user_event["event"], user_event["offset"], user_event["thread_id"]) == ("notice", None, None)
        assert await no_more_frames(socket)
        await socket.close()

    asyncio.run(scenario())


def test_an_idempotency_key_gives_the_first_offset_again_and_the_event_is_delivered_once(
    start_instance: StartInstance, redis_server: AnyRedis
) -> None:
    """Across the publisher and ``POST /api/publish`` too: one script keeps the keys for both."""
    instance = start_instance()
    admin = instance.auth("operator", admin=True)

    async def scenario() -> None:
        socket = await _subscribed(instance, "idem-user", "t")
        async with AsyncPublisher.from_url(redis_server.url) as publisher:
            first = await publisher.publish("idem-user", "t", "step", {"n": 1}, idempotency_key="run_1:1")
            again = await publisher.publish("idem-user", "t", "step", {"n": 1}, idempotency_key="run_1:1")
            body = {"user_id": "idem-user", "thread_id": "t", "event": "step", "idempotency_key": "run_1:1"}
            over_http = instance.http.post("/api/publish", json=body, headers=admin).json()["offset"]
            other_thread = await publisher.publish("idem-user", "u", "step", {}, idempotency_key="run_1:1")
            second = await publisher.publish("idem-user", "t", "step", {"n": 2}, idempotency_key="run_1:2")
        assert first == again == over_http == 1
        assert (other_thread, second) == (1, 2)
        frames = await _frames(socket, 2)
        assert [(f["offset"], f["data"]) for f in frames] == [(1, {"n": 1}), (2, {"n": 2})]
        assert await no_more_frames(socket)
        await socket.close()

    asyncio.run(scenario())
    with redis_server.client() as client:
        ttl = client.pttl(keys_of(redis_server).idempotency("idem-user", "t", "run_1:1"))
    assert 290_000 < ttl <= 300_000


def test_a_batch_is_numbered_in_order_with_the_servers_own_events_and_delivered_once(
    start_instance: StartInstance, redis_server: AnyRedis
) -> None:
    instance = start_instance()
    admin = instance.auth("operator", admin=True)
    users = [f"batch-{n}" for n in range(4)]

    async def scenario() -> None:
        sockets = {user: await _subscribed(instance, user, "t") for user in users}
        body = {"user_id": users[0], "thread_id": "t", "event": "server", "data": {}}
        assert instance.http.post("/api/publish", json=body, headers=admin).json() == {"offset": 1}
        items = [PublishItem(users[n % 4], "t", "delta", {"n": n}) for n in range(400)]
        with Publisher.from_url(redis_server.url) as publisher:
            offsets = await asyncio.to_thread(publisher.publish_many, items)
        assert offsets == [n // 4 + (2 if n % 4 == 0 else 1) for n in range(400)]
        for index, user in enumerate(users):
            frames = await _frames(sockets[user], 101 if index == 0 else 100)
            live = [f for f in frames if f["event"] == "delta"]
            assert [f["data"]["n"] for f in live] == list(range(index, 400, 4))
            assert [f["offset"] for f in frames] == list(range(1, len(frames) + 1))
            assert await no_more_frames(sockets[user])
            await sockets[user].close()

    asyncio.run(scenario())


def test_history_gives_the_owner_events_after_since_and_another_user_nothing_of_them(
    start_instance: StartInstance, redis_server: AnyRedis
) -> None:
    a, b = start_instance(), start_instance()
    with Publisher.from_url(redis_server.url) as publisher:
        offsets = publisher.publish_many([PublishItem("owner", "t", "step", {"n": n}) for n in range(1, 6)])
    assert offsets == [1, 2, 3, 4, 5]

    owner = b.http.get("/api/threads/t/events?since=2", headers=b.auth("owner")).json()
    assert [e["offset"] for e in owner["events"]] == [3, 4, 5]
    assert [e["data"]["n"] for e in owner["events"]] == [3, 4, 5]
    assert (owner["thread_id"], owner["offset"], owner["complete"]) == ("t", 5, True)
    other = a.http.get("/api/threads/t/events?since=2", headers=a.auth("someone-else"))
    assert other.status_code == 200
    assert (other.json()["events"], other.json()["offset"]) == ([], 0)
    assert owner["epoch"] not in other.text.replace(other.json()["epoch"], "")
    assert (
        a.http.get("/api/threads/t/events?user_id=owner", headers=a.auth("someone-else")).status_code == 403
    )
    admin = a.http.get("/api/threads/t/events?user_id=owner&limit=2", headers=a.auth("op", admin=True)).json()
    assert [e["offset"] for e in admin["events"]] == [1, 2]

    async def draw_then_subscribe() -> None:
        async with connect(a.ws_url, token=a.token("owner")) as client:
            history = await client.history("t", since=1, limit=2)
            assert [e.offset for e in history.events] == [2, 3]
            await client.subscribe("t", since=history.position)
            with Publisher.from_url(redis_server.url) as publisher:
                assert publisher.publish("owner", "t", "step", {"n": 6}) == 6
            received = [await asyncio.wait_for(anext(client), 5) for _ in range(3)]
            assert [e.offset for e in received if hasattr(e, "offset")] == [4, 5, 6]

    asyncio.run(draw_then_subscribe())


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, to stop."""
    with RedisServer() as server:
        yield server


def test_with_redis_stopped_publish_raises_a_publish_error_in_time(own_redis: RedisServer) -> None:
    publisher = Publisher.from_url(own_redis.url, timeout=1.0)
    assert publisher.publish("u", "t", "e") == 1
    own_redis.kill()
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        publisher.publish("u", "t", "e", idempotency_key="retry-me")
    assert time.monotonic() - started < DOWN_WITHIN
    publisher.close()

    async def asynchronously() -> None:
        async with AsyncPublisher.from_url(own_redis.url, timeout=1.0) as publisher:
            started = time.monotonic()
            with pytest.raises(PublishError):
                await publisher.publish("u", "t", "e")
            assert time.monotonic() - started < DOWN_WITHIN

    asyncio.run(asynchronously())


def test_a_redis_that_does_not_answer_raises_after_the_timeout(own_redis: RedisServer) -> None:
    with Publisher.from_url(own_redis.url, timeout=0.5) as publisher:
        assert publisher.publish("u", "t", "e") == 1
        assert own_redis.process is not None
        os.kill(own_redis.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(BrokerUnavailable):
                publisher.publish("u", "t", "e")
            sync_took = time.monotonic() - started

            async def asynchronously() -> float:
                async with AsyncPublisher.from_url(own_redis.url, timeout=0.5) as publisher:
                    started = time.monotonic()
                    with pytest.raises(BrokerUnavailable):
                        await publisher.publish("u", "t", "e")
                    return time.monotonic() - started

            async_took = asyncio.run(asynchronously())
        finally:
            os.kill(own_redis.process.pid, signal.SIGCONT)
        assert 0.4 < sync_took < 2.0, sync_took
        assert 0.4 < async_took < 2.0, async_took
        # The events the stalled Redis had been sent are taken once it answers again: numbering
        # goes on after them. A retry with an idempotency key is the safe way (docs/publisher.md).
        assert (publisher.publish("u", "t", "e") or 0) >= 2


def test_through_sentinel_the_publisher_writes_to_the_master_they_name() -> None:
    with SentinelGroup(sentinels=3, quorum=2, replicas=1) as sentinels:
        instance = ServerProcess(*instance_flags(sentinels.url)).start()
        try:

            async def scenario() -> None:
                socket = await _subscribed(instance, "sentinel-user", "t")
                with Publisher.from_url(sentinels.url) as publisher:
                    offset = await asyncio.to_thread(publisher.publish, "sentinel-user", "t", "step", {})
                async with AsyncPublisher.from_url(sentinels.url) as publisher:
                    second = await publisher.publish("sentinel-user", "t", "step", {})
                assert [f["offset"] for f in await _frames(socket, 2)] == [offset, second] == [1, 2]
                await socket.close()

            asyncio.run(scenario())
        finally:
            instance.stop()
