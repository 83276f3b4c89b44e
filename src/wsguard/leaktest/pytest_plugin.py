"""pytest plugin: run the leak scenarios against an application's own server from its tests.

Override the ``leakcheck_target`` fixture to start your app and yield a
:class:`wsguard.leaktest.Target`; then ``leakcheck("multi_tab", "cleanup_race")`` runs those
scenarios against it and fails the test with the report's reasons on a leak. Without an
override, ``leakcheck_target`` starts ``wsguard serve`` with the profile's flags.

For any ASGI WebSocket application, ``leakcheck_asgi("main:app", "/ws/{identity}")`` serves it
under uvicorn with :mod:`wsguard.probe` and runs the generic scenarios against that endpoint.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Protocol

import pytest

from wsguard.errors import WSGuardError
from wsguard.leaktest.client import WEBSOCKET, Target
from wsguard.leaktest.generic.asgi_app import check_asgi_app
from wsguard.leaktest.profiles import PROFILE_ENV, Profile, default_profile_name, get_profile, machine_cores
from wsguard.leaktest.progress import Silent
from wsguard.leaktest.report import render_table
from wsguard.leaktest.results import RunReport
from wsguard.leaktest.runner import external_server, run_leakcheck
from wsguard.leaktest.scenarios import SCENARIO_NAMES
from wsguard.processes.process import ServerProcess


class LeakCheckFailed(WSGuardError, AssertionError):
    """A scenario leaked or failed, or was inconclusive (the load generator could not keep its
    schedule, which proves nothing either way); the message is the report table with every
    reason and figure."""


class LeakCheckAsgi(Protocol):
    def __call__(self, app: str, ws_path: str, **options: Any) -> RunReport: ...


class LeakCheck(Protocol):
    def __call__(
        self, *scenarios: str, profile: Profile | None = None, transport: str = WEBSOCKET
    ) -> RunReport: ...


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("wsguard-leakcheck")
    group.addoption(
        "--leakcheck-profile",
        default=None,
        help=f"leak harness profile (default: ${PROFILE_ENV}, else ci when CI=true, else dev)",
    )


@pytest.fixture(scope="session")
def leakcheck_profile(request: pytest.FixtureRequest) -> Profile:
    """The profile chosen by ``--leakcheck-profile``, ``WSGUARD_PROFILE`` or ``CI``, with
    comprehensive sized to the machine as ``wsguard leakcheck`` sizes it."""
    chosen = request.config.getoption("--leakcheck-profile")
    return get_profile(chosen or default_profile_name(os.environ)).sized_for(machine_cores())


@pytest.fixture
def leakcheck_target(leakcheck_profile: Profile) -> Iterator[Target]:
    """The server under test; override it to start your own application."""
    with ServerProcess(*leakcheck_profile.server_flags()) as server:
        yield Target(
            ws_url=server.ws_url,
            metrics_url=f"{server.base_url}/metrics",
            token_url=f"{server.base_url}/api/dev/tokens",
            pid=server.pid,
        )


@pytest.fixture
def leakcheck(leakcheck_target: Target, leakcheck_profile: Profile) -> LeakCheck:
    """Run scenarios (all by default) against ``leakcheck_target``, over ``transport``
    (``websocket`` or ``sse``); fail the test on a leak."""

    def run(*scenarios: str, profile: Profile | None = None, transport: str = WEBSOCKET) -> RunReport:
        unknown = [name for name in scenarios if name not in SCENARIO_NAMES]
        if unknown:
            raise ValueError(f"unknown scenarios {unknown}; known: {', '.join(SCENARIO_NAMES)}")
        report = run_leakcheck(
            profile or leakcheck_profile,
            list(scenarios or SCENARIO_NAMES),
            external_server(leakcheck_target),
            target_label=f"target {leakcheck_target.ws_url}",
            fresh_servers=False,
            progress=Silent(),
            transport=transport,
        )
        if not report.passed:
            raise LeakCheckFailed(render_table(report))
        return report

    return run


@pytest.fixture
def leakcheck_asgi() -> LeakCheckAsgi:
    """Serve an ASGI app (``module:attribute``) with the probe and run the generic scenarios
    against ``ws_path``; fail the test on a leak. Options as :func:`check_asgi_app`."""

    def run(app: str, ws_path: str, **options: Any) -> RunReport:
        report = check_asgi_app(app, ws_path, **options)
        if not report.passed:
            raise LeakCheckFailed(render_table(report))
        return report

    return run
