"""Three wsguard processes on one private Redis behave as one server: the per-user limit holds
across them, events published anywhere reach every connection once, and a killed instance
neither locks its users out nor loses a reconnecting client's events."""

import asyncio
import threading
import time

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.redis.cluster_clients import (
    AnyRedis,
    close_code,
    keys_of,
    lease_count,
    lease_keys,
    no_more_frames,
    open_or_refused,
    publish,
    read_until_subscribed,
    subscribe,
)
from tests.redis.conftest import LEASE_TTL, StartInstance
from wsguard.processes import eventually
from wsguard.processes.clients import Frame, open_socket, receive, send

LIMIT = 20


def _cluster_idle(instances: list, redis_server: AnyRedis) -> None:  # type: ignore[type-arg]
    for instance in instances:
        instance.wait_idle(timeout=3.0)
    eventually(lambda: lease_keys(redis_server), lambda keys: keys == [], timeout=3.0, what="no leases left")


class LeaseSampler:
    """Reads the user's lease count in Redis every few milliseconds, in a thread, and keeps the peak."""

    def __init__(self, redis_server: AnyRedis, user_id: str) -> None:
        self.redis_server, self.user_id = redis_server, user_id
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        key = keys_of(self.redis_server).leases(self.user_id)
        with self.redis_server.client() as client:
            while not self._stop.is_set():
                self.peak = max(self.peak, client.hlen(key))
                self.samples += 1
                time.sleep(0.002)

    def __enter__(self) -> "LeaseSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_twenty_on_a_then_five_on_b_close_the_five_oldest_on_a(
    start_instance: StartInstance, redis_server: AnyRedis
) -> None:
    a, b, c = start_instance(), start_instance(), start_instance()

    async def scenario() -> None:
        token = a.token("burst")
        on_a = [(await open_socket(a.ws_url, token))[0] for _ in range(LIMIT)]
        assert lease_count(redis_server, "burst") == LIMIT
        on_b: list[ClientConnection] = []
        with LeaseSampler(redis_server, "burst") as sampler:
            for _ in range(5):
                still_open = sum(1 for s in on_a + on_b if s.close_code is None)
                assert still_open <= LIMIT, f"{still_open} open across the cluster"
                on_b.append((await open_socket(b.ws_url, token))[0])
                await asyncio.sleep(1 / 15)
        codes = await asyncio.gather(*(close_code(s) for s in on_a[:5]))
        assert codes == [4001] * 5, codes
        assert all(s.close_reason == "superseded" for s in on_a[:5])
        assert sampler.samples > 10
        assert sampler.peak <= LIMIT, sampler.peak
        for survivor in on_a[5:] + on_b:
            await send(survivor, type="ping")
            assert (await receive(survivor))["type"] == "pong"
        counts = [i.metrics()["wsguard_connections_active"] for i in (a, b, c)]
        assert counts == [15, 5, 0], counts
        assert a.metrics()['wsguard_connections_closed_total{reason="superseded"}'] == 5
        assert b.metrics()["wsguard_limit_evictions_total"] == 5
        await asyncio.gather(*(s.close() for s in on_a[5:] + on_b))

    asyncio.run(scenario())
    _cluster_idle([a, b, c], redis_server)


def test_an_event_published_on_a_reaches_b_and_c_exactly_once(
    start_instance: StartInstance, redis_server: AnyRedis
) -> None:
    a, b, c = start_instance(), start_instance(), start_instance()
    admin = a.auth("operator", admin=True)

    async def scenario() -> None:
        token = a.token("fan")
        sockets = [(await open_socket(i.ws_url, token))[0] for i in (b, b, c, c)]
        for socket in sockets:
            assert (await subscribe(socket, "t1"))["recovered"] is False
        expected_thread = list(range(1, 21))
        for n in expected_thread:
            assert publish(a, admin, "fan", "t1", "step", {"n": n}).json() == {"offset": n}
            assert publish(a, admin, "fan", None, "note", {"n": n}).status_code == 200
        publish(a, admin, "fan", None, "done", {})
        publish(a, admin, "someone-else", None, "not-yours", {})
        for socket in sockets:
            frames: list[Frame] = []
            while not frames or frames[-1]["event"] != "done":
                frames.append(await receive(socket))
            assert [f["offset"] for f in frames if f["thread_id"] == "t1"] == expected_thread
            assert [f["data"]["n"] for f in frames if f["event"] == "note"] == expected_thread
            assert len(frames) == 41
            assert await no_more_frames(socket)
        assert sum(i.metrics()["wsguard_events_delivered_total"] for i in (a, b, c)) >= 4 * 41
        await asyncio.gather(*(s.close() for s in sockets))

    asyncio.run(scenario())
    _cluster_idle([a, b, c], redis_server)


def test_kill_9_frees_the_dead_instances_leases_within_the_ttl(
    start_instance: StartInstance, redis_server: AnyRedis
) -> None:
    doomed, survivor = start_instance("--limit-policy", "reject"), start_instance("--limit-policy", "reject")

    async def scenario() -> float:
        token = survivor.token("orphaned")
        [(await open_socket(doomed.ws_url, token))[0] for _ in range(10)]
        doomed.kill()
        killed_at = time.monotonic()
        held = [await open_or_refused(survivor.ws_url, token) for _ in range(11)]
        assert held[-1] == 4029, "the dead instance's 10 leases still count until they expire"
        live = [s for s in held if isinstance(s, ClientConnection)]
        assert len(live) == 10
        await asyncio.gather(*(s.close() for s in live))
        fresh: list[ClientConnection] = []
        while len(fresh) < LIMIT:
            opened = await open_or_refused(survivor.ws_url, token)
            if isinstance(opened, int):
                assert opened == 4029
                assert time.monotonic() - killed_at < LEASE_TTL + 1.5, "leases outlived their TTL"
                await asyncio.sleep(0.05)
                continue
            fresh.append(opened)
        admitted_after = time.monotonic() - killed_at
        assert lease_count(redis_server, "orphaned") == LIMIT
        for socket in fresh:
            await send(socket, type="ping")
            assert (await receive(socket))["type"] == "pong"
        await asyncio.gather(*(s.close() for s in fresh))
        return admitted_after

    admitted_after = asyncio.run(scenario())
    assert admitted_after <= LEASE_TTL + 1.0
    _cluster_idle([survivor], redis_server)


def test_a_client_whose_instance_is_killed_recovers_every_event_on_another(
    start_instance: StartInstance, redis_server: AnyRedis
) -> None:
    victim, publisher, rescuer = start_instance(), start_instance(), start_instance()
    admin = publisher.auth("operator", admin=True)
    total = 40

    def publish_all() -> None:
        for n in range(1, total + 1):
            response = publish(publisher, admin, "mover", "job", "step", {"n": n})
            assert response.json()["offset"] == n
            time.sleep(0.02)

    async def scenario() -> list[int]:
        token = victim.token("mover")
        socket, welcome = await open_socket(victim.ws_url, token)
        subscribed = await subscribe(socket, "job")
        epoch, seen = subscribed["epoch"], list[int]()
        feeder = asyncio.create_task(asyncio.to_thread(publish_all))
        try:
            while len(seen) < 12:
                seen.append((await receive(socket))["offset"])
            victim.kill()
            while True:
                seen.append((await receive(socket))["offset"])
        except ConnectionClosed:
            pass
        since = {"epoch": epoch, "offset": seen[-1]}
        moved, _ = await open_socket(rescuer.ws_url, token, resume=welcome["session_id"])
        frames = await read_until_subscribed(moved, "job", since)
        assert frames[-1]["recovered"] is True
        seen += [f["offset"] for f in frames[:-1]]
        await feeder
        while seen[-1] < total:
            seen.append((await receive(moved))["offset"])
        assert await no_more_frames(moved)
        await moved.close()
        return seen

    seen = asyncio.run(scenario())
    assert seen == list(range(1, total + 1)), seen
    _cluster_idle([publisher, rescuer], redis_server)
