"""``--loop``: the server runs on the event loop it is given, and says which at start.

``auto`` (the default, as uvicorn's) takes uvloop when it is installed, so an application that
installs it runs wsguard on it: the transport's own tests run on both (``make test``).
"""

import sys

import pytest

from tests.server.start_refusals import refused_at_start
from tests.server.test_logs import LogReader

CLI = "import sys; from wsguard.cli import main; sys.exit(main(sys.argv[1:]))"


def started_on(*flags: str, command: tuple[str, ...] = (sys.executable, "-m", "wsguard")) -> str:
    """The start line of a ``wsguard serve --dev`` with ``flags``."""
    server = LogReader("--dev", *flags, command=command)
    try:
        return server.until(lambda line: "listening on" in line, timeout=30)
    finally:
        server.stop()


@pytest.mark.parametrize(("flag", "loop"), [("asyncio", "asyncio"), ("uvloop", "uvloop"), ("auto", "uvloop")])
def test_the_server_runs_on_the_loop_it_is_given(flag: str, loop: str) -> None:
    line = started_on("--loop", flag)
    assert f" on {loop} with " in line, line


def test_auto_runs_on_asyncio_where_uvloop_is_not_installed() -> None:
    hide_uvloop = "import sys; sys.modules['uvloop'] = None; " + CLI
    line = started_on("--loop", "auto", command=(sys.executable, "-c", hide_uvloop))
    assert " on asyncio with " in line, line


@pytest.mark.parametrize(
    ("script", "value", "problem"),
    [
        (CLI, "trio", "must be one of auto, asyncio, uvloop, got 'trio'"),
        ("import sys; sys.modules['uvloop'] = None; " + CLI, "uvloop", "uvloop is not installed"),
    ],
)
def test_a_loop_that_cannot_run_is_refused_in_one_line(script: str, value: str, problem: str) -> None:
    line = refused_at_start("--dev", "--port", "0", "--loop", value, script=script)
    assert "loop" in line, line
    assert problem in line, line
