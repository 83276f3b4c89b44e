"""Figures for the Redis backend on loopback: cross-instance delivery latency, admission
throughput of the Lua path, and the time from kill -9 to the user being admitted again.

Run: ``.venv/bin/python -m tests.redis.bench_cluster`` (starts its own redis-server and instances);
with ``--redis-cluster``, on a private Redis Cluster of three masters instead (redis-server 7).
"""

import argparse
import asyncio
import statistics
import time

import httpx
from websockets.asyncio.client import ClientConnection

from tests.redis.cluster_clients import AnyRedis, lease_count, open_or_refused, subscribe
from tests.redis.conftest import LEASE_TTL, instance_flags
from wsguard.backends.redis import RedisBackend
from wsguard.processes import ServerProcess
from wsguard.processes.clients import open_socket, receive
from wsguard.processes.redis_cluster import RedisClusterServers
from wsguard.processes.redis_server import RedisServer
from wsguard.settings import LimitPolicy


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def delivery_latency(redis_url: str, events: int = 1000) -> None:
    """POST /api/publish on A to the event frame read from B (both by this process's clock)."""
    with ServerProcess(*instance_flags(redis_url)) as a, ServerProcess(*instance_flags(redis_url)) as b:
        socket, _ = await open_socket(b.ws_url, b.token("bench"))
        await subscribe(socket, "lat")
        latencies = []
        async with httpx.AsyncClient(base_url=a.base_url, headers=a.auth("op", admin=True)) as http:
            body = {"user_id": "bench", "thread_id": "lat", "event": "e", "data": {}}
            for _ in range(events):
                started = time.perf_counter()
                sent = asyncio.create_task(http.post("/api/publish", json=body))
                frame = await receive(socket)
                latencies.append(time.perf_counter() - started)
                assert frame["type"] == "event"
                assert (await sent).status_code == 200
        await socket.close()
    ms = [v * 1000 for v in latencies]
    print(
        f"cross-instance delivery, {events} events: p50 {_percentile(ms, 0.5):.2f} ms, "
        f"p99 {_percentile(ms, 0.99):.2f} ms, mean {statistics.mean(ms):.2f} ms"
    )


async def admission_throughput(redis_url: str, admissions: int = 20000, concurrency: int = 64) -> None:
    """Admit-then-release through the backend's Lua path, 200 users of limit 20, many in flight."""
    backend = RedisBackend(
        redis_url,
        max_per_user=20,
        policy=LimitPolicy.EVICT_OLDEST,
        lease_ttl=15,
        retention_events=100,
        retention_seconds=60,
    )

    def deliver(envelope: object) -> None:
        return None

    await backend.start(deliver)
    queue = list(range(admissions))
    evicted = 0

    async def worker() -> None:
        nonlocal evicted
        while queue:
            n = queue.pop()
            decision = await backend.admit(f"user{n % 200}", f"conn_{n}", "ses", takeover=False)
            assert decision is not None
            assert decision.admitted
            evicted += len(decision.closes)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await backend.close()
    print(
        f"admission (Lua, evict_oldest, {concurrency} in flight): {admissions / elapsed:,.0f} admissions/s "
        f"({admissions} in {elapsed:.2f} s, {evicted} evictions)"
    )


async def readmission_after_kill(redis_server: AnyRedis) -> None:
    """Reject policy, limit 20: X holds all 20, is killed; how long until Y admits 20 new ones."""
    flags = instance_flags(redis_server.url, "--limit-policy", "reject")
    with ServerProcess(*flags) as doomed, ServerProcess(*flags) as survivor:
        token = survivor.token("victim")
        for _ in range(20):
            await open_socket(doomed.ws_url, token)
        doomed.kill()
        killed_at = time.perf_counter()
        held: list[ClientConnection] = []
        attempts = 0
        while len(held) < 20:
            attempts += 1
            opened = await open_or_refused(survivor.ws_url, token)
            if isinstance(opened, int):
                await asyncio.sleep(0.01)
                continue
            held.append(opened)
        first_ok = time.perf_counter() - killed_at
        assert lease_count(redis_server, "victim") == 20
        await asyncio.gather(*(s.close() for s in held))
    print(
        f"kill -9 to all 20 re-admitted (lease TTL {LEASE_TTL} s, renewal every {LEASE_TTL / 3:.2f} s): "
        f"{first_ok:.2f} s ({attempts - 20} refusals with 4029 meanwhile)"
    )


async def main(redis_cluster: bool) -> None:
    shared = RedisClusterServers(masters=3) if redis_cluster else RedisServer()
    with shared as redis_server:
        await delivery_latency(redis_server.url)
        await admission_throughput(redis_server.url)
        await readmission_after_kill(redis_server)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-cluster", action="store_true", help="on a Redis Cluster of three masters")
    asyncio.run(main(parser.parse_args().redis_cluster))
