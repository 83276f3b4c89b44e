"""Fixtures shared by every test directory: real server processes, stopped after each test."""

from collections.abc import Iterator

import pytest

from wsguard.testing import ServerProcess, StartServer


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
