"""Event streams behind the deploy kit's nginx (round robin, no affinity), on two instances of
one Redis: the stream is not buffered (each event arrives as it is published, heartbeat comments
included), its commands reach it wherever nginx sends them, and a resume lands anywhere."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.system.nginx import Nginx
from wsguard.processes import ServerProcess
from wsguard.processes.redis_server import RedisServer
from wsguard.processes.streams import StreamClient

SECRET = "wsguard-system-test-shared-secret-0123456789"


@pytest.fixture
def balanced(tmp_path: Path) -> Iterator[tuple[list[ServerProcess], Nginx]]:
    with RedisServer() as redis:
        flags = ("--backend", redis.url, "--jwt-secret", SECRET, "--connect-rate-per-user", "0")
        instances = [
            ServerProcess(*flags, "--heartbeat-interval", "1", log_path=tmp_path / f"instance-{n}.log")
            for n in range(2)
        ]
        try:
            for instance in instances:
                instance.start()
            with Nginx([instance.port for instance in instances], tmp_path) as nginx:
                yield instances, nginx
        finally:
            for instance in instances:
                instance.stop()


def test_a_stream_through_nginx_is_live_and_takes_commands_anywhere(
    balanced: tuple[list[ServerProcess], Nginx],
) -> None:
    instances, nginx = balanced
    first = instances[0]
    token = first.token("behind-nginx")
    admin = first.auth("operator", admin=True)

    def publish(n: int) -> None:
        body = {"user_id": "behind-nginx", "thread_id": "t", "event": "e", "data": {"n": n}}
        assert first.http.post(f"{nginx.base_url}/api/publish", json=body, headers=admin).status_code == 200

    async def scenario() -> None:
        stream = await StreamClient.open(nginx.base_url, token, subscribe=["t"])
        try:
            assert (await stream.receive())["type"] == "subscribed"
            for n in range(1, 4):
                publish(n)
                started = time.monotonic()
                event = await stream.receive(timeout=2.0)
                assert event["data"] == {"n": n}
                assert time.monotonic() - started < 1.0, "nginx buffered the stream"
            path = nginx.base_url + str(stream.welcome["commands"])
            async with httpx.AsyncClient() as client:
                for n in range(4):  # round robin: both instances take one
                    posted = await client.post(path, content=f'{{"type":"ping","ref":{n}}}')
                    assert posted.status_code == 202
                    assert await stream.receive() == {"type": "pong", "ref": n}
            last_id = stream.last_id
        finally:
            await stream.close()
        publish(4)
        again = await StreamClient.open(nginx.base_url, token, last_event_id=last_id)
        try:
            missed = await again.receive()
            assert missed["data"] == {"n": 4}
            assert (await again.receive())["recovered"] is True
        finally:
            await again.close()

    asyncio.run(scenario())
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.stream("GET", f"{nginx.base_url}/sse", headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        started = time.monotonic()
        assert next(line for line in lines if line.startswith(":")) == ":"
        assert time.monotonic() - started < 2.0, "the heartbeat comment did not get through"
    for instance in instances:
        instance.wait_idle(timeout=5.0)
