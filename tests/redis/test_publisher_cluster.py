"""``wsguard.publisher`` on a private Redis Cluster of three masters (``redis-cluster://``): the
tests of ``test_publisher.py`` again, unchanged, with this module's ``redis_server`` (the
cluster); and what only a cluster has: a batch that spans users on every master is one script
call per user, each in its user's slot, and a cluster that is gone raises in time."""

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.redis.cluster_clients import keys_of, no_more_frames
from tests.redis.conftest import StartInstance, require_redis_cluster
from tests.redis.test_publisher import (
    _frames,
    _subscribed,
    test_a_batch_is_numbered_in_order_with_the_servers_own_events_and_delivered_once,
    test_a_blocking_publisher_reaches_the_users_open_connection_with_its_offset,
    test_an_async_publisher_reaches_the_users_open_connection_with_its_offset,
    test_an_idempotency_key_gives_the_first_offset_again_and_the_event_is_delivered_once,
    test_history_gives_the_owner_events_after_since_and_another_user_nothing_of_them,
)
from wsguard.processes.redis_cluster import RedisClusterServers
from wsguard.publisher import AsyncPublisher, Publisher, PublishError, PublishItem

require_redis_cluster()

__all__ = [
    "test_a_batch_is_numbered_in_order_with_the_servers_own_events_and_delivered_once",
    "test_a_blocking_publisher_reaches_the_users_open_connection_with_its_offset",
    "test_an_async_publisher_reaches_the_users_open_connection_with_its_offset",
    "test_an_idempotency_key_gives_the_first_offset_again_and_the_event_is_delivered_once",
    "test_history_gives_the_owner_events_after_since_and_another_user_nothing_of_them",
]

DOWN_WITHIN = 10.0


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisClusterServers]:
    """One private cluster of three masters per module, in place of the single redis-server."""
    with RedisClusterServers(masters=3) as cluster:
        yield cluster


def test_a_batch_over_users_on_every_master_reaches_each_once(
    start_instance: StartInstance, redis_server: RedisClusterServers
) -> None:
    instance = start_instance()
    users = [f"spread-{n}" for n in range(12)]
    keys = keys_of(redis_server)
    assert len({redis_server.master_of(keys.leases(user)).port for user in users}) == 3

    async def scenario() -> None:
        sockets = {user: await _subscribed(instance, user, "t") for user in users}
        items = [PublishItem(user, "t", "delta", {"n": n}) for n in range(5) for user in users]
        async with AsyncPublisher.from_url(redis_server.url) as publisher:
            offsets = await publisher.publish_many(items)
            assert offsets == [n + 1 for n in range(5) for _ in users]
        with Publisher.from_url(redis_server.url) as publisher:
            more = await asyncio.to_thread(
                publisher.publish_many, [PublishItem(u, "t", "more") for u in users]
            )
        assert more == [6] * len(users)
        for user, socket in sockets.items():
            assert [f["offset"] for f in await _frames(socket, 6)] == [1, 2, 3, 4, 5, 6], user
            assert await no_more_frames(socket, quiet=0.1)
            await socket.close()

    asyncio.run(scenario())


@pytest.fixture
def own_cluster() -> Iterator[RedisClusterServers]:
    with RedisClusterServers(masters=3) as cluster:
        yield cluster


def test_with_the_cluster_stopped_publish_raises_a_publish_error_in_time(
    own_cluster: RedisClusterServers,
) -> None:
    publisher = Publisher.from_url(own_cluster.url, timeout=1.0)
    assert publisher.publish("u", "t", "e") == 1
    for node in own_cluster.nodes:
        own_cluster.kill(node)
    started = time.monotonic()
    with pytest.raises(PublishError):
        publisher.publish("u", "t", "e")
    assert time.monotonic() - started < DOWN_WITHIN
    publisher.close()

    async def asynchronously() -> None:
        async with AsyncPublisher.from_url(own_cluster.url, timeout=1.0) as publisher:
            started = time.monotonic()
            with pytest.raises(PublishError):
                await publisher.publish("u", "t", "e")
            assert time.monotonic() - started < DOWN_WITHIN

    asyncio.run(asynchronously())
