"""The same load against a bare Starlette-on-uvicorn server and against wsguard, in one run.

Usage: ``python bench/run.py [--connections 5000] [--churn-seconds 5] ...`` (see ``--help``).
Both servers run as child processes of this one, one after the other, on loopback; the load
comes from this process. It prints each figure for both servers and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.version import version as websockets_version

from wsguard.testing import ServerProcess

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
CONNECT_BATCH = 250


@dataclass
class Target:
    """One server under test, and how a client reaches it."""

    name: str
    server: ServerProcess
    publish_path: str
    authenticated: bool
    tokens: dict[str, str] = field(default_factory=dict)
    tasks_per_idle_connection: list[float] = field(default_factory=list)
    open_timeout: float = 10.0
    """Seconds a client waits for the opening handshake (a traced server is much slower)."""

    def connect_args(self, user_id: str) -> tuple[str, dict[str, str]]:
        """URL and headers for a WebSocket of ``user_id``."""
        if not self.authenticated:
            return f"{self.server.ws_url}?user={user_id}", {}
        if user_id not in self.tokens:
            self.tokens[user_id] = self.server.token(user_id)
        return self.server.ws_url, {"Authorization": f"Bearer {self.tokens[user_id]}"}

    def publish_headers(self) -> dict[str, str]:
        return self.server.auth("bench-admin", admin=True) if self.authenticated else {}

    def rss(self) -> int:
        return int(psutil.Process(self.server.pid).memory_info().rss)

    def tasks_active(self) -> float | None:
        """wsguard's ``wsguard_tasks_active`` gauge; None for a server without it."""
        return self.server.metrics().get("wsguard_tasks_active") if self.authenticated else None


async def _open(target: Target, user_id: str) -> ClientConnection:
    url, headers = target.connect_args(user_id)
    ws = await connect(
        url,
        additional_headers=headers,
        ping_interval=None,
        compression=None,
        close_timeout=2,
        open_timeout=target.open_timeout,
    )
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome", welcome
    return ws


async def _open_many(target: Target, user_of: Callable[[int], str], count: int) -> list[Any]:
    for index in range(count):
        target.connect_args(user_of(index))
    clients: list[ClientConnection] = []
    for start in range(0, count, CONNECT_BATCH):
        batch = range(start, min(count, start + CONNECT_BATCH))
        clients += await asyncio.gather(*(_open(target, user_of(i)) for i in batch))
    return clients


async def _close_all(clients: list[ClientConnection]) -> None:
    for start in range(0, len(clients), CONNECT_BATCH):
        await asyncio.gather(*(ws.close() for ws in clients[start : start + CONNECT_BATCH]))


async def churn_rate(target: Target, seconds: float, concurrency: int) -> float:
    """Connect, wait for the welcome frame, close: completed cycles per second."""
    users = [f"churn-{worker}" for worker in range(concurrency)]
    for user_id in users:
        target.connect_args(user_id)
    completed = 0
    deadline = time.monotonic() + seconds

    async def cycle(user_id: str) -> None:
        nonlocal completed
        while time.monotonic() < deadline:
            ws = await _open(target, user_id)
            await ws.close()
            completed += 1

    started = time.monotonic()
    await asyncio.gather(*(cycle(user_id) for user_id in users))
    return completed / (time.monotonic() - started)


async def idle_memory_per_connection(target: Target, count: int, per_user: int) -> float:
    """Growth of the server's resident memory per idle open connection, in bytes.

    For wsguard, the growth of ``wsguard_tasks_active`` per idle connection is noted as well.
    """
    await asyncio.sleep(1.0)
    before = target.rss()
    tasks_before = target.tasks_active()
    clients = await _open_many(target, lambda index: f"idle-{index // per_user}", count)
    await asyncio.sleep(2.0)
    after = target.rss()
    tasks_after = target.tasks_active()
    if tasks_before is not None and tasks_after is not None:
        target.tasks_per_idle_connection.append((tasks_after - tasks_before) / count)
    await _close_all(clients)
    return (after - before) / count


async def fanout_rate(target: Target, connections: int, events: int, concurrency: int) -> float:
    """Events published to one user, delivered to each of its connections: deliveries/second."""
    clients = await _open_many(target, lambda index: "fan-user", connections)

    async def consume(ws: ClientConnection) -> None:
        received = 0
        while received < events:
            if json.loads(await ws.recv())["type"] == "event":
                received += 1

    consumers = [asyncio.create_task(consume(ws)) for ws in clients]
    gate = asyncio.Semaphore(concurrency)
    body = {"user_id": "fan-user", "thread_id": None, "event": "bench", "data": {"n": 0}}
    headers = target.publish_headers()
    async with httpx.AsyncClient(base_url=target.server.base_url, timeout=30) as http:

        async def publish(number: int) -> None:
            async with gate:
                response = await http.post(
                    target.publish_path, json={**body, "data": {"n": number}}, headers=headers
                )
                response.raise_for_status()

        started = time.monotonic()
        await asyncio.gather(*(publish(number) for number in range(events)))
        await asyncio.wait_for(asyncio.gather(*consumers), timeout=120)
        elapsed = time.monotonic() - started
    await _close_all(clients)
    return events * connections / elapsed


Samples = dict[str, list[float]]


async def interleaved(
    targets: list[Target], figure: Callable[[Target], Awaitable[float]], rounds: int, what: str
) -> Samples:
    """``rounds`` samples of ``figure`` per target, alternating which target goes first.

    Alternating spreads the machine's noise and the load's leftovers (TIME_WAIT sockets of the
    churn, say) evenly over both servers.
    """
    samples: Samples = {target.name: [] for target in targets}
    for number in range(rounds):
        order = targets if number % 2 == 0 else targets[::-1]
        for target in order:
            print(f"[{target.name}] {what}, round {number + 1}/{rounds}", file=sys.stderr)
            samples[target.name].append(await figure(target))
    return samples


@dataclass
class Row:
    name: str
    samples: Samples
    scale: float
    form: str


async def measure(targets: list[Target], args: argparse.Namespace) -> list[Row]:
    churn = await interleaved(
        targets,
        lambda target: churn_rate(target, args.churn_seconds, args.churn_concurrency),
        args.rounds,
        "churn",
    )
    memory = await interleaved(
        targets,
        lambda target: idle_memory_per_connection(target, args.connections, args.per_user),
        1,
        f"{args.connections} idle connections",
    )
    fanout = await interleaved(
        targets,
        lambda target: fanout_rate(
            target, args.fanout_connections, args.fanout_events, args.publish_concurrency
        ),
        args.rounds,
        "fan-out",
    )
    return [
        Row("connect/close churn (cycles/s)", churn, 1, "{:,.0f}"),
        Row(f"RSS per idle connection at {args.connections} (KiB)", memory, 1024, "{:,.1f}"),
        Row(
            f"fan-out to 1 user x {args.fanout_connections} connections (deliveries/s)",
            fanout,
            1,
            "{:,.0f}",
        ),
    ]


def raise_open_files_limit(needed: int) -> None:
    """Both this process and the servers (which inherit it) hold one fd per connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise SystemExit(f"need {needed} open files, the hard limit allows {soft}")


def child_environment() -> dict[str, str]:
    python_path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": python_path}


def report(rows: list[Row], names: tuple[str, str]) -> str:
    """Median of each figure per server (with the range when there are several rounds)."""
    base, other = names

    def cell(row: Row, name: str) -> str:
        values = [value / row.scale for value in row.samples[name]]
        text = row.form.format(statistics.median(values))
        if len(values) > 1:
            text += f" ({row.form.format(min(values))}-{row.form.format(max(values))})"
        return text

    width = max(len(row.name) for row in rows)
    cells = [(cell(row, base), cell(row, other)) for row in rows]
    column = max(12, *(len(text) for pair in cells for text in pair))
    lines = [
        f"python {platform.python_version()}, uvicorn {uvicorn.__version__}, "
        f"websockets {websockets_version}, {os.cpu_count()} CPUs, loopback",
        f"{'figure':<{width}}  {base:>{column}}  {other:>{column}}  {other + '/' + base:>12}",
    ]
    for row, (base_cell, other_cell) in zip(rows, cells, strict=True):
        base_median = statistics.median(row.samples[base])
        ratio = statistics.median(row.samples[other]) / base_median if base_median else math.nan
        lines.append(f"{row.name:<{width}}  {base_cell:>{column}}  {other_cell:>{column}}  {ratio:>12.2f}")
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=5000, help="idle connections")
    parser.add_argument("--per-user", type=int, default=100, help="idle connections per user")
    parser.add_argument("--churn-seconds", type=float, default=5.0)
    parser.add_argument("--churn-concurrency", type=int, default=20)
    parser.add_argument("--fanout-connections", type=int, default=100)
    parser.add_argument("--fanout-events", type=int, default=500)
    parser.add_argument("--publish-concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of churn and fan-out")
    parser.add_argument(
        "--wsguard-command",
        default=f"{sys.executable} -m wsguard serve",
        help="how to start wsguard (it must take --dev, --host, --port and the flags)",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    raise_open_files_limit(2 * args.connections + 1024)
    env = child_environment()
    limit = str(max(args.per_user, args.fanout_connections, args.churn_concurrency))
    wsguard_flags = ("--max-connections-per-user", limit, "--connect-rate-per-user", "0")

    def bare() -> Target:
        command = [sys.executable, str(HERE / "bare_server.py")]
        return Target("bare", ServerProcess(command=command, env=env), "/publish", False)

    def guarded() -> Target:
        command = shlex.split(args.wsguard_command)
        server = ServerProcess(*wsguard_flags, command=command, env=env)
        return Target("wsguard", server, "/api/publish", True)

    targets = [bare(), guarded()]
    try:
        for target in targets:
            target.server.start()
        rows = asyncio.run(measure(targets, args))
    finally:
        for target in targets:
            status = target.server.stop()
            print(f"[{target.name}] exit status {status}", file=sys.stderr)
    print(report(rows, ("bare", "wsguard")))
    for target in targets:
        for tasks in target.tasks_per_idle_connection:
            print(f"{target.name}: {tasks:.2f} asyncio tasks per idle connection (wsguard_tasks_active)")
    print(f"wsguard flags: --dev {' '.join(wsguard_flags)}; medians of {args.rounds} rounds")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
