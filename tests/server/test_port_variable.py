"""``PORT``, the platform's port (Cloud Run, Render, Heroku): below ``--port`` and ``WSGUARD_PORT``."""

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.server.start_refusals import refused_at_start
from wsguard.cli import configure_serve, settings_from
from wsguard.processes import eventually, free_port
from wsguard.processes.process import end_process


def _environment(**variables: str) -> dict[str, str]:
    """This process's environment without any ``WSGUARD_*`` or ``PORT``, plus ``variables``."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("WSGUARD_") and k != "PORT"}
    return {**kept, **variables}


@contextmanager
def _serving(*flags: str, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """``wsguard serve --dev`` with ``flags`` and ``env`` and no ``--port`` unless ``flags`` say."""
    argv = [sys.executable, "-m", "wsguard", "serve", "--dev", *flags]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield process
    finally:
        end_process(process, timeout=30)


def _health(port: int) -> int | str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code
    except httpx.TransportError as error:
        return type(error).__name__


def _port_of(*flags: str, **environ: str) -> int:
    parser = argparse.ArgumentParser()
    configure_serve(parser)
    return settings_from(parser.parse_args(["--dev", *flags]), environ).port


def test_precedence_is_flag_then_wsguard_port_then_port_then_8765() -> None:
    assert _port_of() == 8765
    assert _port_of(PORT="8080") == 8080
    assert _port_of(PORT="8080", WSGUARD_PORT="9000") == 9000
    assert _port_of("--port", "7000", PORT="8080", WSGUARD_PORT="9000") == 7000
    assert _port_of("--port", "7000", PORT="not a port") == 7000


def test_the_server_listens_on_port() -> None:
    port = free_port()
    with _serving(env=_environment(PORT=str(port))) as process:
        eventually(lambda: _health(port), lambda status: status == 200, timeout=20, what=f"PORT {port}")
        assert process.poll() is None


def test_the_port_flag_beats_port() -> None:
    given, platform = free_port(), free_port()
    with _serving("--port", str(given), env=_environment(PORT=str(platform))):
        eventually(lambda: _health(given), lambda status: status == 200, timeout=20, what="--port")
        assert _health(platform) == "ConnectError"


@pytest.mark.parametrize("value", ["eighty", "70000", "-1", ""])
def test_a_bad_port_exits_2_with_one_line_naming_port(value: str) -> None:
    line = refused_at_start("--dev", env=_environment(PORT=value))
    assert "(PORT)" in line, line
