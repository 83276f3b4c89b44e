"""The security tests' shared server."""

from collections.abc import Iterator

import pytest

from wsguard.processes import ServerProcess


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess("--connect-rate-per-user", "0") as running:
        yield running
