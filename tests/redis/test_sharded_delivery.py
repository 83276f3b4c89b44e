"""Delivery sharded by user on one Redis: an instance receives a user's events only while it holds
a connection of that user, every connection still gets each event exactly once, and users'
channels are joined and left without leaking a subscription."""

import asyncio
import random
import time
from collections import defaultdict

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from tests.redis.cluster_clients import no_more_frames, subscribe
from tests.redis.conftest import StartInstance
from wsguard.processes import ServerProcess, eventually
from wsguard.processes.clients import Frame, open_socket, receive
from wsguard.processes.redis_server import RedisServer

INSTANCES = 4
USERS = 400
EVENTS = 2_000
"""In ``make test``; ``make soak`` publishes 10,000 (minutes on a loaded 2-core machine)."""
CYCLES = 1_000
RECEIVED = "wsguard_backend_messages_received_total"
USER_CHANNELS = 'wsguard_backend_subscriptions{kind="user"}'
JOINS = 'wsguard_backend_subscription_changes_total{change="join"}'
LEAVES = 'wsguard_backend_subscription_changes_total{change="leave"}'


def user_channels_in_redis(redis_server: RedisServer) -> list[bytes]:
    with redis_server.client() as client:
        return sorted(client.pubsub_channels("wsguard:events:u:*"))


async def publish_all(instances: list[ServerProcess], admin: str, events: list[tuple[str, int]]) -> None:
    """POST every event, spread over the instances, a few in flight at a time."""
    clients = [
        httpx.AsyncClient(
            base_url=i.base_url,
            headers={"Authorization": f"Bearer {admin}"},
            timeout=30,
            limits=httpx.Limits(keepalive_expiry=1.0),  # below the server's keep-alive timeout
        )
        for i in instances
    ]
    queue: asyncio.Queue[tuple[int, tuple[str, int]]] = asyncio.Queue()
    for item in enumerate(events):
        queue.put_nowait(item)

    async def worker() -> None:
        while not queue.empty():
            index, (user_id, n) = queue.get_nowait()
            body = {"user_id": user_id, "thread_id": "t", "event": "e", "data": {"n": n}}
            response = await clients[index % len(clients)].post("/api/publish", json=body)
            assert response.status_code == 200, response.text

    try:
        await asyncio.gather(*(worker() for _ in range(16)))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


async def read_events(socket: ClientConnection, count: int) -> list[Frame]:
    frames = [await receive(socket, timeout=60) for _ in range(count)]
    assert await no_more_frames(socket)
    return frames


@pytest.mark.parametrize("events_published", [EVENTS, pytest.param(10_000, marks=pytest.mark.soak)])
def test_events_reach_only_the_instances_holding_the_user_and_every_connection_once(
    start_instance: StartInstance, redis_server: RedisServer, events_published: int
) -> None:
    redis_server.client().flushall()
    instances = [start_instance() for _ in range(INSTANCES)]
    rng = random.Random(16)
    placement = {f"user-{n}": rng.sample(range(INSTANCES), rng.choice((1, 1, 2, 3))) for n in range(USERS)}
    events = [(f"user-{rng.randrange(USERS)}", n) for n in range(events_published)]
    admin = instances[0].token("operator", admin=True)

    async def scenario() -> None:
        opening = time.monotonic()
        tokens = {user_id: instances[0].token(user_id) for user_id in placement}
        print(f"\n{len(tokens)} tokens in {time.monotonic() - opening:.1f} s")
        gate = asyncio.Semaphore(32)

        async def connect(user_id: str, index: int) -> tuple[str, ClientConnection]:
            async with gate:
                socket, _ = await open_socket(instances[index].ws_url, tokens[user_id], ping_interval=None)
                assert (await subscribe(socket, "t"))["recovered"] is False
                return user_id, socket

        sockets = await asyncio.gather(*(connect(u, i) for u, where in placement.items() for i in where))
        for index, instance in enumerate(instances):
            held = sum(1 for where in placement.values() if index in where)
            assert instance.metrics()[USER_CHANNELS] == held
        started = time.monotonic()
        print(f"\nopened {len(sockets)} connections in {started - opening:.1f} s")
        await publish_all(instances, admin, events)
        print(f"published {events_published} in {time.monotonic() - started:.1f} s")
        per_user: dict[str, list[int]] = defaultdict(list)
        for user_id, n in events:
            per_user[user_id].append(n)
        results = await asyncio.gather(*(read_events(s, len(per_user[u])) for u, s in sockets))
        elapsed = time.monotonic() - started
        for (user_id, _), frames in zip(sockets, results, strict=True):
            assert sorted(f["data"]["n"] for f in frames) == per_user[user_id], f"{user_id}: not each once"
            assert [f["offset"] for f in frames] == list(range(1, len(per_user[user_id]) + 1))
        received = sum(i.metrics()[RECEIVED] for i in instances)
        expected = sum(len(placement[user_id]) for user_id, _ in events)
        mean_instances = sum(len(w) for w in placement.values()) / USERS
        ratio = received / events_published
        print(
            f"\n{events_published} events, {USERS} users on {INSTANCES} instances, "
            f"{len(sockets)} connections: "
            f"received {received:.0f} ({ratio:.3f} per event; mean instances per user "
            f"{mean_instances:.3f}; a single channel would be {INSTANCES}), {elapsed:.1f} s"
        )
        assert received == expected, "an instance received an event of a user it does not hold"
        assert ratio <= mean_instances * 1.05
        await asyncio.gather(*(s.close() for _, s in sockets))

    asyncio.run(scenario())
    for instance in instances:
        instance.wait_idle(timeout=10.0)
        eventually(instance.metrics, lambda m: m[USER_CHANNELS] == 0, timeout=5.0, what="no user channel")
    assert user_channels_in_redis(redis_server) == []


def test_an_instance_stops_receiving_a_user_when_its_last_connection_closes_over_many_cycles(
    start_instance: StartInstance, redis_server: RedisServer
) -> None:
    redis_server.client().flushall()
    a, b = start_instance(), start_instance()
    admin = {"Authorization": f"Bearer {a.token('operator', admin=True)}"}
    tokens = {f"churn-{n}": a.token(f"churn-{n}") for n in range(10)}

    def publish(instance: ServerProcess, user_id: str, n: int) -> None:
        body = {"user_id": user_id, "thread_id": None, "event": "e", "data": {"n": n}}
        assert instance.http.post("/api/publish", headers=admin, json=body).status_code == 200

    async def scenario() -> None:
        witness, _ = await open_socket(a.ws_url, a.token("witness"))
        stays_on_b, _ = await open_socket(b.ws_url, tokens["churn-0"])
        checks = 0
        for cycle in range(CYCLES):
            user_id = f"churn-{cycle % len(tokens)}"
            socket, _ = await open_socket(a.ws_url, tokens[user_id])
            if cycle % 50 == 0:
                publish(b, user_id, cycle)
                assert (await receive(socket))["data"]["n"] == cycle, "the joined user's event"
            await socket.close()
            if cycle % 50 == 25:
                eventually(a.metrics, lambda m: m[USER_CHANNELS] == 1, timeout=5.0, what="only the witness")
                before = a.metrics()[RECEIVED]
                publish(b, user_id, cycle)
                publish(b, "witness", cycle)
                assert (await receive(witness))["data"]["n"] == cycle
                # One Redis connection carries both channels in publish order: had a still held
                # the closed user's channel, its event would have been counted before this one.
                assert a.metrics()[RECEIVED] == before + 1, f"{user_id}'s event still reached a"
                checks += 1
        assert checks == CYCLES // 50
        await witness.close()
        publish(b, "churn-0", -1)
        expected = [cycle for cycle in range(0, CYCLES, 50) if cycle % len(tokens) == 0] + [-1]
        on_b = [(await receive(stays_on_b))["data"]["n"] for _ in expected]
        assert on_b == expected, "the connection on b got each of its user's events once"
        assert await no_more_frames(stays_on_b)
        await stays_on_b.close()

    asyncio.run(scenario())
    finals = []
    for instance in (a, b):
        instance.wait_idle(timeout=10.0)
        final = eventually(instance.metrics, lambda m: m[USER_CHANNELS] == 0, timeout=5.0, what="no channel")
        assert final[JOINS] == final[LEAVES] > 0
        finals.append(final)
    assert user_channels_in_redis(redis_server) == []
    assert finals[0][JOINS] >= 1 + CYCLES // 50, "after each check, the next cycle joins again"
