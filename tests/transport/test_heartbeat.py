"""The heartbeat: a peer that stops answering pings is reaped with 1011, one that answers stays."""

from __future__ import annotations

import asyncio
import time

from websockets.asyncio.client import connect

from tests.transport.transport_harness import guarded_server, record_of, server_sockets_to
from wsguard.processes import ServerProcess, eventually, eventually_async

INTERVAL = 0.5
TIMEOUT = 0.5
HEARTBEAT = ("--heartbeat-interval", str(INTERVAL), "--heartbeat-timeout", str(TIMEOUT))


def test_a_peer_that_stops_reading_is_closed_with_1011_heartbeat_timeout() -> None:
    with guarded_server(*HEARTBEAT, "--close-timeout", "0.5") as server:
        asyncio.run(_stop_reading_and_get_reaped(server))


async def _stop_reading_and_get_reaped(server: ServerProcess) -> None:
    async with connect(server.ws_url, ping_interval=None, close_timeout=0.1) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        port = ws.local_address[1]
        ws.transport.pause_reading()
        paused_at = time.monotonic()

        record = await eventually_async(
            lambda: asyncio.to_thread(record_of, server, port),
            lambda seen: seen is not None,
            timeout=INTERVAL + TIMEOUT + 2,
            what="the app to see the connection end",
        )
        reaped_after = time.monotonic() - paused_at
        assert record is not None
        assert (record["code"], record["reason"]) == (1011, "heartbeat_timeout")
        assert reaped_after <= INTERVAL + TIMEOUT + 0.5, reaped_after
        assert record["closed_at_while_open"] is None
        assert record["cleanup_seconds"] is not None
        assert 0 <= record["cleanup_seconds"] < 0.25, record
        eventually(
            lambda: server_sockets_to(server, port),
            lambda sockets: sockets == [],
            timeout=5.0,
            what="the server to release the socket",
        )

        ws.transport.resume_reading()
        await ws.wait_closed()
        assert ws.protocol.close_rcvd is not None
        assert (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason) == (
            1011,
            "heartbeat_timeout",
        )


def test_a_peer_that_answers_pings_stays_connected() -> None:
    with guarded_server(*HEARTBEAT) as server:
        asyncio.run(_answer_pings(server))


async def _answer_pings(server: ServerProcess) -> None:
    async with connect(server.ws_url, ping_interval=None, close_timeout=0.1) as ws:
        port = ws.local_address[1]
        await asyncio.sleep(3 * (INTERVAL + TIMEOUT))
        await ws.send("still here")
        assert await ws.recv() == "still here"
        assert await asyncio.to_thread(record_of, server, port) is None
        assert await asyncio.to_thread(server_sockets_to, server, port) == ["ESTABLISHED"]
