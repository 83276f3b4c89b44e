"""``wsguard leakcheck --target ws://HOST/PATH --probe http://HOST/PROBE-PATH``: any ASGI app.

The options of the generic mode, and its run: the scenarios against an application someone
else started, the table, and the same JSON and HTML reports as the wsguard scenarios.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wsguard.flags import AppendLines
from wsguard.leaktest.generic.runner import run_generic
from wsguard.leaktest.generic.scenarios import DEFAULT_GENERIC_SCENARIOS, GENERIC_SCENARIO_NAMES
from wsguard.leaktest.generic.target import (
    DEFAULT_BROADCAST,
    DEFAULT_IDENTITY,
    GenericSizes,
    GenericTarget,
    parse_header,
)
from wsguard.leaktest.output import EXIT_LEAK, EXIT_OK, EXIT_USAGE, write_reports
from wsguard.leaktest.progress import Progress, Silent
from wsguard.leaktest.report import render_table

GENERIC_FALLBACK: dict[str, object] = {
    "identity": DEFAULT_IDENTITY,
    "header": [],
    "send": [],
    "broadcast": DEFAULT_BROADCAST,
}
"""What a generic option takes when neither it nor its variable is given (see
:data:`wsguard.leaktest.cli.FALLBACK`)."""
GENERIC_DEFAULTS: dict[str, object] = {
    "check": "all",
    "cleanup_bound": GenericSizes().cleanup_bound_s,
    **GENERIC_FALLBACK,
}
"""What each generic option without an argparse default does when not given, as ``--help``
states it (see :data:`wsguard.leaktest.cli.DEFAULTS`)."""
WSGUARD_ONLY = (
    "scenario",
    "metrics",
    "token_url",
    "cluster",
    "server_command",
    "profile",
    "churn_cycles",
    "transport",
)


def add_generic_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the generic mode, in a group of their own."""
    group = parser.add_argument_group(
        "any ASGI WebSocket app",
        "With --probe, --target is any WebSocket endpoint of an app wrapped in wsguard.probe, and "
        "{identity} in --target, --header and --send gives each client its identity.",
    )
    group.add_argument("--probe", metavar="URL", help="the app's probe, http://HOST/_wsguard/metrics")
    group.add_argument(
        "--check",
        action="extend",
        nargs="+",
        choices=GENERIC_SCENARIO_NAMES,
        metavar="NAME",
        help=f"the generic scenarios to run ({', '.join(GENERIC_SCENARIO_NAMES)})",
    )
    group.add_argument("--identity", metavar="TEMPLATE", help="each client's identity, {n} its number")
    group.add_argument("--header", action=AppendLines, metavar="'NAME: VALUE'", help="sent on connect")
    group.add_argument("--send", action=AppendLines, metavar="MESSAGE", help="sent once connected")
    group.add_argument(
        "--broadcast",
        metavar="MESSAGE",
        help="what a talking client sends, {n} its number; the app should send it on to every client",
    )
    group.add_argument(
        "--cleanup-bound",
        type=float,
        metavar="SECONDS",
        help="how soon after the last client left every count must be back at its baseline",
    )


def uses_generic_mode(args: argparse.Namespace) -> bool:
    """Whether ``args`` ask for the generic mode: ``--probe`` or any option of its own."""
    return args.probe is not None or bool(
        args.check
        or args.header
        or args.send
        or args.cleanup_bound is not None
        or args.identity != DEFAULT_IDENTITY
        or args.broadcast != DEFAULT_BROADCAST
    )


def run_generic_from_args(args: argparse.Namespace) -> int:
    """Run the generic mode with parsed ``args``; the exit status."""
    try:
        given = [f"--{name.replace('_', '-')}" for name in WSGUARD_ONLY if getattr(args, name, None)]
        if given:
            raise ValueError(f"{', '.join(given)}: only with wsguard's own server, not with --probe")
        if args.probe is None:
            raise ValueError(
                "--check, --identity, --header, --send, --broadcast and --cleanup-bound need --probe"
            )
        if args.target is None:
            raise ValueError("--probe needs --target ws://HOST/PATH")
        sizes = GenericSizes()
        if args.cleanup_bound is not None:
            sizes = GenericSizes(cleanup_bound_s=args.cleanup_bound)
        target = GenericTarget(
            ws_url=args.target,
            probe_url=args.probe,
            headers=tuple(parse_header(text) for text in args.header),
            on_connect=tuple(args.send),
            identity=args.identity,
            broadcast=args.broadcast,
        )
    except ValueError as error:
        print(f"wsguard leakcheck: {error.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    scenarios = list(dict.fromkeys(args.check or DEFAULT_GENERIC_SCENARIOS))
    progress = Silent() if args.quiet else Progress()
    report = run_generic(target, scenarios, sizes, progress=progress)
    print(render_table(report))
    json_path, html_path = write_reports(report, Path(args.report_dir))
    print(f"reports: {json_path} {html_path}")
    return EXIT_OK if report.passed else EXIT_LEAK
