"""``--http``: the server parses HTTP with the parser it is given, and says which at start.

``auto`` (the default, as uvicorn's) takes httptools when it is installed. Both parsers carry
the edge's limits (``test_http_edge.py`` runs its heads against each); ``make test`` runs every
server on h11, what a plain install parses with, and ``make test-uvloop`` on httptools.
"""

import sys

import pytest

from tests.server.start_refusals import refused_at_start
from tests.transport.test_event_loop import CLI, started_on

HIDE_HTTPTOOLS = "import sys; sys.modules['httptools'] = None; "


@pytest.mark.parametrize(
    ("flag", "parser"), [("h11", "h11"), ("httptools", "httptools"), ("auto", "httptools")]
)
def test_the_server_parses_with_the_parser_it_is_given(flag: str, parser: str) -> None:
    line = started_on("--http", flag)
    assert f" with {parser} (" in line, line


def test_auto_parses_with_h11_where_httptools_is_not_installed() -> None:
    line = started_on("--http", "auto", command=(sys.executable, "-c", HIDE_HTTPTOOLS + CLI))
    assert " with h11 (" in line, line


@pytest.mark.parametrize(
    ("script", "value", "problem"),
    [
        (CLI, "zttp", "must be one of auto, h11, httptools, got 'zttp'"),
        (HIDE_HTTPTOOLS + CLI, "httptools", "httptools is not installed"),
    ],
)
def test_a_parser_that_cannot_run_is_refused_in_one_line(script: str, value: str, problem: str) -> None:
    line = refused_at_start("--dev", "--port", "0", "--http", value, script=script)
    assert "--http" in line, line
    assert problem in line, line
