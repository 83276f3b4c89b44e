"""What the dashboard costs a server holding many idle connections, in CPU time of the server process.

Usage: ``python bench/feed_cost.py [--connections 5000] [--seconds 20]``. It starts a server
(heartbeat off, so that pings do not blur the figure), opens the connections, then measures the
server's CPU time over the same window three times: with nobody watching (the once-a-second
sampler runs always), with one dashboard feed open, and with nobody watching again. The feed's
cost is the middle window minus the mean of the other two.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import Target, WsguardTarget, close_all, open_many
from run import child_environment, raise_open_files_limit
from wsguard.processes import ServerProcess

PER_USER = 50


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def window(pid: int, seconds: float) -> float:
    """Share of one core the server used over ``seconds``."""
    before, started = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - started)


async def follow_feed(server: ServerProcess, token: str, frames: list[int]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=server.base_url, timeout=None) as client,
        client.stream("GET", "/api/admin/feed", headers=headers) as response,
    ):
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                frames.append(len(line))


async def measure(target: Target, connections: int, seconds: float) -> None:
    server = target.server
    clients = await open_many(target, lambda i: f"feed-user-{i // PER_USER}", connections)
    admin = server.token("feed-admin", admin=True)
    await asyncio.sleep(3)
    quiet_before = await window(server.pid, seconds)
    frames: list[int] = []
    feed = asyncio.create_task(follow_feed(server, admin, frames))
    await asyncio.sleep(2)
    frames.clear()
    watched = await window(server.pid, seconds)
    received = len(frames)
    size = max(frames, default=0)
    feed.cancel()
    await asyncio.gather(feed, return_exceptions=True)
    await asyncio.sleep(2)
    quiet_after = await window(server.pid, seconds)
    metrics = server.metrics()
    await close_all(clients)
    quiet = (quiet_before + quiet_after) / 2
    shares = {"before": quiet_before, "after": quiet_after, "watched": watched, "feed": watched - quiet}
    percent = {name: f"{100 * value:.2f}%" for name, value in shares.items()}
    print(f"connections open: {metrics['wsguard_connections_active']:.0f}")
    print(f"server CPU, nobody watching (sampler included): {percent['before']}, then {percent['after']}")
    print(
        f"server CPU, one dashboard feed open: {percent['watched']} ({received} frames, ~{size} bytes each)"
    )
    print(f"the feed's cost: {percent['feed']} of one core")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    raise_open_files_limit(2 * args.connections + 1024)
    flags = (
        "--max-connections-per-user", str(PER_USER),
        "--connect-rate-per-user", "0",
        "--heartbeat-interval", "3600",
        "--log-level", "warning",
    )  # fmt: skip
    server = ServerProcess(*flags, env=child_environment())
    target = WsguardTarget("wsguard", server)
    with server:
        asyncio.run(measure(target, args.connections, args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
