"""Tickets on Redis: one from any instance opens one connection on any instance, once; they expire
by Redis's clock; the per-user cap counts every instance's; and with Redis gone, redeeming and
issuing answer 503 with ``Retry-After`` rather than admit on a guess or fail with a 500.

Real ``wsguard serve`` processes and a real Redis, a real master watched by a Sentinel, or
(imported by ``tests/redis/test_redis_cluster.py``) a real Redis Cluster; nothing is mocked.
"""

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.redis.cluster_clients import AnyRedis, close_code, keys_of
from tests.redis.conftest import LEASE_TTL, StartInstance, instance_flags
from tests.redis.test_backend import _started
from wsguard.backends.redis.keyspace import ticket_digest
from wsguard.processes import ServerProcess, eventually
from wsguard.processes.clients import Frame, receive
from wsguard.processes.redis_server import RedisServer, SentinelGroup

SHARED_APP = Path(__file__).with_name("shared_app.py")
RACERS = 10


def shared_app(redis_url: str, *flags: str) -> ServerProcess:
    """An instance of ``shared_app.py``: its own ``authenticate`` (``X-User``), on ``redis_url``."""
    command = [sys.executable, str(SHARED_APP)]
    return ServerProcess("--backend", redis_url, *flags, command=command, dev=False)


def ticket_of(instance: ServerProcess, headers: dict[str, str]) -> str:
    response = instance.http.post("/api/tickets", headers=headers)
    assert response.status_code == 200, response.text
    ticket: str = response.json()["ticket"]
    return ticket


async def open_with_ticket(
    instance: ServerProcess, ticket: str, **query: str
) -> tuple[ClientConnection, Frame]:
    extra = "".join(f"&{name}={value}" for name, value in query.items())
    socket = await connect(f"{instance.ws_url}?ticket={ticket}{extra}", open_timeout=10)
    welcome = await receive(socket)
    assert welcome["type"] == "welcome", welcome
    return socket, welcome


async def refused(instance: ServerProcess, ticket: str) -> tuple[int, dict[str, str]]:
    """The HTTP status (and headers) an upgrade with ``ticket`` is refused with."""
    with pytest.raises(InvalidStatus) as refusal:
        await connect(f"{instance.ws_url}?ticket={ticket}", open_timeout=10)
    response = refusal.value.response
    return response.status_code, dict(response.headers)


def test_a_ticket_from_a_opens_one_connection_on_b_once_and_is_refused_everywhere_after(
    start_instance: StartInstance, redis_server: AnyRedis
) -> None:
    a, b = start_instance(), start_instance()
    keys = keys_of(redis_server)
    ticket = ticket_of(a, a.auth("roamer"))
    stored = keys.ticket(ticket_digest(ticket))
    with redis_server.client() as client:
        assert client.exists(stored) == 1
        assert 0 < client.pttl(stored) <= 30_000, "Redis expires it with the ticket's lifetime"
        assert ticket.encode() not in (client.get(stored) or b""), "Redis never holds the ticket itself"
        assert client.zcard(keys.user_tickets("roamer")) == 1, "counted toward the user's cap"

    async def scenario() -> None:
        socket, welcome = await open_with_ticket(b, ticket)
        assert welcome["user_id"] == "roamer"
        for instance in (a, b):
            assert (await refused(instance, ticket))[0] == 401, "a ticket is used once, cluster-wide"
        await socket.close()

        racing = ticket_of(b, b.auth("racer"))

        async def attempt(instance: ServerProcess) -> int:
            try:
                opened, _ = await open_with_ticket(instance, racing)
            except InvalidStatus as error:
                return error.response.status_code
            await opened.close()
            return 101

        outcomes = await asyncio.gather(*(attempt((a, b)[n % 2]) for n in range(RACERS)))
        assert sorted(outcomes) == [101] + [401] * (RACERS - 1), outcomes

    asyncio.run(scenario())
    with redis_server.client() as client:
        assert client.exists(stored) == 0
        assert client.zcard(keys.user_tickets("roamer")) == 0, "a used ticket leaves the cap at once"
    for instance in (a, b):
        instance.wait_idle(timeout=LEASE_TTL * 2)


def test_the_cap_on_unused_tickets_counts_every_instances(start_instance: StartInstance) -> None:
    flags = ("--max-tickets-per-user", "3", "--ticket-rate-per-user", "0")
    a, b = start_instance(*flags), start_instance(*flags)
    alice = a.auth("capped")
    held = [ticket_of(a, alice), ticket_of(b, alice), ticket_of(a, alice)]
    for instance in (a, b):
        over = instance.http.post("/api/tickets", headers=alice)
        assert over.status_code == 429, over.text
        assert int(over.headers["retry-after"]) >= 1
    assert b.http.post("/api/tickets", headers=b.auth("someone-else")).status_code == 200

    async def use_one() -> None:
        socket, _ = await open_with_ticket(b, held[0])
        await socket.close()

    asyncio.run(use_one())
    ticket_of(a, alice)
    assert b.http.post("/api/tickets", headers=alice).status_code == 429


def test_an_expired_ticket_is_refused_and_the_identity_travels_whole(redis_server: AnyRedis) -> None:
    """On an embedding with its own ``authenticate``: a ticket lives ``--ticket-ttl`` on every
    instance, and carries the identity's expiry (the connection it opens on the other instance
    closes with 4401 when it passes)."""
    with (
        shared_app(redis_server.url, "--ticket-ttl", "0.5") as a,
        shared_app(redis_server.url, "--ticket-ttl", "0.5") as b,
    ):
        stale = ticket_of(a, {"X-User": "late"})
        time.sleep(1.0)

        async def scenario() -> None:
            for instance in (b, a):
                assert (await refused(instance, stale))[0] == 401, "expired"
            fresh = ticket_of(a, {"X-User": "late", "X-Expires-In": "1.5"})
            socket, welcome = await open_with_ticket(b, fresh)
            assert welcome["user_id"] == "late"
            opened = time.monotonic()
            assert await close_code(socket, timeout=5.0) == 4401, "the identity's expiry came along"
            assert 1.0 < time.monotonic() - opened < 3.0

        asyncio.run(scenario())


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, since the test kills it."""
    with RedisServer() as server:
        yield server


def test_with_redis_gone_redeeming_and_issuing_answer_503_with_retry_after(own_redis: RedisServer) -> None:
    with (
        ServerProcess(*instance_flags(own_redis.url)) as a,
        ServerProcess(*instance_flags(own_redis.url)) as b,
    ):
        headers = a.auth("outage")
        before = ticket_of(a, headers)
        own_redis.kill()

        async def redeem_everywhere() -> None:
            for instance in (b, a):
                status, answer = await refused(instance, before)
                assert status == 503, status
                assert int(answer["retry-after"]) >= 1

        asyncio.run(redeem_everywhere())
        for instance in (a, b):
            issued = instance.http.post("/api/tickets", headers=headers)
            assert issued.status_code == 503, issued.text
            assert int(issued.headers["retry-after"]) >= 1
        assert a.http.get("/healthz").status_code == 200

        own_redis.start()
        for instance in (a, b):
            eventually(
                instance.metrics,
                lambda m: m["wsguard_backend_up"] == 1,
                timeout=10,
                what="each instance back on Redis (until then it answers 503, rightly)",
            )
        after = ticket_of(b, headers)

        async def back() -> None:
            assert (await refused(a, before))[0] == 401, "the restarted Redis lost it, as it lost its data"
            socket, welcome = await open_with_ticket(a, after)
            assert welcome["user_id"] == "outage"
            await socket.close()

        asyncio.run(back())


def test_on_a_sentinel_watched_master_a_ticket_opens_one_connection_on_the_other_instance() -> None:
    with (
        SentinelGroup(sentinels=1, quorum=1, replicas=0) as group,
        ServerProcess(*instance_flags(group.url)) as a,
        ServerProcess(*instance_flags(group.url)) as b,
    ):
        ticket = ticket_of(b, b.auth("watched"))

        async def scenario() -> None:
            socket, welcome = await open_with_ticket(a, ticket)
            assert welcome["user_id"] == "watched"
            for instance in (a, b):
                assert (await refused(instance, ticket))[0] == 401
            await socket.close()

        asyncio.run(scenario())


def test_two_backends_redeeming_one_ticket_at_once_give_it_to_exactly_one(redis_server: AnyRedis) -> None:
    async def scenario() -> None:
        (one, _), (two, _) = await _started(redis_server.url), await _started(redis_server.url)
        try:
            assert await one.issue_ticket("tkt_race", "racer", '{"p":1}', 30.0, 2)
            assert await two.issue_ticket("tkt_race2", "racer", '{"p":2}', 30.0, 2)
            assert not await one.issue_ticket("tkt_race3", "racer", '{"p":3}', 30.0, 2), "the cap is 2"
            taken = await asyncio.gather(*(b.redeem_ticket("tkt_race") for b in (one, two) * 10))
            assert [t for t in taken if t is not None] == ['{"p":1}']
            assert await two.issue_ticket("tkt_race3", "racer", '{"p":3}', 30.0, 2), "its place came back"
            assert await one.redeem_ticket("tkt_race3") == '{"p":3}'
            assert await one.issue_ticket("tkt_uncapped", "racer", "{}", 0.2, 0)
            await asyncio.sleep(0.4)
            assert await two.redeem_ticket("tkt_uncapped") is None, "expired by Redis"
            assert await one.redeem_ticket("tkt_unknown") is None
            first = await one.shared_key("test", b"a" * 32)
            assert first == b"a" * 32
            assert await two.shared_key("test", b"b" * 32) == first, "the first one set wins"
        finally:
            await one.close()
            await two.close()

    asyncio.run(scenario())
