"""uvicorn is not bound from above: the transport runs on any version that has what it overrides.

A tested version runs quietly; a newer one with every internal runs with one warning naming the
tested range; an older one, or one that lacks an internal, is refused in one line.
"""

import sys

import pytest
import uvicorn

from tests.server.start_refusals import refused_at_start
from tests.server.test_logs import LogReader
from wsguard.transport import TESTED_UVICORN, UnsupportedUvicorn, check_uvicorn
from wsguard.transport.compat import REQUIRED_INTERNALS, missing_internals

CLI = "import sys; from wsguard.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.parametrize("version", ["0.52.1", "0.52.4", "0.53.0", "0.54.0", "0.55.0", "0.55.3"])
def test_tested_versions_run_quietly(version: str) -> None:
    assert check_uvicorn(version) is None


@pytest.mark.parametrize("version", ["0.56.0", "0.60.1", "1.0.0"])
def test_a_newer_version_with_every_internal_runs_with_a_warning(version: str) -> None:
    warning = check_uvicorn(version)
    assert warning is not None
    assert version in warning
    assert ">=0.52.1,<0.56.0" in warning


@pytest.mark.parametrize("version", ["0.35.0", "0.52.0"])
def test_an_older_version_is_refused(version: str) -> None:
    with pytest.raises(UnsupportedUvicorn, match=version) as refused:
        check_uvicorn(version)
    assert "\n" not in str(refused.value)


def test_a_missing_internal_is_refused_whatever_the_version() -> None:
    required = (*REQUIRED_INTERNALS, ("uvicorn.server", "Server.no_such_hook"), ("uvicorn.gone", "X"))
    with pytest.raises(UnsupportedUvicorn) as refused:
        check_uvicorn("0.54.0", required)
    message = str(refused.value)
    assert "uvicorn.server:Server.no_such_hook" in message
    assert "uvicorn.gone:X" in message
    assert "\n" not in message


def test_the_installed_uvicorn_is_tested_and_has_every_internal() -> None:
    assert missing_internals() == []
    untested = check_uvicorn(uvicorn.__version__)
    assert untested is None, f"uvicorn {uvicorn.__version__} is not in {TESTED_UVICORN}"


def test_serve_refuses_a_uvicorn_without_an_internal_in_one_line() -> None:
    """Before the modules that subclass uvicorn are imported: no traceback, status 2."""
    script = "import uvicorn.server; del uvicorn.server.Server.on_tick; " + CLI
    line = refused_at_start("--dev", "--port", "0", script=script)
    assert line.startswith("wsguard: ")
    assert "uvicorn.server:Server.on_tick" in line


def test_serve_runs_on_a_newer_uvicorn_with_one_warning() -> None:
    script = "import uvicorn; uvicorn.__version__ = '0.99.0'; " + CLI
    server = LogReader("--dev", command=(sys.executable, "-c", script))
    try:
        server.until(lambda line: "listening on" in line, timeout=30)
    finally:
        lines = server.stop()
    warnings = [line for line in lines if "uvicorn 0.99.0" in line]
    assert len(warnings) == 1, lines
    assert "WARNING" in warnings[0]
    assert ">=0.52.1,<0.56.0" in warnings[0]
