"""The same load against bare Starlette on uvicorn, wsguard and two peers, in one run.

Usage: ``python bench/run.py [--connections 5000] [--hold-connections 10000] ...`` (see ``--help``).
``wsguard-sse`` is wsguard again, its clients on Server-Sent Events (idle and hold only).
Every server runs as a child process of this one on loopback, all of them up together; the
load comes from this process. It prints each figure for every server with its ratio to bare
Starlette, judges wsguard's performance targets, and writes bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import resource
import shlex
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from figures import Sample, churn, cleanups, fanout_one_user, fanout_spread, hold, idle, warm_up
from loadgen import (
    SocketIOTarget,
    StarletteTarget,
    Target,
    WebsocketsTarget,
    WsguardStreamTarget,
    WsguardTarget,
)
from report import (
    Context,
    Results,
    Sizes,
    command_line,
    load_average,
    now,
    results_file,
    shown,
    table,
    verdicts,
)
from wsguard.processes import ServerProcess, free_port

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
SERVERS = ("bare", "wsguard", "websockets", "socketio", "wsguard-sse")
OPTIONAL_SERVERS = ("bare-transport", "bare-frames", "asgi", "asgi-transport", "sansio")
"""Not run by default: the bare app on ``wsguard.transport`` (what the transport alone costs),
the bare app sending event frames as long as wsguard's (what the wire format alone costs), the
same endpoints as a plain ASGI app (the floor of any app on uvicorn), and ``websockets``'
sans-I/O protocol on a bare asyncio protocol (the floor of a server without ASGI)."""
FIGURES = ("churn", "idle", "fanout", "spread", "hold", "ceiling")
STREAM_FIGURES = ("idle", "hold")
"""The figures of ``wsguard-sse``: what a held stream costs, and its release after a reset."""
PEER_FIGURES = tuple(figure for figure in FIGURES if figure != "ceiling")
"""The figures of every other server: the ceiling (the hold near the descriptor limit) is
wsguard's alone, and would add a minute per server."""


async def interleaved(
    targets: list[Target],
    figure: str,
    measure_one: Callable[[Target], Awaitable[Sample]],
    rounds: int,
    results: Results,
) -> None:
    """``rounds`` samples of ``figure`` per target into ``results``, alternating which target goes first.

    Alternating spreads the machine's noise and the load's leftovers (TIME_WAIT sockets of the
    churn, say) evenly over the servers.
    """
    for number in range(rounds):
        order = targets if number % 2 == 0 else targets[::-1]
        for target in order:
            if figure not in figures_of(target):
                continue
            print(f"[{target.name}] {figure}, round {number + 1}/{rounds}", file=sys.stderr)
            for key, value in (await measure_one(target)).items():
                results[target.name].setdefault(f"{figure}.{key}", []).append(value)


def figures_of(target: Target) -> tuple[str, ...]:
    """The figures measured on ``target``: an SSE stream's churn and fan-out are left out, since
    with them the run would take about two minutes longer; the ceiling is wsguard's alone."""
    if isinstance(target, WsguardStreamTarget):
        return STREAM_FIGURES
    return FIGURES if target.name == "wsguard" else PEER_FIGURES


Plan = list[tuple[str, int, Callable[[Target], Awaitable[Sample]]]]


def plan(args: argparse.Namespace) -> Plan:
    """Each figure, its number of rounds, and how to measure it on one server."""
    publishers = args.publish_concurrency
    return [
        ("churn", args.rounds, lambda target: churn(target, args.churn_seconds, args.churn_concurrency)),
        ("idle", 1, lambda target: idle(target, args.connections, args.per_user)),
        (
            "fanout",
            args.rounds,
            lambda target: fanout_one_user(target, args.fanout_connections, args.fanout_events, publishers),
        ),
        (
            "spread",
            args.rounds,
            lambda target: fanout_spread(
                target, args.spread_users, args.spread_per_user, args.spread_events, publishers
            ),
        ),
        (
            "hold",
            1,
            lambda target: hold(target, args.hold_connections, args.per_user, publishers, args.hold_timeout),
        ),
        (
            "ceiling",
            1,
            lambda target: hold(
                target, args.ceiling_connections, args.per_user, publishers, args.hold_timeout
            ),
        ),
    ]


async def measure(targets: list[Target], args: argparse.Namespace) -> Results:
    """Every figure asked for, on every server; the churn's cleanups from the servers' histograms."""
    results: Results = {target.name: {} for target in targets}
    for target in targets:
        await warm_up(target)
    for figure, rounds, measure_one in plan(args):
        if figure not in args.only:
            continue
        before = {target.name: target.cleanup_buckets() for target in targets}
        await interleaved(targets, figure, measure_one, rounds, results)
        for target in targets:
            start, end = before[target.name], target.cleanup_buckets()
            if figure == "churn" and start is not None and end is not None:
                results[target.name].update(cleanups(start, end))
    return results


def raise_open_files_limit(needed: int) -> None:
    """Both this process and the servers (which inherit it) hold one fd per connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise SystemExit(f"need {needed} open files, the hard limit allows {soft}")


def open_files_limit() -> str:
    """This process's soft and hard RLIMIT_NOFILE, which the servers inherit."""
    return (
        " / ".join(
            "unlimited" if value == resource.RLIM_INFINITY else f"{value:,}"
            for value in resource.getrlimit(resource.RLIMIT_NOFILE)
        )
        + " (soft / hard)"
    )


def check_source_ports(needed: int) -> None:
    """Every connection to one server takes a loopback source port of its own from the
    ephemeral range; past it, ``connect`` fails with EADDRNOTAVAIL midway through a figure."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return
    if high - low + 1 < needed:
        raise SystemExit(
            f"need {needed} source ports to one server, net.ipv4.ip_local_port_range gives {high - low + 1}"
        )


def child_environment(loop: str = "asyncio", http: str = "h11") -> dict[str, str]:
    """Every server of a run on the same event loop and HTTP parser: wsguard reads
    ``WSGUARD_LOOP`` and ``WSGUARD_HTTP``, and so do the peers' scripts."""
    python_path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": python_path, "WSGUARD_LOOP": loop, "WSGUARD_HTTP": http}


def _names(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = sorted(set(names) - set(allowed))
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(unknown)}; choose from {', '.join(allowed)}"
            )
        return [name for name in allowed if name in names]

    return parse


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=5000, help="idle connections")
    parser.add_argument("--per-user", type=int, default=100, help="connections per user, idle and held")
    parser.add_argument("--churn-seconds", type=float, default=5.0)
    parser.add_argument("--churn-concurrency", type=int, default=20)
    parser.add_argument("--fanout-connections", type=int, default=100)
    parser.add_argument("--fanout-events", type=int, default=1000)
    parser.add_argument("--spread-users", type=int, default=1000, help="users of the spread fan-out")
    parser.add_argument("--spread-per-user", type=int, default=5, help="connections per spread user")
    parser.add_argument("--spread-events", type=int, default=1, help="events published to each spread user")
    parser.add_argument("--hold-connections", type=int, default=10000, help="connections held, then reset")
    parser.add_argument("--hold-timeout", type=float, default=30.0, help="seconds to wait for the counts")
    parser.add_argument(
        "--ceiling-connections",
        type=int,
        default=18000,
        help="connections held by wsguard alone, then reset (near the descriptor limit)",
    )
    parser.add_argument("--publish-concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of churn and of both fan-outs")
    parser.add_argument(
        "--servers",
        type=_names(SERVERS + OPTIONAL_SERVERS),
        default=list(SERVERS),
        help=f"some of {','.join(SERVERS + OPTIONAL_SERVERS)} (default: {','.join(SERVERS)})",
    )
    parser.add_argument(
        "--only", type=_names(FIGURES), default=list(FIGURES), help=f"some of {','.join(FIGURES)}"
    )
    parser.add_argument(
        "--results", type=Path, default=HERE / "RESULTS.md", help="where to write the results"
    )
    parser.add_argument("--no-results", action="store_true", help="write no results file")
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the event loop of every server (default: asyncio)",
    )
    parser.add_argument(
        "--http",
        choices=("h11", "httptools"),
        default="h11",
        help="the HTTP parser of every server on uvicorn (default: h11)",
    )
    parser.add_argument(
        "--wsguard-command",
        default=f"{sys.executable} -m wsguard serve",
        help="how to start wsguard (it must take --dev, --host, --port and the flags)",
    )
    return parser.parse_args(argv)


def wsguard_flags(args: argparse.Namespace) -> tuple[str, ...]:
    """The per-user limit and upgrade rate would otherwise (rightly) refuse this load."""
    limit = max(args.per_user, args.fanout_connections, args.churn_concurrency, args.spread_per_user)
    return ("--max-connections-per-user", str(limit), "--connect-rate-per-user", "0")


def make_targets(args: argparse.Namespace) -> list[Target]:
    env = child_environment(args.loop, args.http)

    def peer(module: str, *flags: str) -> ServerProcess:
        return ServerProcess(*flags, command=[sys.executable, str(HERE / module)], env=env)

    def guard() -> ServerProcess:
        return ServerProcess(*wsguard_flags(args), command=shlex.split(args.wsguard_command), env=env)

    def with_publish_port(name: str, module: str) -> Target:
        port = free_port()
        return WebsocketsTarget(name, peer(module, "--publish-port", str(port)), port)

    makers: dict[str, Callable[[], Target]] = {
        "bare": lambda: StarletteTarget("bare", peer("bare_server.py")),
        "bare-transport": lambda: StarletteTarget("bare-transport", peer("bare_server.py", "--transport")),
        "bare-frames": lambda: StarletteTarget("bare-frames", peer("bare_server.py", "--protocol-frames")),
        "asgi": lambda: StarletteTarget("asgi", peer("bare_server.py", "--asgi")),
        "asgi-transport": lambda: StarletteTarget(
            "asgi-transport", peer("bare_server.py", "--asgi", "--transport")
        ),
        "wsguard": lambda: WsguardTarget("wsguard", guard()),
        "wsguard-sse": lambda: WsguardStreamTarget("wsguard-sse", guard()),
        "websockets": lambda: with_publish_port("websockets", "websockets_server.py"),
        "sansio": lambda: with_publish_port("sansio", "sansio_server.py"),
        "socketio": lambda: SocketIOTarget("socketio", peer("socketio_server.py")),
    }
    return [makers[name]() for name in args.servers]


def run(args: argparse.Namespace, targets: list[Target]) -> Results:
    """Start every server, measure, stop them all whatever happened."""
    try:
        for target in targets:
            target.server.start()
        return asyncio.run(measure(targets, args))
    finally:
        for target in targets:
            status = target.server.stop()
            print(f"[{target.name}] exit status {status}", file=sys.stderr)


def main(argv: list[str]) -> int:
    args = parse(argv)
    if "socketio" in args.servers and importlib.util.find_spec("socketio") is None:
        raise SystemExit('python-socketio is missing: pip install -e ".[bench]" (make bench does)')
    ceiling = args.ceiling_connections if "ceiling" in args.only and "wsguard" in args.servers else 0
    peak = max(args.connections, args.hold_connections, args.spread_users * args.spread_per_user, ceiling)
    raise_open_files_limit(peak + 1024)
    check_source_ports(peak)
    started, load_at_start = now(), load_average()
    results = run(args, make_targets(args))
    sizes = Sizes(
        args.connections,
        args.fanout_connections,
        args.spread_users,
        args.spread_per_user,
        args.hold_connections,
        args.hold_timeout,
        args.ceiling_connections,
    )
    figures, judged = table(results, args.servers, sizes), verdicts(results, sizes)
    notes = [
        f"servers: {', '.join(args.servers)}; figures: {', '.join(args.only)}",
        f"rounds: {args.rounds} of churn and of each fan-out; one of idle connections, of the hold "
        "and of the ceiling",
        f"event loop: {args.loop}, every server; HTTP parser: {args.http}, every server on uvicorn",
    ]
    if "ceiling" in args.only and "wsguard" in args.servers:
        notes.append(f"ceiling: wsguard only, open-files limit {open_files_limit()}")
    if "wsguard-sse" in args.servers:
        notes.append(f"wsguard-sse: wsguard's Server-Sent Events, {' and '.join(STREAM_FIGURES)} only")
    if {"wsguard", "wsguard-sse"} & set(args.servers):
        notes.append(f"wsguard: `{shown(args.wsguard_command)} --dev {' '.join(wsguard_flags(args))}`")
    print(figures)
    print("\n".join(verdict.line() for verdict in judged))
    if not args.no_results:
        context = Context(started, load_at_start, load_average(), command_line(), notes)
        args.results.write_text(results_file(context, figures, judged))
        print(f"results written to {args.results}", file=sys.stderr)
    return 1 if any(verdict.binding and verdict.missed for verdict in judged) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
