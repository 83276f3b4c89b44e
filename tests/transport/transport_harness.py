"""Start the transport's test app in its own process and look at it from outside."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

import psutil

import wsguard.transport
from wsguard.processes import ServerProcess

APP = Path(__file__).with_name("guarded_app.py")
SRC = Path(wsguard.transport.__file__).resolve().parents[2]


def guarded_server(*flags: str) -> ServerProcess:
    """The test app (see ``guarded_app.py``) on a free port, served through the transport."""
    python_path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    return ServerProcess(*flags, command=[sys.executable, str(APP)], env={"PYTHONPATH": python_path})


def server_sockets_to(server: ServerProcess, client_port: int) -> list[str]:
    """States of the server process's TCP sockets whose peer is ``client_port`` on loopback."""
    process = psutil.Process(server.pid)
    return [
        connection.status
        for connection in process.net_connections(kind="tcp")
        if connection.raddr and connection.raddr.port == client_port
    ]


def closed_records(server: ServerProcess) -> list[dict[str, Any]]:
    """How each WebSocket of the test app ended, as the app saw it."""
    records: list[dict[str, Any]] = server.http.get("/log").json()["closed"]
    return records


def record_of(server: ServerProcess, client_port: int) -> dict[str, Any] | None:
    """The test app's record of the connection from ``client_port``, once it ended."""
    for record in closed_records(server):
        if record["client_port"] == client_port:
            return record
    return None


def open_record(server: ServerProcess, client_port: int) -> dict[str, Any] | None:
    """The test app's live record of the open connection from ``client_port``."""
    records: list[dict[str, Any]] = server.http.get("/log").json()["open"]
    for record in records:
        if record["client_port"] == client_port:
            return record
    return None


def wsguard_server(*flags: str) -> ServerProcess:
    """``wsguard serve`` itself, which serves the real app through the transport.

    ``WSGUARD_SERVE_COMMAND`` replaces ``python -m wsguard serve``: to run these tests against
    another build, or to see them fail against the app on stock uvicorn.
    """
    python_path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    override = os.environ.get("WSGUARD_SERVE_COMMAND")
    command = shlex.split(override) if override else None
    return ServerProcess(*flags, command=command, env={"PYTHONPATH": python_path})
