"""Three instances on one Redis behind the deploy kit's nginx (round robin, no affinity).

A rolling restart, and a crash (SIGKILL) of the instance that holds the most connections.

Chromium tabs with the browser client (tickets on every connection), Python clients (half with
tickets, half with a token header) and a publisher all go through nginx while every instance in
turn is restarted (SIGTERM, wait for the exit, start again). What must hold:

- every tab and client ends with every acknowledged event of its thread exactly once, in order,
  and with no ``recoveryfailed``;
- no ticket is refused: tickets issued through nginx open connections through nginx, wherever
  each request lands;
- the per-user limit is never exceeded (the user's lease count, read in Redis throughout);
- every instance's counts are back to 0 once the clients have left, and so are the leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from websockets.sync.client import connect as sync_connect

import wsguard.client
from tests.browser.conftest import Tabs
from tests.chromium import launch
from tests.system.nginx import Nginx
from wsguard.backends.redis.keyspace import Keys
from wsguard.processes import ServerProcess
from wsguard.processes.redis_server import RedisServer

SECRET = "wsguard-system-test-shared-secret-0123456789"
LIMIT = 4
CLIENTS_PER_USER = 3
PYTHON_USERS = ("py-0", "py-1")
TAB_USER = "tab-0"
PUBLISH_INTERVAL = 0.02


def thread_of(user: str) -> str:
    return f"chat-{user}"


@dataclass
class Received:
    """What one Python client handed the application."""

    offsets: list[int] = field(default_factory=list)
    recovery_failures: list[object] = field(default_factory=list)


class Load:
    """The Python clients, the publisher and the lease watcher, on an event loop of their own
    (the main thread drives Chromium and the restarts)."""

    def __init__(self, base_url: str, ws_url: str, tokens: dict[str, str], admin_token: str, redis_url: str):
        self.base_url = base_url
        self.ws_url = ws_url
        self.tokens = tokens
        self.admin_token = admin_token
        self.redis_url = redis_url
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.received: dict[str, list[Received]] = {user: [] for user in PYTHON_USERS}
        self.clients: list[wsguard.client.Client] = []
        self.acknowledged: dict[str, list[int]] = {user: [] for user in (*PYTHON_USERS, TAB_USER)}
        self.publish_failures: Counter[str] = Counter()
        self.max_leases: dict[str, int] = {}
        self.tickets_issued = 0
        self._publishing = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def run(self, coroutine: Awaitable[Any], timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)  # type: ignore[arg-type]

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        self._tasks += [asyncio.create_task(self._watch_leases()), asyncio.create_task(self._publish())]
        for user in PYTHON_USERS:
            for index in range(CLIENTS_PER_USER):
                if index % 2 == 0:
                    client = wsguard.client.connect(self.ws_url, ticket_provider=self._tickets(user))
                else:
                    client = wsguard.client.connect(self.ws_url, token=self.tokens[user])
                await client.start()
                await client.subscribe(thread_of(user))
                received = Received()
                self.received[user].append(received)
                self.clients.append(client)
                self._tasks.append(asyncio.create_task(self._consume(client, received)))

    def _tickets(self, user: str) -> Callable[[], Awaitable[str]]:
        provider = wsguard.client.http_ticket_provider(self.base_url, self.tokens[user])

        async def counted() -> str:
            self.tickets_issued += 1
            return await provider()

        return counted

    @staticmethod
    async def _consume(client: wsguard.client.Client, received: Received) -> None:
        async for item in client:
            if isinstance(item, wsguard.client.Event):
                assert item.offset is not None
                received.offsets.append(item.offset)
            else:
                received.recovery_failures.append(item)

    async def _publish(self) -> None:
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        users = [*PYTHON_USERS, TAB_USER]
        sequence = 0
        async with httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=5.0) as http:
            await self._publishing.wait()
            while not self._stopping.is_set():
                user = users[sequence % len(users)]
                body = {
                    "user_id": user,
                    "thread_id": thread_of(user),
                    "event": "step",
                    "data": {"n": sequence},
                }
                sequence += 1
                try:
                    response = await http.post("/api/publish", json=body)
                except httpx.TransportError as error:
                    self.publish_failures[type(error).__name__] += 1
                else:
                    if response.status_code == 200:
                        self.acknowledged[user].append(response.json()["offset"])
                    else:
                        self.publish_failures[str(response.status_code)] += 1
                await asyncio.sleep(PUBLISH_INTERVAL)

    async def _watch_leases(self) -> None:
        keys = Keys()
        async with Redis.from_url(self.redis_url) as redis:
            while not self._stopping.is_set():
                for user in (*PYTHON_USERS, TAB_USER):
                    held = int(await redis.hlen(keys.leases(user)))
                    self.max_leases[user] = max(self.max_leases.get(user, 0), held)
                await asyncio.sleep(0.01)

    def start_publishing(self) -> None:
        self.loop.call_soon_threadsafe(self._publishing.set)

    def stop_publishing(self) -> None:
        """Stop the publisher and the lease watcher, and wait for their last requests."""

        async def stop() -> None:
            self._stopping.set()
            await asyncio.gather(*self._tasks[:2], return_exceptions=True)

        self.run(stop())

    def publishing_stalled(self) -> Callable[[], list[str]]:
        """From now on: the users not yet acknowledged three more events each."""
        marks = {user: len(offsets) for user, offsets in self.acknowledged.items()}
        return lambda: [user for user, mark in marks.items() if len(self.acknowledged[user]) < mark + 3]

    def lease_counts(self) -> dict[str, int]:
        """Each user's leases in Redis now (read on a loop of its own: the load's may be closed)."""

        async def read() -> dict[str, int]:
            async with Redis.from_url(self.redis_url) as redis:
                return {user: int(await redis.hlen(Keys().leases(user))) for user in self.acknowledged}

        return asyncio.run(read())

    def close(self) -> None:
        async def close_all() -> None:
            self._stopping.set()
            for client in self.clients:
                await client.close()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(close_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def check_exactly_once(self) -> None:
        """Every Python client has every acknowledged event of its thread once, in order."""
        for user, clients in self.received.items():
            for received in clients:
                assert received.recovery_failures == []
                assert received.offsets == sorted(set(received.offsets)), f"{user}: repeated or out of order"
                assert set(self.acknowledged[user]) <= set(received.offsets)

    def missing(self, tabs: list[dict[str, Any]]) -> dict[str, Any]:
        """For each client and tab, the acknowledged offsets it has not received yet."""
        gaps: dict[str, Any] = {}
        for user, clients in self.received.items():
            for index, received in enumerate(clients):
                lacking = sorted(set(self.acknowledged[user]) - set(received.offsets))
                if lacking:
                    client = self.clients[PYTHON_USERS.index(user) * CLIENTS_PER_USER + index]
                    gaps[f"{user}/{index}"] = (lacking[:10], client.closed_reason, client.last_disconnect)
        for index, tab in enumerate(tabs):
            lacking = sorted(set(self.acknowledged[TAB_USER]) - set(tab["log"][thread_of(TAB_USER)]))
            if lacking:
                state = {key: tab[key] for key in ("state", "stopped", "failures", "stats")}
                gaps[f"tab/{index}"] = (lacking[:10], state)
        return gaps


def wait_until(lacking: Callable[[], Any], timeout: float, what: str) -> float:
    """Seconds until ``lacking()`` (what is still missing) is empty; fails with the last one seen."""
    started = time.monotonic()
    last: Any = None
    while time.monotonic() - started < timeout:
        last = lacking()
        if not last:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{what} did not hold within {timeout:g}s; last seen: {last}")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[RedisServer, list[ServerProcess], Nginx]]:
    with RedisServer() as redis:
        flags = (
            "--backend",
            redis.url,
            "--jwt-secret",
            SECRET,
            "--max-connections-per-user",
            str(LIMIT),
            "--drain-timeout",
            "5",
            "--lease-ttl",
            "3",
        )
        instances = [ServerProcess(*flags, log_path=tmp_path / f"instance-{n}.log") for n in range(3)]
        try:
            for instance in instances:
                instance.start()
            with Nginx([instance.port for instance in instances], tmp_path) as nginx:
                yield redis, instances, nginx
        finally:
            for instance in instances:
                instance.stop()


def test_tickets_issued_through_the_balancer_open_connections_on_any_instance(
    cluster: tuple[RedisServer, list[ServerProcess], Nginx],
) -> None:
    """Round robin sends the ticket request and the upgrade to different instances."""
    _, instances, nginx = cluster
    token = instances[0].token("ticket-user")
    with httpx.Client(base_url=nginx.base_url, headers={"Authorization": f"Bearer {token}"}) as http:
        for _ in range(12):
            ticket = http.post("/api/tickets").raise_for_status().json()["ticket"]
            with sync_connect(f"{nginx.ws_url}?ticket={ticket}") as socket:
                assert '"welcome"' in str(socket.recv(timeout=5))
    opened = [instance.metrics()["wsguard_connections_opened_total"] for instance in instances]
    assert sum(opened) == 12, opened
    assert sum(1 for count in opened if count) >= 2, f"every upgrade reached one instance: {opened}"
    for instance in instances:
        instance.wait_idle(timeout=10)


def test_a_rolling_restart_behind_nginx_loses_and_repeats_nothing(
    cluster: tuple[RedisServer, list[ServerProcess], Nginx],
) -> None:
    redis, instances, nginx = cluster
    tokens = {user: instances[0].token(user) for user in (*PYTHON_USERS, TAB_USER)}
    load = Load(nginx.base_url, nginx.ws_url, tokens, instances[0].token("publisher", admin=True), redis.url)
    recovery: list[float] = []
    with launch() as browser:
        tabs = Tabs(browser, nginx.base_url)
        try:
            load.start()
            for _ in range(CLIENTS_PER_USER):
                tabs.open(user=TAB_USER, threads=[thread_of(TAB_USER)], share=False)
            tabs.wait_ready()
            load.start_publishing()
            wait_until(lambda: len(load.acknowledged[TAB_USER]) < 10, 30, "ten events acknowledged")

            for instance in instances:
                started = time.monotonic()
                instance.restart()
                wait_until(load.publishing_stalled(), 30, "publishing through nginx after the restart")
                wait_until(lambda: load.missing(tabs.snapshots()), 30, "every acknowledged event everywhere")
                recovery.append(time.monotonic() - started)

            load.stop_publishing()
            wait_until(lambda: load.missing(tabs.snapshots()), 30, "every acknowledged event everywhere")
            snapshots = tabs.snapshots()
        finally:
            tabs.close()
            load.close()

    load.check_exactly_once()
    for tab in snapshots:
        offsets = tab["log"][thread_of(TAB_USER)]
        assert tab["failures"] == [], tab
        assert tab["stopped"] == [], tab
        assert offsets == sorted(set(offsets)), f"a tab's events repeated or out of order: {offsets}"
    assert all(held <= LIMIT for held in load.max_leases.values()), load.max_leases
    assert load.max_leases[TAB_USER] >= 1, "the lease watcher never saw a lease"
    for instance in instances:
        instance.wait_idle(timeout=15)
    wait_until(lambda: {u: n for u, n in load.lease_counts().items() if n}, 15, "no lease left in Redis")
    events = sum(len(offsets) for offsets in load.acknowledged.values())
    print(
        f"\nsystem: {events} events acknowledged, "
        f"publishes not acknowledged during the restarts {dict(load.publish_failures)}, "
        f"{load.tickets_issued} tickets by the Python clients, "
        f"reconnects {[c.connections_opened - 1 for c in load.clients]}, "
        f"recovery per restart {[f'{seconds:.2f}s' for seconds in recovery]}, "
        f"most leases held {load.max_leases}"
    )


def test_an_instance_killed_mid_stream_loses_nothing_retained(
    cluster: tuple[RedisServer, list[ServerProcess], Nginx],
) -> None:
    """SIGKILL: no drain, no close frame; the clients of the dead instance reconnect through
    nginx to the others and recover what they missed from Redis."""
    redis, instances, nginx = cluster
    tokens = {user: instances[0].token(user) for user in (*PYTHON_USERS, TAB_USER)}
    load = Load(nginx.base_url, nginx.ws_url, tokens, instances[0].token("publisher", admin=True), redis.url)
    try:
        load.start()
        load.start_publishing()
        wait_until(lambda: len(load.acknowledged[PYTHON_USERS[0]]) < 10, 30, "ten events acknowledged")
        held = [instance.metrics()["wsguard_connections_active"] for instance in instances]
        victim = instances[held.index(max(held))]
        started = time.monotonic()
        victim.kill()
        wait_until(load.publishing_stalled(), 30, "publishing through nginx after the kill")
        wait_until(lambda: load.missing([]), 30, "every acknowledged event everywhere")
        caught_up = time.monotonic() - started
        load.stop_publishing()
        wait_until(lambda: load.missing([]), 30, "every acknowledged event everywhere")
    finally:
        load.close()
    load.check_exactly_once()
    assert all(count <= LIMIT for count in load.max_leases.values()), load.max_leases
    for instance in instances:
        if instance is not victim:
            instance.wait_idle(timeout=15)
    wait_until(lambda: {u: n for u, n in load.lease_counts().items() if n}, 15, "no lease left in Redis")
    print(
        f"\nsystem, SIGKILL of the instance holding {max(held):.0f} of {sum(held):.0f} connections: "
        f"every client caught up {caught_up:.2f}s after the kill, "
        f"reconnects {[c.connections_opened - 1 for c in load.clients]}, most leases held {load.max_leases}"
    )
