"""``wsguard serve`` configuration: flags, variables, and one-line errors that name the setting."""

import argparse
import asyncio
import os
import subprocess
import sys
import time

import jwt
import pytest

from tests.server.start_refusals import refused_at_start
from wsguard.cli import configure_serve, settings_from
from wsguard.processes import ServerProcess
from wsguard.processes.clients import open_socket

ENV_SECRET = "a-secret-given-only-through-the-environment-0123"


def _without_wsguard_variables(**variables: str) -> dict[str, str]:
    """This process's environment minus every ``WSGUARD_*`` variable, plus ``variables``: the
    only settings a run sees are the ones its test names."""
    kept = {name: value for name, value in os.environ.items() if not name.startswith("WSGUARD_")}
    return {**kept, **variables}


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsguard", "serve", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=_without_wsguard_variables() if env is None else env,
    )


def test_serve_without_dev_or_key_names_the_missing_setting() -> None:
    result = _serve("--port", "0")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "--jwt-secret" in lines[0]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--dev", "--heartbeat-interval", "-1"], "--heartbeat-interval"),
        (["--dev", "--max-connections-per-user", "many"], "--max-connections-per-user"),
        (["--dev", "--limit-policy", "lottery"], "--limit-policy"),
        (["--dev", "--backend", "postgres://x"], "--backend"),
        (["--dev", "--backend", "redis-sentinel://127.0.0.1:26379"], "--backend"),
        (["--dev", "--backend", "redis-cluster://127.0.0.1:7000/1"], "--backend"),
        (["--dev", "--workers", "2"], "--workers"),
        (["--dev", "--workers", "0", "--backend", "redis://127.0.0.1:1/0"], "--workers"),
        (["--dev", "--port", "-5"], "--port"),
        (["--dev", "--max-subscriptions-per-connection", "0"], "--max-subscriptions-per-connection"),
    ],
)
def test_bad_values_exit_with_one_line_naming_the_flag(args: list[str], named: str) -> None:
    line = refused_at_start(*args, env=_without_wsguard_variables())
    assert named in line, line


def test_environment_variables_configure_and_flags_win() -> None:
    env = {"WSGUARD_MAX_CONNECTIONS_PER_USER": "3", "WSGUARD_HEARTBEAT_INTERVAL": "0.5"}
    with ServerProcess("--heartbeat-interval", "2.5", env=env) as server:

        async def welcome() -> dict[str, object]:
            socket, frame = await open_socket(server.ws_url, server.token("u"))
            await socket.close()
            return frame

        frame = asyncio.run(welcome())
    assert frame["limits"] == {"max_connections_per_user": 3, "max_message_bytes": 65536}
    assert frame["heartbeat"] == {"interval": 2.5, "timeout": 20.0}


def test_a_secret_from_the_environment_is_enough_without_dev() -> None:
    """Every other setting is valid, so the variable alone decides whether the server starts;
    and a token signed with it is accepted, so the server really uses it."""
    env = _without_wsguard_variables(WSGUARD_JWT_SECRET=ENV_SECRET)
    token = jwt.encode({"sub": "env-user", "exp": int(time.time()) + 600}, ENV_SECRET, algorithm="HS256")
    with ServerProcess(env=env, dev=False) as server:

        async def welcome() -> dict[str, object]:
            socket, frame = await open_socket(server.ws_url, token)
            await socket.close()
            return frame

        assert asyncio.run(welcome())["user_id"] == "env-user"
        assert server.http.post("/api/dev/tokens", json={"user_id": "x"}).status_code == 404


def test_leakcheck_is_a_subcommand_and_bad_usage_exits_2() -> None:
    def wsguard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "wsguard", *args], capture_output=True, text=True, timeout=60
        )

    listed = wsguard("leakcheck", "--list-profiles")
    assert listed.returncode == 0, listed.stderr
    assert "ci " in listed.stdout
    assert "demo" in listed.stdout
    assert wsguard("leakcheck", "--profile", "no-such-profile").returncode == 2
    assert "leakcheck" in wsguard("--help").stdout


@pytest.mark.parametrize(("flag", "field"), [("dev", "dev"), ("compression", "compression")])
def test_a_flag_turns_off_what_its_variable_turned_on(flag: str, field: str) -> None:
    parser = argparse.ArgumentParser()
    configure_serve(parser)
    environ = {f"WSGUARD_{flag.upper()}": "true", "WSGUARD_JWT_SECRET": "s" * 32}
    assert getattr(settings_from(parser.parse_args([]), environ), field) is True
    assert getattr(settings_from(parser.parse_args([f"--no-{flag}"]), environ), field) is False
    assert getattr(settings_from(parser.parse_args([f"--{flag}"]), {"WSGUARD_DEV": "1"}), field) is True


def test_no_dev_overrides_the_variable_so_a_key_is_required_again() -> None:
    result = _serve("--no-dev", "--port", "0", env={"PATH": "/usr/bin:/bin", "WSGUARD_DEV": "1"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--jwt-secret" in lines[0]


def test_collect_garbage_is_refused_unless_allowed() -> None:
    """A full collection on demand pauses the loop: refused without ``--dev`` or the flag."""
    secret = ("--jwt-secret", "s" * 32)
    with ServerProcess(*secret, dev=False) as plain:
        refused = plain.http.get("/metrics", params={"collect_garbage": "1"})
        assert refused.status_code == 403
        assert "--metrics-allow-gc" in refused.json()["error"]
        assert plain.http.get("/metrics").status_code == 200
    with ServerProcess(*secret, "--metrics-allow-gc", dev=False) as allowed:
        response = allowed.http.get("/metrics", params={"collect_garbage": "1"})
        assert response.status_code == 200
        assert "wsguard_python_allocated_blocks" in response.text
