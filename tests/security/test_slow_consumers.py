"""200 clients stop reading while 2 MiB of incompressible events stream to each: every one is
closed with 4008 and its file descriptor released, the server's memory stays bounded by the
queue limit, and a well-behaved user's events keep arriving promptly."""

import asyncio
import base64
import os
import statistics
import time
from datetime import datetime

import httpx
import psutil

from wsguard.leaktest.client import Api, Tab, Target, open_tab
from wsguard.testing import StartServer, eventually
from wsguard.testing.clients import open_socket, receive, send

SLOW_USERS = 20
TABS_PER_USER = 10
QUEUE_LIMIT = 512 * 1024
EVENT_BYTES = 60_000
EVENTS_PER_USER = (2 * 1024 * 1024) // EVENT_BYTES + 2


BLOBS = [base64.b64encode(os.urandom(EVENT_BYTES * 3 // 4)).decode() for _ in range(8)]
"""Random bytes in base64: no frame compresses."""


def test_two_hundred_stalled_readers_are_cut_off_and_others_are_not_slowed(
    start_server: StartServer,
) -> None:
    server = start_server(
        "--queue-limit-bytes",
        str(QUEUE_LIMIT),
        "--write-timeout",
        "2",
        "--connect-rate-per-user",
        "0",
        "--heartbeat-interval",
        "60",
        "--max-connections-per-user",
        "50",
    )
    process = psutil.Process(server.pid)
    baseline_fds = process.num_fds()
    target = Target(
        server.ws_url, f"{server.base_url}/metrics", f"{server.base_url}/api/dev/tokens", server.pid
    )
    rss_samples: list[int] = []
    latencies: list[float] = []

    async def sample_rss(stop: asyncio.Event) -> None:
        while not stop.is_set():
            rss_samples.append(process.memory_info().rss)
            await asyncio.sleep(0.05)

    async def well_behaved(stop: asyncio.Event, admin: dict[str, str], http: httpx.AsyncClient) -> None:
        socket, _ = await open_socket(server.ws_url, server.token("calm-user"))
        await send(socket, type="subscribe", thread_id="calm")
        await receive(socket)
        while not stop.is_set():
            body = {"user_id": "calm-user", "thread_id": "calm", "event": "tick", "data": {}}
            await http.post("/api/publish", json=body, headers=admin)
            frame = await receive(socket)
            published_at = datetime.fromisoformat(frame["ts"]).timestamp()
            latencies.append(time.time() - published_at)
            await asyncio.sleep(0.02)
        await socket.close()

    async def flood(api: Api, http: httpx.AsyncClient, admin: dict[str, str], user: str) -> None:
        for n in range(EVENTS_PER_USER):
            body = {
                "user_id": user,
                "thread_id": "firehose",
                "event": "blob",
                "data": {"n": n, "blob": BLOBS[n % len(BLOBS)]},
            }
            response = await http.post("/api/publish", json=body, headers=admin)
            assert response.status_code == 200

    async def scenario() -> list[Tab]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            api = Api(target, http)
            admin = await api.auth("ops", admin=True)
            tabs: list[Tab] = []
            for u in range(SLOW_USERS):
                for t in range(TABS_PER_USER):
                    tab = await open_tab(api, f"slow-{u}", f"slow-{u}-{t}", receive_buffer=4096)
                    await tab.subscribe("firehose")
                    tab.stall()
                    tabs.append(tab)
            stop = asyncio.Event()
            samplers = [
                asyncio.create_task(sample_rss(stop)),
                asyncio.create_task(well_behaved(stop, admin, http)),
            ]
            await asyncio.gather(*(flood(api, http, admin, f"slow-{u}") for u in range(SLOW_USERS)))
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                metrics = server.metrics()
                if metrics.get('wsguard_connections_closed_total{reason="slow_consumer"}', 0) >= len(tabs):
                    break
                await asyncio.sleep(0.1)
            stop.set()
            await asyncio.gather(*samplers)
            return tabs

    tabs = asyncio.run(scenario())
    metrics = server.wait_idle(timeout=5.0)
    assert metrics['wsguard_connections_closed_total{reason="slow_consumer"}'] == len(tabs) == 200
    eventually(
        process.num_fds, lambda fds: fds <= baseline_fds + 1, timeout=1.5, what="server fds back to baseline"
    )
    peak = max(rss_samples)
    bound = 200 * QUEUE_LIMIT + 50 * 1024 * 1024
    assert peak < bound, f"peak RSS {peak / 2**20:.1f} MiB over {bound / 2**20:.1f} MiB"
    p99 = statistics.quantiles(latencies, n=100)[98]
    assert len(latencies) >= 10
    assert p99 < 0.1, f"well-behaved p99 latency {p99 * 1000:.1f} ms"
    print(
        f"\nslow consumers: peak RSS {peak / 2**20:.1f} MiB (bound {bound / 2**20:.0f} MiB), "
        f"well-behaved p50 {statistics.median(latencies) * 1000:.1f} ms p99 {p99 * 1000:.1f} ms "
        f"over {len(latencies)} events"
    )
