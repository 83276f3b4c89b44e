"""What ``wsguard.publisher`` takes from one worker process, and how long its events take to
reach a user's open connection.

Usage: ``.venv/bin/python bench/publisher.py [--events 20000] [--batch 100] [--rate 1000]
[--seconds 10]`` (Linux; about 30 s). It starts a private redis-server (loopback) and prints:

- **throughput**: events a second that one blocking :class:`Publisher` and one
  :class:`AsyncPublisher` publish to it, one event a call (each waits for its reply) and in
  batches of ``--batch`` (``publish_many``: one script call each), on one thread event stream.
  Nobody is subscribed: this is what Redis and the publisher take.
- **publish to delivery**: a real ``wsguard serve`` on that Redis, a WebSocket client (this
  process) subscribed to a thread, and a publisher in a process of its own publishing one event
  at a time at ``--rate`` events a second for ``--seconds``; each event carries
  ``time.monotonic()`` taken just before its publish (CLOCK_MONOTONIC: one clock for every
  process of the host), and the client subtracts it on receipt. p50, p99 and the largest,
  after a second of warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wsguard.processes import ServerProcess
from wsguard.processes.clients import open_socket, receive, send
from wsguard.processes.redis_server import RedisServer
from wsguard.publisher import AsyncPublisher, Publisher, PublishItem

USER = "bench-user"
THREAD = "bench"
DATA = {"text": "a token of the answer ", "n": 0}
"""About what a streamed token delta carries."""


def _items(count: int, thread: str) -> list[PublishItem]:
    return [PublishItem(USER, thread, "agent_delta", {**DATA, "n": n}) for n in range(count)]


def sync_rates(url: str, events: int, batch: int) -> tuple[float, float]:
    with Publisher.from_url(url) as publisher:
        publisher.publish(USER, "warm", "e")
        single = events // 4
        started = time.perf_counter()
        for n in range(single):
            publisher.publish(USER, "sync-single", "agent_delta", {**DATA, "n": n})
        single_rate = single / (time.perf_counter() - started)
        items = _items(events, "sync-batched")
        started = time.perf_counter()
        for start in range(0, events, batch):
            publisher.publish_many(items[start : start + batch])
        return single_rate, events / (time.perf_counter() - started)


async def async_rates(url: str, events: int, batch: int) -> tuple[float, float]:
    async with AsyncPublisher.from_url(url) as publisher:
        await publisher.publish(USER, "warm", "e")
        single = events // 4
        started = time.perf_counter()
        for n in range(single):
            await publisher.publish(USER, "async-single", "agent_delta", {**DATA, "n": n})
        single_rate = single / (time.perf_counter() - started)
        items = _items(events, "async-batched")
        started = time.perf_counter()
        for start in range(0, events, batch):
            await publisher.publish_many(items[start : start + batch])
        return single_rate, events / (time.perf_counter() - started)


def paced_publisher(url: str, rate: float, seconds: float) -> None:
    """The publishing process: one event at a time on a fixed schedule (no catching up in bursts
    beyond what a late tick owes)."""
    with Publisher.from_url(url) as publisher:
        count = int(rate * seconds)
        started = time.monotonic()
        for n in range(count):
            due = started + n / rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            publisher.publish(USER, THREAD, "agent_delta", {"n": n, "sent": time.monotonic()})
        publisher.publish(USER, THREAD, "done", {"count": count})


async def delivery(url: str, rate: float, seconds: float) -> list[float]:
    """Latencies (seconds) of the events received after the first second."""
    with ServerProcess("--backend", url, "--connect-rate-per-user", "0") as server:
        socket, _ = await open_socket(server.ws_url, server.token(USER))
        await send(socket, type="subscribe", thread_id=THREAD)
        assert (await receive(socket))["type"] == "subscribed"
        publisher = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--role",
            "publisher",
            "--redis",
            url,
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
        )
        latencies: list[float] = []
        try:
            while True:
                text = await asyncio.wait_for(socket.recv(), timeout=seconds + 30)
                now = time.monotonic()
                frame = json.loads(text)
                if frame.get("event") == "done":
                    break
                if frame.get("event") == "agent_delta" and frame["data"]["n"] >= rate:
                    latencies.append(now - frame["data"]["sent"])
        finally:
            await asyncio.wait_for(publisher.wait(), timeout=seconds + 30)
            await socket.close()
        return latencies


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20000, help="events per batched throughput run")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1000.0, help="events a second for the latency run")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--role", default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "publisher":
        paced_publisher(args.redis, args.rate, args.seconds)
        return
    with RedisServer() as redis:
        sync_single, sync_batched = sync_rates(redis.url, args.events, args.batch)
        async_single, async_batched = asyncio.run(async_rates(redis.url, args.events, args.batch))
        latencies = asyncio.run(delivery(redis.url, args.rate, args.seconds))
    print(f"throughput, one process, to a private redis-server on loopback (batches of {args.batch}):")
    print(f"  Publisher       one a call {sync_single:8.0f} events/s   batched {sync_batched:8.0f} events/s")
    print(
        f"  AsyncPublisher  one a call {async_single:8.0f} events/s   batched {async_batched:8.0f} events/s"
    )
    expected = int(args.rate * args.seconds) - int(args.rate)
    print(
        f"publish to delivery at {args.rate:.0f} events/s for {args.seconds:g} s (publisher, server and "
        f"client in three processes; {len(latencies)} of {expected} events after the warm-up):"
    )
    ms = [latency * 1000 for latency in latencies]
    print(
        f"  p50 {_quantile(ms, 0.5):.2f} ms   p99 {_quantile(ms, 0.99):.2f} ms   largest {max(ms):.2f} ms"
        f"   mean {statistics.fmean(ms):.2f} ms"
    )


if __name__ == "__main__":
    main()
