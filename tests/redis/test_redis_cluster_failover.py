"""A Redis Cluster master killed (SIGKILL) while a user's thread events flow through it: its
replica takes over, and every event the cluster acknowledged is still there.

Three masters, each with one replica, and two wsguard instances: events for one user are posted
to the first instance without pause, a connection on the second is subscribed, and the master
that holds the user's slot is killed. While the slot has no master, publishing answers 503 (an
event is refused, never accepted and dropped); once the replica is promoted, publishing and
delivery resume, and a replay from offset 0 is compared with what was acknowledged.

Replication is asynchronous: an event the master acknowledged but had not yet sent to its
replica is lost with the master. On loopback that window is a few microseconds, so the test
holds every event acknowledged up to 100 ms before the kill to being kept, and counts (and
prints) any later ones that were lost: the figure docs/redis.md reports. Should the live
connection have been given an event the replica never got, the thread must restart in a new
epoch (the backend's lost-writes check), its live offsets starting again at 1, rather than
number the next events under offsets the connection already has.
"""

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.redis.cluster_clients import keys_of, read_until_subscribed, subscribe
from tests.redis.conftest import StartInstance, require_redis_cluster
from wsguard.processes.clients import Frame, open_socket, receive
from wsguard.processes.redis_cluster import RedisClusterServers

require_redis_cluster()

USER = "failover-user"
BEFORE = 40
"""Events acknowledged before the kill."""
AFTER = 40
"""Events acknowledged after the failover."""
REPLICATION_MARGIN = 0.1
"""Events acknowledged earlier than this before the kill must have reached the replica."""


@pytest.fixture
def redis_server() -> Iterator[RedisClusterServers]:
    """A cluster of its own (the test kills a master): three masters, one replica each."""
    with RedisClusterServers(masters=3, replicas=1) as cluster:
        yield cluster


@dataclass(frozen=True)
class Attempt:
    n: int
    status: int
    """HTTP status, or 0 when the request itself failed."""
    offset: int | None
    at: float


class Publisher:
    """Posts the user's thread events one after another, in a thread, recording every answer."""

    def __init__(self, post: Callable[[int], httpx.Response]) -> None:
        self._post = post
        self.attempts: list[Attempt] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                response = self._post(n)
                status, body = response.status_code, response.json()
            except httpx.HTTPError:
                status, body = 0, {}
            offset = body.get("offset") if status == 200 else None
            self.attempts.append(Attempt(n, status, offset, time.monotonic()))
            time.sleep(0.01)

    def accepted(self, since: float = 0.0) -> list[Attempt]:
        return [a for a in list(self.attempts) if a.status == 200 and a.at >= since]

    def __enter__(self) -> "Publisher":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class PostEvent:
    """POST /api/publish of event ``n`` of the user's thread."""

    def __init__(self, http: httpx.Client, admin: dict[str, str]) -> None:
        self._http, self._admin = http, admin

    def __call__(self, n: int) -> httpx.Response:
        body = {"user_id": USER, "thread_id": "job", "event": "step", "data": {"n": n}}
        return self._http.post("/api/publish", headers=self._admin, json=body, timeout=10)


async def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        await asyncio.sleep(0.02)


async def _collect(socket: ClientConnection, into: list[Frame]) -> None:
    try:
        while True:
            into.append(await receive(socket, timeout=3600))
    except ConnectionClosed:
        return


def test_a_killed_master_fails_over_and_every_acknowledged_event_is_kept(
    start_instance: StartInstance, redis_server: RedisClusterServers
) -> None:
    a, b = start_instance(), start_instance()
    admin = a.auth("operator", admin=True)
    master = redis_server.master_of(keys_of(redis_server).leases(USER))
    assert redis_server.replicas_of(master), "the user's master has a replica to take over"

    async def scenario() -> dict[str, float]:
        live_socket, _ = await open_socket(b.ws_url, b.token(USER))
        epoch = (await subscribe(live_socket, "job"))["epoch"]
        live: list[Frame] = []
        reader = asyncio.create_task(_collect(live_socket, live))
        with Publisher(PostEvent(a.http, admin)) as publisher:
            await _wait(lambda: len(publisher.accepted()) >= BEFORE, 30, f"{BEFORE} events accepted")
            killed_at = time.monotonic()
            redis_server.kill(master)
            await _wait(
                lambda: len(publisher.accepted(since=killed_at)) >= AFTER,
                60,
                f"{AFTER} accepted after the kill",
            )
        attempts = publisher.attempts
        accepted = publisher.accepted()
        last = accepted[-1].n
        await _wait(lambda: any(f["data"]["n"] == last for f in live), 10, "the last event delivered live")
        epochs = list(dict.fromkeys(f["epoch"] for f in live))
        replay_opened_at = time.monotonic()
        replay_socket, _ = await open_socket(a.ws_url, a.token(USER))
        joined_at = time.monotonic()
        frames = await read_until_subscribed(replay_socket, "job", {"epoch": epochs[-1], "offset": 0})
        subscribed, replayed = frames[-1], frames[:-1]
        assert subscribed["recovered"] is True, subscribed
        assert subscribed["epoch"] == epochs[-1], "the replay is the live epoch's"
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await live_socket.close()
        await replay_socket.close()

        kept = {f["data"]["n"] for f in replayed}
        delivered = [f["data"]["n"] for f in live]
        lost = [x for x in accepted if x.n not in kept and x.n not in delivered]
        early_lost = [x.n for x in lost if x.at < killed_at - REPLICATION_MARGIN]
        assert early_lost == [], f"acknowledged well before the kill and lost: {early_lost}"
        assert len(delivered) == len(set(delivered)), "each event delivered once on the live connection"
        for each in epochs:
            live_offsets = [f["offset"] for f in live if f["epoch"] == each]
            assert live_offsets == sorted(live_offsets), "in offset order"
        if epochs == [epoch]:
            offsets = [x.offset or 0 for x in accepted]
            if not lost:
                assert offsets == sorted(set(offsets)), "offsets increase, none reused"
        else:
            # The replica missed an event the live connection was given: the thread restarts in
            # a new epoch rather than number the next events under offsets already delivered.
            assert epochs == [epoch, epochs[-1]], epochs
            first = next(f for f in live if f["epoch"] == epochs[-1])
            assert first["offset"] == 1, first
            restarted = [x.n for x in accepted if x.n >= first["data"]["n"]]
            assert set(restarted) <= set(delivered), "every event of the new epoch is delivered"
        after = [x.n for x in accepted if x.at > killed_at]
        if epochs == [epoch]:
            assert set(after) <= set(delivered), "delivery resumed on the other instance after the failover"
        refused = [x for x in attempts if x.at > killed_at and x.status != 200]
        assert refused, "the slot had no master for a while: publishing was refused meanwhile"
        assert {x.status for x in refused} <= {503}, {x.status for x in refused}
        first_refused = min(x.at for x in refused)
        first_back = min(x.at for x in accepted if x.at > first_refused)
        return {
            "accepted": len(accepted),
            "refused": len(refused),
            "unavailable_s": first_back - killed_at,
            "join_s": joined_at - replay_opened_at,
            "lost_late": len(lost),
            "replayed": len(replayed),
            "epochs": len(epochs),
        }

    figures = asyncio.run(scenario())
    print(
        f"\nfailover: {figures['accepted']:.0f} events acknowledged, {figures['refused']:.0f} refused "
        f"(503) while the slot had no master, publishing back {figures['unavailable_s']:.2f}s after "
        f"the kill; {figures['lost_late']:.0f} acknowledged events lost (replication lag), "
        f"{figures['replayed']:.0f} replayed from offset 0 of the last of {figures['epochs']:.0f} "
        f"epoch(s); a new connection on the instance that had "
        f"nothing on the killed master admitted in {figures['join_s']:.2f}s"
    )
