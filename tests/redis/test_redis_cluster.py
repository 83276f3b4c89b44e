"""The backend on a private Redis Cluster of three masters (``--backend redis-cluster://``).

The tests that make several instances one server on a single Redis run here again, unchanged,
with this module's ``redis_server`` (the cluster): the per-user limit across instances,
concurrent admissions, renewal, delivery to every connection exactly once, replay with
``since`` after a ``kill -9``, leases of a killed instance expiring, presence, a thread whose
history Redis lost restarting in a new epoch, a master refusing writes, tickets redeemed once on
any instance (each ticket's key in a slot of its own, its user's cap in the user's slot), and
``resume`` across instances with RS256 tokens. The tests
written here check what only a cluster has: users spread over every master, each user's keys
and channel in one slot on one node, and sharded channels only.
"""

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator
from functools import partial

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import RedisClusterException

from tests.redis.cluster_clients import keys_of, no_more_frames, publish, read_until_subscribed, subscribe
from tests.redis.conftest import StartInstance, require_redis_cluster
from tests.redis.test_backend import (
    Recorder,
    _backend,
    _started,
    _wait_for,
    test_a_dead_instances_leases_expire_within_the_ttl,
    test_a_master_that_refuses_writes_makes_publishing_unavailable,
    test_backfill_restarts_a_thread_whose_history_redis_lost,
    test_concurrent_admissions_from_three_instances_keep_the_newest_twenty,
    test_reject_policy_and_session_takeover_across_instances,
    test_renewal_recreates_lost_leases_and_closes_what_is_over_the_limit,
    test_retention_bound_age_and_a_lost_dataset_make_recovery_fail,
    test_thread_events_from_two_instances_are_numbered_without_gaps_and_delivered_once,
)
from tests.redis.test_cluster import (
    test_a_client_whose_instance_is_killed_recovers_every_event_on_another,
    test_an_event_published_on_a_reaches_b_and_c_exactly_once,
    test_kill_9_frees_the_dead_instances_leases_within_the_ttl,
    test_twenty_on_a_then_five_on_b_close_the_five_oldest_on_a,
)
from tests.redis.test_presence_cluster import (
    test_presence_and_instances_span_the_cluster_and_a_killed_instance_leaves_within_the_ttl,
)
from tests.redis.test_sessions import (
    rsa_keys,
    test_resume_on_another_instance_with_rs256_tokens_takes_the_session_over,
)
from tests.redis.test_tickets import (
    test_a_ticket_from_a_opens_one_connection_on_b_once_and_is_refused_everywhere_after,
    test_an_expired_ticket_is_refused_and_the_identity_travels_whole,
    test_the_cap_on_unused_tickets_counts_every_instances,
    test_two_backends_redeeming_one_ticket_at_once_give_it_to_exactly_one,
)
from wsguard.backends.base import BackendUnavailable
from wsguard.backends.redis import RedisBackend
from wsguard.processes import eventually
from wsguard.processes.clients import Frame, open_socket, receive
from wsguard.processes.redis_cluster import RedisClusterServers, free_cluster_port

require_redis_cluster()

__all__ = [
    "rsa_keys",
    "test_a_client_whose_instance_is_killed_recovers_every_event_on_another",
    "test_a_dead_instances_leases_expire_within_the_ttl",
    "test_a_master_that_refuses_writes_makes_publishing_unavailable",
    "test_a_ticket_from_a_opens_one_connection_on_b_once_and_is_refused_everywhere_after",
    "test_an_event_published_on_a_reaches_b_and_c_exactly_once",
    "test_an_expired_ticket_is_refused_and_the_identity_travels_whole",
    "test_backfill_restarts_a_thread_whose_history_redis_lost",
    "test_concurrent_admissions_from_three_instances_keep_the_newest_twenty",
    "test_kill_9_frees_the_dead_instances_leases_within_the_ttl",
    "test_presence_and_instances_span_the_cluster_and_a_killed_instance_leaves_within_the_ttl",
    "test_reject_policy_and_session_takeover_across_instances",
    "test_renewal_recreates_lost_leases_and_closes_what_is_over_the_limit",
    "test_resume_on_another_instance_with_rs256_tokens_takes_the_session_over",
    "test_retention_bound_age_and_a_lost_dataset_make_recovery_fail",
    "test_the_cap_on_unused_tickets_counts_every_instances",
    "test_thread_events_from_two_instances_are_numbered_without_gaps_and_delivered_once",
    "test_twenty_on_a_then_five_on_b_close_the_five_oldest_on_a",
    "test_two_backends_redeeming_one_ticket_at_once_give_it_to_exactly_one",
]

USERS = 24
EVENTS_PER_USER = 10
LEAVERS = 6
LEAVE_PAUSE = 0.05
"""Seconds a task that sent ``SUNSUBSCRIBE`` waits before going on, as on a busy event loop."""
JOIN_LEAVE_CYCLES = 5
PROMPT = 0.5
"""Seconds within which a join or a leave is confirmed: half the listener's wait on one node."""


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisClusterServers]:
    """One private cluster of three masters per module, in place of the single redis-server."""
    with RedisClusterServers(masters=3) as cluster:
        yield cluster


def test_users_on_every_master_get_each_event_once_over_sharded_channels_in_their_own_slot(
    start_instance: StartInstance, redis_server: RedisClusterServers
) -> None:
    a, b = start_instance(), start_instance()
    admin = a.auth("operator", admin=True)
    users = [f"spread-{n}" for n in range(USERS)]
    keys = keys_of(redis_server)
    masters = {redis_server.master_of(keys.leases(user)).port for user in users}
    assert len(masters) == 3, f"the users' slots are on {len(masters)} of 3 masters"

    async def scenario() -> None:
        sockets = {user: [(await open_socket(i.ws_url, a.token(user)))[0] for i in (a, b)] for user in users}
        for pair in sockets.values():
            for socket in pair:
                assert (await subscribe(socket, "t"))["recovered"] is False
        for user in users:
            node = redis_server.master_of(keys.leases(user))
            channel = keys.user_events(user)
            with redis_server.node_client(node.port) as client:
                assert client.exists(keys.leases(user), keys.thread_meta(user, "t")) == 2, "on its node"
                assert client.pubsub_numsub(channel) == [(channel.encode(), 0)], "no plain channel"
                shard_subscribers = client.execute_command("PUBSUB SHARDNUMSUB", channel)
                assert shard_subscribers == [(channel.encode(), 2)], "a and b, on the slot's node"
        for n in range(1, EVENTS_PER_USER + 1):
            for index, user in enumerate(users):
                sender = (a, b)[index % 2]
                assert publish(sender, admin, user, "t", "step", {"n": n, "to": user}).json() == {"offset": n}
        publish(a, admin, users[0], None, "note", {})
        for user, pair in sockets.items():
            for socket in pair:
                frames: list[Frame] = [await receive(socket) for _ in range(EVENTS_PER_USER)]
                assert [f["offset"] for f in frames] == list(range(1, EVENTS_PER_USER + 1)), user
                assert {f["data"]["to"] for f in frames} == {user}
                if user == users[0]:
                    assert (await receive(socket))["event"] == "note"
                assert await no_more_frames(socket, quiet=0.05)
        for user in users:
            node = redis_server.master_of(keys.leases(user))
            with redis_server.node_client(node.port) as client:
                assert client.exists(keys.thread_meta(user, "t"), keys.thread_log(user, "t")) == 2
        with redis_server.client() as client:
            assert not client.exists("wsguard:epoch"), "no global key: the user-level epoch is the user's"
            assert client.exists(keys.user_epoch(users[0]))
            assert client.pttl(keys.user_epoch(users[0])) > 0, "and it expires"
        for pair in sockets.values():
            await asyncio.gather(*(s.close() for s in pair))

    asyncio.run(scenario())
    for instance in (a, b):
        instance.wait_idle(timeout=10.0)
        eventually(
            instance.metrics,
            lambda m: m['wsguard_backend_subscriptions{kind="user"}'] == 0,
            timeout=5.0,
            what="every user's channel left",
        )
    with redis_server.client() as client:
        assert client.pubsub_shardchannels(f"{keys.user_events_prefix}*") == []


def test_a_leave_confirmed_before_its_sender_goes_on_leaves_no_record_in_the_redis_client(
    redis_server: RedisClusterServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Users come and go while every task that sends ``SUNSUBSCRIBE`` resumes late (as on a busy
    event loop), so that the node's reader takes each confirmation first: each leave is still
    forgotten everywhere, the Redis client's own records included, and the records held are back
    to zero (redis-py 8.1's ``ClusterPubSub`` kept each such channel in ``shard_channels`` for as
    long as the listener lived)."""
    send = Connection.send_packed_command

    async def send_then_pause(
        self: Connection, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        await send(self, command, check_health)
        if isinstance(command, list) and command and b"SUNSUBSCRIBE" in bytes(command[0])[:32]:
            await asyncio.sleep(LEAVE_PAUSE)

    monkeypatch.setattr(Connection, "send_packed_command", send_then_pause)
    users = [f"leaver-{n}" for n in range(LEAVERS)]
    keys = keys_of(redis_server)
    assert len({redis_server.master_of(keys.leases(user)).port for user in users}) > 1

    async def scenario() -> None:
        backend, _ = await _started(redis_server.url)
        try:
            for cycle, user in enumerate(users * 2):
                connection_id = f"conn_leaver_{cycle}"
                decision = await backend.admit(user, connection_id, f"ses_{cycle}", takeover=False)
                assert decision is not None
                assert decision.admitted
                backend.release(connection_id)
                await _wait_for(partial(_left, backend, cycle + 1))
            assert backend.traffic.joins == len(users) * 2
            assert backend.entry_count == 0, f"{backend.entry_count} records left after every user left"
        finally:
            await backend.close()

    asyncio.run(scenario())


def test_a_join_and_a_leave_on_a_node_being_read_are_confirmed_at_once(
    redis_server: RedisClusterServers,
) -> None:
    """A user joins and leaves again and again, each leave sent just as the node's reader starts
    waiting there: each is confirmed in well under that wait (redis-py 8.2's ``ClusterPubSub``
    held every (un)subscription on a node until its reader's wait ran out, about a second, past
    the leak checks' cleanup bound)."""

    async def scenario() -> None:
        backend, _ = await _started(redis_server.url)
        try:
            for cycle in range(JOIN_LEAVE_CYCLES):
                connection_id = f"conn_prompt_{cycle}"
                started = time.monotonic()
                decision = await backend.admit("prompt-user", connection_id, f"ses_{cycle}", takeover=False)
                joined = time.monotonic() - started
                assert decision is not None
                assert decision.admitted
                started = time.monotonic()
                backend.release(connection_id)
                await _wait_for(partial(_left, backend, cycle + 1))
                left = time.monotonic() - started
                assert joined < PROMPT, f"cycle {cycle}: joined in {joined:.3f} s"
                assert left < PROMPT, f"cycle {cycle}: left in {left:.3f} s"
            assert backend.entry_count == 0, f"{backend.entry_count} records left after the user left"
        finally:
            await backend.close()

    asyncio.run(scenario())


def _left(backend: RedisBackend, count: int) -> bool:
    """Redis has confirmed ``count`` leaves of users' channels."""
    return backend.traffic.leaves == count


def test_a_users_slot_moved_to_another_master_keeps_delivering_and_replaying(
    start_instance: StartInstance, redis_server: RedisClusterServers
) -> None:
    a, b = start_instance(), start_instance()
    admin = a.auth("operator", admin=True)
    user = "moving-user"
    keys = keys_of(redis_server)
    source = redis_server.master_of(keys.leases(user))
    masters = [node for node in redis_server.nodes if node.alive and node.port != source.port]
    target = masters[0]

    def publish_until_accepted(n: int) -> int:
        """A publish that meets the slot moving may be refused (503): post it again."""
        outcome = eventually(
            lambda: publish(a, admin, user, "job", "step", {"n": n}),
            lambda response: response.status_code == 200,
            timeout=10,
            what=f"event {n} accepted",
        )
        offset: int = outcome.json()["offset"]
        return offset

    async def scenario() -> None:
        socket, _ = await open_socket(b.ws_url, b.token(user))
        epoch = (await subscribe(socket, "job"))["epoch"]
        assert [publish_until_accepted(n) for n in range(1, 6)] == [1, 2, 3, 4, 5]
        assert [(await receive(socket))["data"]["n"] for _ in range(5)] == [1, 2, 3, 4, 5]
        redis_server.move_slot(keys.leases(user), target)
        assert [publish_until_accepted(n) for n in range(6, 11)] == [6, 7, 8, 9, 10]
        frames = [await receive(socket, timeout=10) for _ in range(5)]
        assert [(f["offset"], f["data"]["n"]) for f in frames] == [(n, n) for n in range(6, 11)]
        assert await no_more_frames(socket)
        channel = keys.user_events(user)
        with redis_server.node_client(target.port) as client:
            assert client.execute_command("PUBSUB SHARDNUMSUB", channel) == [(channel.encode(), 1)]
        with redis_server.node_client(source.port) as client:
            assert client.execute_command("PUBSUB SHARDNUMSUB", channel) == [(channel.encode(), 0)]
        replay, _ = await open_socket(a.ws_url, a.token(user))
        replayed = await read_until_subscribed(replay, "job", {"epoch": epoch, "offset": 0})
        assert replayed[-1]["recovered"] is True
        assert [f["offset"] for f in replayed[:-1]] == list(range(1, 11)), "the stream moved with the slot"
        await asyncio.gather(socket.close(), replay.close())

    asyncio.run(scenario())


def test_a_cluster_that_cannot_be_reached_is_a_backend_down_not_a_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = ",".join(f"127.0.0.1:{free_cluster_port()}" for _ in range(2))

    async def scenario() -> None:
        backend = _backend(f"redis-cluster://{dead}")
        await backend.start(Recorder().deliver)
        assert not backend.up
        assert await backend.admit("u", "c1", "s", takeover=False) is None, "decided on the local limit"
        with pytest.raises(BackendUnavailable):
            await backend.publish("u", "t", "e", {})
        with pytest.raises(BackendUnavailable):
            await backend.directory.lease_counts()
        with pytest.raises(RedisClusterException):
            await backend.renew()  # what the renewal loop logs quietly, as unreachable
        await backend.close()

    with caplog.at_level(logging.INFO, logger="wsguard"):
        asyncio.run(scenario())
    assert not [r for r in caplog.records if r.exc_info], "no traceback: an unreachable cluster is an outage"
