"""Clients that stop reading: one stalled connection never holds more than the queue limit (in
the admin endpoint's unsent bytes and in the server's memory per connection, against a server
that holds everything); and 200 stalled readers are all closed with 4008, their file descriptors
released, while a well-behaved user's events keep arriving promptly."""

import asyncio
import base64
import os
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import datetime

import httpx
import psutil

from tests.leaktest.support import BROKEN_SERVERS
from wsguard.leaktest.client import Api, Tab, Target, open_tab
from wsguard.processes import ServerProcess, StartServer, eventually
from wsguard.processes.clients import open_socket, receive, send

SLOW_USERS = 20
TABS_PER_USER = 10
QUEUE_LIMIT = 512 * 1024
EVENT_BYTES = 60_000
EVENTS_PER_USER = (2 * 1024 * 1024) // EVENT_BYTES + 2
WRITE_TIMEOUT = 2.0


BLOBS = [base64.b64encode(os.urandom(EVENT_BYTES * 3 // 4)).decode() for _ in range(8)]
"""Random bytes in base64: no frame compresses."""

HELD_USERS = 12
"""Stalled connections in the holding test, one per user, so that no two share a frame."""
HELD_LIMIT = 64 * 1024
HELD_EVENTS = 32 * HELD_LIMIT // EVENT_BYTES
"""About 2 MiB published to each stalled connection: 32 times its queue limit."""
HELD_PUBLISHED = HELD_EVENTS * EVENT_BYTES
HELD_FLAGS = (
    "--queue-limit-bytes", str(HELD_LIMIT),
    "--write-timeout", "60",
    "--retention-events", "1",
    "--connect-rate-per-user", "0",
    "--heartbeat-interval", "60",
)  # fmt: skip
"""Only the queue limit can cut a stalled reader off here (the write timeout is a minute), and
the thread log keeps one event, so that what memory holds is what the connections hold."""


@dataclass(frozen=True)
class Held:
    """What stalled connections held while events were published to them."""

    most_unsent: int
    """The largest ``queue_bytes`` the admin endpoint showed for any of them."""
    rss_growth: int
    """The server's peak RSS during the flood, over its RSS before it."""

    @property
    def growth_per_connection(self) -> float:
        return self.rss_growth / HELD_USERS


async def _hold(server: ServerProcess) -> Held:
    """Stall one connection per user, publish ``HELD_PUBLISHED`` bytes to each, and watch."""
    process = psutil.Process(server.pid)
    target = Target(
        server.ws_url, f"{server.base_url}/metrics", f"{server.base_url}/api/dev/tokens", server.pid
    )
    users = [f"held-{n}" for n in range(HELD_USERS)]
    most_unsent = 0
    peak_rss = 0
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        api = Api(target, http)
        admin = await api.auth("ops", admin=True)
        tabs: list[Tab] = []  # referenced until the end: a collected tab would close its socket
        for user in users:
            tab = await open_tab(api, user, user, receive_buffer=4096)
            tabs.append(tab)
            await tab.subscribe("firehose")
            tab.stall()
            body = {"user_id": user, "thread_id": "firehose", "event": "warm-up", "data": {}}
            (await http.post("/api/publish", json=body, headers=admin)).raise_for_status()

        async def probe_unsent() -> int:
            replies = await asyncio.gather(
                *(http.get(f"/api/admin/users/{user}/connections", headers=admin) for user in users)
            )
            return max((c["queue_bytes"] for r in replies for c in r.raise_for_status().json()), default=0)

        async def watch(stop: asyncio.Event) -> None:
            nonlocal most_unsent, peak_rss
            while not stop.is_set():
                peak_rss = max(peak_rss, process.memory_info().rss)
                most_unsent = max(most_unsent, await probe_unsent())
                await asyncio.sleep(0.02)

        async def flood(user: str) -> None:
            for n in range(HELD_EVENTS):
                data = {"n": n, "blob": BLOBS[n % len(BLOBS)]}
                body = {"user_id": user, "thread_id": "firehose", "event": "blob", "data": data}
                (await http.post("/api/publish", json=body, headers=admin)).raise_for_status()

        rss_before = process.memory_info().rss
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(stop))
        await asyncio.gather(*(flood(user) for user in users))
        stop.set()
        await watcher
        peak_rss = max(peak_rss, process.memory_info().rss)
        most_unsent = max(most_unsent, await probe_unsent())
        assert all(tab.stalled for tab in tabs)
    return Held(most_unsent, peak_rss - rss_before)


def test_a_stalled_connection_holds_no_more_than_the_queue_limit(start_server: StartServer) -> None:
    server = start_server(*HELD_FLAGS)
    held = asyncio.run(_hold(server))
    closed = eventually(
        server.metrics,
        lambda m: m.get('wsguard_connections_closed_total{reason="slow_consumer"}', 0) >= HELD_USERS,
        timeout=10.0,
        what="every stalled connection closed as a slow consumer",
    )['wsguard_connections_closed_total{reason="slow_consumer"}']
    assert closed == HELD_USERS
    assert held.most_unsent <= HELD_LIMIT, f"a connection held {held.most_unsent} unsent bytes"
    # A connection holds at most its queue limit; what is left is the one event per thread the
    # log keeps and the garbage of parsing 2 MiB of requests, far from the 2 MiB it was sent.
    assert held.growth_per_connection < HELD_PUBLISHED / 4, (
        f"RSS grew {held.growth_per_connection / 1024:.0f} KiB per stalled connection "
        f"for {HELD_PUBLISHED / 1024:.0f} KiB published to each"
    )
    print(
        f"\nheld: at most {held.most_unsent} unsent bytes (limit {HELD_LIMIT}), RSS growth "
        f"{held.growth_per_connection / 1024:.0f} KiB per stalled connection for "
        f"{HELD_PUBLISHED / 1024:.0f} KiB published to each"
    )


def test_the_holding_bounds_catch_a_server_without_a_queue_limit(start_server: StartServer) -> None:
    """The same measurement against a server whose queue grows without bound breaks both."""
    broken = [sys.executable, str(BROKEN_SERVERS), "unbounded_queue"]
    held = asyncio.run(_hold(start_server(*HELD_FLAGS, command=broken)))
    assert held.most_unsent > 4 * HELD_LIMIT, held
    assert held.growth_per_connection >= HELD_PUBLISHED / 4, held
    print(
        f"\nunbounded queue: {held.most_unsent} unsent bytes, RSS growth "
        f"{held.growth_per_connection / 1024:.0f} KiB per stalled connection"
    )


def test_two_hundred_stalled_readers_are_cut_off_and_others_are_not_slowed(
    start_server: StartServer,
) -> None:
    server = start_server(
        "--queue-limit-bytes",
        str(QUEUE_LIMIT),
        "--write-timeout",
        str(WRITE_TIMEOUT),
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
    latencies: list[float] = []

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
            samplers = [asyncio.create_task(well_behaved(stop, admin, http))]
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
        process.num_fds, lambda fds: fds <= baseline_fds + 1, timeout=5.0, what="server fds back to baseline"
    )
    p99 = statistics.quantiles(latencies, n=100)[98]
    assert len(latencies) >= 10
    # A stalled socket that held up the server would hold the calm user's events for the write
    # timeout (2 s); a loaded machine adds tens to hundreds of milliseconds, never a second.
    assert p99 < WRITE_TIMEOUT / 2, f"well-behaved p99 latency {p99 * 1000:.1f} ms"
    print(
        f"\nslow consumers: well-behaved p50 {statistics.median(latencies) * 1000:.1f} ms "
        f"p99 {p99 * 1000:.1f} ms over {len(latencies)} events"
    )
