"""``wsguard serve --workers N`` against one worker, both on the same private Redis.

Usage: ``python bench/workers.py [--workers 2] [--users 1000] [--per-user 5] [--rounds 5]``.
How the connections split over the workers (each worker's own count, from the admin view), then
bench/run.py's fan-out to many users ("spread") on each server in alternating rounds: deliveries
per second, their ratio, and where the CPUs went meanwhile (each worker, the load client, Redis,
the rest of the machine), since on a small machine the load client shares the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import time

import httpx
import psutil

from figures import Sample, fanout_spread, warm_up
from loadgen import Target, WsguardTarget, close_all, open_many
from report import Results, Row, Verdict, command_line, grid, load_average
from run import check_source_ports, child_environment, interleaved, raise_open_files_limit, wsguard_flags
from run import parse as bench_defaults
from wsguard.processes import ServerProcess
from wsguard.processes.redis_server import RedisServer

SPLIT_TIMEOUT = 15.0
"""Seconds to wait for every worker's report to count the connections (renewed every third of
the lease TTL, 5 s by default)."""
LEAST_RATIO = 1.6


class ProcessTreeTarget(WsguardTarget):
    """wsguard on Redis, in one process or a parent and its workers.

    Its CPU time, memory and descriptors are those of every process of the tree; each worker's
    CPU time is counted apart, with Redis's and the whole machine's, to tell where the cores went.
    """

    def __init__(self, name: str, server: ServerProcess, redis_pid: int) -> None:
        super().__init__(name, server)
        self.redis = psutil.Process(redis_pid)
        self.workers: list[psutil.Process] = []
        """The processes that serve (their pids are the instances' of the admin view)."""

    def tree(self) -> list[psutil.Process]:
        parent = psutil.Process(self.server.pid)
        return [parent, *parent.children(recursive=True)]

    async def find_workers(self, http: httpx.AsyncClient) -> None:
        """The instances of the admin view that run in this tree (another server shares the Redis)."""
        pids = {process.pid for process in self.tree()}
        instances = await self.instances(http)
        self.workers = [psutil.Process(pid) for pid in sorted(pid for pid in instances if pid in pids)]

    async def instances(self, http: httpx.AsyncClient) -> dict[int, int]:
        """Each live instance's pid and its connections, as the admin view reports them."""
        self.prepare([])
        response = await http.get("/api/admin/instances", headers=self.admin)
        response.raise_for_status()
        return {int(info["pid"]): int(info["connections"]) for info in response.json()}

    def cpu_seconds(self) -> float:
        return sum(_cpu(process) for process in self.tree())

    def other_cpu_seconds(self) -> dict[str, float]:
        """Each worker, Redis, and the machine: all its CPUs' busy time, and the time the
        hypervisor gave to other guests (steal)."""
        machine = psutil.cpu_times()
        workers = {f"worker{number}": _cpu(process) for number, process in enumerate(self.workers, 1)}
        return {
            **workers,
            "redis": _cpu(self.redis),
            "machine": machine.user + machine.nice + machine.system + machine.irq + machine.softirq,
            "steal": machine.steal,
        }

    def rss(self) -> int:
        return sum(int(process.memory_info().rss) for process in self.tree())

    def open_fds(self) -> int:
        return sum(int(process.num_fds()) for process in self.tree())


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def split(target: ProcessTreeTarget, users: int, per_user: int) -> Sample:
    """Open ``users`` x ``per_user`` connections and read each worker's count of them."""
    count = users * per_user
    links = await open_many(target, lambda index: f"split-{index // per_user}", count)
    pids = {process.pid for process in target.workers}
    deadline = time.monotonic() + SPLIT_TIMEOUT
    async with httpx.AsyncClient(base_url=target.server.base_url, timeout=30) as http:
        while True:
            held = {pid: n for pid, n in (await target.instances(http)).items() if pid in pids}
            if sum(held.values()) == count or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.5)
    await close_all(links)
    return {f"worker{number}": held.get(pid, math.nan) for number, pid in enumerate(sorted(pids), 1)}


def with_cores(sample: Sample) -> Sample:
    """Each ``<name>_cpu_us_per_delivery`` also as cores busy on average during the fan-out."""
    rate = sample["deliveries_per_s"]
    suffix = "_cpu_us_per_delivery"
    cores = {
        f"{key.removesuffix(suffix)}_cores": value * rate / 1e6
        for key, value in sample.items()
        if key.endswith(suffix)
    }
    return {**sample, **cores}


def rows(args: argparse.Namespace) -> list[Row]:
    spread = f"fan-out to {args.users:,} users x {args.per_user}"
    cores = [
        ("server", "the server's processes"),
        *((f"worker{n}", f"worker {n}") for n in range(1, args.workers + 1)),
        ("client", "the load client"),
        ("redis", "redis-server"),
        ("machine", "the whole machine"),
        ("steal", "steal (other guests)"),
    ]
    return [
        *(
            Row(f"{args.users * args.per_user:,} connections: held by worker {n}", f"split.worker{n}")
            for n in range(1, args.workers + 1)
        ),
        Row(f"{spread} (deliveries/s)", "spread.deliveries_per_s"),
        Row(f"{spread}: server CPU per delivery (us)", "spread.server_cpu_us_per_delivery", form="{:.1f}"),
        Row(f"{spread}: publish-to-delivery p50 (ms)", "spread.latency_p50_ms", form="{:,.1f}"),
        Row(f"{spread}: publish-to-delivery p99 (ms)", "spread.latency_p99_ms", form="{:,.1f}"),
        *(
            Row(f"{spread}: cores busy, {label}", f"spread.{key}_cores", form="{:.2f}")
            for key, label in cores
        ),
    ]


def verdict(results: Results, one: str, many: str, workers: int) -> Verdict:
    """The ratio of the medians, and where the cores went during the many workers' fan-out."""
    target = f"fan-out with {workers} workers >= {LEAST_RATIO} x 1 worker"

    def median(name: str, key: str) -> float:
        values = results[name].get(f"spread.{key}")
        return statistics.median(values) if values else math.nan

    ratio = median(many, "deliveries_per_s") / median(one, "deliveries_per_s")
    if math.isnan(ratio):
        return Verdict(target, "not measured", "figure left out of this run")
    spent = {key: median(many, f"{key}_cores") for key in ("server", "client", "redis", "machine", "steal")}
    rest = spent["machine"] - spent["server"] - spent["client"] - spent["redis"]
    detail = (
        f"{ratio:.2f}; with {workers} workers, cores busy: server {spent['server']:.2f}, load client "
        f"{spent['client']:.2f}, redis-server {spent['redis']:.2f}, the rest of the machine {rest:.2f}, "
        f"steal {spent['steal']:.2f}, of {psutil.cpu_count()}"
    )
    return Verdict(target, "met" if ratio >= LEAST_RATIO else "not met", detail)


async def measure(targets: list[ProcessTreeTarget], args: argparse.Namespace) -> Results:
    results: Results = {target.name: {} for target in targets}
    for target in targets:
        await warm_up(target)
        async with httpx.AsyncClient(base_url=target.server.base_url, timeout=30) as http:
            await target.find_workers(http)
        for key, value in (await split(target, args.users, args.per_user)).items():
            results[target.name].setdefault(f"split.{key}", []).append(value)

    async def spread(target: Target) -> Sample:
        sample = await fanout_spread(target, args.users, args.per_user, args.events, args.publish_concurrency)
        return with_cores(sample)

    await interleaved(list(targets), "spread", spread, args.rounds, results)
    return results


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, default=2, help="workers of the server set against one")
    parser.add_argument("--users", type=int, default=1000, help="users of the fan-out")
    parser.add_argument("--per-user", type=int, default=5, help="connections per user")
    parser.add_argument("--events", type=int, default=1, help="events published to each user")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the fan-out on each server")
    parser.add_argument("--publish-concurrency", type=int, default=8)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    connections = args.users * args.per_user
    raise_open_files_limit(connections + 1024)
    check_source_ports(connections)
    load_at_start = load_average()
    flags = wsguard_flags(bench_defaults([]))
    one, many = "1 worker", f"{args.workers} workers"
    with RedisServer() as redis:
        assert redis.process is not None
        servers = {
            one: ServerProcess("--backend", redis.url, *flags, env=child_environment()),
            many: ServerProcess(
                "--backend", redis.url, "--workers", str(args.workers), *flags, env=child_environment()
            ),
        }
        targets = [ProcessTreeTarget(name, server, redis.process.pid) for name, server in servers.items()]
        try:
            for server in servers.values():
                server.start()
            results = asyncio.run(measure(targets, args))
        finally:
            for name, server in servers.items():
                print(f"[{name}] exit status {server.stop()}", file=sys.stderr)
    print(f"command: {command_line()}")
    print(f"wsguard: --backend <private redis-server> {' '.join(flags)}")
    print(f"load average (1 / 5 / 15 min): {load_at_start} at the start, {load_average()} at the end")
    print(grid(results, [one, many], rows(args), [(many, one)]))
    print(verdict(results, one, many, args.workers).line())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
