"""Fixtures shared by every test directory: real server processes, stopped after each test."""

from collections.abc import Iterator
from typing import Any

import pytest

from tests.chromium import HOW_TO_ENABLE, MISSING
from wsguard.processes import ServerProcess, StartServer


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MISSING:
        terminalreporter.write_line(f"browser tests skipped: {MISSING}; to run them: {HOW_TO_ENABLE}")


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Start servers with the given flags; every one is stopped after the test."""
    started: list[ServerProcess] = []

    def start(*flags: str, **options: object) -> ServerProcess:
        server = ServerProcess(*flags, **options).start()  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
