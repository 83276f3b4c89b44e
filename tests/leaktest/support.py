"""Helpers of the leak-harness tests: a small profile, the CLI and the broken servers."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

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


def expected_exit_of_a_real_server(report: dict[str, Any]) -> int:
    """The one right exit status of a run against a correct server: never a leak, failure or
    error; 3 when some round's generator lagged past its allowance (its figures are in the
    report), else 0."""
    wrong = {
        s["name"]: s["reasons"] for s in report["scenarios"] if s["verdict"] not in {"pass", "inconclusive"}
    }
    assert not wrong, wrong
    overloaded = [r["overload"] for s in report["scenarios"] for r in s["rounds"] if r["overload"]]
    return 3 if overloaded else 0


def broken_command(bug: str) -> str:
    return f"{sys.executable} {BROKEN_SERVERS} {bug}"
