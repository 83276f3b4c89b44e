"""Event streams on several instances of one Redis: a command posted to any instance reaches the
stream (a balancer without affinity sends the ``POST`` anywhere), and a position token made on
one instance resumes on another."""

import asyncio

from tests.redis.conftest import LEASE_TTL, StartInstance
from wsguard.processes.streams import StreamClient


def test_a_command_posted_to_another_instance_reaches_the_stream(start_instance: StartInstance) -> None:
    a, b = start_instance(), start_instance()
    token = a.token("roamer")

    async def scenario() -> None:
        stream = await StreamClient.open(a.base_url, token)
        try:
            path = str(stream.welcome["commands"])
            answer = b.http.post(path, content=b'{"type":"ping","ref":"via-b"}')
            assert answer.status_code == 202, answer.text
            assert await stream.receive() == {"type": "pong", "ref": "via-b"}
            subscribe = b.http.post(path, content=b'{"type":"subscribe","thread_id":"t","ref":2}')
            assert subscribe.status_code == 202
            subscribed = await stream.receive()
            assert (subscribed["type"], subscribed["ref"]) == ("subscribed", 2)
            forged = b.http.post(path[:-1] + ("1" if path[-1] != "1" else "2"), content=b'{"type":"ping"}')
            assert forged.status_code == 404
        finally:
            await stream.close()

    asyncio.run(scenario())
    for instance in (a, b):
        instance.wait_idle(timeout=LEASE_TTL * 2)


def test_a_stream_resumes_on_another_instance_from_its_last_id(start_instance: StartInstance) -> None:
    a, b = start_instance(), start_instance()
    token = a.token("mover")
    admin = a.auth("operator", admin=True)

    def publish(n: int) -> None:
        body = {"user_id": "mover", "thread_id": "t", "event": "e", "data": {"n": n}}
        assert a.http.post("/api/publish", json=body, headers=admin).status_code == 200

    async def scenario() -> None:
        first = await StreamClient.open(a.base_url, token, subscribe=["t"])
        assert (await first.receive())["type"] == "subscribed"
        publish(1)
        assert (await first.receive())["data"] == {"n": 1}
        last_id = first.last_id
        await first.close()
        publish(2)
        publish(3)
        second = await StreamClient.open(b.base_url, token, last_event_id=last_id)
        try:
            frames = [await second.receive() for _ in range(3)]
            assert [f.get("data") for f in frames[:2]] == [{"n": 2}, {"n": 3}]
            assert (frames[2]["type"], frames[2]["recovered"]) == ("subscribed", True)
        finally:
            await second.close()

    asyncio.run(scenario())
