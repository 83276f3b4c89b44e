"""The subscription cap over real sockets: past it an ``error`` frame, the connection lives on,
and what a connection remembers of threads it left is bounded the same way."""

import asyncio

from websockets.asyncio.client import ClientConnection

from wsguard.processes import ServerProcess, StartServer
from wsguard.processes.clients import Frame, open_socket, receive, send

CAP = 3


async def _subscribe(socket: ClientConnection, thread_id: str, ref: str, **since: object) -> Frame:
    fields: dict[str, object] = {"since": since} if since else {}
    await send(socket, type="subscribe", thread_id=thread_id, ref=ref, **fields)
    return await receive(socket)


def test_subscriptions_past_the_cap_get_an_error_and_the_connection_lives(
    start_server: StartServer,
) -> None:
    server = start_server("--max-subscriptions-per-connection", str(CAP))

    async def scenario() -> None:
        socket, _ = await open_socket(server.ws_url, server.token("capped"))
        for n in range(CAP):
            assert (await _subscribe(socket, f"t{n}", f"s{n}"))["type"] == "subscribed"
        refused = await _subscribe(socket, "one-too-many", "over")
        assert refused["type"] == "error"
        assert refused["code"] == "too_many_subscriptions"
        assert refused["ref"] == "over"
        again = await _subscribe(socket, "t0", "again")
        assert again["type"] == "subscribed", "a thread already subscribed is not a new one"
        await send(socket, type="ping", ref="alive")
        assert await receive(socket) == {"type": "pong", "ref": "alive"}
        await send(socket, type="unsubscribe", thread_id="t1")
        assert (await receive(socket))["type"] == "unsubscribed"
        assert (await _subscribe(socket, "one-too-many", "room"))["type"] == "subscribed"
        await socket.close()

    asyncio.run(scenario())
    server.wait_idle(timeout=5.0)


def _publish(server: ServerProcess, user_id: str, thread_id: str, admin: dict[str, str]) -> None:
    body = {"user_id": user_id, "thread_id": thread_id, "event": "step", "data": {}}
    server.http.post("/api/publish", json=body, headers=admin).raise_for_status()


def test_a_connection_remembers_only_the_last_cap_threads_it_left(start_server: StartServer) -> None:
    """Within the cap a resubscribe never repeats an event; past it the oldest floor is gone."""
    server = start_server("--max-subscriptions-per-connection", str(CAP))
    admin = server.auth("ops", admin=True)

    async def scenario() -> None:
        socket, _ = await open_socket(server.ws_url, server.token("floors"))
        threads = [f"left{n}" for n in range(CAP + 1)]
        epoch = ""
        for thread_id in threads:
            subscribed = await _subscribe(socket, thread_id, thread_id)
            epoch = subscribed["epoch"]
            _publish(server, "floors", thread_id, admin)
            assert (await receive(socket))["type"] == "event"
            await send(socket, type="unsubscribe", thread_id=thread_id)
            assert (await receive(socket))["type"] == "unsubscribed"
        remembered = await _subscribe(socket, threads[-1], "r", epoch=epoch, offset=0)
        assert remembered["type"] == "subscribed"
        assert remembered["replayed"] == 0, "a thread the connection left recently is remembered"
        forgotten = await _subscribe(socket, threads[0], "f", epoch=epoch, offset=0)
        assert forgotten["type"] == "event", "the oldest left thread's floor must be forgotten"
        assert (await receive(socket))["type"] == "subscribed"
        await socket.close()

    asyncio.run(scenario())
