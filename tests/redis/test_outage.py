"""Redis killed and restarted while events flow: connections stay up, publishing answers 503
instead of losing events, ``wsguard_backend_up`` shows the outage, delivery resumes within 5 s
of Redis's return, and afterwards nothing is left anywhere."""

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.redis.cluster_clients import Traffic, lease_keys, no_more_frames, subscribe
from tests.redis.conftest import instance_flags
from wsguard.processes import ServerProcess, eventually
from wsguard.processes.clients import Frame, open_socket, receive
from wsguard.processes.redis_server import RedisServer

DOWN_FOR = 1.5


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, since the test kills it."""
    with RedisServer() as server:
        yield server


def test_redis_restart_while_events_flow(own_redis: RedisServer) -> None:
    with (
        ServerProcess(*instance_flags(own_redis.url)) as a,
        ServerProcess(*instance_flags(own_redis.url)) as b,
    ):
        traffic = Traffic(a, [a, b])
        received: list[tuple[Frame, float]] = []

        async def scenario() -> float:
            socket, _ = await open_socket(b.ws_url, b.token("steady"))
            await subscribe(socket, "feed")
            worker = threading.Thread(target=traffic.run, daemon=True)
            worker.start()

            async def collect_for(seconds: float) -> None:
                deadline = time.monotonic() + seconds
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        received.append((await receive(socket, timeout=left), time.monotonic()))
                    except TimeoutError:
                        return

            await collect_for(1.0)
            await asyncio.to_thread(own_redis.kill)
            await collect_for(DOWN_FOR)
            await asyncio.to_thread(own_redis.start)
            back_at = time.monotonic()
            await collect_for(6.0)
            traffic.stop.set()
            await asyncio.to_thread(worker.join)
            await collect_for(0.5)
            assert await no_more_frames(socket)
            assert socket.close_code is None, "the connection stayed up through the outage"
            await socket.close()
            return back_at

        back_at = asyncio.run(scenario())
        for instance in (a, b):
            instance.wait_idle(timeout=3.0)
        eventually(lambda: lease_keys(own_redis), lambda k: k == [], timeout=3.0, what="no leases left")

    statuses = Counter(status for _, _, status in traffic.results)
    accepted = [n for n, _, status in traffic.results if status == 200]
    refused = {n for n, _, status in traffic.results if status == 503}
    assert refused, f"publishing during the outage must answer 503: {statuses}"
    assert set(statuses) <= {200, 503}, statuses
    numbers = [frame["data"]["n"] for frame, _ in received]
    assert len(numbers) == len(set(numbers)), "no event arrives twice"
    assert set(accepted) <= set(numbers), "every accepted event arrives"
    # The one publish in flight at the moment Redis dies is answered 503 although its script may
    # have run: its sender cannot know. No other refused event may arrive.
    assert len(set(numbers) - set(accepted)) <= 1, (set(numbers) - set(accepted), statuses)
    first_after = min(n for n, sent_at, status in traffic.results if status == 200 and sent_at > back_at)
    arrived_at = next(at for frame, at in received if frame["data"]["n"] == first_after)
    assert arrived_at - back_at < 5.0, f"delivery resumed {arrived_at - back_at:.2f}s after Redis returned"
    epochs = [frame["epoch"] for frame, _ in received]
    assert epochs[0] != epochs[-1], "a Redis that lost its data numbers the thread in a new epoch"
    assert 0 in traffic.up_samples, "wsguard_backend_up showed the outage"
    assert traffic.up_samples[-1] == 1
