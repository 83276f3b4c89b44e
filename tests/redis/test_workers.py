"""``wsguard serve --workers 2`` on a private Redis: both workers accept on the one port, the
per-user limit is shared between them, and SIGTERM drains every worker."""

import asyncio
import time

from websockets.asyncio.client import ClientConnection

from tests.redis.cluster_clients import close_code
from tests.redis.conftest import instance_flags
from wsguard.backends.redis.keyspace import Keys
from wsguard.processes import ServerProcess
from wsguard.processes.clients import open_socket
from wsguard.processes.redis_server import RedisServer

LIMIT = 3
BOTH_SERVING_WITHIN = 30.0
"""Seconds for both workers to have accepted a connection (the second may still be starting)."""


def test_two_workers_share_one_port_and_one_per_user_limit(redis_server: RedisServer) -> None:
    flags = instance_flags(redis_server.url, "--workers", "2", "--max-connections-per-user", str(LIMIT))
    server = ServerProcess(*flags).start()
    leases = Keys().leases("alice")

    async def scenario() -> None:
        token = server.token("alice")
        opened: list[ClientConnection] = []
        served_by: dict[str, str] = {}
        deadline = time.monotonic() + BOTH_SERVING_WITHIN
        with redis_server.client() as redis:
            while time.monotonic() < deadline and (
                len(set(served_by.values())) < 2 or len(opened) < 2 * LIMIT
            ):
                if opened:
                    await asyncio.sleep(0.02)
                socket, welcome = await open_socket(server.ws_url, token)
                opened.append(socket)
                lease = redis.hget(leases, welcome["connection_id"])
                assert lease is not None, "an admitted connection holds a lease"
                served_by[welcome["connection_id"]] = lease.decode().split()[2]
                assert redis.hlen(leases) <= LIMIT, "the limit holds across workers"
        instances = set(served_by.values())
        assert len(instances) == 2, (
            f"one worker served all {len(opened)} connections in {BOTH_SERVING_WITHIN}s"
        )
        evicted = opened[:-LIMIT]
        codes = await asyncio.gather(*(close_code(socket, timeout=10.0) for socket in evicted))
        assert codes == [4001] * len(evicted), codes
        newest = opened[-LIMIT:]
        assert [socket.close_code for socket in newest] == [None] * LIMIT
        with redis_server.client() as redis:
            assert redis.hlen(leases) == LIMIT
        assert server.stop() == 0, "SIGTERM drains every worker and the parent exits 0"
        drained = await asyncio.gather(*(close_code(socket, timeout=10.0) for socket in newest))
        assert drained == [1001] * LIMIT

    try:
        asyncio.run(scenario())
    finally:
        server.stop()
