"""Shutdown: the app drains first while the server keeps listening, then the process exits 0."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.transport.transport_harness import guarded_server
from wsguard.processes import ServerProcess, eventually_async

CLIENTS = 200


def _close_of(ws: ClientConnection) -> tuple[int, str] | None:
    close = ws.protocol.close_rcvd
    return None if close is None else (close.code, close.reason)


async def _open(server: ServerProcess, count: int) -> list[ClientConnection]:
    clients: list[ClientConnection] = []
    for start in range(0, count, 50):
        clients += await asyncio.gather(
            *(
                connect(server.ws_url, ping_interval=None, close_timeout=1)
                for _ in range(start, min(count, start + 50))
            )
        )
    return clients


async def _status(http: httpx.AsyncClient, path: str) -> int:
    response = await http.get(path)
    return response.status_code


async def _refused_upgrade(server: ServerProcess) -> tuple[int, str | None]:
    """Status and ``Retry-After`` of an upgrade that the server must refuse."""
    with pytest.raises(InvalidStatus) as refused:
        await connect(server.ws_url, ping_interval=None)
    response = refused.value.response
    return response.status_code, response.headers.get("Retry-After")


def test_sigterm_drains_every_connection_with_1001_while_still_listening_then_exits_0() -> None:
    with guarded_server("--drain-batch", "20", "--drain-pause", "0.1") as server:
        asyncio.run(_drain_under_load(server))
        assert server.process is not None
        assert server.process.wait(timeout=15) == 0


async def _drain_under_load(server: ServerProcess) -> None:
    clients = await _open(server, CLIENTS)
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        assert await _status(http, "/readyz") == 200
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        await eventually_async(
            lambda: _status(http, "/readyz"),
            lambda status: status == 503,
            timeout=2.0,
            what="/readyz to answer 503 while draining",
        )
        status, retry_after = await _refused_upgrade(server)
        assert status == 503
        assert retry_after is not None
    await asyncio.wait_for(asyncio.gather(*(ws.wait_closed() for ws in clients)), timeout=10)
    closes = [_close_of(ws) for ws in clients]
    assert closes == [(1001, "going_away")] * CLIENTS, {str(close) for close in closes}


@pytest.mark.parametrize("first", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_during_the_drain_forces_the_shutdown(first: signal.Signals) -> None:
    with guarded_server("--drain-hang") as server:
        asyncio.run(_interrupt_drain(server, first))
        assert server.process is not None
        assert server.process.wait(timeout=10) == 0


async def _interrupt_drain(server: ServerProcess, first: signal.Signals) -> None:
    clients = await _open(server, 3)
    assert server.process is not None
    send: Callable[[int], None] = server.process.send_signal
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        send(first)
        await eventually_async(
            lambda: _status(http, "/readyz"),
            lambda status: status == 503,
            timeout=2.0,
            what="/readyz to answer 503 while draining",
        )
    assert all(_close_of(ws) is None for ws in clients), "the hanging drain closed nothing"
    send(signal.SIGTERM)
    await asyncio.wait_for(asyncio.gather(*(ws.wait_closed() for ws in clients)), timeout=10)
    assert [_close_of(ws) for ws in clients] == [(1012, "")] * 3
