"""Where an idle connection's bytes go on the server, and where churn spends its CPU time.

Usage::

    python bench/profile_idle.py [--connections 2000] [--servers bare,wsguard] [--frames 16]
    python bench/profile_idle.py --churn [--churn-seconds 5] [--servers wsguard]
    python bench/profile_idle.py --churn --gc [--servers bare,bare-transport,wsguard]
    python bench/profile_idle.py --hold [--hold-connections 10000] [--servers bare,wsguard]

Memory (the default), for each server: first the growth of its resident memory per idle
connection (as ``bench/run.py`` measures it, the server untraced), then the same load on a
server started under tracemalloc (``bench/profile_launcher.py``): a snapshot before and one after
opening the connections, and the growth per connection by file, by line, and (with
``--frames`` above 1) by the innermost line of wsguard's own code that led to the allocation.
Last, the bare server and wsguard side by side by file. A few hundred connections are opened
and closed first, so that caches and lazy imports are not counted.

Churn (``--churn``): the server runs under cProfile, profiling only while 20 clients connect,
wait for the welcome frame and close, for ``--churn-seconds``; the top functions by cumulative
and by own time, all of them and wsguard's alone (marked ``*`` in the full lists).

Garbage collector (``--churn --gc``): the same churn, the server not profiled; how often each
generation of the cyclic garbage collector ran, the time it took and the objects it freed, per
1,000 cycles. Objects freed by the collector were left in reference cycles; a connection that
leaves its objects in cycles makes the collector run more and each run walk more.

Full collections over held connections (``--hold``): the benchmark's 10,000-connection hold
(``figures.hold``: open, one event to every user, reset them all) on a server whose full
collections are logged with their start; how many ran while the connections were opened and
the longest, and how many ran between the first reset and every count back at 0. Each walks
every object the held connections keep, so one in the teardown adds its whole length to it.

wsguard runs as ``python -m wsguard serve --dev`` with the flags of ``bench/run.py``;
``wsguard-sse`` is the same server, its clients on Server-Sent Events.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import linecache
import os
import pstats
import signal
import sys
import sysconfig
import tempfile
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from figures import churn as churn_figure
from figures import hold as hold_figure
from figures import idle as idle_figure
from loadgen import StarletteTarget, Target, WsguardStreamTarget, WsguardTarget, close_all, open_many
from run import child_environment, raise_open_files_limit
from wsguard.processes import ServerProcess

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WSGUARD_SOURCE = str(ROOT / "src" / "wsguard") + os.sep
LAUNCHER = HERE / "profile_launcher.py"
SNAPSHOT_TIMEOUT = 120.0
NOISE = (
    tracemalloc.__file__,
    "<frozen importlib._bootstrap>",
    "<frozen importlib._bootstrap_external>",
    "<unknown>",
)
"""Allocations of the tracing itself and of imports, left out of every figure."""


def short(filename: str) -> str:
    """A file name without the virtualenv's, the standard library's or the repository's prefix."""
    for prefix in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["stdlib"], str(ROOT)):
        if filename.startswith(prefix + os.sep):
            return filename[len(prefix) + 1 :]
    return filename


def is_wsguard(filename: str) -> bool:
    return filename.startswith(WSGUARD_SOURCE)


@dataclass
class Server:
    """How to start one server, plain or through the launcher."""

    name: str
    target: str
    flags: tuple[str, ...]
    kind: type[Target] = StarletteTarget
    """How the load client connects to it."""

    def start(self, launch: tuple[str, Path] | None = None) -> Target:
        """Started; ``launch`` = (mode, output directory) runs it through the launcher."""
        what = ["-m", "wsguard", "serve"] if self.target == "wsguard" else [self.target]
        command = [sys.executable, *what]
        if launch is not None:
            mode, directory = launch
            what = [self.target, "serve"] if self.target == "wsguard" else [self.target]
            command = [sys.executable, str(LAUNCHER), mode, str(directory), *what]
        server = ServerProcess(*self.flags, command=command, env=child_environment(), ready_timeout=120)
        server.start()
        started = self.kind(self.name, server)
        if launch is not None:
            started.open_timeout = 120.0
        return started


def servers(per_user: int, churn_concurrency: int) -> dict[str, Server]:
    limit = str(max(per_user, churn_concurrency))
    flags = ("--max-connections-per-user", limit, "--connect-rate-per-user", "0")
    return {
        "bare": Server("bare", str(HERE / "bare_server.py"), ()),
        "bare-transport": Server("bare-transport", str(HERE / "bare_server.py"), ("--transport",)),
        "wsguard": Server("wsguard", "wsguard", flags, WsguardTarget),
        "wsguard-sse": Server("wsguard-sse", "wsguard", flags, WsguardStreamTarget),
    }


@contextlib.contextmanager
def running(server: Server, launch: tuple[str, Path] | None = None) -> Iterator[Target]:
    target = server.start(launch)
    try:
        yield target
    finally:
        status = target.server.stop()
        print(f"[{target.name}] exit status {status}", file=sys.stderr)


async def take(target: Target, signum: int, path: Path) -> Path:
    """Signal the server and wait for the file it writes in answer."""
    os.kill(target.server.pid, signum)
    await asyncio.to_thread(wait_for_file, path, f"{target.name} wrote no {path.name}")
    return path


def wait_for_file(path: Path, what: str) -> None:
    deadline = time.monotonic() + SNAPSHOT_TIMEOUT
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {SNAPSHOT_TIMEOUT}s")
        time.sleep(0.1)


async def settle(target: Target) -> None:
    """Let closes finish: wsguard until its counts are 0, then a second for both."""
    if isinstance(target, WsguardTarget):
        await asyncio.to_thread(target.server.wait_idle, 30.0)
    await asyncio.sleep(1.0)


def user_of(per_user: int) -> Callable[[int], str]:
    return lambda index: f"idle-{index // per_user}"


async def warm_up(target: Target, connections: int, per_user: int) -> None:
    """Open and close some connections, so that first-use caches and imports are not counted."""
    await close_all(await open_many(target, user_of(per_user), connections))
    await settle(target)


async def traced_growth(
    target: Target, directory: Path, connections: int, per_user: int
) -> tuple[tracemalloc.Snapshot, tracemalloc.Snapshot]:
    await warm_up(target, min(connections, 300), per_user)
    before = await take(target, signal.SIGUSR1, directory / "snapshot-1.pickle")
    clients = await open_many(target, user_of(per_user), connections)
    await asyncio.sleep(2.0)
    after = await take(target, signal.SIGUSR1, directory / "snapshot-2.pickle")
    await close_all(clients)
    noise = [tracemalloc.Filter(False, pattern) for pattern in NOISE]
    return (
        tracemalloc.Snapshot.load(str(before)).filter_traces(noise),
        tracemalloc.Snapshot.load(str(after)).filter_traces(noise),
    )


async def rss_growth(target: Target, connections: int, per_user: int) -> tuple[float, float | None]:
    """Resident bytes per idle connection, and asyncio tasks per idle connection (wsguard)."""
    await warm_up(target, min(connections, 300), per_user)
    sample = await idle_figure(target, connections, per_user)
    return sample["rss_per_connection"], sample["tasks_per_connection"]


Growth = dict[str, tuple[int, int]]
"""Key -> (bytes, blocks) grown between two snapshots."""


def grouped(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, key: str) -> Growth:
    return {
        _key_text(diff.traceback, key): (diff.size_diff, diff.count_diff)
        for diff in after.compare_to(before, key)
    }


def _key_text(traceback: tracemalloc.Traceback, key: str) -> str:
    frame = traceback[0]
    if key == "filename":
        return short(frame.filename)
    source = linecache.getline(frame.filename, frame.lineno).strip()
    return f"{short(frame.filename)}:{frame.lineno}  {source}"[:150]


def by_wsguard_line(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> Growth:
    """Growth by the innermost frame in wsguard's code (else the innermost frame's file)."""

    def totals(snapshot: tracemalloc.Snapshot) -> dict[str, list[int]]:
        found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for trace in snapshot.traces:
            frames = list(trace.traceback)
            ours = next((f for f in reversed(frames) if is_wsguard(f.filename)), None)
            if ours is None:
                text = f"(no wsguard frame) {short(frames[-1].filename)}"
            else:
                source = linecache.getline(ours.filename, ours.lineno).strip()
                text = f"{short(ours.filename)}:{ours.lineno}  {source}"[:150]
            found[text][0] += trace.size
            found[text][1] += 1
        return found

    old, new = totals(before), totals(after)
    zero = [0, 0]
    growth: Growth = {}
    for key in old.keys() | new.keys():
        (old_size, old_count), (new_size, new_count) = old.get(key, zero), new.get(key, zero)
        growth[key] = (new_size - old_size, new_count - old_count)
    return growth


def table(title: str, growth: Growth, connections: int, top: int) -> str:
    rows = sorted(growth.items(), key=lambda item: -item[1][0])
    total = sum(size for size, _ in growth.values())
    lines = [title, f"{'bytes/conn':>10} {'blocks/conn':>11}  where"]
    for key, (size, count) in rows[:top]:
        lines.append(f"{size / connections:>10.0f} {count / connections:>11.2f}  {key}")
    rest = total - sum(size for _, (size, _) in rows[:top])
    lines.append(f"{rest / connections:>10.0f} {'':>11}  (the rest)")
    lines.append(f"{total / connections:>10.0f} {'':>11}  total")
    return "\n".join(lines)


def side_by_side(files: dict[str, Growth], connections: int, top: int) -> str:
    """Bytes per connection by file for each server, the files where the last and the first
    differ most first."""
    names = list(files)
    keys = set().union(*(growth.keys() for growth in files.values()))
    width = {name: max(10, len(name) + 2) for name in names}

    def per(name: str, key: str) -> float:
        return files[name].get(key, (0, 0))[0] / connections

    spread = sorted(keys, key=lambda key: -abs(per(names[-1], key) - per(names[0], key)))
    header = "".join(f"{name:>{width[name]}}" for name in names)
    diff = f"{names[-1]}-{names[0]}"
    lines = [f"{header}{diff:>{len(diff) + 2}}  file (bytes per connection)"]

    def row(values: list[float], where: str) -> str:
        cells = "".join(f"{value:>{width[name]}.0f}" for name, value in zip(names, values, strict=True))
        return f"{cells}{values[-1] - values[0]:>+{len(diff) + 2}.0f}  {where}"

    for key in spread[:top]:
        lines.append(row([per(name, key) for name in names], key))
    totals = [sum(size for size, _ in files[name].values()) / connections for name in names]
    lines.append(row(totals, "total"))
    return "\n".join(lines)


async def memory(args: argparse.Namespace, chosen: list[Server]) -> None:
    by_file: dict[str, Growth] = {}
    n = args.connections
    for server in chosen:
        if not args.no_rss:
            with running(server) as target:
                rss, tasks = await rss_growth(target, n, args.per_user)
            print(f"[{server.name}] RSS per idle connection at {n} (untraced): {rss / 1024:.2f} KiB")
            if tasks is not None:
                print(f"[{server.name}] asyncio tasks per idle connection: {tasks:.2f}")
        with tempfile.TemporaryDirectory(prefix="wsguard-profile-") as scratch:
            directory = Path(args.keep) / server.name if args.keep else Path(scratch)
            directory.mkdir(parents=True, exist_ok=True)
            for old in directory.glob("snapshot-*.pickle"):
                old.unlink()
            launch = (f"tracemalloc:{args.frames}", directory)
            with running(server, launch) as target:
                before, after = await traced_growth(target, directory, n, args.per_user)
        by_file[server.name] = grouped(before, after, "filename")
        title = f"[{server.name}] traced growth over {n} idle connections"
        print("\n" + table(f"{title}, by file:", by_file[server.name], n, args.top))
        print("\n" + table(f"{title}, by line:", grouped(before, after, "lineno"), n, args.top))
        if args.frames > 1 and server.target == "wsguard":
            growth = by_wsguard_line(before, after)
            print("\n" + table(f"{title}, by the innermost wsguard line:", growth, n, args.top))
        print()
    if len(by_file) > 1:
        print("traced growth by file, side by side:")
        print(side_by_side(by_file, n, args.top))


def profile_rows(stats: pstats.Stats, order: str, top: int, only_wsguard: bool) -> str:
    """The ``top`` functions by ``order`` (``cumulative`` or ``tottime``); ``*`` marks wsguard's."""
    entries = stats.stats  # type: ignore[attr-defined]
    index = 3 if order == "cumulative" else 2
    rows = sorted(entries.items(), key=lambda item: -item[1][index])
    if only_wsguard:
        rows = [row for row in rows if is_wsguard(row[0][0])]
    lines = [f"  {'ncalls':>9} {'tottime':>8} {'cumtime':>8}  function"]
    for (filename, lineno, function), (_, calls, tottime, cumtime, _) in rows[:top]:
        mark = "*" if is_wsguard(filename) else " "
        where = f"{short(filename)}:{lineno}({function})" if lineno else function
        lines.append(f"{mark} {calls:>9} {tottime:>8.3f} {cumtime:>8.3f}  {where}")
    return "\n".join(lines)


async def churn(args: argparse.Namespace, chosen: list[Server]) -> None:
    for server in chosen:
        with tempfile.TemporaryDirectory(prefix="wsguard-profile-") as scratch:
            with running(server, ("cprofile", Path(scratch))) as target:
                await churn_figure(target, 1.0, args.churn_concurrency)
                await settle(target)
                os.kill(target.server.pid, signal.SIGUSR1)
                rate = (await churn_figure(target, args.churn_seconds, args.churn_concurrency))[
                    "cycles_per_s"
                ]
                path = await take(target, signal.SIGUSR2, Path(scratch) / "profile-1.pstats")
                stats = pstats.Stats(str(path))
            total = stats.total_tt  # type: ignore[attr-defined]
            entries = stats.stats  # type: ignore[attr-defined]
            own = sum(row[2] for (filename, _, _), row in entries.items() if is_wsguard(filename))
            idle = sum(row[2] for (_, _, function), row in entries.items() if "poll" in function)
            print(
                f"[{server.name}] churn under cProfile: {rate:,.0f} cycles/s over "
                f"{args.churn_seconds:g} s, {args.churn_concurrency} clients; {total:.2f} s profiled, "
                f"{idle:.2f} s of it waiting in poll; wsguard's own functions {own:.2f} s "
                f"({own / max(total - idle, 1e-9):.0%} of the time not waiting)"
            )
            for order in ("cumulative", "tottime"):
                print(f"\n[{server.name}] top {args.top} by {order} (* wsguard):")
                print(profile_rows(stats, order, args.top, only_wsguard=False))
                if server.target == "wsguard":
                    print(f"\n[{server.name}] top {args.top} of wsguard's own functions by {order}:")
                    print(profile_rows(stats, order, args.top, only_wsguard=True))
            print()


async def collector(args: argparse.Namespace, chosen: list[Server]) -> None:
    for server in chosen:
        with (
            tempfile.TemporaryDirectory(prefix="wsguard-profile-") as scratch,
            running(server, ("gc", Path(scratch))) as target,
        ):
            await churn_figure(target, 1.0, args.churn_concurrency)
            await settle(target)
            os.kill(target.server.pid, signal.SIGUSR1)
            figure = await churn_figure(target, args.churn_seconds, args.churn_concurrency)
            path = await take(target, signal.SIGUSR2, Path(scratch) / "gc-1.json")
            generations = json.loads(path.read_text())["generations"]
        cycles = figure["cycles_per_s"] * args.churn_seconds
        print(
            f"[{server.name}] churn: {figure['cycles_per_s']:,.0f} cycles/s, server CPU "
            f"{figure['server_cpu_ms_per_cycle']:.3f} ms per cycle; the collector per 1,000 cycles:"
        )
        for number, generation in enumerate(generations):
            print(
                f"  generation {number}: {1000 * generation['runs'] / cycles:6.1f} runs, "
                f"{1e6 * generation['seconds'] / cycles:7.1f} ms, "
                f"{1000 * generation['freed'] / cycles:8.0f} objects freed"
            )


async def hold_collector(args: argparse.Namespace, chosen: list[Server]) -> None:
    """The full collections while ``--hold-connections`` are opened and while they are reset."""
    for server in chosen:
        resets: list[float] = []
        with (
            tempfile.TemporaryDirectory(prefix="wsguard-profile-") as scratch,
            running(server, ("gc", Path(scratch))) as target,
        ):
            await warm_up(target, 300, args.per_user)
            os.kill(target.server.pid, signal.SIGUSR1)
            figure = await hold_figure(
                target,
                args.hold_connections,
                args.per_user,
                concurrency=args.publish_concurrency,
                timeout=args.hold_timeout,
                on_reset=resets.append,
            )
            path = await take(target, signal.SIGUSR2, Path(scratch) / "gc-1.json")
            full = json.loads(path.read_text())["full"]
        reset = resets[0]
        settled = reset + figure["to_zero_ms"] / 1000
        before = [seconds for began, seconds in full if began < reset]
        during = [seconds for began, seconds in full if reset <= began < settled]
        longest = 1000 * max(before, default=0)
        print(
            f"[{server.name}] {args.hold_connections:,} connections held: "
            f"{len(before)} full collections before the reset (the longest {longest:.0f} ms), "
            f"{len(during)} between the reset and every count at 0 ({1000 * sum(during):.0f} ms); "
            f"reset to every count at 0: {figure['to_zero_ms']:.0f} ms"
        )


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--churn", action="store_true", help="profile CPU under churn instead")
    parser.add_argument("--gc", action="store_true", help="with --churn: the garbage collector's runs")
    parser.add_argument(
        "--hold",
        action="store_true",
        help="the collector's full collections while --hold-connections are opened and reset",
    )
    parser.add_argument("--hold-connections", type=int, default=10000)
    parser.add_argument("--hold-timeout", type=float, default=30.0, help="seconds to wait for the counts")
    parser.add_argument("--publish-concurrency", type=int, default=8)
    parser.add_argument(
        "--servers",
        default=None,
        help="among bare, bare-transport (the bare app on wsguard.transport), wsguard and "
        "wsguard-sse (wsguard's Server-Sent Events); bare,wsguard by default (memory), wsguard (churn)",
    )
    parser.add_argument("--connections", type=int, default=2000, help="idle connections")
    parser.add_argument("--per-user", type=int, default=100, help="idle connections per user")
    parser.add_argument("--frames", type=int, default=16, help="frames kept per traced allocation")
    parser.add_argument("--top", type=int, default=25, help="rows per table")
    parser.add_argument("--keep", metavar="DIR", help="keep the snapshots in DIR/<server>/")
    parser.add_argument("--no-rss", action="store_true", help="skip the untraced RSS measurement")
    parser.add_argument("--churn-seconds", type=float, default=5.0)
    parser.add_argument("--churn-concurrency", type=int, default=20)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    raise_open_files_limit(max(2 * args.connections, args.hold_connections if args.hold else 0) + 1024)
    available = servers(args.per_user, args.churn_concurrency)
    names = (args.servers or ("wsguard" if args.churn or args.hold else "bare,wsguard")).split(",")
    unknown = [name for name in names if name not in available]
    if unknown:
        raise SystemExit(f"unknown servers: {', '.join(unknown)} ({', '.join(available)})")
    chosen = [available[name] for name in names]
    if args.hold:
        asyncio.run(hold_collector(args, chosen))
    elif args.churn:
        asyncio.run(collector(args, chosen) if args.gc else churn(args, chosen))
    else:
        asyncio.run(memory(args, chosen))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
