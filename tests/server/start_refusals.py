"""``wsguard serve`` refusing to start: the exit status, and the one line that says why."""

import subprocess
import sys
from collections.abc import Mapping


def refused_at_start(
    *args: str, script: str | None = None, env: Mapping[str, str] | None = None, status: int = 2
) -> str:
    """The one line a ``wsguard serve`` with ``args`` writes before it exits with ``status``.

    ``script``: run the command line through ``python -c script`` (which ends by calling the
    CLI) instead of ``python -m wsguard``, to change something before it runs.
    """
    command = [sys.executable, "-c", script] if script is not None else [sys.executable, "-m", "wsguard"]
    result = subprocess.run([*command, "serve", *args], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]
