"""The per-user limit over real sockets: evict the oldest, or reject, and never lock a user out."""

import asyncio

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from wsguard.processes import StartServer
from wsguard.processes.clients import open_socket, receive

BURST = 25
LIMIT = 20
RATE = 15.0


async def _closed_code(socket: ClientConnection) -> int | None:
    try:
        async with asyncio.timeout(5):
            await socket.wait_closed()
    except TimeoutError:
        return None
    return socket.close_code


def test_burst_over_the_limit_evicts_the_five_oldest_with_4001(start_server: StartServer) -> None:
    server = start_server()

    async def scenario() -> None:
        token = server.token("burst-user")
        sockets: list[ClientConnection] = []
        peaks: list[float] = []
        for _ in range(BURST):
            socket, welcome = await open_socket(server.ws_url, token)
            assert welcome["limits"]["max_connections_per_user"] == LIMIT
            sockets.append(socket)
            peaks.append(server.metrics()["wsguard_user_connections_max"])
            await asyncio.sleep(1 / RATE)
        codes = await asyncio.gather(*(_closed_code(s) for s in sockets[:5]))
        assert codes == [4001] * 5
        assert all(s.close_reason == "superseded" for s in sockets[:5])
        for survivor in sockets[5:]:
            await survivor.send('{"type": "ping"}')
            assert (await receive(survivor))["type"] == "pong"
        assert max(peaks) <= LIMIT
        metrics = server.metrics()
        assert metrics["wsguard_connections_active"] == LIMIT
        assert metrics["wsguard_limit_evictions_total"] == 5
        assert metrics['wsguard_connections_closed_total{reason="superseded"}'] == 5
        await asyncio.gather(*(s.close() for s in sockets[5:]))

    asyncio.run(scenario())
    server.wait_idle(timeout=5.0)


def test_reject_policy_closes_the_21st_to_25th_with_4029(start_server: StartServer) -> None:
    server = start_server("--limit-policy", "reject")

    async def scenario() -> None:
        token = server.token("reject-user")
        admitted = [(await open_socket(server.ws_url, token))[0] for _ in range(LIMIT)]
        for _ in range(BURST - LIMIT):
            socket = await connect(server.ws_url, additional_headers={"Authorization": f"Bearer {token}"})
            try:
                await receive(socket)
                raise AssertionError("a rejected connection must not get a welcome")
            except ConnectionClosed:
                pass
            assert socket.close_code == 4029
            assert socket.close_reason == "too_many_connections"
            await asyncio.sleep(1 / RATE)
        metrics = server.metrics()
        assert metrics["wsguard_connections_active"] == LIMIT
        assert metrics["wsguard_limit_rejections_total"] == BURST - LIMIT
        await asyncio.gather(*(s.close() for s in admitted))

    asyncio.run(scenario())
    server.wait_idle(timeout=5.0)
