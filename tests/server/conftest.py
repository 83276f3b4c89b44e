"""Real server processes for the server tests."""

from collections.abc import Iterator

import pytest

from wsguard.testing import ServerProcess, StartServer


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Start servers with the given flags; every one is stopped after the test."""
    started: list[ServerProcess] = []

    def start(*flags: str) -> ServerProcess:
        server = ServerProcess(*flags).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """One default server (connect rate off) shared by a module's tests."""
    with ServerProcess("--connect-rate-per-user", "0", "--demo-step-delay", "0.005") as running:
        yield running
