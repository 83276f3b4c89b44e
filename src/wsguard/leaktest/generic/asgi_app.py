"""Start an application (an import string) under uvicorn with the probe, and leak-check it."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from wsguard.leaktest.generic.runner import run_generic
from wsguard.leaktest.generic.scenarios import DEFAULT_GENERIC_SCENARIOS
from wsguard.leaktest.generic.target import DEFAULT_BROADCAST, DEFAULT_IDENTITY, GenericSizes, GenericTarget
from wsguard.leaktest.progress import Progress, Silent
from wsguard.leaktest.results import RunReport
from wsguard.probe import DEFAULT_PATH
from wsguard.processes.process import ServerProcess


@contextlib.contextmanager
def serve_asgi_app(
    app: str, *, app_dir: str | Path = ".", probe_path: str = DEFAULT_PATH
) -> Iterator[ServerProcess]:
    """``app`` (``module:attribute``) served by uvicorn on a free loopback port, probe enabled."""
    command = [
        sys.executable, "-m", "wsguard.leaktest.generic.serve", app,
        "--app-dir", str(app_dir), "--probe-path", probe_path,
    ]  # fmt: skip
    with ServerProcess(command=command, dev=False, ready_path=probe_path) as server:
        yield server


def check_asgi_app(
    app: str,
    ws_path: str,
    *,
    scenarios: Sequence[str] = DEFAULT_GENERIC_SCENARIOS,
    headers: Sequence[tuple[str, str]] = (),
    on_connect: Sequence[str] = (),
    identity: str = DEFAULT_IDENTITY,
    broadcast: str = DEFAULT_BROADCAST,
    sizes: GenericSizes | None = None,
    app_dir: str | Path = ".",
    progress: Progress | None = None,
) -> RunReport:
    """Serve ``app`` and run the generic ``scenarios`` against ``ws_path`` (``/ws/{identity}``)."""
    with serve_asgi_app(app, app_dir=app_dir) as server:
        target = GenericTarget(
            ws_url=f"ws://{server.host}:{server.port}{ws_path}",
            probe_url=f"{server.base_url}{DEFAULT_PATH}",
            headers=tuple(headers),
            on_connect=tuple(on_connect),
            identity=identity,
            broadcast=broadcast,
            pid=server.pid,
        )
        return run_generic(target, list(scenarios), sizes, progress=progress or Silent())
