"""Closing: never waits on a peer that does not read, and drops TCP after the close timeout."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.transport.transport_harness import guarded_server, open_record, record_of, server_sockets_to
from wsguard.processes import ServerProcess, eventually, eventually_async
from wsguard.processes.clients import hung_up
from wsguard.transport.tcp import reset

CLOSE_TIMEOUT = 0.5


async def _ended(server: ServerProcess, port: int, timeout: float) -> dict[str, Any]:
    record = await eventually_async(
        lambda: asyncio.to_thread(record_of, server, port),
        lambda seen: seen is not None,
        timeout=timeout,
        what="the app to see the connection end",
    )
    assert record is not None
    return record


def _released_within(server: ServerProcess, port: int, timeout: float) -> float:
    """Wait until the server holds no socket to ``port``; return how long that took."""
    started = time.monotonic()
    eventually(
        lambda: server_sockets_to(server, port),
        lambda sockets: sockets == [],
        timeout=timeout,
        what="the server to release the socket",
    )
    return time.monotonic() - started


async def _accepted(ws: ClientConnection) -> int:
    await ws.send("hello")
    assert await ws.recv() == "hello"
    port: int = ws.local_address[1]
    return port


def test_a_close_to_a_peer_that_does_not_answer_drops_tcp_after_the_close_timeout() -> None:
    with guarded_server("--close-timeout", str(CLOSE_TIMEOUT)) as server:
        asyncio.run(_close_to_silent_peer(server))


async def _close_to_silent_peer(server: ServerProcess) -> None:
    async with connect(server.ws_url, ping_interval=None, close_timeout=0.1) as ws:
        port = await _accepted(ws)
        ws.transport.pause_reading()
        await ws.send("close")
        asked_at = time.monotonic()
        record = await _ended(server, port, timeout=2.0)
        assert record["code"] == 1000
        assert record["close_call_seconds"] < 0.1
        await asyncio.to_thread(_released_within, server, port, CLOSE_TIMEOUT + 1.0)
        released_after = time.monotonic() - asked_at
        assert released_after <= CLOSE_TIMEOUT + 0.5, released_after
        assert released_after >= CLOSE_TIMEOUT - 0.1, "dropped before the peer had its chance"


def test_a_close_to_a_peer_that_answers_completes_the_handshake_at_once() -> None:
    with guarded_server("--close-timeout", "5") as server:
        asyncio.run(_close_to_answering_peer(server))


async def _close_to_answering_peer(server: ServerProcess) -> None:
    async with connect(server.ws_url, ping_interval=None, close_timeout=0.1) as ws:
        port = await _accepted(ws)
        await ws.send("close")
        asked_at = time.monotonic()
        await ws.wait_closed()
        assert ws.protocol.close_rcvd is not None
        assert ws.protocol.close_rcvd.code == 1000
        assert ws.protocol.close_sent is not None, "the client echoed the close"
        await asyncio.to_thread(_released_within, server, port, 2.0)
        assert time.monotonic() - asked_at < 1.0


def test_a_close_is_not_held_behind_a_full_write_buffer() -> None:
    with guarded_server("--close-timeout", str(CLOSE_TIMEOUT)) as server:
        asyncio.run(_close_behind_full_buffer(server))


async def _close_behind_full_buffer(server: ServerProcess) -> None:
    async with connect(server.ws_url, ping_interval=None, max_size=None, close_timeout=0.1) as ws:
        port = await _accepted(ws)
        ws.transport.pause_reading()
        await ws.send("flood")
        stalled = await eventually_async(
            lambda: asyncio.to_thread(open_record, server, port),
            lambda seen: seen is not None and seen["max_unsent"] >= 64 * 1024,
            timeout=10.0,
            what="the server's write buffer to fill",
        )
        assert stalled is not None
        await ws.send("close")
        asked_at = time.monotonic()
        record = await _ended(server, port, timeout=2.0)
        assert record["code"] == 1000
        # Held behind the buffer, the call would last the close timeout; half of it leaves room
        # for a loaded machine.
        assert record["close_call_seconds"] < CLOSE_TIMEOUT / 2, record
        await asyncio.to_thread(_released_within, server, port, CLOSE_TIMEOUT + 1.0)
        assert time.monotonic() - asked_at <= CLOSE_TIMEOUT + 0.5
        final = await asyncio.to_thread(record_of, server, port)
        assert final is not None
        assert final["flood_ended"] == "WebSocketDisconnect", final


def test_a_write_stalled_past_the_write_timeout_closes_with_4008() -> None:
    flags = ("--write-timeout", "0.5", "--close-timeout", str(CLOSE_TIMEOUT))
    with guarded_server(*flags) as server:
        asyncio.run(_stall_writes(server))


async def _stall_writes(server: ServerProcess) -> None:
    async with connect(server.ws_url, ping_interval=None, max_size=None, close_timeout=0.1) as ws:
        port = await _accepted(ws)
        ws.transport.pause_reading()
        await ws.send("flood")
        record = await _ended(server, port, timeout=10.0)
        assert (record["code"], record["reason"]) == (4008, "slow_consumer")
        assert record["cleanup_seconds"] is not None
        assert record["cleanup_seconds"] < 0.25
        assert record["max_unsent"] >= 64 * 1024
        await asyncio.to_thread(_released_within, server, port, CLOSE_TIMEOUT + 0.5)
        # The close frame waited behind what this client never read: the server cut it off with a
        # reset, which reaches the client unread (a FIN would sit behind the unsent bytes).
        sock = ws.transport.get_extra_info("socket")
        await eventually_async(
            lambda: asyncio.to_thread(hung_up, sock),
            lambda gone: gone,
            timeout=CLOSE_TIMEOUT + 1.0,
            what="the reset of the connection the server cut off",
        )


def test_the_kernel_holds_only_a_modest_share_of_the_unsent_bytes() -> None:
    with guarded_server("--send-buffer-bytes", "65536") as server:
        asyncio.run(_measure_kernel_share(server))


async def _measure_kernel_share(server: ServerProcess) -> None:
    async with connect(server.ws_url, ping_interval=None, max_size=None, close_timeout=0.1) as ws:
        port = await _accepted(ws)
        ws.transport.pause_reading()
        await ws.send("flood")
        stalled = await eventually_async(
            lambda: asyncio.to_thread(open_record, server, port),
            lambda seen: seen is not None and seen["max_unsent"] >= 64 * 1024,
            timeout=10.0,
            what="the server's write buffer to fill",
        )
        assert stalled is not None
        # What the app cannot count (bytes in both kernels' buffers) stays well under the
        # default queue limit of 1 MiB, so counting the transport's buffer is enough.
        assert stalled["max_in_kernel"] < 1024 * 1024, stalled


@pytest.mark.parametrize("parser", ["h11", "httptools"])
def test_a_closed_connection_leaves_no_reference_cycle_of_the_transport(parser: str) -> None:
    """Every ending frees the connection's objects at once: an object of the transport (its
    protocol, queue, control, the ``websockets`` state machine) left in a cycle waits for the
    cyclic collector, whose runs under churn cost the server CPU on every connection."""
    with guarded_server("--close-timeout", str(CLOSE_TIMEOUT), "--http", parser) as server:
        server.http.get("/garbage").raise_for_status()
        asyncio.run(_end_connections_every_way(server))
        found = server.http.get("/garbage").json()
    ours = {
        name: count
        for name, count in found.items()
        if name.startswith(("wsguard.transport.", "websockets.", "uvicorn."))
    }
    assert ours == {}, f"left in reference cycles by 10 connections of each ending: {ours}"


async def _end_connections_every_way(server: ServerProcess) -> None:
    for _ in range(10):
        async with connect(server.ws_url, ping_interval=None, close_timeout=1) as ws:
            await _ended_after(server, ws, ws.close())
        async with connect(server.ws_url, ping_interval=None, close_timeout=1) as ws:
            await _ended_after(server, ws, ws.send("close"))
        for drop in (_abort, reset):  # the TCP connection gone: a FIN, then a reset
            ws = await connect(server.ws_url, ping_interval=None)
            port = await _accepted(ws)
            drop(ws.transport)
            await _ended(server, port, timeout=5.0)


def _abort(transport: asyncio.Transport) -> None:
    transport.abort()


async def _ended_after(server: ServerProcess, ws: ClientConnection, ending: Any) -> None:
    port = await _accepted(ws)
    await ending
    await _ended(server, port, timeout=5.0)
