"""The transport under the real wsguard app (``wsguard serve``): what the app sees and reports."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
from websockets.asyncio.client import ClientConnection, connect

from tests.transport.transport_harness import server_sockets_to, wsguard_server
from wsguard.processes import ServerProcess, eventually, eventually_async

FAST_HEARTBEAT = ("--heartbeat-interval", "0.5", "--heartbeat-timeout", "0.5")
CLOSE_TIMEOUT = 0.5


async def _connect(server: ServerProcess, token: str) -> ClientConnection:
    ws = await connect(
        server.ws_url,
        additional_headers={"Authorization": f"Bearer {token}"},
        ping_interval=None,
        close_timeout=0.2,
        max_size=None,
    )
    assert '"welcome"' in str(await ws.recv())
    return ws


def _metric(server: ServerProcess, name: str) -> float:
    return server.metrics().get(name, 0.0)


def _released(server: ServerProcess, port: int, timeout: float) -> None:
    eventually(
        lambda: server_sockets_to(server, port),
        lambda sockets: sockets == [],
        timeout=timeout,
        what="the server to release the socket",
    )


def test_a_silent_client_is_reaped_counted_and_its_socket_released() -> None:
    flags = (*FAST_HEARTBEAT, "--close-timeout", str(CLOSE_TIMEOUT))
    with wsguard_server(*flags) as server:
        asyncio.run(_reap(server))


async def _reap(server: ServerProcess) -> None:
    ws = await _connect(server, server.token("alice"))
    port = ws.local_address[1]
    ws.transport.pause_reading()
    paused_at = time.monotonic()
    metrics = await eventually_async(
        lambda: asyncio.to_thread(server.metrics),
        lambda seen: seen.get("wsguard_connections_active") == 0,
        timeout=3.0,
        what="the connection to be released",
    )
    assert time.monotonic() - paused_at <= 1.0 + 0.5
    assert metrics["wsguard_zombies_reaped_total"] == 1
    assert metrics['wsguard_connections_closed_total{reason="heartbeat_timeout"}'] == 1
    assert metrics["wsguard_cleanup_seconds_count"] == 1
    assert metrics["wsguard_cleanup_seconds_sum"] < 0.1, "timed from the heartbeat timeout"
    await asyncio.to_thread(_released, server, port, CLOSE_TIMEOUT + 0.5)
    ws.transport.resume_reading()
    await ws.wait_closed()
    assert ws.protocol.close_rcvd is not None
    assert (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason) == (
        1011,
        "heartbeat_timeout",
    )


def test_a_server_close_to_a_silent_client_frees_the_slot_at_once_and_tcp_after_the_timeout() -> None:
    with wsguard_server("--close-timeout", str(CLOSE_TIMEOUT)) as server:
        asyncio.run(_close_silent(server))


async def _close_silent(server: ServerProcess) -> None:
    ws = await _connect(server, server.token("bob"))
    port = ws.local_address[1]
    ws.transport.pause_reading()
    admin = server.auth("ops", admin=True)
    response = await asyncio.to_thread(server.http.delete, "/api/admin/users/bob/connections", headers=admin)
    assert response.json() == {"closed": 1}
    closed_at = time.monotonic()
    assert await asyncio.to_thread(_metric, server, "wsguard_connections_active") == 0
    await asyncio.to_thread(_released, server, port, CLOSE_TIMEOUT + 0.5)
    assert time.monotonic() - closed_at <= CLOSE_TIMEOUT + 0.5
    ws.transport.resume_reading()
    await ws.wait_closed()
    assert ws.protocol.close_rcvd is not None
    assert ws.protocol.close_rcvd.code == 4003


def test_a_client_that_stops_reading_is_closed_with_4008_and_its_socket_released() -> None:
    flags = ("--queue-limit-bytes", "262144", "--close-timeout", str(CLOSE_TIMEOUT))
    with wsguard_server(*flags) as server:
        asyncio.run(_slow_consumer(server))


async def _slow_consumer(server: ServerProcess) -> None:
    ws = await _connect(server, server.token("carol"))
    port = ws.local_address[1]
    ws.transport.pause_reading()
    admin = server.auth("ops", admin=True)
    event = {"user_id": "carol", "thread_id": None, "event": "big", "data": {"x": "y" * 30000}}
    slow = 'wsguard_connections_closed_total{reason="slow_consumer"}'
    async with httpx.AsyncClient(base_url=server.base_url, headers=admin) as http:
        for _ in range(400):
            await http.post("/api/publish", json=event)
            if (await asyncio.to_thread(_metric, server, slow)) == 1:
                break
    assert await asyncio.to_thread(_metric, server, slow) == 1
    assert await asyncio.to_thread(_metric, server, "wsguard_connections_active") == 0
    await asyncio.to_thread(_released, server, port, CLOSE_TIMEOUT + 0.5)


def test_sigterm_closes_every_connection_with_1001_before_the_listener_closes() -> None:
    flags = ("--max-connections-per-user", "200", "--connect-rate-per-user", "0")
    with wsguard_server(*flags) as server:
        asyncio.run(_drain(server))
        assert server.process is not None
        assert server.process.wait(timeout=15) == 0


async def _drain(server: ServerProcess) -> None:
    token = server.token("dave")
    clients: list[ClientConnection] = []
    for _ in range(4):
        clients += await asyncio.gather(*(_connect(server, token) for _ in range(50)))
    last_close = 0.0

    async def watch(ws: ClientConnection) -> None:
        nonlocal last_close
        await ws.wait_closed()
        last_close = max(last_close, time.monotonic())

    seen: list[tuple[float, int | str]] = []

    async def poll_readyz() -> None:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=2) as http:
            while True:
                try:
                    status: int | str = (await http.get("/readyz")).status_code
                except httpx.TransportError:
                    status = "refused"
                seen.append((time.monotonic(), status))
                if status == "refused":
                    return
                await asyncio.sleep(0.002)

    poller = asyncio.create_task(poll_readyz())
    await eventually_async(lambda: asyncio.sleep(0, seen), bool, timeout=2.0)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(asyncio.gather(*(watch(ws) for ws in clients)), timeout=15)
    await asyncio.wait_for(poller, timeout=15)
    closes = {
        (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason) if ws.protocol.close_rcvd else None
        for ws in clients
    }
    assert closes == {(1001, "going_away")}
    first_refused = next(at for at, status in seen if status == "refused")
    assert first_refused > last_close, "the listener closed before the drain was over"
    assert {status for _, status in seen} <= {200, 503, "refused"}
