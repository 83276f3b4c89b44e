"""What a held connection costs the standalone server's garbage collector: upgrades of ``/ws`` go
straight to the endpoint, past Starlette's router (fewer objects per connection, the same
answers), no async generator is suspended for it, and young collections come a tenth as often."""

import asyncio
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from wsguard.processes import ServerProcess
from wsguard.processes.clients import open_socket, receive, send

APP = Path(__file__).with_name("standalone_app.py")
HELD = 200
ROUTER_LAYERS = ("Starlette.", "Router.", "WebSocketRoute.", "ExceptionMiddleware.", "ServerErrorMiddleware.")
MOST_TRACKED_PER_CONNECTION = 95
"""Measured 80 (docs/performance.md); through Starlette's router it was 118."""
OPENED = 500
MOST_YOUNG_COLLECTIONS = 25
"""Measured 7 while 500 connections open; 76 at Python's own young threshold (700)."""


@pytest.fixture(scope="module")
def server() -> Any:
    with ServerProcess(command=[sys.executable, str(APP)]) as server:
        yield server


def tracked(server: ServerProcess) -> dict[str, Any]:
    """``GET /tracked`` of standalone_app.py: objects, coroutines and async generators by name,
    young collections."""
    answer = server.http.get("/tracked", timeout=30)
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    return body


def test_a_held_connection_suspends_no_router_layer_and_gives_the_collector_few_objects(
    server: ServerProcess,
) -> None:
    async def hold() -> tuple[dict[str, Any], dict[str, Any]]:
        warm = [(await open_socket(server.ws_url, server.token("warm")))[0] for _ in range(10)]
        await asyncio.gather(*(socket.close() for socket in warm))
        server.wait_idle(timeout=10)
        before = await asyncio.to_thread(tracked, server)
        sockets: list[ClientConnection] = []
        for index in range(HELD):
            sockets.append((await open_socket(server.ws_url, server.token(f"held-{index % 2}")))[0])
        after = await asyncio.to_thread(tracked, server)
        await asyncio.gather(*(socket.close() for socket in sockets))
        return before, after

    before, after = asyncio.run(hold())
    grown = Counter(after["coroutines"]) - Counter(before["coroutines"])
    assert grown["WSGuard.websocket_endpoint"] == HELD, grown
    through_router = {name: count for name, count in grown.items() if name.startswith(ROUTER_LAYERS)}
    assert through_router == {}, through_router
    held_generators = Counter(after["async_generators"]) - Counter(before["async_generators"])
    assert held_generators == {}, held_generators
    per_connection = (after["objects"] - before["objects"]) / HELD
    assert per_connection <= MOST_TRACKED_PER_CONNECTION, (per_connection, grown.most_common(12))
    server.wait_idle(timeout=10)


def test_an_exception_out_of_the_endpoint_is_a_500_and_leaves_nothing(server: ServerProcess) -> None:
    """A bug in ``authenticate`` escapes the endpoint before the upgrade: the server answers 500
    (as Starlette's router would have let it), serves the next upgrade, and holds nothing."""

    async def scenario() -> dict[str, Any]:
        with pytest.raises(InvalidStatus) as refused:
            await open_socket(server.ws_url, server.token("crash"))
        assert refused.value.response.status_code == 500
        socket, _ = await open_socket(server.ws_url, server.token("after-crash"))
        await send(socket, type="ping", ref="alive")
        answer = await receive(socket)
        await socket.close()
        return answer

    assert asyncio.run(scenario()) == {"type": "pong", "ref": "alive"}
    metrics = server.wait_idle(timeout=10)
    assert metrics["wsguard_connections_active"] == 0
    assert server.http.get("/ws").status_code in (403, 404), "a plain GET of /ws still reaches Starlette"


def test_the_collector_runs_a_tenth_as_many_young_collections_while_connections_open(
    server: ServerProcess,
) -> None:
    """``wsguard.server.collector``: the short-lived objects of an upgrade die before the next
    young collection instead of being promoted toward a full one."""

    async def open_and_count() -> int:
        before = await asyncio.to_thread(tracked, server)
        sockets = [
            (await open_socket(server.ws_url, server.token(f"young-{n % 10}")))[0] for n in range(OPENED)
        ]
        after = await asyncio.to_thread(tracked, server)
        await asyncio.gather(*(socket.close() for socket in sockets))
        return int(after["young_collections"] - before["young_collections"])

    young = asyncio.run(open_and_count())
    assert young <= MOST_YOUNG_COLLECTIONS, young
    server.wait_idle(timeout=10)
