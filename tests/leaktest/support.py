"""Helpers of the leak-harness tests: a small profile, the CLI and the broken servers."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from wsguard.leaktest.profiles import PROFILES, Profile, Sizes

BROKEN_SERVERS = Path(__file__).with_name("broken_servers.py")

TINY: Profile = replace(
    PROFILES["ci"],
    name="tiny",
    seed=None,
    rounds=5,
    first=Sizes(race_duration_s=2.0, reconnect_cycles=6, comprehensive_users=2),
)


def leakcheck_cli(*args: str, timeout: float = 150.0) -> subprocess.CompletedProcess[str]:
    """``python -m wsguard.leaktest ARGS``, captured."""
    return subprocess.run(
        [sys.executable, "-m", "wsguard.leaktest", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def broken_command(bug: str) -> str:
    return f"{sys.executable} {BROKEN_SERVERS} {bug}"
