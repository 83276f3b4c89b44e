"""Frame size limit, compression switch, the control object, and refusals that do not flood."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from tests.transport.transport_harness import guarded_server, record_of
from wsguard.processes import ServerProcess, eventually, eventually_async


def test_a_frame_over_the_limit_closes_with_1009_too_big() -> None:
    with guarded_server("--max-message-bytes", "1024") as server:
        asyncio.run(_oversized_frame(server))


async def _oversized_frame(server: ServerProcess) -> None:
    async with connect(server.ws_url, ping_interval=None) as ws:
        port = ws.local_address[1]
        await ws.send("a" * 1024)
        assert await ws.recv() == "a" * 1024
        await ws.send("b" * 1025)
        with pytest.raises(ConnectionClosedError):
            await ws.recv()
        assert ws.protocol.close_rcvd is not None
        assert (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason) == (1009, "too_big")
        record = await eventually_async(
            lambda: asyncio.to_thread(record_of, server, port),
            lambda seen: seen is not None,
            timeout=2.0,
        )
        assert record is not None
        assert (record["code"], record["reason"]) == (1009, "too_big")
        assert record["cleanup_seconds"] is not None


@pytest.mark.parametrize(("flags", "negotiated"), [((), False), (("--compression",), True)])
def test_compression_is_negotiated_only_when_switched_on(flags: tuple[str, ...], negotiated: bool) -> None:
    with guarded_server(*flags) as server:
        asyncio.run(_offer_compression(server, negotiated))


async def _offer_compression(server: ServerProcess, negotiated: bool) -> None:
    async with connect(server.ws_url, ping_interval=None, compression="deflate") as ws:
        assert ws.response is not None
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
        assert ("permessage-deflate" in extensions) is negotiated, extensions
        await ws.send("x" * 2000)
        assert await ws.recv() == "x" * 2000


def test_refused_upgrades_and_accepted_ones_do_not_flood_the_log(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    flags = ("--stderr-file", str(log), "--refusal-log-window", "0.5")
    with guarded_server(*flags) as server:
        asyncio.run(_refuse_and_accept(server))
        summary = eventually(
            log.read_text,
            lambda text: "refused 29 more WebSocket upgrades" in text,
            timeout=3.0,
            what="the summary of the refusals",
        )
    refusal_lines = [line for line in summary.splitlines() if "/denied" in line]
    assert len(refusal_lines) == 1, refusal_lines
    assert "401" in refusal_lines[0]
    assert "secret-ticket" not in summary, "the query string (a ticket) reached the log"
    assert len(summary.splitlines()) < 12, "one line per upgrade:\n" + summary


async def _refuse_and_accept(server: ServerProcess) -> None:
    denied = server.ws_url.replace("/ws", "/denied?ticket=secret-ticket")
    for _ in range(30):
        with pytest.raises(InvalidStatus) as refused:
            await connect(denied, ping_interval=None)
        assert refused.value.response.status_code == 401
    for _ in range(10):
        async with connect(server.ws_url, ping_interval=None) as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
