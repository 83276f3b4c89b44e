"""The lease renewal and release loops survive what they cannot parse: a lease key of the wrong
type in a real Redis is logged, counted in ``wsguard_background_errors_total{task}``, and every
other user's leases are still renewed and released."""

import asyncio

from redis import Redis
from tests.redis.conftest import LEASE_TTL, StartInstance
from wsguard.backends.redis.keyspace import Keys
from wsguard.processes.clients import open_socket
from wsguard.processes.redis_server import RedisServer
from wsguard.processes.wait import eventually

RENEWAL = 'wsguard_background_errors_total{task="lease_renewal"}'
RELEASE = 'wsguard_background_errors_total{task="lease_release"}'


def _lease_expiry_ms(redis: Redis, user_id: str) -> int:
    """The latest expiry among the user's leases (0 when it holds none)."""
    values = redis.hvals(Keys("wsguard").leases(user_id))
    return max((int(value.split()[0]) for value in values), default=0)


def test_a_wrong_type_lease_key_is_counted_and_the_loops_go_on(
    redis_server: RedisServer, start_instance: StartInstance
) -> None:
    redis_server.client().flushall()
    instance = start_instance()
    redis = redis_server.client()

    async def scenario() -> None:
        victim, _ = await open_socket(instance.ws_url, instance.token("victim"))
        healthy, _ = await open_socket(instance.ws_url, instance.token("healthy"))
        key = Keys("wsguard").leases("victim")
        redis.delete(key)
        redis.set(key, "not a hash")
        counted = eventually(
            instance.metrics,
            lambda m: m.get(RENEWAL, 0) >= 2,
            timeout=10 * LEASE_TTL,
            what="two renewals that met the wrong type, counted",
        )
        assert counted[RENEWAL] >= 2, "the renewal loop must go on after the first"
        renewed_at = _lease_expiry_ms(redis, "healthy")
        eventually(
            lambda: _lease_expiry_ms(redis, "healthy"),
            lambda expiry: expiry > renewed_at,
            timeout=10 * LEASE_TTL,
            what="the healthy user's lease renewed again",
        )
        await victim.close()
        eventually(
            instance.metrics,
            lambda m: m.get(RELEASE, 0) >= 1,
            timeout=10.0,
            what="the release that met the wrong type, counted",
        )
        await healthy.close()
        eventually(
            lambda: _lease_expiry_ms(redis, "healthy"),
            lambda expiry: expiry == 0,
            timeout=10.0,
            what="the healthy user's lease released after the failed release",
        )

    asyncio.run(scenario())
