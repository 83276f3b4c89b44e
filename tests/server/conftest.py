"""The server tests' shared server."""

from collections.abc import Iterator

import pytest

from wsguard.processes import ServerProcess


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """One default server (connect rate off) shared by a module's tests."""
    with ServerProcess("--connect-rate-per-user", "0", "--demo-step-delay", "0.005") as running:
        yield running
