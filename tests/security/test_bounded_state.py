"""Everything a client can make the server remember is bounded: one connection subscribing to
many distinct threads, one user asking for many tickets and runs, and many distinct threads each
given one event and left to expire grow the server's resident memory by less than a fixed bound.

The normal suite floods with 20,000 subscriptions and 3,000 of the rest (with the cap on
remembered threads lowered to match); ``make soak`` runs 100,000 of each."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from collections.abc import Callable

import pytest
from websockets.asyncio.client import ClientConnection

from wsguard.testing import ServerProcess, StartServer
from wsguard.testing.clients import open_socket
from wsguard.testing.wait import eventually_async

SMALL_SUBSCRIPTIONS = 20_000
SMALL_REQUESTS = 3_000
LARGE = 100_000
RSS = "process_resident_memory_bytes"
FLAGS = (
    "--message-rate-per-connection",
    "0",
    "--connect-rate-per-user",
    "0",
    "--retention-seconds",
    "1",
    "--demo-step-delay",
    "0.01",
)
"""The inbound rate is off so that one connection can subscribe as fast as it likes; thread
logs expire after a second (the sweeper drops them within its 5 s interval)."""


async def _subscribe_to_many(socket: ClientConnection, count: int, first: int) -> Counter[str]:
    """The connection subscribes to ``count`` distinct threads; the answers, by type and code."""
    answers: Counter[str] = Counter()
    batch = 500
    for start in range(first, first + count, batch):
        ids = range(start, min(start + batch, first + count))
        for n in ids:
            await socket.send(json.dumps({"type": "subscribe", "thread_id": f"s{n}", "ref": n}))
        for _ in ids:
            frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
            answers[frame.get("code", frame["type"])] += 1
    return answers


async def _post_many(
    server: ServerProcess, count: int, request: Callable[[int], tuple[str, dict[str, object]]]
) -> Counter[int]:
    """``count`` POSTs, pipelined over a few keep-alive connections (a plain HTTP client is too
    slow for a flood on a loaded machine); the statuses. ``request(n)`` gives a path and body."""
    statuses: Counter[int] = Counter()
    numbers = iter(range(count))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            while batch := list(itertools.islice(numbers, 200)):
                for n in batch:
                    path, body = request(n)
                    payload = json.dumps(body).encode()
                    head = (
                        f"POST {path} HTTP/1.1\r\nHost: {server.host}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                    )
                    writer.write(head.encode() + headers + b"\r\n" + payload)
                await writer.drain()
                for _ in batch:
                    statuses[await _read_response(reader)] += 1
        finally:
            writer.close()

    token = server.token("ops", admin=True) if "admin" in request.__name__ else server.token("flooder")
    headers = f"Authorization: Bearer {token}\r\n".encode()
    await asyncio.gather(*(connection() for _ in range(4)))
    return statuses


async def _read_response(reader: asyncio.StreamReader) -> int:
    """One HTTP/1.1 response's status; its body is read and dropped."""
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)).decode("latin-1")
    status = int(head.split(" ", 2)[1])
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


def _flood(
    server: ServerProcess, subscriptions: int, requests: int, first: int
) -> tuple[dict[str, Counter[object]], float]:
    """One connection subscribes to ``subscriptions`` distinct threads; then ``requests`` tickets,
    runs and events on distinct threads (left to expire), each from one user. Returns the
    answers and the server's RSS after a garbage collection, taken while the subscriber is still
    connected (its subscriptions are released when it closes)."""

    def ticket(n: int) -> tuple[str, dict[str, object]]:
        return "/api/tickets", {}

    def run(n: int) -> tuple[str, dict[str, object]]:
        return f"/api/threads/r{first + n}/runs", {"text": "go"}

    def publish_as_admin(n: int) -> tuple[str, dict[str, object]]:
        body: dict[str, object] = {"user_id": "flooder", "thread_id": f"p{first + n}", "event": "e"}
        return "/api/publish", body

    async def everything() -> tuple[dict[str, Counter[object]], float]:
        socket, _ = await open_socket(server.ws_url, server.token("subscriber"))
        outcome: dict[str, Counter[object]] = {
            "subscriptions": Counter(await _subscribe_to_many(socket, subscriptions, first)),
            "tickets": Counter(await _post_many(server, requests, ticket)),
            "runs": Counter(await _post_many(server, requests, run)),
            "threads": Counter(await _post_many(server, requests, publish_as_admin)),
        }
        await eventually_async(
            lambda: asyncio.to_thread(server.metrics),
            lambda m: m["wsguard_thread_logs"] == 0,
            timeout=30.0,
            what="every thread log expired",
        )
        rss = await asyncio.to_thread(_settled_rss, server)
        await socket.close()
        return outcome, rss

    return asyncio.run(everything())


def _settled_rss(server: ServerProcess) -> float:
    server.http.get("/metrics", params={"collect_garbage": "1"}).raise_for_status()
    return server.metrics()[RSS]


def _check_bounded(
    start_server: StartServer, subscriptions: int, requests: int, bound_mb: float, *flags: str
) -> None:
    server = start_server(*FLAGS, *flags)
    _, before = _flood(server, 2_000, 2_000, first=10_000_000)
    outcome, after = _flood(server, subscriptions, requests, first=0)
    growth_mb = (after - before) / 1e6
    print(f"\n{subscriptions} subscriptions, {requests} of the rest: RSS +{growth_mb:.1f} MB; {outcome}")
    assert outcome["subscriptions"]["subscribed"] == 100
    assert outcome["subscriptions"]["too_many_subscriptions"] == subscriptions - 100
    assert outcome["tickets"][429] > 0
    assert outcome["runs"][429] > 0
    assert outcome["threads"] == Counter({200: requests})
    assert growth_mb < bound_mb, f"the flood grew RSS by {growth_mb:.1f} MB"


def test_a_flood_of_what_clients_can_make_the_server_remember_is_bounded(
    start_server: StartServer,
) -> None:
    _check_bounded(start_server, SMALL_SUBSCRIPTIONS, SMALL_REQUESTS, 5.0, "--max-remembered-threads", "500")


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_a_hundred_thousand_of_each_is_bounded(start_server: StartServer) -> None:
    _check_bounded(start_server, LARGE, LARGE, 25.0)
