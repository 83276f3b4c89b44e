"""Everything a client can make the server remember is bounded: one connection subscribing to
many distinct threads, one user asking for many tickets and runs, and many distinct threads each
given one event and left to expire leave the server holding no more than a warm-up left it.

The server is measured as the leak harness measures it, once after a warm-up flood and once after
the flood itself, both while the subscriber is still connected: the counts of what the flood
fills (thread logs, the registry's entries with the subscriber's subscriptions, tasks, open
descriptors) are back where the warm-up left them, and the allocated blocks
(``wsguard_python_allocated_blocks``, ``sys.getallocatedblocks()`` after a full collection: the
median of the harness's garbage-collected scrapes) grew by less than :data:`BLOCKS_BOUND`. The
warm-up fills every table that is capped rather than emptied to its cap (the remembered threads),
so that what the flood adds over it is what the server keeps per flooded item.

Resident memory is printed, not bounded: after a flood it measures the allocator and the machine
as much as the code (7.5 to 16 MB where a 25 MB bound was set, 28.9 to 38.6 MB on later runs of
the same floods). Over 100,000 of each, one run grew it 23 MB while the allocated blocks fell by
81; in that process ``malloc_trim(0)`` handed 14.7 MB back to the system: glibc keeps what was
freed outside pymalloc, here chiefly the deques (760 bytes, and a 528-byte block each) of the
26,211 thread logs alive at once at retention 1 s and a 5 s sweep. Besides, the thread-log dict
keeps the 2.6 MB table of that peak until inserts resize it, and pymalloc kept 10 more arenas
(2.6 MB), mostly free. All of it scales with the peak of live logs (the publish rate times the
retention and the sweep interval), not with the number of items flooded.

The normal suite floods with 20,000 subscriptions and 3,000 of the rest (with the cap on
remembered threads lowered to 500); ``make soak`` runs 100,000 of each with the default cap."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from wsguard.leaktest.runner import SETTLED_SCRAPES
from wsguard.leaktest.sampling import MetricsProbe
from wsguard.leaktest.verdict import BLOCKS, FDS, REGISTRY, RSS, TASKS
from wsguard.processes import ServerProcess, StartServer
from wsguard.processes.clients import open_socket
from wsguard.processes.wait import eventually_async
from wsguard.settings import Settings

SMALL_SUBSCRIPTIONS = 20_000
SMALL_REQUESTS = 3_000
SMALL_REMEMBERED = 500
LARGE = 100_000
WARM_UP = 2_000
THREAD_LOGS = "wsguard_thread_logs"
COUNTS = (THREAD_LOGS, REGISTRY, TASKS, FDS)
"""The counts of what the flood fills that the server's metrics expose; the tickets and the
remembered threads show only in the allocated blocks."""
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
BLOCKS_BOUND = 1_000
"""How many more allocated blocks than the warm-up a settled flood may leave.

What it may leave without keeping anything per item: up to 100 unused tickets of the last 30 s
(``max_tickets_per_user``; a ticket is three blocks: its id, its tuple, its deadline), 300 blocks,
and the wander between garbage-collected scrapes (about 150, the harness's ROUND_NOISE_BLOCKS).
Measured: +241 after 3,000 of each; -4, +148, -172 and +141 after 100,000.

A table that keeps one entry per flooded item keeps at least the entry's key, a thread or ticket
id of that item's own and one block (an entry of a thread log or of a remembered thread holds four
or more): 3,000 items keep 3,000 blocks or more, three times the bound at the very least, and
20,000 subscriptions or 100,000 of anything 20 to 100 times it. Checked by breaking the server
outside the tree (a script that patches it, then runs ``wsguard serve``): keeping every published
thread id in a list, one block each, read +3,251 after 3,000 and +100,247 after 100,000; leaving
the remembered threads uncapped read +12,297 after 3,000. The broken server's RSS grew 1.8 and
22.8 MB, within what the sound one's does (1.6 to 1.7 and 15.8 to 30.3 MB): RSS cannot tell them apart."""


@dataclass(frozen=True)
class Held:
    """What the server holds once a flood has settled: the answers the flood got, and the
    garbage-collected scrape (blocks and RSS the median of SETTLED_SCRAPES)."""

    answers: dict[str, Counter[object]]
    sample: dict[str, float]


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
            await writer.wait_closed()

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
    server: ServerProcess,
    subscriptions: int,
    requests: int,
    threads: int,
    first: int,
    baseline: dict[str, float] | None = None,
) -> Held:
    """One connection subscribes to ``subscriptions`` distinct threads; then ``requests`` tickets
    and runs, and one event on each of ``threads`` distinct threads (left to expire), each from
    one user. Once every thread log expired (and, given a ``baseline``, the tasks and descriptors
    are back to it), what the server holds is read while the subscriber is still connected (its
    subscriptions are released when it closes)."""

    def ticket(n: int) -> tuple[str, dict[str, object]]:
        return "/api/tickets", {}

    def run(n: int) -> tuple[str, dict[str, object]]:
        return f"/api/threads/r{first + n}/runs", {"text": "go"}

    def publish_as_admin(n: int) -> tuple[str, dict[str, object]]:
        body: dict[str, object] = {"user_id": "flooder", "thread_id": f"p{first + n}", "event": "e"}
        return "/api/publish", body

    def settled(counts: dict[str, float]) -> bool:
        if counts[THREAD_LOGS] != 0:
            return False
        return baseline is None or all(counts[name] <= baseline[name] for name in (TASKS, FDS))

    async def everything() -> Held:
        socket, _ = await open_socket(server.ws_url, server.token("subscriber"))
        answers: dict[str, Counter[object]] = {
            "subscriptions": Counter(await _subscribe_to_many(socket, subscriptions, first)),
            "tickets": Counter(await _post_many(server, requests, ticket)),
            "runs": Counter(await _post_many(server, requests, run)),
            "threads": Counter(await _post_many(server, threads, publish_as_admin)),
        }
        async with httpx.AsyncClient(timeout=30.0) as client:
            probe = MetricsProbe(f"{server.base_url}/metrics", client)

            async def counts() -> dict[str, float]:
                return {name: value for name, value in (await probe.scrape()).items() if name in COUNTS}

            await eventually_async(
                counts,
                settled,
                timeout=60.0,
                what="every thread log expired, the runs' tasks and the flood's sockets gone",
            )
            sample = await probe.settled(SETTLED_SCRAPES)
        await socket.close()
        return Held(answers, sample)

    return asyncio.run(everything())


def _check_bounded(start_server: StartServer, subscriptions: int, requests: int, remembered: int) -> None:
    """A warm-up flood of WARM_UP of each (and as many threads as ``remembered``, the cap on
    remembered threads, so that it fills it), then the flood; the flood must leave the counts
    where the warm-up left them and fewer than BLOCKS_BOUND more allocated blocks. RSS is printed."""
    server = start_server(*FLAGS, "--max-remembered-threads", str(remembered))
    warm = _flood(server, WARM_UP, WARM_UP, max(WARM_UP, remembered), first=10_000_000)
    held = _flood(server, subscriptions, requests, requests, first=0, baseline=warm.sample)
    before, after = warm.sample, held.sample
    blocks = after[BLOCKS] - before[BLOCKS]
    rss_mb = (after[RSS] - before[RSS]) / 1e6
    print(
        f"\n{subscriptions} subscriptions, {requests} of the rest:"
        f" allocated blocks {before[BLOCKS]:.0f} -> {after[BLOCKS]:.0f} ({blocks:+.0f});"
        f" RSS {before[RSS] / 1e6:.1f} -> {after[RSS] / 1e6:.1f} MB ({rss_mb:+.1f}, not bounded);"
        + "".join(f" {name} {before[name]:.0f} -> {after[name]:.0f};" for name in COUNTS)
        + f"\nwarm-up {warm.answers}\nflood {held.answers}"
    )
    answers = held.answers
    assert answers["subscriptions"]["subscribed"] == 100
    assert answers["subscriptions"]["too_many_subscriptions"] == subscriptions - 100
    assert answers["tickets"][429] > 0
    assert answers["runs"][429] > 0
    assert answers["threads"] == Counter({200: requests})
    assert after[REGISTRY] == before[REGISTRY], f"registry entries {before[REGISTRY]} -> {after[REGISTRY]}"
    assert blocks < BLOCKS_BOUND, f"the flood left {blocks:.0f} more allocated blocks"


def test_a_flood_of_what_clients_can_make_the_server_remember_is_bounded(
    start_server: StartServer,
) -> None:
    _check_bounded(start_server, SMALL_SUBSCRIPTIONS, SMALL_REQUESTS, SMALL_REMEMBERED)


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_a_hundred_thousand_of_each_is_bounded(start_server: StartServer) -> None:
    _check_bounded(start_server, LARGE, LARGE, Settings().max_remembered_threads)
